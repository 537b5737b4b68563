"""Where a training step's time goes (`tinygrad-lm bench --what model --profile`).

Ours: wall time per phase (forward, backward, clip_grad_norm_, AdamW step, zero_grad) with no
instrumentation; time per op class inside forward and backward through `tinygrad_lm.trace()`;
and, on request, cProfile listings of the same steps. PyTorch's step (optional): the
per-op self CPU time of torch.profiler, to set beside ours.
"""
from __future__ import annotations

import statistics
import time

from .. import Tensor, trace
from .configs import MODEL_CONFIGS, model_kwargs
from .harness import sync, table
from .machine import load_torch
from .model_step import build_ours, make_batches, named_arrays, ours_step_fn

PHASES = ("forward", "backward", "clip_grad_norm_", "adamw_step", "zero_grad")


def profile_model_step(config: str = "cpu", device: str = "cpu", steps: int = 30, warmup: int = 5,
                       cprofile_top: int = 25) -> dict:
    """Phase wall times over `steps` steps, op time per Function class inside forward and
    backward (medians over `steps` more steps with a trace on), and a cProfile listing of
    `steps` further steps (top `cprofile_top` functions by own and by cumulative time)."""
    import cProfile
    import io
    import pstats
    from ..optim import clip_grad_norm_
    cfg = MODEL_CONFIGS[config]
    model, opt = build_ours(cfg, device)
    batches = [(Tensor(x, device=device), Tensor(y, device=device)) for x, y in make_batches(cfg, 4)]
    step = ours_step_fn(model, opt, device)
    for i in range(warmup):
        step(*batches[i % 4])

    def phased(i, acc):
        x, y = batches[i % 4]
        t0 = time.perf_counter()
        _, loss = model(x, y)
        sync(device)
        t1 = time.perf_counter()
        loss.backward()
        sync(device)
        t2 = time.perf_counter()
        clip_grad_norm_(model.parameters(), 1.0)
        sync(device)
        t3 = time.perf_counter()
        opt.step()
        sync(device)
        t4 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        float(loss.data)
        t5 = time.perf_counter()
        for k, v in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            acc.setdefault(k, []).append(v)

    # 1) phases without any instrumentation
    phases = {}
    for i in range(steps):
        phased(i, phases)
    # 2) per-op time with a trace (it adds a little overhead per op, outside the op's own time)
    obs_phases, per_fwd, per_bwd, calls = {}, {}, {}, {}
    for i in range(steps):  # a fresh trace per step, so the per-op figures are medians over steps too
        with trace(grad_norms=False) as t:
            phased(i, obs_phases)
        for r in t.by_op():
            per_fwd.setdefault(r["key"], []).append(r["forward_ms"] / 1e3)
            per_bwd.setdefault(r["key"], []).append(r["backward_ms"] / 1e3)
            calls[r["key"]] = r["count"]
    # 3) cProfile
    pr = cProfile.Profile()
    pr.enable()
    for i in range(steps):
        step(*batches[i % 4])
    pr.disable()
    listings = {}
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(pr, stream=buf).sort_stats(key).print_stats(cprofile_top)
        listings[key] = buf.getvalue()
    med = {k: statistics.median(v) for k, v in phases.items()}
    return {"config": config, "device": device, "steps": steps, "phase_median_s": med,
            "step_median_s": sum(med.values()),
            "op_fwd_s": {k: statistics.median(v) for k, v in per_fwd.items()},
            "op_bwd_s": {k: statistics.median(v) for k, v in per_bwd.items()},
            "op_calls": calls,
            "observed_phase_median_s": {k: statistics.median(v) for k, v in obs_phases.items()},
            "cprofile_tottime": listings["tottime"], "cprofile_cumulative": listings["cumulative"]}


def format_profile(p: dict) -> str:
    """The phase shares and the per-op table of a profile_model_step result."""
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
    for k in PHASES[2:]:
        rows.append([f"({k})", "", "", "", f"{1e3 * ob[k]:.2f}", f"{100 * ob[k] / ostep:.1f}%"])
    lines.append(table(["op", "calls/step", "fwd ms", "bwd ms", "total ms", "% of step"], rows))
    return "\n".join(lines)


def profile_torch_step(config: str = "cpu", attn: str = "explicit", steps: int = 20, warmup: int = 5, top: int = 25) -> str:
    """torch.profiler's per-op self CPU time for PyTorch's step (torch_reference.py, from our
    initial weights), to set beside ours. Returns the key_averages table, or why not."""
    torch, why = load_torch()
    if torch is None:
        return why
    from torch.profiler import ProfilerActivity, profile
    from . import torch_reference as ref
    cfg = MODEL_CONFIGS[config]
    model, _ = build_ours(cfg, "cpu")
    tm = ref.TorchGPT(ref.TorchGPTConfig(**model_kwargs(cfg)), attn)
    tm.load_arrays(named_arrays(model))
    opt = tm.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    bs = [(torch.as_tensor(x), torch.as_tensor(y)) for x, y in make_batches(cfg, 4)]
    for i in range(warmup):
        ref.train_step(tm, opt, *bs[i % 4])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            ref.train_step(tm, opt, *bs[i % 4])
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)
