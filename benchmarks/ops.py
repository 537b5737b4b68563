"""Forward + backward time per op: tinygrad_lm vs the same math in bare numpy vs PyTorch eager.

    python benchmarks/ops.py                 # all ops, all sizes, markdown table on stdout
    python benchmarks/ops.py --sizes tiny    # overhead only (fast)
    python benchmarks/ops.py --ops add,matmul --json out.json

For each op and size we time one forward and one backward with a given output gradient:

* ours:  y = op(x); y.backward(g)  (x requires grad; x.grad reset each time)
* numpy: the forward expression and a hand-written backward in numpy, the floor any
         numpy-based engine could reach
* torch: the same as ours in PyTorch eager, on the CPU, when `import torch` works

Per-op Python overhead is (ours - numpy) at the tiny size (one element, where the math
costs nothing); PyTorch's is (torch - numpy) at the same size. Times are medians over
rounds of many calls, with time.perf_counter.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import tinygrad_lm as tg  # noqa: E402

try:
    import torch
except Exception:  # no torch: the benchmark still runs, without its column
    torch = None

SIZES = {"tiny": (1, 1), "small": (64, 64), "medium": (1024, 1024)}


def _erf(x):
    from tinygrad_lm.backend import erf
    return erf(x)


# Each op: name -> (make inputs (shape, rng) -> list of float32 arrays,
#                   ours(*tensors) -> Tensor,
#                   numpy(*arrays, g) -> forward output and input grads (hand backward),
#                   torch(*tensors) -> tensor or None)
def _ops():
    def pos(shape, rng):
        return [rng.uniform(0.5, 2.0, shape).astype(np.float32)]

    def one(shape, rng):
        return [rng.standard_normal(shape).astype(np.float32)]

    def two(shape, rng):
        return [rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)]

    def two_pos(shape, rng):
        return [rng.standard_normal(shape).astype(np.float32), rng.uniform(0.5, 2.0, shape).astype(np.float32)]

    def mm(shape, rng):
        return [rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape[::-1]).astype(np.float32)]

    def rows(shape, rng):
        return [rng.standard_normal(shape).astype(np.float32), rng.integers(0, shape[0], shape[0])]

    def np_add(a, b, g): return a + b, (g, g)
    def np_mul(a, b, g): return a * b, (g * b, g * a)
    def np_div(a, b, g):
        y = a / b
        gb = g / b
        return y, (gb, -gb * y)
    def np_exp(a, g):
        y = np.exp(a)
        return y, (g * y,)
    def np_log(a, g): return np.log(a), (g / a,)
    def np_sqrt(a, g):
        y = np.sqrt(a)
        return y, (g / (2 * y),)
    def np_tanh(a, g):
        y = np.tanh(a)
        return y, (g * (1 - y * y),)
    def np_sigmoid(a, g):
        e = np.exp(-np.abs(a))
        r = 1 / (1 + e)
        y = np.where(a >= 0, r, e * r)
        return y, (g * y * (1 - y),)
    def np_relu(a, g):
        m = a > 0
        return np.maximum(a, np.float32(0)), (g * m,)
    def np_gelu(a, g):
        cdf = 0.5 * (1 + _erf(a * np.float32(1 / math.sqrt(2))))
        pdf = np.exp(-0.5 * a * a) * np.float32(1 / math.sqrt(2 * math.pi))
        return a * cdf, (g * (cdf + a * pdf),)
    def np_square(a, g): return a * a, (g * (2 * a),)
    def np_sum(a, g): return a.sum(-1), (np.broadcast_to(g[..., None], a.shape),)
    def np_mean(a, g):  # sum / n: what ndarray.mean computes, without its Python wrapper
        n = a.shape[-1]
        return a.sum(-1) / np.float32(n), (np.broadcast_to(g[..., None] * np.float32(1 / n), a.shape),)
    def np_amax(a, g):
        m = a.max(-1, keepdims=True)
        mask = a == m
        return m[..., 0], (mask * (g[..., None] / mask.sum(-1, keepdims=True).astype(g.dtype)),)
    def np_lse(a, g):
        m = a.max(-1, keepdims=True)
        out = np.log(np.exp(a - m).sum(-1, keepdims=True)) + m
        return out[..., 0], (g[..., None] * np.exp(a - out),)
    def np_reshape(a, g): return a.reshape(-1), (g.reshape(a.shape),)
    def np_transpose(a, g): return a.T, (g.T,)
    def np_slice(a, g):
        y = a[:, ::2]
        gr = np.zeros_like(a)
        gr[:, ::2] = g
        return y, (gr,)
    def np_matmul(a, b, g): return a @ b, (g @ b.T, a.T @ g)
    def np_rows(a, idx, g):
        gr = np.zeros_like(a)
        np.add.at(gr, idx, g)
        return a[idx], (gr, None)

    T = torch
    return {
        "add": (two, lambda a, b: a + b, np_add, lambda a, b: a + b),
        "mul": (two, lambda a, b: a * b, np_mul, lambda a, b: a * b),
        "div": (two_pos, lambda a, b: a / b, np_div, lambda a, b: a / b),
        "square": (one, lambda a: a ** 2, np_square, lambda a: a ** 2),
        "exp": (one, lambda a: a.exp(), np_exp, lambda a: a.exp()),
        "log": (pos, lambda a: a.log(), np_log, lambda a: a.log()),
        "sqrt": (pos, lambda a: a.sqrt(), np_sqrt, lambda a: a.sqrt()),
        "tanh": (one, lambda a: a.tanh(), np_tanh, lambda a: a.tanh()),
        "sigmoid": (one, lambda a: a.sigmoid(), np_sigmoid, lambda a: a.sigmoid()),
        "relu": (one, lambda a: a.relu(), np_relu, lambda a: a.relu()),
        "gelu": (one, lambda a: a.gelu(), np_gelu, lambda a: T.nn.functional.gelu(a)),
        "sum(-1)": (one, lambda a: a.sum(-1), np_sum, lambda a: a.sum(-1)),
        "mean(-1)": (one, lambda a: a.mean(-1), np_mean, lambda a: a.mean(-1)),
        "amax(-1)": (one, lambda a: a.amax(-1), np_amax, lambda a: a.amax(-1)),
        "logsumexp(-1)": (one, lambda a: a.logsumexp(-1), np_lse, lambda a: a.logsumexp(-1)),
        "reshape": (one, lambda a: a.reshape(-1), np_reshape, lambda a: a.reshape(-1)),
        "transpose": (one, lambda a: a.T, np_transpose, lambda a: a.T),
        "slice[:, ::2]": (one, lambda a: a[:, ::2], np_slice, lambda a: a[:, ::2]),
        "matmul": (mm, lambda a, b: a @ b, np_matmul, lambda a, b: a @ b),
        "rows[idx]": (rows, lambda a, i: a[i], np_rows, lambda a, i: a[i]),
    }


CLOCK = time.perf_counter  # --clock process: CPU time of this process, for busy shared machines


def _time(fn, min_time, rounds=7):
    """Median seconds per call over `rounds` rounds, each about `min_time` seconds long."""
    clock = CLOCK
    fn()  # warm up
    t0 = clock()
    fn()
    one = max(clock() - t0, 1e-7)
    n = max(1, int(min_time / one))
    times = []
    for _ in range(rounds):
        t0 = clock()
        for _ in range(n):
            fn()
        times.append((clock() - t0) / n)
    return statistics.median(times)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench(ops=None, sizes=("tiny", "small", "medium"), min_time=0.02, rounds=7):
    specs = _ops()
    rows = []
    for name, (make, ours, ref, tfn) in specs.items():
        if ops and name not in ops:
            continue
        for size in sizes:
            rng = np.random.default_rng(0)
            arrays = make(SIZES[size], rng)
            grad_in = [a.dtype.kind == "f" for a in arrays]
            # the output gradient has the forward's shape
            out_shape = ours(*[tg.Tensor(a) for a in arrays]).shape
            g = rng.standard_normal(out_shape).astype(np.float32)

            xs = [tg.Tensor(a, requires_grad=f) for a, f in zip(arrays, grad_in)]
            gt = tg.Tensor(g)

            def run_ours():
                for x in xs:
                    x.grad = None
                ours(*xs).backward(gt)

            def run_numpy():
                ref(*arrays, g)

            row = {"op": name, "size": size, "shape": SIZES[size],
                   "ours_us": _time(run_ours, min_time, rounds) * 1e6, "numpy_us": _time(run_numpy, min_time, rounds) * 1e6}
            if torch is not None:
                ts = [torch.tensor(a, requires_grad=f) for a, f in zip(arrays, grad_in)]
                gtt = torch.tensor(g)

                def run_torch():
                    for x in ts:
                        x.grad = None
                    tfn(*ts).backward(gtt)
                row["torch_us"] = _time(run_torch, min_time, rounds) * 1e6
            rows.append(row)
    return rows


def overhead_table(rows) -> str:
    """Per-op Python overhead at the tiny size: ours - numpy and torch - numpy, in microseconds."""
    tiny = [r for r in rows if r["size"] == "tiny"]
    has_torch = any("torch_us" in r for r in tiny)
    head = "| op | numpy fwd+bwd (µs) | ours (µs) | ours overhead (µs) |" + (" torch (µs) | torch overhead (µs) | ours / torch overhead |" if has_torch else "")
    sep = "|" + "---|" * (4 + (3 if has_torch else 0))
    lines = [head, sep]
    for r in tiny:
        ov = r["ours_us"] - r["numpy_us"]
        line = f"| {r['op']} | {r['numpy_us']:.1f} | {r['ours_us']:.1f} | {ov:.1f} |"
        if has_torch:
            tov = r["torch_us"] - r["numpy_us"]
            line += f" {r['torch_us']:.1f} | {tov:.1f} | {ov / tov if tov > 0 else float('nan'):.2f}x |"
        lines.append(line)
    return "\n".join(lines)


def time_table(rows) -> str:
    has_torch = any("torch_us" in r for r in rows)
    head = "| op | size | numpy (µs) | ours (µs) | ours / numpy |" + (" torch (µs) |" if has_torch else "")
    lines = [head, "|" + "---|" * (5 + has_torch)]
    for r in rows:
        line = f"| {r['op']} | {r['size']} {r['shape'][0]}x{r['shape'][1]} | {r['numpy_us']:.1f} | {r['ours_us']:.1f} | {r['ours_us'] / r['numpy_us']:.2f} |"
        if has_torch:
            line += f" {r['torch_us']:.1f} |"
        lines.append(line)
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", help="comma-separated op names (default: all)")
    p.add_argument("--sizes", default="tiny,small,medium", help="comma-separated from tiny,small,medium")
    p.add_argument("--min-time", type=float, default=0.02, help="seconds per timing round")
    p.add_argument("--rounds", type=int, default=7, help="timing rounds per measurement (the median is reported)")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch intra-op threads (default 1: numpy's elementwise ops use one core too, and "
                        "OpenMP spinning on a busy machine swamps the timings)")
    p.add_argument("--clock", choices=["wall", "process"], default="wall",
                   help="wall: time.perf_counter (default); process: time.process_time, this process's CPU "
                        "time, which other jobs on a busy machine disturb far less")
    p.add_argument("--json", help="also write the raw rows here")
    a = p.parse_args(argv)
    global CLOCK
    CLOCK = time.perf_counter if a.clock == "wall" else time.process_time
    if torch is not None:
        torch.set_num_threads(a.torch_threads)
    rows = bench(a.ops.split(",") if a.ops else None, tuple(a.sizes.split(",")), a.min_time, a.rounds)
    print(f"machine: {_cpu_model()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; "
          f"Python {platform.python_version()}, numpy {np.__version__}"
          + (f", torch {torch.__version__} ({torch.get_num_threads()} thread(s))" if torch is not None else ", torch not installed")
          + f"; clock: {a.clock}, median of {a.rounds} rounds of ~{a.min_time * 1000:.0f} ms")
    if "tiny" in a.sizes:
        print("\nPer-op overhead (tiny, 1 element): forward + backward\n")
        print(overhead_table(rows))
    print("\nForward + backward time per size\n")
    print(time_table(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
