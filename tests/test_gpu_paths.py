"""The GPU code paths, each finding of the cupy review with the test that would have caught it.

The `cuda` / `device` cases run on the real GPU where one is usable, and on the numpy-backed
cupy API stand-in (test id "cuda-standin") elsewhere: there they check that the code uses
cupy 14.2's API as it really is, not GPU numerics or speed.
"""
import os
import warnings

import numpy as np
import pytest

import tinygrad_lm as tg
from tinygrad_lm import backend, opcheck
from tinygrad_lm.models.gpt import GPT, GPTConfig
from tinygrad_lm.train import train_step

from conftest import REAL_GPU

standin_only = pytest.mark.skipif(REAL_GPU, reason="inspects the cupy stand-in's records (no GPU here)")


# ================================================================ 1. opcheck on "cuda"
def test_check_forward_accepts_the_uncanonical_device_name(device):
    spec = opcheck.SPECS["Add"]
    case = opcheck.Case(inputs=[np.ones((2, 3)), np.full((2, 3), 2.0)], params={})
    assert opcheck.check_forward(spec, case, device=device) == ""
    assert opcheck.check_forward(spec, case, np.float32, device=device) == ""


# ================================================================ 2. random constructors on "cuda"
@pytest.mark.parametrize("make", [lambda d: tg.rand(2, 3, device=d), lambda d: tg.randn(2, 3, device=d),
                                  lambda d: tg.randint(0, 5, (2, 3), device=d)], ids=["rand", "randn", "randint"])
def test_random_constructors_take_the_short_device_name(device, make):
    t = make(device)
    assert t.device == backend.canonical_device(device) and t.shape == (2, 3)


# ================================================================ 4 and 9. scatter-adds: cupy's current API, deterministic
def _embedding_and_index_backward(dev):
    tg.manual_seed(0)
    w = tg.randn(6, 4, device=dev, requires_grad=True)
    idx = tg.tensor([[1, 5, 1], [0, 1, 5]], device=dev)
    x = tg.randn(5, 3, device=dev, requires_grad=True)
    (tg.embedding(w, idx) * tg.arange(4, dtype=np.float32, device=dev)).sum().backward()
    (x[tg.tensor([0, 4, 4, -1], device=dev)].sum() + x.gather(1, tg.tensor([[0, 0], [2, 2], [1, 1], [0, 2], [2, 2]],
                                                                           device=dev)).sum()).backward()
    (x.index_select(0, tg.tensor([3, 3, 1], device=dev)) * 2).sum().backward()
    return w.grad.cpu().numpy(), x.grad.cpu().numpy()


def test_scatter_add_backwards_use_no_deprecated_cupy_api_and_match_the_cpu(cuda):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)   # cupyx.scatter_add warns in cupy 14
        gw, gx = _embedding_and_index_backward(cuda)
    cw, cx = _embedding_and_index_backward("cpu")
    np.testing.assert_allclose(gw, cw, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gx, cx, rtol=1e-6, atol=1e-6)


@standin_only
def test_gpu_scatter_adds_are_deterministic_by_default_and_atomic_on_request(cuda, _cupy_standin):
    counts = _cupy_standin.counters
    counts.reset()
    _embedding_and_index_backward(cuda)
    assert not any(k.endswith(".at") for k in counts.launch_kinds), counts.launch_kinds   # no atomics
    assert counts.launch_kinds["cumsum"] >= 1      # the sorted segment sums ran
    backend.use_deterministic_algorithms(False)
    try:
        counts.reset()
        gw, gx = _embedding_and_index_backward(cuda)
        assert counts.launch_kinds["add.at"] >= 1, counts.launch_kinds   # cupy.add.at, not cupyx.scatter_add
    finally:
        backend.use_deterministic_algorithms(True)
    cw, cx = _embedding_and_index_backward("cpu")
    np.testing.assert_allclose(gw, cw, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("rows,n,width,seed", [(5, 0, 3, 0), (1, 7, 2, 1), (9, 9, 1, 2), (50, 400, 8, 3),
                                               (3, 1000, 4, 4)])
def test_segment_sums_match_add_at(rows, n, width, seed):
    # the deterministic GPU algorithm, run here on numpy arrays (it is written for any array module)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, rows, n)
    for dtype, tol in ((np.float32, 2e-6), (np.float64, 1e-13)):
        values = rng.standard_normal((n, width)).astype(dtype)
        want = np.zeros((rows, width), dtype)
        np.add.at(want, index, values)
        got = backend._segment_sums(np.zeros((rows, width), dtype), index, values)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 10)
        again = backend._segment_sums(np.zeros((rows, width), dtype), index, values)
        assert got.tobytes() == again.tobytes()


