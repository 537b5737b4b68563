"""nn.functional: finite differences for every function (both implementations), fused against
composed (forward and backward, extreme inputs included), hand computations, and errors."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinygrad_lm as tg
from tinygrad_lm import Tensor, gradcheck
from tinygrad_lm.nn import functional as F

FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
IMPLS = ["fused", "composed"]
TIGHT = dict(rtol=1e-10, atol=1e-12)  # float64: the two implementations are the same math
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


def t64(a, grad=True):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def check(fn, *arrays, **kw):
    """Element-wise float64 finite differences of fn with respect to every array."""
    return gradcheck(fn, [t64(a) for a in arrays], mode="element", **kw)


def both(fn, *arrays, grad_out=None):
    """Run fn(impl, *tensors) fused and composed; return [(out, [grads])] for each."""
    res = []
    for impl in IMPLS:
        ts = [Tensor(np.array(a), requires_grad=np.asarray(a).dtype.kind == "f") for a in arrays]
        out = fn(impl, *ts)
        g = np.ones(out.shape, out.dtype) if grad_out is None else grad_out
        out.backward(Tensor(g.astype(out.dtype)))
        res.append((out.data, [t.grad.data if t.grad is not None else None for t in ts]))
    return res


def assert_agree(fn, *arrays, rtol=1e-5, atol=1e-6, grad_out=None):
    (of, gf), (oc, gc) = both(fn, *arrays, grad_out=grad_out)
    np.testing.assert_allclose(of, oc, rtol=rtol, atol=atol)
    for a, b in zip(gf, gc):
        if a is not None or b is not None:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    return of, gf


# ================================================================ finite differences, both implementations
@pytest.mark.parametrize("impl", IMPLS)
@FAST
@given(shape=shapes, data=st.data())
def test_softmax_and_log_softmax_gradcheck(impl, shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = np.random.default_rng(len(shape)).standard_normal(shape) * 2
    check(lambda x: F.softmax(x, dim, impl=impl), x)
    check(lambda x: F.log_softmax(x, dim, impl=impl), x)


@pytest.mark.parametrize("impl", IMPLS)
@FAST
@given(n=st.integers(1, 5), c=st.integers(1, 5), reduction=st.sampled_from(["mean", "sum", "none"]),
       ls=st.sampled_from([0.0, 0.1, 0.7]), seed=st.integers(0, 1000))
def test_cross_entropy_gradcheck(impl, n, c, reduction, ls, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    y[rng.random(n) < 0.3] = -100
    y[0] = rng.integers(0, c)
    check(lambda x: F.cross_entropy(x, y, reduction=reduction, label_smoothing=ls, impl=impl),
          rng.standard_normal((n, c)) * 3)


@pytest.mark.parametrize("impl", IMPLS)
@FAST
@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple), c=st.integers(1, 4), seed=st.integers(0, 99))
def test_cross_entropy_on_nd_logits_flattens_like_a_gpt_loss(impl, lead, c, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal(lead + (c,)), rng.integers(0, c, lead)
    check(lambda x: F.cross_entropy(x, y, impl=impl), x)
    none = F.cross_entropy(t64(x), y, reduction="none", impl=impl)
    assert none.shape == lead


@FAST
@given(n=st.integers(1, 5), c=st.integers(1, 5), seed=st.integers(0, 99))
def test_nll_loss_and_mse_loss_gradcheck(n, c, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    check(lambda x: F.nll_loss(F.log_softmax(x, -1), y), rng.standard_normal((n, c)))
    check(lambda a, b: F.mse_loss(a, b), rng.standard_normal((n, c)), rng.standard_normal((n, c)))
    check(lambda a, b: F.mse_loss(a, b, reduction="none"), rng.standard_normal((n, c)), rng.standard_normal((n, c)))


@pytest.mark.parametrize("impl", IMPLS)
@FAST
@given(shape=shapes, affine=st.sampled_from(["both", "weight", "none"]), seed=st.integers(0, 99))
def test_layer_norm_gradcheck(impl, shape, affine, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2 + 1
    d = shape[-1]
    if affine == "both":
        check(lambda x, w, b: F.layer_norm(x, d, w, b, impl=impl), x, rng.standard_normal(d), rng.standard_normal(d))
    elif affine == "weight":
        check(lambda x, w: F.layer_norm(x, d, w, impl=impl), x, rng.standard_normal(d))
    else:
        check(lambda x: F.layer_norm(x, d, impl=impl), x)


@pytest.mark.parametrize("impl", IMPLS)
def test_layer_norm_over_several_trailing_dims(impl):
    rng = np.random.default_rng(0)
    check(lambda x, w, b: F.layer_norm(x, (3, 4), w, b, impl=impl), rng.standard_normal((2, 3, 4)),
          rng.standard_normal((3, 4)), rng.standard_normal((3, 4)))


@pytest.mark.parametrize("impl", IMPLS)
@FAST
@given(shape=shapes, out=st.integers(1, 4), bias=st.booleans(), seed=st.integers(0, 99))
def test_linear_gradcheck(impl, shape, out, bias, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(shape), rng.standard_normal((out, shape[-1]))] + ([rng.standard_normal(out)] if bias else [])
    check(lambda x, w, *b: F.linear(x, w, b[0] if b else None, impl=impl), *arrays)


@pytest.mark.parametrize("impl", IMPLS)
@FAST
@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple), approximate=st.sampled_from(["none", "tanh"]),
       seed=st.integers(0, 99))
def test_gelu_and_relu_gradcheck(impl, shape, approximate, seed):
    rng = np.random.default_rng(seed)
    check(lambda x: F.gelu(x, approximate, impl=impl), rng.standard_normal(shape) * 2)
    x = rng.uniform(0.2, 2, shape) * rng.choice([-1, 1], shape)  # away from the kink
    check(lambda x: F.relu(x), x)


@FAST
@given(rows=st.integers(1, 5), dim=st.integers(1, 4), idx_shape=st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple),
       seed=st.integers(0, 99))
def test_embedding_gradcheck_with_repeated_indices(rows, dim, idx_shape, seed):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, rows, idx_shape)
    check(lambda w: F.embedding(idx, w), rng.standard_normal((rows, dim)))


@pytest.mark.parametrize("rows,n,kind", [(65, 768, "random"), (64, 64, "distinct"), (50, 40, "mostly_distinct"),
                                         (5, 30, "one_row"), (7, 1, "random"), (9, 0, "random"), (1000, 300, "mixed")])
def test_index_add_rows_sums_every_path_like_add_at(rows, n, kind):
    """The embedding backward's segmented sum: all-distinct indices (one assignment), mostly
    distinct (singletons copied, repeats reduced), mostly repeated (one reduceat), and edge
    sizes; float32 sums agree with a float64 np.add.at to float32 rounding."""
    from tinygrad_lm import backend
    rng = np.random.default_rng(rows + n)
    if kind == "distinct":
        idx = rng.permutation(rows)[:n]
    elif kind == "mostly_distinct":
        idx = rng.permutation(rows)[:n]
        idx[-5:] = idx[0]                               # one index repeated 6 times, the rest once
    elif kind == "one_row":
        idx = np.full(n, 3)
    elif kind == "mixed":
        idx = np.r_[rng.permutation(rows)[:250], rng.integers(0, 10, 50)]
    else:
        idx = rng.integers(0, rows, n)
    v = rng.standard_normal((n, 6)).astype(np.float32)
    want = np.zeros((rows, 6))
    np.add.at(want, idx, v.astype(np.float64))
    got = backend.index_add_rows(rows, idx, v)
    assert got.dtype == np.float32 and got.shape == (rows, 6)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_dropout_gradcheck_with_a_fixed_mask():
    x = np.random.default_rng(0).standard_normal((4, 5))

    def fn(x):
        tg.manual_seed(3)  # the same mask on every evaluation
        return F.dropout(x, 0.4)
    check(fn, x)


@pytest.mark.parametrize("impl", IMPLS)
@FAST
@given(batch=st.lists(st.integers(1, 2), min_size=0, max_size=2).map(tuple), tq=st.integers(1, 4), tk=st.integers(1, 4),
       hs=st.integers(1, 4), kind=st.sampled_from(["none", "causal", "bool", "float"]), seed=st.integers(0, 999))
def test_scaled_dot_product_attention_gradcheck(impl, batch, tq, tk, hs, kind, seed):
    rng = np.random.default_rng(seed)
    q, k, v = rng.standard_normal(batch + (tq, hs)), rng.standard_normal(batch + (tk, hs)), rng.standard_normal(batch + (tk, 2))
    if kind == "float":
        check(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m, impl=impl), q, k, v,
              rng.standard_normal((tq, tk)))
        return
    mask = rng.random((tq, tk)) < 0.6 if kind == "bool" else None
    check(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=kind == "causal",
                                                         scale=0.7, impl=impl), q, k, v)


@pytest.mark.parametrize("impl", IMPLS)
@FAST
@given(b=st.integers(1, 2), t=st.integers(1, 5), nh=st.integers(1, 3), hs=st.integers(1, 3), seed=st.integers(0, 99))
def test_causal_self_attention_gradcheck(impl, b, t, nh, hs, seed):
    qkv = np.random.default_rng(seed).standard_normal((b, t, 3 * nh * hs))
    check(lambda a: F.causal_self_attention(a, nh, impl=impl), qkv)


def test_attention_with_dropout_gradcheck_with_a_fixed_mask():
    rng = np.random.default_rng(0)
    for impl in IMPLS:
        def fn(q, k, v):
            tg.manual_seed(5)
            return F.scaled_dot_product_attention(q, k, v, dropout_p=0.3, is_causal=True, impl=impl)
        check(fn, *(rng.standard_normal((2, 4, 3)) for _ in range(3)))


# ================================================================ fused against composed
@FAST
@given(shape=shapes, scale=st.sampled_from([1.0, 30.0, 1000.0]), seed=st.integers(0, 99))
def test_fused_and_composed_softmax_agree(shape, scale, seed):
    x = np.random.default_rng(seed).standard_normal(shape) * scale
    g = np.random.default_rng(seed + 1).standard_normal(shape)
    for dim in range(-len(shape), len(shape)):
        out, _ = assert_agree(lambda impl, x: F.softmax(x, dim, impl=impl), x, grad_out=g, **TIGHT)
        assert np.isfinite(out).all()
        out, _ = assert_agree(lambda impl, x: F.log_softmax(x, dim, impl=impl), x, grad_out=g, **TIGHT)
        assert np.isfinite(out).all()


def test_softmax_of_plus_minus_1000_is_finite_and_exact():
    x = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0]], np.float32)
    for impl in IMPLS:
        p = F.softmax(Tensor(x), -1, impl=impl).numpy()
        np.testing.assert_allclose(p, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-7)
        lp = F.log_softmax(Tensor(x), -1, impl=impl).numpy()
        np.testing.assert_allclose(lp, [[0, -2000, -1000], [-math.log(3)] * 3], rtol=1e-6)


def test_fully_masked_softmax_row_is_zero_and_does_not_poison_other_rows():
    x = np.array([[-np.inf, -np.inf, -np.inf], [1.0, -np.inf, 2.0]], np.float32)
    g = np.array([[1, 2, 3], [1, -1, 2]], np.float32)
    out, grads = assert_agree(lambda impl, x: F.softmax(x, -1, impl=impl), x, grad_out=g)
    np.testing.assert_array_equal(out[0], 0)
    e = np.exp([1.0 - 2.0, 0.0])
    np.testing.assert_allclose(out[1], [e[0] / e.sum(), 0, e[1] / e.sum()], rtol=1e-6)
    assert np.isfinite(grads[0]).all() and np.array_equal(grads[0][0], [0, 0, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_tensor_softmax_methods_are_the_fused_ops_of_F(name, dtype):
    """x.softmax(dim) / x.log_softmax(dim) give F's default (fused) values and gradients bit for
    bit, for every dim, an all -inf row included; F.use_fused(False) switches F, not the method."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5)).astype(dtype)
    x[1, 2, :] = -np.inf
    g = rng.standard_normal(x.shape).astype(dtype)

    def run(fn):
        t = Tensor(x, requires_grad=True)
        out = fn(t)
        out.backward(Tensor(g))
        return out.detach().numpy(), t.grad.numpy()

    for dim in range(-3, 3):
        want = run(lambda t: getattr(F, name)(t, dim))
        for got in (run(lambda t: getattr(t, name)(dim)), run(lambda t: getattr(t, name)(dim=dim))):
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
        with F.use_fused(False):
            np.testing.assert_array_equal(run(lambda t: getattr(t, name)(dim))[1], want[1])
    with pytest.raises(IndexError, match=f"{name}: dim 3 is out of range for a tensor of 3 dims"):
        getattr(Tensor(x), name)(3)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_fused_and_composed_cross_entropy_agree_on_extremes(reduction, ls):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((7, 5)) * 3).astype(np.float32)
    x[0] = [1000, -1000, 0, 5, -5]
    x[1] = [-1000, 1000, 1000, -1000, 0]
    y = np.array([0, 1, -100, 3, 4, -100, 2])
    g = np.ones(7, np.float32) if reduction == "none" else None
    out, grads = assert_agree(lambda impl, x, y: F.cross_entropy(x, y, reduction=reduction, label_smoothing=ls, impl=impl),
                              x, y, rtol=1e-5, atol=1e-5, grad_out=g)
    assert np.isfinite(out).all() and np.isfinite(grads[0]).all()
    np.testing.assert_array_equal(grads[0][[2, 5]], 0)  # ignored rows get no gradient


