"""trace(), detect_anomaly() and gradient hooks: the tools for watching backprop happen."""
import os

import numpy as np
import pytest

import tinygrad_lm as tg
from tinygrad_lm import AnomalyError, Function, Tensor, detect_anomaly, engine, trace
from tinygrad_lm.debug import OpRecord, record_scopes, node_info, user_frame
from tinygrad_lm.models.gpt import GPT, GPTConfig
from tinygrad_lm.nn import functional as F

# the planted log(0) and sqrt'(0) make numpy warn as well; the warnings are expected
pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")


@pytest.fixture(autouse=True)
def _no_observer_left_behind():
    assert engine.observer is None
    yield
    leaked = engine.observer
    engine.observer = None
    assert leaked is None, "a context manager left an observer installed"


def _tiny_gpt(seed=0, n_layer=1):
    tg.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=n_layer, n_head=2, n_embd=16, dropout=0.0, bias=True))
    rng = np.random.default_rng(seed)
    return model, Tensor(rng.integers(0, 11, (2, 8))), Tensor(rng.integers(0, 11, (2, 8)))


@pytest.fixture
def count_applies(monkeypatch):
    """Counts every Function.apply call (the ground truth a trace must match)."""
    calls = []
    original = Function.apply.__func__

    def counting(cls, *inputs, **params):
        calls.append(cls.__name__)
        return original(cls, *inputs, **params)

    monkeypatch.setattr(Function, "apply", classmethod(counting))
    return calls


# ================================================================ trace
def test_trace_has_one_record_per_op_and_backward_visits_every_graph_node(count_applies):
    model, x, y = _tiny_gpt()
    with trace() as t:
        _, loss = model(x, y)
        loss.backward(retain_graph=True)
    assert len(t.records) == len(count_applies)                      # forward: one record per Function.apply
    assert [r.op for r in t.records] == count_applies                 # in the order they ran
    assert all(isinstance(r, OpRecord) and r.forward_s is not None and r.forward_s >= 0 for r in t.records)
    graph_nodes = [n for n in engine.topological_order(loss) if n._ctx is not None]
    ran_backward = [r for r in t.records if r.backward_calls]
    assert len(ran_backward) == len(graph_nodes)                      # backward: every node of the graph, once
    assert all(r.backward_calls == 1 and r.grad_norm is not None and r.grad_norm >= 0 for r in ran_backward)
    assert t.records[-1].op == "FusedSoftmaxCrossEntropy" and t.records[-1].grad_norm == pytest.approx(1.0)
    assert t.records[-1].output_shape == () and t.records[-1].input_shapes == ((16, 11), (16,))


def test_trace_summary_totals_are_consistent():
    model, x, y = _tiny_gpt()
    with trace() as t:
        _, loss = model(x, y)
        loss.backward()
    rows = t.by_op()
    assert sum(r["count"] for r in rows) == len(t.records)
    assert sum(r["forward_ms"] for r in rows) == pytest.approx(1e3 * t.forward_seconds)
    assert sum(r["backward_ms"] for r in rows) == pytest.approx(1e3 * t.backward_seconds)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert [r["total_ms"] for r in rows] == sorted((r["total_ms"] for r in rows), reverse=True)
    text = t.summary()
    assert text.splitlines()[0].split()[:2] == ["op", "count"]
    for r in rows:
        assert any(line.split()[:2] == [r["key"], str(r["count"])] for line in text.splitlines())
    total = [line for line in text.splitlines() if line.startswith("total")][0]
    assert total.split()[1] == str(len(t.records)) and total.rstrip().endswith("100.0%")
    by_scope = t.by_op("scope")
    assert sum(r["count"] for r in by_scope) == len(t.records)
    assert {"transformer.h.0.attn.c_attn", "lm_head", "(no module)"} <= {r["key"] for r in by_scope}


def test_trace_table_sorts_by_time_or_graph_order_and_limits():
    model, x, y = _tiny_gpt()
    with trace() as t:
        _, loss = model(x, y)
        loss.backward()
    graph = t.table(sort="graph").splitlines()
    assert len(graph) == 1 + len(t.records)
    assert [int(line.split()[0]) for line in graph[1:]] == list(range(len(t.records)))
    timed = t.table(sort="time", limit=5).splitlines()
    assert len(timed) == 1 + 5 + 1 and timed[-1] == f"... {len(t.records) - 5} more nodes"
    slowest = max(t.records, key=lambda r: r.total_s)
    assert int(timed[1].split()[0]) == slowest.index
    with pytest.raises(ValueError, match="sort must be"):
        t.table(sort="name")


def test_trace_records_module_scope_and_shapes():
    model, x, y = _tiny_gpt()
    with trace() as t:
        model(x, y)
    linears = [r for r in t.records if r.op == "FusedLinear"]
    assert [r.scope for r in linears] == ["transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj",
                                          "transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj", "lm_head"]
    c_attn = linears[0]
    assert c_attn.input_shapes[0] == (2, 8, 16) and c_attn.output_shape == (2, 8, 48)
    assert all(r.backward_s is None for r in t.records)  # no backward ran


