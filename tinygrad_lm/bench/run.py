"""The entry points of `tinygrad-lm bench`, one per mode, keyword arguments only:

* `run_bench`: the op sweep and/or the model step against PyTorch (CSV, tables, plot), or
  the data-parallel all-reduce against the step;
* `run_profile`: where our training step's time goes;
* `run_overhead`: per-op Python overhead against bare numpy and PyTorch.

Each one checks its arguments first (one error naming the flag and what it allows), then
tunes the host allocator as `tinygrad-lm train` does, holds numpy's BLAS at `threads` when
given, and starts its output with a line describing the machine.
"""
from __future__ import annotations

import contextlib
import os

from .. import backend
from .configs import MODEL_CONFIGS
from .harness import Settings, tune_allocator, write_csv
from .machine import limit_blas_threads, load_torch, loadavg, machine_info, machine_line, measure_matmul_peak
from .model_step import MODEL_FIELDS, STEP_FIELDS, format_model, run_model
from .op_sweep import OP_FIELDS, OPS, format_ops, op_summary, run_ops
from .overhead import OVERHEAD_FIELDS, OVERHEAD_OPS, SIZES, overhead_table, measure_overhead, time_table
from .plots import plot_ops
from .step_profile import format_profile, profile_model_step, profile_torch_step

QUICK_NOTE = "   [--quick: a smoke run, not a measurement]"


# ================================================================ argument checks
def _checked(dest, value):
    """`value` (None: not given) within its range from ranges.FLAG_RANGES["bench"], the table
    the CLI checks too, so a caller of these functions gets the CLI's message."""
    from ..ranges import FLAG_RANGES, flag_name
    if value is not None:
        FLAG_RANGES["bench"][dest].check(flag_name(dest), value)
    return value


def _choose(flag, given, allowed):
    bad = [x for x in given or () if x not in allowed]
    if bad:
        raise ValueError(f"{flag}: unknown {'value' if len(bad) == 1 else 'values'} {', '.join(bad)}; "
                         f"choose from {', '.join(allowed)}")


def _devices(devices, log):
    """Explicit devices must work (DeviceError otherwise); by default cpu, plus cuda:0 when usable."""
    if devices:
        return list(dict.fromkeys(backend.canonical_device(d) for d in devices))
    found = ["cpu"] + (["cuda:0"] if backend.cuda_available() else [])
    if len(found) == 1:
        log("GPU: none usable (no cupy or no NVIDIA GPU): CPU only")
    return found


def _configs(configs, default):
    configs = configs or default
    bad = [c for c in configs if c not in MODEL_CONFIGS]
    if bad:
        raise ValueError(f"--config: unknown config(s) {', '.join(bad)}; choose from {', '.join(MODEL_CONFIGS)}")
    return configs


@contextlib.contextmanager
def _blas_threads(threads):
    limiter = limit_blas_threads(threads) if threads else None
    try:
        yield
    finally:
        if limiter is not None:
            limiter.restore_original_limits()


# ================================================================ ops and model
def run_bench(*, what: str = "all", quick: bool = False, configs=None, devices=None, out_dir: str = "bench_out",
              no_torch: bool = False, ops=None, threads: int | None = None, budget: float | None = None,
              warmup: int | None = None, block: int | None = None, steps: int | None = None,
              composed: bool = False, nproc: int | None = None, fresh: bool = False, rounds: int | None = None,
              ablate: bool = False, log=print) -> int:
    """`what`: "ops" (the op sweep), "model" (the training step), "all" (both) or
    "allreduce" (the data-parallel all-reduce against the step over `nproc` ranks, default 2,
    on the one device of `devices`: allreduce.py). `configs`: names from MODEL_CONFIGS
    (default: cpu, plus gpu when a GPU is used); `devices`: cpu, cuda, cuda:N (default: cpu,
    plus cuda:0 when usable); `ops`: a subset of OPS; `threads`: numpy's BLAS threads and
    torch.set_num_threads; `budget` (seconds of timed steps per config) or `steps` (timed
    steps per implementation), `warmup` (steps), `block` (timed steps per turn): the model
    step's timing; `composed`: also time ours with the composed ops; `fresh`: first ours and
    PyTorch (SDPA) each in fresh processes, alternating, `rounds` rounds (default 5; fresh.py),
    with `ablate` also ours with each CPU change undone. Writes ops.csv, ops_speedup.png, model.csv and model_steps.csv (or
    allreduce.csv) into `out_dir`. Returns the exit status."""
    if what not in ("ops", "model", "all", "allreduce"):
        raise ValueError(f"--what must be one of ops, model, all, allreduce, got {what!r}")
    if what == "allreduce":
        from .allreduce import run_allreduce
        if devices and len(devices) > 1:
            raise ValueError(f"--device: --what allreduce runs on one device, got {' '.join(devices)}")
        tune_allocator()
        return run_allreduce(configs=configs, nproc=2 if nproc is None else nproc, quick=quick, out_dir=out_dir,
                             device=(devices or ["cpu"])[0], log=log)
    _choose("--ops", ops, OPS)
    threads, warmup, block = _checked("threads", threads), _checked("warmup", warmup), _checked("block", block)
    budget, steps = _checked("budget", budget), _checked("steps", steps)
    if steps is not None and budget is not None:
        raise ValueError("--steps and --budget: give one of them (a fixed number of timed steps, or seconds)")
    devices = _devices(devices, log)
    have_gpu = any(d != "cpu" for d in devices)
    configs = _configs(configs, ["cpu", "gpu"] if have_gpu else ["cpu"])
    rounds = _checked("rounds", rounds)
    if (fresh or ablate or rounds) and what not in ("model", "all"):
        raise ValueError("--fresh, --rounds and --ablate: only with --what model")
    if (ablate or rounds) and not fresh:
        raise ValueError("--rounds and --ablate (with --what model): only with --fresh")
    s = Settings(quick, budget=budget, warmup=warmup, block=block, steps=steps)
    tune_allocator()
    with _blas_threads(threads):
        torch, torch_why = load_torch(no_torch, threads)
        log(machine_line(machine_info(torch), torch_why) + (QUICK_NOTE if quick else ""))
        os.makedirs(out_dir, exist_ok=True)
        if fresh:
            _fresh(s, configs, devices, torch, torch_why, rounds or (2 if quick else 5), ablate, steps, out_dir, log)
        if what in ("model", "all"):
            _model(s, configs, devices, torch, torch_why, composed, out_dir, log)
        if what in ("ops", "all"):
            _ops(s, devices, have_gpu, torch, torch_why, ops, out_dir, log)
    log(f"load average at the end: {loadavg()} (other processes share these cores: compare the ratios, not the absolutes)")
    return 0


