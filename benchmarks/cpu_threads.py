"""Does splitting an elementwise pass over two Python threads pay on this machine?

numpy releases the GIL inside ufuncs, so `ops/threads.py: run_parts` can run row blocks of one pass
on several threads at once. This times, at the model step's shapes, three passes the issue
named (GELU's forward, a LayerNorm-style row normalisation, an AdamW-style update over one
flat parameter buffer) on one thread and on two, in alternating rounds, and prints the
medians and the ratio two / one. The results are the same bit for bit (checked here too).

    python benchmarks/cpu_threads.py [--rounds 15]
"""
import argparse
import statistics
import time

import numpy as np

from tinygrad_lm import backend
from tinygrad_lm.ops import threads

C, K = float(np.sqrt(2 / np.pi)), 0.044715
_m = None   # AdamW's first moment (the others are the pass's own buffers)


def gelu(x, s, out, lo, hi):
    x, s, out = x[lo:hi], s[lo:hi], out[lo:hi]
    np.multiply(x, x, out=s)
    s *= C * K
    s += C
    s *= x
    np.tanh(s, out=s)
    s *= 0.5
    s += 0.5
    np.multiply(x, s, out=out)


def layer_norm(x, s, out, lo, hi):
    x, out = x[lo:hi], out[lo:hi]
    d = x.shape[1]
    np.subtract(x, (x @ np.full(d, 1.0 / d, x.dtype))[:, None], out=out)
    rstd = 1.0 / np.sqrt(np.einsum("ij,ij->i", out, out) / d + 1e-5)
    out *= rstd[:, None]


def adamw(x, s, out, lo, hi):
    p, g, v, m = out[lo:hi], x[lo:hi], s[lo:hi], _m[lo:hi]
    p *= 1 - 1e-3 * 0.1
    m *= 0.9
    m += 0.1 * g
    v *= 0.99
    v += 0.01 * g * g
    p -= 1e-3 * m / (np.sqrt(v) + 1e-8)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    a = ap.parse_args()
    global _m
    backend.tune_host_allocator()
    rng = np.random.default_rng(0)
    cases = [("gelu", gelu, (16 * 128, 4 * 192)), ("gelu", gelu, (8 * 256, 4 * 384)),
             ("layer_norm", layer_norm, (16 * 128, 192)), ("layer_norm", layer_norm, (8 * 256, 384)),
             ("adamw", adamw, (10_700_000 // 1024, 1024))]
    print(f"{'pass':<11} {'shape':<14} {'1 thread ms':>12} {'2 threads ms':>13} {'2 / 1':>6}")
    for name, fn, shape in cases:
        x = rng.standard_normal(shape).astype(np.float32)
        s = np.abs(rng.standard_normal(shape)).astype(np.float32)
        times, outs = {1: [], 2: []}, {}
        for r in range(a.rounds):
            for n in ((1, 2) if r % 2 == 0 else (2, 1)):
                threads.set_num_threads(n)
                ss, out, _m = s.copy(), np.ones_like(x), np.zeros_like(x)
                t0 = time.perf_counter()
                threads.run_parts(lambda lo, hi: fn(x, ss, out, lo, hi), shape[0], 64)
                times[n].append(time.perf_counter() - t0)
                outs[n] = out
        assert np.array_equal(outs[1], outs[2]), name
        m1, m2 = statistics.median(times[1]), statistics.median(times[2])
        print(f"{name:<11} {str(shape):<14} {1e3 * m1:12.3f} {1e3 * m2:13.3f} {m2 / m1:6.2f}")
    threads.set_num_threads(1)


if __name__ == "__main__":
    main()
