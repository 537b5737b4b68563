"""Every op: float64 gradient check and forward against numpy, on shapes hypothesis chooses.

The op table lives in `tinygrad_lm.opcheck` (one OpSpec per registered op); here hypothesis
drives each spec's structural choices (shapes, broadcasting, dim, keepdim, ...) so a
failure shrinks to the smallest case. `test_every_registered_op_has_a_spec` fails when an
op anywhere in the package has no spec, and so no gradient test.
"""
import importlib
import math
import pkgutil
import sys
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_lm as tg
from tinygrad_lm import opcheck
from tinygrad_lm.opcheck import Case, Draw, OpSpec, check_case, check_forward
from tinygrad_lm.engine import Function

from conftest import DEVICES


class HypothesisDraw(Draw):
    """Structure from hypothesis (so it shrinks), values from a numpy generator it seeds."""

    def __init__(self, data):
        super().__init__(np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed")))
        self.data = data

    def integer(self, lo, hi):
        return self.data.draw(st.integers(lo, hi))

    def shape(self, min_dims=0, max_dims=3, min_side=1, max_side=4):
        return self.data.draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side))


FAST = settings(max_examples=12, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
SPEC_NAMES = sorted(opcheck.all_specs())


# ================================================================ every spec
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", SPEC_NAMES)
@FAST
@given(data=st.data())
def test_op_matches_finite_differences_and_numpy(op, device, data):
    spec = opcheck.SPECS[op]
    case = spec.sample(HypothesisDraw(data))
    report, fwd_error = check_case(spec, case, device)
    assert not fwd_error, f"{op} {case.describe()}: {fwd_error}"
    if report is not None:
        assert report.passed, f"{op} {case.describe()}\n{report.table()}"
    # float32 in, float32 out, and the same numbers to float32 precision
    err32 = check_forward(spec, case, np.float32, device)
    assert not err32, f"{op} {case.describe()} (float32, {device}): {err32}"


def _import_package():
    """Import every tinygrad_lm module, so every op anywhere is in Function.registry."""
    pkg = importlib.import_module("tinygrad_lm")
    for m in pkgutil.walk_packages(pkg.__path__, "tinygrad_lm."):
        if not m.name.endswith("__main__"):
            try:
                importlib.import_module(m.name)
            except ImportError:  # an optional dependency (matplotlib, cupy) that is not installed
                pass


def test_every_engine_op_has_a_spec():
    missing = [op for op in opcheck.engine_ops() if op not in opcheck.all_specs()]
    assert not missing, f"engine ops without an OpSpec: {missing}"


def test_every_registered_op_has_a_spec():
    """Fails, listing them, while any op in the package (fused ones included) has no OpSpec.

    The package's specs live in tinygrad_lm/opcheck/ (engine_specs.py, fused_specs.py); a new
    op gets one there, or through `register_spec(OpSpec(...))` / an `opcheck_specs()` function.
    """
    _import_package()
    missing = opcheck.missing_specs()
    assert not missing, (
        f"{len(missing)} registered op(s) have no OpSpec, so no gradient test: {', '.join(missing)} "
        f"(from {sorted({Function.registry[m].__module__ for m in missing})}). Add one with "
        "an OpSpec in tinygrad_lm/opcheck/engine_specs.py or fused_specs.py, or "
        "tinygrad_lm.opcheck.register_spec(OpSpec(op=..., sample=..., call=..., reference=...)).")


def test_an_op_without_a_spec_is_reported_missing():
    """The guard above works: a new op in the package with no spec shows up in missing_specs()."""
    cls = type("Unchecked", (Function,), {"__module__": "tinygrad_lm.ops.fused", "forward": lambda self, a: a,
                                           "backward": lambda self, g: g})
    try:
        assert Function.registry["Unchecked"] is cls and opcheck.missing_specs() == ["Unchecked"]
    finally:
        Function.registry.pop("Unchecked", None)
    assert opcheck.missing_specs() == []


def test_run_op_gradchecks_covers_every_spec_and_formats_a_table():
    rows = opcheck.run_op_gradchecks(seed=1, ops=["add", "Matmul", "sum"], cases=2)
    assert [r.op for r in rows] == ["Add", "Add", "Matmul", "Matmul", "Sum", "Sum"]
    for r in rows:
        op, shapes, rel, passed, secs = r  # unpacks as the documented 5 fields
        assert passed and r["passed"] and rel < 1e-5 and secs >= 0 and isinstance(shapes, str)
    table = opcheck.format_table(rows)
    assert "Matmul" in table and "6/6 checks passed over 3 ops" in table
    with pytest.raises(ValueError, match="no spec for"):
        opcheck.run_op_gradchecks(ops=["no_such_op"])


def test_a_wrong_reference_or_a_wrong_gradient_is_reported():
    bad_fwd = OpSpec("Exp", lambda d: Case([d.normal((3,))]), lambda x: x.exp(), lambda x: np.exp(x) + 1e-6)
    report, err = check_case(bad_fwd, bad_fwd.sample(Draw(np.random.default_rng(0))))
    assert report.passed and "differs from the numpy reference" in err
    bad_grad = OpSpec("Exp", lambda d: Case([d.normal((3,))]), lambda x: x.exp().detach() * x.detach() + x * 0, None)
    report, err = check_case(bad_grad, bad_grad.sample(Draw(np.random.default_rng(0))))
    assert not report.passed and err == ""


def test_register_spec_refuses_a_second_spec_for_an_op_unless_replacing():
    spec = opcheck.SPECS["Add"]
    with pytest.raises(ValueError, match="already has a spec"):
        opcheck.register_spec(OpSpec("Add", spec.sample, spec.call, spec.reference))
    assert opcheck.register_spec(spec, replace=True) is spec


def test_opcheck_specs_function_in_an_op_module_is_collected(monkeypatch):
    """A module defining ops can provide `opcheck_specs()`; all_specs() calls it lazily."""
    mod = types.ModuleType("tinygrad_lm._fake_ops")
    spec = OpSpec("FakeDouble", lambda d: Case([d.normal((2,))]), lambda x: x * 2, lambda x: x * 2)
    mod.opcheck_specs = lambda: [spec]
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    type("FakeDouble", (Function,), {"__module__": mod.__name__, "forward": lambda self, a: a * 2,
                                     "backward": lambda self, g: g * 2})
    try:
        assert opcheck.all_specs()["FakeDouble"] is spec
        assert "FakeDouble" not in opcheck.missing_specs()
    finally:
        Function.registry.pop("FakeDouble", None)
        opcheck.SPECS.pop("FakeDouble", None)


# ================================================================ broadcasting, keepdim, scalars
BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "div": (lambda a, b: a / b, lambda a, b: a / b),
    "pow": (lambda a, b: a ** b, lambda a, b: a ** b),
    "maximum": (lambda a, b: a.maximum(b), np.maximum),
    "minimum": (lambda a, b: tg.minimum(a, b), np.minimum),
}
PAIRS = [((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((), (2, 3)), ((2, 1, 3), (4, 1)), ((1,), (3, 2, 1)), ((2, 3), (2, 3))]


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("sa,sb", PAIRS)
def test_binary_op_broadcasts_and_reduces_grads_to_input_shapes(name, sa, sb, rng):
    ours, ref = BINARY[name]
    a = rng.uniform(0.5, 2.0, sa)
    b = rng.uniform(0.5, 2.0, sb) + 0.3 * (name in ("maximum", "minimum"))  # no ties
    x, y = tg.tensor(a, requires_grad=True), tg.tensor(b, requires_grad=True)
    out = ours(x, y)
    assert out.shape == np.broadcast_shapes(sa, sb)
    np.testing.assert_allclose(out.numpy() if not out.requires_grad else out.detach().numpy(), ref(a, b), rtol=1e-12)
    out.sum().backward()
    assert x.grad.shape == sa and y.grad.shape == sb
    tg.gradcheck(ours, [tg.tensor(a, requires_grad=True), tg.tensor(b, requires_grad=True)], mode="element")


REDUCTIONS = {
    "sum": (lambda x, d, k: x.sum(d, keepdim=k), lambda a, d, k: a.sum(d, keepdims=k)),
    "mean": (lambda x, d, k: x.mean(d, keepdim=k), lambda a, d, k: a.mean(d, keepdims=k)),
    "amax": (lambda x, d, k: x.amax(d, keepdim=k), lambda a, d, k: a.max(d, keepdims=k)),
    "amin": (lambda x, d, k: x.amin(d, keepdim=k), lambda a, d, k: a.min(d, keepdims=k)),
    "var": (lambda x, d, k: x.var(d, keepdim=k), lambda a, d, k: a.var(d, ddof=1, keepdims=k)),
    "var0": (lambda x, d, k: x.var(d, correction=0, keepdim=k), lambda a, d, k: a.var(d, keepdims=k)),
    "std": (lambda x, d, k: x.std(d, keepdim=k), lambda a, d, k: a.std(d, ddof=1, keepdims=k)),
    "std0": (lambda x, d, k: x.std(d, correction=0, keepdim=k), lambda a, d, k: a.std(d, keepdims=k)),
    "logsumexp": (lambda x, d, k: x.logsumexp(d, keepdim=k), lambda a, d, k: np.logaddexp.reduce(a, d, keepdims=k)),
    "prod": (lambda x, d, k: x.prod(d, keepdim=k), lambda a, d, k: a.prod(d, keepdims=k)),
}


@pytest.mark.parametrize("name", REDUCTIONS)
@pytest.mark.parametrize("dim", [None, 0, -1, (0, 2), (2, 0, 1)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_reduction_over_dim_with_keepdim(name, dim, keepdim):
    ours, ref = REDUCTIONS[name]
    a = Draw(np.random.default_rng(1)).distinct((2, 3, 4)) * 3
    x = tg.tensor(a, requires_grad=True)
    out = ours(x, dim, keepdim)
    np.testing.assert_allclose(out.detach().numpy(), ref(a, dim, keepdim), rtol=1e-10)
    out.sum().backward()
    assert x.grad.shape == a.shape and x.grad.dtype == np.float64
    tg.gradcheck(lambda t: ours(t, dim, keepdim), [tg.tensor(a, requires_grad=True)], mode="element")


SCALAR_OPS = {
    "+": (lambda x, s: x + s, lambda x, s: s + x, lambda a, s: a + s, lambda a, s: s + a),
    "-": (lambda x, s: x - s, lambda x, s: s - x, lambda a, s: a - s, lambda a, s: s - a),
    "*": (lambda x, s: x * s, lambda x, s: s * x, lambda a, s: a * s, lambda a, s: s * a),
    "/": (lambda x, s: x / s, lambda x, s: s / x, lambda a, s: a / s, lambda a, s: s / a),
    "**": (lambda x, s: x ** s, lambda x, s: s ** x, lambda a, s: a ** s, lambda a, s: s ** a),
}


@pytest.mark.parametrize("op", SCALAR_OPS)
@pytest.mark.parametrize("scalar", [2, 2.5, np.float64(1.5)])
@pytest.mark.parametrize("side", ["right", "left"])
def test_python_scalars_on_either_side_of_every_operator(op, scalar, side):
    t_right, t_left, n_right, n_left = SCALAR_OPS[op]
    a = np.array([0.5, 1.0, 2.0], dtype=np.float32)
    x = tg.tensor(a, requires_grad=True)
    out = (t_right if side == "right" else t_left)(x, scalar)
    expected = (n_right if side == "right" else n_left)(a, scalar)
    assert out.dtype == np.float32, "a Python scalar must not promote float32"
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-6)
    tg.gradcheck(lambda t: (t_right if side == "right" else t_left)(t, scalar), [tg.tensor(a.astype(np.float64), requires_grad=True)])


@pytest.mark.parametrize("op", ["__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"])
def test_comparisons_return_bool_tensors_without_grad(op):
    x = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = tg.tensor([[2.0], [1.0]])
    for other in (y, 2.0, 2):
        out = getattr(x, op)(other)
        ref = getattr(np.array([1.0, 2.0, 3.0]), op)(other.numpy() if isinstance(other, tg.Tensor) else other)
        assert out.dtype == np.bool_ and not out.requires_grad and out._ctx is None
        np.testing.assert_array_equal(out.numpy(), ref)
    # scalars on the left reflect: 2 < x is x > 2
    np.testing.assert_array_equal((2 < x).numpy(), [False, False, True])
    np.testing.assert_array_equal((2.0 == x).numpy(), [False, True, False])


def test_pow_forms_tensor_number_tensor_tensor_number_tensor():
    a = np.array([0.5, 1.5, 2.0])
    for fn in (lambda t: t ** 3, lambda t: t ** 0.5, lambda t: t ** t, lambda t: 2 ** t, lambda t: t ** -1.5):
        tg.gradcheck(fn, [tg.tensor(a, requires_grad=True)], mode="element")
    # d/db of 0 ** b is 0 for b > 0 (not NaN from log 0)
    b = tg.tensor([2.0], requires_grad=True)
    (tg.tensor([0.0]) ** b).sum().backward()
    assert b.grad.tolist() == [0.0]


# ================================================================ ties, stability, special values
def test_max_ties_share_the_gradient_evenly():
    x = tg.tensor([1.0, 3.0, 3.0, 2.0], requires_grad=True)
    x.max().backward()
    assert x.grad.tolist() == [0.0, 0.5, 0.5, 0.0]
    y = tg.tensor([[5.0, 5.0, 5.0], [1.0, 4.0, 4.0]], requires_grad=True)
    y.amax(dim=1).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [[1 / 3, 1 / 3, 1 / 3], [0, 0.5, 0.5]])


def test_min_ties_share_the_gradient_evenly_and_max_dim_returns_values_and_indices():
    x = tg.tensor([[2.0, 0.0, 0.0], [1.0, 7.0, 1.0]], requires_grad=True)
    values, indices = x.min(dim=1)
    assert values.tolist() == [0.0, 1.0] and indices.tolist() == [1, 0] and indices.dtype == np.int64
    values.sum().backward()
    assert x.grad.tolist() == [[0.0, 0.5, 0.5], [0.5, 0.0, 0.5]]
    v, i = tg.tensor([[1.0, 9.0], [3.0, 2.0]]).max(dim=0, keepdim=True)
    assert v.tolist() == [[3.0, 9.0]] and i.tolist() == [[1, 0]]


def test_maximum_and_minimum_split_ties_in_half():
    a = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = tg.tensor([1.0, 5.0, 0.0], requires_grad=True)
    (a.maximum(b) + a.minimum(b) * 10).sum().backward()
    assert a.grad.tolist() == [5.5, 10.0, 1.0] and b.grad.tolist() == [5.5, 1.0, 10.0]


def test_logsumexp_of_extremes_is_finite_and_exact():
    x = tg.tensor([-1000.0, 0.0, 1000.0], dtype=tg.float64, requires_grad=True)
    y = x.logsumexp(0)
    assert y.item() == 1000.0
    y.backward()
    assert x.grad.tolist() == [0.0, 0.0, 1.0]
    x32 = tg.tensor([-1000.0, 0.0, 1000.0])
    assert x32.logsumexp(0).item() == 1000.0 and x32.logsumexp(0).dtype == np.float32
    assert tg.tensor([[-np.inf, -np.inf]]).logsumexp(1).item() == -np.inf  # a fully masked row stays -inf
    np.testing.assert_allclose(tg.tensor([0.0, 0.0]).logsumexp(0).item(), math.log(2), rtol=1e-7)


def test_sigmoid_and_exp_of_extremes_do_not_overflow():
    x = tg.tensor([-1000.0, -30.0, 0.0, 30.0, 1000.0], requires_grad=True)
    with np.errstate(over="raise"):
        y = x.sigmoid()
    assert y.tolist()[0] == 0.0 and y.tolist()[2] == 0.5 and y.tolist()[4] == 1.0
    np.testing.assert_allclose(y.detach().numpy()[1], 1 / (1 + math.exp(30)), rtol=1e-6)
    y.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()


def test_gelu_exact_and_tanh_known_values():
    x = tg.tensor([-1.0, 0.0, 1.0], dtype=tg.float64)
    np.testing.assert_allclose(x.gelu().numpy(), [-0.15865525393145707, 0.0, 0.8413447460685429], rtol=1e-12)
    np.testing.assert_allclose(x.gelu(approximate="tanh").numpy(), [-0.15880800939172324, 0.0, 0.8411919906082768], rtol=1e-12)
    with pytest.raises(ValueError, match="gelu"):
        x.gelu(approximate="fast")


def test_erf_without_scipy_matches_math_erf(monkeypatch):
    import sys
    from tinygrad_lm import backend
    monkeypatch.setitem(sys.modules, "scipy.special", None)  # `from scipy.special import erf` now fails
    x = np.concatenate([np.linspace(-7, 7, 1401), [0.0, 1.499999, 1.5, 1.500001, -1.5]])
    ours = backend.erf(x)
    ref = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-13)
    assert backend.erf(x.astype(np.float32)).dtype == np.float32


def test_erf_float32_path_without_scipy_is_float32_accurate(monkeypatch):
    # float32 inputs take the fast Chebyshev erfc fit: absolute error below 5e-7 (a few float32
    # ulps of 1; erf(x) = 1 - erfc(x) is not relatively accurate near 0, which GELU's
    # Phi = (1 + erf) / 2 does not need)
    import sys
    from tinygrad_lm import backend
    monkeypatch.setitem(sys.modules, "scipy.special", None)
    x = np.concatenate([np.linspace(-9, 9, 36001), [0.0, -0.0, 1e-30, -1e-30]]).astype(np.float32)
    ours = backend.erf(x)
    assert ours.dtype == np.float32 and ours.shape == x.shape
    ref = np.array([math.erf(float(v)) for v in x])
    np.testing.assert_allclose(ours.astype(np.float64), ref, rtol=0, atol=5e-7)
    assert np.all(np.diff(ours[:36001]) >= 0)  # monotone, like erf
    assert list(backend.erf(np.float32([np.inf, -np.inf]))) == [1.0, -1.0]
    assert np.isnan(backend.erf(np.float32([np.nan]))[0])
    assert float(backend.erf(np.array(0.5, dtype=np.float32))) == pytest.approx(math.erf(0.5), abs=1e-7)


def test_clamp_gradient_passes_inside_and_at_the_bounds():
    x = tg.tensor([-2.0, -1.0, 0.0, 1.0, 2.0], requires_grad=True)
    y = x.clamp(-1.0, 1.0)
    assert y.tolist() == [-1.0, -1.0, 0.0, 1.0, 1.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    assert x.clamp(min=0.5).tolist() == [0.5, 0.5, 0.5, 1.0, 2.0] and x.clip(max=0).tolist() == [-2.0, -1.0, 0.0, 0.0, 0.0]


def test_relu_and_abs_gradient_at_zero_is_zero():
    x = tg.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    (x.relu() + abs(x)).sum().backward()
    assert x.grad.tolist() == [-1.0, 0.0, 2.0]


def test_prod_gradient_with_zeros_is_exact():
    x = tg.tensor([[2.0, 0.0, 3.0], [0.0, 0.0, 5.0]], requires_grad=True)
    x.prod(dim=1).sum().backward()
    assert x.grad.tolist() == [[0.0, 6.0, 0.0], [0.0, 0.0, 0.0]]


def test_argmax_argmin_follow_numpy_without_grad():
    a = np.array([[1.0, 7.0, 3.0], [9.0, 2.0, 9.0]])
    x = tg.tensor(a, requires_grad=True)
    for dim in (None, 0, 1, -1):
        for keepdim in (False, True):
            for ours, ref in ((x.argmax, np.argmax), (x.argmin, np.argmin)):
                out = ours(dim, keepdim)
                expected = ref(a, axis=dim, keepdims=keepdim)
                assert out.dtype == np.int64 and not out.requires_grad
                np.testing.assert_array_equal(out.numpy(), expected)


# ================================================================ movement and indexing details
def test_repeated_integer_indices_accumulate_gradients():
    x = tg.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    x[[0, 0, 3, 0, -1]].sum().backward()
    assert x.grad.tolist() == [3.0, 0.0, 0.0, 2.0]
    w = tg.tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    w[tg.tensor([[2, 2], [0, 2]])].sum().backward()
    assert w.grad.tolist() == [[1.0, 1.0], [0.0, 0.0], [3.0, 3.0]]


def test_getitem_forms_match_numpy():
    a = np.arange(60.0).reshape(3, 4, 5)
    x = tg.tensor(a)
    for idx in [(slice(None, None, -1),), (1, slice(3, 0, -2)), (None, Ellipsis, 2), (Ellipsis, None),
                (slice(None), [0, 2, 2]), (np.array([True, False, True]),), (a > 30,), (Ellipsis, [4, 0]),
                (0, -1, -1), ([0, 1], [1, 2]), (slice(None), None, np.array([[1], [3]]), slice(1, 3))]:
        got = x[idx if len(idx) > 1 else idx[0]]
        np.testing.assert_array_equal(got.numpy(), a[idx if len(idx) > 1 else idx[0]], err_msg=str(idx))


def test_split_chunk_unbind_and_their_gradients():
    x = tg.tensor(np.arange(10.0), requires_grad=True)
    parts = x.split(4)
    assert [p.shape for p in parts] == [(4,), (4,), (2,)]
    sec = x.split([3, 7])
    assert [p.tolist() for p in sec] == [[0.0, 1.0, 2.0], list(np.arange(3.0, 10.0))]
    chunks = x.reshape(2, 5).chunk(3, dim=1)
    assert [c.shape for c in chunks] == [(2, 2), (2, 2), (2, 1)]
    (parts[0].sum() * 1 + parts[2].sum() * 3 + chunks[1].sum() * 10).backward()
    assert x.grad.tolist() == [1, 1, 11, 11, 0, 0, 0, 10, 13, 3]
    assert [t.tolist() for t in tg.tensor([[1, 2], [3, 4]]).unbind(1)] == [[1, 3], [2, 4]]


def test_stack_cat_and_pad_forward():
    a, b = tg.tensor([[1.0, 2.0]]), tg.tensor([[3.0, 4.0]])
    assert tg.cat([a, b]).tolist() == [[1, 2], [3, 4]] and tg.cat([a, b], dim=-1).tolist() == [[1, 2, 3, 4]]
    assert tg.stack([a, b], dim=1).shape == (1, 2, 2)
    assert tg.pad(a, (1, 2), value=9.0).tolist() == [[9, 1, 2, 9, 9]]
    assert tg.pad(a, (0, -1, 1, 0)).tolist() == [[0], [1]]


def test_tril_triu_masked_fill_one_hot_embedding():
    x = tg.ones(3, 3)
    assert x.tril().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert x.triu(1).tolist() == [[0, 1, 1], [0, 0, 1], [0, 0, 0]]
    causal = tg.ones(3, 3).tril() == 0
    filled = tg.zeros(2, 3, 3).masked_fill(causal, -np.inf)
    assert filled.shape == (2, 3, 3) and filled.numpy()[1, 0, 2] == -np.inf
    oh = tg.one_hot(tg.tensor([2, 0, 2]), 4)
    assert oh.dtype == np.int64 and not oh.requires_grad and oh.tolist() == [[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 1, 0]]
    assert tg.one_hot(tg.tensor([[1], [3]])).shape == (2, 1, 4)
    w = tg.tensor(np.arange(8.0).reshape(4, 2), requires_grad=True)
    e = tg.embedding(w, tg.tensor([[3, 3], [0, 3]]))
    assert e.shape == (2, 2, 2) and e.tolist()[1][0] == [0.0, 1.0]
    e.sum().backward()
    assert w.grad.tolist() == [[1, 1], [0, 0], [0, 0], [3, 3]]


def test_gather_follows_torch_and_take_along_dim_broadcasts():
    x = tg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]], requires_grad=True)
    idx = tg.tensor([[2, 0], [1, 1]])  # smaller than x outside dim 1: reads x[:2]
    out = x.gather(1, idx)
    assert out.tolist() == [[3.0, 1.0], [5.0, 5.0]]
    out.sum().backward()
    assert x.grad.tolist() == [[1, 0, 1], [0, 2, 0], [0, 0, 0]]
    t = tg.take_along_dim(tg.tensor([[10.0, 20.0], [30.0, 40.0]]), tg.tensor([[1], [0]]), dim=1)
    assert t.tolist() == [[20.0], [30.0]]
    flat = tg.take_along_dim(tg.tensor([[10.0, 20.0], [30.0, 40.0]]), tg.tensor([3, 0]))
    assert flat.tolist() == [40.0, 10.0]


