"""Backpropagation by hand: a two-layer MLP's every gradient, derived on paper, against the engine.

The network, for a batch of N inputs x (N, D) with class targets t:

    h      = x @ W1 + b1          (N, H)    first layer
    a      = tanh(h)              (N, H)    nonlinearity
    z      = a @ W2 + b2          (N, C)    logits
    loss   = mean_i -log softmax(z_i)[t_i]

Backward is the chain rule applied from the loss back, one op at a time. Each step takes the
gradient of the loss with respect to an op's output and multiplies by that op's local
derivative:

    dz  = (softmax(z) - onehot(t)) / N          cross-entropy: p - y, averaged
    dW2 = a^T @ dz,   db2 = sum_i dz_i,   da = dz @ W2^T       matmul: transpose the other operand
    dh  = da * (1 - a^2)                        tanh' = 1 - tanh^2
    dW1 = x^T @ dh,   db1 = sum_i dh_i,   dx = dh @ W1^T

Everything runs in float64, so the engine and the hand derivation agree to ~1e-16.

Run:  python examples/backprop_by_hand.py
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from tinygrad_lm import Tensor
from tinygrad_lm.nn import functional as F


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8, help="batch size")
    ap.add_argument("--d", type=int, default=5, help="input features")
    ap.add_argument("--hidden", type=int, default=6)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    n, d, hdim, c = args.n, args.d, args.hidden, args.classes
    rng = np.random.default_rng(args.seed)
    x_np = rng.normal(size=(n, d))
    t_np = rng.integers(0, c, n)
    W1_np, b1_np = rng.normal(size=(d, hdim)) / np.sqrt(d), rng.normal(size=hdim) * 0.1
    W2_np, b2_np = rng.normal(size=(hdim, c)) / np.sqrt(hdim), rng.normal(size=c) * 0.1

    # ---- the engine: forward, then one call to backward
    x = Tensor(x_np, requires_grad=True)
    W1, b1 = Tensor(W1_np, requires_grad=True), Tensor(b1_np, requires_grad=True)
    W2, b2 = Tensor(W2_np, requires_grad=True), Tensor(b2_np, requires_grad=True)
    h = x @ W1 + b1
    a = h.tanh()
    z = a @ W2 + b2
    loss = F.cross_entropy(z, Tensor(t_np))
    for inner in (h, a, z):
        inner.retain_grad()      # keep the gradients of intermediate tensors, not only of leaves
    loss.backward()

    # ---- by hand: the same forward in numpy, then the chain rule written out
    h_ = x_np @ W1_np + b1_np
    a_ = np.tanh(h_)
    z_ = a_ @ W2_np + b2_np
    e = np.exp(z_ - z_.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    loss_ = -np.log(p[np.arange(n), t_np]).mean()
    dz = (p - np.eye(c)[t_np]) / n
    dW2 = a_.T @ dz
    db2 = dz.sum(0)
    da = dz @ W2_np.T
    dh = da * (1 - a_ ** 2)
    dW1 = x_np.T @ dh
    db1 = dh.sum(0)
    dx = dh @ W1_np.T

    print(f"Two-layer MLP: x ({n}, {d}) -> Linear({d}, {hdim}) -> tanh -> Linear({hdim}, {c}) -> cross-entropy")
    print(f"loss: engine {loss.item():.12f}, by hand {loss_:.12f}\n")
    rows = [
        ("dL/dz  (logits)", "(softmax(z) - onehot(t)) / N", z.grad, dz),
        ("dL/dW2", "a^T @ dz", W2.grad, dW2),
        ("dL/db2", "sum over the batch of dz", b2.grad, db2),
        ("dL/da", "dz @ W2^T", a.grad, da),
        ("dL/dh", "da * (1 - a^2)", h.grad, dh),
        ("dL/dW1", "x^T @ dh", W1.grad, dW1),
        ("dL/db1", "sum over the batch of dh", b1.grad, db1),
        ("dL/dx", "dh @ W1^T", x.grad, dx),
    ]
    print(f"  {'gradient':<16} {'by hand':<30} {'shape':<8} {'max |engine - hand|':>20}")
    diffs = {}
    for name, formula, eng, hand in rows:
        diff = float(np.abs(eng.numpy() - hand).max())
        diffs[name.split()[0]] = diff
        print(f"  {name:<16} {formula:<30} {str(hand.shape):<8} {diff:>20.2e}")
    worst = max(diffs.values())
    print(f"\nEvery gradient matches to {worst:.1e}: the engine's backward is exactly this chain rule,")
    print("run op by op in reverse order of the forward pass.")
    failed = [] if worst < 1e-10 and abs(loss.item() - loss_) < 1e-12 else ["a gradient differs by more than 1e-10"]
    print("checks: " + ("all passed" if not failed else "FAILED: " + ", ".join(failed)))
    return {"loss": loss.item(), "loss_by_hand": float(loss_), "diffs": diffs, "max_diff": worst, "failed": failed}


if __name__ == "__main__":
    sys.exit(1 if main()["failed"] else 0)
