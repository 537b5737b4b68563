"""The backward pass: graph walking, accumulation, grad modes, graph freeing, hooks."""
import numpy as np
import pytest

import tinygrad_lm as tg
from tinygrad_lm import backend


def test_reused_tensor_accumulates_both_paths():
    a = tg.tensor([1.0, -2.0, 3.0], requires_grad=True)
    b = a + a           # db/da = 2
    c = b * b           # dc/db = 2b = 4a
    c.sum().backward()
    assert a.grad.tolist() == [8.0, -16.0, 24.0]  # d(4a^2)/da = 8a


def test_tensor_used_twice_in_one_op():
    x = tg.tensor(3.0, requires_grad=True)
    (x * x).backward()
    assert x.grad.item() == 6.0


def test_diamond_graph():
    x = tg.tensor(2.0, requires_grad=True)
    left, right = x.exp(), x * 3
    y = left * right    # y = 3 x e^x, dy/dx = 3 e^x (1 + x)
    y.backward()
    np.testing.assert_allclose(x.grad.item(), 3 * np.exp(2.0) * 3, rtol=1e-6)


def test_wide_fan_out_and_fan_in():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    total = sum((x * k for k in range(1, 51)), tg.zeros(2))
    total.sum().backward()
    assert x.grad.tolist() == [1275.0, 1275.0]


def test_chain_100000_ops_deep_backpropagates_without_recursion():
    x = tg.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    y = y * 2.0
    y.backward()
    assert x.grad.item() == 2.0


def test_backward_on_one_element_tensor_of_any_shape():
    x = tg.tensor([[2.0]], requires_grad=True)
    (x * 3).backward()
    assert x.grad.tolist() == [[3.0]]


def test_backward_with_gradient_is_a_vector_jacobian_product():
    x = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * x
    y.backward(gradient=tg.tensor([1.0, 0.5, -1.0]))
    assert x.grad.tolist() == [2.0, 2.0, -6.0]
    z = tg.tensor([1.0, 2.0], requires_grad=True)
    (z * 2).backward(np.array([3.0, 4.0]))
    assert z.grad.tolist() == [6.0, 8.0]


def test_gradients_accumulate_across_backward_calls():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    assert x.grad.tolist() == [5.0, 7.0]
    x.grad = None
    (x * 3).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_no_grad_context_records_nothing():
    x = tg.tensor([1.0], requires_grad=True)
    with tg.no_grad():
        y = x * 2
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()
    assert not y.requires_grad and y._ctx is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_no_grad_decorator_with_and_without_parentheses_and_recursion():
    @tg.no_grad()
    def f(x, depth):
        assert not tg.is_grad_enabled()
        return f(x, depth - 1) if depth else x * 2

    @tg.no_grad
    def g(x):
        return x * 2

    x = tg.tensor([1.0], requires_grad=True)
    assert not f(x, 3).requires_grad and not g(x).requires_grad
    assert tg.is_grad_enabled(), "a recursive decorated call must restore grad mode"
    assert (x * 2).requires_grad


def test_no_grad_restores_mode_after_an_exception_and_nests_with_enable_grad():
    x = tg.tensor([1.0], requires_grad=True)
    with pytest.raises(ZeroDivisionError):
        with tg.no_grad():
            1 / 0
    assert tg.is_grad_enabled()
    with tg.no_grad():
        with tg.enable_grad():
            assert (x * 2).requires_grad
        assert not (x * 2).requires_grad


def test_detach_cuts_the_graph_and_shares_data():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    d = y.detach()
    assert not d.requires_grad and d.is_leaf and d.data is y.data
    (d * x).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0]  # only the direct path; nothing flows through d


def test_requires_grad_flag_toggles_on_leaves_only():
    x = tg.tensor([1.0])
    assert x.requires_grad_() is x and x.requires_grad
    x.requires_grad_(False)
    assert not x.requires_grad
    y = tg.tensor([1.0], requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="non-leaf"):
        y.requires_grad_(False)


def test_graph_is_freed_after_backward_and_a_second_backward_raises():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first)
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_backward_through_a_freed_subgraph_from_a_new_root_raises():
    x = tg.tensor([1.0], requires_grad=True)
    h = x * 2
    h.sum().backward()
    with pytest.raises(RuntimeError, match="Mul was freed"):
        (h * 3).sum().backward()


def test_register_hook_sees_and_replaces_the_gradient():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    y = x * 3
    y.register_hook(lambda g: seen.append(g.tolist()))
    handle = y.register_hook(lambda g: g * 10)
    y.sum().backward()
    assert seen == [[1.0, 1.0]]
    assert x.grad.tolist() == [30.0, 30.0]
    handle.remove()
    x.grad = None
    z = x * 3
    z.sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_hook_on_a_leaf_runs_before_grad_is_stored():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    x.register_hook(lambda g: g * 0 + 7)
    (x * 5).sum().backward()
    assert x.grad.tolist() == [7.0, 7.0]
    with pytest.raises(ValueError, match="hook returned a gradient of shape"):
        w = tg.tensor([1.0, 2.0], requires_grad=True)
        w.register_hook(lambda g: g.sum())
        (w * 1).sum().backward()


