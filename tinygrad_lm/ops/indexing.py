"""Indexing ops: they select elements by position, so each backward writes the gradient
back at the positions it came from (scatter-adding where one element was picked several
times).

* `Slice`: `t[basic index]` (ints, slices, None, ...), `split`, `chunk`, `unbind`;
* `Index`: `t[integer arrays / lists / int or bool tensors]`, `index_select`;
* `Gather`: `gather`, `take_along_dim`;
* `EmbeddingLookup`: rows of a table picked by integer ids (`embedding`, `nn.Embedding`).
"""
import numpy as np

from .. import backend
from ..engine import Function


def _xp(a):
    return backend.array_module(a)


class Slice(Function):
    """z = a[index] for basic indices (ints, slices with any step, None, Ellipsis);
    the gradient is written into a zero tensor at the same positions."""
    def forward(self, a, index):
        self.shape, self.index = a.shape, index
        try:
            return a[index]
        except IndexError as e:
            raise IndexError(f"getitem: {e} (tensor shape {a.shape}, index {_show(index)})") from None

    def backward(self, g):
        grad = _xp(g).zeros(self.shape, dtype=g.dtype)
        grad[self.index] = g
        return grad


class Index(Slice):
    """z = a[index] with integer-array indices (the forward is Slice's);  the gradient is
    scatter-added back, so an element picked k times receives the sum of its k gradients."""
    def backward(self, g):
        grad = _xp(g).zeros(self.shape, dtype=g.dtype)
        backend.scatter_add(grad, self.index, g)
        return grad


def _show(index):
    return tuple(f"array{tuple(i.shape)}" if hasattr(i, "shape") and getattr(i, "ndim", 0) else i for i in index)


def getitem(t, idx):
    """`t[idx]` with PyTorch/numpy semantics: basic indices go through Slice; integer arrays,
    lists and boolean masks go through Index (masks become their nonzero positions, as numpy
    does, after checking that they match the dims they cover). `Tensor.__getitem__` passes
    index tensors in as their arrays."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    xp = t.xp
    out, advanced, masks = [], False, False
    for i in idx:
        if isinstance(i, list):
            i = np.asarray(i)
        if isinstance(i, np.ndarray) or hasattr(i, "__cuda_array_interface__"):
            if i.dtype == np.bool_:
                masks = True
            elif i.dtype.kind not in "iu":
                raise IndexError(f"getitem: tensors used as indices must be integer or bool, got dtype {i.dtype}")
            advanced = True
            i = xp.asarray(i)
        elif isinstance(i, (bool, np.bool_)):
            raise IndexError("getitem: a bare bool is not a valid index")
        out.append(i)
    if masks:
        out = _masks_to_positions(t.shape, out)
    if advanced:
        _check_int_arrays(t.shape, out)
    return (Index if advanced else Slice).apply(t, index=tuple(out))


def _check_int_arrays(shape, items):
    """Raise IndexError for an integer array index outside [-size, size) of the dim it indexes.
    numpy raises by itself but cupy wraps such indices around silently, so the check is ours,
    the same on both: one min/max read per array (positions from boolean masks are in range)."""
    used = sum(0 if (i is None or i is Ellipsis) else 1 for i in items)
    dim = 0
    for i in items:
        if i is Ellipsis:
            dim += max(len(shape) - used, 0)
            continue
        if i is None:
            continue
        if hasattr(i, "dtype") and getattr(i, "ndim", 0) >= 0 and i.dtype.kind in "iu" and i.size \
                and not isinstance(i, np.integer) and dim < len(shape):
            n = shape[dim]
            lo, hi = backend.index_span(i)
            if lo < -n or hi >= n:
                raise IndexError(f"getitem: index out of bounds for dim {dim} of size {n}: indices span [{lo}, {hi}] "
                                 f"(tensor shape {tuple(shape)}, index {_show(tuple(items))})")
        dim += 1


def _masks_to_positions(shape, items):
    """Replace each boolean mask by its nonzero positions, once its shape is checked against
    the dims it covers (numpy's nonzero alone would accept a mask that is too short)."""
    is_mask = [getattr(i, "dtype", None) == np.bool_ for i in items]
    used = sum(i.ndim if m else 0 if (i is None or i is Ellipsis) else 1 for i, m in zip(items, is_mask))
    out, pos = [], 0
    for i, m in zip(items, is_mask):
        if i is Ellipsis:
            pos += max(len(shape) - used, 0)
        elif m:
            covered = tuple(shape[pos:pos + i.ndim])
            if i.ndim == 0 or covered != i.shape:
                raise IndexError(f"getitem: boolean mask of shape {i.shape} does not match the dims it indexes "
                                 f"{covered} (dims {pos}..{pos + i.ndim - 1} of tensor shape {shape})")
            out.extend(i.nonzero())
            pos += i.ndim
            continue
        elif i is not None:
            pos += 1
        out.append(i)
    return out


class Gather(Function):
    """z = take_along_dim(a, index, dim): z[..., i, ...] = a[..., index[..., i, ...], ...] along `dim`;
    the gradient is scatter-added into a zero tensor at the gathered positions."""
    def forward(self, a, index, dim):
        xp = _xp(a)
        self.shape, self.dim = a.shape, dim
        out = xp.take_along_axis(a, index, axis=dim)
        self.index = index
        return out

    def backward(self, g):
        xp = _xp(g)
        grad = xp.zeros(self.shape, dtype=g.dtype)
        full = []
        for ax, s in enumerate(self.shape):
            if ax == self.dim:
                full.append(xp.broadcast_to(self.index, g.shape))
            else:
                r = xp.arange(s) if s != 1 else xp.zeros(1, dtype=np.int64)
                full.append(xp.broadcast_to(r.reshape((-1,) + (1,) * (len(self.shape) - ax - 1)), g.shape))
        backend.scatter_add(grad, tuple(full), g)
        return grad, None



class EmbeddingLookup(Function):
    """z[..., :] = W[idx[...], :];  dL/dW[r] = sum of dL/dz over the positions where idx == r.

    The backward is a segmented sum (sort + add.reduceat on numpy, atomics on cupy), not
    np.add.at, which is unbuffered and slow."""
    def forward(self, weight, idx):
        self.idx, self.rows = idx, weight.shape[0]
        return weight[idx]

    def backward(self, g):
        flat = g.reshape(self.idx.size, -1)  # (N, C): one row of gradient per looked-up index
        grad = backend.index_add_rows(self.rows, self.idx.reshape(-1), flat)
        return grad.reshape((self.rows,) + g.shape[self.idx.ndim:]), None
