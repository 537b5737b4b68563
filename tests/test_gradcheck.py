"""gradcheck: passes on correct gradients, fails loudly (and precisely) on wrong ones."""
import numpy as np
import pytest

import tinygrad_lm as tg
from tinygrad_lm.gradcheck import GradcheckError, GradcheckReport, InputReport, gradcheck
from tinygrad_lm.engine import Function


class _WrongSquare(Function):
    """z = a^2 with a deliberately wrong backward (a instead of 2a). The leading underscore
    keeps it out of Function.registry."""
    def forward(self, a):
        self.a = a
        return a * a

    def backward(self, g):
        return g * self.a


class _WrongSecondInput(Function):
    """z = a * b, correct for a, wrong for b (gives a + 1 instead of a)."""
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        return g * self.b, g * (self.a + 1)


def _t(*shape, seed=0, positive=False):
    a = np.random.default_rng(seed).standard_normal(shape)
    return tg.tensor(np.abs(a) + 0.5 if positive else a, dtype=tg.float64, requires_grad=True)


def test_wrong_custom_function_is_not_registered():
    assert "_WrongSquare" not in Function.registry


@pytest.mark.parametrize("fn,n_inputs", [
    (lambda x: (x * x).sum(), 1),
    (lambda x: x.exp().tanh(), 1),
    (lambda x, y: (x @ y).relu() + 0.0 * x.sum(), 2),
    (lambda x, y: (x.sigmoid() * y.T).logsumexp(-1), 2),
])
def test_gradcheck_passes_on_correct_functions(fn, n_inputs):
    inputs = [_t(3, 3, seed=0), _t(3, 3, seed=1)][:n_inputs]
    report = gradcheck(fn, inputs, mode="element")
    assert isinstance(report, GradcheckReport) and report.passed
    assert report.max_rel_err < 1e-6 and report.max_abs_err < 1e-6
    assert [r.elements_checked for r in report.inputs] == [9] * n_inputs


def test_gradcheck_fails_on_a_wrong_backward_and_names_input_and_values():
    x = _t(4, seed=2)
    with pytest.raises(GradcheckError) as e:
        gradcheck(lambda a: _WrongSquare.apply(a), [x], mode="element")
    msg = str(e.value)
    assert "Jacobian mismatch with respect to input 0" in msg
    assert "numeric" in msg and "analytic" in msg and "FAIL" in msg
    bad = e.value.report.inputs[0]
    assert not bad.passed and bad.worst.startswith("(")
    # the numbers shown are the ones at the worst element: numeric 2*v*a vs analytic v*a
    assert bad.numeric == pytest.approx(2 * bad.analytic, rel=1e-5)


def test_gradcheck_names_the_second_input_when_only_it_is_wrong():
    a, b = _t(3, seed=3), _t(3, seed=4)
    a.name = "weight"
    with pytest.raises(GradcheckError, match=r"input 1 \(input1, shape \(3,\)\)") as e:
        gradcheck(lambda x, y: _WrongSecondInput.apply(x, y), [a, b])
    report = e.value.report
    assert report.inputs[0].passed and not report.inputs[1].passed
    assert report.inputs[0].name == "weight"


def test_directional_mode_passes_and_fails_correctly():
    x = _t(50, 40, seed=5)
    report = gradcheck(lambda a: (a.tanh() * a).sum(), [x], mode="directional", n_directions=4)
    r = report.inputs[0]
    assert report.passed and r.directions == 4 and r.elements_checked == 0 and r.worst.startswith("direction")
    with pytest.raises(GradcheckError, match="direction"):
        gradcheck(lambda a: _WrongSquare.apply(a).sum(), [_t(50, 40, seed=6)], mode="directional")


def test_auto_mode_samples_elements_of_large_inputs_plus_directions():
    small, big = _t(3, seed=7), _t(20, 20, seed=8)
    report = gradcheck(lambda a, b: a.sum() * b.mean(), [small, big], max_elements=16, n_directions=2)
    assert [(r.elements_checked, r.directions) for r in report.inputs] == [(3, 0), (16, 2)]


def test_report_fields_and_table():
    report = gradcheck(lambda a: a.exp(), {"x": _t(2, 2, seed=9)}, mode="element")
    r = report.inputs[0]
    assert isinstance(r, InputReport)
    assert (r.index, r.name, tuple(r.shape), r.elements_checked, r.directions) == (0, "x", (2, 2), 4, 0)
    assert r.passed and 0 <= r.max_abs_err < 1e-6 and 0 <= r.max_rel_err < 1e-6
    assert isinstance(r.numeric, float) and isinstance(r.analytic, float)
    assert (report.eps, report.atol, report.rtol) == (1e-6, 1e-5, 1e-3) and report.seconds > 0
    table = report.table()
    assert "0:x" in table and "PASS" in table and "PASSED" in table and str(report) == table


def test_raise_exception_false_returns_a_failed_report():
    report = gradcheck(lambda a: _WrongSquare.apply(a), [_t(3, seed=10)], raise_exception=False)
    assert not report.passed and "FAILED" in report.table()


def test_inputs_are_restored_after_the_check():
    x = tg.tensor([1.0, 2.0], requires_grad=True)  # float32, checked in float64
    before = x.data
    x.grad = tg.tensor([9.0, 9.0])
    gradcheck(lambda a: (a * a).sum(), [x])
    assert x.data is before and x.dtype == np.float32 and x.grad.tolist() == [9.0, 9.0]


def test_non_contiguous_inputs_are_perturbed_correctly():
    a = np.asfortranarray(np.random.default_rng(11).standard_normal((3, 4)))
    x = tg.Tensor(a, requires_grad=True)
    assert not x.data.flags.c_contiguous
    assert gradcheck(lambda t: (t * t).sum(), [x], mode="element").passed


def test_only_inputs_requiring_grad_are_checked_and_bad_arguments_raise():
    x, c = _t(2, seed=12), tg.tensor([1.0, 2.0], dtype=tg.float64)
    report = gradcheck(lambda a, b: a * b, [x, c])
    assert [r.index for r in report.inputs] == [0]
    with pytest.raises(ValueError, match="nothing to check"):
        gradcheck(lambda b: b * 2, [c])
    with pytest.raises(ValueError, match="mode"):
        gradcheck(lambda a: a, [x], mode="exhaustive")
    with pytest.raises(TypeError, match="expected a Tensor"):
        gradcheck(lambda a: a, [np.ones(2)])
    with pytest.raises(TypeError, match="must return a Tensor"):
        gradcheck(lambda a: 1.0, [x])


def test_outputs_masked_to_minus_inf_or_huge_values_do_not_spoil_the_slope():
    mask = tg.tensor([[False, True, False], [True, False, False]])
    for fill in (-np.inf, -1e9):
        x = _t(2, 3, seed=13)
        report = gradcheck(lambda a: a.masked_fill(mask, fill) * 2, [x], mode="element")
        assert report.passed and report.max_abs_err < 1e-7, report.table()


class _NotReducedToInputShape(Function):
    """z = a + b with b broadcast, whose backward forgets to sum b's gradient back down."""
    def forward(self, a, b):
        return a + b

    def backward(self, g):
        return g, g


def test_a_gradient_of_the_wrong_shape_reaching_a_leaf_is_an_error():
    a, b = _t(2, 3, seed=14), _t(1, 3, seed=15)
    with pytest.raises(RuntimeError, match=r"gradient of shape \(2, 3\) reached a leaf of shape \(1, 3\)"):
        gradcheck(lambda x, y: _NotReducedToInputShape.apply(x, y), [a, b])
