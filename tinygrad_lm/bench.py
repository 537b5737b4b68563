"""`tinygrad-lm bench`: how fast the engine is, on the CPU, on a GPU, and against PyTorch.

Two levels, both written to CSV in `--out-dir` (default `bench_out/`) and printed as tables:

* **ops** (`ops.csv`, `ops_speedup.png`): matmul, softmax, layer norm, GELU (tanh),
  cross-entropy, causal attention, embedding (forward and backward each) and one AdamW
  update, over a range of sizes, on numpy and, where a GPU is usable, on cupy; and the same
  ops in PyTorch eager on the CPU where PyTorch is installed. The table and the plot give
  the GPU speedup (CPU ms / GPU ms) against size and the crossover size below which the
  CPU wins; without a GPU they say so and still report the CPU times.
* **model** (`model.csv`, `model_steps.csv`): one full GPT training step (forward,
  backward, clip_grad_norm_(1.0), AdamW step, zero_grad) for the named configs, ours and
  PyTorch eager's (benchmarks/torch_reference.py: explicit softmax attention, and
  F.scaled_dot_product_attention as a second column) in the same process, taking turns in
  a rotating order after a warm-up (each turn: untimed settle steps, then a few timed
  ones), so slow drifts of a noisy machine hit every implementation alike; then ours once
  more in a fresh child process without torch (`ours_own_process`), because sharing a
  process with torch changes glibc's allocator state in our favour. Reported: median
  ms/step with min, max and the interquartile range, tokens/s, achieved GFLOP/s by
  nanoGPT's FLOP estimate (FLOP_FORMULA below), that as a fraction of the machine's own
  float32 matmul peak measured in the same run, and the ratio ours/that.

The measured figures, the machine and what every column means: benchmarks/RESULTS.md.

Timers: time.perf_counter around each timed call; on a GPU the device is synchronized
before each timer is read. `--quick` is a ~10-30 s smoke run (small sizes, few repetitions)
for CI: its numbers are not measurements.
"""
from __future__ import annotations

import csv
import importlib.util
import os
import platform
import statistics
import sys
import time

import numpy as np

from . import backend, engine
from .engine import manual_seed as _manual_seed
from .tensor import Tensor

# ================================================================ configs and formulas
MODEL_CONFIGS = {
    # nanoGPT's CPU ("on a macbook") Shakespeare-char config
    "cpu": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, vocab_size=65, bias=False, dropout=0.0),
    # nanoGPT's baby Shakespeare GPU config, without dropout (so both engines do the same work)
    "gpu": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64, vocab_size=65, bias=False, dropout=0.0),
}

FLOP_FORMULA = (
    "FLOPs per step = (6*N + 12*L*C*T) * T * B   (nanoGPT's estimate_mfu; C = H*Q)\n"
    "  N = parameters, tied wte/lm_head counted once, position embedding excluded\n"
    "      (nanoGPT's get_num_params(non_embedding=True)): 6*N per token = 2 (multiply-add)\n"
    "      x 3 (forward, plus backward to inputs and to weights) per weight;\n"
    "  12*L*C*T per token: per layer the scores q.k^T (2*T*C) and the weighted sum p@v\n"
    "      (2*T*C) forward, x3 with the backward; full T x T, the causal mask not discounted;\n"
    "  L layers, H heads, Q head size, C = H*Q, T block size, B batch size.\n"
    "  Not counted: layer norm, softmax, GELU, cross-entropy, AdamW (elementwise work)."
)

OP_FIELDS = ["op", "pass", "impl", "device", "shape", "elements", "reps", "ms_median", "ms_min", "ms_max", "gflops"]
MODEL_FIELDS = ["config", "device", "impl", "threads", "n_params", "tokens_per_step", "gflop_per_step", "warmup", "steps",
                "ms_median", "ms_min", "ms_max", "ms_q1", "ms_q3", "tokens_per_s", "gflops", "peak_gflops",
                "frac_of_peak", "ours_over_this", "loss_first"]
STEP_FIELDS = ["config", "device", "impl", "round", "ms"]

OPS = ["matmul", "softmax", "layer_norm", "gelu", "cross_entropy", "attention", "embedding", "adamw"]
# a size parameter n per op; what it means is in _inputs
FULL_SIZES = {op: [64, 128, 256, 512, 1024, 2048] for op in OPS}
FULL_SIZES["attention"] = [64, 128, 256, 512, 1024]  # T, with (B, H, hs) = (2, 8, 64)
QUICK_SIZES = {op: [32, 128] for op in OPS}

ATTN_B, ATTN_H, ATTN_HS = 2, 8, 64
EMB_ROWS = 8


class _Settings:
    def __init__(self, quick: bool):
        self.quick = quick
        self.sizes = QUICK_SIZES if quick else FULL_SIZES
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
        self.settle_s = 0.0 if quick else 0.15        # ... and of each op case, for at least this long:
        # numpy's OpenBLAS keeps a worker thread spinning for ~0.1 s after its last call
        # (measured: 10 of 10 possible CPU ticks in the 0.1 s after a matmul, none after), and
        # on a 2-core machine that spinner takes a core from whatever runs next