def test_retain_grad_keeps_a_non_leaf_gradient():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    h.retain_grad()
    out = (h * h).sum()
    out.backward()
    assert h.grad.tolist() == [4.0, 8.0]
    assert x.grad.tolist() == [8.0, 16.0]
    k = x * 3
    (k * 1).sum().backward()
    assert k.grad is None  # not retained by default


def test_leaf_grads_never_alias_each_other_or_the_seed():
    a = tg.tensor([1.0, 2.0], requires_grad=True)
    b = tg.tensor([3.0, 4.0], requires_grad=True)
    (a + b).sum().backward()  # add passes one gradient array to both sides
    assert not np.shares_memory(a.grad.data, b.grad.data)
    a.grad.data += 100  # mutating one leaf's grad in place ...
    assert b.grad.tolist() == [1.0, 1.0]  # ... leaves the other alone

    c = tg.tensor([1.0, 2.0], requires_grad=True)
    seed = tg.tensor([5.0, 6.0])
    c.clone().backward(seed)
    assert not np.shares_memory(c.grad.data, seed.data)
    c.grad.data[0] = -1
    assert seed.tolist() == [5.0, 6.0]

    d = tg.tensor([[1.0, 2.0]], requires_grad=True)
    e = tg.tensor([[3.0, 4.0]], requires_grad=True)
    (d.reshape(2) + e.reshape(2) + d.sum() * 0).sum().backward()  # reshape-views and broadcasts of one array
    assert not np.shares_memory(d.grad.data, e.grad.data)
    assert d.grad.data.flags.writeable and e.grad.data.flags.writeable


def test_grads_keep_the_input_dtype():
    x = tg.tensor([1.0, 2.0], requires_grad=True)  # float32
    w = tg.tensor([0.5, 0.25], dtype=tg.float64, requires_grad=True)
    y = (x * w).sum()  # float32 * float64 promotes the forward to float64
    assert y.dtype == np.float64
    y.backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float64
    z = tg.tensor([1.0, 2.0], requires_grad=True)
    (z.double() * 3).sum().backward()
    assert z.grad.dtype == np.float32 and z.grad.tolist() == [3.0, 3.0]
    h = tg.tensor([1.0, 2.0], requires_grad=True)
    (h * 2).sum().backward(tg.tensor(1.0, dtype=tg.float64))
    assert h.grad.dtype == np.float32


def test_float32_graph_stays_float32():
    x = tg.randn(4, 3, requires_grad=True)
    w = tg.randn(3, 2, requires_grad=True)
    out = ((x @ w).tanh().relu() ** 2 / 3 + 1).log().mean()
    assert out.dtype == np.float32
    out.backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32


def test_only_floating_tensors_can_require_grad_and_casts_to_int_leave_the_graph():
    with pytest.raises(TypeError, match="only floating point"):
        tg.tensor([1, 2], requires_grad=True)
    x = tg.tensor([1.5, 2.5], requires_grad=True)
    i = x.long()
    assert i.dtype == np.int64 and not i.requires_grad
    assert not (x > 2).requires_grad


def test_int_inputs_get_no_gradient_but_float_ones_do():
    w = tg.tensor(np.ones((3, 2)), requires_grad=True)
    idx = tg.tensor([0, 2])
    w[idx].sum().backward()
    assert idx.grad is None and w.grad.tolist() == [[1, 1], [0, 0], [1, 1]]


def test_ops_on_constants_do_not_build_a_graph():
    a, b = tg.tensor([1.0]), tg.tensor([2.0])
    c = a * b + 1
    assert not c.requires_grad and c._ctx is None and c.is_leaf


def test_backward_through_partly_constant_graph_skips_constant_branches():
    x = tg.tensor([2.0], requires_grad=True)
    const = tg.tensor([5.0])
    y = (x * const + const.exp()).sum()
    y.backward()
    assert x.grad.tolist() == [5.0] and const.grad is None


def test_unused_leaf_keeps_grad_none():
    x = tg.tensor([1.0], requires_grad=True)
    unused = tg.tensor([1.0], requires_grad=True)
    (x * 2).sum().backward()
    assert unused.grad is None


def test_an_op_applied_to_no_tensor_is_a_clear_error():
    class _Constant(tg.Function):
        def forward(self):
            return np.ones(2)
    with pytest.raises(TypeError, match="_Constant.apply: an op needs at least one tensor input"):
        _Constant.apply()


