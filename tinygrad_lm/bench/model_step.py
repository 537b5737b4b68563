"""The model step (`tinygrad-lm bench --what model`): one full GPT training step (forward,
backward, clip_grad_norm_(1.0), AdamW step, zero_grad), ours against PyTorch eager.

Implementations, by the name they get in model.csv:

* `ours`: tinygrad_lm's GPT and AdamW with the fused ops (the default);
* `ours_composed` (with `--composed`): the same with every op composed from primitives
  (`F.use_fused(False)`), so `ours_over_this` is what the fused ops buy;
* `torch`, `torch_sdpa`: the PyTorch twin of our GPT (`torch_reference.py`), explicit softmax
  attention and `F.scaled_dot_product_attention`;
* `ours_own_process`: `ours` once more, back to back in a fresh child process without torch.

All start from our initial weights (copied into PyTorch's model by name) and take the same
four batches. Inside one process they run interleaved: each in turn, in a rotating order,
some untimed settle steps then a block of timed ones, so slow drifts of a shared machine hit
every implementation alike. `time_alone` runs any one implementation back to back, in a
fresh process through `harness.run_in_child`.

On a GPU, ours also reports the kernels it launched per timed step (`kernel_launches_per_step`
in model.csv, `kernel_launches` per step in model_steps.csv): tinygrad_lm's own CUDA kernels,
counted on the host by `backend.kernel_launches()` before and after the step; cupy's generic
kernels are not counted. Empty on the CPU and for PyTorch.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from .. import Tensor, backend, manual_seed
from .configs import FLOP_FORMULA, MODEL_CONFIGS, flops_per_step, model_kwargs, n_params_nonemb
from .harness import Settings, progress, quantiles, run_in_child, sync, table, torch_sync
from .machine import blas_threads, load_torch

MODEL_FIELDS = ["config", "device", "impl", "threads", "n_params", "tokens_per_step", "gflop_per_step", "warmup", "steps",
                "ms_median", "ms_min", "ms_max", "ms_q1", "ms_q3", "tokens_per_s", "gflops", "peak_gflops",
                "frac_of_peak", "ours_over_this", "loss_first", "kernel_launches_per_step"]
STEP_FIELDS = ["config", "device", "impl", "round", "ms", "kernel_launches"]
TORCH_IMPLS = {"torch": "explicit", "torch_sdpa": "sdpa"}  # name -> torch_reference's attention
OURS_IMPLS = ("ours", "ours_composed")


# ================================================================ the implementations
def build_ours(cfg: dict, device: str, seed: int = 1337):
    """(model, AdamW) for a bench config: nanoGPT's weight-decay groups, lr 1e-3, betas (0.9, 0.99)."""
    from ..models.gpt import GPT, GPTConfig
    manual_seed(seed)
    model = GPT(GPTConfig(**model_kwargs(cfg)))
    if device != "cpu":
        model.to(device)
    model.train()
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    return model, opt


def ours_step_fn(model, opt, device, grad_clip=1.0, fused: bool = True):
    """step(x, y) -> the loss as a float (reading it synchronizes a GPU, as in a training loop)."""
    from ..nn import functional as F
    from ..train import train_step

    def step(x, y):
        return float(train_step(model, opt, x, y, grad_clip).data)

    def composed_step(x, y):
        with F.use_fused(False):
            return step(x, y)
    return step if fused else composed_step


def named_arrays(model) -> dict:
    """name -> numpy array of our model's parameters."""
    items = model.named_parameters()
    items = items.items() if isinstance(items, dict) else items
    return {k: backend.to_numpy(v.data if isinstance(v, Tensor) else v) for k, v in items}


def make_batches(cfg, k, seed=0):
    """k (x, y) pairs of random token ids, numpy int64 (B, T): the same for every implementation."""
    rng = np.random.default_rng(seed)
    V, Tb, B = cfg["vocab_size"], cfg["block_size"], cfg["batch_size"]
    return [(rng.integers(0, V, (B, Tb)), rng.integers(0, V, (B, Tb))) for _ in range(k)]


def torch_device(device: str, torch) -> str | None:
    """PyTorch's device for our `device` (None: this torch has no CUDA)."""
    if device == "cpu":
        return "cpu"
    return "cuda" if torch.cuda.is_available() else None


