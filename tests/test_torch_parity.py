"""Optional: training against PyTorch step for step (skipped when torch is not installed).

The same GPT (our initial weights copied into tinygrad_lm.bench.torch_reference's model), the
same batches, the same AdamW / schedule / gradient clipping: the per-step losses must agree
to float32 rounding. This is the check that found clip_grad_norm_ silently not clipping
when given model.parameters() (a generator); benchmarks/convergence.py runs it at full size.
Also cross_entropy / nll_loss against PyTorch's with ignored targets (all of them included).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from tinygrad_lm.bench import torch_reference as tr  # noqa: E402

from tinygrad_lm import Tensor, manual_seed  # noqa: E402
from tinygrad_lm.data import get_batch  # noqa: E402
from tinygrad_lm.optim import get_lr  # noqa: E402
from tinygrad_lm.checkpoint import build_model, model_arrays  # noqa: E402
from tinygrad_lm.train import train_step  # noqa: E402


@pytest.mark.parametrize("gelu", ["tanh", "none"])
def test_training_matches_pytorch_step_for_step(gelu):
    torch.set_num_threads(1)
    V, T, L, H, C, B = 13, 16, 2, 2, 32, 8
    manual_seed(0)
    model = build_model(dict(vocab_size=V, n_layer=L, n_head=H, n_embd=C, block_size=T, dropout=0.0, bias=True,
                             gelu_approximate=gelu))
    opt = model.configure_optimizers(0.1, 3e-3, (0.9, 0.99))
    tm = tr.TorchGPT(tr.TorchGPTConfig(V, T, L, H, C, 0.0, True), gelu=gelu)
    tm.load_arrays(model_arrays(model))
    topt = tm.configure_optimizers(0.1, 3e-3, (0.9, 0.99))
    rng = np.random.default_rng(0)
    data = rng.integers(0, V, size=2000)
    data[::3] = data[1::3][: len(data[::3])]  # some structure, so the loss falls
    gaps, losses = [], []
    for it in range(40):
        lr = get_lr(it, 5, 40, 3e-3, 3e-4)
        for g in opt.param_groups + topt.param_groups:
            g["lr"] = lr
        x, y = get_batch(data, B, T, rng)
        # grad_clip 0.5 is below the gradient norm early on, so clipping is exercised
        lo = float(train_step(model, opt, Tensor(x), Tensor(y), 0.5).data)
        lt = tr.train_step(tm, topt, torch.from_numpy(x), torch.from_numpy(y), 0.5)
        gaps.append(abs(lo - lt))
        losses.append(lo)
    assert losses[-1] < losses[0] - 0.2
    assert max(gaps) < 1e-4, f"per-step loss gap vs PyTorch grew to {max(gaps):.2e} (step {int(np.argmax(gaps))})"
    ours = dict(model.named_parameters())
    for name, p in tm.named_parameters():
        np.testing.assert_allclose(ours[name].data, p.detach().numpy(), atol=1e-4, err_msg=name)


@pytest.mark.parametrize("ignored", ["all", "some"])
@pytest.mark.parametrize("impl", ["fused", "composed"])
def test_cross_entropy_and_nll_loss_with_ignored_targets_match_pytorch(impl, ignored):
    """Every target ignored: PyTorch's mean is NaN (0/0) and its gradient zeros; ours too."""
    from tinygrad_lm.nn import functional as F
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5))
    y = np.full(4, -100) if ignored == "all" else np.array([1, -100, 4, -100])
    for reduction in ("mean", "sum", "none"):
        for ls in (0.0, 0.1):
            g = rng.standard_normal(4 if reduction == "none" else ())
            ours = Tensor(x, requires_grad=True)
            with np.errstate(divide="ignore", invalid="ignore"):
                loss = F.cross_entropy(ours, y, reduction=reduction, label_smoothing=ls, impl=impl)
                loss.backward(Tensor(g))
            ref = torch.tensor(x, requires_grad=True)
            want = torch.nn.functional.cross_entropy(ref, torch.tensor(y), reduction=reduction, label_smoothing=ls)
            want.backward(torch.tensor(g))
            np.testing.assert_allclose(loss.detach().numpy(), want.detach().numpy(), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(ours.grad.numpy(), ref.grad.numpy(), rtol=1e-12, atol=1e-12,
                                       err_msg=f"{reduction} ls={ls}")
    ours, ref = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = F.nll_loss(ours, y)
        loss.backward()
    want = torch.nn.functional.nll_loss(ref, torch.tensor(y))
    want.backward()
    np.testing.assert_allclose(loss.item(), want.item(), rtol=1e-12)
    np.testing.assert_allclose(ours.grad.numpy(), ref.grad.numpy(), rtol=1e-12, atol=1e-12)
