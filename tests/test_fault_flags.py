"""Fault suite: Every numeric flag's range, on every subcommand.

The cases are in tests/reliability_cases.py (class "9."); each one is run here, checked
against its expectations and against its row in docs/reliability.md.
"""
import pytest

from reliability_cases import cases, check_case


@pytest.mark.parametrize("case", cases("9."), ids=lambda c: c.id)
def test_case(case, tmp_path):
    check_case(case, tmp_path)


def test_every_numeric_option_of_every_subcommand_has_a_range_and_no_range_is_stale():
    from tinygrad_lm.cli import build_parser, numeric_options
    from tinygrad_lm.ranges import FLAG_RANGES
    options = numeric_options(build_parser())
    for command, opts in options.items():
        table = FLAG_RANGES.get(command, {})
        assert set(opts) <= set(table), f"{command}: no range for {sorted(set(opts) - set(table))} in ranges.FLAG_RANGES"
        assert set(table) <= set(opts), f"{command}: ranges.FLAG_RANGES names {sorted(set(table) - set(opts))}, no option"
    assert set(FLAG_RANGES) == set(options)


def test_every_default_and_every_preset_is_in_range():
    from tinygrad_lm.cli import build_parser, numeric_options
    from tinygrad_lm.ranges import FLAG_RANGES
    from tinygrad_lm.train_config import PRESETS, TrainConfig
    for command, opts in numeric_options(build_parser()).items():
        for dest, action in opts.items():
            for value in action.default if isinstance(action.default, list) else [action.default]:
                if value is not None:
                    FLAG_RANGES[command][dest].check(dest, value)
    for name in PRESETS:
        TrainConfig(**PRESETS[name]).validate()


def test_help_shows_each_range(capsys):
    from tinygrad_lm.cli import main
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "an integer in [0, 2**64 - 1]" in text and "a finite number in (0, 1]" in text and "0 = off" in text


@pytest.mark.parametrize("field,value,match", [
    ("seed", -1, "--seed must be an integer in [0, 2**64 - 1], got -1"),
    ("lr", float("nan"), "--lr must be a finite number > 0, got nan"),
    ("n_layer", 2.5, "--n-layer must be an integer >= 1, got 2.5"),
    ("dropout", True, "--dropout must be a finite number in [0, 1), got True"),
    ("lr_decay_iters", -5, "--lr-decay-iters must be an integer >= 1, got -5"),
])
def test_train_config_checks_the_same_table_in_code(field, value, match):
    from tinygrad_lm.train_config import TrainConfig
    with pytest.raises(ValueError) as e:
        TrainConfig(**{field: value}).validate()
    assert str(e.value) == match


def test_describe():
    from tinygrad_lm.ranges import Float, Int
    assert Int(1).describe() == "an integer >= 1"
    assert Float(0, 1, hi_open=True).describe() == "a finite number in [0, 1)"
    assert Float(0, lo_open=True).describe() == "a finite number > 0"
    assert Int(1, 48).describe() == "an integer in [1, 48]"