def test_expand_repeat_and_transposes():
    x = tg.tensor([[1.0], [2.0]], requires_grad=True)
    y = x.expand(3, -1, 4)
    assert y.shape == (3, 2, 4)
    y.sum().backward()
    assert x.grad.tolist() == [[12.0], [12.0]]
    assert tg.tensor([[1, 2]]).repeat(2, 2).tolist() == [[1, 2, 1, 2], [1, 2, 1, 2]]
    z = tg.zeros(2, 3, 4)
    assert z.T.shape == (4, 3, 2) and z.mT.shape == (2, 4, 3) and z.transpose(0, -1).shape == (4, 3, 2)


def test_zero_size_and_zero_dim_edge_cases():
    assert tg.zeros(0, 3).flatten(1).shape == (0, 3)
    assert tg.zeros(0, 3).flatten().shape == (0,)
    s = tg.tensor(3.0, requires_grad=True)
    s.sum(0).backward()  # a 0-d tensor accepts dim 0, like torch
    assert s.grad.item() == 1.0
    assert tg.tensor(5.0).flatten().shape == (1,)
    assert tg.zeros(0, 2).sum(0).tolist() == [0.0, 0.0]
    assert [p.shape for p in tg.zeros(0, 2).split(2)] == [(0, 2)]


def test_matmul_follows_numpy_rules():
    rng = np.random.default_rng(0)
    for sa, sb in [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((4, 1, 2, 3), (5, 3, 2)), ((2, 2, 3), (3, 4))]:
        a, b = rng.standard_normal(sa), rng.standard_normal(sb)
        out = tg.tensor(a) @ tg.tensor(b)
        np.testing.assert_allclose(out.numpy(), a @ b, rtol=1e-12)
        tg.gradcheck(lambda x, y: x @ y, [tg.tensor(a, requires_grad=True), tg.tensor(b, requires_grad=True)])
    assert (tg.tensor([1.0, 2.0]) @ [3.0, 4.0]).item() == 11.0 and ([1.0, 2.0] @ tg.tensor([3.0, 4.0])).item() == 11.0
