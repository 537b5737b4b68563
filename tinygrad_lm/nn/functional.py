"""Neural-network functions (PyTorch's `torch.nn.functional`, the part a GPT needs).

softmax, log_softmax, cross_entropy, layer_norm, linear, scaled_dot_product_attention and
dpo_loss exist twice:

* **fused** (the default): one `Function` from `ops/fused.py` with a hand-derived backward
  (softmax + cross-entropy gives p - y);
* **composed**: built from primitive Tensor ops, so autograd derives the backward.

Pick per call with `impl="fused"` / `impl="composed"`, or for everything at once with
`use_fused(False)`, which works both as a plain call (switches until switched back) and as a
context manager (switches for the block)::

    F.use_fused(False)                 # composed from here on
    with F.use_fused(True): ...        # fused inside the block only

Deviations from PyTorch are noted per function (search "Deviation").
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..ops import fused
from ..engine import broadcast_shapes
from ..tensor import Tensor, stack, where
from ..tensor import embedding as _embedding

# ================================================================ fused / composed switch
_use_fused = True


class use_fused:
    """`use_fused(True|False)`: choose the fused or composed implementations of the ops above.
    Takes effect at once; used as a context manager it restores the previous choice on exit."""

    def __init__(self, enabled: bool = True):
        global _use_fused
        self.prev, _use_fused = _use_fused, bool(enabled)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _use_fused
        _use_fused = self.prev


def fused_enabled() -> bool:
    return _use_fused


def _fused_for(impl, op) -> bool:
    if impl is None:
        return _use_fused
    if impl == "fused":
        return True
    if impl == "composed":
        return False
    raise ValueError(f"{op}: impl must be 'fused', 'composed' or None, got {impl!r}")


def _dim(dim, ndim, op) -> int:
    if not -ndim <= dim < ndim:
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor of {ndim} dims")
    return dim % ndim


# ================================================================ causal mask cache
_causal_masks: dict = {}


def causal_mask(tq: int, tk: int | None = None, offset: int = 0, device: str = "cpu"):
    """A bool array (tq, tk), True where query i may NOT look at key j, i.e. j > i + offset.

    offset = 0 is PyTorch's `is_causal` (top-left aligned); offset = tk - tq aligns the
    queries with the last tq keys (new tokens after a KV cache). Cached per
    (tq, tk, offset, device), so a training step never rebuilds it."""
    tk = tq if tk is None else tk
    key = (tq, tk, offset, device)
    m = _causal_masks.get(key)
    if m is None:
        if len(_causal_masks) > 256:
            _causal_masks.clear()
        xp = backend.xp_for(device)
        m = xp.arange(tk)[None, :] > xp.arange(tq)[:, None] + offset
        _causal_masks[key] = m
    return m


# ================================================================ activations
def relu(input: Tensor) -> Tensor:
    return input.relu()


def gelu(input: Tensor, approximate: str = "none", impl: str | None = None) -> Tensor:
    """x * Phi(x); approximate='tanh' is GPT-2's 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

    Both implementations are single ops: fused tanh-GELU is `FusedGeluTanh` (in-place passes),
    otherwise the elementwise `Gelu` op."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    if approximate == "tanh" and _fused_for(impl, "gelu"):
        return fused.FusedGeluTanh.apply(input)
    return input.gelu(approximate)


def softmax(input: Tensor, dim: int = -1, impl: str | None = None) -> Tensor:
    """p_i = e^(x_i) / sum_j e^(x_j) along `dim`, computed as e^(x_i - max x).

    Deviation: a row of all -inf gives zeros (PyTorch: NaN)."""
    d = _dim(dim, input.ndim, "softmax")
    if _fused_for(impl, "softmax"):
        return fused.FusedSoftmax.apply(input, dim=d)
    e = (input - _shift(input, d)).exp()
    s = e.sum(d, keepdim=True)
    return e / where(s == 0, 1.0, s)


def log_softmax(input: Tensor, dim: int = -1, impl: str | None = None) -> Tensor:
    """log p_i = x_i - log sum_j e^(x_j), computed with the max shifted out."""
    d = _dim(dim, input.ndim, "log_softmax")
    if _fused_for(impl, "log_softmax"):
        return fused.FusedLogSoftmax.apply(input, dim=d)
    sh = input - _shift(input, d)
    return sh - sh.exp().sum(d, keepdim=True).log()


def _shift(x: Tensor, d: int) -> Tensor:
    """The row max as a constant (softmax is shift-invariant, so it needs no gradient);
    0 for rows that are entirely -inf."""
    m = x.detach().amax(d, keepdim=True)
    return m.masked_fill(~m.isfinite(), 0.0)


