"""The op sweep (`tinygrad-lm bench --what ops`): forward and backward time of the ops a GPT
spends its time in, over sizes, on numpy, on cupy where a GPU is usable, and in PyTorch eager
where it is installed; then per (op, pass, size) the GPU speedup, ours/PyTorch, and the
crossover size below which the CPU wins.

Each op is written once for both engines (`_build` takes `F`, tinygrad_lm.nn.functional or
torch.nn.functional: same names, same signatures), so both time exactly the same call.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from .. import Tensor
from .harness import Settings, progress, sync, table, torch_sync

OPS = ["matmul", "softmax", "layer_norm", "gelu", "cross_entropy", "attention", "embedding", "adamw"]
OP_FIELDS = ["op", "pass", "impl", "device", "shape", "elements", "reps", "ms_median", "ms_min", "ms_max", "gflops"]
# a size parameter n per op; what it means is in _inputs
FULL_SIZES = {op: [64, 128, 256, 512, 1024, 2048] for op in OPS}
FULL_SIZES["attention"] = [64, 128, 256, 512, 1024]  # T, with (B, H, hs) = (2, 8, 64)
QUICK_SIZES = {op: [32, 128] for op in OPS}

ATTN_B, ATTN_H, ATTN_HS = 2, 8, 64
EMB_ROWS = 8


class _Case:
    """One op at one size on one implementation: `fwd()` returns the output, `bwd(out)`
    runs the backward pass (None for an op with a single pass), `reset()` drops gradients."""

    def __init__(self, shape, elements, fwd, bwd=None, reset=None, flops=(None, None), passes=("forward", "backward")):
        self.shape, self.elements, self.fwd, self.bwd, self.reset = shape, elements, fwd, bwd, reset or (lambda: None)
        self.flops, self.passes = flops, passes


def _inputs(op, n, rng):
    """The float32 / int64 numpy inputs of `op` at size n, shared by every implementation."""
    f32 = lambda *s: rng.standard_normal(s, dtype=np.float32)  # noqa: E731
    if op == "matmul":
        return dict(a=f32(n, n), b=f32(n, n)), f"({n},{n})@({n},{n})", n * n
    if op in ("softmax", "gelu"):
        return dict(x=f32(n, n)), f"({n},{n})", n * n
    if op == "layer_norm":
        return dict(x=f32(n, n), w=1 + 0.1 * f32(n), b=0.1 * f32(n)), f"({n},{n}) over {n}", n * n
    if op == "cross_entropy":
        return dict(x=f32(n, n), y=rng.integers(0, n, n)), f"({n},{n}) logits", n * n
    if op == "attention":
        s = (ATTN_B, ATTN_H, n, ATTN_HS)
        return dict(q=f32(*s), k=f32(*s), v=f32(*s)), f"causal {s}", ATTN_B * ATTN_H * n * ATTN_HS
    if op == "embedding":
        return dict(w=f32(n, n), idx=rng.integers(0, n, (EMB_ROWS, n))), f"table ({n},{n}), idx ({EMB_ROWS},{n})", EMB_ROWS * n * n
    if op == "adamw":
        return dict(p=f32(n, n), g=f32(n, n)), f"({n},{n}) param", n * n
    raise ValueError(f"bench: unknown op {op!r}; choose from {', '.join(OPS)}")


def _op_flops(op, n):
    if op == "matmul":
        return 2.0 * n ** 3, 4.0 * n ** 3
    if op == "attention":  # q k^T and p v over the full T x T (what both engines compute)
        f = 4.0 * ATTN_B * ATTN_H * n * n * ATTN_HS
        return f, 2 * f
    return None, None


def _build(op, n, rng, F, leaf, const, adamw):
    """The op's forward as a closure, written once for both engines: `F` is
    tinygrad_lm.nn.functional or torch.nn.functional (same names and signatures), `leaf` /
    `const` make an input with / without gradient, `adamw` is the optimizer class.
    Returns a finished _Case for the AdamW update, else (ts, fn, shape, elements)."""
    data, shape, elements = _inputs(op, n, rng)
    if op == "adamw":
        p, g = leaf(data["p"]), const(data["g"])
        opt = adamw([p], lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)

        def step():
            p.grad = g
            opt.step()
            return p
        return _Case(shape, elements, step, passes=("step",))
    if op == "matmul":
        a, b = leaf(data["a"]), leaf(data["b"])
        ts, fn = [a, b], lambda: a @ b
    elif op == "softmax":
        x = leaf(data["x"])
        ts, fn = [x], lambda: F.softmax(x, -1)
    elif op == "gelu":
        x = leaf(data["x"])
        ts, fn = [x], lambda: F.gelu(x, approximate="tanh")
    elif op == "layer_norm":
        x, w, b = leaf(data["x"]), leaf(data["w"]), leaf(data["b"])
        ts, fn = [x, w, b], lambda: F.layer_norm(x, (n,), w, b)
    elif op == "cross_entropy":
        x, y = leaf(data["x"]), const(data["y"])
        ts, fn = [x], lambda: F.cross_entropy(x, y)
    elif op == "attention":
        q, k, v = leaf(data["q"]), leaf(data["k"]), leaf(data["v"])
        ts, fn = [q, k, v], lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    elif op == "embedding":
        w, idx = leaf(data["w"]), const(data["idx"])
        ts, fn = [w], lambda: F.embedding(idx, w)
    return ts, fn, shape, elements


def _finish(op, n, built, out_grad, backward):
    """A _Case from _build's closure: `out_grad(shape)` makes the fixed output gradient (None
    for a scalar output) and `backward(out, g)` runs the engine's backward."""
    if isinstance(built, _Case):
        return built
    ts, fn, shape, elements = built
    g = out_grad(tuple(fn().shape))

    def reset():
        for t in ts:
            t.grad = None
    return _Case(shape, elements, fn, lambda out: backward(out, g), reset, _op_flops(op, n))