# ================================================================ machine and timing
def _sync(device: str) -> None:
    if device != "cpu":
        backend.xp_for(device).cuda.Device(int(device.split(":")[1])).synchronize()


def _torch_sync(tdev: str, torch) -> None:
    if tdev.startswith("cuda"):
        torch.cuda.synchronize()


def blas_threads() -> tuple[int, str]:
    """(threads numpy's BLAS uses, how we know)."""
    try:
        from threadpoolctl import threadpool_info
        for info in threadpool_info():
            if info.get("user_api") == "blas" and "numpy" in info.get("filepath", "") + info.get("prefix", ""):
                return int(info["num_threads"]), "threadpoolctl"
        for info in threadpool_info():
            if info.get("user_api") == "blas":
                return int(info["num_threads"]), "threadpoolctl"
    except Exception:
        pass
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var]), var
    return os.cpu_count() or 1, "os.cpu_count() (OpenBLAS's default)"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _blas_name() -> str:
    try:
        cfg = np.show_config(mode="dicts")
        b = cfg["Build Dependencies"]["blas"]
        return f"{b.get('name')} {b.get('version')}"
    except Exception:
        return "unknown"


def machine_info(torch=None) -> dict:
    n, how = blas_threads()
    info = {"cpu": _cpu_model(), "logical_cpus": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "blas": _blas_name(), "blas_threads": n, "blas_threads_from": how,
            "gpu": "none usable (no cupy or no NVIDIA GPU)"}
    if backend.cuda_available():
        cp = backend.xp_for("cuda:0")
        try:
            props = cp.cuda.runtime.getDeviceProperties(0)
            name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        except Exception:
            name = "CUDA GPU"
        info["gpu"] = f"{name} (cupy {cp.__version__})"
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    return info


def load_torch(no_torch: bool = False, threads: int | None = None):
    """(torch module or None, why not). Sets torch's intra-op threads to numpy's BLAS count
    (or to `threads`)."""
    if no_torch:
        return None, "torch skipped (--no-torch)"
    # Not done here: OMP_WAIT_POLICY=PASSIVE. It stops torch's OpenMP threads from spinning
    # into numpy's turn, but it slowed PyTorch's own step from ~45-55 to ~77-95 ms on the
    # 2-core machine of benchmarks/RESULTS.md; run_model's settle step handles the
    # hand-over instead.
    try:
        import torch
    except Exception:
        return None, "torch not installed"
    torch.set_num_threads(threads or blas_threads()[0])
    return torch, ""


def load_torch_reference():
    """benchmarks/torch_reference.py as a module (it lives beside the package, not in it), or None."""
    try:
        import benchmarks.torch_reference as ref  # running from the repository root
        return ref
    except Exception:
        pass
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "torch_reference.py")
    if not os.path.exists(path):
        return None
    spec = importlib.util.spec_from_file_location("tinygrad_lm_torch_reference", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def measure_matmul_peak(device: str = "cpu", n: int = 2048, reps: int = 7) -> dict:
    """float32 (n, n) @ (n, n) GFLOP/s on `device`: best of `reps` (the peak) and median.

    On the CPU it runs in a child process: freeing its 16 MB arrays here would raise glibc's
    dynamic mmap/trim thresholds for the rest of this process, and that alone makes our
    training step ~30% faster than in a fresh `tinygrad-lm train` (numpy's temporaries
    would then stop being returned to the OS and page-faulted back in on every step)."""
    if device == "cpu" and not os.environ.get("TINYGRAD_LM_PEAK_CHILD"):
        import json
        import subprocess
        code = ("import json, sys; from tinygrad_lm.bench import measure_matmul_peak; "
                f"print(json.dumps(measure_matmul_peak('cpu', {int(n)}, {int(reps)})))")
        env = dict(os.environ, TINYGRAD_LM_PEAK_CHILD="1", OPENBLAS_NUM_THREADS=str(blas_threads()[0]))
        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = pkg_root + os.pathsep + env.get("PYTHONPATH", "")
        try:
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
            return json.loads(r.stdout.strip().splitlines()[-1])
        except Exception:
            pass  # fall back to measuring here
    xp = backend.xp_for(device)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    with backend.use_device(device):
        if xp is not np:
            a, b = xp.asarray(a), xp.asarray(b)
        out = xp.empty((n, n), dtype=np.float32)
        xp.matmul(a, b, out=out)
        _sync(device)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            xp.matmul(a, b, out=out)
            _sync(device)
            times.append(time.perf_counter() - t0)
    flop = 2.0 * n ** 3
    return {"device": device, "n": n, "reps": reps, "gflops_peak": flop / min(times) / 1e9,
            "gflops_median": flop / statistics.median(times) / 1e9}


def _quantiles(xs):
    s = sorted(xs)
    if len(s) < 2:
        return s[0], s[0]
    q = statistics.quantiles(s, n=4, method="inclusive")
    return q[0], q[2]


def _progress(total, desc, quick):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="run", file=sys.stderr, dynamic_ncols=True, leave=False,
                disable=None if not quick else True)