def test_trace_of_a_backward_whose_forward_ran_outside_records_the_nodes_then():
    a = Tensor(np.arange(1.0, 4.0), requires_grad=True)
    loss = (a * a).sum()
    with trace() as t:
        loss.backward()
    assert [r.op for r in t.records] == ["Sum", "Mul"]
    assert all(r.forward_s is None and r.backward_calls == 1 for r in t.records)
    assert t.records[1].grad_norm == pytest.approx(np.sqrt(3.0))   # d(sum)/d(a*a) = ones(3)


def test_trace_grad_norms_match_retained_gradients():
    a = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    with trace() as t:
        b = a * 3.0
        b.retain_grad()
        c = b.tanh()
        loss = (c * c).sum()
        loss.backward()
    mul_rec = t.records[0]
    assert mul_rec.op == "Mul"
    assert mul_rec.grad_norm == pytest.approx(np.linalg.norm(b.grad.numpy()))
    assert mul_rec.input_grad_norms[0] == pytest.approx(np.linalg.norm(a.grad.numpy()))
    assert mul_rec.input_grad_norms[1] is None  # the constant 3.0 needs no gradient


def test_several_observers_at_once_and_restored_on_exit(count_applies):
    a = Tensor(np.ones(3), requires_grad=True)
    with trace() as outer:
        (a + 1).sum()
        with detect_anomaly(), trace() as inner:
            (a * 2).sum().backward()
        a.exp()
    assert [r.op for r in inner.records] == ["Mul", "Sum"]
    assert [r.op for r in outer.records] == ["Add", "Sum", "Mul", "Sum", "Exp"]
    assert len(outer.records) == len(count_applies)
    assert engine.observer is None


def test_observers_exited_out_of_order_leave_the_rest_installed():
    a = Tensor(np.ones(2), requires_grad=True)
    first, second = trace(), trace()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # not the innermost
    a.exp()
    second.__exit__(None, None, None)
    a.log()
    assert [r.op for r in first.records] == []
    assert [r.op for r in second.records] == ["Exp"]
    assert engine.observer is None


def test_observer_is_removed_when_the_block_raises():
    with pytest.raises(AnomalyError):
        with trace(), detect_anomaly():
            Tensor(np.zeros(2), requires_grad=True).log()
    assert engine.observer is None


# ================================================================ detect_anomaly
def _line_of(marker):
    """The line number in this file of the line containing `marker` (in a comment)."""
    with open(__file__, encoding="utf-8") as f:
        return next(i for i, line in enumerate(f, start=1) if marker in line and "_line_of" not in line)


def test_anomaly_names_the_op_and_the_line_that_made_a_forward_inf():
    x = Tensor(np.array([1.0, 0.0, 2.0]), requires_grad=True)
    with pytest.raises(AnomalyError) as e:
        with detect_anomaly():
            y = x * 2.0
            z = (y - 2.0).abs().log()  # planted: log(0) at index 0
            z.sum()
    err = e.value
    assert isinstance(err, RuntimeError)
    assert err.op == "Log" and err.phase == "forward"
    assert err.input_shapes == ((3,),) and err.output_shape == (3,)
    line = _line_of("planted: log(0)")
    assert err.where == f"{__file__}:{line}"
    msg = str(err)
    assert msg.startswith("detect_anomaly: Log forward produced 1 inf of 3 elements")
    assert f"{os.path.basename(__file__)}:{line} in test_anomaly_names_the_op" in msg
    assert "z = (y - 2.0).abs().log()" in msg


def test_anomaly_in_backward_only_sqrt_at_zero():
    x = Tensor(np.array([0.0, 1.0, 4.0]), requires_grad=True)
    with detect_anomaly():
        y = x.sqrt()  # planted: sqrt at 0 is fine forward, infinite slope backward
        loss = y.sum()
        with pytest.raises(AnomalyError) as e:
            loss.backward()
    err = e.value
    assert err.op == "Sqrt" and err.phase == "backward"
    assert err.where == f"{__file__}:{_line_of('planted: sqrt at 0')}"
    assert "Sqrt backward produced 1 inf of 3 elements in the gradient for input 0" in str(err)


def test_anomaly_nan_in_backward_from_a_zero_times_inf():
    x = Tensor(np.array([0.0, 1.0]), requires_grad=True)
    with pytest.raises(AnomalyError, match="Sqrt backward produced 1 NaN of 2") as e:
        with detect_anomaly():
            (x.sqrt() * 0.0).sum().backward()  # grad of sqrt: 0 / (2 * 0) = nan
    assert e.value.phase == "backward"


def test_anomaly_points_past_library_code_to_the_callers_line():
    row = Tensor(np.array([[float("-inf"), float("-inf")]]), requires_grad=True)
    with pytest.raises(AnomalyError) as e:
        with detect_anomaly():
            F.log_softmax(row, -1, impl="composed")  # planted: log of an all-zero sum, inside functional.py
    assert e.value.op == "Log"
    assert e.value.where == f"{__file__}:{_line_of('planted: log of an all-zero sum')}"


