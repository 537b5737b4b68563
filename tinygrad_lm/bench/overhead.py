"""Per-op Python overhead (`tinygrad-lm bench --what overhead`): one forward plus one backward
(with a given output gradient) per op, three ways:

* ours:  y = op(x); y.backward(g)  (x requires grad; x.grad reset each time)
* numpy: the forward expression and a hand-written backward in numpy, the floor any
         numpy-based engine could reach
* torch: the same as ours in PyTorch eager, on the CPU, when PyTorch is installed

The per-op overhead is (ours - numpy) at the tiny size (one element, where the math costs
nothing); PyTorch's is (torch - numpy) at the same size. Times are medians over rounds of
many calls.
"""
from __future__ import annotations

import math
import statistics
import time

import numpy as np

from .. import Tensor

SIZES = {"tiny": (1, 1), "small": (64, 64), "medium": (1024, 1024)}
OVERHEAD_FIELDS = ["op", "size", "shape", "numpy_us", "ours_us", "torch_us"]


def _erf(x):
    from ..backend import erf
    return erf(x)


# ================================================================ the ops, three ways
# inputs: (shape, rng) -> float32 arrays (an int64 index for rows[idx])
def _pos(shape, rng):
    return [rng.uniform(0.5, 2.0, shape).astype(np.float32)]


def _one(shape, rng):
    return [rng.standard_normal(shape).astype(np.float32)]


def _two(shape, rng):
    return [rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)]


def _two_pos(shape, rng):
    return [rng.standard_normal(shape).astype(np.float32), rng.uniform(0.5, 2.0, shape).astype(np.float32)]


def _mm(shape, rng):
    return [rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape[::-1]).astype(np.float32)]


def _rows(shape, rng):
    return [rng.standard_normal(shape).astype(np.float32), rng.integers(0, shape[0], shape[0])]


# bare numpy: (*arrays, g) -> (forward output, input gradients), the backward written by hand
def _np_div(a, b, g):
    y = a / b
    gb = g / b
    return y, (gb, -gb * y)


def _np_exp(a, g):
    y = np.exp(a)
    return y, (g * y,)


def _np_sqrt(a, g):
    y = np.sqrt(a)
    return y, (g / (2 * y),)


def _np_tanh(a, g):
    y = np.tanh(a)
    return y, (g * (1 - y * y),)


def _np_sigmoid(a, g):
    e = np.exp(-np.abs(a))
    r = 1 / (1 + e)
    y = np.where(a >= 0, r, e * r)
    return y, (g * y * (1 - y),)


def _np_gelu(a, g):
    cdf = 0.5 * (1 + _erf(a * np.float32(1 / math.sqrt(2))))
    pdf = np.exp(-0.5 * a * a) * np.float32(1 / math.sqrt(2 * math.pi))
    return a * cdf, (g * (cdf + a * pdf),)


def _np_mean(a, g):  # sum / n: what ndarray.mean computes, without its Python wrapper
    n = a.shape[-1]
    return a.sum(-1) / np.float32(n), (np.broadcast_to(g[..., None] * np.float32(1 / n), a.shape),)


def _np_amax(a, g):
    m = a.max(-1, keepdims=True)
    mask = a == m
    return m[..., 0], (mask * (g[..., None] / mask.sum(-1, keepdims=True).astype(g.dtype)),)


def _np_lse(a, g):
    m = a.max(-1, keepdims=True)
    out = np.log(np.exp(a - m).sum(-1, keepdims=True)) + m
    return out[..., 0], (g[..., None] * np.exp(a - out),)


def _np_slice(a, g):
    y = a[:, ::2]
    gr = np.zeros_like(a)
    gr[:, ::2] = g
    return y, (gr,)


def _np_rows(a, idx, g):
    gr = np.zeros_like(a)
    np.add.at(gr, idx, g)
    return a[idx], (gr, None)


def _torch_gelu(a):
    import torch.nn.functional as TF
    return TF.gelu(a)