def _write_csv(path, fields, rows):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt_csv(r.get(k, "")) for k in fields})
    os.replace(tmp, path)


def _fmt_csv(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def _table(headers, rows, align=None) -> str:
    cells = [[str(c) for c in r] for r in rows]
    w = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    align = align or ["<"] + [">"] * (len(headers) - 1)
    line = lambda r: "  ".join(f"{c:{a}{n}}" for c, a, n in zip(r, align, w))  # noqa: E731
    return "\n".join([line(headers), "  ".join("-" * n for n in w)] + [line(r) for r in cells])


# ================================================================ op level
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
    from .nn import functional as F
    from .optim import AdamW
    built = _build(op, n, rng, F, lambda a: Tensor(a, device=device, requires_grad=True),
                   lambda a: Tensor(a, device=device), AdamW)
    xp = backend.xp_for(device)

    def out_grad(shape):
        if not shape:
            return None
        with backend.use_device(device):
            return Tensor._wrap(xp.asarray(np.random.default_rng(1).standard_normal(shape, dtype=np.float32)))
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


def _time_case(case, sync, s: _Settings, budget_s: float):
    """{pass: [seconds, ...]}: warm-up (at least `op_warmup` calls and `settle_s` seconds),
    then as many repetitions as fit `budget_s`."""
    def once():
        case.reset()
        sync()
        t0 = time.perf_counter()
        out = case.fwd()
        sync()
        t1 = time.perf_counter()
        if case.bwd is None:
            return (t1 - t0,)
        case.bwd(out)
        sync()
        return t1 - t0, time.perf_counter() - t1

    t, n, t_end = None, 0, time.perf_counter() + s.settle_s
    while n < s.op_warmup or time.perf_counter() < t_end:  # warm up, and let the other pool's spinners time out
        t = once()
        n += 1
    reps = max(s.op_min_reps, min(s.op_max_reps, int(budget_s / max(sum(t), 1e-6))))
    samples = [once() for _ in range(reps)]
    return {p: [x[i] for x in samples] for i, p in enumerate(case.passes)}


def run_ops(s: _Settings, devices, torch, torch_why, ops=None, log=print) -> list[dict]:
    """Every op at every size on every implementation. Per (op, size) the implementations
    take turns, `s.op_rounds` rounds of (warm-up/settle, timed repetitions), so a burst of
    load from another process lands on one round of each rather than on all of one."""
    ops = ops or OPS
    impls = [("ours", d) for d in devices]
    if torch is not None:
        impls.append(("torch", "cpu"))
        if any(d != "cpu" for d in devices) and torch.cuda.is_available():
            impls.append(("torch", "cuda"))
    total = sum(len(s.sizes[op]) for op in ops) * len(impls)
    bar = _progress(total, "ops", s.quick)
    rows = []
    try:
        for op in ops:
            for n in s.sizes[op]:
                cases = []
                for impl, dev in impls:
                    if impl == "ours":
                        cases.append((_make_ours(op, n, dev, np.random.default_rng(0)), lambda d=dev: _sync(d)))
                    else:
                        cases.append((_make_torch(op, n, dev, np.random.default_rng(0), torch),
                                      lambda d=dev: _torch_sync(d, torch)))
                times = [{} for _ in impls]
                for r in range(s.op_rounds):
                    for k in (range(len(impls)) if r % 2 == 0 else reversed(range(len(impls)))):
                        case, sync = cases[k]
                        for p, ts in _time_case(case, sync, s, s.op_budget_s / s.op_rounds).items():
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
    text = [_table(hdr, out, ["<", "<", "<"] + [">"] * 6)]
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


def plot_ops(summ, cross, path, have_gpu: bool, torch_why: str, log=print):
    """GPU speedup against size (crossovers marked) and ours/torch on the CPU against size."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("plot: matplotlib is not installed, so no PNG (pip install matplotlib); the CSV and table have the numbers")
        return None
    # one line per op: forward + backward (or the step) summed
    tot = {}
    for d in summ:
        e = tot.setdefault((d["op"], d["elements"]), {})
        for k in ("cpu_ms", "gpu_ms", "torch_ms"):
            if k in d:
                e[k] = e.get(k, 0.0) + d[k]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    ax = axes[0]
    if have_gpu:
        for op in OPS:
            pts = sorted((el, v["cpu_ms"] / v["gpu_ms"]) for (o, el), v in tot.items() if o == op and "gpu_ms" in v and "cpu_ms" in v)
            if not pts:
                continue
            line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=op)
            c = None
            for el, sp in reversed(pts):
                if sp > 1:
                    c = el
                else:
                    break
            if c is not None and c != pts[0][0]:
                ax.axvline(c, color=line.get_color(), ls=":", lw=1)
        ax.axhline(1.0, color="k", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("elements (output / main tensor)")
        ax.set_ylabel("GPU speedup = our CPU ms / our GPU ms (fwd+bwd)")
        ax.set_title("numpy vs cupy: below 1 the CPU wins (dotted: crossover)")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no GPU usable in this run:\nGPU speedup not measured", ha="center", va="center",
                transform=ax.transAxes, fontsize=13)
        ax.set_axis_off()
    ax = axes[1]
    any_torch = False
    for op in OPS:
        pts = sorted((el, v["cpu_ms"] / v["torch_ms"]) for (o, el), v in tot.items() if o == op and "torch_ms" in v and "cpu_ms" in v)
        if pts:
            any_torch = True
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=op)
    if any_torch:
        ax.axhline(1.0, color="k", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("elements (output / main tensor)")
        ax.set_ylabel("ours / PyTorch eager, CPU (fwd+bwd ms)")
        ax.set_title("CPU: above 1 PyTorch is faster")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, f"PyTorch: {torch_why}", ha="center", va="center", transform=ax.transAxes, fontsize=13)
        ax.set_axis_off()
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ================================================================ model level
def flops_per_step(n_params_nonemb: int, cfg: dict) -> float:
    """nanoGPT's estimate_mfu numerator for one training step (see FLOP_FORMULA)."""
    L, C, Tb, B = cfg["n_layer"], cfg["n_embd"], cfg["block_size"], cfg["batch_size"]
    per_token = 6 * n_params_nonemb + 12 * L * C * Tb
    return float(per_token * Tb * B)


def _named_arrays(model) -> dict:
    """name -> numpy array of our model's parameters."""
    if hasattr(model, "named_parameters"):
        items = model.named_parameters()
        items = items.items() if isinstance(items, dict) else items
    else:
        items = model.state_dict().items()
    return {k: backend.to_numpy(v.data if isinstance(v, Tensor) else v) for k, v in items}


def _n_params_nonemb(arrays: dict) -> int:
    seen, n = set(), 0
    for k, a in arrays.items():
        if k == "transformer.wpe.weight":
            continue
        if k in ("lm_head.weight", "transformer.wte.weight"):
            if "tied" in seen:
                continue
            seen.add("tied")
        n += a.size
    return n


def build_ours(cfg: dict, device: str, seed: int = 1337):
    from .models.gpt import GPT, GPTConfig
    _manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=cfg["vocab_size"], block_size=cfg["block_size"], n_layer=cfg["n_layer"],
                          n_head=cfg["n_head"], n_embd=cfg["n_embd"], dropout=cfg["dropout"], bias=cfg["bias"]))
    if device != "cpu":
        model.to(device)
    model.train()
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    return model, opt


