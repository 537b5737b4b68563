"""Fault suite: Divergence (a non-finite loss, gradient norm, weight or moment).

The cases are in tests/reliability_cases.py (class "1."); each one is run here, checked
against its expectations and against its row in docs/reliability.md.
"""
import pytest

from reliability_cases import cases, check_case


@pytest.mark.parametrize("case", cases("1."), ids=lambda c: c.id)
def test_case(case, tmp_path):
    check_case(case, tmp_path)


def test_a_failing_check_leaves_weights_and_optimizer_untouched():
    """train_step runs `check` before the optimizer step: a diverged step is never applied."""
    import numpy as np
    from tinygrad_lm.checkpoint import build_model, model_arrays
    from tinygrad_lm.engine import manual_seed
    from tinygrad_lm.tensor import Tensor
    from tinygrad_lm.train import TrainingDiverged, train_step
    manual_seed(0)
    model = build_model(dict(vocab_size=11, n_layer=1, n_head=2, n_embd=8, block_size=4, dropout=0.0, bias=False,
                             gelu_approximate="tanh"))
    opt = model.configure_optimizers(0.1, 1e-2, (0.9, 0.99))
    x = Tensor(np.arange(8).reshape(2, 4) % 11)
    train_step(model, opt, x, x, 1.0)  # one good step: moments exist
    before, moments = model_arrays(model), {k: v.copy() for k, v in opt.state_dict()["state"][0].items()
                                            if hasattr(v, "copy")}
    seen = []

    def check(loss, grad_norm):
        seen.append((float(loss.data), grad_norm))
        raise TrainingDiverged("stop")
    with pytest.raises(TrainingDiverged):
        train_step(model, opt, x, x, 1.0, check)
    assert seen and seen[0][1] is not None  # the norm, measured by the clip, is passed
    after = model_arrays(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    state = opt.state_dict()["state"][0]
    assert all(np.array_equal(moments[k], state[k]) for k in moments)


def test_plausible_causes_name_the_flag_that_is_out_of_line():
    from tinygrad_lm.train import TrainConfig, plausible_causes
    decay = plausible_causes(TrainConfig(weight_decay=1e30), 2, 1e-3)
    assert len(decay) == 1 and decay[0].startswith("--weight-decay 1e+30 with --lr 0.001")
    rate = plausible_causes(TrainConfig(lr=1e4), 2, 1e4)
    assert len(rate) == 1 and rate[0].startswith("--lr 10000 with --weight-decay 0.1")
    usual = plausible_causes(TrainConfig(lr=5.0, grad_clip=0, warmup_iters=0), 7, 4.5)
    assert usual == ["--lr 5 (the rate at step 7 was 4.5)", "--grad-clip 0 (no clipping)", "--warmup-iters 0 (no warmup)",
                     "--weight-decay 0.1 (1 - lr x weight_decay = 0.5 flips the weights' signs every step)"][:3]