# ================================================================ losses
def cross_entropy(input: Tensor, target, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0, impl: str | None = None) -> Tensor:
    """Mean (or sum, or per-row) of -sum_c q_c log softmax(x)_c, with q the target one-hot
    smoothed by `label_smoothing` (q = (1 - eps) onehot + eps / C).

    input (N, C) with integer target (N,), as in PyTorch; rows whose target equals
    `ignore_index` count neither in the loss nor in N. As a convenience (and a deviation:
    PyTorch puts classes on dim 1 for >2-D input), any (..., C) input with target (...) is
    flattened to (N, C) / (N,), so a GPT's (B, T, V) logits go in with (B, T) targets;
    reduction='none' then returns shape (...).
    """
    target = _as_index(target, input.device, "cross_entropy")
    if input.ndim < 1 or target.shape != input.shape[:-1]:
        raise ValueError(f"cross_entropy: expected target of shape {input.shape[:-1]} for input of shape {input.shape} "
                         f"(classes on the last dim), got target shape {target.shape}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    c = input.shape[-1]
    _check_targets("cross_entropy", target, c, ignore_index, input.shape)
    x2, y = input.reshape(-1, c), target.data.reshape(-1)
    if _fused_for(impl, "cross_entropy"):
        out = fused.FusedSoftmaxCrossEntropy.apply(x2, Tensor._wrap(y), ignore_index=ignore_index, reduction=reduction,
                                                   label_smoothing=float(label_smoothing))
    else:
        out = _nll(log_softmax(x2, 1, impl="composed"), y, ignore_index, reduction, float(label_smoothing))
    return out.reshape(target.shape) if reduction == "none" else out


def nll_loss(input: Tensor, target, ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """-log-probability of the target class: input (N, C) log-probabilities, target (N,)
    (or (..., C) with (...), as in cross_entropy). Composed from primitives."""
    target = _as_index(target, input.device, "nll_loss")
    if input.ndim < 1 or target.shape != input.shape[:-1]:
        raise ValueError(f"nll_loss: expected target of shape {input.shape[:-1]} for input of shape {input.shape}, "
                         f"got target shape {target.shape}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"nll_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    c = input.shape[-1]
    _check_targets("nll_loss", target, c, ignore_index, input.shape)
    out = _nll(input.reshape(-1, c), target.data.reshape(-1), ignore_index, reduction, 0.0)
    return out.reshape(target.shape) if reduction == "none" else out


def _nll(logp: Tensor, y, ignore_index, reduction, label_smoothing) -> Tensor:
    xp = logp.xp
    valid = y != ignore_index
    picked = logp.gather(1, Tensor._wrap(xp.where(valid, y, 0)[:, None])).reshape(-1)
    loss = -picked
    if label_smoothing:
        loss = loss * (1.0 - label_smoothing) - logp.mean(1) * label_smoothing
    loss = loss.masked_fill(Tensor._wrap(~valid), 0.0)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    # every row ignored: 0 / 0 = NaN, and backward's g / 0 = inf stops at the masked_fill above
    # (a select, not a product with 0), so x gets zeros: PyTorch's values, with no special case
    return loss.sum() / Tensor._wrap(xp.asarray(valid.sum(), dtype=logp.dtype))


def _as_index(target, device, op) -> Tensor:
    t = target if isinstance(target, Tensor) else Tensor(target, device=device)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices, got dtype {t.dtype}")
    return t


def _check_targets(op, target, c, ignore_index, shape):
    y = target.data
    if y.size == 0:
        return
    span = getattr(target, "_span", None)   # the range, when known without reading a GPU (tensor._note_span)
    if span is not None and span[0] is y:
        lo, hi = span[1], span[2]
        # every value lies in [lo, hi] (both attained): fine if the parts below 0 and from c up
        # are empty or the single value ignore_index
        if (lo >= 0 or lo == min(hi, -1) == ignore_index) and (hi < c or hi == max(lo, c) == ignore_index):
            return
    bad = (y != ignore_index) & ((y < 0) | (y >= c))
    if bool(bad.any()):
        v = y[bad]
        raise IndexError(f"{op}: target values must be in [0, {c}) or equal ignore_index={ignore_index} for input of "
                         f"shape {shape}; got out-of-range values spanning [{int(v.min())}, {int(v.max())}]")


def mse_loss(input: Tensor, target, reduction: str = "mean") -> Tensor:
    """(x - y)^2, averaged (or summed). Deviation: shapes must match (PyTorch broadcasts with a warning)."""
    target = target if isinstance(target, Tensor) else Tensor(target, dtype=input.dtype, device=input.device)
    if target.shape != input.shape:
        raise ValueError(f"mse_loss: input shape {input.shape} and target shape {target.shape} differ")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"mse_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    d = input - target
    sq = d * d
    return sq if reduction == "none" else sq.sum() if reduction == "sum" else sq.mean()


def dpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, reference_chosen_logps,
             reference_rejected_logps, beta: float = 0.1, reduction: str = "mean", impl: str | None = None) -> Tensor:
    """Direct Preference Optimization's loss (Rafailov et al., 2023) from the four sequence
    log-probabilities of a batch of preference pairs (each of one shape, one entry per pair):

        z      = beta * ((log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected)))
        loss   = -log sigmoid(z),  averaged over the pairs (reduction "mean"), summed ("sum")
                 or per pair ("none")

        d loss / d log pi(chosen)   = -beta * sigmoid(-z)    (per pair, before the reduction)
        d loss / d log pi(rejected) = +beta * sigmoid(-z)

    pi is the policy being trained, ref the frozen reference (usually the model DPO starts
    from), and beta * (log pi - log ref) the implicit reward of an answer, so z is the reward
    margin of the chosen answer over the rejected one. sigmoid(-z) weighs each pair by how
    wrong its ranking still is. The reference log-probabilities are constants in practice
    (pass arrays or tensors without grad); if they do require a gradient they get the
    negated ones. z = 0 (policy = reference) gives log 2 = 0.6931 per pair.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"dpo_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not (isinstance(beta, (int, float)) and not isinstance(beta, bool) and math.isfinite(beta) and beta > 0):
        raise ValueError(f"dpo_loss: beta must be a finite number > 0, got {beta!r}")
    pc = policy_chosen_logps
    ts = [pc] + [t if isinstance(t, Tensor) else Tensor(t, dtype=pc.dtype, device=pc.device)
                 for t in (policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)]
    names = ("policy_chosen_logps", "policy_rejected_logps", "reference_chosen_logps", "reference_rejected_logps")
    for name, t in zip(names, ts):
        if t.shape != pc.shape:
            raise ValueError(f"dpo_loss: the four log-probabilities must have one shape (one entry per pair), got "
                             f"{', '.join(f'{n} {x.shape}' for n, x in zip(names, ts))}")
        if t.dtype.kind != "f":
            raise TypeError(f"dpo_loss: {name} must be floating point, got dtype {t.dtype}")
    if pc.numel() == 0:
        raise ValueError("dpo_loss: no pairs (the log-probabilities are empty)")
    if _fused_for(impl, "dpo_loss"):
        return fused.FusedDPOLoss.apply(*ts, beta=float(beta), reduction=reduction)
    pc, pr, rc, rr = ts
    z = ((pc - rc) - (pr - rr)) * float(beta)
    # -log sigmoid(z) = log(e^0 + e^(-z)): a two-term logsumexp, whose gradient (a softmax) is
    # exact at z = 0 too, where relu(-z) + log(1 + e^-|z|) would give 0 through abs and relu
    loss = stack([z * 0.0, -z], dim=-1).logsumexp(-1)
    return loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.mean()


# ================================================================ layers as functions
def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None, impl: str | None = None) -> Tensor:
    """y = x @ W^T + b with W (out_features, in_features)."""
    if weight.ndim != 2 or input.ndim < 1 or input.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {input.shape} does not fit weight of shape {weight.shape} "
                         f"(expected input (..., {weight.shape[-1] if weight.ndim == 2 else '?'}) and a 2-D weight (out, in))")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias of shape {bias.shape} does not fit weight of shape {weight.shape}")
    if _fused_for(impl, "linear"):
        return fused.FusedLinear.apply(input, weight, *(() if bias is None else (bias,)))
    out = input @ weight.T
    return out if bias is None else out + bias


def embedding(input, weight: Tensor) -> Tensor:
    """Rows of `weight` picked by the integer indices `input`: out[...] = weight[input[...]]."""
    return _embedding(weight, input)


def layer_norm(input: Tensor, normalized_shape, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5, impl: str | None = None) -> Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias over the last len(normalized_shape) dims
    (population variance, as PyTorch)."""
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if input.shape[input.ndim - len(ns):] != ns or len(ns) > input.ndim or not ns:
        raise ValueError(f"layer_norm: normalized_shape {ns} does not match the last dims of input shape {input.shape}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != ns:
            raise ValueError(f"layer_norm: {name} has shape {p.shape} but normalized_shape is {ns}")
    if _fused_for(impl, "layer_norm"):
        wb = tuple(p for p in (weight, bias) if p is not None)
        return fused.FusedLayerNorm.apply(input, *wb, d=math.prod(ns), eps=eps, has_weight=weight is not None,
                                          has_bias=bias is not None)
    dims = tuple(range(input.ndim - len(ns), input.ndim))
    xc = input - input.mean(dims, keepdim=True)
    xhat = xc * ((xc * xc).mean(dims, keepdim=True) + eps).rsqrt()
    if weight is not None:
        xhat = xhat * weight
    return xhat if bias is None else xhat + bias


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each entry with probability p and scale the survivors by 1 / (1 - p) (identity when
    not training or p = 0): y = x * m, m_i = keep_i / (1 - p); dy/dx = m. The mask is drawn on
    the input's device by `backend.device_rng` (seeded by `manual_seed`, saved in training
    checkpoints), so nothing is copied from the host and a seed gives the same mask on every
    device."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    return input * Tensor._wrap(backend.device_rng.dropout_mask(input.shape, p, input.dtype, input.device))


# ================================================================ attention
def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None, impl: str | None = None) -> Tensor:
    """softmax(q k^T * scale + mask) v over (..., T, hs) tensors; scale defaults to 1/sqrt(hs).

    attn_mask: a bool mask (True = may attend, as PyTorch) or a float mask added to the
    scores, broadcastable to (..., Tq, Tk). is_causal: query i sees keys j <= i (top-left
    aligned, as PyTorch). dropout_p is applied to the attention weights whenever it is > 0
    (pass 0 at eval, as with PyTorch's function). Deviation: a query row that may attend to
    nothing outputs zeros, not NaN.
    """
    q, k, v = query, key, value
    op = "scaled_dot_product_attention"
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError(f"{op}: query, key and value need at least 2 dims (..., T, hs), got {q.shape}, {k.shape}, {v.shape}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"{op}: query {q.shape} and key {k.shape} have different head sizes")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{op}: key {k.shape} and value {v.shape} have different sequence lengths")
    broadcast_shapes(op, q.shape[:-2], k.shape[:-2], v.shape[:-2])
    if attn_mask is not None and is_causal:
        raise ValueError(f"{op}: pass either attn_mask or is_causal=True, not both")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"{op}: dropout_p must be in [0, 1), got {dropout_p}")
    tq, tk = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    drop, add = None, None
    if is_causal:
        drop = causal_mask(tq, tk, 0, q.device)
    elif attn_mask is not None:
        m = attn_mask if isinstance(attn_mask, Tensor) else Tensor(attn_mask, device=q.device)
        try:
            ok = broadcast_shapes(op, m.shape, q.shape[:-2] + (tq, tk))[-2:] == (tq, tk)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{op}: attn_mask of shape {m.shape} does not broadcast to the scores' shape "
                             f"{q.shape[:-1] + (tk,)}")
        if m.dtype == np.bool_:
            drop = ~m.data
        else:
            add = m.to(q.dtype)
    if _fused_for(impl, op):
        return fused.FusedAttention.apply(q, k, v, *(() if add is None else (add,)), drop_mask=drop, scale=scale,
                                          dropout_p=float(dropout_p))
    s = (q @ k.transpose(-2, -1)) * scale
    if add is not None:
        s = s + add
    if drop is not None:
        s = s.masked_fill(Tensor._wrap(drop), -math.inf)
    p = softmax(s, -1, impl="composed")
    if dropout_p > 0.0:
        p = dropout(p, dropout_p)
    return p @ v


