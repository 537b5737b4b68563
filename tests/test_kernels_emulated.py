"""CPU emulation of the CUDA kernels: checks the kernels' arithmetic and indexing, not the GPU
(no real warps, memory model or speed).

The kernels in tinygrad_lm/kernels run on the CPU through tests/cuda_emulation (g++, fibers for
threads; its docstring says what it models and what not), plugged into the backend's dispatch
seam as the runtime for numpy arrays. Each case of kernel_cases.py then runs twice from the same
Tensor code: through the op's numpy code (the generic path) and through the kernels, driven by
the same host code as on a GPU (tinygrad_lm/kernels/ops.py). Outputs and gradients must agree to
float32 (or float64) rounding, and every test asserts that the kernels it means to test ran.
"""
import contextlib

import numpy as np
import pytest

import kernel_cases as KC
from tinygrad_lm import backend
from tinygrad_lm import kernels as K
from tinygrad_lm.gradcheck import gradcheck
from tinygrad_lm.nn import functional as F
from tinygrad_lm.optim import Adam, AdamW
from tinygrad_lm.tensor import Tensor

import cuda_emulation as emu

_why = emu.compiler_available()
pytestmark = pytest.mark.skipif(_why is not None, reason=f"CPU emulation of the CUDA kernels needs g++: {_why}")


@pytest.fixture(scope="module")
def rt():
    return emu.runtime()


@contextlib.contextmanager
def kernels_on(runtime):
    prev = backend.set_host_kernel_runtime(runtime)
    try:
        yield runtime
    finally:
        backend.set_host_kernel_runtime(prev)


def both(runtime, fn, arrays, requires=None, expect=()):
    """Run fn(*tensors) and its backward (with a fixed random cotangent) on the generic path and on
    the emulated kernels: ((out, grads), (out, grads)), generic first. Each name in `expect`
    (a prefix of a name expression) must have launched on the kernel path, and nothing on the
    generic one."""
    requires = requires if requires is not None else [a.dtype.kind == "f" for a in arrays]
    results = []
    for use in (False, True):
        start = len(runtime.launched)
        with kernels_on(runtime) if use else contextlib.nullcontext():
            ts = [Tensor(runtime.guarded(a) if use else a.copy(), requires_grad=r) for a, r in zip(arrays, requires)]
            out = fn(*ts)
            cot = np.random.default_rng(0).standard_normal(out.shape).astype(out.dtype)
            if out.requires_grad:
                out.backward(Tensor(cot))
            results.append((np.array(out.data), [None if t.grad is None else np.array(t.grad.data) for t in ts]))
        ran = runtime.launched[start:]
        if use:
            for name in expect:
                assert any(n.startswith(name) for n in ran), f"kernel {name} did not run (ran: {ran})"
        else:
            assert not ran, f"the generic path launched kernels: {ran}"
    return results[0], results[1]


def assert_close(ref, got, tol):
    (o_ref, g_ref), (o_got, g_got) = ref, got
    np.testing.assert_allclose(o_got, o_ref, equal_nan=True, err_msg="forward", **tol)
    for i, (a, b) in enumerate(zip(g_ref, g_got)):
        assert (a is None) == (b is None), f"gradient {i}: present on one path only"
        if a is not None:
            np.testing.assert_allclose(b, a, equal_nan=True, err_msg=f"gradient {i}", **tol)