def build_impls(cfg: dict, device: str, names, torch=None):
    """({name: (step(i) -> loss, sync())}, our initial weights as name -> array) for the
    implementations in `names` (ours, ours_composed, torch, torch_sdpa); step(i) trains on
    batch i % 4. Every model starts from the same weights."""
    model, opt = build_ours(cfg, device)
    arrays = named_arrays(model)
    batches = make_batches(cfg, 4)
    impls, tb = {}, None
    for name in names:
        if name in ("ours", "ours_composed"):
            m, o = (model, opt) if name == "ours" else build_ours(cfg, device)  # same seed: same weights
            step = ours_step_fn(m, o, device, fused=name == "ours")
            xb = [(Tensor(x, device=device), Tensor(y, device=device)) for x, y in batches]
            impls[name] = ((lambda i, step=step, xb=xb: step(*xb[i % len(xb)])), (lambda: sync(device)))
        elif name in TORCH_IMPLS:
            from . import torch_reference as ref
            tdev = torch_device(device, torch)
            if tb is None:
                tb = [(torch.as_tensor(x, device=tdev), torch.as_tensor(y, device=tdev)) for x, y in batches]
            m = ref.TorchGPT(ref.TorchGPTConfig(**model_kwargs(cfg)), TORCH_IMPLS[name]).to(tdev)
            m.load_arrays(arrays)  # the same initial weights as ours
            m.train()
            o = m.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
            impls[name] = ((lambda i, m=m, o=o: ref.train_step(m, o, *tb[i % len(tb)])),
                           (lambda tdev=tdev: torch_sync(tdev, torch)))
        else:
            raise ValueError(f"bench: unknown implementation {name!r}; choose from ours, ours_composed, "
                             f"{', '.join(TORCH_IMPLS)}")
    return impls, arrays


def time_alone(impl: str, config: str, device: str, warmup: int, steps: int) -> list[float]:
    """Seconds per step of one implementation run back to back (no interleaving); meant for
    a fresh child process (`harness.run_in_child`), where nothing else ran before it."""
    torch = load_torch()[0] if impl in TORCH_IMPLS else None
    impls, _ = build_impls(MODEL_CONFIGS[config], device, [impl], torch)
    fn, sync_fn = impls[impl]
    out = []
    for i in range(warmup + steps):
        sync_fn()
        t0 = time.perf_counter()
        fn(i)
        sync_fn()
        if i >= warmup:
            out.append(time.perf_counter() - t0)
    return out


