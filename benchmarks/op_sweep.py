"""Op-level sweep: forward and backward time of the ops a GPT uses, over sizes, on numpy,
on cupy where a GPU is usable, and in PyTorch eager on the CPU where it is installed.

A thin script over `tinygrad_lm.bench` (the same code as `tinygrad-lm bench --what ops`):

    python benchmarks/op_sweep.py                        # all ops, sizes 64..2048
    python benchmarks/op_sweep.py --ops matmul attention --device cpu cuda
    python benchmarks/op_sweep.py --quick

Writes ops.csv and ops_speedup.png (GPU speedup against size with the crossover marked,
and ours/PyTorch on the CPU) into --out-dir. (benchmarks/ops.py is a different benchmark:
per-op Python overhead at tiny sizes against bare numpy.)
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tinygrad_lm import bench  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", nargs="+", default=None, choices=bench.OPS)
    ap.add_argument("--device", nargs="+", default=None, help="cpu, cuda, cuda:N (default: cpu, and cuda:0 when usable)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--out-dir", default="bench_out")
    ap.add_argument("--threads", type=int, default=None, help="BLAS threads for numpy and torch.set_num_threads (default: BLAS's own)")
    a = ap.parse_args(argv)
    a.what, a.config = "ops", None
    return bench.run_bench(a)


if __name__ == "__main__":
    sys.exit(main())