def ours_step_fn(model, opt, device, grad_clip=1.0):
    from .train import train_step

    def step(x, y):
        # reading the loss synchronizes a GPU, as in a training loop
        return float(train_step(model, opt, x, y, grad_clip).data)
    return step


def _batches(cfg, k, seed=0):
    rng = np.random.default_rng(seed)
    V, Tb, B = cfg["vocab_size"], cfg["block_size"], cfg["batch_size"]
    return [(rng.integers(0, V, (B, Tb)), rng.integers(0, V, (B, Tb))) for _ in range(k)]


def time_ours_alone(config: str, device: str, warmup: int, steps: int) -> list[float]:
    """Seconds per step of our training step run back to back (no interleaving); meant for a
    child process in which torch is never imported (see run_model)."""
    cfg = MODEL_CONFIGS[config]
    model, opt = build_ours(cfg, device)
    batches = [(Tensor(x, device=device), Tensor(y, device=device)) for x, y in _batches(cfg, 4)]
    step = ours_step_fn(model, opt, device)
    out = []
    for i in range(warmup + steps):
        _sync(device)
        t0 = time.perf_counter()
        step(*batches[i % 4])
        _sync(device)
        if i >= warmup:
            out.append(time.perf_counter() - t0)
    return out


def _ours_in_child(config, device, warmup, steps):
    """time_ours_alone in a fresh interpreter (no torch, no allocator state from this one)."""
    import json
    import subprocess
    code = ("import json; from tinygrad_lm.bench import time_ours_alone; "
            f"print(json.dumps(time_ours_alone({config!r}, {device!r}, {int(warmup)}, {int(steps)})))")
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(blas_threads()[0]))
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = pkg_root + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_model(s: _Settings, config: str, device: str, torch, torch_why: str, peak: dict, block: int | None = None,
              log=print) -> tuple[list[dict], list[dict], dict]:
    """Time ours and PyTorch's training step for one config, interleaved: each implementation
    in turn (rotating who goes first) runs `s.model_settle` untimed steps, then `block` timed
    ones. The settle step matters when both engines share the cores: numpy's OpenBLAS
    threads and torch's OpenMP threads keep spinning for a while after their last call,
    and the first step after a hand-over pays for the other pool's spinning (up to ~10 ms
    per op on 2 cores). Returns (summary rows, per-step rows, notes)."""
    block = block or s.model_block
    cfg = MODEL_CONFIGS[config]
    model, opt = build_ours(cfg, device)
    arrays = _named_arrays(model)
    n_nonemb = _n_params_nonemb(arrays)
    fl = flops_per_step(n_nonemb, cfg)
    batches = _batches(cfg, 4)
    ours_batches = [(Tensor(x, device=device), Tensor(y, device=device)) for x, y in batches]
    step = ours_step_fn(model, opt, device)
    impls = {"ours": (lambda i: step(*ours_batches[i % len(ours_batches)]), lambda: _sync(device))}
    notes = {"torch": torch_why}
    ref = load_torch_reference() if torch is not None else None
    if torch is not None and ref is None:
        notes["torch"] = "benchmarks/torch_reference.py not found"
    tdev = "cpu" if device == "cpu" else ("cuda" if torch is not None and torch.cuda.is_available() else None)
    if torch is not None and ref is not None and tdev is None:
        notes["torch"] = "this torch has no CUDA"
    if torch is not None and ref is not None and tdev is not None:
        tc = ref.TorchGPTConfig(cfg["vocab_size"], cfg["block_size"], cfg["n_layer"], cfg["n_head"], cfg["n_embd"],
                                cfg["dropout"], cfg["bias"])
        tb = [(torch.as_tensor(x, device=tdev), torch.as_tensor(y, device=tdev)) for x, y in batches]
        for name, attn in (("torch", "explicit"), ("torch_sdpa", "sdpa")):
            m = ref.TorchGPT(tc, attn).to(tdev)
            m.load_arrays(arrays)  # the same initial weights as ours
            m.train()
            o = m.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
            impls[name] = ((lambda i, m=m, o=o: ref.train_step(m, o, *tb[i % len(tb)])),
                           (lambda: _torch_sync(tdev, torch)))
    names = list(impls)
    times = {k: [] for k in names}
    first_loss = {}

    def timed(name, i):
        fn, sync = impls[name]
        sync()
        t0 = time.perf_counter()
        loss = fn(i)
        sync()
        dt = time.perf_counter() - t0
        first_loss.setdefault(name, loss)
        return dt

    # warm-up (interleaved too); the first round also gives the step time for the budget
    round_s = 0.0
    for w in range(s.model_warmup):
        round_s = sum(timed(n, w) for n in names)
    settle = max(s.model_settle * round_s, s.settle_s * len(names))
    per_timed = round_s + settle / block  # seconds per timed step of every implementation
    steps = max(s.model_min_steps, min(s.model_max_steps, int(s.model_budget_s / max(per_timed, 1e-6))))
    steps = -(-steps // block) * block
    bar = _progress(steps, f"model {config} {device}", s.quick)
    per_step = []
    try:
        for r in range(steps // block):
            order = names[r % len(names):] + names[:r % len(names)]  # rotate who goes first
            for name in order:
                t_end = time.perf_counter() + s.settle_s
                j = 0
                while j < s.model_settle or time.perf_counter() < t_end:
                    timed(name, j)
                    j += 1
                for j in range(block):
                    i = r * block + j
                    dt = timed(name, i)
                    times[name].append(dt)
                    per_step.append({"config": config, "device": device, "impl": name, "round": i, "ms": 1e3 * dt})
            if bar is not None:
                bar.update(block)
    finally:
        if bar is not None:
            bar.close()
    tokens = cfg["batch_size"] * cfg["block_size"]
    threads = blas_threads()[0] if device == "cpu" else ""
    ours_med = statistics.median(times["ours"])
    rows = []
    for name in names:
        ts = times[name]
        med = statistics.median(ts)
        q1, q3 = _quantiles(ts)
        th = threads if name == "ours" else (torch.get_num_threads() if tdev == "cpu" else "")
        rows.append({"config": config, "device": device if name == "ours" else f"{tdev} (torch)", "impl": name,
                     "threads": th, "n_params": n_nonemb, "tokens_per_step": tokens, "gflop_per_step": fl / 1e9,
                     "warmup": s.model_warmup, "steps": len(ts), "ms_median": 1e3 * med, "ms_min": 1e3 * min(ts),
                     "ms_max": 1e3 * max(ts), "ms_q1": 1e3 * q1, "ms_q3": 1e3 * q3, "tokens_per_s": tokens / med,
                     "gflops": fl / med / 1e9, "peak_gflops": peak["gflops_peak"],
                     "frac_of_peak": fl / med / 1e9 / peak["gflops_peak"], "ours_over_this": ours_med / med,
                     "loss_first": first_loss.get(name, float("nan"))})
    if "torch" in first_loss:
        notes["loss_check"] = abs(first_loss["ours"] - first_loss["torch"])
    if s.ours_alone and len(names) > 1:
        # ours once more, in its own process: sharing a process with torch changes glibc's
        # allocator state (torch's frees raise the dynamic mmap/trim thresholds), which can
        # make our numpy temporaries cheaper than in a plain `tinygrad-lm train`
        try:
            ts = _ours_in_child(config, device, s.model_warmup, len(times["ours"]))
            med = statistics.median(ts)
            q1, q3 = _quantiles(ts)
            rows.append(dict(rows[0], impl="ours_own_process", steps=len(ts), ms_median=1e3 * med, ms_min=1e3 * min(ts),
                             ms_max=1e3 * max(ts), ms_q1=1e3 * q1, ms_q3=1e3 * q3, tokens_per_s=tokens / med,
                             gflops=fl / med / 1e9, frac_of_peak=fl / med / 1e9 / peak["gflops_peak"],
                             ours_over_this=ours_med / med, loss_first=first_loss["ours"]))
            for name in names[1:]:
                notes.setdefault("own_process", []).append((name, med / statistics.median(times[name])))
        except Exception as e:  # the interleaved figures stand on their own
            notes["own_process_error"] = f"{type(e).__name__}: {e}"
    return rows, per_step, notes


def format_model(rows, notes_by, peaks) -> str:
    hdr = ["config", "impl", "device", "threads", "ms/step median", "[min, max]", "IQR", "tokens/s", "GFLOP/s",
           "% of peak", "ours/this"]
    out = []
    for r in rows:
        out.append([r["config"], r["impl"], r["device"], r["threads"], f"{r['ms_median']:.2f}",
                    f"[{r['ms_min']:.1f}, {r['ms_max']:.1f}]", f"{r['ms_q1']:.1f}-{r['ms_q3']:.1f}",
                    f"{r['tokens_per_s']:,.0f}", f"{r['gflops']:.2f}", f"{100 * r['frac_of_peak']:.1f}%",
                    f"{r['ours_over_this']:.2f}"])
    text = [_table(hdr, out, ["<", "<", "<"] + [">"] * 8)]
    for (config, device), notes in notes_by.items():
        if notes.get("torch"):
            text.append(f"{config} on {device}: PyTorch column: {notes['torch']}")
        for name, ratio in notes.get("own_process", []):
            text.append(f"{config} on {device}: ours in its own process (not interleaved, no torch loaded) / {name} "
                        f"interleaved = {ratio:.2f}")
        if notes.get("own_process_error"):
            text.append(f"{config} on {device}: ours in its own process failed: {notes['own_process_error']}")
        if "loss_check" in notes:
            text.append(f"{config} on {device}: first-step loss, ours vs torch (same weights, same batch): "
                        f"|difference| = {notes['loss_check']:.2e}")
    for dev, p in peaks.items():
        text.append(f"matmul peak on {dev}: {p['gflops_peak']:.1f} GFLOP/s (float32 {p['n']}x{p['n']} @ {p['n']}x{p['n']}, "
                    f"best of {p['reps']}; median {p['gflops_median']:.1f}; measured before and after the model runs, "
                    f"the better kept)")
    text.append(FLOP_FORMULA)
    return "\n".join(text)


# ================================================================ entry point
def run_bench(args, log=print) -> int:
    quick = bool(getattr(args, "quick", False))
    what = getattr(args, "what", "all") or "all"
    s = _Settings(quick)
    if getattr(args, "budget", None):
        s.model_budget_s = float(args.budget)
    if getattr(args, "warmup", None) is not None:
        s.model_warmup = int(args.warmup)
    out_dir = getattr(args, "out_dir", None) or "bench_out"
    ops = getattr(args, "ops", None)
    if ops:
        bad = [o for o in ops if o not in OPS]
        if bad:
            raise ValueError(f"--ops: unknown op(s) {', '.join(bad)}; choose from {', '.join(OPS)}")
    # devices: explicit ones must work (DeviceError otherwise); by default cpu, plus cuda:0 when usable
    if getattr(args, "device", None):
        devices = list(dict.fromkeys(backend.canonical_device(d) for d in args.device))
    else:
        devices = ["cpu"] + (["cuda:0"] if backend.cuda_available() else [])
        if len(devices) == 1:
            log("GPU: none usable (no cupy or no NVIDIA GPU): CPU only")
    have_gpu = any(d != "cpu" for d in devices)
    configs = getattr(args, "config", None) or (["cpu", "gpu"] if have_gpu else ["cpu"])
    bad = [c for c in configs if c not in MODEL_CONFIGS]
    if bad:
        raise ValueError(f"--config: unknown config(s) {', '.join(bad)}; choose from {', '.join(MODEL_CONFIGS)}")
    threads = getattr(args, "threads", None)
    limiter = None
    if threads:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            raise ImportError("--threads needs threadpoolctl (pip install threadpoolctl) to set numpy's BLAS threads") from None
        limiter = threadpool_limits(int(threads), user_api="blas")
    try:
        return _run(args, s, quick, what, out_dir, ops, threads, devices, configs, log)
    finally:
        if limiter is not None:
            limiter.restore_original_limits()


def _run(args, s, quick, what, out_dir, ops, threads, devices, configs, log) -> int:
    have_gpu = any(d != "cpu" for d in devices)
    torch, torch_why = load_torch(bool(getattr(args, "no_torch", False)), threads)
    info = machine_info(torch)
    log(f"machine: {info['cpu']}, {info['logical_cpus']} logical CPUs; numpy {info['numpy']} with {info['blas']}, "
        f"{info['blas_threads']} BLAS threads ({info['blas_threads_from']}); "
        + (f"torch {info['torch']} with {info['torch_threads']} threads" if torch is not None else torch_why)
        + f"; GPU: {info['gpu']}; load average {_loadavg()}" + ("   [--quick: a smoke run, not a measurement]" if quick else ""))
    os.makedirs(out_dir, exist_ok=True)
    peaks = {}
    for d in devices:
        peaks[d] = measure_matmul_peak(d, s.peak_n, s.peak_reps)
    if what in ("model", "all"):
        block = int(getattr(args, "block", None) or s.model_block)
        mrows, steps, notes_by = [], [], {}
        for d in devices:
            for c in configs:
                if d == "cpu" and c == "gpu" and not quick:
                    log("note: the gpu config on the CPU takes seconds per step; the step count follows the time budget")
                r, st, notes = run_model(s, c, d, torch, torch_why, peaks[d], block=block, log=log)
                mrows += r
                steps += st
                notes_by[(c, d)] = notes
        for d in devices:  # the peak again after the run: the best of the two is the peak (the machine is shared)
            again = measure_matmul_peak(d, s.peak_n, s.peak_reps)
            if again["gflops_peak"] > peaks[d]["gflops_peak"]:
                peaks[d] = again
        for r in mrows:
            dev = r["device"] if r["impl"] == "ours" else (r["device"].split(" ")[0].replace("cuda", "cuda:0") if "cuda" in r["device"] else "cpu")
            pk = peaks.get(dev, peaks.get("cpu"))["gflops_peak"]
            r["peak_gflops"], r["frac_of_peak"] = pk, r["gflops"] / pk
        path = os.path.join(out_dir, "model.csv")
        _write_csv(path, MODEL_FIELDS, mrows)
        _write_csv(os.path.join(out_dir, "model_steps.csv"), STEP_FIELDS, steps)
        log("\n== model: one training step (forward, backward, clip_grad_norm_(1.0), AdamW, zero_grad), float32, "
            f"ours and PyTorch alternating in turns of untimed steps (>= {s.model_settle}, >= {s.settle_s} s) "
            f"+ {block} timed step(s), rotating "
            f"order, after {s.model_warmup} warm-up steps each")
        log(format_model(mrows, notes_by, peaks))
        log(f"wrote {path} and {os.path.join(out_dir, 'model_steps.csv')}")
    if what in ("ops", "all"):
        rows = run_ops(s, devices, torch, torch_why, ops=ops, log=log)
        path = os.path.join(out_dir, "ops.csv")
        _write_csv(path, OP_FIELDS, rows)
        summ, cross = op_summary(rows)
        log("\n== ops: median ms per call (forward and backward timed separately; adamw = one optimizer step)")
        log(format_ops(summ, cross, have_gpu, torch_why))
        png = plot_ops(summ, cross, os.path.join(out_dir, "ops_speedup.png"), have_gpu, torch_why, log=log)
        log(f"wrote {path}" + (f" and {png}" if png else ""))
    log(f"load average at the end: {_loadavg()} (other processes share these cores: compare the ratios, not the absolutes)")
    return 0


# ================================================================ profile of the training step
class _OpTimer:
    """An engine.observer that sums forward and backward seconds per op class."""

    def __init__(self):
        self.fwd, self.bwd, self.nf, self.nb = {}, {}, {}, {}

    def forward(self, ctx, inputs, out, params, dt):
        k = type(ctx).__name__
        self.fwd[k] = self.fwd.get(k, 0.0) + dt
        self.nf[k] = self.nf.get(k, 0) + 1

    def backward(self, ctx, out, g, in_grads, dt):
        k = type(ctx).__name__
        self.bwd[k] = self.bwd.get(k, 0.0) + dt
        self.nb[k] = self.nb.get(k, 0) + 1


def profile_model_step(config: str = "cpu", device: str = "cpu", steps: int = 30, warmup: int = 5,
                       cprofile_top: int = 25) -> dict:
    """Where our training step's time goes: phase wall times (forward, backward, clip, AdamW,
    zero_grad) over `steps` steps, op time per Function class inside forward and backward
    (through engine.observer), and a cProfile listing of the same steps."""
    import cProfile
    import io
    import pstats
    from .optim import clip_grad_norm_
    cfg = MODEL_CONFIGS[config]
    model, opt = build_ours(cfg, device)
    batches = [(Tensor(x, device=device), Tensor(y, device=device)) for x, y in _batches(cfg, 4)]
    step = ours_step_fn(model, opt, device)
    for i in range(warmup):
        step(*batches[i % 4])

    def phased(i, acc):
        x, y = batches[i % 4]
        t0 = time.perf_counter()
        _, loss = model(x, y)
        _sync(device)
        t1 = time.perf_counter()
        loss.backward()
        _sync(device)
        t2 = time.perf_counter()
        clip_grad_norm_(model.parameters(), 1.0)
        _sync(device)
        t3 = time.perf_counter()
        opt.step()
        _sync(device)
        t4 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        float(loss.data)
        t5 = time.perf_counter()
        for k, v in zip(("forward", "backward", "clip_grad_norm_", "adamw_step", "zero_grad"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            acc.setdefault(k, []).append(v)

    # 1) phases without any instrumentation
    phases = {}
    for i in range(steps):
        phased(i, phases)
    # 2) per-op time with the observer (adds a little overhead per op)
    prev = engine.observer
    obs_phases, per_fwd, per_bwd = {}, {}, {}
    try:
        for i in range(steps):  # a fresh timer per step, so the per-op figures are medians over steps too
            timer = engine.observer = _OpTimer()
            phased(i, obs_phases)
            for acc, src in ((per_fwd, timer.fwd), (per_bwd, timer.bwd)):
                for k, v in src.items():
                    acc.setdefault(k, []).append(v)
    finally:
        engine.observer = prev
    # 3) cProfile
    pr = cProfile.Profile()
    pr.enable()
    for i in range(steps):
        step(*batches[i % 4])
    pr.disable()
    buf = io.StringIO()
    st = pstats.Stats(pr, stream=buf)
    st.sort_stats("tottime").print_stats(cprofile_top)
    buf2 = io.StringIO()
    pstats.Stats(pr, stream=buf2).sort_stats("cumulative").print_stats(cprofile_top)
    med = {k: statistics.median(v) for k, v in phases.items()}
    return {"config": config, "device": device, "steps": steps, "phase_median_s": med,
            "step_median_s": sum(med.values()),
            "op_fwd_s": {k: statistics.median(v) for k, v in per_fwd.items()},
            "op_bwd_s": {k: statistics.median(v) for k, v in per_bwd.items()},
            "op_calls": {k: timer.nf.get(k, 0) for k in set(timer.nf) | set(timer.nb)},
            "observed_phase_median_s": {k: statistics.median(v) for k, v in obs_phases.items()},
            "cprofile_tottime": buf.getvalue(), "cprofile_cumulative": buf2.getvalue()}


def format_profile(p: dict) -> str:
    step = p["step_median_s"]
    lines = [f"profile of our {p['config']} training step on {p['device']}: {1e3 * step:.2f} ms/step "
             f"(sum of phase medians over {p['steps']} steps)", "", "phase shares (no instrumentation):"]
    for k, v in p["phase_median_s"].items():
        lines.append(f"  {k:<16} {1e3 * v:8.2f} ms  {100 * v / step:5.1f}%")
    ob = p["observed_phase_median_s"]
    ostep = sum(ob.values())
    fwd_ops, bwd_ops = sum(p["op_fwd_s"].values()), sum(p["op_bwd_s"].values())
    lines += ["", f"per op class, medians over steps with the op timer on (step {1e3 * ostep:.2f} ms: forward "
              f"{1e3 * ob['forward']:.2f}, backward {1e3 * ob['backward']:.2f}, the rest "
              f"{1e3 * (ostep - ob['forward'] - ob['backward']):.2f}); time inside each op's forward/backward:"]
    rows = []
    for k in sorted(set(p["op_fwd_s"]) | set(p["op_bwd_s"]), key=lambda k: -(p["op_fwd_s"].get(k, 0) + p["op_bwd_s"].get(k, 0))):
        f, b = p["op_fwd_s"].get(k, 0.0), p["op_bwd_s"].get(k, 0.0)
        rows.append([k, p["op_calls"].get(k, 0), f"{1e3 * f:.2f}", f"{1e3 * b:.2f}", f"{1e3 * (f + b):.2f}",
                     f"{100 * (f + b) / ostep:.1f}%"])
    rest_f, rest_b = ob["forward"] - fwd_ops, ob["backward"] - bwd_ops
    rows.append(["(outside ops: modules, graph, Tensor glue)", "", f"{1e3 * rest_f:.2f}", f"{1e3 * rest_b:.2f}",
                 f"{1e3 * (rest_f + rest_b):.2f}", f"{100 * (rest_f + rest_b) / ostep:.1f}%"])
    for k in ("clip_grad_norm_", "adamw_step", "zero_grad"):
        rows.append([f"({k})", "", "", "", f"{1e3 * ob[k]:.2f}", f"{100 * ob[k] / ostep:.1f}%"])
    lines.append(_table(["op", "calls/step", "fwd ms", "bwd ms", "total ms", "% of step"], rows))
    return "\n".join(lines)


def profile_torch_step(config: str = "cpu", attn: str = "explicit", steps: int = 20, warmup: int = 5, top: int = 25) -> str:
    """torch.profiler's per-op self CPU time for PyTorch's step (benchmarks/torch_reference.py),
    to set beside ours. Returns the key_averages table, or why not."""
    torch, why = load_torch()
    ref = load_torch_reference() if torch is not None else None
    if ref is None:
        return why or "benchmarks/torch_reference.py not found"
    cfg = MODEL_CONFIGS[config]
    model, _ = build_ours(cfg, "cpu")
    tm = ref.TorchGPT(ref.TorchGPTConfig(cfg["vocab_size"], cfg["block_size"], cfg["n_layer"], cfg["n_head"],
                                         cfg["n_embd"], cfg["dropout"], cfg["bias"]), attn)
    tm.load_arrays(_named_arrays(model))
    opt = tm.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    bs = [(torch.as_tensor(x), torch.as_tensor(y)) for x, y in _batches(cfg, 4)]
    for i in range(warmup):
        ref.train_step(tm, opt, *bs[i % 4])
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            ref.train_step(tm, opt, *bs[i % 4])
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)