CASES = KC.all_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_kernel_matches_the_generic_path_emulated(rt, case):
    ref, got = both(rt, case.fn, case.arrays, case.requires, case.expect)
    assert_close(ref, got, case.tolerance())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_all_ignored_mean_is_nan_with_a_zero_gradient_on_both_paths(rt, ls, dtype):
    # as PyTorch: the mean is 0/0 = NaN, the gradient zeros (the backward divides by max(N_valid, 1))
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(dtype)
    ref, got = both(rt, lambda t: F.cross_entropy(t, np.full(3, -100), label_smoothing=ls), [x],
                    expect=("cross_entropy_fwd", "cross_entropy_reduce", "cross_entropy_bwd"))
    for out, (grad,) in (ref, got):
        assert out.shape == () and np.isnan(out)
        np.testing.assert_array_equal(grad, np.zeros_like(x))


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_an_ignored_row_gets_zero_from_a_non_finite_upstream_gradient_on_both_paths(rt, reduction):
    # the kernel selects w_i = 0 for an ignored row (as PyTorch), so inf / NaN in g never reaches it
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    y = np.array([1, -100, 3, -100])
    cot = np.array([0.5, np.inf, -1.0, np.nan], np.float32) if reduction == "none" else np.array(np.inf, np.float32)
    grads = []
    for use in (False, True):
        start = len(rt.launched)
        with kernels_on(rt) if use else contextlib.nullcontext(), np.errstate(invalid="ignore"):
            t = Tensor(rt.guarded(x) if use else x.copy(), requires_grad=True)
            F.cross_entropy(t, y, reduction=reduction).backward(Tensor(cot))
        assert any(n.startswith("cross_entropy_bwd") for n in rt.launched[start:]) == use
        grads.append(np.array(t.grad.data))
    for grad in grads:
        np.testing.assert_array_equal(grad[[1, 3]], 0)
        assert np.isfinite(grad[[0, 2]]).all() == (reduction == "none")
    if reduction == "none":     # the finite rows agree (inf * (p - q) rows may differ in inf vs NaN)
        np.testing.assert_allclose(grads[1][[0, 2]], grads[0][[0, 2]], rtol=1e-6, atol=1e-7)


def test_layer_norm_input_grad_only_skips_the_parameter_kernel(rt):
    x = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    start = len(rt.launched)
    both(rt, lambda t, w: F.layer_norm(t, 8, w, impl="fused"), [x, np.ones(8, np.float32)], requires=[True, False],
         expect=("layernorm_bwd",))
    assert not any(n.startswith("layernorm_param_bwd") for n in rt.launched[start:])


def test_attention_masks_and_dropout_stay_on_the_generic_path(rt):
    rng = np.random.default_rng(0)
    q = Tensor(rng.standard_normal((2, 5, 8)).astype(np.float32))
    with kernels_on(rt):
        start = len(rt.launched)
        F.scaled_dot_product_attention(q, q, q, is_causal=True, impl="fused")
        F.scaled_dot_product_attention(q, q, q, attn_mask=np.tril(np.ones((5, 5), bool)), impl="fused")
        F.causal_self_attention(Tensor(rng.standard_normal((1, 5, 24)).astype(np.float32)), 2, dropout_p=0.1,
                                impl="fused")
        F.softmax(Tensor(rng.standard_normal((3, 4)).astype(np.float32)), 0)        # not the last dim
        # the attention stays generic; only the dropout's mask is drawn by its own kernel
        assert rt.launched[start:] == ["dropout_mask<float>"]


# ================================================================ AdamW
def _opt(rt, use, *args):
    start = len(rt.launched)
    with kernels_on(rt) if use else contextlib.nullcontext():
        result = KC.run_optimizer(*args, wrap=rt.guarded if use else (lambda a: a))
    return result, rt.launched[start:]


@pytest.mark.parametrize("opt_cls", [AdamW, Adam])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adamw_kernel_matches_the_array_code(rt, opt_cls, dtype):
    ref, ran = _opt(rt, False, opt_cls, KC.ADAMW_SIZES, KC.adamw_groups, dtype)
    assert ran == []
    got, ran = _opt(rt, True, opt_cls, KC.ADAMW_SIZES, KC.adamw_groups, dtype)
    assert ran == [f"adamw_step<{'float' if dtype == np.float32 else 'double'}>"] * 3   # one launch a step
    KC.assert_same_optimizer_result(ref, got, dtype)


def test_adamw_kernel_splits_its_table_past_64_tensors_or_8_slots(rt):
    sizes = [(i % 5 + 1,) for i in range(70)]
    groups = lambda ps: [{"params": ps[i::10], "lr": 1e-3 * (i + 1)} for i in range(10)]  # noqa: E731
    ref, _ = _opt(rt, False, AdamW, sizes, groups, np.float32)
    got, ran = _opt(rt, True, AdamW, sizes, groups, np.float32)
    assert len(ran) == 3 * 2       # each step: 10 slots (at most 8 a launch) and 70 tensors (at most 64)
    KC.assert_same_optimizer_result(ref, got, np.float32)