# ================================================================ interleaved timing
def run_model(s: Settings, config: str, device: str, torch, torch_why: str, peak: dict, block: int | None = None,
              composed: bool = False, log=print) -> tuple[list[dict], list[dict], dict]:
    """Time ours (and ours composed, with `composed`) and PyTorch's training step for one
    config, interleaved: each implementation in turn (rotating who goes first) runs
    `s.model_settle` untimed steps (for at least `s.settle_s`), then `block` timed ones.
    Then ours alone in a child process when PyTorch ran here too. Returns (summary rows,
    per-step rows, notes)."""
    block = block or s.model_block
    cfg = MODEL_CONFIGS[config]
    notes = {"torch": torch_why}
    names = ["ours"] + (["ours_composed"] if composed else [])
    tdev = torch_device(device, torch) if torch is not None else None
    if torch is not None and tdev is None:
        notes["torch"] = "this torch has no CUDA"
    if tdev is not None:
        names += list(TORCH_IMPLS)
    impls, arrays = build_impls(cfg, device, names, torch)
    n_nonemb = n_params_nonemb(arrays)
    fl = flops_per_step(n_nonemb, cfg)
    times = {k: [] for k in names}
    launches = {k: [] for k in names}  # our own kernels launched per timed step (GPU only)
    count_launches = device != "cpu"
    first_loss = {}
    last_launches = [""]

    def timed(name, i):
        fn, sync_fn = impls[name]
        sync_fn()
        k0 = backend.kernel_launches()  # a host-side counter: reading it costs no device sync
        t0 = time.perf_counter()
        loss = fn(i)
        sync_fn()
        dt = time.perf_counter() - t0
        last_launches[0] = backend.kernel_launches() - k0 if count_launches and name in OURS_IMPLS else ""
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
    bar = progress(steps, f"model {config} {device}", s.quick)
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
                    launches[name].append(last_launches[0])
                    per_step.append({"config": config, "device": device, "impl": name, "round": i, "ms": 1e3 * dt,
                                     "kernel_launches": last_launches[0]})
            if bar is not None:
                bar.update(block)
    finally:
        if bar is not None:
            bar.close()
    tokens = cfg["batch_size"] * cfg["block_size"]
    ours_med = statistics.median(times["ours"])

    def row(name, ts, **fields):
        med = statistics.median(ts)
        q1, q3 = quantiles(ts)
        return dict({"config": config, "impl": name, "n_params": n_nonemb, "tokens_per_step": tokens,
                     "gflop_per_step": fl / 1e9, "warmup": s.model_warmup, "steps": len(ts), "ms_median": 1e3 * med,
                     "ms_min": 1e3 * min(ts), "ms_max": 1e3 * max(ts), "ms_q1": 1e3 * q1, "ms_q3": 1e3 * q3,
                     "tokens_per_s": tokens / med, "gflops": fl / med / 1e9, "peak_gflops": peak["gflops_peak"],
                     "frac_of_peak": fl / med / 1e9 / peak["gflops_peak"], "ours_over_this": ours_med / med}, **fields)

    ours_threads = blas_threads()[0] if device == "cpu" else ""
    rows = []
    for name in names:
        if name in TORCH_IMPLS:
            where = dict(device=f"{tdev} (torch)", threads=torch.get_num_threads() if tdev == "cpu" else "")
        else:
            where = dict(device=device, threads=ours_threads)
        counted = [n for n in launches[name] if n != ""]
        rows.append(row(name, times[name], loss_first=first_loss.get(name, float("nan")),
                        kernel_launches_per_step=statistics.median_low(counted) if counted else "", **where))
    if "torch" in first_loss:
        notes["loss_check"] = abs(first_loss["ours"] - first_loss["torch"])
    if s.ours_alone and tdev is not None:
        # ours once more, in its own process: sharing a process with torch changes glibc's
        # allocator state in our favour (benchmarks/RESULTS.md, "The allocator")
        try:
            ts = run_in_child("tinygrad_lm.bench.model_step:time_alone", blas_threads=blas_threads()[0], impl="ours",
                              config=config, device=device, warmup=s.model_warmup, steps=len(times["ours"]))
            rows.append(row("ours_own_process", ts, device=device, threads=ours_threads,
                            loss_first=first_loss["ours"]))
            med = statistics.median(ts)
            for name in TORCH_IMPLS:
                notes.setdefault("own_process", []).append((name, med / statistics.median(times[name])))
        except Exception as e:  # the interleaved figures stand on their own
            notes["own_process_error"] = f"{type(e).__name__}: {e}"
    return rows, per_step, notes


def format_model(rows, notes_by, peaks) -> str:
    """The model table, the notes of each (config, device), the matmul peaks and the FLOP formula."""
    hdr = ["config", "impl", "device", "threads", "ms/step median", "[min, max]", "IQR", "tokens/s", "GFLOP/s",
           "% of peak", "ours/this"]
    launches = any(r.get("kernel_launches_per_step", "") != "" for r in rows)  # a GPU ran ours
    if launches:
        hdr.append("launches/step")
    out = []
    for r in rows:
        out.append([r["config"], r["impl"], r["device"], r["threads"], f"{r['ms_median']:.2f}",
                    f"[{r['ms_min']:.1f}, {r['ms_max']:.1f}]", f"{r['ms_q1']:.1f}-{r['ms_q3']:.1f}",
                    f"{r['tokens_per_s']:,.0f}", f"{r['gflops']:.2f}", f"{100 * r['frac_of_peak']:.1f}%",
                    f"{r['ours_over_this']:.2f}"] + ([r.get("kernel_launches_per_step", "")] if launches else []))
    text = [table(hdr, out, ["<", "<", "<"] + [">"] * (len(hdr) - 3))]
    if launches:
        text.append("launches/step: tinygrad_lm's own CUDA kernels launched in one timed step (median; "
                    "backend.kernel_launches() read before and after it); cupy's generic kernels, the matmuls "
                    "included, are not counted")
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
