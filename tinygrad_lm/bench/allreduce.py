"""The data-parallel all-reduce against the step (`tinygrad-lm bench --what allreduce`).

For each config (the training preset's shape and global batch), `nproc` MPI ranks time the
data-parallel training step (distributed.DataParallel), the gradient all-reduce inside it
(pack + all-reduce + unpack), the same all-reduce alone after a barrier, and a 1-element
all-reduce (what a separate stop flag per step would cost). Each figure is the median over
steps, and the slowest rank's median is reported, since it decides the step. Then the
launching process times the one-process step on the same global batch, with BLAS's default
threads and with one, and the speedup is against the faster of the two.

Bus bandwidth follows the ring all-reduce's traffic: each rank sends and receives
2 (N - 1) / N of the gradient's bytes, so bus GB/s = 2 (N - 1) / N x bytes / seconds alone.

How it runs: outside MPI, `run_allreduce` re-launches `tinygrad-lm bench --what allreduce`
as `nproc` ranks through mpiexec (distributed.launch); inside, each rank finds itself through
distributed.init(), runs its part, and rank 0 leaves the rows in `allreduce_ranks.json` in
`out_dir`, which the launcher reads, completes and writes as `allreduce.csv`. The measured
figures and what they mean: docs/distributed.md.
"""
from __future__ import annotations

import contextlib
import json
import os
import time

import numpy as np

from .. import Tensor, backend, manual_seed
from .harness import sync, write_csv

# steps timed per config: (warm-up, timed); quick: a smoke run, not a measurement
STEPS = {"cpu": (3, 20), "gpu": (1, 2)}
QUICK_STEPS = {"cpu": (1, 3), "gpu": (1, 1)}

ALLREDUCE_FIELDS = ["config", "device", "ranks", "blas_threads_per_rank", "params", "gradient_mb", "steps", "step_ms",
                    "allreduce_in_step_ms", "allreduce_share", "allreduce_alone_ms", "bus_gb_s", "flag_us",
                    "one_process_step_ms", "one_process_1thread_step_ms", "speedup"]


def build(config: str, device: str):
    """(model, AdamW, four (x, y) batches) for a config: the preset's shape, global batch,
    dropout, weight decay, lr and betas; vocabulary 65; seed 1337."""
    from ..checkpoint import build_model
    from ..train_config import PRESETS
    p = PRESETS[config]
    manual_seed(1337)
    model = build_model(dict(vocab_size=65, n_layer=p["n_layer"], n_head=p["n_head"], n_embd=p["n_embd"],
                             block_size=p["block_size"], dropout=p["dropout"], bias=False, gelu_approximate="tanh"),
                        "cpu", "float32")
    if device != "cpu":
        model.to(device)
    model.train()
    opt = model.configure_optimizers(p["weight_decay"], p["lr"], (p["beta1"] if "beta1" in p else 0.9, p["beta2"]))
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 65, (p["batch_size"], p["block_size"])),
                rng.integers(0, 65, (p["batch_size"], p["block_size"]))) for _ in range(4)]
    return model, opt, batches


def time_ranks(dist, configs, quick: bool, device: str) -> list[dict]:
    """On every rank: the data-parallel step of each config (the global batch of its preset),
    its all-reduce, the all-reduce alone, and a 1-element all-reduce (a separate stop flag).
    Returns one row per config with the slowest rank's medians (the same on every rank)."""
    from ..distributed import DataParallel
    out = []
    device = backend.canonical_device(dist.device_for(device))
    for config in configs:
        warm, steps = (QUICK_STEPS if quick else STEPS)[config]
        model, opt, batches = build(config, device)
        dp = DataParallel(model, opt, dist, 1, 1.0)
        step_s, ar_s = [], []
        for i in range(warm + steps):
            x, y = batches[i % len(batches)]
            t0 = time.perf_counter()
            dp.step(x, y)
            if i >= warm:
                step_s.append(time.perf_counter() - t0)
                ar_s.append(dp.allreduce_s)
        flat = dp.flat
        alone, flag = [], []
        one = backend.xp_for(device).zeros(1, dtype=flat.dtype)
        for _ in range(10 if quick else 30):
            dist.comm.Barrier()
            sync(device)
            t0 = time.perf_counter()
            dist.allreduce_(flat)
            sync(device)
            alone.append(time.perf_counter() - t0)
        for _ in range(50 if quick else 500):
            dist.comm.Barrier()
            t0 = time.perf_counter()
            dist.allreduce_(one)
            sync(device)
            flag.append(time.perf_counter() - t0)
        # the slowest rank's median decides the step
        med = lambda xs: float(np.median(xs))  # noqa: E731
        mine = dict(step_ms=1e3 * med(step_s), allreduce_in_step_ms=1e3 * med(ar_s), allreduce_alone_ms=1e3 * med(alone),
                    flag_us=1e6 * med(flag))
        every = dist.allgather(mine)
        row = {k: max(r[k] for r in every) for k in mine}
        row.update(config=config, ranks=dist.world_size, params=dp.n, gradient_mb=dp.n * flat.itemsize / 1e6,
                   device=device, blas_threads_per_rank=dist.blas_threads, steps=steps)
        out.append(row)
        del model, opt, dp, flat
    return out


