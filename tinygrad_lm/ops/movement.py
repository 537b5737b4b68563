"""Movement ops: they move numbers around without changing them, so each backward moves
the gradient back the same way (reshape back, permute back, scatter back)."""
import numpy as np

from .. import backend
from ..tensor import Function, Tensor, unbroadcast


def _xp(a):
    return backend.array_module(a)


class Reshape(Function):
    """z = a viewed with a new shape;  the gradient is reshaped back."""
    def forward(self, a, shape):
        self.shape = a.shape
        return a.reshape(shape)

    def backward(self, g):
        return g.reshape(self.shape)


class Permute(Function):
    """z = a with its axes reordered by `dims`;  the gradient is permuted by the inverse order."""
    def forward(self, a, dims):
        self.inv = tuple(sorted(range(len(dims)), key=dims.__getitem__))  # the inverse permutation
        return a.transpose(dims)

    def backward(self, g):
        return g.transpose(self.inv)


class Expand(Function):
    """z = a broadcast to `shape` (no copy);  the gradient is summed over the broadcast axes."""
    def forward(self, a, shape):
        self.shape = a.shape
        return _xp(a).broadcast_to(a, shape)

    def backward(self, g):
        return unbroadcast(g, self.shape)


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


def getitem(t: Tensor, idx):
    """`t[idx]` with PyTorch/numpy semantics: basic indices go through Slice; integer arrays,
    lists, integer tensors and boolean masks go through Index (masks become their nonzero
    positions, as numpy does, after checking that they match the dims they cover)."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    xp = t.xp
    out, advanced, masks = [], False, False
    for i in idx:
        if isinstance(i, Tensor):
            i = i.data
        elif isinstance(i, list):
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


class Cat(Function):
    """z = the inputs joined along `dim`;  each input's gradient is its slice of the output's."""
    def forward(self, *arrays, dim):
        self.dim = dim
        self.bounds = np.cumsum([0] + [a.shape[dim] for a in arrays])
        return _xp(arrays[0]).concatenate(arrays, axis=dim)

    def backward(self, g):
        pre = (slice(None),) * self.dim
        b = self.bounds
        return tuple(g[pre + (slice(b[i], b[i + 1]),)] if need else None for i, need in enumerate(self.needs_input_grad))


class Pad(Function):
    """Constant padding (negative widths crop);  the gradient is the output gradient with the
    padding cut off (and zeros where the input was cropped)."""
    def forward(self, a, widths, value=0.0):
        self.shape = a.shape
        src, dst, shape = [], [], []
        for s, (b, e) in zip(a.shape, widths):
            s0, s1 = max(0, -b), s - max(0, -e)
            d0 = max(0, b)
            src.append(slice(s0, max(s0, s1)))
            dst.append(slice(d0, d0 + max(0, s1 - s0)))
            shape.append(s + b + e)
        self.src, self.dst = tuple(src), tuple(dst)
        out = _xp(a).full(shape, value, dtype=a.dtype)
        out[self.dst] = a[self.src]
        return out

    def backward(self, g):
        grad = _xp(g).zeros(self.shape, dtype=g.dtype)
        grad[self.src] = g[self.dst]
        return grad


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


class ToDevice(Function):
    """z = a copied to another device;  the gradient is copied back to a's device."""
    def forward(self, a, device):
        self.src = backend.device_of(a)
        return backend.to_device(a, device)

    def backward(self, g):
        return backend.to_device(g, self.src)
