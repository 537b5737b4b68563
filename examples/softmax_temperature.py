"""Softmax and temperature, with the numbers from the LLM explainers.

A language model ends in one score (a logit) per word of its vocabulary. Softmax turns the
scores into probabilities:

    p_i = exp(z_i) / sum_j exp(z_j)

Dividing the logits by a temperature T before the softmax sharpens (T < 1) or flattens
(T > 1) the distribution. And subtracting the largest logit first changes nothing (the
factor exp(-max) cancels between numerator and denominator) but keeps exp from overflowing.

Run:  python examples/softmax_temperature.py
"""
from __future__ import annotations

import sys

import numpy as np

from tinygrad_lm import Tensor
from tinygrad_lm.nn import functional as F

WORDS = ["cat", "dog", "car", "sky"]
LOGITS = [45.0, 99.0, 60.0, 10.0]
TEMPERATURES = [0.5, 0.8, 1.0, 2.0]


def softmax_reference(z, temperature=1.0):
    """softmax(z / T) in float64 numpy, max shifted out."""
    z = np.asarray(z, dtype=np.float64) / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


def entropy(p):
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def main(argv=None) -> dict:
    checks = []
    z = np.array(LOGITS)
    print("Four candidate next words and the model's scores (logits):")
    for w, v in zip(WORDS, LOGITS):
        print(f"  {w:>4}: {v:g}")

    # 1. softmax with the engine (float32, the default dtype) and by hand in float64
    p32 = F.softmax(Tensor(z.astype(np.float32))).numpy().astype(np.float64)
    p64 = F.softmax(Tensor(z)).numpy()      # float64 in, float64 out
    ref = softmax_reference(z)
    print("\nsoftmax(logits) = exp(z_i - max z) / sum_j exp(z_j - max z):")
    print(f"  {'word':>4}  {'engine float32':>15}  {'engine float64':>15}  {'numpy float64':>15}")
    for i, w in enumerate(WORDS):
        print(f"  {w:>4}  {p32[i]:>15.4e}  {p64[i]:>15.4e}  {ref[i]:>15.4e}")
    print("  'dog' takes essentially all the probability: its logit is 39 above the next one,")
    print(f"  and exp(-39) = {np.exp(-39.0):.1e}.")
    checks.append(("probabilities sum to 1", abs(p64.sum() - 1) < 1e-12))
    checks.append(("engine float64 matches numpy", np.allclose(p64, ref, rtol=1e-12, atol=0)))
    checks.append(("engine float32 matches numpy", np.allclose(p32, ref, rtol=1e-4, atol=1e-44)))

    # 2. temperature
    print("\nWith temperature T: softmax(logits / T).")
    temps = {}
    header = "  " + f"{'T':>4}  " + "  ".join(f"{w:>10}" for w in WORDS) + f"  {'entropy':>8}"
    print(header)
    for t in TEMPERATURES:
        pt = F.softmax(Tensor(z) / t).numpy()
        temps[t] = pt
        print("  " + f"{t:>4}  " + "  ".join(f"{v:>10.3e}" for v in pt) + f"  {entropy(pt):>8.2e}")
        checks.append((f"T={t} matches numpy", np.allclose(pt, softmax_reference(z, t), rtol=1e-12, atol=0)))
    print("  Lower T divides by a smaller number, so gaps between logits grow and the top word")
    print("  gains; higher T shrinks the gaps. The ranking never changes, only how peaked it is.")
    ents = [entropy(temps[t]) for t in TEMPERATURES]
    checks.append(("entropy grows with temperature", all(a < b for a, b in zip(ents, ents[1:]))))
    checks.append(("argmax is the same at every temperature", len({int(temps[t].argmax()) for t in TEMPERATURES}) == 1))

    # the same at a tenth of the scale, where temperature visibly matters
    small = z / 10
    print("\nThe same logits divided by 10 (4.5, 9.9, 6.0, 1.0), a less certain model:")
    soft = {}
    for t in TEMPERATURES:
        soft[t] = softmax_reference(small, t)
        print("  " + f"{t:>4}  " + "  ".join(f"{w}={v:.3f}" for w, v in zip(WORDS, soft[t])))

    # 3. why subtract the max
    print("\nWhy subtract the max? exp(99) does not fit in float32 (largest float32 is about 3.4e38):")
    z32 = z.astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        e_naive = np.exp(z32)
        naive = e_naive / e_naive.sum()
    e_shift = np.exp(z32 - z32.max())
    shifted = e_shift / e_shift.sum()
    print(f"  naive   exp(z)          = {e_naive}")
    print(f"  naive   exp(z) / sum    = {naive}   <- inf / inf = nan")
    print(f"  shifted exp(z - 99)     = {e_shift}")
    print(f"  shifted exp(z-99) / sum = {shifted}")
    print("  exp(z_i - m) / sum_j exp(z_j - m) = exp(z_i) exp(-m) / (exp(-m) sum_j exp(z_j)): the factor")
    print("  exp(-m) cancels, so the answer is the same, and every exponent is now <= 0, so exp <= 1.")
    checks.append(("naive float32 softmax overflows to nan", bool(np.isinf(e_naive[1]) and np.isnan(naive[1]))))
    checks.append(("shifted float32 softmax is finite and sums to 1",
                   bool(np.isfinite(shifted).all() and abs(float(shifted.sum()) - 1) < 1e-6)))

    failed = [name for name, ok in checks if not ok]
    print("\nchecks: " + ("all passed" if not failed else "FAILED: " + ", ".join(failed)))
    return {"words": WORDS, "logits": z, "probs": p64, "probs_float32": p32, "temperatures": temps,
            "scaled_down": soft, "naive_float32": naive, "shifted_float32": shifted, "failed": failed}


if __name__ == "__main__":
    sys.exit(1 if main()["failed"] else 0)
