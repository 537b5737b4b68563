"""The second training stage: preference optimization (DPO) makes a model write fewer 'e's.

Pretraining teaches a model to continue text the way its corpus does. The second stage
moves it toward the answers people prefer. Here a rule anyone can check in the samples
stands in for the human raters: of two sampled continuations of the same prompt, the one
with fewer letters 'e' is preferred (a lipogram judge). The steps:

1. pretrain a small character-level GPT briefly on the built-in corpus (`train`, as
   `tinygrad-lm train` runs it, into a checkpoint folder);
2. sample two continuations of each of a few hundred prompts and let the judge pick: the
   preference pairs {"prompt", "chosen", "rejected"} of a JSONL file (ties are dropped);
3. run DPO from the checkpoint (`dpo`, as `tinygrad-lm dpo` runs it): the policy starts as
   the pretrained model, the reference is a frozen copy of it, and the loss
   -log sigmoid(beta ((log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected))))
   pushes the policy's log-probability up on the chosen answers and down on the rejected
   ones, relative to the reference;
4. compare before and after: the held-out pairs' preference accuracy and reward margin, the
   judge's statistic (the share of 'e' among the generated letters) over fresh samples of
   prompts the pairs never used, how far the policy drifted from the reference (its loss on
   the pretraining text), and a sample from each.

Run:  python examples/preference_dpo.py [--beta 0.1] [--lr 2e-5] [--dpo-steps 150] [--seed 0]
(the DPO settings default to tinygrad-lm dpo's; 15 to 25 s on a 2-core CPU)
"""
from __future__ import annotations

import os

# These models multiply matrices of a few dozen rows: BLAS worker threads cost more than they
# save, and on a busy machine they spin against each other. One thread, unless the caller chose
# otherwise (this only takes effect when run as a script, before numpy loads).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from tinygrad_lm import Tensor, no_grad  # noqa: E402
from tinygrad_lm.checkpoint import load_model  # noqa: E402
from tinygrad_lm.data import builtin_corpus, load_preference_pairs, train_val_split  # noqa: E402
from tinygrad_lm.evaluate import estimate_loss  # noqa: E402
from tinygrad_lm.preference import DPOConfig, dpo, pair_logprobs, split_pairs  # noqa: E402
from tinygrad_lm.train import TrainConfig, train  # noqa: E402

PROMPT_CHARS, ANSWER_CHARS = 16, 24


@no_grad()
def sample(model, prompts: np.ndarray, n_new: int, rng: np.random.Generator, temperature: float = 1.0) -> np.ndarray:
    """Continue every row of `prompts` (N, P) by `n_new` tokens drawn from softmax(logits / T),
    all rows at once, with the KV cache -> (N, n_new) token ids."""
    logits, cache = model.forward_step(Tensor(prompts))
    out = np.zeros((len(prompts), n_new), dtype=np.int64)
    for t in range(n_new):
        z = logits.numpy()[:, -1, :].astype(np.float64) / temperature
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        u = rng.random((len(prompts), 1))
        out[:, t] = np.minimum((np.cumsum(p, 1) < u).sum(1), p.shape[1] - 1)   # inverse-CDF draw per row
        if t + 1 < n_new:
            logits, cache = model.forward_step(Tensor(out[:, t:t + 1]), cache)
    return out


def e_share(texts) -> float:
    """The judge's statistic: the share of 'e' among the letters of `texts`."""
    letters = sum(c.isalpha() for t in texts for c in t)
    return sum(t.count("e") for t in texts) / max(letters, 1)


def prompts_from(text: str, n: int, rng: np.random.Generator) -> list[str]:
    """`n` prompts of PROMPT_CHARS characters of prose from `text`: each starts a word after a
    space and holds no newline and at least 10 letters (no code listings or tables)."""
    starts = np.flatnonzero(np.frombuffer(text[:-PROMPT_CHARS - 1].encode("utf-32-le"), dtype="<u4") == ord(" ")) + 1
    out = []
    while len(out) < n:
        for s in rng.choice(starts, size=2 * n):
            p = text[s:s + PROMPT_CHARS]
            if p[0].isalpha() and "\n" not in p and sum(c.isalpha() for c in p) >= 10 and len(out) < n:
                out.append(p)
    return out


