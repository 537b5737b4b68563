"""The fused ops' specs: one `OpSpec` per op of `ops/fused.py`, registered when this module
is imported.

Each spec calls the op through `nn.functional` with `impl="fused"` (so the check covers the
argument handling users go through) and names a plain numpy forward; see `harness.py` for
what the fields mean. The composed twins are checked by the engine ops' specs and, against
the fused ones, by tests/test_functional.py.
"""
from __future__ import annotations

import math

import numpy as np

from ..nn import functional as F
from .harness import Case, OpSpec, register_spec

_C = math.sqrt(2.0 / math.pi)  # tanh-GELU's constants
_K = 0.044715


# ================================================================ softmax family
def np_softmax(x, dim):
    e = np.exp(x - x.max(dim, keepdims=True))
    return e / e.sum(dim, keepdims=True)


def np_log_softmax(x, dim):
    sh = x - x.max(dim, keepdims=True)
    return sh - np.log(np.exp(sh).sum(dim, keepdims=True))


def sample_rows(d):
    s = d.shape(1, 3)
    return Case([d.normal(s)], {"dim": d.integer(-len(s), len(s) - 1)})


def sample_ce(d):
    n, c = d.integer(1, 5), d.integer(1, 5)
    y = d.ints(0, c, (n,))
    y[d.rng.random(n) < 0.3] = -100
    y[d.integer(0, n - 1)] = d.integer(0, c - 1)  # at least one counted row
    return Case([d.normal((n, c)) * 3, y], {"reduction": d.choice(["mean", "sum", "none"]),
                                            "label_smoothing": d.choice([0.0, 0.0, 0.1, 0.5])})


def call_ce(x, y, reduction, label_smoothing):
    return F.cross_entropy(x, y, reduction=reduction, label_smoothing=label_smoothing, impl="fused")


def np_ce(x, y, reduction, label_smoothing):
    logp = np_log_softmax(x, 1)
    valid = y != -100
    ys = np.where(valid, y, 0)
    loss = -(1 - label_smoothing) * logp[np.arange(len(y)), ys] - label_smoothing * logp.mean(1)
    loss = np.where(valid, loss, 0).astype(x.dtype)
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else (loss.sum() / valid.sum()).astype(x.dtype)


# ================================================================ normalisation, activation, linear
def sample_ln(d):
    s = d.shape(1, 3)
    affine = d.choice(["both", "weight", "none"])
    ins = [d.normal(s) * 2 + 0.5] + [d.normal(s[-1:]) for _ in range({"both": 2, "weight": 1, "none": 0}[affine])]
    return Case(ins, {"affine": affine})


def call_ln(x, *wb, affine):
    return F.layer_norm(x, x.shape[-1], wb[0] if wb else None, wb[1] if len(wb) > 1 else None, impl="fused")


def np_ln(x, *wb, affine):
    mu = x.mean(-1, keepdims=True)
    out = (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5)
    return (out * wb[0] + wb[1]) if len(wb) == 2 else out * wb[0] if wb else out


def np_gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(_C * (x + _K * x ** 3)))


def sample_linear(d):
    s, o = d.shape(1, 3), d.integer(1, 4)
    ins = [d.normal(s), d.normal((o, s[-1]))] + ([d.normal((o,))] if d.boolean() else [])
    return Case(ins)


# ================================================================ attention
def sample_attention(d):
    batch, tq, tk, hs = d.shape(0, 2, max_side=3), d.integer(1, 4), d.integer(1, 4), d.integer(1, 4)
    kind = d.choice(["none", "causal", "bool", "float"])
    q, k, v = d.normal(batch + (tq, hs)), d.normal(batch + (tk, hs)), d.normal(batch + (tk, d.integer(1, 3)))
    if kind == "bool":  # True = may attend; some rows may attend to nothing (their output is 0)
        return Case([q, k, v, d.mask((tq, tk))], {"kind": kind})
    if kind == "float":
        return Case([q, k, v, d.normal((tq, tk))], {"kind": kind})
    return Case([q, k, v], {"kind": kind})


def call_attention(q, k, v, *m, kind):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=m[0] if m else None, is_causal=kind == "causal",
                                          impl="fused")


def np_attention(q, k, v, *m, kind):
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1]).astype(q.dtype)
    tq, tk = s.shape[-2:]
    keep = np.ones((tq, tk), bool)
    if kind == "causal":
        keep = np.tril(keep)
    elif kind == "bool":
        keep = m[0]
    elif kind == "float":
        s = s + m[0]
    s = np.where(keep, s, -np.inf)
    mx = s.max(-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(mx), mx, 0))
    tot = e.sum(-1, keepdims=True)
    return (e / np.where(tot == 0, 1, tot)) @ v


def sample_packed(d):
    nh, hs, b, t = d.integer(1, 3), d.integer(1, 3), d.integer(1, 2), d.integer(1, 4)
    return Case([d.normal((b, t, 3 * nh * hs))], {"n_head": nh})


def np_packed(qkv, n_head):
    b, t, c3 = qkv.shape
    c = c3 // 3
    q, k, v = (z.reshape(b, t, n_head, c // n_head).transpose(0, 2, 1, 3) for z in np.split(qkv, 3, axis=2))
    return np_attention(q, k, v, kind="causal").transpose(0, 2, 1, 3).reshape(b, t, c)


# ================================================================ preference loss
def sample_dpo(d):
    shape = d.shape(1, 2)
    # sequence log-probabilities are negative sums; spread wide so z reaches both tails
    return Case([-d.uniform(0.5, 30.0, shape) for _ in range(4)],
                {"beta": d.choice([0.1, 0.5, 2.0]), "reduction": d.choice(["mean", "sum", "none"])})


def np_dpo(pc, pr, rc, rr, beta, reduction):
    z = beta * ((pc - rc) - (pr - rr))
    loss = np.logaddexp(0.0, -z)
    return loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.mean()


# ================================================================ the table
_TOL = dict(fwd_rtol=1e-9, fwd_atol=1e-12)

for _spec in [
    OpSpec("FusedSoftmax", sample_rows, lambda x, dim: F.softmax(x, dim, impl="fused"), np_softmax, **_TOL),
    OpSpec("FusedLogSoftmax", sample_rows, lambda x, dim: F.log_softmax(x, dim, impl="fused"), np_log_softmax, **_TOL),
    OpSpec("FusedSoftmaxCrossEntropy", sample_ce, call_ce, np_ce, **_TOL),
    OpSpec("FusedLayerNorm", sample_ln, call_ln, np_ln, **_TOL),
    OpSpec("FusedGeluTanh", lambda d: Case([d.normal(d.shape(0, 3)) * 2]), lambda x: F.gelu(x, "tanh", impl="fused"),
           np_gelu_tanh, **_TOL),
    OpSpec("FusedLinear", sample_linear, lambda x, w, *b: F.linear(x, w, b[0] if b else None, impl="fused"),
           lambda x, w, *b: x @ w.T + (b[0] if b else 0), **_TOL),
    OpSpec("FusedAttention", sample_attention, call_attention, np_attention, **_TOL),
    OpSpec("FusedPackedCausalAttention", sample_packed,
           lambda qkv, n_head: F.causal_self_attention(qkv, n_head, impl="fused"), np_packed, **_TOL),
    OpSpec("FusedDPOLoss", sample_dpo,
           lambda pc, pr, rc, rr, beta, reduction: F.dpo_loss(pc, pr, rc, rr, beta, reduction, impl="fused"), np_dpo,
           **_TOL),
]:
    register_spec(_spec)
