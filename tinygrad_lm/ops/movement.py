"""Movement ops: they move numbers around without changing or selecting them, so each
backward moves the gradient back the same way (reshape back, permute back, cut back).
Selecting elements by index is `indexing.py`."""
import numpy as np

from .. import backend
from ..engine import Function, unbroadcast


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


class ToDevice(Function):
    """z = a copied to another device;  the gradient is copied back to a's device."""
    def forward(self, a, device):
        self.src = backend.device_of(a)
        return backend.to_device(a, device)

    def backward(self, g):
        return backend.to_device(g, self.src)