def _make_ours(op, n, device, rng):
    from ..nn import functional as F
    from ..optim import AdamW
    built = _build(op, n, rng, F, lambda a: Tensor(a, device=device, requires_grad=True),
                   lambda a: Tensor(a, device=device), AdamW)

    def out_grad(shape):
        return Tensor(np.random.default_rng(1).standard_normal(shape, dtype=np.float32), device=device) \
            if shape else None
    return _finish(op, n, built, out_grad, lambda out, g: out.backward(g))


def _make_torch(op, n, tdev, rng, torch):
    import torch.nn.functional as TF
    built = _build(op, n, rng, TF, lambda a: torch.tensor(a, device=tdev, requires_grad=True),
                   lambda a: torch.tensor(a, device=tdev), torch.optim.AdamW)

    def out_grad(shape):
        return torch.tensor(np.random.default_rng(1).standard_normal(shape, dtype=np.float32), device=tdev) \
            if shape else None
    with torch.no_grad():
        return _finish(op, n, built, out_grad, lambda out, g: out.backward(g))


def _time_case(case, sync_fn, s: Settings, budget_s: float):
    """{pass: [seconds, ...]}: warm-up (at least `op_warmup` calls and `settle_s` seconds),
    then as many repetitions as fit `budget_s`."""
    def once():
        case.reset()
        sync_fn()
        t0 = time.perf_counter()
        out = case.fwd()
        sync_fn()
        t1 = time.perf_counter()
        if case.bwd is None:
            return (t1 - t0,)
        case.bwd(out)
        sync_fn()
        return t1 - t0, time.perf_counter() - t1

    t, n, t_end = None, 0, time.perf_counter() + s.settle_s
    while n < s.op_warmup or time.perf_counter() < t_end:  # warm up, and let the other pool's spinners time out
        t = once()
        n += 1
    reps = max(s.op_min_reps, min(s.op_max_reps, int(budget_s / max(sum(t), 1e-6))))
    samples = [once() for _ in range(reps)]
    return {p: [x[i] for x in samples] for i, p in enumerate(case.passes)}


def run_ops(s: Settings, devices, torch, torch_why, ops=None, log=print) -> list[dict]:
    """Every op at every size on every implementation. Per (op, size) the implementations
    take turns, `s.op_rounds` rounds of (warm-up/settle, timed repetitions), so a burst of
    load from another process lands on one round of each rather than on all of one."""
    ops = ops or OPS
    impls = [("ours", d) for d in devices]
    if torch is not None:
        impls.append(("torch", "cpu"))
        if any(d != "cpu" for d in devices) and torch.cuda.is_available():
            impls.append(("torch", "cuda"))
    sizes = QUICK_SIZES if s.quick else FULL_SIZES
    total = sum(len(sizes[op]) for op in ops) * len(impls)
    bar = progress(total, "ops", s.quick)
    rows = []
    try:
        for op in ops:
            for n in sizes[op]:
                cases = []
                for impl, dev in impls:
                    if impl == "ours":
                        cases.append((_make_ours(op, n, dev, np.random.default_rng(0)), lambda d=dev: sync(d)))
                    else:
                        cases.append((_make_torch(op, n, dev, np.random.default_rng(0), torch),
                                      lambda d=dev: torch_sync(d, torch)))
                times = [{} for _ in impls]
                for r in range(s.op_rounds):
                    for k in (range(len(impls)) if r % 2 == 0 else reversed(range(len(impls)))):
                        case, sync_fn = cases[k]
                        for p, ts in _time_case(case, sync_fn, s, s.op_budget_s / s.op_rounds).items():
                            times[k].setdefault(p, []).extend(ts)
                for (impl, dev), (case, _), tk in zip(impls, cases, times):
                    for i, (p, ts) in enumerate(tk.items()):
                        med = statistics.median(ts)
                        fl = case.flops[i] if i < len(case.flops) else None
                        rows.append({"op": op, "pass": p, "impl": impl, "device": dev, "shape": case.shape,
                                     "elements": case.elements, "reps": len(ts), "ms_median": 1e3 * med,
                                     "ms_min": 1e3 * min(ts), "ms_max": 1e3 * max(ts),
                                     "gflops": fl / med / 1e9 if fl else ""})
                    if bar is not None:
                        bar.update(1)
                del cases
    finally:
        if bar is not None:
            bar.close()
    return rows


