"""The allowed range of every numeric flag of every subcommand, in one table.

`FLAG_RANGES[command][dest]` is a `Range`: the kind of number (int or float) and its bounds.
The CLI (cli.build_parser) checks every numeric option of every subcommand against it before
the subcommand runs, so a value out of range is refused before anything is read or written,
in one line naming the flag and the range, and `--help` prints the range beside each flag. `TrainConfig.validate`
checks the "train" table again, so code that builds a TrainConfig directly (or a run restored
by --resume from a checkpoint's meta.json) gets the same checks. A test fails when a numeric
option of any subcommand has no entry here.

Floats must be finite: `float("nan")` and `float("inf")` parse, and a NaN compares false with
every bound, so they are refused by name rather than slipping through a comparison.

Sizes (layers, widths, batch, tokens) have no fixed upper bound: what fits depends on the
machine, and tinygrad_lm.resources estimates it before anything is allocated.

This module imports only the standard library.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

SEED_MAX = 2**64 - 1  # torch.manual_seed's range; numpy's default_rng takes any non-negative int


@dataclass(frozen=True)
class Range:
    """A closed or half-open interval of ints or finite floats. `lo`/`hi` None: unbounded on
    that side; `lo_open`/`hi_open`: the bound itself is excluded."""
    kind: type
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    note: str = ""  # what a special value means, for --help ("0 = off")

    def describe(self) -> str:
        """'an integer >= 1', 'a finite number in [0, 1)', 'an integer in [0, 2**64 - 1]'."""
        what = "an integer" if self.kind is int else "a finite number"
        lo, hi = _show(self.lo), _show(self.hi)
        if self.lo is not None and self.hi is not None:
            return f"{what} in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{what} {'>' if self.lo_open else '>='} {lo}"
        if self.hi is not None:
            return f"{what} {'<' if self.hi_open else '<='} {hi}"
        return what

    def problem(self, value) -> str | None:
        """None when `value` is in range, else why not (for a message)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "not a number"
        if self.kind is int and not isinstance(value, int):
            return "not an integer"
        if isinstance(value, float) and not math.isfinite(value):
            return "not finite"
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return "too small"
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            return "too large"
        return None

    def check(self, flag: str, value) -> None:
        """Raise ValueError('--flag must be <range>, got <value>') unless value is in range."""
        if self.problem(value) is not None:
            raise ValueError(f"{flag} must be {self.describe()}, got {value!r}")


def _show(x) -> str:
    if x is None:
        return ""
    if x == SEED_MAX:
        return "2**64 - 1"
    return f"{x:g}" if isinstance(x, float) else str(x)


def Int(lo=None, hi=None, note=""):  # noqa: N802 (reads like a type in the table)
    return Range(int, lo, hi, note=note)


def Float(lo=None, hi=None, lo_open=False, hi_open=False, note=""):  # noqa: N802
    return Range(float, lo, hi, lo_open, hi_open, note=note)


POSITIVE = Int(1)
COUNT = Int(0)
SEED = Int(0, SEED_MAX)
PROBABILITY_LT1 = Float(0, 1, hi_open=True)

# The table: subcommand -> option dest -> Range. Every numeric option of every subcommand is
# here (tests/test_fault_flags.py walks the parser to make sure).
FLAG_RANGES: dict[str, dict[str, Range]] = {
    "train": {
        "vocab_size": Int(256, note="BPE only"),
        "n_layer": POSITIVE, "n_head": POSITIVE, "n_embd": POSITIVE, "block_size": POSITIVE, "batch_size": POSITIVE,
        "lr": Float(0, lo_open=True), "min_lr": Float(0),
        "warmup_iters": COUNT, "max_iters": COUNT, "lr_decay_iters": POSITIVE,
        "weight_decay": Float(0), "beta1": PROBABILITY_LT1, "beta2": PROBABILITY_LT1, "dropout": PROBABILITY_LT1,
        "grad_clip": Float(0, note="0 = no clipping"),
        "eval_interval": POSITIVE, "eval_iters": POSITIVE,
        "seed": SEED, "sample_tokens": Int(0, note="0 = no sample at the end"),
        # data parallel (distributed.py): each also divides --batch-size, checked once the ranks are known
        "grad_accum_steps": POSITIVE, "nproc": POSITIVE,
    },
    "sample": {
        "max_new_tokens": POSITIVE, "temperature": Float(0, lo_open=True),
        "top_k": POSITIVE, "top_p": Float(0, 1, lo_open=True),
        "beam_width": POSITIVE, "num_samples": POSITIVE, "seed": SEED,
        "show_probs": Int(0, note="0 = off; at most the vocabulary size"),
    },
    "eval": {"batch_size": POSITIVE, "max_batches": POSITIVE},
    "ngram": {"n": POSITIVE, "k": Float(0)},
    "dpo": {
        "beta": Float(0, lo_open=True), "val_share": Float(0, 1, lo_open=True, hi_open=True),
        "batch_size": POSITIVE, "lr": Float(0, lo_open=True), "warmup_iters": COUNT, "max_iters": COUNT,
        "weight_decay": Float(0), "grad_clip": Float(0, note="0 = no clipping"), "eval_interval": POSITIVE,
        "seed": SEED,
    },
    "gradcheck": {"seed": SEED},
    # the graph of a GPT deeper than GPT-2 XL's 48 layers is no longer readable as a picture
    "graph": {"n_layer": Int(1, 48)},
    "bench": {
        "threads": POSITIVE, "budget": Float(0, lo_open=True, note="seconds"), "warmup": COUNT, "block": POSITIVE,
        "steps": POSITIVE, "profile_steps": POSITIVE, "rounds": POSITIVE,
        "nproc": Int(2, note="ranks for --what allreduce"),
    },
}


def flag_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")