# ================================================================ 5. TF32
def test_set_tf32_changes_nothing_on_the_cpu_nor_in_the_environment():
    before = os.environ.get("CUPY_TF32")
    a, b = tg.randn(8, 8), tg.randn(8, 8)
    ref = (a @ b).numpy()
    try:
        tg.set_tf32(True)
        assert backend.tf32_enabled()
        np.testing.assert_array_equal((a @ b).numpy(), ref)
        assert os.environ.get("CUPY_TF32") == before   # no process-wide side effect
    finally:
        tg.set_tf32(False)
    assert not backend.tf32_enabled()


@standin_only
def test_set_tf32_sets_the_cublas_math_mode_and_cupys_compute_type(cuda, _cupy_standin):
    import cupy
    handle = cupy.cuda.device.get_cublas_handle()
    f32 = np.float32
    a = tg.randn(4, 64, 64, device=cuda)   # batched (B, T, C) @ (C, D): the GPT's Linear
    w = tg.randn(64, 64, device=cuda)
    exact = a.double().cpu().numpy() @ w.double().cpu().numpy()
    err = lambda y: np.max(np.abs(y.cpu().numpy() - exact)) / np.max(np.abs(exact))  # noqa: E731
    assert err(a @ w) < 1e-6
    tg.set_tf32(True)
    assert cupy.cuda.cublas.getMathMode(handle) == 3                      # CUBLAS_TF32_TENSOR_OP_MATH
    assert cupy._core.get_compute_type(f32) == 7                          # COMPUTE_TYPE_TF32
    assert 1e-5 < err(a @ w) < 5e-3                                      # TF32 inputs: ~10-bit mantissa
    assert err(a.double() @ w.double()) < 1e-12                           # float64 untouched
    tg.set_tf32(False)
    assert cupy.cuda.cublas.getMathMode(handle) == 0 and cupy._core.get_compute_type(f32) == 1
    assert err(a @ w) < 1e-6


# ================================================================ 6. out-of-range indices: the same IndexError everywhere
BAD_INDEX = [
    (lambda x, d: x[tg.tensor([0, 3], device=d)], ["getitem", "out of bounds", "dim 0 of size 3", "[0, 3]", "(3, 4)"]),
    (lambda x, d: x[[0, 3]], ["getitem", "out of bounds", "(3, 4)"]),
    (lambda x, d: x[:, np.array([[1], [-5]])], ["getitem", "out of bounds", "dim 1 of size 4", "[-5, 1]"]),
    (lambda x, d: x[..., tg.tensor([4], device=d)], ["getitem", "dim 1 of size 4"]),
    (lambda x, d: x[None, tg.tensor([7], device=d)], ["getitem", "dim 0 of size 3"]),
    (lambda x, d: x.gather(1, tg.tensor([[0, 4]], device=d)), ["gather", "out of range", "size 4", "[0, 4]"]),
    (lambda x, d: tg.take_along_dim(x, tg.tensor([[-5]], device=d), 1), ["take_along_dim", "out of range", "[-5, -5]"]),
    (lambda x, d: x.index_select(0, tg.tensor([0, 3], device=d)), ["index_select", "out of range", "size 3", "(3, 4)"]),
    (lambda x, d: tg.embedding(x, tg.tensor([[1, 3]], device=d)), ["embedding", "out of range", "3 rows", "(3, 4)"]),
    (lambda x, d: tg.embedding(x, tg.tensor([-1], device=d)), ["embedding", "out of range", "[-1, -1]"]),
    (lambda x, d: tg.one_hot(tg.tensor([0, 4], device=d), 3), ["one_hot", "[0, 3)", "[0, 4]"]),
]


@pytest.mark.parametrize("fn,needles", BAD_INDEX)
def test_out_of_range_indices_raise_the_same_error_on_every_device(device, fn, needles):
    x = tg.zeros(3, 4, requires_grad=True, device=device)
    with pytest.raises(IndexError) as e:
        fn(x, device)
    for n in needles:
        assert n in str(e.value), (n, str(e.value))


