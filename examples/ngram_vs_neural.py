"""Counting versus learning: n-gram models, a Bengio-style MLP and a GPT on the same text.

An n-gram model predicts the next character from the previous n - 1 by counting:
P(w | ctx) = (C(ctx, w) + k) / (C(ctx) + k V). It cannot say anything about a context it
never saw in training (it falls back to the uniform k-smoothing), and the longer the context,
the more held-out contexts are new: counting runs out of data.

A neural language model (Bengio et al. 2003) instead embeds each character as a vector,
concatenates the embeddings of the previous n - 1 characters, and maps them through a tanh
hidden layer to logits. Similar contexts get similar vectors, so it generalises to contexts
it never saw. A GPT goes further: attention lets every position look at the whole window.

All models are trained on the first 90% of the same slice of the built-in corpus and scored
on the last 10%; perplexity = exp(mean negative log-likelihood per character), lower is better.

Run:  python examples/ngram_vs_neural.py [--mlp-steps 1500 --gpt-steps 400]
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
import time  # noqa: E402

import numpy as np  # noqa: E402

from tinygrad_lm import Tensor, manual_seed, no_grad, nn  # noqa: E402
from tinygrad_lm.data import CharTokenizer, builtin_corpus, iter_eval_batches, train_val_split  # noqa: E402
from tinygrad_lm.models.gpt import GPT, GPTConfig  # noqa: E402
from tinygrad_lm.ngram import NGramModel  # noqa: E402
from tinygrad_lm.nn import functional as F  # noqa: E402
from tinygrad_lm.optim import AdamW  # noqa: E402
from tinygrad_lm.train import fit  # noqa: E402


class MLPLanguageModel(nn.Module):
    """Bengio et al. (2003): logits = W2 tanh(W1 [e(x_{t-n+1}); ...; e(x_{t-1})] + b1) + b2."""

    def __init__(self, vocab_size: int, context: int, n_embd: int = 16, hidden: int = 128):
        super().__init__()
        self.context = context
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.hidden = nn.Linear(context * n_embd, hidden)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, idx, targets=None):
        b = idx.shape[0]
        x = self.wte(idx).reshape(b, -1)           # (B, context * n_embd): the embeddings side by side
        logits = self.head(self.hidden(x).tanh())  # (B, V)
        loss = None if targets is None else F.cross_entropy(logits, targets)
        return logits, loss


def windows(ids, context, positions):
    """(contexts (N, context), next tokens (N,)) for the given target positions."""
    idx = positions[:, None] - context + np.arange(context)
    return ids[idx], ids[positions]


def train_mlp(train, vocab, context, steps, batch_size, seed):
    manual_seed(seed)
    model = MLPLanguageModel(vocab, context)
    opt = AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x, y = windows(train, context, rng.integers(context, len(train), batch_size))
        _, loss = model(Tensor(x), Tensor(y))
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model


@no_grad()
def mlp_losses(model, val, start):
    """-log p(val[t] | the previous `context` characters) for every t >= start."""
    positions = np.arange(start, len(val))
    out = []
    for chunk in np.array_split(positions, max(1, len(positions) // 4096)):
        x, y = windows(val, model.context, chunk)
        logits, _ = model(Tensor(x))
        out.append(F.cross_entropy(logits, Tensor(y), reduction="none").numpy())
    return np.concatenate(out)


def seen_contexts(train, val, context, start):
    """For each validation position t >= start: did its previous `context` characters occur in training?"""
    v = int(max(train.max(), val.max())) + 1
    pw = v ** np.arange(context, dtype=np.int64)  # a context as one base-V number
    tr = windows(train, context, np.arange(context, len(train)))[0] @ pw
    va = windows(val, context, np.arange(start, len(val)))[0] @ pw
    return np.isin(va, tr)


def train_gpt(train, vocab, steps, block_size, n_embd, seed):
    manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab, block_size=block_size, n_layer=2, n_head=2, n_embd=n_embd,
                          dropout=0.0, bias=False))
    fit(model, train, steps, batch_size=16, lr=3e-3, seed=seed)  # random windows, cross-entropy, backward, clip, AdamW
    return model


@no_grad()
def eval_gpt(model, val):
    total, count = 0.0, 0
    for x, y in iter_eval_batches(val, 32, model.config.block_size):
        total += model(Tensor(x), Tensor(y))[1].item() * y.size
        count += y.size
    return total / count


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chars", type=int, default=200_000, help="how much of the corpus to use")
    ap.add_argument("--k", type=float, default=0.05, help="add-k smoothing of the n-gram models")
    ap.add_argument("--context", type=int, default=3, help="characters of context for the MLP")
    ap.add_argument("--mlp-steps", type=int, default=1500)
    ap.add_argument("--gpt-steps", type=int, default=400)
    ap.add_argument("--block-size", type=int, default=32)
    ap.add_argument("--n-embd", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    text = builtin_corpus()[:args.chars]
    tok = CharTokenizer.from_text(text)
    train, val = train_val_split(tok.encode_array(text))
    V = tok.vocab_size
    print(f"{len(text):,} characters of the built-in corpus: {len(train):,} train / {len(val):,} validation, "
          f"{V} distinct characters\n")
    orders = (1, 2, 3, 4, 5)
    start = max(max(orders) - 1, args.context)  # score the same validation positions with every counting/MLP model
    rows = []
    ctx_n = args.context + 1  # the n-gram that sees as much as the MLP
    seen = seen_contexts(train, val, args.context, start)
    for n in orders:
        m = NGramModel(n, k=args.k).fit(train, V)
        r = m.evaluate(val, start=start)
        row = {"model": f"{n}-gram (counts, add-{args.k:g})", "kind": "ngram", "n": n, "nll": r["nll"],
               "unseen": r["unseen_context_frac"], "seconds": 0.0}
        if n == ctx_n:
            row["nll_unseen"] = float(-m.log_prob(val, start=start)[~seen].mean())
        rows.append(row)

    t0 = time.perf_counter()
    mlp = train_mlp(train, V, args.context, args.mlp_steps, 64, args.seed)
    per_pos = mlp_losses(mlp, val, start)
    rows.append({"model": f"MLP, {args.context} chars of context", "kind": "mlp", "nll": float(per_pos.mean()),
                 "unseen": None, "nll_unseen": float(per_pos[~seen].mean()),
                 "seconds": time.perf_counter() - t0, "params": mlp.num_parameters()})
    t0 = time.perf_counter()
    gpt = train_gpt(train, V, args.gpt_steps, args.block_size, args.n_embd, args.seed)
    gpt_nll = eval_gpt(gpt, val)
    rows.append({"model": f"GPT, {args.block_size} chars of context", "kind": "gpt", "nll": gpt_nll, "unseen": None,
                 "seconds": time.perf_counter() - t0, "params": gpt.num_parameters()})

    print(f"{'model':<30} {'val loss':>9} {'perplexity':>10} {'unseen contexts':>16} "
          f"{'loss where unseen':>17} {'train time':>10}")
    for r in rows:
        r["perplexity"] = math.exp(r["nll"])
        unseen = "-" if r["unseen"] is None else f"{100 * r['unseen']:.1f}%"
        where = f"{r['nll_unseen']:.3f}" if "nll_unseen" in r else "-"
        secs = "counting" if r["kind"] == "ngram" else f"{r['seconds']:.1f}s"
        print(f"{r['model']:<30} {r['nll']:>9.4f} {r['perplexity']:>10.3f} {unseen:>16} {where:>17} {secs:>10}")
    ng = {r["n"]: r for r in rows if r["kind"] == "ngram"}
    mlp_row = rows[-2]
    print(f"""
