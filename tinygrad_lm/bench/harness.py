"""The bench's shared machinery: settings, device synchronization, fresh child processes,
statistics, CSV files and text tables.

Why the timing protocol looks the way it does (settle steps at each hand-over, a child
process for the matmul peak and for `ours_own_process`): "How it is measured" in
benchmarks/RESULTS.md.
"""
from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys

from .. import backend

# the folder holding the tinygrad_lm package, put first on a child's PYTHONPATH so the child
# imports this very tree
_PKG_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Settings:
    """How long and how often the bench times things. `quick`: a smoke run (small sizes, few
    repetitions) whose numbers are not measurements. `budget`, `warmup`, `block` and `steps`
    override the model step's defaults (seconds of timed steps per config, warm-up steps per
    implementation, timed steps per turn, and a fixed number of timed steps per
    implementation instead of as many as the budget allows; a turn is then at most `steps`
    long, and the steps are rounded up to whole turns)."""

    def __init__(self, quick: bool = False, budget: float | None = None, warmup: int | None = None,
                 block: int | None = None, steps: int | None = None):
        self.quick = quick
        self.op_budget_s = 0.03 if quick else 0.6     # timing budget per (op, size, impl, device)
        self.op_min_reps, self.op_max_reps = (2, 3) if quick else (3, 30)
        self.op_warmup = 1 if quick else 2
        self.op_rounds = 1 if quick else 3           # turns per implementation at each (op, size)
        self.peak_n, self.peak_reps = (512, 3) if quick else (2048, 7)
        self.model_warmup = 2 if quick else 5
        self.model_budget_s = 3.0 if quick else 90.0  # timed steps of one config, all impls together
        self.model_min_steps, self.model_max_steps = (3, 5) if quick else (30, 200)
        self.model_block = 1 if quick else 5          # timed steps per turn of one implementation
        self.ours_alone = not quick                   # also time ours in a child process without torch
        self.model_settle = 1                         # untimed steps at the start of each turn ...
        self.settle_s = 0.0 if quick else 0.15        # ... and of each op case, for at least this long
        # (OpenBLAS's worker keeps spinning after its last call; see benchmarks/RESULTS.md)
        if budget is not None:
            self.model_budget_s = float(budget)
        if warmup is not None:
            self.model_warmup = int(warmup)
        if block is not None:
            self.model_block = int(block)
        if steps is not None:
            self.model_min_steps = self.model_max_steps = int(steps)
            self.model_block = min(self.model_block, int(steps))


def tune_allocator() -> bool:
    """The host allocator tuning `tinygrad-lm` applies (backend.tune_host_allocator), unless
    TINYGRAD_LM_NO_MALLOC_TUNE=1. Every bench entry point and child process calls it first,
    so what is timed is what `tinygrad-lm train` runs. Returns whether it applied."""
    if os.environ.get("TINYGRAD_LM_NO_MALLOC_TUNE") == "1":
        return False
    return backend.tune_host_allocator()


# ================================================================ devices
def sync(device: str) -> None:
    """Wait for the device's queued work (nothing to wait for on the CPU)."""
    if device != "cpu":
        backend.xp_for(device).cuda.Device(int(device.split(":")[1])).synchronize()


def torch_sync(tdev: str, torch) -> None:
    if tdev.startswith("cuda"):
        torch.cuda.synchronize()


# ================================================================ fresh processes
def run_in_child(func: str, *, blas_threads: int, timeout: float = 1800, env: dict | None = None, **kwargs):
    """`func` ("module:function") called with `kwargs` in a fresh interpreter: no torch, and
    no allocator state from this process. The child tunes the allocator as the bench does and
    uses `blas_threads` BLAS threads; `env` adds environment variables. Returns the function's
    result (JSON round trip); raises RuntimeError with the child's last error line when it fails."""
    code = "from tinygrad_lm.bench.harness import _child_main; _child_main()"
    env = dict(os.environ, **(env or {}), OPENBLAS_NUM_THREADS=str(blas_threads))
    env["PYTHONPATH"] = _PKG_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", code, func, json.dumps(kwargs)], capture_output=True, text=True,
                       env=env, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _child_main() -> None:
    import importlib
    module, name = sys.argv[1].split(":")
    kwargs = json.loads(sys.argv[2])
    tune_allocator()
    result = getattr(importlib.import_module(module), name)(**kwargs)
    print(json.dumps(result))


# ================================================================ statistics and output
def quantiles(xs) -> tuple[float, float]:
    """(first quartile, third quartile), inclusive method."""
    s = sorted(xs)
    if len(s) < 2:
        return s[0], s[0]
    q = statistics.quantiles(s, n=4, method="inclusive")
    return q[0], q[2]


def progress(total, desc, quick):
    """A tqdm bar on stderr (None without tqdm; hidden in quick runs and when not a terminal)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="run", file=sys.stderr, dynamic_ncols=True, leave=False,
                disable=None if not quick else True)


def write_csv(path, fields, rows) -> None:
    """Rows (dicts) as CSV with these columns, floats to 6 significant digits, written with
    fileio.atomic_write: a reader never sees half a file."""
    import io
    from ..fileio import atomic_write
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt_csv(r.get(k, "")) for k in fields})
    atomic_write(path, buf.getvalue())


def _fmt_csv(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def table(headers, rows, align=None) -> str:
    """A plain-text table: a header line, a rule, one line per row; `align` per column
    ('<' or '>'; default: the first left, the rest right)."""
    cells = [[str(c) for c in r] for r in rows]
    w = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    align = align or ["<"] + [">"] * (len(headers) - 1)
    line = lambda r: "  ".join(f"{c:{a}{n}}" for c, a, n in zip(r, align, w))  # noqa: E731
    return "\n".join([line(headers), "  ".join("-" * n for n in w)] + [line(r) for r in cells])