def test_in_range_negative_indices_still_work(device):
    x = tg.arange(12, dtype=np.float32, device=device).reshape(3, 4)
    np.testing.assert_array_equal(x[tg.tensor([-1, 0], device=device)].cpu().numpy(), [[8, 9, 10, 11], [0, 1, 2, 3]])
    np.testing.assert_array_equal(x.index_select(1, tg.tensor([-4, 3], device=device)).cpu().numpy()[0], [0, 3])


@standin_only
def test_a_bounds_check_reads_the_device_once(cuda, _cupy_standin):
    w = tg.randn(10, 4, device=cuda)
    idx = tg.tensor(np.arange(8), device=cuda).reshape(2, 4)   # computed on the device: its range is unknown
    _cupy_standin.counters.reset()
    tg.embedding(w, idx)
    assert _cupy_standin.counters.syncs == 1, _cupy_standin.counters.sync_kinds


@standin_only
def test_indices_made_from_host_values_or_by_arange_need_no_read(cuda, _cupy_standin):
    # their range was read on the host before the upload (or is arange's): the bounds checks of
    # embedding, gather, index_select, one_hot and cross_entropy's targets use it
    from tinygrad_lm.nn import functional as F
    w = tg.randn(10, 4, device=cuda)
    host = np.array([[1, 9, 0], [3, 3, 2]])
    idx, moved = tg.tensor(host, device=cuda), tg.tensor(host).to(cuda)
    pos, tgt = tg.arange(3, device=cuda), tg.tensor([[1, -1, 3], [0, 3, -1]], device=cuda)
    cols, logits = tg.tensor([[0, 3], [2, 1]], device=cuda), tg.randn(2, 3, 4, device=cuda)
    _cupy_standin.counters.reset()
    tg.embedding(w, idx), tg.embedding(w, moved), tg.embedding(w, pos), w.index_select(0, pos)
    w.gather(1, cols), tg.one_hot(pos, 3), F.cross_entropy(logits, tgt, ignore_index=-1)
    assert _cupy_standin.counters.syncs == 0, _cupy_standin.counters.sync_kinds
    # and out-of-range values still raise the same error, named from the recorded range
    for bad, needles in ((tg.tensor([[1, 10]], device=cuda), ["embedding", "[1, 10]", "10 rows"]),
                         (tg.tensor([-1], device=cuda), ["embedding", "[-1, -1]"])):
        with pytest.raises(IndexError) as e:
            tg.embedding(w, bad)
        assert all(n in str(e.value) for n in needles), str(e.value)
    with pytest.raises(IndexError, match=r"spanning \[-2, -2\]"):
        F.cross_entropy(logits, tg.tensor([[1, -2, 3], [0, 3, -1]], device=cuda), ignore_index=-1)
    with pytest.raises(IndexError, match=r"spanning \[4, 4\]"):
        F.cross_entropy(logits, tg.tensor([[1, 4, 3], [0, 3, 2]], device=cuda), ignore_index=-1)


def test_cross_entropy_with_every_target_ignored_is_nan_with_zero_gradients_and_no_read(device, _cupy_standin):
    """As PyTorch: the mean over no rows is NaN and the gradient zeros, on every device and both
    implementations. The fused backward's max(N_valid, 1) stays on the device: on the stand-in,
    its forward and backward read nothing back (the composed twin's gather reads its indices'
    range once, as it does with any targets)."""
    from tinygrad_lm.nn import functional as F
    tgt = tg.tensor([[-1, -1, -1], [-1, -1, -1]], device=device)
    for impl in ("fused", "composed"):
        for ls in (0.0, 0.1):
            logits = tg.randn(2, 3, 5, device=device, requires_grad=True)
            if _cupy_standin is not None:
                _cupy_standin.counters.reset()
            with np.errstate(divide="ignore", invalid="ignore"):   # the composed mean's 0 / 0 and g / 0
                loss = F.cross_entropy(logits, tgt, ignore_index=-1, label_smoothing=ls, impl=impl)
                loss.backward()
            if _cupy_standin is not None:
                assert _cupy_standin.counters.syncs == (impl == "composed"), _cupy_standin.counters.sync_kinds
            assert np.isnan(loss.item()), (impl, ls)
            grad = logits.grad.cpu().numpy()
            assert grad.shape == (2, 3, 5) and not grad.any() and not np.isnan(grad).any(), (impl, ls)