def time_one_process(config: str, quick: bool, device: str, threads: int | None = None) -> float:
    """Median ms of the one-process step (train.train_step) on the same global batch, with
    this process's default BLAS threads, or `threads` (through threadpoolctl)."""
    from ..train import train_step
    warm, steps = (QUICK_STEPS if quick else STEPS)[config]
    model, opt, batches = build(config, device)
    times = []
    limit = contextlib.nullcontext()
    if threads is not None:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(threads)
    with limit:
        for i in range(warm + steps):
            x, y = batches[i % len(batches)]
            t0 = time.perf_counter()
            float(train_step(model, opt, Tensor(x, device=device), Tensor(y, device=device), 1.0).data)
            if i >= warm:
                times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def run_allreduce(*, configs=None, nproc: int = 2, quick: bool = False, out_dir: str = "bench_out",
                  device: str = "cpu", log=print) -> int:
    """The all-reduce of each config (default: cpu and gpu) against its step over `nproc`
    ranks on `device` (each rank its own GPU for cuda). Outside MPI: checks the arguments,
    runs the ranks through mpiexec, times the one-process step, prints the table and writes
    allreduce.csv into `out_dir`; returns the exit status. Under mpiexec: the ranks' part."""
    from .. import distributed
    from ..train_config import PRESETS
    configs = list(configs or ["cpu", "gpu"])
    bad = [c for c in configs if c not in PRESETS or c not in STEPS]
    if bad:
        raise ValueError(f"--config: unknown config(s) {', '.join(bad)} for --what allreduce; choose from "
                         f"{', '.join(STEPS)}")
    out_dir = os.path.abspath(out_dir)
    ranks_json = os.path.join(out_dir, "allreduce_ranks.json")
    dist = distributed.init()
    if dist is not None:  # a rank
        rows = time_ranks(dist, configs, quick, device)
        if dist.is_main:
            from ..fileio import atomic_write
            atomic_write(ranks_json, json.dumps(rows))
        return 0
    from ..ranges import FLAG_RANGES
    FLAG_RANGES["bench"]["nproc"].check("--nproc", nproc)
    for c in configs:
        distributed.check_batch(PRESETS[c]["batch_size"], nproc, 1)
    os.makedirs(out_dir, exist_ok=True)
    if os.path.exists(ranks_json):
        os.remove(ranks_json)
    log(f"all-reduce benchmark: {nproc} ranks through mpiexec, configs {', '.join(configs)} on {device}; load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}" + ("   [--quick: a smoke run, not a measurement]" if quick else ""))
    argv = ["bench", "--what", "allreduce", "--config", *configs, "--device", device, "--out-dir", out_dir]
    rc = distributed.launch(nproc, argv + (["--quick"] if quick else []))
    if rc != 0:
        return rc
    with open(ranks_json) as f:
        rows = json.load(f)
    os.remove(ranks_json)
    for r in rows:
        dev = backend.canonical_device(device)
        r["one_process_step_ms"] = time_one_process(r["config"], quick, dev)
        r["one_process_1thread_step_ms"] = time_one_process(r["config"], quick, dev, threads=1)
        n = r["ranks"]
        r["allreduce_share"] = r["allreduce_in_step_ms"] / r["step_ms"]
        r["bus_gb_s"] = 2 * (n - 1) / n * r["gradient_mb"] / 1e3 / (r["allreduce_alone_ms"] / 1e3)
        # against the faster of the one-process runs (all cpus' threads, or one)
        r["speedup"] = min(r["one_process_step_ms"], r["one_process_1thread_step_ms"]) / r["step_ms"]
    path = os.path.join(out_dir, "allreduce.csv")
    write_csv(path, ALLREDUCE_FIELDS, rows)
    log(format_allreduce(rows))
    log(f"(medians; the ranks' slowest; wrote {path}; load average now {', '.join(f'{x:.2f}' for x in os.getloadavg())})")
    return 0


def format_allreduce(rows) -> str:
    """The markdown table docs/distributed.md shows."""
    lines = ["| config | ranks | gradient | step ms | all-reduce in step ms | share | all-reduce alone ms | bus GB/s "
             "| 1-element all-reduce us | 1 process step ms (default threads / 1) | speedup |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['config']} ({r['device']}) | {r['ranks']} | {r['params']:,} floats, {r['gradient_mb']:.1f} MB "
                     f"| {r['step_ms']:.1f} | {r['allreduce_in_step_ms']:.2f} | {100 * r['allreduce_share']:.1f}% "
                     f"| {r['allreduce_alone_ms']:.2f} | {r['bus_gb_s']:.2f} | {r['flag_us']:.1f} "
                     f"| {r['one_process_step_ms']:.1f} / {r['one_process_1thread_step_ms']:.1f} | {r['speedup']:.2f} |")
    return "\n".join(lines)