def test_cross_entropy_with_every_row_ignored_is_nan_like_pytorch():
    for impl in IMPLS:
        with np.errstate(invalid="ignore"):  # 0 / 0, as in PyTorch
            loss = F.cross_entropy(Tensor(np.zeros((2, 3), np.float32)), np.array([-100, -100]), impl=impl)
        assert np.isnan(loss.item())
        assert F.cross_entropy(Tensor(np.zeros((2, 3), np.float32)), np.array([-100, -100]), reduction="sum", impl=impl).item() == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize("impl", IMPLS + ["use_fused(False)"])
def test_every_row_ignored_gives_a_nan_mean_and_a_zero_gradient_like_pytorch(impl, ls, dtype):
    """PyTorch 2.13: F.cross_entropy(x, full(-100)) is nan and x.grad is zeros (not NaN) for
    'mean'; 'sum' gives 0 and 'none' zeros, with zero gradients. nll_loss likewise."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4)).astype(dtype)        # (B, T, C) with (B, T) targets, as a GPT's
    y = np.full((2, 3), -1)
    kw = {} if impl == "use_fused(False)" else {"impl": impl}
    for reduction in ("mean", "sum", "none"):
        t = Tensor(x, requires_grad=True)
        with F.use_fused(impl != "use_fused(False)"), np.errstate(divide="ignore", invalid="ignore"):
            # (the composed mean divides 0 / 0 forward and g / 0 backward; numpy would warn)
            loss = F.cross_entropy(t, y, ignore_index=-1, reduction=reduction, label_smoothing=ls, **kw)
            loss.backward(Tensor(rng.standard_normal(loss.shape).astype(dtype)))
        assert loss.dtype == dtype
        if reduction == "mean":
            assert loss.shape == () and np.isnan(loss.item())
        else:
            np.testing.assert_array_equal(loss.detach().numpy(), np.zeros(() if reduction == "sum" else (2, 3)))
        assert t.grad.dtype == dtype
        np.testing.assert_array_equal(t.grad.numpy(), np.zeros_like(x), err_msg=f"{reduction} gradient")
    if ls == 0.0 and impl != "fused":                       # nll_loss is composed only
        t = Tensor(x, requires_grad=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = F.nll_loss(t, y, ignore_index=-1)
            loss.backward()
        assert np.isnan(loss.item())
        np.testing.assert_array_equal(t.grad.numpy(), np.zeros_like(x))


@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize("impl", IMPLS)
def test_an_ignored_row_gets_a_zero_gradient_even_from_a_non_finite_upstream_gradient(impl, ls):
    """As PyTorch: an ignored row's gradient is selected to 0, not multiplied by 0, so an inf or
    NaN upstream gradient (at that row for 'none', the scalar for 'sum' / 'mean') leaves it 0."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 4))
    y = np.array([1, -100, 3, -100, 0])
    for reduction, cot in (("none", np.array([0.5, np.inf, -1.0, np.nan, 2.0])),
                           ("sum", np.array(np.inf)), ("mean", np.array(np.nan))):
        t = Tensor(x, requires_grad=True)
        with np.errstate(invalid="ignore"):
            loss = F.cross_entropy(t, y, reduction=reduction, label_smoothing=ls, impl=impl)
            loss.backward(Tensor(cot))
        grad = t.grad.numpy()
        np.testing.assert_array_equal(grad[[1, 3]], 0, err_msg=f"{reduction}: ignored rows")
        if reduction == "none":                              # the finite rows keep their gradient
            assert np.isfinite(grad[[0, 2, 4]]).all()
        else:
            assert not np.isfinite(grad[[0, 2, 4]]).any()