# ================================================================ 8. clipping on the device
@pytest.mark.parametrize("max_norm,norm_type", [(1.0, 2.0), (1e6, 2.0), (0.5, float("inf")), (2.0, 3.0)])
def test_clipping_gives_the_cpus_bits_and_reads_nothing_on_the_device(device, _cupy_standin, max_norm, norm_type):
    from tinygrad_lm.optim import clip_grad_norm_
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (5,), (2, 2, 2))]
    out = {}
    for dev in ("cpu", device):
        ps = [tg.zeros(*g.shape, device=dev, requires_grad=True) for g in grads]
        for p, g in zip(ps, grads):
            p.grad = tg.tensor(g.copy(), device=dev)   # clipping scales in place
        if _cupy_standin is not None and dev != "cpu":
            _cupy_standin.counters.reset()
        norm = clip_grad_norm_((p for p in ps), max_norm, norm_type)
        if _cupy_standin is not None and dev != "cpu":
            assert _cupy_standin.counters.syncs == 0, _cupy_standin.counters.sync_kinds
        assert norm.shape == () and norm.dtype == np.float64 and norm.device == backend.canonical_device(dev)
        out[dev] = float(norm), [p.grad.cpu().numpy() for p in ps]
    want = np.linalg.norm(np.concatenate([g.ravel() for g in grads]).astype(np.float64), ord=norm_type)
    assert out["cpu"][0] == pytest.approx(want, rel=1e-6)
    assert out[device][0] == out["cpu"][0]
    for a, b, g in zip(out[device][1], out["cpu"][1], grads):
        assert a.tobytes() == b.tobytes()                          # the same bits, clipped or not
        if max_norm > want:
            assert b.tobytes() == g.tobytes()                      # within the limit: untouched


# ================================================================ syncs and copies in one training step
def _one_step(dev, dropout):
    tg.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=dropout)).to(dev)
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 11, (4, 8)), rng.integers(0, 11, (4, 8))
    model.train()
    train_step(model, opt, tg.tensor(x, device=dev), tg.tensor(y, device=dev))   # warm-up (optimizer state)
    return model, opt, tg.tensor(x, device=dev), tg.tensor(y, device=dev)


@standin_only
def test_host_syncs_and_copies_in_one_training_step_are_counted(cuda, _cupy_standin, capsys):
    # issue item 8: no host sync in an unlogged step, one in a logged step, and no host->device
    # copy with dropout on (the masks are drawn on the device)
    from tinygrad_lm.train import StepMonitor
    counts = _cupy_standin.counters
    for dropout in (0.0, 0.1):
        model, opt, x, y = _one_step(cuda, dropout)
        monitor = StepMonitor()
        counts.reset()
        train_step(model, opt, x, y, 1.0, monitor)                  # an unlogged step
        unlogged = counts.snapshot()
        counts.reset()
        train_step(model, opt, x, y, 1.0, monitor)                  # a logged step: the step, then the read
        rows = monitor.read()
        logged = counts.snapshot()
        with capsys.disabled():
            for name, c in (("unlogged", unlogged), ("logged", logged)):
                print(f"\n[cuda-standin] one {name} GPT training step (dropout {dropout}): {c['syncs']} host syncs "
                      f"{c['sync_kinds']}, {c['h2d_copies']} host->device copies ({c['h2d_bytes']} B), "
                      f"{c['d2h_bytes']} B device->host, {c['launches']} launches")
        assert unlogged["syncs"] == 0 and unlogged["d2h_copies"] == 0, unlogged["sync_kinds"]
        assert logged["syncs"] == 1 and logged["d2h_copies"] == 1, logged["sync_kinds"]
        assert logged["d2h_bytes"] == rows.nbytes == 2 * 2 * 8        # two steps' [loss, norm] in float64
        for c in (unlogged, logged):
            assert c["h2d_copies"] == 0 and c["explicit_syncs"] == 0, c
        assert np.isfinite(rows).all() and rows.shape == (2, 2)


