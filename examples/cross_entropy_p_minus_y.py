"""Cross-entropy and its gradient p - y.

A model predicts a distribution p over the vocabulary; the training text says the next word
is the one at index t (a one-hot target y). Cross-entropy scores the prediction by the
probability it gave the right answer:

    loss = -sum_c y_c log p_c = -log p_t

and for p = softmax(z) its gradient with respect to the logits z is simply

    dloss/dz = p - y.

Over a batch of N rows the loss is the mean, so each row's gradient is (p - y) / N.

Run:  python examples/cross_entropy_p_minus_y.py
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from tinygrad_lm import Tensor
from tinygrad_lm.nn import functional as F

WORDS = ["the", "cat", "sat", "mat"]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4, help="rows in the batch example")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    checks = []

    # 1. one prediction
    p = np.array([0.1, 0.3, 0.5, 0.1])
    target = 1
    y = np.eye(len(p))[target]
    print("The model's predicted distribution and the one-hot target (the right word is 'cat'):")
    for w, pi, yi in zip(WORDS, p, y):
        print(f"  {w:>4}: p = {pi:.2f}   y = {yi:.0f}")
    by_hand = -np.log(p[target])
    # logits whose softmax is p: z = log p (softmax is shift invariant, so any z = log p + c works)
    z = Tensor(np.log(p)[None, :], requires_grad=True)
    loss1 = F.cross_entropy(z, Tensor([target]))
    loss1.backward()
    print(f"\n  loss = -sum_c y_c log p_c = -log p('cat') = -log 0.3 = {by_hand:.4f}")
    print(f"  engine F.cross_entropy(logits = log p, target)   = {loss1.item():.4f}")
    print(f"  gradient on the logits, engine: {np.round(z.grad.numpy()[0], 4)}")
    print(f"  p - y by hand:                  {np.round(p - y, 4)}")
    print("  The right word's logit is pushed up (negative gradient, since we step against it),")
    print("  every other logit is pushed down in proportion to the probability it took.")
    checks.append(("-log 0.3 = 1.204", round(by_hand, 3) == 1.204 and abs(loss1.item() - by_hand) < 1e-12))
    checks.append(("single-row gradient is p - y", np.allclose(z.grad.numpy()[0], p - y, atol=1e-12)))

    # 2. a batch
    n, c = args.batch, len(WORDS)
    rng = np.random.default_rng(args.seed)
    logits = rng.normal(0, 2, (n, c))
    targets = rng.integers(0, c, n)
    zt = Tensor(logits, requires_grad=True)          # float64, so the comparison is exact to ~1e-16
    loss = F.cross_entropy(zt, Tensor(targets))
    loss.backward()
    e = np.exp(logits - logits.max(1, keepdims=True))
    probs = e / e.sum(1, keepdims=True)
    Y = np.eye(c)[targets]
    per_row = -np.log(probs[np.arange(n), targets])
    grad_by_hand = (probs - Y) / n
    grad_engine = zt.grad.numpy()
    print(f"\nA batch of {n} predictions (random logits), targets {targets.tolist()}:")
    print(f"  per-row loss -log p_target: {np.round(per_row, 4).tolist()}")
    print(f"  batch loss = mean = {per_row.mean():.6f}; engine: {loss.item():.6f}")
    print("\n  gradient on the logits: engine backward  |  (p - y) / N by hand")
    for i in range(n):
        print("   " + " ".join(f"{v:+.5f}" for v in grad_engine[i]) + "  |  " + " ".join(f"{v:+.5f}" for v in grad_by_hand[i]))
    diff = float(np.abs(grad_engine - grad_by_hand).max())
    print(f"  largest difference: {diff:.2e}")
    print("  Each row sums to zero: probability taken from one word is given to the others.")
    # the same through the composed implementation (log_softmax + pick + mean, autograd's chain rule)
    zc = Tensor(logits, requires_grad=True)
    F.cross_entropy(zc, Tensor(targets), impl="composed").backward()
    diff_composed = float(np.abs(zc.grad.numpy() - grad_by_hand).max())
    print(f"  composed cross-entropy (log_softmax, pick, mean; autograd derives the backward): "
          f"largest difference {diff_composed:.2e}")
    checks.append(("batch loss is the mean of -log p_target", abs(loss.item() - per_row.mean()) < 1e-12))
    checks.append(("batch gradient is (p - y) / N", diff < 1e-12))
    checks.append(("composed gradient is (p - y) / N", diff_composed < 1e-12))
    checks.append(("gradient rows sum to zero", np.allclose(grad_engine.sum(1), 0, atol=1e-12)))

    failed = [name for name, ok in checks if not ok]
    print("\nchecks: " + ("all passed" if not failed else "FAILED: " + ", ".join(failed)))
    return {"p": p, "target": target, "loss_single": loss1.item(), "loss_by_hand": float(by_hand),
            "grad_single": z.grad.numpy()[0], "logits": logits, "targets": targets, "probs": probs,
            "loss_batch": loss.item(), "loss_batch_by_hand": float(per_row.mean()),
            "grad_engine": grad_engine, "grad_by_hand": grad_by_hand, "max_diff": diff,
            "max_diff_composed": diff_composed, "failed": failed}


if __name__ == "__main__":
    sys.exit(1 if main()["failed"] else 0)