# name -> (inputs, ours(*tensors), numpy(*arrays, g), torch(*tensors)); ours and torch share
# one expression wherever the two APIs agree
OVERHEAD_OPS = {
    "add": (_two, lambda a, b: a + b, lambda a, b, g: (a + b, (g, g)), None),
    "mul": (_two, lambda a, b: a * b, lambda a, b, g: (a * b, (g * b, g * a)), None),
    "div": (_two_pos, lambda a, b: a / b, _np_div, None),
    "square": (_one, lambda a: a ** 2, lambda a, g: (a * a, (g * (2 * a),)), None),
    "exp": (_one, lambda a: a.exp(), _np_exp, None),
    "log": (_pos, lambda a: a.log(), lambda a, g: (np.log(a), (g / a,)), None),
    "sqrt": (_pos, lambda a: a.sqrt(), _np_sqrt, None),
    "tanh": (_one, lambda a: a.tanh(), _np_tanh, None),
    "sigmoid": (_one, lambda a: a.sigmoid(), _np_sigmoid, None),
    "relu": (_one, lambda a: a.relu(), lambda a, g: (np.maximum(a, np.float32(0)), (g * (a > 0),)), None),
    "gelu": (_one, lambda a: a.gelu(), _np_gelu, _torch_gelu),
    "sum(-1)": (_one, lambda a: a.sum(-1), lambda a, g: (a.sum(-1), (np.broadcast_to(g[..., None], a.shape),)), None),
    "mean(-1)": (_one, lambda a: a.mean(-1), _np_mean, None),
    "amax(-1)": (_one, lambda a: a.amax(-1), _np_amax, None),
    "logsumexp(-1)": (_one, lambda a: a.logsumexp(-1), _np_lse, None),
    "reshape": (_one, lambda a: a.reshape(-1), lambda a, g: (a.reshape(-1), (g.reshape(a.shape),)), None),
    "transpose": (_one, lambda a: a.T, lambda a, g: (a.T, (g.T,)), None),
    "slice[:, ::2]": (_one, lambda a: a[:, ::2], _np_slice, None),
    "matmul": (_mm, lambda a, b: a @ b, lambda a, b, g: (a @ b, (g @ b.T, a.T @ g)), None),
    "rows[idx]": (_rows, lambda a, i: a[i], _np_rows, None),
}


# ================================================================ timing
def _time(fn, min_time, rounds, clock):
    """Median seconds per call over `rounds` rounds, each about `min_time` seconds long."""
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


def measure_overhead(ops=None, sizes=("tiny", "small", "medium"), min_time=0.02, rounds=7, clock="wall",
                 torch=None) -> list[dict]:
    """One row per (op, size): microseconds of forward + backward for numpy, ours and, with
    `torch` (the module), PyTorch. `clock`: "wall" (time.perf_counter) or "process"
    (time.process_time: this process's CPU time, which other jobs on a busy machine
    disturb far less)."""
    clock_fn = time.perf_counter if clock == "wall" else time.process_time
    rows = []
    for name, (make, ours, ref, tfn) in OVERHEAD_OPS.items():
        if ops and name not in ops:
            continue
        for size in sizes:
            rng = np.random.default_rng(0)
            arrays = make(SIZES[size], rng)
            grad_in = [a.dtype.kind == "f" for a in arrays]
            # the output gradient has the forward's shape
            out_shape = ours(*[Tensor(a) for a in arrays]).shape
            g = rng.standard_normal(out_shape).astype(np.float32)
            xs = [Tensor(a, requires_grad=f) for a, f in zip(arrays, grad_in)]
            gt = Tensor(g)

            def run_ours():
                for x in xs:
                    x.grad = None
                ours(*xs).backward(gt)

            def run_numpy():
                ref(*arrays, g)

            row = {"op": name, "size": size, "shape": "x".join(map(str, SIZES[size])),
                   "ours_us": _time(run_ours, min_time, rounds, clock_fn) * 1e6,
                   "numpy_us": _time(run_numpy, min_time, rounds, clock_fn) * 1e6}
            if torch is not None:
                ts = [torch.tensor(a, requires_grad=f) for a, f in zip(arrays, grad_in)]
                gtt = torch.tensor(g)
                tf = tfn or ours

                def run_torch():
                    for x in ts:
                        x.grad = None
                    tf(*ts).backward(gtt)
                row["torch_us"] = _time(run_torch, min_time, rounds, clock_fn) * 1e6
            rows.append(row)
    return rows


# ================================================================ tables
def overhead_table(rows) -> str:
    """Per-op Python overhead at the tiny size: ours - numpy and torch - numpy, in microseconds (markdown)."""
    tiny = [r for r in rows if r["size"] == "tiny"]
    has_torch = any("torch_us" in r for r in tiny)
    head = "| op | numpy fwd+bwd (µs) | ours (µs) | ours overhead (µs) |" + (
        " torch (µs) | torch overhead (µs) | ours / torch overhead |" if has_torch else "")
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
    """Forward + backward microseconds per (op, size): numpy, ours, ours/numpy, torch (markdown)."""
    has_torch = any("torch_us" in r for r in rows)
    head = "| op | size | numpy (µs) | ours (µs) | ours / numpy |" + (" torch (µs) |" if has_torch else "")
    lines = [head, "|" + "---|" * (5 + has_torch)]
    for r in rows:
        line = (f"| {r['op']} | {r['size']} {r['shape']} | {r['numpy_us']:.1f} | {r['ours_us']:.1f} | "
                f"{r['ours_us'] / r['numpy_us']:.2f} |")
        if has_torch:
            line += f" {r['torch_us']:.1f} |"
        lines.append(line)
    return "\n".join(lines)
