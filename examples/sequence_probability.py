"""The probability of a whole sequence, one next-token prediction at a time.

The chain rule of probability factors the probability of a sequence into next-token
predictions, which is exactly what a language model outputs:

    p(x_1, ..., x_T) = p(x_1) p(x_2 | x_1) p(x_3 | x_1, x_2) ... p(x_T | x_<T)
    log p(x_2..x_T | x_1) = sum_t log p(x_t | x_<t)

Perplexity is exp of the mean negative log-likelihood per token: a model with perplexity P
is, on average, as unsure as a uniform choice among P tokens. And the cross-entropy loss a
model is trained on is that same mean negative log-likelihood, so minimizing cross-entropy
is maximizing the likelihood of the training text.

We train a small character-level GPT for a few seconds and take these apart on one sentence.

Run:  python examples/sequence_probability.py [--steps 300]
"""
from __future__ import annotations

import os

# These models multiply matrices of a few dozen rows: BLAS worker threads cost more than they
# save, and on a busy machine they spin against each other (10x slower). One thread, unless the
# caller chose otherwise (this only takes effect when run as a script, before numpy loads).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

from tinygrad_lm import Tensor, manual_seed, no_grad  # noqa: E402
from tinygrad_lm.data import CharTokenizer, builtin_corpus, train_val_split  # noqa: E402
from tinygrad_lm.generate import sequence_logprob  # noqa: E402
from tinygrad_lm.models.gpt import GPT, GPTConfig  # noqa: E402
from tinygrad_lm.train import fit  # noqa: E402


def train_small_gpt(ids, vocab_size, steps, block_size=32, n_embd=64, seed=0):
    manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=n_embd,
                          dropout=0.0, bias=False))
    fit(model, ids, steps, batch_size=16, lr=3e-3, seed=seed)  # random windows, cross-entropy, backward, clip, AdamW
    return model


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300, help="training steps")
    ap.add_argument("--chars", type=int, default=200_000, help="how much of the corpus to use")
    ap.add_argument("--text", default="The return value of the function",
                    help="the sequence to score (at most block_size + 1 = 33 characters are used)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    corpus = builtin_corpus()[:args.chars]
    tok = CharTokenizer.from_text(corpus)
    train, _ = train_val_split(tok.encode_array(corpus))
    block = 32
    model = train_small_gpt(train, tok.vocab_size, args.steps, block_size=block, seed=args.seed)
    model.eval()
    text = args.text[:block + 1]
    ids = tok.encode(text)
    lp = sequence_logprob(model, ids)             # log p(x_t | x_<t) for t = 2..T, float64
    print(f"A {model.config.n_layer}-layer character GPT trained for {args.steps} steps scores {text!r}:\n")
    print(f"  {'t':>3}  {'token':>6}  {'p(token | before)':>17}  {'log p':>8}  {'running sum':>11}")
    running = np.cumsum(lp)
    for t, (i, l, s) in enumerate(zip(ids[1:], lp, running), start=2):
        print(f"  {t:>3}  {tok.decode([i])!r:>6}  {math.exp(l):>17.4f}  {l:>8.3f}  {s:>11.3f}")
    total = float(lp.sum())
    n = len(lp)
    nll = -total / n
    ppl = math.exp(nll)
    product = float(np.prod(np.exp(lp)))
    print(f"\n  log p(x_2..x_{n + 1} | x_1) = sum of the log p column = {total:.4f}")
    print(f"  p(x_2..x_{n + 1} | x_1) = exp({total:.4f}) = {math.exp(total):.4e}; the product of the p column: {product:.4e}")
    print(f"  mean negative log-likelihood = {-total:.4f} / {n} = {nll:.4f} nats per token")
    print(f"  perplexity = exp({nll:.4f}) = {ppl:.3f}: on average as unsure as a uniform pick among "
          f"{ppl:.1f} of the {tok.vocab_size} characters")

    # the training loss on this very sequence: cross-entropy of the logits against the next tokens
    x = Tensor(np.asarray(ids[:-1])[None, :])
    y = Tensor(np.asarray(ids[1:])[None, :])
    with no_grad():
        _, loss = model(x, y)
    print(f"\n  the model's training loss on the same sequence, F.cross_entropy(logits, next tokens) = {loss.item():.4f}")
    print(f"  = -mean log p = {nll:.4f}: minimizing cross-entropy is maximizing the (log-)likelihood.")

    # the same characters in a random order
    rng = np.random.default_rng(args.seed)
    shuffled = [ids[0]] + list(rng.permutation(ids[1:]))
    lp_shuf = sequence_logprob(model, shuffled)
    print(f"\n  the same characters shuffled, {tok.decode(shuffled)!r}: log p = {lp_shuf.sum():.4f} "
          f"(perplexity {math.exp(-lp_shuf.mean()):.2f})")
    print("  The model has learned which characters follow which, not only how common each one is.")

    checks = [("sum of log p equals log of the product", abs(math.log(product) - total) < 1e-9),
              ("perplexity is exp of the mean NLL", abs(ppl - math.exp(-lp.mean())) < 1e-12),
              ("cross-entropy loss equals -mean log p", abs(loss.item() - nll) < 1e-4),
              ("every probability is in (0, 1]", bool(((lp <= 0) & np.isfinite(lp)).all()))]
    failed = [name for name, ok in checks if not ok]
    print("\nchecks: " + ("all passed" if not failed else "FAILED: " + ", ".join(failed)))
    return {"text": text, "logprobs": lp, "total_logprob": total, "nll": nll, "perplexity": ppl, "loss": loss.item(),
            "shuffled_logprob": float(lp_shuf.sum()), "failed": failed}


if __name__ == "__main__":
    sys.exit(1 if main()["failed"] else 0)
