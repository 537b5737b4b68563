"""The op sweep's plot: GPU speedup against size (crossovers marked) and ours/PyTorch on the
CPU against size, in one PNG (matplotlib, optional)."""
from __future__ import annotations

import io
import os

from ..fileio import atomic_write
from .op_sweep import OPS


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
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, png.getbuffer())
    return path