# ================================================================ 0-d tensors and Python scalars
# Every elementwise and reduction op applied to a 0-d tensor, with a Python scalar on the
# left and on the right wherever the op takes two operands. numpy returns numpy scalars, not
# 0-d arrays, from 0-d math; the engine must still hand every tensor an array gradient.
_TRUE, _FALSE = np.array(True), np.array(False)
SCALAR_OPS = {
    "Add": [lambda x: x + 1.5, lambda x: 1.5 + x],
    "Sub": [lambda x: x - 1.5, lambda x: 1.5 - x],
    "Mul": [lambda x: x * 1.5, lambda x: 1.5 * x],
    "Div": [lambda x: x / 1.5, lambda x: 10.0 / x],
    "Pow": [lambda x: 1.5 ** x, lambda x: x ** tg.tensor(1.5, dtype=x.dtype, device=x.device)],
    "PowScalar": [lambda x: x ** 1.5, lambda x: x ** 2, lambda x: x.rsqrt(), lambda x: x.reciprocal()],
    "Maximum": [lambda x: x.maximum(0.2), lambda x: tg.maximum(0.2, x)],
    "Minimum": [lambda x: x.minimum(0.9), lambda x: tg.minimum(0.9, x)],
    "Where": [lambda x: tg.where(tg.tensor(_TRUE, device=x.device), x, 0.5), lambda x: tg.where(tg.tensor(_FALSE, device=x.device), 0.5, x)],
    "MaskedFill": [lambda x: x.masked_fill(tg.tensor(_FALSE, device=x.device), 2.0)],
    "Neg": [lambda x: -x],
    "Clone": [lambda x: x.clone()],
    "Cast": [lambda x: x.double() * 2.0],
    "Exp": [lambda x: x.exp()],
    "Log": [lambda x: x.log()],
    "Sqrt": [lambda x: x.sqrt()],
    "Abs": [lambda x: abs(x)],
    "Tanh": [lambda x: x.tanh()],
    "Sigmoid": [lambda x: x.sigmoid()],
    "Relu": [lambda x: x.relu()],
    "Clamp": [lambda x: x.clamp(0.5, 0.9), lambda x: x.clamp(min=0.1)],
    "Gelu": [lambda x: x.gelu(), lambda x: x.gelu(approximate="tanh")],
    "Sum": [lambda x: x.sum(), lambda x: x.sum(0, keepdim=True)],
    "Mean": [lambda x: x.mean()],
    "Max": [lambda x: x.amax(), lambda x: x.max()],
    "Min": [lambda x: x.amin()],
    "Var": [lambda x: x.var(correction=0) + x],
    "LogSumExp": [lambda x: x.logsumexp()],
    "Prod": [lambda x: x.prod()],
}
NOT_0D = {"Tril"}  # needs at least 2 dims


def test_every_elementwise_and_reduction_op_is_in_the_0d_scalar_table():
    ops = {n for n, c in tg.Function.registry.items() if c.__module__ in ("tinygrad_lm.ops.elementwise", "tinygrad_lm.ops.reduce")}
    assert ops - NOT_0D == set(SCALAR_OPS), f"missing: {sorted(ops - NOT_0D - set(SCALAR_OPS))}"


def _scalar_graph(f, x):
    """f(x) used twice, between Python scalars: 10 / (y * y + 1) - 0.5 * y."""
    y = f(x)
    return 10.0 / (y * y + 1) - 0.5 * y, y


@pytest.mark.parametrize("op", sorted(SCALAR_OPS))
def test_0d_tensors_with_python_scalars_get_array_gradients(op, device, capsys):
    for i, f in enumerate(SCALAR_OPS[op]):
        x = tg.tensor(0.7, device=device, requires_grad=True)
        for _ in range(2):                               # the second backward accumulates into .grad
            z, y = _scalar_graph(f, x)
            if y.requires_grad and y is not x:
                y.retain_grad()
            z.backward()
        print(f"{op}[{i}]: x.grad = {x.grad!r}, y.grad = {y.grad!r}")   # printing a gradient must work
        for t in (x, y):
            if t.grad is not None:
                g = t.grad.data
                assert type(g) is not np.float32 and type(g) is not np.float64 and g.shape == t.shape
                assert g.dtype == t.dtype and t.grad.device == backend.canonical_device(device)
        # the value, against a central difference of the same graph in float64
        with tg.no_grad():
            h = 1e-6
            hi = _scalar_graph(f, tg.tensor(0.7 + h, dtype=tg.float64, device=device))[0].item()
            lo = _scalar_graph(f, tg.tensor(0.7 - h, dtype=tg.float64, device=device))[0].item()
        assert x.grad.item() == pytest.approx(2 * (hi - lo) / (2 * h), rel=1e-3, abs=1e-4), f"{op}[{i}]"
    assert "grad = tensor(" in capsys.readouterr().out