def test_fused_cross_entropy_with_every_row_ignored_warns_of_nothing():
    import warnings
    t = Tensor(np.zeros((2, 3), np.float32), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.cross_entropy(t, np.array([-100, -100]), impl="fused").backward()
    np.testing.assert_array_equal(t.grad.numpy(), 0)


@FAST
@given(b=st.integers(1, 3), h=st.integers(1, 3), tq=st.integers(1, 6), tk=st.integers(1, 6), hs=st.integers(1, 5),
       kind=st.sampled_from(["none", "causal", "bool", "float"]), seed=st.integers(0, 999))
def test_fused_and_composed_attention_agree(b, h, tq, tk, hs, kind, seed):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((b, h, t, hs)) for t in (tq, tk, tk))
    extra = []
    if kind == "bool":
        extra = [rng.random((tq, tk)) < 0.5]
    elif kind == "float":
        extra = [rng.standard_normal((b, 1, tq, tk))]
    g = rng.standard_normal((b, h, tq, hs))
    out, grads = assert_agree(lambda impl, q, k, v, *m: F.scaled_dot_product_attention(
        q, k, v, attn_mask=m[0] if m else None, is_causal=kind == "causal", impl=impl), q, k, v, *extra, grad_out=g,
        **TIGHT)
    assert np.isfinite(out).all() and all(np.isfinite(x).all() for x in grads if x is not None)


