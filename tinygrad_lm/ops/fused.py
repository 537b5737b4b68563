"""Fused ops: one `Function` for what would otherwise be a chain of primitives, with the
backward derived by hand.

A fused op saves less (no intermediate of every step), makes fewer passes over memory
and never builds the big temporaries autograd would (e.g. a one-hot (N, C) matrix for
cross-entropy). Each is the twin of a composed version in `nn/functional.py`; the tests
hold the two against each other and against finite differences.

Conventions shared by every op here:
* float math stays in the input's dtype (float32 in, float32 out; float64 for gradcheck);
* arrays an op allocates itself are updated in place (`out=`, `*=`); arrays it was given,
  and arrays it saved for backward, are never written (backward may run twice with
  retain_graph=True);
* a row whose every entry is -inf (a fully masked attention row) gives zeros from softmax,
  not NaN, so it cannot poison the rows around it.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..engine import Function, unbroadcast
from . import attention as tiled


def _xp(a):
    return backend.array_module(a)


def _rowsum(a):
    """sum_j a[..., j], keepdims, as the matrix-vector product a @ ones."""
    # BLAS beats numpy's strided reduce on rows of tens to hundreds of entries (docs/performance.md)
    return (a @ _xp(a).ones(a.shape[-1], dtype=a.dtype))[..., None]


def _rowdot(a, b):
    """sum_j a[..., j] * b[..., j], keepdims, without materialising a * b."""
    return _xp(a).einsum("...j,...j->...", a, b)[..., None]


def _matmul(a, b, out=None):
    """a @ b, written into `out` when given. numpy's BLAS path writes straight into a strided
    `out` (rows of a (B, T, nh, hs) buffer seen as (B, nh, T, hs)); elsewhere the product is
    computed, then copied in."""
    xp = _xp(a)
    if out is None:
        return xp.matmul(a, b)
    if xp is np:
        return np.matmul(a, b, out=out)
    out[...] = xp.matmul(a, b)
    return out


def _stable_max(x, axis):
    """Row max for the max-shift trick; rows that are entirely -inf shift by 0 instead
    (-inf - -inf would be NaN)."""
    xp = _xp(x)
    m = x.max(axis=axis, keepdims=True)
    return xp.where(xp.isfinite(m), m, m.dtype.type(0))


def _softmax(x, axis=-1, inplace=False):
    """softmax(x) along `axis`; with inplace=True `x` (an array the caller owns) is
    overwritten and returned. An all -inf row becomes all zeros."""
    xp = _xp(x)
    if inplace:
        x -= _stable_max(x, axis)
        s = x
    else:
        s = x - _stable_max(x, axis)
    xp.exp(s, out=s)
    tot = _rowsum(s) if axis in (-1, s.ndim - 1) else s.sum(axis=axis, keepdims=True)
    tot += tot == 0  # an all-zero row (every entry was -inf) divides by 1 and stays zero
    s /= tot
    return s


# ================================================================ softmax family
class FusedSoftmax(Function):
    """p_i = e^(x_i - m) / sum_j e^(x_j - m)  (m = max_j x_j, which cancels);
    dL/dx_i = p_i (g_i - sum_j g_j p_j).

    A row of all -inf gives p = 0 (PyTorch gives NaN) and a zero gradient."""
    @backend.kernel("softmax")
    def forward(self, x, dim=-1):
        self.dim = dim
        self.p = _softmax(x, dim)
        return self.p

    @backend.kernel("softmax")
    def backward(self, g):
        p, d = self.p, self.dim
        dot = _rowdot(g, p) if d in (-1, p.ndim - 1) else (g * p).sum(axis=d, keepdims=True)
        out = g - dot
        out *= p
        return out


class FusedLogSoftmax(Function):
    """y_i = x_i - m - log sum_j e^(x_j - m)  (m = max_j x_j);
    dL/dx_i = g_i - softmax(x)_i sum_j g_j.

    A row of all -inf gives NaN, as in PyTorch (log 0 - log 0)."""
    @backend.kernel("log_softmax")
    def forward(self, x, dim=-1):
        xp = _xp(x)
        self.dim = dim
        last = dim in (-1, x.ndim - 1)
        out = x - _stable_max(x, dim)
        e = xp.exp(out)
        tot = _rowsum(e) if last else e.sum(axis=dim, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            out -= xp.log(tot)
            e /= tot
        self.p = e
        return out

    @backend.kernel("log_softmax")
    def backward(self, g):
        d = self.dim
        tot = _rowsum(g) if d in (-1, g.ndim - 1) else g.sum(axis=d, keepdims=True)
        return g - self.p * tot


class FusedSoftmaxCrossEntropy(Function):
    """Cross-entropy of logits x (N, C) against integer targets y (N,), with label smoothing
    eps and rows whose target is `ignore_index` left out:

        q_i     = (1 - eps) onehot(y_i) + eps / C            (the target distribution)
        loss_i  = -sum_c q_ic log softmax(x_i)_c
                = (1 - eps) (lse_i - x_i,y_i) + eps (lse_i - mean_c x_ic),   lse = log sum e^x
        mean:   L = sum_i loss_i / N_valid;   sum: L = sum_i loss_i;   none: L_i = loss_i

        dL/dx_i = w_i (softmax(x_i) - q_i),  w_i = g / N_valid (mean), g (sum), g_i (none),
                  and w_i = 0 for ignored rows.

    With eps = 0 this is the textbook p - y. Never builds a one-hot matrix: the target term
    is one fancy-index subtraction. An all-ignored batch gives NaN for 'mean' (0/0) and a zero
    gradient, as PyTorch: backward divides g by max(N_valid, 1), so w_i = 0, not 0 * (g / 0).
    """

    @backend.kernel("cross_entropy")
    def forward(self, x, y, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        xp = _xp(x)
        n, c = x.shape
        self.reduction, self.ls = reduction, float(label_smoothing)
        valid = y != ignore_index
        y = xp.where(valid, y, 0)
        rows = xp.arange(n)
        sh = x - _stable_max(x, 1)                     # (N, C), this op's own array
        picked = sh[rows, y]                           # x_iy - m_i
        mean_sh = _rowsum(sh)[:, 0] / c if self.ls else None
        xp.exp(sh, out=sh)
        tot = _rowsum(sh)[:, 0]                        # (N,)
        with np.errstate(divide="ignore", invalid="ignore"):
            lse = xp.log(tot)
            loss = lse - picked
            if self.ls:
                loss *= 1.0 - self.ls
                loss += self.ls * (lse - mean_sh)
        loss = xp.where(valid, loss, loss.dtype.type(0))
        tot += tot == 0
        # softmax = e / tot; the division is left to backward, which scales the rows anyway
        self.e, self.inv_tot, self.y, self.rows, self.valid = sh, xp.divide(1.0, tot, out=tot), y, rows, valid
        if reduction == "none":
            return loss
        total = loss.sum()
        if reduction == "sum":
            return total
        self.count = valid.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            return total / self.count.astype(x.dtype)

    @backend.kernel("cross_entropy")
    def backward(self, g):
        e, xp = self.e, _xp(g)
        if self.reduction == "mean":
            # max on the device (no read of the count); it only differs from N_valid at 0, where
            # every row is ignored: w = 0, PyTorch's zero gradient, not 0 * (g / 0) = NaN
            g = g / xp.maximum(self.count, 1).astype(g.dtype)
        # select, not multiply by valid: an ignored row's gradient is 0 even where g is inf or NaN
        w = xp.where(self.valid, g, g.dtype.type(0))
        w = w.astype(e.dtype, copy=False)
        dx = e * (w * self.inv_tot)[:, None]           # w_i softmax(x_i)
        dx[self.rows, self.y] -= (1.0 - self.ls) * w
        if self.ls:
            dx -= (self.ls / e.shape[1]) * w[:, None]
        return dx, None


# ================================================================ normalisation
class FusedLayerNorm(Function):
    """Over the last D entries (x viewed as (N, D)):

        mu = mean(x),  sigma = sqrt(var(x) + eps)  (population variance),  xhat = (x - mu) / sigma
        y  = xhat * w + b

        dL/db = sum_rows dy,   dL/dw = sum_rows dy * xhat,
        dL/dx = (1 / sigma) (g - mean(g) - xhat * mean(g * xhat)),   g = dy * w.

    Inputs: x, then the weight (if `has_weight`), then the bias (if `has_bias`), each of D
    entries (any shape with D elements, e.g. `normalized_shape`).

    The row means the backward needs come straight from dy: mean(g) = (dy @ w) / D and
    mean(g * xhat) = ((dy * xhat) @ w) / D, the latter reusing the product that dL/dw sums.
    """
    # every sum over rows or columns is a BLAS matrix-vector product, not numpy's sum
    # (faster on short rows: docs/performance.md)
    @backend.kernel("layer_norm")
    def forward(self, x, *wb, d, eps=1e-5, has_weight=True, has_bias=True):
        xp = _xp(x)
        self.shape, self.has_weight, self.has_bias = x.shape, has_weight, has_bias
        x2 = x.reshape(-1, d)
        inv_d = x.dtype.type(1.0 / d)
        xhat = x2 - (x2 @ xp.full(d, inv_d, dtype=x.dtype))[:, None]   # x - mu (this op's own array)
        var = _rowdot(xhat, xhat)
        var *= inv_d
        var += eps
        rstd = xp.sqrt(var, out=var)
        xp.divide(1.0, rstd, out=rstd)                 # 1 / sigma, (N, 1)
        xhat *= rstd
        self.xhat, self.rstd = xhat, rstd
        w = wb[0].reshape(d) if has_weight else None
        b = wb[int(has_weight)].reshape(d) if has_bias else None
        self.bshape = wb[int(has_weight)].shape if has_bias else None
        self.w, self.wshape = w, wb[0].shape if has_weight else None
        if w is not None:
            out = xhat * w
            if b is not None:
                out += b
        else:
            out = xhat + b if b is not None else xhat.copy()
        return out.reshape(x.shape)

    @backend.kernel("layer_norm")
    def backward(self, dy):
        xp = _xp(dy)
        xhat, rstd, w = self.xhat, self.rstd, self.w
        need = self.needs_input_grad
        n, d = xhat.shape
        dy2 = dy.reshape(-1, d)
        need_w = self.has_weight and need[1]
        dyx = dy2 * xhat if need_w or need[0] else None          # dy * xhat, (N, D)
        grads = []
        if self.has_weight:
            grads.append((xp.ones(n, dtype=dy.dtype) @ dyx).reshape(self.wshape) if need_w else None)
        if self.has_bias:
            grads.append((xp.ones(n, dtype=dy.dtype) @ dy2).reshape(self.bshape) if need[-1] else None)
        dx = None
        if need[0]:
            inv_d = dy.dtype.type(1.0 / d)
            if w is not None:
                mean_g, mean_gx = dy2 @ w, dyx @ w                # (N,): rows of g = dy * w, g * xhat summed
                g = dy2 * w
            else:
                ones_d = xp.ones(d, dtype=dy.dtype)
                mean_g, mean_gx = dy2 @ ones_d, dyx @ ones_d
                g = dy2.copy()
            mean_g *= inv_d
            mean_gx *= inv_d
            g -= mean_g[:, None]
            g -= xp.multiply(xhat, mean_gx[:, None], out=dyx)      # dyx is spent: reuse its memory
            g *= rstd
            dx = g.reshape(self.shape)
        return (dx, *grads)


# ================================================================ activation
_C = float(np.sqrt(2.0 / np.pi))
_K = 0.044715


class FusedGeluTanh(Function):
    """GPT-2's GELU: y = x s,  s = 0.5 (1 + tanh u),  u = c (x + k x^3),  c = sqrt(2/pi), k = 0.044715;
    dy/dx = s + x s' = s (1 + 2 x u' (1 - s)),  since s' = 0.5 (1 - tanh^2 u) u' = 2 s (1 - s) u'
    and 2 x u' = x (2c + 6ck x^2).

    The same math as `Gelu(approximate="tanh")`, written as in-place passes over two
    buffers instead of a dozen temporaries (it runs on the MLP's (B, T, 4C) activations).
    Saving s (not tanh u) makes the backward 9 passes instead of 12."""
    # tanh, not the equivalent x / (1 + exp(-2u)): it never overflows, and numpy's float32
    # tanh is the faster of the two (docs/performance.md)
    @backend.kernel("gelu_tanh")
    def forward(self, x):
        xp = _xp(x)
        self.shape = x.shape
        x = x.reshape(-1)              # 0-d arrays would turn into numpy scalars, which have no out=
        s = x * x
        s *= _C * _K
        s += _C
        s *= x                         # u
        xp.tanh(s, out=s)
        s *= 0.5
        s += 0.5                       # s = 0.5 (1 + tanh u)
        self.x, self.s = x, s
        return (x * s).reshape(self.shape)

    @backend.kernel("gelu_tanh")
    def backward(self, g):
        xp = _xp(g)
        x, s = self.x, self.s
        d = x * x
        d *= 6.0 * _C * _K
        d += 2.0 * _C
        d *= x                         # 2 x u'
        q = xp.subtract(1.0, s)        # 1 - s
        d *= q
        d += 1.0
        d *= s
        d *= g.reshape(-1)
        return d.reshape(self.shape)


# ================================================================ linear
class FusedLinear(Function):
    """y = x @ W^T + b,  x (..., in), W (out, in), b (out,).

    The batch dims are folded into one 2-D GEMM each way (x2d = x viewed as (N, in),
    g2d = dL/dy as (N, out)):
        dL/dx = g2d @ W,   dL/dW = g2d^T @ x2d,   dL/db = sum_rows g2d.
    """
    def forward(self, x, w, *b):
        self.xshape, self.w = x.shape, w
        self.x2 = x.reshape(-1, x.shape[-1])
        out = self.x2 @ w.T
        if b:
            out += b[0]
        return out.reshape(x.shape[:-1] + (w.shape[0],))

    def backward(self, g):
        need = self.needs_input_grad
        g2 = g.reshape(-1, g.shape[-1])
        dx = (g2 @ self.w).reshape(self.xshape) if need[0] else None
        dw = g2.T @ self.x2 if need[1] else None
        if len(need) == 2:
            return dx, dw
        return dx, dw, (g2.sum(0) if need[2] else None)


# ================================================================ attention
# How the attention ops lay out the scores. They work on the TRANSPOSED scores S^T = k q^T
# (keys down, queries across). The forward computes them key-major: for a batch (..., H) of
# score matrices (H = heads), S^T lives in memory as (..., Tk, H, Tq) and the matmul writes it
# through the strided view (..., H, Tk, Tq), at full BLAS speed. Softmax reduces over the keys,
# which is then axis -3: the max is an elementwise pass over H*Tq contiguous floats at a time,
# the per-query sum one BLAS vector-matrix product, and broadcasting them back runs over long
# rows too, where numpy's reductions along short rows pay a loop overhead per row. The final
# division writes P^T into a plain contiguous (..., H, Tk, Tq) array, which the backward's
# products and elementwise passes read faster than the key-major buffer. (Timings:
# docs/performance.md.)
_bias_cache: dict = {}


def _scores_buffer(xp, batch, tk, tq, dtype):
    """An uninitialised S^T for a batch of `batch` (..., H) score matrices: returns
    (mem, view), mem the (..., Tk, H, Tq) array, view the logical (..., H, Tk, Tq) view of it."""
    h = batch[-1] if batch else 1
    mem = xp.empty(tuple(batch[:-1]) + (tk, h, tq), dtype=dtype)
    return mem, mem.swapaxes(-3, -2).reshape(tuple(batch) + (tk, tq))


def _key_sum(mem):
    """sum over the keys (axis -3) of a (..., Tk, H, Tq) buffer, keepdims: (..., 1, H, Tq).
    One BLAS vector-matrix product: ones(Tk) @ (..., Tk, H*Tq)."""
    tk, h, tq = mem.shape[-3:]
    tot = _xp(mem).ones(tk, dtype=mem.dtype) @ mem.reshape(mem.shape[:-3] + (tk, h * tq))
    return tot.reshape(mem.shape[:-3] + (1, h, tq))


def _neg_inf_bias(drop_mask, h, dtype):
    """The additive form of a 2-D bool mask (Tq, Tk) in the key-major layout: a (Tk, H, Tq)
    array of `dtype`, 0 where a score is kept and -inf where `drop_mask` is True.

    Adding it before the max and exp masks the scores in one plain pass (cheaper than
    `copyto(-inf, where=mask)`: docs/performance.md), and exp(-inf) = 0 leaves the masked
    entries exactly zero. (Multiplying exp by a 0/1 mask afterwards would be no cheaper and
    unsafe: a masked score far above the max of the kept ones overflows exp, and 0 * inf is NaN.)
    Cached per mask object: the causal masks are themselves cached, so a training step builds
    this once. The cache holds the mask, so its id cannot be reused while the entry lives."""
    key = (id(drop_mask), h, np.dtype(dtype).str)
    hit = _bias_cache.get(key)
    if hit is not None and hit[0] is drop_mask:
        return hit[1]
    xp, dtype = _xp(drop_mask), np.dtype(dtype)
    shape = (drop_mask.shape[1], h, drop_mask.shape[0])
    bias = xp.ascontiguousarray(xp.where(xp.broadcast_to(drop_mask.T[:, None, :], shape),
                                         dtype.type(-np.inf), dtype.type(0)))
    if len(_bias_cache) >= 32:
        _bias_cache.clear()
    _bias_cache[key] = (drop_mask, bias)
    return bias


def _key_major_view(a):
    """A (..., H, Tk, Tq) array seen in the key-major shape (..., Tk, H, Tq) (H = 1 when 2-D)."""
    return a[:, None, :] if a.ndim == 2 else a.swapaxes(-3, -2)


def _softmax_keys(mem, out):
    """Softmax over the keys of a key-major S^T buffer `mem` (..., Tk, H, Tq), which it
    overwrites; the result goes to `out`, an array or view of mem's shape. Each query
    is shifted by its own max first, so any finite logits are safe (e.g. +-1000: the largest
    entry becomes exp(0) = 1). A query whose every score is -inf (it may attend to nothing)
    gets all zeros, not NaN: its max is clamped to the lowest finite float, so the scores stay
    -inf and exp gives 0, and its zero sum divides by 1."""
    xp = _xp(mem)
    m = mem.max(axis=-3, keepdims=True)
    xp.maximum(m, np.finfo(mem.dtype).min, out=m)
    mem -= m
    xp.exp(mem, out=mem)
    tot = _key_sum(mem)
    tot += tot == 0
    return xp.divide(mem, tot, out=out)


def _attention_forward(ctx, q, k, v, add_mask, drop_mask, scale, dropout_p, out=None):
    """y = dropout(softmax(q k^T * scale + mask)) v; saves P^T (..., Tk, Tq) and the dropout
    mask (transposed too) on ctx.

    `drop_mask`: bool, True where a score is masked out (-inf). `add_mask`: added to the
    scores. Either broadcasts against the scores (..., Tq, Tk)."""
    xp = _xp(q)
    tq, tk = q.shape[-2], k.shape[-2]
    batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2],
                                *(m.shape[:-2] for m in (add_mask, drop_mask) if m is not None))
    mem, st = _scores_buffer(xp, batch, tk, tq, q.dtype)
    _matmul(k, q.swapaxes(-1, -2), st)               # S^T
    mem *= scale
    if add_mask is not None:
        st += add_mask.swapaxes(-1, -2)
    if drop_mask is not None:
        if drop_mask.ndim == 2:                      # the common case (causal): one cached bias
            mem += _neg_inf_bias(drop_mask, mem.shape[-2], mem.dtype)
        else:
            xp.copyto(st, st.dtype.type(-np.inf), where=drop_mask.swapaxes(-1, -2))
    pt = xp.empty(tuple(batch) + (tk, tq), dtype=q.dtype)         # P^T, plain layout (see above)
    _softmax_keys(mem, _key_major_view(pt))
    ctx.p, ctx.keep = pt, None
    pdt = pt
    if dropout_p > 0.0:
        # drawn in (..., Tq, Tk) order, as the composed version draws it, then viewed transposed
        # on the scores' device, from backend.device_rng: the same mask on every device, nothing copied
        keep = backend.device_rng.dropout_mask(tuple(batch) + (tq, tk), dropout_p, pt.dtype, backend.device_of(pt))
        ctx.keep = keep.swapaxes(-1, -2)
        pdt = pt * ctx.keep
    ctx.pd = pdt
    return _matmul(pdt.swapaxes(-1, -2), v, out)


def _attention_backward(ctx, g, q, k, v, scale, outs=(None, None, None)):
    """dV = Pd^T dO;  dPd = dO V^T;  dP = dPd * keep;  dS = P * (dP - sum_j dP P) * scale;
    dQ = dS K;  dK = dS^T Q. Returns (dQ, dK, dV, dS/scale) at the broadcast batch shape
    (dS/scale only when ctx.need_mask, else None).

    Works on the transposed P^T and dP^T (..., Tk, Tq) (see above): sum_j dP P is a column
    sum, one BLAS vector-matrix product."""
    # (sum_j dP P = dO . y, FlashAttention's identity, measured slower here: P must be read for dS anyway)
    xp = _xp(g)
    pt = ctx.p
    dv = _matmul(ctx.pd, g, outs[2])
    dst = xp.matmul(v, g.swapaxes(-1, -2))          # dPd^T (..., Tk, Tq), then dS^T in place
    if ctx.keep is not None:
        dst *= ctx.keep
    pdp = dst * pt                                   # P * dP
    col_sum = xp.ones((1, pdp.shape[-2]), dtype=pdp.dtype) @ pdp      # sum_j P dP, (..., 1, Tq)
    xp.multiply(pt, col_sum, out=dst)
    xp.subtract(pdp, dst, out=dst)                   # dS^T = P * (dP - sum_j P dP)
    dmask = None
    if ctx.need_mask:
        dmask = (dst.copy() if scale != 1.0 else dst).swapaxes(-1, -2)
    if scale != 1.0:
        dst *= scale
    dq = _matmul(dst.swapaxes(-1, -2), k, outs[0])
    dk = _matmul(dst, q, outs[1])
    return dq, dk, dv, dmask


class FusedAttention(Function):
    """Scaled dot-product attention over (..., T, hs) tensors:

        S = q k^T * scale + M,   P = softmax(S) (rows),   Pd = dropout(P),   y = Pd v

        dV = Pd^T dO,  dPd = dO V^T,  dP = dPd * keep / (1 - p),
        dS = P * (dP - sum_j(dP * P)),  dQ = dS K * scale,  dK = dS^T Q * scale,  dM = dS.

    Inputs: q, k, v, and an additive float mask M when one is given as a tensor. `drop_mask`
    (a bool array, True = masked, e.g. the cached causal mask) is a constant. A fully masked
    row attends to nothing: its output and gradients are zero.
    """
    @backend.kernel("attention")
    def forward(self, q, k, v, *mask, drop_mask=None, scale=1.0, dropout_p=0.0):
        self.q, self.k, self.v, self.scale = q, k, v, scale
        self.need_mask = bool(mask) and self.needs_input_grad is not None and self.needs_input_grad[3]
        self.mshape = mask[0].shape if mask else None
        self.tiled = tiled.tiles_apply((q, k, v), q.shape[-2], k.shape[-2], drop_mask, mask[0] if mask else None,
                                       dropout_p)
        if self.tiled:  # causal, no dropout, on numpy: ops/attention.py, no T x T matrix
            return tiled.causal_forward(self, q, k, v, scale)
        return _attention_forward(self, q, k, v, mask[0] if mask else None, drop_mask, scale, dropout_p)

    @backend.kernel("attention")
    def backward(self, g):
        need = self.needs_input_grad
        if self.tiled:
            dq, dk, dv = tiled.causal_backward(self, g, self.scale)
            return (unbroadcast(dq, self.q.shape) if need[0] else None,
                    unbroadcast(dk, self.k.shape) if need[1] else None,
                    unbroadcast(dv, self.v.shape) if need[2] else None)
        dq, dk, dv, dm = _attention_backward(self, g, self.q, self.k, self.v, self.scale)
        grads = (unbroadcast(dq, self.q.shape) if need[0] else None,
                 unbroadcast(dk, self.k.shape) if need[1] else None,
                 unbroadcast(dv, self.v.shape) if need[2] else None)
        if self.mshape is None:
            return grads
        return grads + ((unbroadcast(dm, self.mshape) if self.need_mask else None),)


class FusedPackedCausalAttention(Function):
    """Causal multi-head self-attention straight from the packed c_attn output:

        qkv (B, T, 3C) -> q, k, v (B, nh, T, hs) -> y = causal_attention(q, k, v) -> (B, T, C)

    The math (and the backward) is `FusedAttention`'s with the causal mask. The difference is
    memory traffic: q, k, v are strided views into qkv, the output is written straight in
    (B, T, nh, hs) order, and the backward writes dq, dk, dv straight into one (B, T, 3C)
    gradient, so neither the head split nor the head merge copies anything and no zero-filled
    slice gradients are summed.
    """
    @backend.kernel("causal_attention")
    def forward(self, qkv, n_head, drop_mask, dropout_p=0.0):
        xp = _xp(qkv)
        b, t, c3 = qkv.shape
        c = c3 // 3
        hs = c // n_head
        x5 = qkv.reshape(b, t, 3, n_head, hs)
        self.q, self.k, self.v = (x5[:, :, i].transpose(0, 2, 1, 3) for i in range(3))   # (B, nh, T, hs) views
        self.scale, self.need_mask = 1.0 / float(np.sqrt(hs)), False
        y = xp.empty((b, t, n_head, hs), dtype=qkv.dtype)
        self.tiled = tiled.tiles_apply((qkv,), t, t, drop_mask, None, dropout_p)
        out = y.transpose(0, 2, 1, 3)
        if self.tiled:  # no dropout, on numpy: ops/attention.py
            tiled.causal_forward(self, self.q, self.k, self.v, self.scale, out)
        else:
            _attention_forward(self, self.q, self.k, self.v, None, drop_mask, self.scale, dropout_p, out=out)
        return y.reshape(b, t, c)

    @backend.kernel("causal_attention")
    def backward(self, g):
        xp = _xp(g)
        b, nh, t, hs = self.q.shape
        dqkv = xp.empty((b, t, 3, nh, hs), dtype=g.dtype)
        outs = tuple(dqkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
        dout = g.reshape(b, t, nh, hs).transpose(0, 2, 1, 3)
        if self.tiled:
            tiled.causal_backward(self, dout, self.scale, outs)
        else:
            _attention_backward(self, dout, self.q, self.k, self.v, self.scale, outs)
        return dqkv.reshape(b, t, 3 * nh * hs)


# ================================================================ preference optimization
class FusedDPOLoss(Function):
    """Direct Preference Optimization's loss from four sequence log-probabilities of one
    shape (one entry per preference pair): the policy's log pi(chosen) `pc` and
    log pi(rejected) `pr`, the frozen reference's log ref(chosen) `rc` and log ref(rejected) `rr`:

        z_i    = beta ((pc_i - rc_i) - (pr_i - rr_i))        (the reward margin)
        loss_i = -log sigmoid(z_i) = log(1 + e^(-z_i))       (computed as logaddexp(0, -z_i))
        mean: L = sum_i loss_i / N;   sum: L = sum_i loss_i;   none: L_i = loss_i

        dL/dz_i  = -w_i sigmoid(-z_i),   w_i = g / N (mean), g (sum), g_i (none)
        dL/dpc_i = -beta w_i sigmoid(-z_i) = -dL/dpr_i = -dL/drc_i = dL/drr_i

    sigmoid(-z_i) is how wrong the pair's ranking is: about 1 when the policy prefers the
    rejected answer more than the reference does, about 0 once it clearly prefers the chosen
    one, so pairs already learned stop pushing. Both sigmoid(-z) = exp(-logaddexp(0, z)) and
    the loss are computed without overflow for any z.
    """
    def forward(self, pc, pr, rc, rr, beta=0.1, reduction="mean"):
        xp = _xp(pc)
        z = pc - rc
        z -= pr - rr
        z *= beta
        zero = z.dtype.type(0)
        self.beta, self.reduction, self.n = beta, reduction, z.size
        self.weight = xp.exp(-xp.logaddexp(zero, z))     # sigmoid(-z), saved for backward
        loss = xp.logaddexp(zero, -z)
        if reduction == "none":
            return loss
        total = loss.sum()
        return total if reduction == "sum" else total / z.dtype.type(self.n)

    def backward(self, g):
        w = g if self.reduction == "none" else g / g.dtype.type(self.n) if self.reduction == "mean" else g
        d_chosen = self.weight * (-self.beta * w)          # dL/dpc = dL/drr
        need = self.needs_input_grad
        return (d_chosen if need[0] else None, -d_chosen if need[1] else None,
                -d_chosen if need[2] else None, d_chosen.copy() if need[3] else None)