def preference_pairs(model, tok, prompts: list[str], rng) -> tuple[list[dict], int]:
    """Two sampled answers per prompt, judged: fewer 'e' is chosen; ties dropped -> (pairs, ties)."""
    ids = np.array([tok.encode(p) for p in prompts])
    answers = sample(model, np.repeat(ids, 2, axis=0), ANSWER_CHARS, rng).reshape(len(prompts), 2, -1)
    pairs, ties = [], 0
    for p, (a, b) in zip(prompts, answers):
        a, b = tok.decode(a), tok.decode(b)
        if a.count("e") == b.count("e") or a == b:
            ties += 1
            continue
        chosen, rejected = (a, b) if a.count("e") < b.count("e") else (b, a)
        pairs.append({"prompt": p, "chosen": chosen, "rejected": rejected})
    return pairs, ties


def fresh_samples(model, tok, prompts, seed) -> list[str]:
    ids = np.array([tok.encode(p) for p in prompts])
    return [tok.decode(a) for a in sample(model, ids, ANSWER_CHARS, np.random.default_rng(seed))]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pretrain-steps", type=int, default=600)
    ap.add_argument("--prompts", type=int, default=1024, help="prompts to sample a pair for (ties are dropped)")
    ap.add_argument("--dpo-steps", type=int, default=DPOConfig().max_iters)
    ap.add_argument("--beta", type=float, default=DPOConfig().beta)
    ap.add_argument("--lr", type=float, default=DPOConfig().lr, help="DPO's learning rate")
    ap.add_argument("--fresh", type=int, default=128, help="fresh prompts to measure the rule on")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", help="keep the runs here (default: a temporary folder, removed at the end)")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    work = args.out_dir or tempfile.mkdtemp(prefix="preference-dpo-")
    os.makedirs(work, exist_ok=True)
    quiet = lambda *_: None  # noqa: E731  (the runs' own lines; the example prints its summary)
    try:
        # 1. pretraining: next-token prediction on the built-in corpus
        base = os.path.join(work, "pretrained")
        train(TrainConfig(n_layer=2, n_head=4, n_embd=64, block_size=48, batch_size=16, lr=3e-3, min_lr=3e-4,
                          warmup_iters=20, max_iters=args.pretrain_steps, lr_decay_iters=args.pretrain_steps,
                          eval_interval=args.pretrain_steps, eval_iters=4, sample_tokens=0, seed=args.seed,
                          out_dir=base, progress=False, force=True), log=quiet)
        reference, tok, _ = load_model(base)
        corpus = builtin_corpus()
        cut = int(0.9 * len(corpus))  # pairs from the training text's prompts, fresh prompts from the held-out tail
        rng = np.random.default_rng(args.seed)

        # 2. the judge: of two sampled answers, the one with fewer 'e' is preferred
        pairs, ties = preference_pairs(reference, tok, prompts_from(corpus[:cut], args.prompts, rng), rng)
        pairs_path = os.path.join(work, "pairs.jsonl")
        with open(pairs_path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(p) + "\n" for p in pairs)

        # 3. DPO from the pretrained checkpoint
        run = dpo(DPOConfig(init_from=base, pairs=pairs_path, out_dir=os.path.join(work, "dpo"), beta=args.beta,
                            lr=args.lr, max_iters=args.dpo_steps,
                            eval_interval=max(args.dpo_steps // 3, 1), val_share=0.2, seed=args.seed, progress=False,
                            force=True), log=quiet)
        policy = load_model(os.path.join(work, "dpo"))[0]
        # the plain likelihood's verdict on the held-out pairs: does the model give the chosen
        # answer (24 characters, as the rejected one) the higher log-probability?
        pair_set, _ = load_preference_pairs(open(pairs_path, encoding="utf-8").read(), pairs_path, tok, 48, "the")
        held_out = pair_set.subset(split_pairs(len(pair_set), 0.2, args.seed)[1])
        scored = [pair_logprobs(m, held_out, 16, "cpu") for m in (reference, policy)]   # (log p(chosen), log p(rejected))
        likes = [float(np.mean(c > r)) for c, r in scored]
        mean_logp = [(float(c.mean()), float(r.mean())) for c, r in scored]

        # 4. before and after
        fresh = prompts_from(corpus[cut:], args.fresh, np.random.default_rng(args.seed + 1))
        before_texts = fresh_samples(reference, tok, fresh, args.seed + 2)
        after_texts = fresh_samples(policy, tok, fresh, args.seed + 2)
        _, val_ids = train_val_split(tok.encode_array(corpus))
        drift = [estimate_loss(m, val_ids, 16, 48, 8, args.seed + 3, "cpu") for m in (reference, policy)]
    finally:
        if not args.out_dir:
            shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - t_start

    first, last = run["first_eval"], run["last_eval"]
    stat = (e_share(before_texts), e_share(after_texts))
    print(f"pretrained a 2-layer character GPT for {args.pretrain_steps} steps; the judge turned {args.prompts} "
          f"prompts into {len(pairs)} preference pairs ({ties} ties dropped);\nDPO (beta {args.beta:g}, lr "
          f"{args.lr:g}) for {args.dpo_steps} steps on {run['train_pairs']} of them, {run['held_out_pairs']} held out.\n")
    print(f"  {'':34}{'before':>10}{'after':>10}")
    print(f"  {'held-out preference accuracy':34}{first['accuracy']:>10.3f}{last['accuracy']:>10.3f}")
    print(f"  {'held-out mean reward margin':34}{first['margin']:>+10.4f}{last['margin']:>+10.4f}")
    print(f"  {'held-out DPO loss':34}{first['loss']:>10.4f}{last['loss']:>10.4f}")
    print(f"  {'held-out: log p(chosen) higher':34}{likes[0]:>10.3f}{likes[1]:>10.3f}   (the plain likelihood's ranking)")
    print(f"  {'held-out mean log p(chosen)':34}{mean_logp[0][0]:>10.3f}{mean_logp[1][0]:>10.3f}")
    print(f"  {'held-out mean log p(rejected)':34}{mean_logp[0][1]:>10.3f}{mean_logp[1][1]:>10.3f}")
    print(f"  {'share of e among sampled letters':34}{stat[0]:>10.4f}{stat[1]:>10.4f}   ({args.fresh} fresh prompts)")
    print(f"  {'loss on the pretraining text':34}{drift[0]:>10.4f}{drift[1]:>10.4f}   (drift from the reference)")
    print("\n  (before DPO the policy is the reference, so every margin is exactly 0 and no pair counts as")
    print("   preferred: accuracy 0, loss log 2 = 0.6931)")
    print(f"\n  prompt:           {fresh[0]!r}\n  reference writes: {before_texts[0]!r}\n  policy writes:    {after_texts[0]!r}")
    checks = [("held-out preference accuracy rose above one half", last["accuracy"] > max(first["accuracy"], 0.5)),
              ("held-out reward margin rose above 0", last["margin"] > first["margin"] and last["margin"] > 0),
              ("the share of 'e' in fresh samples fell", stat[1] < stat[0])]
    failed = [name for name, ok in checks if not ok]
    print(f"\n{seconds:.0f} s in all. checks: " + ("all passed" if not failed else "FAILED: " + ", ".join(failed)))
    return {"pairs": len(pairs), "ties": ties, "first_eval": first, "last_eval": last, "likelihood_prefers": likes,
            "mean_logp": mean_logp,
            "e_share_before": stat[0],
            "e_share_after": stat[1], "drift": drift, "samples": (fresh[0], before_texts[0], after_texts[0]),
            "seconds": seconds, "failed": failed}


if __name__ == "__main__":
    sys.exit(1 if main()["failed"] else 0)
