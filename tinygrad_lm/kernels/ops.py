"""The host side of each kernel: when it applies, grid and block sizes, what forward saves.

Each class here stands in for the methods of one op that `backend.kernel(name)` marks; its
`runtime(runtimes, ...)` gets the backend's `kernels.Runtimes` (where kernels can run now),
then the same arguments as the op's forward (or the optimizer's step), and returns the
runtime that will run the kernels, or None to leave the call to the op's own numpy code (an
unsupported dtype, layout, mask, dropout ...). `forward(rt, ctx, ...)` and `backward(rt, ctx,
g)` then do the op's work with kernels, saving on ctx what they need (under `_k_*` names)
and returning exactly what the op's own methods return. The op's docstring has the math; the
.cu file has it again beside the code.

A runtime (kernels.CupyRuntime, or the CPU emulation under tests/) supplies `function`,
`launch`, `device`, `empty`, `contiguous`, `ptr`, `sm_count` and `max_shared`; everything
here is written against it, so the emulation runs exactly this code.
"""
from __future__ import annotations

import math

import numpy as np

from . import CTYPE, ByValue, launch

_FLOAT_TYPES = (np.dtype(np.float32), np.dtype(np.float64))
_INT32_MAX = 2 ** 31 - 1


def _threads(n: int, per_thread: int = 8) -> int:
    """Threads for a block that walks n entries: a power of two from 32 to 1024, about
    `per_thread` entries each."""
    t = 32
    while t < 1024 and t * per_thread < n:
        t *= 2
    return t


def _rt_of(runtimes, *arrays):
    """The common runtime of `arrays` (all float32 or all float64, one array type), else None."""
    rt = runtimes.for_array(arrays[0])
    if rt is None:
        return None
    dt = arrays[0].dtype
    for a in arrays:
        if a.dtype != dt or not rt.owns(a):
            return None
    return rt if dt in _FLOAT_TYPES else None