def test_attention_fully_masked_row_gives_zeros_not_nan_and_leaves_other_rows_alone():
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((1, 2, 3, 4)).astype(np.float32) for _ in range(3))
    mask = np.ones((3, 3), bool)
    mask[1] = False  # query 1 may attend to nothing
    out, grads = assert_agree(lambda impl, q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, impl=impl), q, k, v)
    np.testing.assert_array_equal(out[:, :, 1], 0)
    np.testing.assert_array_equal(grads[0][:, :, 1], 0)
    assert all(np.isfinite(x).all() for x in grads)
    unmasked = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v)).numpy()
    np.testing.assert_allclose(out[:, :, [0, 2]], unmasked[:, :, [0, 2]], rtol=1e-6)
    # and -inf scores in a float mask behave the same
    fmask = np.where(mask, 0, -np.inf).astype(np.float32)
    for impl in IMPLS:
        o = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), attn_mask=fmask, impl=impl).numpy()
        np.testing.assert_allclose(o, out, rtol=1e-6, atol=1e-7)


def test_causal_attention_with_logits_of_plus_minus_1000_is_exact_and_finite():
    """Scores of +-1000 (masked future keys far above the visible ones, and the reverse): the
    per-query max shift keeps every visible score exact; nothing overflows or turns NaN."""
    b, t, nh, hs = 2, 5, 2, 3
    rng = np.random.default_rng(4)
    q, k, v = rng.standard_normal((3, b, nh, t, hs))
    q[..., 0] = 1.0
    k[..., 0] = np.where(np.arange(t) % 2, 1000.0, -1000.0) * math.sqrt(hs)   # scores ~ +-1000 per key
    qkv = np.concatenate([z.transpose(0, 2, 1, 3).reshape(b, t, nh * hs) for z in (q, k, v)], axis=-1)
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(hs)
    s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    want = ((p / p.sum(-1, keepdims=True)) @ v).transpose(0, 2, 1, 3).reshape(b, t, nh * hs)
    # float32 scores of ~1000 carry ~1e-4 absolute rounding, hence its looser tolerance
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-3)):
        x = Tensor(qkv.astype(dtype), requires_grad=True)
        out = F.causal_self_attention(x, nh, impl="fused")
        out.backward(Tensor(np.ones(out.shape, dtype)))
        np.testing.assert_allclose(out.data, want, rtol=tol, atol=tol)
        assert np.isfinite(x.grad.data).all()