def causal_self_attention(qkv: Tensor, n_head: int, dropout_p: float = 0.0, impl: str | None = None) -> Tensor:
    """Multi-head causal self-attention from packed projections: qkv (B, T, 3C) holds q, k, v
    side by side (nanoGPT's c_attn output); returns the heads merged back, (B, T, C).

    Fused: one op that reads q, k, v as strided views and writes the merged output
    directly (no split / transpose / merge copies). Composed: split, view as
    (B, nh, T, hs), scaled_dot_product_attention(is_causal=True), transpose back."""
    if qkv.ndim != 3 or qkv.shape[-1] % 3 or (qkv.shape[-1] // 3) % n_head:
        raise ValueError(f"causal_self_attention: expected qkv (B, T, 3C) with C divisible by n_head={n_head}, "
                         f"got shape {qkv.shape}")
    b, t, c3 = qkv.shape
    c = c3 // 3
    if _fused_for(impl, "causal_self_attention"):
        return fused.FusedPackedCausalAttention.apply(qkv, n_head=n_head, drop_mask=causal_mask(t, t, 0, qkv.device),
                                                      dropout_p=float(dropout_p))
    q, k, v = (z.reshape(b, t, n_head, c // n_head).transpose(1, 2) for z in qkv.split(c, dim=2))  # (B, nh, T, hs)
    y = scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True, impl="composed")
    return y.transpose(1, 2).reshape(b, t, c)
