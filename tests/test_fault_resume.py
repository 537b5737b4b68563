"""Fault suite: --resume misuse.

The cases are in tests/reliability_cases.py (class "2."); each one is run here, checked
against its expectations and against its row in docs/reliability.md.
"""
import pytest

from reliability_cases import cases, check_case


@pytest.mark.parametrize("case", cases("2."), ids=lambda c: c.id)
def test_case(case, tmp_path):
    check_case(case, tmp_path)


def test_the_flags_resume_may_change_are_documented_in_the_readme():
    import os
    from tinygrad_lm.ranges import flag_name
    from tinygrad_lm.train_config import RESUME_MAY_CHANGE
    readme = open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md"), encoding="utf-8").read()
    for k in RESUME_MAY_CHANGE:
        assert f"`{flag_name(k)}`" in readme, k
    assert "train.lock" in readme


def test_resume_config_takes_the_saved_run_and_names_each_allowed_change():
    from dataclasses import asdict
    from tinygrad_lm.train_config import TrainConfig, config_from_args, resume_config
    saved = asdict(TrainConfig(batch_size=8, lr=3e-3, lr_decay_iters=None, max_iters=100, data="/x/data.txt"))
    model = {"vocab_size": 20, "n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 8, "dropout": 0.0,
             "bias": False, "gelu_approximate": "tanh"}
    cfg = config_from_args({"max_iters": 200, "resume": True}, None)
    run, notes = resume_config(cfg, saved, model, "float64")
    assert (run.batch_size, run.lr, run.max_iters, run.n_layer, run.dtype, run.data) == (8, 3e-3, 200, 2, "float64",
                                                                                         "/x/data.txt")
    assert run.lr_decay_iters == 100  # the run's schedule, fixed before --max-iters changed
    assert notes == ["--resume: --max-iters 200 (the run had 100): where the run stops (the learning-rate schedule "
                     "stays the run's)"]
    with pytest.raises(ValueError, match="--lr 0.001 differs from the checkpoint's 0.003"):
        resume_config(config_from_args({"lr": 1e-3, "resume": True}, None), saved, model, "float32")