@standin_only
def test_an_unlogged_training_step_reads_nothing_back(cuda, _cupy_standin):
    from tinygrad_lm.train import StepMonitor
    model, opt, x, y = _one_step(cuda, 0.1)
    monitor = StepMonitor()
    _cupy_standin.counters.reset()
    for _ in range(5):
        train_step(model, opt, x, y, 1.0, monitor)
    c = _cupy_standin.counters
    assert c.syncs == 0 and c.h2d_copies == 0 and c.d2h_copies == 0, c.snapshot()
    losses = monitor.read()[:, 0]
    assert c.syncs == 1 and losses.shape == (5,) and losses[-1] < losses[0]   # five steps, one read, it learns


@pytest.mark.parametrize("kernels", [True, False], ids=["kernels", "generic"])
def test_a_non_finite_step_changes_no_weight_and_no_moment_on_the_device(device, kernels):
    # StepMonitor's found_inf: the optimizer skips the update where it is set, without a read on
    # a GPU (the AdamW kernel returns at once; the array code discards an update made on copies)
    from tinygrad_lm.train import StepMonitor
    with backend.use_kernels(kernels):
        model, opt, x, y = _one_step(device, 0.0)
        monitor = StepMonitor()
        train_step(model, opt, x, y, 1.0, monitor)                       # a good step
        before = {n: p.detach().cpu().numpy().copy() for n, p in model.named_parameters()}
        moments = {k: {n: np.array(v) for n, v in st.items() if n != "step"} for k, st in opt.state_dict()["state"].items()}
        w = model.transformer.wte.weight
        from tinygrad_lm import kernels as K
        launched = K.launch_counts().get("adamw_step<float>", 0)
        with np.errstate(invalid="ignore", over="ignore"):
            w.data[0, 0] = np.nan                                        # the next loss is NaN
            for _ in range(3):                                           # that step and every later one: skipped
                train_step(model, opt, x, y, 1.0, monitor)
            w.data[0, 0] = before["transformer.wte.weight"][0, 0]
        rows = monitor.read()
        if kernels and device != "cpu":                                  # the kernel ran, and returned at once
            assert K.launch_counts()["adamw_step<float>"] == launched + 3
    assert np.isfinite(rows[0]).all() and not np.isfinite(rows[1]).any()
    assert all(np.array_equal(p.detach().cpu().numpy(), before[n]) for n, p in model.named_parameters())
    state = opt.state_dict()["state"]
    assert all(np.array_equal(state[k][n], v) for k, st in moments.items() for n, v in st.items())


@pytest.mark.parametrize("opt_cls", ["SGD", "AdamW"])
def test_found_inf_skips_an_update_without_changing_the_others(device, opt_cls):
    # a clear flag (host or device) gives the plain step's bits; a set one changes nothing (a
    # host flag not even the step count; a device flag is not read, so the count advances)
    from tinygrad_lm import optim
    rng = np.random.default_rng(2)
    w0, g0 = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    kw = dict(lr=0.1, momentum=0.9, weight_decay=0.01) if opt_cls == "SGD" else dict(lr=0.1, weight_decay=0.01)

    def run(flags):
        p = tg.tensor(w0.copy(), device=device, requires_grad=True)   # the step writes into it
        opt = getattr(optim, opt_cls)([p], **kw)
        for f in flags:
            p.grad = tg.tensor(g0.copy(), device=device)
            opt.step() if isinstance(f, str) else opt.step(found_inf=f)
        st = opt.state_dict()["state"].get(0, {})
        return p.detach().cpu().numpy(), {k: v for k, v in st.items() if k != "step"}, st.get("step")
    xp = backend.xp_for(backend.canonical_device(device))
    on = lambda v: xp.asarray(v)                                    # noqa: E731  a flag on the parameters' device
    plain = run(["none", "none"])
    for flags in (["none", False], ["none", np.bool_(False)], ["none", on(False)], ["none", on(0.0)]):
        got = run(flags)
        assert got[0].tobytes() == plain[0].tobytes() and got[2] == plain[2]
    once = run(["none"])
    for skipped, count in (([True], once[2]), ([np.bool_(True)], once[2]), ([on(True)], None), ([on(np.inf)], None)):
        got = run(["none"] + skipped)
        assert got[0].tobytes() == once[0].tobytes()
        assert all(got[1][k].tobytes() == v.tobytes() for k, v in once[1].items())
        if count is not None or device == "cpu":
            assert got[2] == once[2]