def test_gelu_tanh_is_finite_and_exact_far_out():
    """FusedGeluTanh at |x| up to 1e4: y -> x for large x, -> 0 for very negative x; dy/dx -> 1 and 0."""
    x = np.array([-1e4, -50.0, -10.0, -3.0, 0.0, 3.0, 10.0, 50.0, 1e4])
    want = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    for dtype in (np.float64, np.float32):
        t = Tensor(x.astype(dtype), requires_grad=True)
        y = F.gelu(t, "tanh", impl="fused")
        y.sum().backward()
        np.testing.assert_allclose(y.data, want, rtol=1e-6, atol=1e-6)
        g = t.grad.data
        assert np.isfinite(g).all()
        np.testing.assert_allclose(g[[0, 1, -2, -1]], [0, 0, 1, 1], atol=1e-6)


def test_attention_matches_explicit_numpy():
    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal((2, 5, 3)) for _ in range(3))
    s = q @ k.transpose(0, 2, 1) / math.sqrt(3)
    s = np.where(np.tril(np.ones((5, 5), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    want = (p / p.sum(-1, keepdims=True)) @ v
    for impl in IMPLS:
        got = F.scaled_dot_product_attention(t64(q, False), t64(k, False), t64(v, False), is_causal=True, impl=impl).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_attention_dropout_fused_and_composed_draw_the_same_mask():
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((2, 2, 6, 4)).astype(np.float32) for _ in range(3))
    outs = []
    for impl in IMPLS:
        tg.manual_seed(11)
        ts = [Tensor(a, requires_grad=True) for a in (q, k, v)]
        o = F.scaled_dot_product_attention(*ts, dropout_p=0.25, is_causal=True, impl=impl)
        o.sum().backward()
        outs.append([o.data] + [t.grad.data for t in ts])
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    tg.manual_seed(11)
    plain = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), is_causal=True).numpy()
    assert not np.allclose(plain, outs[0][0])


