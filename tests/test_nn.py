"""nn.Module bookkeeping and the layers: names, state dicts, modes, devices, scope, and each
layer against its numpy formula and finite differences."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinygrad_lm as tg
from tinygrad_lm import Tensor, engine, gradcheck, nn
from tinygrad_lm.nn import functional as F

FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.scale = nn.Parameter(np.ones(4, np.float32))
        self.blocks = nn.ModuleList([nn.LayerNorm(4), nn.Sequential(nn.Linear(4, 4, bias=False), nn.GELU())])
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = self.fc1(x) * self.scale
        for b in self.blocks:
            x = b(x)
        return self.head(self.drop(x))


# a module's own parameters come before its children's, as in PyTorch
NET_NAMES = ["scale", "fc1.weight", "fc1.bias", "blocks.0.weight", "blocks.0.bias", "blocks.1.0.weight",
             "head.weight", "head.bias"]


# ================================================================ registration and traversal
def test_parameters_are_registered_in_assignment_order_with_dotted_names():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == NET_NAMES
    assert all(isinstance(p, nn.Parameter) and isinstance(p, Tensor) and p.requires_grad for p in net.parameters())
    assert net.num_parameters() == 12 + 4 + 4 + 4 + 4 + 16 + 8 + 2
    assert [n for n, _ in net.named_modules()] == ["", "fc1", "blocks", "blocks.0", "blocks.1", "blocks.1.0",
                                                     "blocks.1.1", "drop", "head"]
    assert [n for n, _ in net.named_children()] == ["fc1", "blocks", "drop", "head"]
    assert net.fc1.weight is net.fc1._parameters["weight"]


def test_results_of_ops_on_parameters_are_plain_tensors():
    p = nn.Parameter(np.ones(3, np.float32))
    y = p * 2
    assert type(y) is Tensor and y.requires_grad
    assert "Parameter containing" in repr(p)


def test_reassigning_and_deleting_attributes_updates_the_registry():
    net = Net()
    net.head = nn.Linear(4, 3)
    assert dict(net.named_parameters())["head.weight"].shape == (3, 4)
    net.fc1.bias = None
    assert "fc1.bias" not in dict(net.named_parameters())
    del net.scale
    assert "scale" not in dict(net.named_parameters())
    with pytest.raises(TypeError, match="cannot assign Tensor as parameter 'weight'"):
        net.head.weight = Tensor(np.zeros((3, 4)))

    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.ones(1))
    with pytest.raises(AttributeError, match="super\\(\\).__init__\\(\\)"):
        Bad()


def test_shared_parameter_is_yielded_once_but_saved_under_both_names():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    seq = nn.Sequential(a, b)
    b.weight = a.weight
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "1.bias"]
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert seq.num_parameters() == 4 + 2 + 2


def test_buffers_move_and_save_but_do_not_train():
    m = nn.Linear(2, 2)
    m.register_buffer("running", Tensor(np.zeros(2, np.float32)))
    m.register_buffer("scratch", Tensor(np.zeros(2, np.float32)), persistent=False)
    assert "running" in m.state_dict() and "scratch" not in m.state_dict()
    assert [n for n, _ in m.named_buffers()] == ["running", "scratch"]
    assert len(list(m.parameters())) == 2
    m.to(np.float64)
    assert m.running.dtype == np.float64 and m.weight.dtype == np.float64


def test_apply_modules_and_repr():
    net = Net()
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "Net" and seen[0] == "Linear"
    assert sum(isinstance(m, nn.Linear) for m in net.modules()) == 3
    r = repr(net)
    assert r.startswith("Net(\n  (fc1): Linear(in_features=3, out_features=4, bias=True)")
    assert "(blocks): ModuleList(\n    (0): LayerNorm((4,), eps=1e-05" in r
    assert "(1): Sequential(\n      (0): Linear(in_features=4, out_features=4, bias=False)" in r
    assert "(drop): Dropout(p=0.5)" in r and r.endswith(")")
    assert repr(nn.GELU("tanh")) == "GELU(approximate='tanh')" and repr(nn.ReLU()) == "ReLU()"


def test_containers():
    lst = nn.ModuleList([nn.ReLU(), nn.GELU()])
    lst.append(nn.Linear(1, 1))
    assert len(lst) == 3 and isinstance(lst[-1], nn.Linear) and isinstance(lst[1:][0], nn.GELU)
    lst.insert(0, nn.Dropout(0.1))
    assert [type(m).__name__ for m in lst] == ["Dropout", "ReLU", "GELU", "Linear"]
    with pytest.raises(IndexError, match="out of range"):
        lst[7]
    d = nn.ModuleDict({"a": nn.ReLU()})
    d["b"] = nn.Linear(2, 2)
    assert list(d) == ["a", "b"] and "b" in d and [n for n, _ in d.named_parameters()] == ["b.weight", "b.bias"]
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    x = Tensor(np.ones((5, 2), np.float32))
    np.testing.assert_allclose(seq(x).detach().numpy(), seq[2](seq[1](seq[0](x))).detach().numpy())
    assert len(seq[:2]) == 2


# ================================================================ state dicts
def test_state_dict_round_trip_restores_outputs():
    tg.manual_seed(0)
    a = Net().eval()
    tg.manual_seed(1)
    b = Net().eval()
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32))
    assert not np.allclose(a(x).detach().numpy(), b(x).detach().numpy())
    sd = a.state_dict()
    assert list(sd) == NET_NAMES and all(isinstance(v, Tensor) and not v.requires_grad for v in sd.values())
    weights = {k: v.detach().numpy().copy() for k, v in sd.items()}
    keep = [id(p) for p in b.parameters()]
    assert b.load_state_dict(weights) == ([], [])
    np.testing.assert_array_equal(a(x).detach().numpy(), b(x).detach().numpy())
    assert [id(p) for p in b.parameters()] == keep  # same Parameter objects: optimizers keep working
    weights["fc1.weight"][:] = 7  # the model copied: later changes to the source do not leak in
    assert not (b.fc1.weight.detach().numpy() == 7).any()


def test_load_state_dict_errors_list_missing_unexpected_and_wrong_shapes():
    net = Net()
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    del sd["scale"]
    sd["extra.weight"] = np.zeros(3)
    sd["head.weight"] = np.zeros((5, 4))
    before = net.head.weight.detach().numpy().copy()
    with pytest.raises(RuntimeError) as e:
        net.load_state_dict(sd)
    msg = str(e.value)
    assert "Error(s) in loading state_dict for Net" in msg
    assert 'Missing key(s) in state_dict: "scale"' in msg
    assert 'Unexpected key(s) in state_dict: "extra.weight"' in msg
    assert "size mismatch for head.weight: copying a param with shape (5, 4) from checkpoint, " \
           "the shape in current model is (2, 4)" in msg
    np.testing.assert_array_equal(net.head.weight.detach().numpy(), before)  # nothing was written
    sd["head.weight"] = np.zeros((2, 4))
    missing, unexpected = net.load_state_dict(sd, strict=False)
    assert missing == ["scale"] and unexpected == ["extra.weight"]
    assert (net.head.weight.detach().numpy() == 0).all()
    sd["head.weight"] = np.zeros((5, 4))
    with pytest.raises(RuntimeError, match="size mismatch"):
        net.load_state_dict(sd, strict=False)


def test_load_state_dict_keeps_the_models_dtype():
    net = Net().to(np.float64)
    net.load_state_dict({k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()})
    assert all(p.dtype == np.float64 for p in net.parameters())


# ================================================================ modes, grads, devices
def test_train_eval_reach_every_module_and_switch_dropout():
    net = Net()
    assert all(m.training for m in net.modules())
    net.eval()
    assert not any(m.training for m in net.modules())
    x = Tensor(np.ones((3, 3), np.float32))
    np.testing.assert_array_equal(net(x).detach().numpy(), net(x).detach().numpy())
    net.train()
    assert all(m.training for m in net.modules())
    tg.manual_seed(0)
    a = net.drop(Tensor(np.ones((50,), np.float32))).detach().numpy()
    assert (a == 0).any() and (a == 2).any()


def test_zero_grad_sets_grads_to_none():
    net = Net()
    net(Tensor(np.ones((2, 3), np.float32))).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net(Tensor(np.ones((2, 3), np.float32))).sum().backward()
    net.zero_grad(set_to_none=False)
    assert all((p.grad.detach().numpy() == 0).all() for p in net.parameters())


def test_to_keeps_the_same_parameter_objects():
    net = Net()
    ids = [id(p) for p in net.parameters()]
    assert net.to("cpu") is net and net.to(np.float64) is net
    assert [id(p) for p in net.parameters()] == ids
    assert all(p.dtype == np.float64 and p.device == "cpu" for p in net.parameters())
    net.float()
    assert all(p.dtype == np.float32 for p in net.parameters())
    with pytest.raises(tg.DeviceError):
        net.to("tpu")


# ================================================================ scope
def test_call_pushes_the_dotted_module_name_and_pops_it():
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(list(engine.scope))
            return x

    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.probe = Probe()

        def forward(self, x):
            return self.probe(x)

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.h = nn.ModuleList([Inner(), Inner()])

        def forward(self, x):
            for m in self.h:
                x = m(x)
            return x

    Outer()(Tensor(1.0))
    assert seen == [["", "h.0", "h.0.probe"], ["", "h.1", "h.1.probe"]]
    assert engine.scope == []

    class Boom(nn.Module):
        def forward(self, x):
            raise ValueError("boom")
    with pytest.raises(ValueError):
        Boom()(1)
    assert engine.scope == []


# ================================================================ layers
def test_linear_init_is_pytorchs_uniform_and_seeded():
    tg.manual_seed(0)
    a = nn.Linear(50, 30)
    bound = 1 / math.sqrt(50)
    w = a.weight.detach().numpy()
    assert w.shape == (30, 50) and w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound and np.abs(a.bias.detach().numpy()).max() <= bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.01
    tg.manual_seed(0)
    np.testing.assert_array_equal(nn.Linear(50, 30).weight.detach().numpy(), w)
    assert nn.Linear(3, 2, dtype=np.float64).weight.dtype == np.float64


def test_layers_match_numpy_formulas():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    lin = nn.Linear(4, 3)
    w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    np.testing.assert_allclose(lin(Tensor(x)).detach().numpy(), x @ w.T + b, rtol=1e-5, atol=1e-6)
    emb = nn.Embedding(7, 4)
    idx = rng.integers(0, 7, (2, 5))
    np.testing.assert_array_equal(emb(idx).detach().numpy(), emb.weight.detach().numpy()[idx])
    for bias in (True, False):
        ln = nn.LayerNorm(4, bias=bias)
        ln.weight.data = rng.standard_normal(4).astype(np.float32)
        want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * ln.weight.detach().numpy()
        if bias:
            ln.bias.data = rng.standard_normal(4).astype(np.float32)
            want = want + ln.bias.detach().numpy()
        else:
            assert ln.bias is None and [n for n, _ in ln.named_parameters()] == ["weight"]
        np.testing.assert_allclose(ln(Tensor(x)).detach().numpy(), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(nn.ReLU()(Tensor(x)).detach().numpy(), np.maximum(x, 0))
    t = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(nn.GELU("tanh")(Tensor(x)).detach().numpy(), t, rtol=1e-5, atol=1e-6)
    d = nn.Dropout(0.3).eval()
    np.testing.assert_array_equal(d(Tensor(x)).detach().numpy(), x)


@FAST
@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple), fin=st.integers(1, 4), fout=st.integers(1, 4),
       bias=st.booleans(), seed=st.integers(0, 99))
def test_linear_layer_gradcheck(lead, fin, fout, bias, seed):
    tg.manual_seed(seed)
    lin = nn.Linear(fin, fout, bias=bias).to(np.float64)
    x = Tensor(np.random.default_rng(seed).standard_normal(lead + (fin,)), requires_grad=True)
    gradcheck(lambda x, *ps: lin(x), {"x": x, **dict(lin.named_parameters())}, mode="element")


@FAST
@given(lead=st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple), d=st.integers(1, 5), bias=st.booleans(),
       seed=st.integers(0, 99))
def test_layer_norm_layer_gradcheck(lead, d, bias, seed):
    rng = np.random.default_rng(seed)
    ln = nn.LayerNorm(d, bias=bias).to(np.float64)
    ln.weight.data = rng.standard_normal(d)
    x = Tensor(rng.standard_normal(lead + (d,)) * 2, requires_grad=True)
    gradcheck(lambda x, *ps: ln(x), {"x": x, **dict(ln.named_parameters())}, mode="element")


@FAST
@given(rows=st.integers(1, 6), dim=st.integers(1, 4), seed=st.integers(0, 99))
def test_embedding_and_gelu_layer_gradcheck(rows, dim, seed):
    tg.manual_seed(seed)
    emb = nn.Embedding(rows, dim).to(np.float64)
    idx = np.random.default_rng(seed).integers(0, rows, (2, 3))
    gelu = nn.GELU("tanh")
    gradcheck(lambda w: gelu(emb(idx)), dict(emb.named_parameters()), mode="element")
    gelu = nn.GELU()
    gradcheck(lambda w: gelu(emb(idx) * 3), dict(emb.named_parameters()), mode="element")


def test_layers_use_the_fused_switch():
    lin = nn.Linear(3, 2)
    x = Tensor(np.ones((4, 3), np.float32))
    assert type(lin(x)._ctx).__name__ == "FusedLinear"
    with F.use_fused(False):
        assert type(lin(x)._ctx).__name__ == "Add"