# ================================================================ determinism, gradchecks, the seam
def test_kernels_give_identical_bits_in_any_thread_and_block_order(rt):
    rev = emu.runtime(reverse=True)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 300)).astype(np.float32)
    y = rng.integers(0, 300, 7)
    qkv = rng.standard_normal((2, 37, 3 * 2 * 16)).astype(np.float32)
    cases = [(lambda t: F.softmax(t, -1), [x]), (lambda t: F.cross_entropy(t, y, label_smoothing=0.1), [x]),
             (lambda t: F.layer_norm(t, 300, impl="fused"), [x]), (lambda t: F.causal_self_attention(t, 2), [qkv])]
    for fn, arrays in cases:
        _, fwd = both(rt, fn, arrays)
        _, bwd = both(rev, fn, arrays)
        np.testing.assert_array_equal(fwd[0], bwd[0])
        for a, b in zip(fwd[1], bwd[1]):
            np.testing.assert_array_equal(a, b)


def test_float64_gradchecks_through_the_kernels(rt):
    """Finite differences in float64 against the kernels' backward (emulated), for every fused op."""
    with kernels_on(rt):
        for name, fn, arrays in KC.gradcheck_cases(np.random.default_rng(11)):
            start = len(rt.launched)
            report = gradcheck(fn, [Tensor(a, requires_grad=True) for a in arrays], mode="element")
            assert report.passed, f"{name}\n{report}"
            ran = rt.launched[start:]
            assert any(n.startswith(name) for n in ran), (name, ran)
            assert all("double" in n for n in ran), (name, ran)


