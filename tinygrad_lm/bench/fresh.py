"""The model step in fresh processes (`tinygrad-lm bench --what model --fresh`): ours and
PyTorch eager (`F.scaled_dot_product_attention`) each in a new interpreter per round,
alternating (the order flips every round), so neither inherits the other's allocator, BLAS
threads or imported libraries. A round's figure is the median of its timed steps; the table
gives the median over rounds, the spread over rounds, the ratio ours / PyTorch (of the medians,
and the minimum, median and maximum of the rounds' own ratios), GFLOP/s against the machine's measured matmul
peak, and each process's peak resident memory (VmHWM: the interpreter, its libraries and the
step's arrays).

With `ablate`, the same rounds also run ours with one CPU change undone or one option taken,
so what each buys is measured in the same run:

* `ours_untiled`: causal attention through the full T x T score matrix
  (TINYGRAD_LM_ATTENTION_TILE=0) instead of the tiled path (ops/attention.py);
* `ours_2threads`: the CPU ops' thread pool at two threads (TINYGRAD_LM_NUM_THREADS=2; the
  default is one: threads.set_num_threads).
"""
from __future__ import annotations

import resource
import statistics

from .configs import MODEL_CONFIGS, flops_per_step
from .harness import quantiles, run_in_child, table
from .machine import blas_threads

FRESH_FIELDS = ["config", "device", "impl", "rounds", "warmup", "steps", "ms_median", "ms_min_round", "ms_max_round", "ms_q1",
                "ms_q3", "ratio_ours", "ratio_min", "ratio_round_median", "ratio_max", "gflops", "frac_of_peak", "peak_rss_mb",
                "loss_first"]
FRESH_ROUND_FIELDS = ["config", "device", "impl", "round", "ms_median", "peak_rss_mb"]

# implementation -> (the child's implementation name, environment for the child)
VARIANTS = {
    "ours": ("ours", {}),
    "torch_sdpa": ("torch_sdpa", {}),
    "ours_untiled": ("ours", {"TINYGRAD_LM_ATTENTION_TILE": "0"}),
    "ours_2threads": ("ours", {"TINYGRAD_LM_NUM_THREADS": "2"}),
}


def fresh_step(impl: str, config: str, device: str, warmup: int, steps: int) -> dict:
    """Run in a fresh child: `steps` timed steps after `warmup` ones; their times (s), the
    first loss, and this process's peak resident memory (MB)."""
    from .model_step import TORCH_IMPLS, build_impls
    from .machine import load_torch
    import time
    torch = load_torch()[0] if impl in TORCH_IMPLS else None
    impls, _ = build_impls(MODEL_CONFIGS[config], device, [impl], torch)
    fn, sync_fn = impls[impl]
    times, loss0 = [], None
    for i in range(warmup + steps):
        sync_fn()
        t0 = time.perf_counter()
        loss = fn(i)
        sync_fn()
        if loss0 is None:
            loss0 = loss
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return {"times": times, "loss_first": loss0, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: VmHWM from /proc/self/status on Linux (the
    high-water mark of this program's own memory), else ru_maxrss. (Linux's ru_maxrss carries
    over the parent's resident size when a child is started by fork and exec, so a child of
    a bench process that has torch loaded would report torch's memory too.)"""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_fresh(config: str, device: str, rounds: int, warmup: int, steps: int, peak_gflops: float,
              names=("ours", "torch_sdpa"), log=print) -> tuple[list[dict], list[dict]]:
    """`rounds` rounds of every implementation in `names` (keys of VARIANTS), each in a fresh
    process, the order reversed every other round. Returns (summary rows, per-round rows)."""
    cfg = MODEL_CONFIGS[config]
    from ..models.gpt import GPT, GPTConfig  # only to count the parameters for the FLOP formula
    from .configs import model_kwargs, n_params_nonemb
    from .model_step import named_arrays
    fl = flops_per_step(n_params_nonemb(named_arrays(GPT(GPTConfig(**model_kwargs(cfg))))), cfg)
    med = {n: [] for n in names}
    rss = {n: [] for n in names}
    loss = {}
    per_round = []
    for r in range(rounds):
        order = list(names) if r % 2 == 0 else list(names)[::-1]
        for name in order:
            impl, env = VARIANTS[name]
            res = run_in_child("tinygrad_lm.bench.fresh:fresh_step", blas_threads=blas_threads()[0], env=env,
                               impl=impl, config=config, device=device, warmup=warmup, steps=steps)
            m = statistics.median(res["times"])
            med[name].append(m)
            rss[name].append(res["peak_rss_mb"])
            loss.setdefault(name, res["loss_first"])
            per_round.append({"config": config, "impl": name, "round": r, "ms_median": 1e3 * m,
                              "peak_rss_mb": res["peak_rss_mb"]})
        log(f"  {config} round {r + 1}/{rounds}: " + ", ".join(f"{n} {1e3 * med[n][-1]:.1f} ms" for n in names))
    ref = "torch_sdpa" if "torch_sdpa" in names else None
    rows = []
    for name in names:
        ts = med[name]
        m = statistics.median(ts)
        q1, q3 = quantiles(ts)
        row = {"config": config, "impl": name, "rounds": rounds, "warmup": warmup, "steps": steps,
               "ms_median": 1e3 * m, "ms_min_round": 1e3 * min(ts), "ms_max_round": 1e3 * max(ts),
               "ms_q1": 1e3 * q1, "ms_q3": 1e3 * q3, "gflops": fl / m / 1e9, "frac_of_peak": fl / m / 1e9 / peak_gflops,
               "peak_rss_mb": statistics.median(rss[name]), "loss_first": loss[name],
               "ratio_ours": "", "ratio_min": "", "ratio_round_median": "", "ratio_max": ""}
        if ref is not None:
            # this implementation / PyTorch: of the medians, and the range of the rounds' own ratios
            per = [a / b for a, b in zip(ts, med[ref])]
            row.update(ratio_ours=m / statistics.median(med[ref]), ratio_min=min(per),
                       ratio_round_median=statistics.median(per), ratio_max=max(per))
        rows.append(row)
    return rows, per_round


def format_fresh(rows, peak: dict) -> str:
    hdr = ["config", "impl", "rounds", "ms/step (median of rounds)", "[min, max] round", "this/PyTorch",
           "per round [min, median, max]", "GFLOP/s", "% of peak", "peak RSS MB"]
    out = []
    for r in rows:
        ratio = "" if r["ratio_ours"] == "" else f"{r['ratio_ours']:.2f}"
        span = ("" if r["ratio_ours"] == "" else
                f"[{r['ratio_min']:.2f}, {r['ratio_round_median']:.2f}, {r['ratio_max']:.2f}]")
        out.append([r["config"], r["impl"], str(r["rounds"]), f"{r['ms_median']:.1f}",
                    f"[{r['ms_min_round']:.1f}, {r['ms_max_round']:.1f}]", ratio, span, f"{r['gflops']:.2f}",
                    f"{100 * r['frac_of_peak']:.1f}%", f"{r['peak_rss_mb']:.0f}"])
    text = [table(hdr, out, ["<", "<"] + [">"] * (len(hdr) - 2))]
    text.append(f"each round: every implementation in a fresh process ({rows[0]['warmup']} warm-up + "
                f"{rows[0]['steps']} timed steps, their median), the order reversed every other round; "
                f"matmul peak {peak['gflops_peak']:.1f} GFLOP/s (float32 {peak['n']}x{peak['n']}, best of "
                f"{peak['reps']})" if rows else "")
    return "\n".join(text)