# ================================================================ softmax, log_softmax
class _RowSoftmax:
    """ops.fused.FusedSoftmax / FusedLogSoftmax over the last dim of a C-contiguous array."""
    def __init__(self, log: bool):
        self.fwd = "log_softmax_fwd" if log else "softmax_fwd"
        self.bwd = "log_softmax_bwd" if log else "softmax_bwd"

    def runtime(self, runtimes, ctx, x, dim=-1):
        if x.ndim == 0 or dim not in (-1, x.ndim - 1) or x.size == 0 or not x.flags.c_contiguous:
            return None
        if x.shape[-1] > _INT32_MAX or x.size // x.shape[-1] > _INT32_MAX:
            return None
        return _rt_of(runtimes, x)

    def forward(self, rt, ctx, x, dim=-1):
        cols = x.shape[-1]
        y = rt.empty(x.shape, x.dtype)
        launch(rt, "softmax.cu", f"{self.fwd}<{CTYPE[x.dtype]}>", (x.size // cols,), (_threads(cols),),
               (x, y, np.int32(cols)))
        ctx._k_out = y                   # softmax: p; log_softmax: y = log p
        return y

    def backward(self, rt, ctx, g):
        y = ctx._k_out
        cols = y.shape[-1]
        g = rt.contiguous(g.astype(y.dtype, copy=False))
        dx = rt.empty(y.shape, y.dtype)
        launch(rt, "softmax.cu", f"{self.bwd}<{CTYPE[y.dtype]}>", (y.size // cols,), (_threads(cols),),
               (y, g, dx, np.int32(cols)))
        return dx


# ================================================================ cross-entropy
class _CrossEntropy:
    """ops.fused.FusedSoftmaxCrossEntropy: x (N, C) float, y (N,) integer targets."""
    _MODES = {"none": 0, "sum": 1, "mean": 2}

    def runtime(self, runtimes, ctx, x, y, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0 or not x.flags.c_contiguous:
            return None
        if x.shape[0] > _INT32_MAX or x.shape[1] > _INT32_MAX or reduction not in self._MODES:
            return None
        rt = _rt_of(runtimes, x)
        return rt if rt is not None and rt.owns(y) and y.dtype.kind in "iu" else None

    def forward(self, rt, ctx, x, y, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        n, c = x.shape
        dt, ct = x.dtype, CTYPE[x.dtype]
        y = rt.contiguous(y.astype(np.int64, copy=False))
        loss, stats = rt.empty((n,), dt), rt.empty((n, 2), dt)
        launch(rt, "cross_entropy.cu", f"cross_entropy_fwd<{ct}>", (n,), (_threads(c),),
               (x, y, loss, stats, np.int32(c), np.int64(ignore_index), dt.type(label_smoothing)))
        ctx._k_saved = (x, y, stats, None)
        ctx._k_args = (reduction, int(ignore_index), float(label_smoothing))
        if reduction == "none":
            return loss
        out = rt.empty((2,), dt)                 # (loss, number of counted rows)
        launch(rt, "cross_entropy.cu", f"cross_entropy_reduce<{ct}>", (1,), (_threads(n),),
               (loss, y, out, np.int32(n), np.int64(ignore_index), np.int32(reduction == "mean")))
        ctx._k_saved = (x, y, stats, out[1:])
        return out[:1].reshape(())

    def backward(self, rt, ctx, g):
        x, y, stats, count = ctx._k_saved
        reduction, ignore_index, eps = ctx._k_args
        n, c = x.shape
        g = rt.contiguous(g.astype(x.dtype, copy=False))
        dx = rt.empty((n, c), x.dtype)
        launch(rt, "cross_entropy.cu", f"cross_entropy_bwd<{CTYPE[x.dtype]}>", (n,), (_threads(c),),
               (x, y, stats, g, count, dx, np.int32(c), np.int64(ignore_index), x.dtype.type(eps),
                np.int32(self._MODES[reduction])))
        return dx, None


# ================================================================ layer norm
class _LayerNorm:
    """ops.fused.FusedLayerNorm over the last d entries; weight and bias optional."""

    def runtime(self, runtimes, ctx, x, *wb, d, eps=1e-5, has_weight=True, has_bias=True):
        if x.size == 0 or d == 0 or not x.flags.c_contiguous or x.size // d > _INT32_MAX:
            return None
        if any(not p.flags.c_contiguous for p in wb):
            return None
        if 2 * d * x.dtype.itemsize > 48 * 1024:     # the backward's per-column accumulators
            return None
        return _rt_of(runtimes, x, *wb)

    def forward(self, rt, ctx, x, *wb, d, eps=1e-5, has_weight=True, has_bias=True):
        n = x.size // d
        w = wb[0] if has_weight else None
        b = wb[int(has_weight)] if has_bias else None
        y = rt.empty(x.shape, x.dtype)
        mean, rstd = rt.empty((n,), x.dtype), rt.empty((n,), x.dtype)
        launch(rt, "layernorm.cu", f"layernorm_fwd<{CTYPE[x.dtype]}>", (n,), (_threads(d),),
               (x, w, b, y, mean, rstd, np.int32(d), x.dtype.type(eps)))
        ctx._k_saved = (x, w, mean, rstd)
        ctx._k_args = (d, has_weight, has_bias, w.shape if w is not None else None, b.shape if b is not None else None)
        return y

    def backward(self, rt, ctx, dy):
        x, w, mean, rstd = ctx._k_saved
        d, has_weight, has_bias, wshape, bshape = ctx._k_args
        need = ctx.needs_input_grad
        n = x.size // d
        dt, ct = x.dtype, CTYPE[x.dtype]
        need_w, need_b = has_weight and need[1], has_bias and need[-1]
        dy = rt.contiguous(dy.astype(dt, copy=False))
        dx = rt.empty(x.shape, dt) if need[0] else None
        # a few blocks per SM, each looping over rows (its per-column sums stay in shared memory),
        # and wider blocks than the forward's: there are only `groups` of them (not tuned on a GPU yet)
        groups = max(1, min(n, 8 * rt.sm_count()))
        partial = rt.empty((groups, 2, d), dt) if need_w or need_b else None
        launch(rt, "layernorm.cu", f"layernorm_bwd<{ct}>", (groups,), (max(128, _threads(d, 2)),),
               (dy, x, w, mean, rstd, dx, partial, np.int32(n), np.int32(d)),
               shared_mem=2 * d * dt.itemsize if partial is not None else 0)
        dw = rt.empty(wshape, dt) if need_w else None
        db = rt.empty(bshape, dt) if need_b else None
        if partial is not None:
            launch(rt, "layernorm.cu", f"layernorm_param_bwd<{ct}>", ((d + 255) // 256,), (256,),
                   (partial, dw, db, np.int32(groups), np.int32(d)))
        grads = ([dw] if has_weight else []) + ([db] if has_bias else [])
        return (dx, *grads)


# ================================================================ GELU
class _Gelu:
    """ops.fused.FusedGeluTanh (tanh always) and ops.elementwise.Gelu (exact or tanh)."""
    def __init__(self, always_tanh: bool):
        self.always_tanh = always_tanh

    def _approx(self, approximate):
        return 1 if self.always_tanh or approximate == "tanh" else 0

    def runtime(self, runtimes, ctx, x, approximate="none"):
        if x.size == 0 or not x.flags.c_contiguous or (not self.always_tanh and approximate not in ("none", "tanh")):
            return None
        return _rt_of(runtimes, x)

    @staticmethod
    def _grid(n):
        return (max(1, min((n + 255) // 256, 8192)),), (256,)

    def forward(self, rt, ctx, x, approximate="none"):
        y = rt.empty(x.shape, x.dtype)
        grid, block = self._grid(x.size)
        a = self._approx(approximate)
        launch(rt, "gelu.cu", f"gelu_fwd<{CTYPE[x.dtype]}>", grid, block, (x, y, np.int64(x.size), np.int32(a)))
        ctx._k_saved, ctx._k_args = x, a
        return y

    def backward(self, rt, ctx, g):
        x, a = ctx._k_saved, ctx._k_args
        g = rt.contiguous(g.astype(x.dtype, copy=False))
        dx = rt.empty(x.shape, x.dtype)
        grid, block = self._grid(x.size)
        launch(rt, "gelu.cu", f"gelu_bwd<{CTYPE[x.dtype]}>", grid, block, (x, g, dx, np.int64(x.size), np.int32(a)))
        return dx


# ================================================================ attention
LAYOUT = np.dtype([("b", "<i8"), ("h", "<i8"), ("t", "<i8")], align=True)            # struct Layout
DIMS = np.dtype([("H", "<i4"), ("Tq", "<i4"), ("Tk", "<i4"), ("hd", "<i4"), ("causal", "<i4")], align=True)
_TILE = 32


def _layout(a, b_axis, h_axis, t_axis):
    """The Layout (element strides of the b, h and t axes) of array `a`; an axis given as None
    has stride 0."""
    st = [s // a.itemsize for s in a.strides]
    return ByValue(np.array([tuple(st[i] if i is not None else 0 for i in (b_axis, h_axis, t_axis))], dtype=LAYOUT))


def _nk(hd):
    return 1 if hd <= 32 else 2 if hd <= 64 else 4


def attention_shared_bytes(hd: int, itemsize: int) -> dict:
    """Dynamic shared memory of each attention kernel (attention.cu's layout), in bytes."""
    t = _TILE
    return {"attn_fwd": (t * hd + t * (hd + 1) + t * hd) * itemsize,
            "attn_bwd_dkdv": (2 * t * hd + 2 * t * (hd + 1) + 2 * t) * itemsize,
            "attn_bwd_dq": (2 * t * hd + 2 * t * (hd + 1)) * itemsize}


def _attention_fits(rt, hd, z, tq, tk, itemsize):
    return (0 < hd <= 128 and 0 < z <= 65535 and 0 < tq < _INT32_MAX and 0 < tk < _INT32_MAX
            and max(attention_shared_bytes(hd, itemsize).values()) <= rt.max_shared())


class _AttentionCore:
    """The kernels shared by both attention ops: q, k, v, o, dO given as (array, Layout)."""

    @staticmethod
    def forward(rt, q, k, v, o, z, h, tq, tk, hd, causal, scale):
        dt, ct = o[0].dtype, CTYPE[o[0].dtype]
        dims = ByValue(np.array([(h, tq, tk, hd, int(causal))], dtype=DIMS))
        lse = rt.empty((z, tq), dt)
        launch(rt, "attention.cu", f"attn_fwd<{ct}, {_nk(hd)}>", ((tq + _TILE - 1) // _TILE, z), (128,),
               (q[0], q[1], k[0], k[1], v[0], v[1], o[0], o[1], lse, dims, dt.type(scale)),
               shared_mem=attention_shared_bytes(hd, dt.itemsize)["attn_fwd"])
        return lse, dims

    @staticmethod
    def backward(rt, q, k, v, o, do, dq, dk, dv, lse, dims, z, tq, tk, hd, scale):
        dt, ct = lse.dtype, CTYPE[lse.dtype]
        sm = attention_shared_bytes(hd, dt.itemsize)
        delta = rt.empty((z, tq), dt)
        launch(rt, "attention.cu", f"attn_bwd_delta<{ct}>", ((tq + 3) // 4, z), (128,),
               (o[0], o[1], do[0], do[1], delta, dims))
        launch(rt, "attention.cu", f"attn_bwd_dkdv<{ct}, {_nk(hd)}>", ((tk + _TILE - 1) // _TILE, z), (128,),
               (q[0], q[1], k[0], k[1], v[0], v[1], do[0], do[1], lse, delta, dk[0], dk[1], dv[0], dv[1], dims,
                dt.type(scale)), shared_mem=sm["attn_bwd_dkdv"])
        launch(rt, "attention.cu", f"attn_bwd_dq<{ct}, {_nk(hd)}>", ((tq + _TILE - 1) // _TILE, z), (128,),
               (q[0], q[1], k[0], k[1], v[0], v[1], do[0], do[1], lse, delta, dq[0], dq[1], dims, dt.type(scale)),
               shared_mem=sm["attn_bwd_dq"])


class _Attention:
    """ops.fused.FusedAttention without masks or dropout: q (..., Tq, hd), k and v (..., Tk, hd),
    the same batch dims, C-contiguous (no causal mask either: that case comes as a bool
    drop_mask, which could be any mask, and is left to the numpy code)."""

    def runtime(self, runtimes, ctx, q, k, v, *mask, drop_mask=None, scale=1.0, dropout_p=0.0):
        if mask or drop_mask is not None or dropout_p != 0.0 or q.ndim < 2:
            return None
        if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2] and q.shape[-1] == k.shape[-1] == v.shape[-1]
                and k.shape[-2] == v.shape[-2]) or not all(a.flags.c_contiguous for a in (q, k, v)):
            return None
        rt = _rt_of(runtimes, q, k, v)
        z = q.size // max(1, q.shape[-2] * q.shape[-1])
        if rt is None or not _attention_fits(rt, q.shape[-1], z, q.shape[-2], k.shape[-2], q.itemsize):
            return None
        return rt

    @staticmethod
    def _flat(a):
        return a.reshape((-1,) + a.shape[-2:])           # (Z, T, hd): a view (C-contiguous)

    def forward(self, rt, ctx, q, k, v, *mask, drop_mask=None, scale=1.0, dropout_p=0.0):
        tq, tk, hd = q.shape[-2], k.shape[-2], q.shape[-1]
        q3, k3, v3 = self._flat(q), self._flat(k), self._flat(v)
        z = q3.shape[0]
        o = rt.empty(q.shape, q.dtype)
        o3 = self._flat(o)
        lay = lambda a: (a, _layout(a, 0, None, 1))      # noqa: E731  (H = 1: the batch is all b)
        lse, dims = _AttentionCore.forward(rt, lay(q3), lay(k3), lay(v3), lay(o3), z, 1, tq, tk, hd, False, scale)
        ctx._k_saved = (q3, k3, v3, o3, lse, dims)
        ctx._k_args = (q.shape, k.shape, scale)
        return o

    def backward(self, rt, ctx, g):
        q3, k3, v3, o3, lse, dims = ctx._k_saved
        qshape, kshape, scale = ctx._k_args
        z, tq, hd = q3.shape
        tk = k3.shape[1]
        do3 = self._flat(rt.contiguous(g.astype(q3.dtype, copy=False)))
        dq, dk, dv = rt.empty(q3.shape, q3.dtype), rt.empty(k3.shape, q3.dtype), rt.empty(k3.shape, q3.dtype)
        lay = lambda a: (a, _layout(a, 0, None, 1))      # noqa: E731
        _AttentionCore.backward(rt, lay(q3), lay(k3), lay(v3), lay(o3), lay(do3), lay(dq), lay(dk), lay(dv), lse, dims,
                                z, tq, tk, hd, scale)
        need = ctx.needs_input_grad
        return (dq.reshape(qshape) if need[0] else None, dk.reshape(kshape) if need[1] else None,
                dv.reshape(kshape) if need[2] else None)


class _PackedCausalAttention:
    """ops.fused.FusedPackedCausalAttention without dropout: qkv (B, T, 3C) C-contiguous, read in
    place as (B, T, 3, H, hd); the output is written as (B, T, H, hd) = (B, T, C)."""

    def runtime(self, runtimes, ctx, qkv, n_head, drop_mask, dropout_p=0.0):
        if dropout_p != 0.0 or qkv.ndim != 3 or not qkv.flags.c_contiguous or qkv.shape[-1] % (3 * n_head):
            return None
        rt = _rt_of(runtimes, qkv)
        b, t, c3 = qkv.shape
        if rt is None or not _attention_fits(rt, c3 // (3 * n_head), b * n_head, t, t, qkv.itemsize):
            return None
        return rt

    def forward(self, rt, ctx, qkv, n_head, drop_mask, dropout_p=0.0):
        b, t, c3 = qkv.shape
        c, hd = c3 // 3, c3 // (3 * n_head)
        x5 = qkv.reshape(b, t, 3, n_head, hd)
        q, k, v = (x5[:, :, i] for i in range(3))         # (B, T, H, hd) views
        y = rt.empty((b, t, n_head, hd), qkv.dtype)
        lay = lambda a: (a, _layout(a, 0, 2, 1))          # noqa: E731  (b, h, t) axes of (B, T, H, hd)
        scale = 1.0 / math.sqrt(hd)
        lse, dims = _AttentionCore.forward(rt, lay(q), lay(k), lay(v), lay(y), b * n_head, n_head, t, t, hd, True, scale)
        ctx._k_saved = (qkv, y, lse, dims)
        ctx._k_args = (n_head, scale)
        return y.reshape(b, t, c)

    def backward(self, rt, ctx, g):
        qkv, y, lse, dims = ctx._k_saved
        n_head, scale = ctx._k_args
        b, t, c3 = qkv.shape
        hd = c3 // (3 * n_head)
        x5 = qkv.reshape(b, t, 3, n_head, hd)
        dqkv = rt.empty((b, t, 3, n_head, hd), qkv.dtype)
        do = rt.contiguous(g.astype(qkv.dtype, copy=False)).reshape(b, t, n_head, hd)
        lay = lambda a: (a, _layout(a, 0, 2, 1))          # noqa: E731
        _AttentionCore.backward(rt, lay(x5[:, :, 0]), lay(x5[:, :, 1]), lay(x5[:, :, 2]), lay(y), lay(do),
                                lay(dqkv[:, :, 0]), lay(dqkv[:, :, 1]), lay(dqkv[:, :, 2]), lse, dims,
                                b * n_head, t, t, hd, scale)
        return dqkv.reshape(b, t, c3)


# ================================================================ AdamW
MAX_TENSORS, MAX_SLOTS, CHUNK = 64, 8, 4096          # adamw.cu's ADAMW_MAX_TENSORS, ADAMW_MAX_SLOTS, ADAMW_CHUNK
_SLOT_FIELDS = ("b1", "one_minus_b1", "b2", "one_minus_b2", "decay", "l2", "step_scale", "eps_hat")


def adamw_table_dtype(dt) -> np.dtype:
    """The numpy twin of adamw.cu's `AdamWTable<T>` (C layout: align=True)."""
    slot = np.dtype([(f, dt) for f in _SLOT_FIELDS], align=True)
    return np.dtype([("p", "<u8", (MAX_TENSORS,)), ("g", "<u8", (MAX_TENSORS,)), ("m", "<u8", (MAX_TENSORS,)),
                     ("v", "<u8", (MAX_TENSORS,)), ("n", "<i8", (MAX_TENSORS,)), ("slot", slot, (MAX_SLOTS,)),
                     ("block_start", "<i4", (MAX_TENSORS + 1,)), ("slot_of", "u1", (MAX_TENSORS,)), ("count", "<i4"),
                     ("skip", "<u8")], align=True)


class _AdamW:
    """optim.AdamW.step (and Adam's): every parameter with a gradient in as few launches as
    the 4 KB argument table allows (64 tensors and 8 distinct (group, step) slots a launch).
    `found_inf` on the device goes in as the table's `skip` pointer, read by the kernel (a set
    flag: the kernel returns, nothing changes); a host flag is read here (optim.Optimizer._skip_flag)."""

    def runtime(self, runtimes, opt, found_inf=None):
        arrays = []
        for g in opt.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    if not p.data.flags.c_contiguous or not p.grad.data.flags.c_contiguous or p.data.size == 0:
                        return None
                    arrays += [p.data, p.grad.data]
        return _rt_of(runtimes, *arrays) if arrays else None

    def step(self, rt, opt, found_inf=None):
        skip, flag = opt._skip_flag(found_inf)
        if skip:
            return
        entries = []                 # (p, g, m, v, slot values)
        for group in opt.param_groups:
            lr, (b1, b2), eps, wd, decoupled = group["lr"], group["betas"], group["eps"], group["weight_decay"], \
                group["decoupled"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = opt._state_for(p, ("exp_avg", "exp_avg_sq"))
                st["step"] += 1
                t = st["step"]
                bc2_sqrt = math.sqrt(1.0 - b2 ** t)
                slot = (b1, 1.0 - b1, b2, 1.0 - b2, 1.0 - lr * wd if (wd and decoupled) else 1.0,
                        wd if (wd and not decoupled) else 0.0, -lr * bc2_sqrt / (1.0 - b1 ** t), eps * bc2_sqrt)
                entries.append((p.data, p.grad.data, st["exp_avg"], st["exp_avg_sq"], slot))
        dt = entries[0][0].dtype
        tdt = adamw_table_dtype(dt)
        start = 0
        while start < len(entries):
            slots, chunk = [], []
            for e in entries[start:start + MAX_TENSORS]:
                if e[4] not in slots:
                    if len(slots) == MAX_SLOTS:
                        break
                    slots.append(e[4])
                chunk.append(e)
            table = np.zeros(1, dtype=tdt)           # one record: the kernel's by-value argument
            ptrs = {f: table[f][0] for f in ("p", "g", "m", "v")}
            sizes, slot_of, block_start = table["n"][0], table["slot_of"][0], table["block_start"][0]
            blocks = 0
            for i, (p, g, m, v, slot) in enumerate(chunk):
                for f, a in zip("pgmv", (p, g, m, v)):
                    ptrs[f][i] = rt.ptr(a)
                sizes[i] = p.size
                slot_of[i] = slots.index(slot)
                block_start[i] = blocks
                blocks += (p.size + CHUNK - 1) // CHUNK
            block_start[len(chunk)] = blocks
            for f_i, f in enumerate(_SLOT_FIELDS):
                table["slot"][f][0, :len(slots)] = [slot[f_i] for slot in slots]
            table["count"] = len(chunk)
            table["skip"] = rt.ptr(flag) if flag is not None else 0
            launch(rt, "adamw.cu", f"adamw_step<{CTYPE[dt]}>", (blocks,), (256,), (ByValue(table),))
            start += len(chunk)


# ================================================================ dropout masks
class _DropoutMask:
    """backend.DeviceGenerator.dropout_mask in one launch (dropout.cu): the generator's words
    computed in registers, only the mask written. Same arguments, same bits, and the counter
    advances alike."""

    def runtime(self, runtimes, gen, shape, p, dtype=np.float32, device="cpu"):
        if not 0.0 <= p < 1.0 or np.dtype(dtype) not in _FLOAT_TYPES:
            return None                      # the method says what is wrong, or handles it
        return runtimes.for_device(device)

    def dropout_mask(self, rt, gen, shape, p, dtype=np.float32, device="cpu"):
        dtype = np.dtype(dtype)
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        n = int(np.prod(shape))
        offset = gen._reserve((n + 1) // 2)
        with rt.device(device):
            out = rt.empty(shape, dtype)
            if n:
                grid = (max(1, min(((n + 1) // 2 + 255) // 256, 8192)),)
                launch(rt, "dropout.cu", f"dropout_mask<{CTYPE[dtype]}>", grid, (256,),
                       (out, np.int64(n), np.uint64(offset), np.uint32(gen.threshold(p)), dtype.type(1.0 / (1.0 - p))))
        return out


OPS = {
    "softmax": _RowSoftmax(log=False),
    "log_softmax": _RowSoftmax(log=True),
    "cross_entropy": _CrossEntropy(),
    "layer_norm": _LayerNorm(),
    "gelu_tanh": _Gelu(always_tanh=True),
    "gelu": _Gelu(always_tanh=False),
    "attention": _Attention(),
    "causal_attention": _PackedCausalAttention(),
    "adamw": _AdamW(),
    "dropout_mask": _DropoutMask(),
}