@FAST
@given(shape=shapes, affine=st.booleans(), seed=st.integers(0, 99))
def test_fused_and_composed_layer_norm_agree(shape, affine, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 5 + 3
    wb = [rng.standard_normal(shape[-1:]) for _ in range(2)] if affine else []
    g = rng.standard_normal(shape)
    assert_agree(lambda impl, x, *wb: F.layer_norm(x, shape[-1], *wb, impl=impl), x, *wb, grad_out=g, **TIGHT)


@FAST
@given(shape=shapes, out=st.integers(1, 5), seed=st.integers(0, 99))
def test_fused_and_composed_linear_and_gelu_agree(shape, out, seed):
    rng = np.random.default_rng(seed)
    x, w, b = (rng.standard_normal(s) for s in (shape, (out, shape[-1]), (out,)))
    g = rng.standard_normal(shape[:-1] + (out,))
    assert_agree(lambda impl, x, w, b: F.linear(x, w, b, impl=impl), x, w, b, grad_out=g, **TIGHT)
    assert_agree(lambda impl, x: F.gelu(x * 3, "tanh", impl=impl), x, grad_out=np.ones(shape), **TIGHT)


@FAST
@given(b=st.integers(1, 3), t=st.integers(1, 6), nh=st.integers(1, 3), hs=st.integers(1, 4), seed=st.integers(0, 99))
def test_fused_and_composed_causal_self_attention_agree(b, t, nh, hs, seed):
    rng = np.random.default_rng(seed)
    qkv = rng.standard_normal((b, t, 3 * nh * hs))
    assert_agree(lambda impl, a: F.causal_self_attention(a, nh, impl=impl), qkv,
                 grad_out=rng.standard_normal((b, t, nh * hs)), **TIGHT)


def test_fused_and_composed_agree_in_float32_on_gpt_sized_inputs():
    """float32 at a GPT's shapes: the same numbers to float32 precision, forward and backward."""
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    x, g = f32(4, 16, 32), f32(4, 16, 32)
    kw = dict(rtol=2e-4, atol=2e-5)
    assert_agree(lambda impl, x: F.softmax(x * 4, -1, impl=impl), x, grad_out=g, **kw)
    assert_agree(lambda impl, x: F.log_softmax(x * 4, -1, impl=impl), x, grad_out=g, **kw)
    assert_agree(lambda impl, x, w, b: F.layer_norm(x, 32, w, b, impl=impl), x, f32(32), f32(32), grad_out=g, **kw)
    assert_agree(lambda impl, x: F.gelu(x * 3, "tanh", impl=impl), x, grad_out=g, **kw)
    assert_agree(lambda impl, x, w, b: F.linear(x, w, b, impl=impl), x, f32(24, 32), f32(24), grad_out=f32(4, 16, 24), **kw)
    y = rng.integers(0, 32, (4, 16))
    assert_agree(lambda impl, x: F.cross_entropy(x * 3, y, impl=impl), x, **kw)
    assert_agree(lambda impl, q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, impl=impl),
                 f32(2, 4, 16, 8), f32(2, 4, 16, 8), f32(2, 4, 16, 8), grad_out=f32(2, 4, 16, 8), **kw)
    assert_agree(lambda impl, a: F.causal_self_attention(a, 4, impl=impl), f32(2, 16, 96), grad_out=f32(2, 16, 32), **kw)


# ================================================================ hand computations
def test_softmax_ce_grad_is_p_minus_y():
    logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0], [0.0, 0.0, 0.0], [3.0, -2.0, 1.0]])
    y = np.array([0, 2, 1, -100])
    for impl in IMPLS:
        x = t64(logits)
        F.cross_entropy(x, y, impl=impl).backward()
        e = np.exp(logits - logits.max(1, keepdims=True))
        p = e / e.sum(1, keepdims=True)
        onehot = np.zeros_like(p)
        onehot[np.arange(3), y[:3]] = 1
        want = np.zeros_like(p)
        want[:3] = (p[:3] - onehot[:3]) / 3  # N = 3 rows that count; the ignored row gets 0
        np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-12, atol=1e-15)


def test_cross_entropy_matches_a_hand_computation():
    logits = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    y = np.array([2, 0])
    l0 = -3.0 + math.log(math.exp(1) + math.exp(2) + math.exp(3))
    l1 = math.log(3.0)
    for impl in IMPLS:
        assert F.cross_entropy(t64(logits), y, impl=impl).item() == pytest.approx((l0 + l1) / 2, rel=1e-12)
        assert F.cross_entropy(t64(logits), y, reduction="sum", impl=impl).item() == pytest.approx(l0 + l1, rel=1e-12)
        np.testing.assert_allclose(F.cross_entropy(t64(logits, False), y, reduction="none", impl=impl).numpy(), [l0, l1],
                                   rtol=1e-12)
        # label smoothing eps: (1 - eps) * nll + eps * mean_c(-log p_c)
        eps = 0.2
        lse = math.log(math.exp(1) + math.exp(2) + math.exp(3))
        s0 = (1 - eps) * l0 + eps * (lse - 2.0)
        s1 = (1 - eps) * l1 + eps * l1
        got = F.cross_entropy(t64(logits), y, label_smoothing=eps, impl=impl).item()
        assert got == pytest.approx((s0 + s1) / 2, rel=1e-12)


def test_label_smoothed_gradient_is_p_minus_smoothed_target():
    logits = np.array([[0.3, -1.0, 2.0, 0.0]])
    x = t64(logits)
    F.cross_entropy(x, np.array([1]), label_smoothing=0.4).backward()
    p = np.exp(logits) / np.exp(logits).sum()
    q = np.full(4, 0.4 / 4)
    q[1] += 0.6
    np.testing.assert_allclose(x.grad.numpy(), p - q, rtol=1e-12)


