"""How noisy is a val-loss estimate from a few random batches? (nanoGPT's `--eval_iters`)

`tinygrad-lm train` and nanoGPT report the val loss as the mean over `eval_iters` random
(batch_size, block_size) windows: 20 batches of 12 x 64 in nanoGPT's CPU config. This
script takes a trained checkpoint, scores many random val batches, and reports the spread
an `eval_iters`-batch estimate has, next to the exact loss over the whole val split
(`tinygrad-lm eval`). Use it to read a single reported figure (such as nanoGPT's 1.8857)
against the noise of its estimator.

    python benchmarks/eval_noise.py --out-dir out-shakespeare             # 400 batches, 20 per estimate
    python benchmarks/eval_noise.py --out-dir out --batches 1000 --eval-iters 20 --seed 1
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tinygrad_lm import Tensor, no_grad  # noqa: E402
from tinygrad_lm.bench.harness import tune_allocator  # noqa: E402
from tinygrad_lm.checkpoint import load_model  # noqa: E402
from tinygrad_lm.data import CORPUS_NAME, encode_splits, get_batch, load_corpus  # noqa: E402
from tinygrad_lm.evaluate import evaluate_split  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", required=True, help="a training run's folder (its checkpoint names the corpus)")
    ap.add_argument("--data", default=None, help="the corpus, if not the one the checkpoint names")
    ap.add_argument("--batches", type=int, default=400, help="random val batches to score")
    ap.add_argument("--eval-iters", type=int, default=20, help="batches per estimate (nanoGPT's CPU config: 20)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the run's batch size")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    tune_allocator()  # as the tinygrad-lm CLI does

    model, tok, meta = load_model(a.out_dir)
    corpus = a.data or meta.get("corpus")
    text, name = load_corpus(None if corpus in (None, CORPUS_NAME) else corpus)
    block = model.config.block_size
    bs = a.batch_size or meta.get("train_config", {}).get("batch_size", 12)
    _, val = encode_splits(text, tok, block)
    rng = np.random.default_rng(a.seed)
    losses = []
    with no_grad():
        for _ in range(a.batches):
            x, y = get_batch(val, bs, block, rng)
            losses.append(float(model(Tensor(x), Tensor(y))[1].data))
    losses = np.array(losses)
    k = a.eval_iters
    sd = losses.std(ddof=1) / np.sqrt(k)
    est = losses[: len(losses) // k * k].reshape(-1, k).mean(axis=1)
    full = evaluate_split(model, val, bs, "cpu")
    print(f"{name}, checkpoint {a.out_dir} (step {meta.get('step')}), batches of {bs} x {block}:")
    print(f"  whole val split ({full['tokens']:,} tokens): loss {full['loss']:.4f}")
    print(f"  {a.batches} random val batches: mean loss {losses.mean():.4f}, sd of one batch {losses.std(ddof=1):.4f}")
    print(f"  an estimate from {k} batches: sd {sd:.4f}; {len(est)} disjoint {k}-batch estimates ranged "
          f"{est.min():.4f} to {est.max():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
