"""Decoding strategies side by side: greedy, temperature sampling, top-k, top-p and beam search.

A language model gives a distribution over the next token; decoding decides what to do with
it. We train a small character-level GPT for a few seconds on the built-in corpus (Python's
documentation topics), then continue one prompt with every strategy and score each result
by its total log-probability under the model, sum_t log p(x_t | x_<t):

* greedy      always the most probable next token: locally best, but it tends to loop;
* sampling    draw from softmax(logits / T): T = 0.8 is a little safer than T = 1.0;
* top-k       sample only among the k most probable tokens;
* top-p       sample only among the smallest set of tokens holding probability p (nucleus);
* beam        keep the `width` most probable prefixes at each step: it finds sequences the
              model thinks more probable than greedy's (it can revisit an early choice).

Run:  python examples/decoding_strategies.py [--steps 300]
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

from tinygrad_lm import manual_seed  # noqa: E402
from tinygrad_lm.data import CharTokenizer, builtin_corpus, train_val_split  # noqa: E402
from tinygrad_lm.generate import generate  # noqa: E402
from tinygrad_lm.models.gpt import GPT, GPTConfig  # noqa: E402
from tinygrad_lm.train import fit  # noqa: E402


def train_small_gpt(ids, vocab_size, steps, block_size=32, n_layer=2, n_head=2, n_embd=64, batch_size=16,
                    lr=3e-3, seed=0, log=print):
    """The plain training loop: random windows, cross-entropy, backward, clip, AdamW."""
    manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head,
                          n_embd=n_embd, dropout=0.0, bias=False))
    t0 = time.perf_counter()
    losses = fit(model, ids, steps, batch_size=batch_size, lr=lr, seed=seed)
    log(f"trained a {n_layer}-layer GPT ({model.num_parameters():,} parameters) for {steps} steps in "
        f"{time.perf_counter() - t0:.1f}s: loss {np.mean(losses[:10]):.3f} -> {np.mean(losses[-10:]):.3f}")
    return model


def repeated_fraction(tokens, n=4) -> float:
    """Share of the n-grams of a sequence that already occurred earlier in it (0 = no repetition)."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return 0.0 if not grams else 1.0 - len(set(grams)) / len(grams)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300, help="training steps")
    ap.add_argument("--chars", type=int, default=200_000, help="how much of the corpus to use")
    ap.add_argument("--n-embd", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=60, help="tokens to generate")
    ap.add_argument("--prompt", default="In the ")
    ap.add_argument("--compare-prompts", nargs="*", default=["The ", "If ", "This ", "x = "],
                    help="more prompts on which greedy and beam search are compared")
    ap.add_argument("--beam-width", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    text = builtin_corpus()[:args.chars]
    tok = CharTokenizer.from_text(text)
    train, _ = train_val_split(tok.encode_array(text))
    model = train_small_gpt(train, tok.vocab_size, args.steps, n_embd=args.n_embd, seed=args.seed)
    prompt = tok.encode(args.prompt)
    rng = np.random.default_rng(args.seed)
    n = args.tokens
    runs = [
        ("greedy", generate(model, prompt, n, strategy="greedy")[0]),
        ("sample T=0.8", generate(model, prompt, n, strategy="sample", temperature=0.8, rng=rng)[0]),
        ("sample T=1.0", generate(model, prompt, n, strategy="sample", temperature=1.0, rng=rng)[0]),
        ("top-k k=5", generate(model, prompt, n, strategy="sample", temperature=1.0, top_k=5, rng=rng)[0]),
        ("top-p p=0.9", generate(model, prompt, n, strategy="sample", temperature=1.0, top_p=0.9, rng=rng)[0]),
        (f"beam width={args.beam_width}", generate(model, prompt, n, strategy="beam", beam_width=args.beam_width)[0]),
    ]
    print(f"\nprompt {args.prompt!r}, {n} new characters each; log p = sum of log p(token | prefix) under the model")
    print(f"(higher is more probable; 'repeats' = share of 4-character sequences that occurred earlier in the output)\n")
    results = {}
    for name, g in runs:
        rep = repeated_fraction(g.tokens)
        results[name] = {"text": tok.decode(g.tokens), "logprob": g.logprob, "repeated": rep, "tokens": g.tokens}
        print(f"{name:<14} log p {g.logprob:8.2f}   repeats {100 * rep:4.0f}%   {args.prompt + tok.decode(g.tokens)!r}")
    greedy, beam = results["greedy"], results[f"beam width={args.beam_width}"]
    samples = [v for k, v in results.items() if k.startswith(("sample", "top"))]

    # greedy against beam search on a few more prompts
    pairs = [(args.prompt, greedy["logprob"], beam["logprob"], greedy["tokens"] == beam["tokens"])]
    for p in args.compare_prompts:
        ids = tok.encode(p)
        g = generate(model, ids, n, strategy="greedy")[0]
        b = generate(model, ids, n, strategy="beam", beam_width=args.beam_width)[0]
        pairs.append((p, g.logprob, b.logprob, g.tokens == b.tokens))
    print(f"\ngreedy vs beam search (width {args.beam_width}), total log p of {n} new characters:")
    for p, g, b, same in pairs:
        verdict = "the same sequence" if same else f"beam's is {math.exp(b - g):.3g}x as probable"
        print(f"  {p!r:<12} greedy {g:8.2f}   beam {b:8.2f}   {verdict}")
    tol = 1e-6 * n  # the same sequence scored in a batch of beams can differ in the last float32 digits
    better = sum(not same and b > g + tol for _, g, b, same in pairs)

    print("\nWhat to notice:")
    print(f"* greedy repeats itself ({100 * greedy['repeated']:.0f}% of its 4-grams are repeats; the samples average "
          f"{100 * np.mean([s['repeated'] for s in samples]):.0f}%): the argmax from a state leads back to that state.")
    print(f"* beam search keeps {args.beam_width} prefixes alive and so can revisit an early choice: its sequence is at "
          f"least as probable as greedy's on every prompt, and more probable on {better} of {len(pairs)}.")
    if beam["repeated"] >= greedy["repeated"] - 0.05:
        print(f"* ... yet it repeats itself as much ({100 * beam['repeated']:.0f}%): the most probable sequence is not "
              "the most natural one.")
        print("  Loops are probable under a language model, which is why open-ended text is sampled.")
    print("* sampled text has a much lower log p (it takes less likely tokens on purpose) but hardly repeats;")
    print("  lower temperature, top-k and top-p cut off the unlikely tail, trading some variety for safety.")
    checks = [("beam search scores at least as high as greedy", all(b >= g - tol for _, g, b, _ in pairs)),
              ("greedy is deterministic", generate(model, prompt, n, strategy="greedy")[0].tokens == greedy["tokens"]),
              ("every log-probability is <= 0", all(r["logprob"] <= 0 for r in results.values()))]
    failed = [name for name, ok in checks if not ok]
    print("\nchecks: " + ("all passed" if not failed else "FAILED: " + ", ".join(failed)))
    return {"results": results, "greedy_logprob": greedy["logprob"], "beam_logprob": beam["logprob"],
            "greedy_vs_beam": pairs, "beam_strictly_better": better,
            "greedy_repeated": greedy["repeated"], "failed": failed}


if __name__ == "__main__":
    sys.exit(1 if main()["failed"] else 0)
