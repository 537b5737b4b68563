"""Elementwise ops. Each backward is the local derivative times the incoming gradient,
summed back to the input's shape where the forward broadcast (`unbroadcast`)."""
import math

import numpy as np

from .. import backend
from ..engine import Function, unbroadcast, broadcast_shapes


def _xp(a):
    return backend.array_module(a)


# ================================================================ binary arithmetic
class _Binary(Function):
    """Binary ops broadcast like numpy. The shapes are checked only when numpy refuses them
    (try/except costs nothing on the way through), and the error names the op and shapes."""
    def _check(self, a, b):
        broadcast_shapes(type(self).__name__.lower(), a.shape, b.shape)  # raises ours if they don't broadcast


class Add(_Binary):
    """z = a + b;  dz/da = 1, dz/db = 1."""
    def forward(self, a, b):
        self.sa, self.sb = a.shape, b.shape
        try:
            return a + b
        except ValueError:
            self._check(a, b)
            raise

    def backward(self, g):
        na, nb = self.needs_input_grad
        return (unbroadcast(g, self.sa) if na else None), (unbroadcast(g, self.sb) if nb else None)


class Sub(_Binary):
    """z = a - b;  dz/da = 1, dz/db = -1."""
    def forward(self, a, b):
        self.sa, self.sb = a.shape, b.shape
        try:
            return a - b
        except ValueError:
            self._check(a, b)
            raise

    def backward(self, g):
        na, nb = self.needs_input_grad
        return (unbroadcast(g, self.sa) if na else None), (unbroadcast(-g, self.sb) if nb else None)


class Mul(_Binary):
    """z = a * b;  dz/da = b, dz/db = a."""
    def forward(self, a, b):
        self.a, self.b = a, b
        try:
            return a * b
        except ValueError:
            self._check(a, b)
            raise

    def backward(self, g):
        na, nb = self.needs_input_grad
        return (unbroadcast(g * self.b, self.a.shape) if na else None), (unbroadcast(g * self.a, self.b.shape) if nb else None)


class Div(_Binary):
    """z = a / b;  dz/da = 1/b, dz/db = -a/b^2 = -z/b."""
    def forward(self, a, b):
        self.b, self.sa = b, a.shape
        try:
            self.out = a / b
        except ValueError:
            self._check(a, b)
            raise
        return self.out

    def backward(self, g):
        na, nb = self.needs_input_grad
        gb = g / self.b
        return (unbroadcast(gb, self.sa) if na else None), (unbroadcast(-gb * self.out, self.b.shape) if nb else None)


class Pow(_Binary):
    """z = a ** b;  dz/da = b * a^(b-1), dz/db = z * log(a) (NaN for a < 0, as in PyTorch)."""
    def forward(self, a, b):
        self.a, self.b = a, b
        try:
            self.out = a ** b
        except ValueError:
            self._check(a, b)
            raise
        return self.out

    def backward(self, g):
        na, nb = self.needs_input_grad
        xp = _xp(g)
        ga = unbroadcast(g * self.b * self.a ** (self.b - 1), self.a.shape) if na else None
        gb = None
        if nb:
            with np.errstate(divide="ignore", invalid="ignore"):
                # 0 ** b has derivative 0 in b where b > 0 (log 0 = -inf times 0)
                loga = xp.where(self.a == 0, 0, xp.log(xp.where(self.a == 0, 1, self.a)))
            gb = unbroadcast(g * self.out * loga, self.b.shape)
        return ga, gb


class PowScalar(Function):
    """z = a ** c for a Python number c;  dz/da = c * a^(c-1)."""
    def forward(self, a, exponent):
        self.a, self.c = a, exponent
        if exponent == 2:
            return a * a
        return a ** a.dtype.type(exponent) if a.dtype.kind == "f" else a ** exponent

    def backward(self, g):
        c = self.c
        if c == 2:
            return g * (2 * self.a)
        if c == 1:
            return g
        return g * (c * self.a ** self.a.dtype.type(c - 1))


class Maximum(_Binary):
    """z = max(a, b);  the gradient goes to the larger input; ties split it in half."""
    def forward(self, a, b):
        self.sa, self.sb = a.shape, b.shape
        try:
            self.wa = (a > b) + (a == b) * 0.5  # weight of a's share
        except ValueError:
            self._check(a, b)
            raise
        return _xp(a).maximum(a, b)

    def backward(self, g):
        na, nb = self.needs_input_grad
        w = self.wa.astype(g.dtype, copy=False)
        return (unbroadcast(g * w, self.sa) if na else None), (unbroadcast(g * (1 - w), self.sb) if nb else None)


class Minimum(Maximum):
    """z = min(a, b);  the gradient goes to the smaller input; ties split it in half."""
    def forward(self, a, b):
        self.sa, self.sb = a.shape, b.shape
        try:
            self.wa = (a < b) + (a == b) * 0.5
        except ValueError:
            self._check(a, b)
            raise
        return _xp(a).minimum(a, b)


class Where(Function):
    """z = cond ? a : b;  dz/da = cond, dz/db = not cond (cond gets no gradient)."""
    def forward(self, cond, a, b):
        self.cond, self.sa, self.sb = cond, a.shape, b.shape
        return _xp(a).where(cond, a, b)

    def backward(self, g):
        _, na, nb = self.needs_input_grad
        zero = g.dtype.type(0)
        xp = _xp(g)
        return (None,
                unbroadcast(xp.where(self.cond, g, zero), self.sa) if na else None,
                unbroadcast(xp.where(self.cond, zero, g), self.sb) if nb else None)