@pytest.mark.parametrize("flags,says", [
    (["--lr", "1e30"], "training diverged at step 1: the gradient norm is nan (the loss was 2.398); no checkpoint"),
    (["--lr", "1e30", "--grad-clip", "0", "--weight-decay", "0"], "the loss is nan (the weights were already non-finite"),
    (["--lr", "1e3", "--grad-clip", "0"], "the loss is nan; nothing after step 5 was saved"),   # weights still finite
], ids=["lr", "no-clip", "after-save"])
def test_a_diverging_run_stops_with_the_cpus_message_and_files(cuda, tmp_path, capsys, flags, says):
    # on the device the divergence is found at the next read, not at the step: the message (the
    # first non-finite step), the checkpoint and loss.csv must still be the CPU run's. The GPU
    # run takes the generic path, whose arithmetic is the CPU's on the stand-in: with the kernels
    # (a different order of operations) the overflow may reach NaN a step earlier or later.
    from tinygrad_lm.cli import main
    (tmp_path / "corpus.txt").write_text("the cat sat on the mat. " * 60)
    got = {}
    for dev in ("cpu", cuda):
        out = tmp_path / dev
        with backend.use_kernels(REAL_GPU):
            code = main(["train", "--data", str(tmp_path / "corpus.txt"), "--out-dir", str(out), "--max-iters", "30",
                         "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "8", "--batch-size",
                         "4", "--eval-interval", "5", "--eval-iters", "1", "--warmup-iters", "2", "--no-progress",
                         "--sample-tokens", "0", "--device", dev, *flags])
        # what is on disk: the checkpoint's step and loss.csv's rows (step, and which columns are
        # filled; the values differ in the last digits: the GPU path sums in other orders)
        import csv
        import json
        saved = json.loads((out / "ckpt" / "meta.json").read_text())["step"] if (out / "ckpt").exists() else None
        rows = [(r["step"], bool(r["loss"]), bool(r["eval_val_loss"])) for r in csv.DictReader(open(out / "loss.csv"))] \
            if (out / "loss.csv").exists() else None
        got[dev] = code, capsys.readouterr().err.replace(str(out), "<out>"), saved, rows
    assert got["cpu"][0] == 2 and says in got["cpu"][1]
    assert got[cuda] == got["cpu"]


# ================================================================ 7 (backend part). the device generator
def test_the_device_generator_gives_the_same_bits_on_every_device(device):
    g = backend.DeviceGenerator(1234)
    a32, a64 = g.random((3, 5), np.float32, "cpu"), g.random(7, np.float64, "cpu")
    g.manual_seed(1234)
    dev = backend.canonical_device(device)
    b32, b64 = g.random((3, 5), np.float32, dev), g.random(7, np.float64, dev)
    assert backend.device_of(b32) == dev and b32.dtype == np.float32 and b64.dtype == np.float64
    assert backend.to_numpy(b32).tobytes() == a32.tobytes() and backend.to_numpy(b64).tobytes() == a64.tobytes()


def test_the_device_generator_state_continues_the_stream_exactly():
    g = backend.DeviceGenerator(7)
    g.random(100)
    state = g.get_state()
    assert state == {"seed": 7, "counter": 100}
    want = g.random((4, 4))
    g.random(9)
    g.set_state(state)
    np.testing.assert_array_equal(g.random((4, 4)), want)
    tg.manual_seed(7)                      # manual_seed seeds it too
    assert backend.device_rng.get_state() == {"seed": 7, "counter": 0}


def test_the_device_generator_is_uniform():
    u = backend.DeviceGenerator(0).random(200_000, np.float64)
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 3e-3 and abs(u.var() - 1 / 12) < 3e-3
    hist = np.histogram(u, bins=20, range=(0, 1))[0]
    assert hist.min() > 0.95 * 10_000 and hist.max() < 1.05 * 10_000
    a, b = backend.DeviceGenerator(0).random(1000), backend.DeviceGenerator(1).random(1000)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.1   # neighbouring seeds are unrelated streams


