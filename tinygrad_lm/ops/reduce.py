"""Reductions over `dim` (None = all dims, or a sorted tuple of axes) with `keepdim`.

Every backward first puts the reduced axes back as size-1 axes (`_keep`) so the
output gradient broadcasts against the input."""
import math

import numpy as np

from .. import backend
from ..engine import Function


def _keep(g, ndim, dim, keepdim):
    """Reshape an output gradient so it broadcasts against the input: the reduced axes come
    back as size-1 axes."""
    # a reshape, not np.expand_dims, which costs several times more per call
    if keepdim:
        return g
    if dim is None:
        return g.reshape((1,) * ndim)
    shape = list(g.shape)
    for d in dim:  # sorted, so each insert lands at its final position
        shape.insert(d, 1)
    return g.reshape(shape)


def _count(shape, dim):
    """How many elements each output element reduces over."""
    return math.prod(shape) if dim is None else math.prod([shape[d] for d in dim])


def _expand(g, shape):
    """broadcast_to, skipped when nothing needs broadcasting."""
    return g if g.shape == shape else backend.array_module(g).broadcast_to(g, shape)


class Sum(Function):
    """z = sum_i a_i;  dz/da_i = 1: the gradient is copied back to every summed element."""
    def forward(self, a, dim=None, keepdim=False):
        self.shape, self.dim, self.keepdim = a.shape, dim, keepdim
        return a.sum(axis=dim, keepdims=keepdim)

    def backward(self, g):
        return _expand(_keep(g, len(self.shape), self.dim, self.keepdim), self.shape)


class Mean(Function):
    """z = (1/n) sum_i a_i;  dz/da_i = 1/n."""
    def forward(self, a, dim=None, keepdim=False):
        self.shape, self.dim, self.keepdim = a.shape, dim, keepdim
        self.n = _count(a.shape, dim)
        if self.n == 0 or a.dtype.kind != "f" or a.dtype.itemsize < 4:
            return a.mean(axis=dim, keepdims=keepdim)  # empty: NaN; ints: float64; float16: sums in float32
        # what ndarray.mean does for float32/64 (a sum, then a true division by n), minus its Python overhead
        return a.sum(axis=dim, keepdims=keepdim) / a.dtype.type(self.n)

    def backward(self, g):
        g = _keep(g, len(self.shape), self.dim, self.keepdim) * g.dtype.type(1 / max(self.n, 1))
        return _expand(g, self.shape)


class Max(Function):
    """z = max_i a_i;  dz/da_i = 1/k for each of the k elements equal to the max, else 0.

    Ties share the gradient evenly (like torch.amax; unlike np/DeZero giving each tied
    element the full gradient, which would double-count)."""
    def _reduce(self, a, dim):
        return a.max(axis=dim, keepdims=True)

    def forward(self, a, dim=None, keepdim=False):
        if a.size == 0:
            raise ValueError(f"{type(self).__name__.lower()}: reduction of an empty tensor of shape {a.shape}")
        self.dim, self.keepdim, self.ndim = dim, keepdim, a.ndim
        m = self._reduce(a, dim)
        self.mask = a == m
        return m if keepdim else (m.reshape(()) if dim is None else m.squeeze(axis=dim))

    def backward(self, g):
        mask = self.mask
        count = mask.sum(axis=self.dim, keepdims=True)
        return mask * (_keep(g, self.ndim, self.dim, self.keepdim) / count.astype(g.dtype))


class Min(Max):
    """z = min_i a_i;  dz/da_i = 1/k for each of the k elements equal to the min, else 0."""
    def _reduce(self, a, dim):
        return a.min(axis=dim, keepdims=True)


class Var(Function):
    """z = sum_i (a_i - mean)^2 / (n - correction);  dz/da_i = 2 (a_i - mean) / (n - correction).

    (The mean's own dependence on a_i drops out because sum_i (a_i - mean) = 0.)"""
    def forward(self, a, dim=None, correction=1, keepdim=False):
        self.dim, self.keepdim, self.ndim = dim, keepdim, a.ndim
        n = _count(a.shape, dim)
        self.denom = max(n - correction, 0)
        self.diff = a - a.mean(axis=dim, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (self.diff * self.diff).sum(axis=dim, keepdims=keepdim) / a.dtype.type(self.denom)

    def backward(self, g):
        scale = g.dtype.type(2.0 / self.denom) if self.denom else g.dtype.type(np.nan)
        return _keep(g, self.ndim, self.dim, self.keepdim) * (scale * self.diff)


class LogSumExp(Function):
    """z = log sum_i e^(a_i) = m + log sum_i e^(a_i - m), m = max a;  dz/da_i = e^(a_i - z) = softmax(a)_i.

    Shifting by the max makes it finite for any finite input (logsumexp([-1000, 0, 1000]) = 1000)."""
    def forward(self, a, dim=None, keepdim=False):
        xp = backend.array_module(a)
        self.a, self.dim, self.keepdim = a, dim, keepdim
        m = a.max(axis=dim, keepdims=True)
        m = xp.where(xp.isfinite(m), m, a.dtype.type(0))  # all -inf rows stay -inf, not NaN
        with np.errstate(divide="ignore"):
            self.out = xp.log(xp.exp(a - m).sum(axis=dim, keepdims=True)) + m
        return self.out if keepdim else (self.out.reshape(()) if dim is None else self.out.squeeze(axis=dim))

    def backward(self, g):
        xp = backend.array_module(g)
        return _keep(g, self.a.ndim, self.dim, self.keepdim) * xp.exp(self.a - self.out)


class Prod(Function):
    """z = prod_i a_i;  dz/da_i = prod_{j != i} a_j.

    Computed as (product of everything left of i) * (product of everything right of i), two
    exclusive cumulative products, so zeros in the input are handled exactly (no z / a_i)."""
    def forward(self, a, dim=None, keepdim=False):
        self.a, self.dim, self.keepdim = a, dim, keepdim
        return a.prod(axis=dim, keepdims=keepdim)

    def backward(self, g):
        a, xp = self.a, backend.array_module(g)
        dims = tuple(range(a.ndim)) if self.dim is None else self.dim
        rest = tuple(d for d in range(a.ndim) if d not in dims)
        perm = rest + dims
        moved = a.transpose(perm).reshape(tuple(a.shape[d] for d in rest) + (-1,))
        ones = xp.ones(moved.shape[:-1] + (1,), dtype=a.dtype)
        left = xp.cumprod(xp.concatenate([ones, moved[..., :-1]], axis=-1), axis=-1)
        right = xp.flip(xp.cumprod(xp.concatenate([ones, xp.flip(moved, -1)[..., :-1]], axis=-1), axis=-1), -1)
        others = (left * right).reshape(tuple(a.shape[d] for d in perm)).transpose(np.argsort(perm))
        return _keep(g, a.ndim, self.dim, self.keepdim) * others
