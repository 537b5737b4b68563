"""Model-level benchmark: one GPT training step, ours against PyTorch eager, interleaved.

A thin script over `tinygrad_lm.bench` (the same code as `tinygrad-lm bench --what model`):

    python benchmarks/model_step.py                      # cpu config, ours vs torch, ~90 s
    python benchmarks/model_step.py --config cpu gpu --device cuda
    python benchmarks/model_step.py --profile            # where our step's time goes, per op
    python benchmarks/model_step.py --quick              # smoke run

Writes model.csv (one row per config x implementation) and model_steps.csv (every timed
step) into --out-dir. The FLOP formula and what each column means are printed with the
table and explained in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tinygrad_lm import bench  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", nargs="+", default=None, choices=list(bench.MODEL_CONFIGS))
    ap.add_argument("--device", nargs="+", default=None, help="cpu, cuda, cuda:N (default: cpu, and cuda:0 when usable)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--out-dir", default="bench_out")
    ap.add_argument("--budget", type=float, default=None, help="seconds of timed steps per config, all implementations (default 90)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps per implementation (default 5)")
    ap.add_argument("--threads", type=int, default=None, help="BLAS threads for numpy and torch.set_num_threads (default: BLAS's own)")
    ap.add_argument("--block", type=int, default=None, help="timed steps per turn of each implementation (default 5; "
                    "each turn starts with one untimed step)")
    ap.add_argument("--profile", action="store_true", help="instead: profile our step (phases, per-op time, cProfile)")
    ap.add_argument("--profile-steps", type=int, default=30)
    ap.add_argument("--cprofile", action="store_true", help="with --profile: also print the cProfile listings")
    ap.add_argument("--torch-profile", action="store_true", help="with --profile: also torch.profiler's table of PyTorch's step")
    a = ap.parse_args(argv)
    if a.profile:
        for dev in a.device or ["cpu"]:
            for cfg in a.config or ["cpu"]:
                p = bench.profile_model_step(cfg, dev, steps=a.profile_steps)
                print(bench.format_profile(p))
                if a.cprofile:
                    print("\ncProfile, by own time:\n" + p["cprofile_tottime"])
                    print("cProfile, by cumulative time:\n" + p["cprofile_cumulative"])
                if a.torch_profile and dev == "cpu":
                    print(f"\nPyTorch eager ({cfg} config, explicit attention), torch.profiler, "
                          f"{a.profile_steps} steps:\n" + bench.profile_torch_step(cfg, steps=a.profile_steps))
        return 0
    a.what = "model"
    return bench.run_bench(a)


if __name__ == "__main__":
    sys.exit(main())