Losses are nats per character on the same validation positions (the GPT: every position of
contiguous {args.block_size}-character windows). What to notice:
* 'unseen contexts' is the share of validation positions whose previous n - 1 characters never
  occur in training. It grows with n ({100 * ng[2]['unseen']:.2f}% for bigrams, {100 * ng[3]['unseen']:.1f}% for trigrams,
  {100 * ng[5]['unseen']:.1f}% for 5-grams), which is why the 5-gram loses to the 4-gram: counting runs out of data.
* 'loss where unseen': on the {100 * (1 - seen.mean()):.1f}% of positions whose {args.context} previous characters never
  occur in training, the {ctx_n}-gram can only fall back on smoothing (loss {ng[ctx_n]['nll_unseen']:.2f}, close to
  log V = {math.log(V):.2f}); the MLP, which sees the same {args.context} characters, gets {mlp_row['nll_unseen']:.2f},
  because similar contexts share what they learned through the embeddings.
* on this much text a counting model is a strong baseline: trained for seconds, the neural models
  have not caught up overall. More steps (--mlp-steps, --gpt-steps, or `tinygrad-lm train`) close
  the gap, and the GPT's {args.block_size}-character context is what eventually beats any fixed n.""")
    checks = [("unseen contexts grow with the order", ng[2]["unseen"] < ng[3]["unseen"] < ng[5]["unseen"]),
              ("bigram beats unigram", ng[2]["nll"] < ng[1]["nll"]),
              ("the MLP beats counting where the context is unseen", mlp_row["nll_unseen"] < ng[ctx_n]["nll_unseen"]),
              ("every perplexity is finite and > 1", all(1 < r["perplexity"] < math.inf for r in rows))]
    failed = [name for name, ok in checks if not ok]
    print("\nchecks: " + ("all passed" if not failed else "FAILED: " + ", ".join(failed)))
    return {"rows": rows, "unseen": {n: r["unseen"] for n, r in ng.items()},
            "loss_where_unseen": {"ngram": ng[ctx_n]["nll_unseen"], "mlp": mlp_row["nll_unseen"]},
            "perplexity": {r["kind"] if r["kind"] != "ngram" else f"{r['n']}-gram": r["perplexity"] for r in rows},
            "failed": failed}


if __name__ == "__main__":
    sys.exit(1 if main()["failed"] else 0)