def _model(s, configs, devices, torch, torch_why, composed, out_dir, log):
    peaks = {d: measure_matmul_peak(d, s.peak_n, s.peak_reps) for d in devices}
    mrows, steps, notes_by = [], [], {}
    for d in devices:
        for c in configs:
            if d == "cpu" and c == "gpu" and not s.quick:
                log("note: the gpu config on the CPU takes seconds per step; the step count follows the time budget")
            r, st, notes = run_model(s, c, d, torch, torch_why, peaks[d], composed=composed, log=log)
            mrows += r
            steps += st
            notes_by[(c, d)] = notes
    for d in devices:  # the peak again after the run: the best of the two is the peak (the machine is shared)
        again = measure_matmul_peak(d, s.peak_n, s.peak_reps)
        if again["gflops_peak"] > peaks[d]["gflops_peak"]:
            peaks[d] = again
    for r in mrows:
        if r["impl"] in ("torch", "torch_sdpa"):  # device "cpu (torch)" or "cuda (torch)"
            dev = "cuda:0" if r["device"].startswith("cuda") else "cpu"
        else:
            dev = r["device"]
        pk = peaks.get(dev, peaks.get("cpu"))["gflops_peak"]
        r["peak_gflops"], r["frac_of_peak"] = pk, r["gflops"] / pk
    path = os.path.join(out_dir, "model.csv")
    write_csv(path, MODEL_FIELDS, mrows)
    write_csv(os.path.join(out_dir, "model_steps.csv"), STEP_FIELDS, steps)
    log("\n== model: one training step (forward, backward, clip_grad_norm_(1.0), AdamW, zero_grad), float32, "
        f"ours and PyTorch alternating in turns of untimed steps (>= {s.model_settle}, >= {s.settle_s} s) "
        f"+ {s.model_block} timed step(s), rotating "
        f"order, after {s.model_warmup} warm-up steps each")
    log(format_model(mrows, notes_by, peaks))
    log(f"wrote {path} and {os.path.join(out_dir, 'model_steps.csv')}")


def _fresh(s, configs, devices, torch, torch_why, rounds, ablate, steps, out_dir, log):
    from .fresh import FRESH_FIELDS, FRESH_ROUND_FIELDS, format_fresh, run_fresh
    names = ["ours"] + (["ours_untiled", "ours_2threads"] if ablate else [])
    if torch is not None:
        names.append("torch_sdpa")
    else:
        log(f"--fresh: no PyTorch column ({torch_why})")
    rows, per_round = [], []
    for d in devices:
        peak = measure_matmul_peak(d, s.peak_n, s.peak_reps)
        here = []
        for c in configs:
            r, pr = run_fresh(c, d, rounds, s.model_warmup, steps or (3 if s.quick else 10), peak["gflops_peak"],
                              names, log=log)
            here += r
            per_round += [dict(x, device=d) for x in pr]
        log(f"\n== model, fresh processes ({d}): one training step (forward, backward, clip_grad_norm_(1.0), "
            "AdamW, zero_grad), float32; ours and PyTorch eager (F.scaled_dot_product_attention) each in a new "
            "process per round, alternating")
        log(format_fresh(here, peak))
        rows += [dict(x, device=d) for x in here]
    write_csv(os.path.join(out_dir, "model_fresh.csv"), FRESH_FIELDS, rows)
    write_csv(os.path.join(out_dir, "model_fresh_rounds.csv"), FRESH_ROUND_FIELDS, per_round)
    log(f"wrote {os.path.join(out_dir, 'model_fresh.csv')} and {os.path.join(out_dir, 'model_fresh_rounds.csv')}")
    log("(the in-process comparison, interleaved in one process, follows as the second table)")


