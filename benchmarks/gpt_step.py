"""Milliseconds per GPT training step on the CPU: fused vs composed ops.

One step = forward + loss + backward + an AdamW update, at nanoGPT's CPU config
(`train_shakespeare_char` shrunk for a laptop: 4 layers, 4 heads, 128 dims, block 64,
batch 12, vocab 65, bias=False, dropout 0). The two setups run interleaved step by step
after a warm-up, so a noisy machine slows both alike; reported are the median and the
minimum over the timed steps (time.perf_counter around each phase).

    python benchmarks/gpt_step.py [--steps 30] [--warmup 3] [--device cpu] [--bias] [--tune-malloc] [--profile]

--tune-malloc stops glibc from handing freed memory back to the OS after every large
temporary (mallopt M_MMAP_THRESHOLD / M_TRIM_THRESHOLD = 1 GiB). Where page faults are
expensive (VMs, sandboxes) each fresh 1 MB temporary otherwise costs ~1 ms of faults.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import tinygrad_lm as tg
from tinygrad_lm.models import GPT, GPTConfig
from tinygrad_lm.nn import functional as F


def tune_malloc() -> bool:
    from tinygrad_lm.backend import tune_host_allocator
    return tune_host_allocator()


def make(args):
    tg.manual_seed(0)
    cfg = GPTConfig(vocab_size=args.vocab, block_size=args.block, n_layer=args.n_layer, n_head=args.n_head,
                    n_embd=args.n_embd, dropout=args.dropout, bias=args.bias)
    model = GPT(cfg).to(args.device)
    opt = model.configure_optimizers(weight_decay=0.1, learning_rate=1e-3, betas=(0.9, 0.99))
    rng = np.random.default_rng(0)
    x = tg.Tensor(rng.integers(0, args.vocab, (args.batch, args.block)), device=args.device)
    y = tg.Tensor(rng.integers(0, args.vocab, (args.batch, args.block)), device=args.device)
    return model, opt, x, y


def sync(device):
    if device != "cpu":
        from tinygrad_lm import backend
        backend.xp_for(backend.canonical_device(device)).cuda.Device().synchronize()


def one_step(model, opt, x, y, device):
    """(forward, backward, update) seconds of one training step."""
    sync(device)
    t0 = time.perf_counter()
    _, loss = model(x, y)
    sync(device)
    t1 = time.perf_counter()
    opt.zero_grad()
    loss.backward()
    sync(device)
    t2 = time.perf_counter()
    opt.step()
    sync(device)
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, float(loss.item())


def run(setups, steps, warmup, device):
    """Steps of every setup interleaved round by round, so a slow patch of a shared machine
    hits all of them alike. Returns per setup the per-step (forward, backward, update, total,
    loss) tuples of the timed steps."""
    times = {name: [] for name in setups}
    for i in range(warmup + steps):
        for name, (use_fused, model, opt, x, y) in setups.items():
            with F.use_fused(use_fused):
                f, b, u, loss = one_step(model, opt, x, y, device)
            if i >= warmup:
                times[name].append((f, b, u, f + b + u, loss))
    return times


def summarize(rows):
    """Median ms of each phase, the minimum step ms, and the last loss."""
    med = [1e3 * statistics.median(r[k] for r in rows) for k in range(4)]
    return med + [1e3 * min(r[3] for r in rows), rows[-1][4]]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--n_layer", type=int, default=4)
    ap.add_argument("--n_head", type=int, default=4)
    ap.add_argument("--n_embd", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=65)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--bias", action="store_true", help="biases in Linear and LayerNorm (nanoGPT's config has none)")
    ap.add_argument("--tune-malloc", action="store_true", help="keep freed memory mapped (see the module docstring)")
    ap.add_argument("--profile", action="store_true", help="cProfile one fused step and print the top functions")
    args = ap.parse_args(argv)
    tuned = tune_malloc() if args.tune_malloc else False

    setups = {impl: (impl == "fused",) + make(args) for impl in ("fused", "composed")}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    res = {name: summarize(rows) for name, rows in run(setups, args.steps, args.warmup, args.device).items()}
    print(f"GPT training step: {args.n_layer} layers, {args.n_head} heads, {args.n_embd} dims, block {args.block}, "
          f"batch {args.batch}, vocab {args.vocab}, bias={args.bias}, dropout={args.dropout}, device {args.device}")
    print(f"median of {args.steps} interleaved steps after {args.warmup} warm-up; numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
          f"malloc tuned: {tuned}, load average before: {load:.2f}")
    print(f"{'ops':<10}{'forward ms':>12}{'backward ms':>13}{'adamw ms':>10}{'step ms':>10}{'min step':>10}{'loss':>9}")
    for impl, (f, b, u, t, mn, loss) in res.items():
        print(f"{impl:<10}{f:>12.2f}{b:>13.2f}{u:>10.2f}{t:>10.2f}{mn:>10.2f}{loss:>9.4f}")
    print(f"fused speed-up (median step): {res['composed'][3] / res['fused'][3]:.2f}x")

    if args.profile:
        import cProfile
        import pstats
        setups = {"fused": (True,) + make(args)}
        run(setups, 0, 2, args.device)
        pr = cProfile.Profile()
        pr.enable()
        run(setups, 10, 0, args.device)
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
