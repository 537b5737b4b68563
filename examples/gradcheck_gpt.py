"""Check every gradient of a whole GPT against finite differences.

A tiny GPT (2 layers, 2 heads, 16 dims, block 8, vocab 11), with and without biases, its
weights moved away from init so no gradient is near zero. For each parameter,
`tinygrad_lm.gradcheck` (in float64) compares backward's dL/dp with central differences

    (L(p + eps e_i) - L(p - eps e_i)) / (2 eps)            for a sample of entries i, and
    (L(p + eps d) - L(p - eps d)) / (2 eps) ~ <dL/dp, d>   along random unit directions d,

since checking every entry of a real model one by one would take two forwards per weight.
Prints one row per parameter and exits non-zero if any check fails.

    python examples/gradcheck_gpt.py [--impl fused|composed|both] [--max-elements 16] [--directions 3]
"""
from __future__ import annotations

import argparse
import sys
import time

from tinygrad_lm.opcheck import gradcheck_gpt


def check(bias: bool, fused: bool, max_elements: int, directions: int, seed: int = 0):
    return gradcheck_gpt(bias=bias, fused=fused, max_elements=max_elements, n_directions=directions, seed=seed)


def table(report) -> str:
    rows = [("parameter", "shape", "entries", "directions", "max abs err", "max rel err", "ok")]
    notes = False
    for r in report.inputs:
        near_zero = r.passed and r.max_rel_err > 100 * report.rtol  # passed on atol: the true gradient is ~0 there
        notes |= near_zero
        rows.append((r.name, str(tuple(r.shape)), str(r.elements_checked), str(r.directions), f"{r.max_abs_err:.1e}",
                     f"{r.max_rel_err:.1e}" + (" *" if near_zero else ""), "PASS" if r.passed else "FAIL"))
    w = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(n) for c, n in zip(row, w)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * n for n in w))
    if notes:
        lines.append("* the exact gradient is ~0 at some checked entry, so the relative error is noise over noise and "
                     "the absolute error decides. (The key part of c_attn.bias has zero gradient: adding b to every key "
                     "adds q.b to a whole row of scores, which softmax ignores.)")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="finite-difference check of every GPT parameter's gradient")
    ap.add_argument("--impl", choices=["fused", "composed", "both"], default="both")
    ap.add_argument("--max-elements", type=int, default=16, help="entries sampled per parameter")
    ap.add_argument("--directions", type=int, default=3, help="random directions per large parameter")
    args = ap.parse_args(argv)
    impls = ["fused", "composed"] if args.impl == "both" else [args.impl]
    ok = True
    start = time.perf_counter()
    for impl in impls:
        for bias in (True, False):
            report = check(bias, impl == "fused", args.max_elements, args.directions)
            print(f"\nGPT(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=11, bias={bias}), {impl} ops, "
                  f"float64, eps={report.eps:g}, atol={report.atol:g}, rtol={report.rtol:g}")
            print(table(report))
            print(f"{'PASSED' if report.passed else 'FAILED'}: {len(report.inputs)} parameters, worst absolute error "
                  f"{report.max_abs_err:.1e}, {report.seconds:.1f}s")
            ok &= report.passed
    print(f"\n{'all checks passed' if ok else 'SOME CHECKS FAILED'} in {time.perf_counter() - start:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
