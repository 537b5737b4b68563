"""The cases every CUDA kernel is checked on, shared by the CPU emulation tests
(test_kernels_emulated.py) and the GPU tests (test_kernels_gpu.py): odd sizes (rows of 1, 3,
1000 and 50257 entries, sequence lengths that are not multiples of the 32-row tiles, head sizes
from 8 to 128), extreme values (logits of +-1e4, all -inf rows, every target ignored), float32
and float64. Each case runs an op through the Tensor API, forward and backward; the tests run
it once on the generic path and once on the kernels and compare."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinygrad_lm.nn import functional as F

TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


@dataclass
class Case:
    id: str
    fn: object                      # fn(*tensors) -> Tensor
    arrays: list
    expect: tuple                   # kernel names (prefixes) that must run
    dtype: type = np.float32
    tol: dict = field(default_factory=dict)
    requires: list | None = None    # which inputs require grad (default: the float ones)

    def tolerance(self):
        return {**TOL[self.dtype], **self.tol}


def _logits(rng, shape, dtype, kind):
    x = rng.standard_normal(shape) * 3
    if kind == "extreme":
        x = np.where(rng.random(shape) < 0.5, 1e4, -1e4) + rng.standard_normal(shape)
    elif kind == "neg_inf_rows":                    # some rows all -inf, some partly
        x[..., ::2, :] = -np.inf
        x[..., 1::4, ::3] = -np.inf
    return x.astype(dtype)


def softmax_cases():
    out = []
    for op, fn in (("softmax", F.softmax), ("log_softmax", F.log_softmax)):
        for shape, kind, dt in [((4, 1), "normal", np.float32), ((5, 3), "normal", np.float32),
                                ((3, 1000), "normal", np.float32), ((2, 50257), "normal", np.float32),
                                ((2, 3, 7), "normal", np.float64), ((6, 1000), "extreme", np.float32),
                                ((8, 33), "neg_inf_rows", np.float32), ((8, 3), "neg_inf_rows", np.float64)]:
            x = _logits(np.random.default_rng(1), shape, dt, kind)
            out.append(Case(f"{op}-{'x'.join(map(str, shape))}-{kind}-{np.dtype(dt).name}",
                            lambda t, fn=fn: fn(t, -1, impl="fused"), [x], (f"{op}_fwd", f"{op}_bwd"), dt))
    return out


def cross_entropy_cases():
    out = []
    expect = ("cross_entropy_fwd", "cross_entropy_bwd")
    for n, c, dt in [(1, 1, np.float32), (5, 3, np.float32), (37, 1000, np.float32), (3, 50257, np.float32),
                     (9, 7, np.float64)]:
        for reduction in ("mean", "sum", "none"):
            for ls in (0.0, 0.1):
                rng = np.random.default_rng(n * c)
                x = (rng.standard_normal((n, c)) * 3).astype(dt)
                y = rng.integers(0, c, n)
                y[rng.random(n) < 0.3] = -100
                out.append(Case(f"cross_entropy-{n}x{c}-{reduction}-ls{ls}-{np.dtype(dt).name}",
                                lambda t, y=y, r=reduction, ls=ls: F.cross_entropy(t, y, reduction=r, label_smoothing=ls,
                                                                                   impl="fused"), [x], expect, dt))
    for case in ("extreme", "all_ignored", "neg_inf_row", "ignore_index_in_range"):
        for reduction in ("mean", "sum", "none"):
            rng = np.random.default_rng(7)
            n, c, ignore = 6, 65, -100
            x = (rng.standard_normal((n, c)) * 3).astype(np.float32)
            y = rng.integers(0, c, n)
            if case == "extreme":
                x = (np.where(rng.random((n, c)) < 0.5, 1e4, -1e4) + rng.standard_normal((n, c))).astype(np.float32)
            elif case == "all_ignored":
                y[:] = ignore
            elif case == "neg_inf_row":
                x[2] = -np.inf
                y[2] = ignore
            else:
                ignore = 3
                y[::2] = 3
            # logits of +-1e4: the loss is a difference of numbers near 1e4, exact to float32's 1e-3 there
            out.append(Case(f"cross_entropy-{case}-{reduction}",
                            lambda t, y=y, r=reduction, ig=ignore: F.cross_entropy(t, y, ignore_index=ig, reduction=r,
                                                                                   label_smoothing=0.1, impl="fused"),
                            [x], expect, tol={"atol": 2e-3} if case == "extreme" else {}))
    return out


def layer_norm_cases():
    out = []
    for n, d, dt in [(4, 1, np.float32), (5, 3, np.float32), (7, 1000, np.float32), (37, 768, np.float32),
                     (13, 64, np.float64)]:
        for affine in ("both", "weight", "none"):
            rng = np.random.default_rng(d)
            x = (rng.standard_normal((n, d)) * 2 + 0.5).astype(dt)
            wb = [(1 + rng.standard_normal(d) * 0.1).astype(dt) for _ in range({"both": 2, "weight": 1, "none": 0}[affine])]
            out.append(Case(f"layer_norm-{n}x{d}-{affine}-{np.dtype(dt).name}",
                            lambda t, *p, d=d: F.layer_norm(t, d, *(list(p) + [None] * (2 - len(p))), impl="fused"),
                            [x, *wb], ("layernorm_fwd", "layernorm_bwd") + (("layernorm_param_bwd",) if wb else ()), dt,
                            tol={"atol": 2e-5} if dt == np.float32 else {}))
    # rows far from zero: the variance must be taken about the mean, not as E[x^2] - mu^2;
    # x - mu loses 3 digits at 1e3 on both paths. Only the input needs a gradient.
    rng = np.random.default_rng(3)
    x = (1e3 + rng.standard_normal((9, 96))).astype(np.float32)
    out.append(Case("layer_norm-offset1e3-input-grad-only", lambda t, w, b: F.layer_norm(t, 96, w, b, impl="fused"),
                    [x, np.ones(96, np.float32), np.zeros(96, np.float32)], ("layernorm_fwd", "layernorm_bwd"),
                    tol=dict(rtol=2e-3, atol=2e-3), requires=[True, False, False]))
    return out


def gelu_cases():
    out = []
    for approximate, impl in (("tanh", "fused"), ("tanh", "composed"), ("none", None)):
        for n, dt in ((1, np.float32), (1000, np.float32), (100003, np.float32), (77, np.float64)):
            rng = np.random.default_rng(n)
            x = (rng.standard_normal(n) * 3).astype(dt)
            x[: min(n, 4)] = np.array([-30.0, 30.0, 0.0, -1e4][: min(n, 4)], dtype=dt)
            # where tanh u rounds to -1 within a float32 ulp (x near -4), 1 - tanh^2 u and 1 + tanh u
            # cancel: two libms' tanhf one ulp apart give gradients 4e-6 apart there (max |grad| ~1.1)
            out.append(Case(f"gelu-{approximate}-{impl}-{n}-{np.dtype(dt).name}",
                            lambda t, a=approximate, i=impl: F.gelu(t, a, impl=i), [x], ("gelu_fwd", "gelu_bwd"), dt,
                            tol={"atol": 1e-5} if dt == np.float32 else {}))
    return out


def attention_cases():
    out = []
    for b, t, nh, hs, dt in [(1, 1, 1, 16, np.float32), (2, 33, 3, 16, np.float32), (1, 70, 2, 64, np.float32),
                             (2, 40, 1, 128, np.float32), (1, 37, 2, 100, np.float32), (1, 45, 2, 24, np.float64)]:
        rng = np.random.default_rng(t * hs)
        qkv = rng.standard_normal((b, t, 3 * nh * hs)).astype(dt)
        out.append(Case(f"causal_attention-B{b}-T{t}-H{nh}-hs{hs}-{np.dtype(dt).name}",
                        lambda x, nh=nh: F.causal_self_attention(x, nh, impl="fused"), [qkv],
                        ("attn_fwd", "attn_bwd_delta", "attn_bwd_dkdv", "attn_bwd_dq"), dt,
                        tol=dict(atol=1e-5, rtol=1e-4) if dt == np.float32 else {}))
    for batch, tq, tk, hs in [((), 5, 7, 8), ((2,), 33, 31, 32), ((2, 3), 17, 65, 48), ((1,), 64, 40, 128)]:
        rng = np.random.default_rng(tq + tk)
        q, k, v = (rng.standard_normal(batch + (tt, hs)).astype(np.float32) for tt in (tq, tk, tk))
        out.append(Case(f"attention-{batch}-Tq{tq}-Tk{tk}-hs{hs}",
                        lambda a, b_, c: F.scaled_dot_product_attention(a, b_, c, impl="fused"), [q, k, v],
                        ("attn_fwd", "attn_bwd_dq"), tol=dict(atol=1e-5, rtol=1e-4)))
    return out


def all_cases():
    return softmax_cases() + cross_entropy_cases() + layer_norm_cases() + gelu_cases() + attention_cases()


def gradcheck_cases(rng):
    """(kernel name prefix, fn, float64 inputs as numpy arrays) for a float64 gradcheck of every
    fused op through its kernels: small, so finite differences stay cheap."""
    y = np.array([1, -100, 4, 0])
    n = rng.standard_normal
    return [
        ("softmax", lambda t: F.softmax(t, -1), [n((3, 5))]),
        ("log_softmax", lambda t: F.log_softmax(t, -1), [n((3, 5))]),
        ("cross_entropy", lambda t: F.cross_entropy(t, y, label_smoothing=0.2), [n((4, 6)) * 2]),
        ("cross_entropy", lambda t: F.cross_entropy(t, y, reduction="none"), [n((4, 6)) * 2]),
        ("layernorm", lambda t, w, b: F.layer_norm(t, 5, w, b, impl="fused"), [n((3, 5)), n(5), n(5)]),
        ("gelu", lambda t: F.gelu(t, "tanh", impl="fused"), [n(7) * 2]),
        ("gelu", lambda t: F.gelu(t), [n(7) * 2]),
        ("attn", lambda t: F.causal_self_attention(t, 2), [n((1, 5, 12))]),
        ("attn", lambda a, b, c: F.scaled_dot_product_attention(a, b, c), [n((2, 3, 4)), n((2, 4, 4)), n((2, 4, 4))]),
    ]


# ---------------------------------------------------------------- optimizers
ADAMW_SIZES = [(1,), (3,), (4097,), (65, 33), (10000,)]


def adamw_groups(ps):
    return [{"params": ps[:3], "weight_decay": 0.1}, {"params": ps[3:], "weight_decay": 0.0}]


def run_optimizer(opt_cls, sizes, groups_fn, dtype, wrap=lambda a: a, steps=3):
    """A few optimizer steps on fixed random parameters and gradients, with a learning-rate
    schedule and one parameter that skips a step; `wrap` places each array (e.g. on a device).
    Returns the parameters and the optimizer's state_dict (numpy arrays)."""
    from tinygrad_lm import backend
    from tinygrad_lm.tensor import Tensor
    rng = np.random.default_rng(0)
    params = [Tensor(wrap(rng.standard_normal(s).astype(dtype)), requires_grad=True) for s in sizes]
    opt = opt_cls(groups_fn(params))
    grads = [[rng.standard_normal(p.shape).astype(dtype) for p in params] for _ in range(steps)]
    for s in range(steps):
        for p, g in zip(params, grads[s]):
            p.grad = None if (s == 1 and p is params[0]) else Tensor(wrap(g))    # params[0] skips step 2
        for gi, g in enumerate(opt.param_groups):
            g["lr"] = 1e-2 * (1 + gi) / (1 + s)
        opt.step()
    return [backend.to_numpy(p.data).copy() for p in params], opt.state_dict()


def assert_same_optimizer_result(ref, got, dtype):
    (ref_p, ref_sd), (got_p, got_sd) = ref, got
    tol = TOL[dtype]
    for a, b in zip(ref_p, got_p):
        np.testing.assert_allclose(b, a, **tol)
    assert got_sd["state"].keys() == ref_sd["state"].keys()
    for i, st in ref_sd["state"].items():
        assert got_sd["state"][i]["step"] == st["step"]
        for k in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_allclose(got_sd["state"][i][k], st[k], **tol)