def test_anomaly_names_a_nan_already_in_an_input():
    x = Tensor(np.array([1.0, np.nan]), requires_grad=True)
    with pytest.raises(AnomalyError, match=r"input 0 \(2,\) already holds 1 NaN of 2 elements") as e:
        with detect_anomaly():
            x + 1.0
    assert e.value.op == "Add"


def test_anomaly_allows_the_deliberate_minus_inf_of_causal_masks():
    model, x, y = _tiny_gpt()
    with detect_anomaly(), F.use_fused(False):  # composed attention: masked_fill(mask, -inf) then softmax
        _, loss = model(x, y)
        loss.backward()
    assert np.isfinite(loss.item())
    with detect_anomaly():
        m = Tensor(np.zeros((2, 2)), requires_grad=True).masked_fill(Tensor(np.eye(2, dtype=bool)), float("-inf"))
        F.softmax(m, -1, impl="composed").sum().backward()  # -inf passes through exp as 0: no anomaly


def test_anomaly_catches_an_all_masked_softmax_row():
    scores = Tensor(np.zeros((2, 2)), requires_grad=True)
    mask = Tensor(np.array([[True, True], [False, True]]))
    with pytest.raises(AnomalyError, match="NaN") as e:
        with detect_anomaly():
            s = scores.masked_fill(mask, float("-inf"))
            (s - s.amax(-1, keepdim=True)).exp()  # -inf - -inf = nan in row 0
    assert e.value.op == "Sub"


def test_anomaly_in_a_backward_whose_forward_ran_outside_says_so():
    x = Tensor(np.array([0.0]), requires_grad=True)
    loss = x.sqrt().sum()
    with pytest.raises(AnomalyError, match="created before detect_anomaly was entered"):
        with detect_anomaly():
            loss.backward()


def test_anomaly_checks_can_be_turned_off_per_direction():
    x = Tensor(np.array([0.0]), requires_grad=True)
    with detect_anomaly(check_forward=False):
        y = x.log()   # -inf, allowed
    with detect_anomaly(check_backward=False):
        x.sqrt().sum().backward()
    assert np.isinf(y.data).all() and np.isinf(x.grad.numpy()).all()


def test_user_frame_skips_package_frames():
    frame = user_frame()
    assert frame[0] == __file__ and frame[2] == "test_user_frame_skips_package_frames"


def test_exports():
    assert tg.trace is trace and tg.detect_anomaly is detect_anomaly and tg.AnomalyError is AnomalyError
    assert issubclass(AnomalyError, RuntimeError)


# ================================================================ record_scopes (used by viz)
def test_record_scopes_keeps_scope_and_grad_norm_of_graph_nodes_only():
    model, x, y = _tiny_gpt()
    with record_scopes():
        _, loss = model(x, y)
        loss.backward()
    assert node_info[loss._ctx].scope == "" and node_info[loss._ctx].grad_norm == pytest.approx(1.0)
    c_attn_out = [n for n in engine.topological_order(loss) if n._ctx is not None and node_info[n._ctx].scope.endswith("c_attn")]
    assert len(c_attn_out) == 1 and type(c_attn_out[0]._ctx).__name__ == "FusedLinear"


# ================================================================ hooks and retain_grad
def test_register_hook_sees_the_summed_gradient_and_can_replace_it():
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = a * 3.0
    seen = []
    b.register_hook(lambda g: seen.append(g.numpy().copy()))
    b.register_hook(lambda g: g * 0.5)          # halve the gradient flowing back through b
    loss = (b * b).sum() + b.sum()              # b used twice: the hook sees the sum of both uses
    loss.backward()
    np.testing.assert_allclose(seen[0], 2 * b.data + 1)
    np.testing.assert_allclose(a.grad.numpy(), 3.0 * 0.5 * (2 * b.data + 1))


def test_hook_on_a_leaf_changes_its_grad_and_handles_remove():
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    handle = a.register_hook(lambda g: g * 0.0 + 7.0)
    (a * a).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [7.0, 7.0])
    handle.remove()
    a.grad = None
    (a * a).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [2.0, 4.0])


def test_hook_returning_a_wrong_shape_is_an_error():
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = a * 2.0
    b.register_hook(lambda g: Tensor(np.zeros(3)))
    with pytest.raises(ValueError, match="hook returned a gradient of shape"):
        b.sum().backward()


def test_retain_grad_keeps_an_intermediate_gradient():
    a = Tensor(np.array([0.5, -1.0]), requires_grad=True)
    h = a.tanh()
    h.retain_grad()
    other = a * 2.0
    (h * 3.0).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), [3.0, 3.0])
    np.testing.assert_allclose(a.grad.numpy(), 3.0 * (1 - np.tanh(a.data) ** 2))
    assert other.grad is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(2)).retain_grad()
