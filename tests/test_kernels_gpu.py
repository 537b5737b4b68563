"""The CUDA kernels on a GPU: each one against the generic cupy path (the same op code run
through cupy with kernels switched off) on the cases of kernel_cases.py, float64 gradchecks of
every fused op through its kernels, and AdamW's one-launch step.

On a machine with a GPU these run on it (test ids "cuda"). Without one they run on the
numpy-backed cupy API stand-in (ids "cuda-standin"), whose RawModule runs the kernels on the CPU
emulation: a rehearsal of these very tests and of the cupy glue, not a check of the GPU (the
"generic cupy path" is then numpy too). See docs/kernels.md, "What remains".
"""
import numpy as np
import pytest

import kernel_cases as KC
from tinygrad_lm import backend
from tinygrad_lm import kernels as K
from tinygrad_lm.gradcheck import gradcheck
from tinygrad_lm.optim import Adam, AdamW
from tinygrad_lm.tensor import Tensor

# GPU math (expf, erff, tanhf with -ftz, fused multiply-adds) differs from numpy's by an ulp or
# two more than g++'s libm does in the emulation; on a GPU both paths here run on the GPU.
GPU_SLACK = 4.0


def _run(case, use_kernels):
    with backend.use_kernels(use_kernels):
        before = K.launch_counts()
        requires = case.requires if case.requires is not None else [a.dtype.kind == "f" for a in case.arrays]
        ts = [Tensor(a.copy(), device="cuda", requires_grad=r) for a, r in zip(case.arrays, requires)]
        out = case.fn(*ts)
        if out.requires_grad:
            out.backward(Tensor(np.random.default_rng(0).standard_normal(out.shape).astype(out.dtype), device="cuda"))
        result = (backend.to_numpy(out.data), [None if t.grad is None else backend.to_numpy(t.grad.data) for t in ts])
        after = K.launch_counts()
    return result, {n: c - before.get(n, 0) for n, c in after.items() if c != before.get(n, 0)}


CASES = KC.all_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_kernel_matches_the_generic_cupy_path(cuda, case):
    ref, ran = _run(case, False)
    assert not ran, f"kernels ran with kernels off: {ran}"
    got, ran = _run(case, True)
    for name in case.expect:
        assert any(n.startswith(name) for n in ran), f"kernel {name} did not run (ran: {sorted(ran)})"
    tol = {k: v * GPU_SLACK for k, v in case.tolerance().items()}
    np.testing.assert_allclose(got[0], ref[0], equal_nan=True, err_msg="forward", **tol)
    for i, (a, b) in enumerate(zip(ref[1], got[1])):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(b, a, equal_nan=True, err_msg=f"gradient {i}", **tol)


def test_float64_gradchecks_through_the_kernels_on_the_gpu(cuda):
    for name, fn, arrays in KC.gradcheck_cases(np.random.default_rng(11)):
        before = K.launch_counts()
        report = gradcheck(fn, [Tensor(a, device="cuda", requires_grad=True) for a in arrays], mode="element")
        assert report.passed, f"{name}\n{report}"
        ran = [n for n, c in K.launch_counts().items() if c != before.get(n, 0)]
        assert any(n.startswith(name) and "double" in n for n in ran), (name, ran)


@pytest.mark.parametrize("opt_cls", [AdamW, Adam])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adamw_kernel_matches_the_array_code_on_the_gpu(cuda, opt_cls, dtype):
    dev = backend.canonical_device("cuda")                         # (imports cupy, or finds the stand-in)
    to_gpu = lambda a: backend.to_device(a, dev)  # noqa: E731
    with backend.use_kernels(False):
        ref = KC.run_optimizer(opt_cls, KC.ADAMW_SIZES, KC.adamw_groups, dtype, wrap=to_gpu)
    n0 = backend.kernel_launches()
    got = KC.run_optimizer(opt_cls, KC.ADAMW_SIZES, KC.adamw_groups, dtype, wrap=to_gpu)
    assert backend.kernel_launches() - n0 == 3                      # one launch a step
    KC.assert_same_optimizer_result(ref, got, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_mask_kernel_gives_the_generic_paths_bits_on_the_gpu(cuda, dtype):
    # integer arithmetic only: the kernel's mask is the generic path's (and the CPU's), bit for bit
    dev = backend.canonical_device("cuda")
    for shape, p in (((7,), 0.2), ((2, 4, 64, 64), 0.2), ((3, 333), 0.5)):
        ref_gen, ker_gen = backend.DeviceGenerator(3), backend.DeviceGenerator(3)
        with backend.use_kernels(False):
            ref = ref_gen.dropout_mask(shape, p, dtype, dev)
        n0 = K.launch_counts().get(f"dropout_mask<{'float' if dtype == np.float32 else 'double'}>", 0)
        got = ker_gen.dropout_mask(shape, p, dtype, dev)
        assert K.launch_counts()[f"dropout_mask<{'float' if dtype == np.float32 else 'double'}>"] == n0 + 1
        assert backend.device_of(got) == dev and got.dtype == dtype
        assert backend.to_numpy(got).tobytes() == backend.to_numpy(ref).tobytes()
        assert backend.to_numpy(got).tobytes() == backend.DeviceGenerator(3).dropout_mask(shape, p, dtype).tobytes()
        assert ker_gen.get_state() == ref_gen.get_state()