def test_layer_norm_matches_explicit_numpy_formula():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((3, 4, 6)), rng.standard_normal(6), rng.standard_normal(6)
    want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b
    for impl in IMPLS:
        got = F.layer_norm(t64(x, False), 6, t64(w, False), t64(b, False), impl=impl).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_gelu_matches_its_formulas():
    x = np.linspace(-6, 6, 25)
    erf = np.vectorize(math.erf)  # the reference: Python's own erf, element by element (a test, not an op)
    exact = 0.5 * x * (1 + erf(x / math.sqrt(2)))
    tanh = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    for impl in IMPLS:
        np.testing.assert_allclose(F.gelu(t64(x, False), impl=impl).numpy(), exact, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(F.gelu(t64(x, False), "tanh", impl=impl).numpy(), tanh, rtol=1e-12, atol=1e-15)


def test_dropout_scales_survivors_and_is_identity_in_eval():
    x = Tensor(np.ones((200, 50), np.float32))
    tg.manual_seed(0)
    y = F.dropout(x, 0.2).numpy()
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.8)}
    assert abs((y == 0).mean() - 0.2) < 0.02 and abs(y.mean() - 1.0) < 0.03
    assert y.dtype == np.float32
    assert F.dropout(x, 0.2, training=False) is x and F.dropout(x, 0.0) is x
    assert F.dropout(x, 1.0).numpy().max() == 0
    tg.manual_seed(0)
    np.testing.assert_array_equal(F.dropout(x, 0.2).numpy(), y)  # seeded: reproducible


# ================================================================ dtype, switch, cache
def test_float32_stays_float32_in_every_fused_and_composed_op():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 3, 4)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.standard_normal((5, 4)).astype(np.float32), requires_grad=True)
    for impl in IMPLS:
        outs = [F.softmax(x, impl=impl), F.log_softmax(x, impl=impl), F.layer_norm(x, 4, impl=impl),
                F.linear(x, w, impl=impl), F.gelu(x, "tanh", impl=impl),
                F.cross_entropy(x, np.zeros((2, 3), np.int64), impl=impl),
                F.scaled_dot_product_attention(x, x, x, is_causal=True, impl=impl),
                F.causal_self_attention(Tensor(rng.standard_normal((2, 3, 6)).astype(np.float32)), 2, impl=impl)]
        for o in outs:
            assert o.dtype == np.float32, o
        sum(o.sum() for o in outs[:-1]).backward()
        assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32
        x.grad = w.grad = None


def test_use_fused_switch_and_context_manager():
    assert F.fused_enabled()
    with F.use_fused(False):
        assert not F.fused_enabled()
        with F.use_fused(True):
            assert F.fused_enabled()
        assert not F.fused_enabled()
    assert F.fused_enabled()
    try:
        F.use_fused(False)
        assert not F.fused_enabled()
        x = Tensor(np.ones((2, 3), np.float32), requires_grad=True)
        assert type(F.softmax(x)._ctx).__name__ == "Div"  # composed: the last op is the division
        assert type(F.softmax(x, impl="fused")._ctx).__name__ == "FusedSoftmax"
    finally:
        F.use_fused(True)
    assert type(F.softmax(Tensor(np.ones(3, np.float32), requires_grad=True))._ctx).__name__ == "FusedSoftmax"
    with pytest.raises(ValueError, match="softmax: impl must be"):
        F.softmax(Tensor(np.ones(3)), impl="fast")


def test_causal_mask_is_built_once_per_shape_and_device():
    a = F.causal_mask(5, 5, 0, "cpu")
    assert a is F.causal_mask(5, 5, 0, "cpu")
    np.testing.assert_array_equal(a, ~np.tril(np.ones((5, 5), bool)))
    np.testing.assert_array_equal(F.causal_mask(2, 5, 3, "cpu"), ~np.tril(np.ones((5, 5), bool))[3:])


