"""Fault suite: Resource bombs from flags and from a checkpoint's meta.json.

The cases are in tests/reliability_cases.py (class "5."); each one is run here, checked
against its expectations and against its row in docs/reliability.md.
"""
import pytest

from reliability_cases import cases, check_case


@pytest.mark.parametrize("case", cases("5."), ids=lambda c: c.id)
def test_case(case, tmp_path):
    check_case(case, tmp_path)


CONFIGS = [dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, bias=True),
           dict(vocab_size=65, block_size=16, n_layer=3, n_head=4, n_embd=32, bias=False),
           dict(vocab_size=7, block_size=5, n_layer=1, n_head=3, n_embd=6, bias=True)]


@pytest.mark.parametrize("config", CONFIGS)
def test_the_parameter_formula_is_a_built_gpt(config):
    from tinygrad_lm.checkpoint import build_model, model_arrays
    from tinygrad_lm.resources import gpt_file_elements, gpt_parameter_count
    model = build_model({**config, "dropout": 0.0, "gelu_approximate": "tanh"})
    assert gpt_parameter_count(config) == sum(p.numel() for p in model.parameters())
    assert gpt_file_elements(config) == sum(a.size for a in model_arrays(model).values())


def test_the_training_estimate_is_a_floor_close_to_the_measured_peak():
    """tracemalloc's peak over one training step (weights and AdamW moments already there)
    against resources.training_bytes: below it, and not by more than a third."""
    import tracemalloc
    import numpy as np
    from tinygrad_lm.checkpoint import build_model
    from tinygrad_lm.resources import training_bytes
    from tinygrad_lm.tensor import Tensor
    from tinygrad_lm.train import train_step
    config = dict(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64, bias=False)
    model = build_model({**config, "dropout": 0.0, "gelu_approximate": "tanh"})
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    x = Tensor(np.random.default_rng(0).integers(0, 65, (8, 64)))
    train_step(model, opt, x, x)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        train_step(model, opt, x, x)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    P = sum(p.numel() for p in model.parameters())
    measured = 3 * P * 4 + peak  # weights and two moments held before the step, plus the step's peak
    estimate = sum(training_bytes(config, 8).values())
    assert 0.66 * measured < estimate <= measured, (estimate, measured)


def test_the_culprit_is_the_size_whose_reset_helps_most():
    from tinygrad_lm.resources import ResourceError, check_training_fits
    config = dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, bias=False)
    check_training_fits(config, 16, available=2**30)  # the quick-start run fits in 1 GiB
    with pytest.raises(ResourceError, match=r"^--batch-size 100000 needs about .* 1.0 GiB available"):
        check_training_fits(config, 100000, available=2**30)
    with pytest.raises(ResourceError, match=r"^--n-embd 65536 needs about"):
        check_training_fits({**config, "n_embd": 65536}, 16, available=2**30)