def _ops(s, devices, have_gpu, torch, torch_why, ops, out_dir, log):
    rows = run_ops(s, devices, torch, torch_why, ops=ops, log=log)
    path = os.path.join(out_dir, "ops.csv")
    write_csv(path, OP_FIELDS, rows)
    summ, cross = op_summary(rows)
    log("\n== ops: median ms per call (forward and backward timed separately; adamw = one optimizer step)")
    log(format_ops(summ, cross, have_gpu, torch_why))
    png = plot_ops(summ, cross, os.path.join(out_dir, "ops_speedup.png"), have_gpu, torch_why, log=log)
    log(f"wrote {path}" + (f" and {png}" if png else ""))


# ================================================================ profile
def run_profile(*, configs=None, devices=None, steps: int | None = None, cprofile: bool = False,
                torch_profile: bool = False, threads: int | None = None, quick: bool = False, log=print) -> int:
    """Profile our training step for each config on each device (default: the cpu config on
    the CPU) over `steps` steps (default 30; 3 with `quick`): phases, time per op, and with
    `cprofile` the cProfile listings; with `torch_profile`, torch.profiler's table of
    PyTorch's step (on the CPU), run after ours so ours runs in a process without torch."""
    steps, threads = _checked("profile_steps", steps), _checked("threads", threads)
    devices = _devices(devices or ["cpu"], log)
    configs = _configs(configs, ["cpu"])
    steps = steps or (3 if quick else 30)
    warmup = 1 if quick else 5
    tune_allocator()
    with _blas_threads(threads):
        log(machine_line(machine_info(), "torch not imported (ours is profiled first, in a process without it)")
            + (QUICK_NOTE if quick else ""))
        for dev in devices:
            for cfg in configs:
                p = profile_model_step(cfg, dev, steps=steps, warmup=warmup)
                log(format_profile(p))
                if cprofile:
                    log("\ncProfile, by own time:\n" + p["cprofile_tottime"])
                    log("cProfile, by cumulative time:\n" + p["cprofile_cumulative"])
                if torch_profile and dev == "cpu":
                    log(f"\nPyTorch eager ({cfg} config, explicit attention), torch.profiler, {steps} steps:\n"
                        + profile_torch_step(cfg, steps=steps, warmup=warmup))
    return 0


# ================================================================ per-op overhead
def run_overhead(*, ops=None, sizes=None, clock: str | None = None, rounds: int | None = None, quick: bool = False,
                 threads: int | None = None, no_torch: bool = False, out_dir: str = "bench_out", log=print) -> int:
    """Per-op forward + backward time of ours, bare numpy and PyTorch (one intra-op thread
    unless `threads`) for `ops` (default: all of OVERHEAD_OPS) at `sizes` (tiny, small,
    medium; default all three, tiny and small with `quick`), medians of `rounds` rounds
    (default 7; 3 with `quick`) timed on the `clock` ("wall", the default, or "process").
    Prints the overhead table and the table by size; writes overhead.csv into `out_dir`."""
    _choose("--ops", ops, list(OVERHEAD_OPS))
    _choose("--sizes", sizes, list(SIZES))
    _choose("--clock", [clock] if clock else None, ["wall", "process"])
    rounds = _checked("rounds", rounds) or (3 if quick else 7)
    threads = _checked("threads", threads)
    sizes = tuple(sizes or (("tiny", "small") if quick else SIZES))
    clock = clock or "wall"
    min_time = 0.002 if quick else 0.02
    tune_allocator()
    with _blas_threads(threads):
        # torch with one intra-op thread by default: numpy's elementwise ops use one core too,
        # and OpenMP threads spinning on a busy machine would swamp the timings
        torch, torch_why = load_torch(no_torch, threads or 1)
        log(machine_line(machine_info(torch), torch_why) + (QUICK_NOTE if quick else ""))
        log(f"clock: {clock}, median of {rounds} rounds of ~{min_time * 1000:.0f} ms")
        rows = measure_overhead(ops, sizes, min_time, rounds, clock, torch)
    if "tiny" in sizes:
        log("\nPer-op overhead (tiny, 1 element): forward + backward\n")
        log(overhead_table(rows))
    log("\nForward + backward time per size\n")
    log(time_table(rows))
    path = os.path.join(out_dir, "overhead.csv")
    write_csv(path, OVERHEAD_FIELDS, rows)
    log(f"\nwrote {path}; load average at the end: {loadavg()}")
    return 0