class MaskedFill(Function):
    """z = mask ? value : a;  dz/da = not mask."""
    def forward(self, a, mask, value):
        self.mask, self.sa = mask, a.shape
        return _xp(a).where(mask, a.dtype.type(value), a)  # mask may broadcast a (checked by the caller)

    def backward(self, g):
        return unbroadcast(_xp(g).where(self.mask, g.dtype.type(0), g), self.sa), None


# ================================================================ unary
class Neg(Function):
    """z = -a;  dz/da = -1."""
    def forward(self, a):
        return -a

    def backward(self, g):
        return -g


class Clone(Function):
    """z = a (a copy);  dz/da = 1."""
    def forward(self, a):
        return a.copy()

    def backward(self, g):
        return g


class Cast(Function):
    """z = a converted to another dtype;  the gradient is cast back to a's dtype."""
    def forward(self, a, dtype):
        self.dtype = a.dtype
        return a.astype(dtype)

    def backward(self, g):
        return g.astype(self.dtype)

    differentiable = True


class Exp(Function):
    """z = e^a;  dz/da = e^a = z."""
    def forward(self, a):
        self.out = _xp(a).exp(a)
        return self.out

    def backward(self, g):
        return g * self.out


class Log(Function):
    """z = ln a;  dz/da = 1/a."""
    def forward(self, a):
        self.a = a
        return _xp(a).log(a)

    def backward(self, g):
        return g / self.a


class Sqrt(Function):
    """z = sqrt(a);  dz/da = 1 / (2 sqrt(a)) = 1 / (2z)."""
    def forward(self, a):
        self.out = _xp(a).sqrt(a)
        return self.out

    def backward(self, g):
        return g / (2 * self.out)


class Abs(Function):
    """z = |a|;  dz/da = sign(a) (0 at a = 0, as in PyTorch)."""
    def forward(self, a):
        self.a = a
        return _xp(a).abs(a)

    def backward(self, g):
        return g * _xp(g).sign(self.a)


class Tanh(Function):
    """z = tanh a;  dz/da = 1 - z^2."""
    def forward(self, a):
        self.out = _xp(a).tanh(a)
        return self.out

    def backward(self, g):
        return g * (1 - self.out * self.out)


class Sigmoid(Function):
    """z = 1 / (1 + e^-a);  dz/da = z (1 - z). With e = exp(-|a|), z = 1/(1+e) for a >= 0 and
    e/(1+e) otherwise: exp never overflows and the tails keep their relative precision."""
    def forward(self, a):
        xp = _xp(a)
        e = xp.exp(-xp.abs(a))
        r = 1 / (1 + e)
        self.out = xp.where(a >= 0, r, e * r)
        return self.out

    def backward(self, g):
        return g * self.out * (1 - self.out)


class Relu(Function):
    """z = max(a, 0);  dz/da = 1 where a > 0, else 0."""
    def forward(self, a):
        self.mask = a > 0
        return _xp(a).maximum(a, a.dtype.type(0))

    def backward(self, g):
        return g * self.mask


class Clamp(Function):
    """z = min(max(a, lo), hi);  dz/da = 1 where lo <= a <= hi, else 0 (PyTorch's convention)."""
    def forward(self, a, min=None, max=None):
        xp = _xp(a)
        self.mask = xp.ones(a.shape, dtype=bool)
        out = a
        if min is not None:
            self.mask &= a >= min
            out = xp.maximum(out, a.dtype.type(min))
        if max is not None:
            self.mask &= a <= max
            out = xp.minimum(out, a.dtype.type(max))
        return out

    def backward(self, g):
        return g * self.mask


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


class Gelu(Function):
    """GELU(a) = a * Phi(a), Phi the standard normal CDF.

    approximate="none":  Phi(a) = (1 + erf(a / sqrt 2)) / 2;  d/da = Phi(a) + a * phi(a),
                         phi(a) = exp(-a^2/2) / sqrt(2 pi).
    approximate="tanh":  0.5 a (1 + tanh u), u = sqrt(2/pi) (a + 0.044715 a^3);
                         d/da = 0.5 (1 + tanh u) + 0.5 a (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 a^2).
    """
    @backend.kernel("gelu")
    def forward(self, a, approximate="none"):
        xp = _xp(a)
        self.a, self.approx = a, approximate
        if approximate == "tanh":
            self.t = xp.tanh(_SQRT_2_OVER_PI * (a + 0.044715 * a * a * a))
            return 0.5 * a * (1 + self.t)
        if approximate != "none":
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.cdf = 0.5 * (1 + backend.erf(a * a.dtype.type(1 / math.sqrt(2))))
        return a * self.cdf

    @backend.kernel("gelu")
    def backward(self, g):
        a, xp = self.a, _xp(g)
        if self.approx == "tanh":
            t = self.t
            return g * (0.5 * (1 + t) + 0.5 * a * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * a * a))
        pdf = xp.exp(-0.5 * a * a) * a.dtype.type(1 / math.sqrt(2 * math.pi))
        return g * (self.cdf + a * pdf)


class Tril(Function):
    """Keep the lower (or, with upper=True, upper) triangle of the last two dims; zero the rest.
    The gradient is masked the same way."""
    def forward(self, a, diagonal=0, upper=False):
        if a.ndim < 2:
            raise ValueError(f"{'triu' if upper else 'tril'}: input must have at least 2 dims, got shape {a.shape}")
        xp = _xp(a)
        n, m = a.shape[-2:]
        keep = xp.arange(m)[None, :] - xp.arange(n)[:, None]
        self.keep = keep >= diagonal if upper else keep <= diagonal
        return xp.where(self.keep, a, a.dtype.type(0))

    def backward(self, g):
        return _xp(g).where(self.keep, g, g.dtype.type(0))