def op_summary(rows) -> tuple[list[dict], dict]:
    """Per (op, pass, size): our CPU ms, our GPU ms, GPU speedup, torch CPU ms, ours/torch;
    and per (op, pass) the crossover: the smallest size from which the GPU wins at every
    larger size measured (None when it never does)."""
    key = lambda r: (r["op"], r["pass"], int(r["elements"]))  # noqa: E731
    by = {}
    for r in rows:
        d = by.setdefault(key(r), {"op": r["op"], "pass": r["pass"], "shape": r["shape"], "elements": int(r["elements"])})
        ms = float(r["ms_median"])
        if r["impl"] == "ours" and r["device"] == "cpu":
            d["cpu_ms"] = ms
        elif r["impl"] == "ours":
            d.setdefault("gpu_ms", ms)
        elif r["device"] == "cpu":
            d["torch_ms"] = ms
    summ = []
    for k in sorted(by, key=lambda k: (OPS.index(k[0]) if k[0] in OPS else 99, k[1] != "forward", k[2])):
        d = by[k]
        if "cpu_ms" in d and "gpu_ms" in d:
            d["gpu_speedup"] = d["cpu_ms"] / d["gpu_ms"]
        if "cpu_ms" in d and "torch_ms" in d:
            d["ours_over_torch"] = d["cpu_ms"] / d["torch_ms"]
        summ.append(d)
    cross = {}
    for op_pass in dict.fromkeys((d["op"], d["pass"]) for d in summ):
        pts = [d for d in summ if (d["op"], d["pass"]) == op_pass and "gpu_speedup" in d]
        if not pts:
            continue
        c = None
        for d in reversed(pts):
            if d["gpu_speedup"] > 1:
                c = d
            else:
                break
        cross[op_pass] = {"elements": c["elements"], "shape": c["shape"], "all": c is pts[0]} if c else None
    return summ, cross


def format_ops(summ, cross, have_gpu: bool, torch_why: str) -> str:
    hdr = ["op", "pass", "shape", "elements", "ours CPU ms", "ours GPU ms", "GPU speedup", "torch CPU ms", "ours/torch"]
    out = []
    for d in summ:
        gpu = f"{d['gpu_ms']:.3f}" if "gpu_ms" in d else ("no GPU" if not have_gpu else "-")
        sp = f"{d['gpu_speedup']:.2f}x" if "gpu_speedup" in d else ("no GPU" if not have_gpu else "-")
        tt = f"{d['torch_ms']:.3f}" if "torch_ms" in d else (torch_why or "-")
        ratio = f"{d['ours_over_torch']:.2f}" if "ours_over_torch" in d else (torch_why or "-")
        out.append([d["op"], d["pass"], d["shape"], d["elements"], f"{d.get('cpu_ms', float('nan')):.3f}", gpu, sp, tt, ratio])
    text = [table(hdr, out, ["<", "<", "<"] + [">"] * 6)]
    if not have_gpu:
        text.append("GPU: none usable in this run (no cupy or no NVIDIA GPU): speedup and crossover not measured; "
                    "CPU times above are real.")
    else:
        text.append("crossover (the CPU wins below this size; GPU speedup > 1 from here to the largest size measured):")
        for (op, p), c in cross.items():
            if c is None:
                text.append(f"  {op} {p}: the CPU wins (or ties) at the largest size measured")
            elif c["all"]:
                text.append(f"  {op} {p}: the GPU wins at every size measured (crossover below {c['shape']})")
            else:
                text.append(f"  {op} {p}: from {c['shape']} ({c['elements']:,} elements) up")
    return "\n".join(text)

