"""How well a language model predicts held-out text: its loss (mean negative log-likelihood
per token, in nats) and perplexity = exp(loss).

* estimate_loss   the mean over a few random batches drawn from a fixed seed: cheap, and the
                  same batches at every call, so a training curve compares like with like
                  (nanoGPT's estimate_loss; used during training).
* evaluate_split  every token of a split scored exactly once, over contiguous windows of
                  block_size (`tinygrad-lm eval`).

Both run under no_grad and in eval mode (no dropout), and give the model back in the mode it
came in.
"""
from __future__ import annotations

import math

import numpy as np

from .data import IGNORE, iter_eval_batches, sample_batch
from .engine import no_grad
from .tensor import Tensor


def perplexity(loss: float) -> float:
    """exp(loss), inf where that overflows a float (a loss above ~709 nats: a broken model)."""
    return math.exp(loss) if loss < 709 else math.inf


@no_grad()
def estimate_loss(model, data: np.ndarray, batch_size: int, block_size: int, iters: int, seed: int, device: str) -> float:
    """Mean loss over `iters` random (batch_size, block_size) batches of `data` (a token array,
    or a SequenceSet of examples: data.sample_batch), drawn from a generator seeded with `seed`."""
    rng = np.random.default_rng(seed)
    was = model.training
    model.eval()
    losses = []
    for _ in range(iters):
        x, y = sample_batch(data, batch_size, block_size, rng)
        _, loss = model(Tensor(x, device=device), Tensor(y, device=device))
        losses.append(loss.data)  # kept on the device: one host sync at the end, not one per batch
    model.train(was)
    return float(np.mean([float(l) for l in losses]))


@no_grad()
def evaluate_split(model, data: np.ndarray, batch_size: int, device: str, max_batches: int | None = None) -> dict:
    """Exact loss over a whole split: contiguous windows of block_size, every token scored once
    (the first `max_batches` batches only, when given); for a SequenceSet of examples, every
    example once, counting the targets its loss counts. Returns {"loss": mean NLL per token,
    "perplexity": exp(loss), "tokens": how many were scored}."""
    block = model.config.block_size
    was = model.training
    model.eval()
    total, count = 0.0, 0
    batches = data.iter_batches(batch_size) if hasattr(data, "iter_batches") else iter_eval_batches(data, batch_size, block)
    for i, (x, y) in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        _, loss = model(Tensor(x, device=device), Tensor(y, device=device))
        n = int((y != IGNORE).sum())
        total += float(loss.data) * n  # loss is the batch's mean: weight it by its token count
        count += n
    model.train(was)
    nll = total / max(count, 1)
    return {"loss": nll, "perplexity": perplexity(nll), "tokens": count}