# ================================================================ 7. dropout masks drawn on the device
def _dropout_outputs(dev, dtype=np.float32):
    """F.dropout, the fused attention's dropout and the composed one, after one seed."""
    from tinygrad_lm.nn import functional as F
    x = tg.tensor(np.ones((3, 5, 7), dtype=dtype), device=dev)
    q = tg.tensor(np.random.default_rng(0).standard_normal((2, 2, 6, 4)).astype(dtype), device=dev)
    tg.manual_seed(11)
    drop = F.dropout(x, 0.3)
    fused = F.scaled_dot_product_attention(q, q, q, dropout_p=0.25, is_causal=True, impl="fused")
    state = backend.device_rng.get_state()
    tg.manual_seed(11)
    F.dropout(x, 0.3)
    composed = F.scaled_dot_product_attention(q, q, q, dropout_p=0.25, is_causal=True, impl="composed")
    assert backend.device_rng.get_state() == state
    return [t.cpu().numpy() for t in (drop, fused, composed)], state


def test_dropout_masks_are_the_same_on_every_device_and_need_no_copy(device, _cupy_standin):
    (drop, fused, composed), state = _dropout_outputs("cpu")
    (d_drop, d_fused, d_composed), d_state = _dropout_outputs(device)
    if _cupy_standin is not None:   # a mask is drawn on the device: nothing copied, nothing read
        from tinygrad_lm.nn import functional as F
        x = tg.ones(64, 64, device=device)
        F.scaled_dot_product_attention(x[None], x[None], x[None], dropout_p=0.5, is_causal=True)  # caches the causal mask
        _cupy_standin.counters.reset()
        F.dropout(x, 0.5)
        F.scaled_dot_product_attention(x[None], x[None], x[None], dropout_p=0.5, is_causal=True)
        c = _cupy_standin.counters
        assert c.h2d_copies == 0 and c.syncs == 0, c.snapshot()
    assert d_state == state == {"seed": 11, "counter": (105 + 1) // 2 + 2 * 2 * 6 * 6 // 2}
    np.testing.assert_array_equal(d_drop, drop)                         # the same mask, bit for bit
    assert set(np.unique(drop)) == {0.0, np.float32(1 / 0.7)}
    np.testing.assert_allclose(d_fused, fused, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fused, composed, rtol=1e-6, atol=1e-6)   # fused and composed draw alike


def test_the_dropout_mask_keeps_1_minus_p_and_the_same_entries_in_every_dtype():
    g = backend.DeviceGenerator(5)
    m32 = g.dropout_mask((400, 500), 0.2, np.float32)
    assert g.counter == 100_000
    g.manual_seed(5)
    m64 = g.dropout_mask((400, 500), 0.2, np.float64)
    assert m32.dtype == np.float32 and m64.dtype == np.float64
    np.testing.assert_array_equal(m32 > 0, m64 > 0)
    assert set(np.unique(m64)) == {0.0, 1.25}
    kept = (m64 > 0).mean()
    assert abs(kept - 0.8) < 4 * np.sqrt(0.8 * 0.2 / m64.size)          # within 4 sigma
    assert abs(m64.mean() - 1.0) < 0.01                                 # inverted dropout keeps the mean
    rows = (m64 > 0).mean(axis=1)                                       # no structure along either axis
    assert rows.min() > 0.7 and rows.max() < 0.9
    g.manual_seed(5)
    assert (g.dropout_mask(7, 0.0) == 1.0).all() and g.counter == 4     # odd n: ceil(n / 2) words
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        g.dropout_mask(3, 1.0)


def test_a_gpt_with_dropout_gives_the_same_loss_and_gradients_on_every_device(cuda):
    # the masks are the same bits everywhere, so CPU/GPU parity holds with dropout on
    out = {}
    for dev in ("cpu", cuda):
        tg.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.3)).to(dev)
        model.train()
        rng = np.random.default_rng(0)
        x, y = rng.integers(0, 11, (4, 8)), rng.integers(0, 11, (4, 8))
        _, loss = model(tg.tensor(x, device=dev), tg.tensor(y, device=dev))
        loss.backward()
        out[dev] = float(loss.item()), {n: p.grad.cpu().numpy() for n, p in model.named_parameters()}
    assert out[cuda][0] == pytest.approx(out["cpu"][0], rel=1e-6)
    for n, g in out["cpu"][1].items():
        np.testing.assert_allclose(out[cuda][1][n], g, rtol=1e-4, atol=1e-6, err_msg=n)