def test_launch_counter_and_the_generic_switch(rt):
    x = Tensor(np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    with kernels_on(rt):
        n0 = backend.kernel_launches()
        F.softmax(x, -1).sum().backward()
        assert backend.kernel_launches() - n0 == 2                  # softmax_fwd, softmax_bwd
        with backend.use_kernels(False):
            n1 = backend.kernel_launches()
            y = F.softmax(x, -1)
            assert backend.kernel_launches() == n1                   # the generic path
        assert backend.kernels_enabled()
        y.sum().backward()                                            # recorded generic: backward stays generic
        assert backend.kernel_launches() == n1


# ================================================================ the emulation itself
def test_emulation_catches_missing_barrier_early_return_and_overflow(rt):
    x = np.arange(128, dtype=np.float32)
    want = np.concatenate([x[63::-1], x[:63:-1]])
    y = rt.empty(128, np.float32)
    K.launch(rt, "selftest.cu", "selftest_reverse", (2,), (64,), (x, y, np.int32(1)))
    np.testing.assert_array_equal(y, want)
    y = rt.empty(128, np.float32)
    K.launch(rt, "selftest.cu", "selftest_reverse", (2,), (64,), (x, y, np.int32(0)))   # no barrier
    assert not np.array_equal(y, want), "a missing __syncthreads went unnoticed"
    with pytest.raises(emu.EmulationError, match="reached by 5 of 32 threads"):
        K.launch(rt, "selftest.cu", "selftest_early_return", (1,), (32,), (rt.empty(32, np.float32), np.int32(5)))
    with pytest.raises(emu.EmulationError, match="past the end"):
        K.launch(rt, "selftest.cu", "selftest_overflow", (1,), (32,), (rt.empty(7, np.float32), np.int32(7)))
    v = np.arange(32, dtype=np.float32)
    out = rt.empty(32, np.float32)
    K.launch(rt, "selftest.cu", "selftest_warp_sum", (1,), (32,), (v, out))
    np.testing.assert_array_equal(out, np.full(32, v.sum()))


@pytest.mark.parametrize("reverse", [False, True])
def test_emulation_lets_a_warp_run_ahead(reverse):
    """A warp runs through its shuffles before the next warp gets a turn, so a shared scratch
    reused without a barrier is overwritten before a slower warp has read it."""
    rt = emu.runtime(reverse=reverse)
    x = np.arange(256, dtype=np.float32)
    for guard, ok in ((1, True), (0, False)):
        y = rt.empty(16, np.float32)
        K.launch(rt, "selftest.cu", "selftest_reduce_twice", (1,), (256,), (x, y, np.int32(guard)))
        assert np.array_equal(y, np.tile([x.sum(), 2 * x.sum()], 8)) == ok, (guard, y)


def test_emulation_checks_arguments_against_the_signature(rt):
    x = np.zeros((2, 5), np.float64)
    f = x.astype(np.float32)
    with pytest.raises(emu.EmulationError, match="argument 0.*4-byte elements.*8-byte"):
        K.launch(rt, "softmax.cu", "softmax_fwd<float>", (2,), (32,), (x, f, np.int32(5)))
    with pytest.raises(emu.EmulationError, match="argument 2.*4 bytes.*got 8 bytes"):
        K.launch(rt, "softmax.cu", "softmax_fwd<float>", (2,), (32,), (f, f.copy(), np.int64(5)))
    with pytest.raises(emu.EmulationError, match="argument 2 is a int"):
        K.launch(rt, "softmax.cu", "softmax_fwd<float>", (2,), (32,), (f, f.copy(), 5))
    with pytest.raises(emu.EmulationError, match="takes 3 arguments, got 2"):
        K.launch(rt, "softmax.cu", "softmax_fwd<float>", (2,), (32,), (f, f.copy()))


def test_by_value_structs_match_their_numpy_twins(rt):
    for i, (ctype, (_, dt)) in enumerate(emu.struct_twins().items()):
        size, offsets = emu.c_layout(rt.lib, i, dt)
        assert size == dt.itemsize, ctype
        assert offsets == {f: dt.fields[f][1] for f in dt.names}, ctype


# ================================================================ a whole GPT step
@pytest.mark.parametrize("gelu", ["tanh", "none"])
def test_gpt_training_step_through_the_kernels(rt, gelu):
    """Forward, backward and AdamW of a small GPT on the kernels match the numpy path, with
    12 fused launches per layer + 7 (ln_f, cross-entropy, AdamW) and nothing else fused."""
    import tinygrad_lm as tg
    from tinygrad_lm.models.gpt import GPT, GPTConfig

    def step(use):
        tg.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, gelu_approximate=gelu))
        opt = AdamW(model.parameters(), lr=1e-3)
        idx, tgt = tg.randint(0, 11, (2, 8)), tg.randint(0, 11, (2, 8))
        before = K.launch_counts()
        with kernels_on(rt) if use else contextlib.nullcontext():
            _, loss = model(idx, tgt)
            loss.backward()
            grads = [p.grad.data.copy() for p in model.parameters()]
            opt.step()
        ran = {n: c - before.get(n, 0) for n, c in K.launch_counts().items() if c != before.get(n, 0)}
        return float(loss.data), grads, [p.data.copy() for p in model.parameters()], ran

    ref, got = step(False), step(True)
    assert ref[3] == {}
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-6)
    for a, b in zip(ref[1], got[1]):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    for a, b in zip(ref[2], got[2]):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    per_layer = {"layernorm_fwd<float>": 2, "attn_fwd<float, 1>": 1, "gelu_fwd<float>": 1, "layernorm_bwd<float>": 2,
                 "layernorm_param_bwd<float>": 2, "attn_bwd_delta<float>": 1, "attn_bwd_dkdv<float, 1>": 1,
                 "attn_bwd_dq<float, 1>": 1, "gelu_bwd<float>": 1}
    once = {"layernorm_fwd<float>": 1, "layernorm_bwd<float>": 1, "layernorm_param_bwd<float>": 1,
            "cross_entropy_fwd<float>": 1, "cross_entropy_reduce<float>": 1, "cross_entropy_bwd<float>": 1,
            "adamw_step<float>": 1}
    want = {n: 2 * per_layer.get(n, 0) + once.get(n, 0) for n in set(per_layer) | set(once)}
    assert got[3] == want and sum(want.values()) == 12 * 2 + 7


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_mask_kernel_gives_the_array_codes_bits(rt, dtype):
    """dropout.cu computes DeviceGenerator's words in registers: the same mask, bit for bit, and
    the counter advances alike (odd sizes: the last word's high half unused)."""
    for shape, p in (((1,), 0.5), ((7,), 0.2), ((3, 5, 7), 0.3), ((2, 4, 64, 64), 0.2), ((0, 3), 0.5),
                     ((4097,), 0.0), ((33,), 0.999)):
        ref_gen, ker_gen = backend.DeviceGenerator(42), backend.DeviceGenerator(42)
        ref_gen.random(5), ker_gen.random(5)                      # a counter that is not 0
        ref = ref_gen.dropout_mask(shape, p, dtype)
        start = len(rt.launched)
        with kernels_on(rt):
            got = ker_gen.dropout_mask(shape, p, dtype)
        ran = rt.launched[start:]
        assert ran == ([f"dropout_mask<{'float' if dtype == np.float32 else 'double'}>"] if ref.size else []), ran
        assert got.dtype == dtype and got.shape == ref.shape
        assert got.tobytes() == ref.tobytes(), (shape, p)
        assert ker_gen.get_state() == ref_gen.get_state()