# ================================================================ errors
def test_errors_name_the_op_and_the_shapes():
    x = Tensor(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"cross_entropy: expected target of shape \(4,\) .*\(4, 3\).*got target shape \(3,\)"):
        F.cross_entropy(x, np.zeros(3, np.int64))
    with pytest.raises(IndexError, match=r"cross_entropy: target values must be in \[0, 3\).*\[3, 7\]"):
        F.cross_entropy(x, np.array([0, 3, 7, -100]))
    with pytest.raises(TypeError, match="cross_entropy: target must hold integer"):
        F.cross_entropy(x, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(x, np.zeros(4, np.int64), reduction="avg")
    with pytest.raises(ValueError, match=r"linear: input of shape \(4, 3\) does not fit weight of shape \(2, 5\)"):
        F.linear(x, Tensor(np.zeros((2, 5), np.float32)))
    with pytest.raises(ValueError, match=r"layer_norm: normalized_shape \(5,\) does not match .*\(4, 3\)"):
        F.layer_norm(x, 5)
    q = Tensor(np.zeros((2, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"scaled_dot_product_attention: query \(2, 4, 3\) and key \(2, 4, 5\)"):
        F.scaled_dot_product_attention(q, Tensor(np.zeros((2, 4, 5), np.float32)), q)
    with pytest.raises(ValueError, match="either attn_mask or is_causal"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=np.ones((4, 4), bool), is_causal=True)
    with pytest.raises(ValueError, match=r"attn_mask of shape \(3, 3\)"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=np.ones((3, 3), bool))
    with pytest.raises(ValueError, match=r"causal_self_attention: .*n_head=2.*\(2, 4, 9\)"):
        F.causal_self_attention(Tensor(np.zeros((2, 4, 9), np.float32)), 2)
    with pytest.raises(ValueError, match=r"mse_loss: input shape \(4, 3\) and target shape \(3,\)"):
        F.mse_loss(x, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="dropout: probability"):
        F.dropout(x, 1.5)


# ================================================================ the DPO loss
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("seed", [0, 1])
def test_dpo_loss_gradcheck(impl, reduction, seed):
    rng = np.random.default_rng(seed)
    arrays = [-rng.uniform(1, 20, 5) for _ in range(4)]
    check(lambda *ts: F.dpo_loss(*ts, beta=0.3, reduction=reduction, impl=impl), *arrays)


def test_dpo_loss_gradient_is_minus_beta_sigmoid_of_minus_the_margin():
    pc, pr, rc, rr = np.array([-5.0, -9.0, -3.0]), np.array([-7.0, -4.0, -3.0]), np.array([-6.0, -6.0, -2.0]), \
        np.array([-6.0, -6.0, -2.0])
    beta = 0.5
    z = beta * ((pc - rc) - (pr - rr))
    sig = 1 / (1 + np.exp(z))                         # sigmoid(-z)
    for impl in IMPLS:
        ts = [t64(a) for a in (pc, pr, rc, rr)]
        loss = F.dpo_loss(*ts, beta=beta, impl=impl)
        loss.backward()
        assert loss.item() == pytest.approx(np.mean(-np.log(1 / (1 + np.exp(-z)))), rel=1e-12)
        np.testing.assert_allclose(ts[0].grad.numpy(), -beta * sig / 3, rtol=1e-12)
        np.testing.assert_allclose(ts[1].grad.numpy(), beta * sig / 3, rtol=1e-12)
        np.testing.assert_allclose(ts[2].grad.numpy(), beta * sig / 3, rtol=1e-12)
        np.testing.assert_allclose(ts[3].grad.numpy(), -beta * sig / 3, rtol=1e-12)


def test_dpo_loss_at_the_reference_is_log_2_with_gradient_minus_beta_over_2():
    """Policy = reference: z = 0 exactly, loss log 2, and the gradient sigmoid(0) = 1/2, not the 0 that
    relu(-z) + log(1 + e^-|z|) would give through abs and relu at the kink."""
    lp = np.array([-4.0, -8.0])
    for impl in IMPLS:
        pc, pr = t64(lp), t64(lp[::-1].copy())
        loss = F.dpo_loss(pc, pr, lp, lp[::-1].copy(), beta=0.1, reduction="sum", impl=impl)
        loss.backward()
        assert loss.item() == pytest.approx(2 * math.log(2), rel=1e-15)
        np.testing.assert_allclose(pc.grad.numpy(), [-0.05, -0.05], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_and_composed_dpo_loss_agree_far_out_and_stay_finite(dtype):
    """Margins of +-1e4 (a policy far from its reference): loss -> max(-z, 0), gradient -> beta or 0."""
    pc = np.array([0.0, -1e4, -50.0, -3.0], dtype)
    pr = np.array([-1e4, 0.0, -50.0, -3.5], dtype)
    zeros = np.zeros(4, dtype)
    out, grads = assert_agree(lambda impl, a, b, c, d: F.dpo_loss(a, b, c, d, beta=1.0, reduction="none", impl=impl),
                              pc, pr, zeros, zeros)
    assert out.dtype == dtype and np.isfinite(out).all() and np.isfinite(grads[0]).all()
    np.testing.assert_allclose(out[:2], [0.0, 1e4], rtol=1e-6)
    np.testing.assert_allclose(grads[0][:2], [0.0, -1.0], atol=1e-6)


def test_dpo_loss_errors_name_the_inputs():
    a = Tensor(np.zeros(3))
    with pytest.raises(ValueError, match="one shape .*policy_rejected_logps \\(2,\\)"):
        F.dpo_loss(a, Tensor(np.zeros(2)), a, a)
    with pytest.raises(ValueError, match="beta must be a finite number > 0, got 0"):
        F.dpo_loss(a, a, a, a, beta=0)
    with pytest.raises(ValueError, match="no pairs"):
        F.dpo_loss(Tensor(np.zeros(0)), Tensor(np.zeros(0)), Tensor(np.zeros(0)), Tensor(np.zeros(0)))
