"""`tinygrad-lm`: train | dpo | sample | eval | ngram | gradcheck | bench | graph.

Every error a user can cause (a bad flag, a missing file, a broken checkpoint) ends in a
one-line message naming the problem and exit status 2; nothing on disk is changed. Every
numeric flag of every subcommand has a range (tinygrad_lm/ranges.py, shown by --help),
checked while the flags are parsed. A training run stopped by Ctrl-C exits with 130, by
SIGTERM with 143 (128 + the signal's number, as a shell reports it), after saving.
"""
from __future__ import annotations

import argparse
import os
import sys


def _add_train(sub):
    from .train_config import PRESET_ABOUT, PRESETS, describe_preset
    p = sub.add_parser("train", help="train a GPT on a text file (default: the built-in corpus)",
                       description="Train a GPT. Without flags: the 'default' setup on the built-in corpus "
                                   "(Python's own documentation topics), about 5 minutes on 2 CPU cores.")
    p.add_argument("--preset", choices=list(PRESETS), default=None,
                   help="; ".join(f"{name} = {PRESET_ABOUT[name]} ({describe_preset(name)})" for name in PRESETS)
                        + ". Explicit flags override the preset.")
    p.add_argument("--data", help="a UTF-8 text file to train on (default: the built-in corpus); a .jsonl file holds "
                                  "prompt/completion examples, a line {\"prompt\": ..., \"completion\": ...} each")
    p.add_argument("--init-from", metavar="DIR",
                   help="fine-tune: start from the weights of the checkpoint in DIR (the --out-dir of a train or dpo "
                        "run; not its optimizer state or step), with its tokenizer and model shape, into a new --out-dir")
    p.add_argument("--loss-on", choices=["all", "completion"],
                   help="with .jsonl examples: count every token in the loss (all, the default) or only the "
                        "completion's (completion: the prompt's targets are ignored)")
    p.add_argument("--tokenizer", choices=["char", "bpe"])
    p.add_argument("--vocab-size", type=int, help="BPE vocabulary size (>= 256)")
    for name, typ in (("n-layer", int), ("n-head", int), ("n-embd", int), ("block-size", int), ("batch-size", int),
                      ("lr", float), ("min-lr", float), ("warmup-iters", int), ("max-iters", int),
                      ("lr-decay-iters", int), ("weight-decay", float), ("beta1", float), ("beta2", float),
                      ("dropout", float), ("grad-clip", float), ("eval-interval", int), ("eval-iters", int),
                      ("seed", int), ("sample-tokens", int)):
        p.add_argument(f"--{name}", type=typ)
    p.add_argument("--bias", action=argparse.BooleanOptionalAction, default=None, help="biases in Linear and LayerNorm")
    p.add_argument("--gelu-approximate", choices=["tanh", "none"],
                   help="the MLP's GELU: tanh (default; GPT-2's) or none (exact erf, as nanoGPT's nn.GELU())")
    p.add_argument("--device", help="cpu (default), cuda or cuda:N")
    p.add_argument("--dtype", choices=["float32", "float64"])
    p.add_argument("--out-dir", help="where checkpoints, loss.csv and loss.png go (default: out)")
    # default None (not False): a flag left out is not "given", so TrainConfig's default stands
    p.add_argument("--resume", action="store_true", default=None,
                   help="continue the run in --out-dir exactly where it stopped: its whole configuration and data "
                        "come from the checkpoint; only --max-iters, --eval-interval, --eval-iters, --sample-tokens, "
                        "--device and --grad-accum-steps (and the number of processes) may change (each change is "
                        "printed), any other flag that differs is refused")
    p.add_argument("--force", action="store_true", default=None, help="overwrite a checkpoint already in --out-dir")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    # data parallel (tinygrad_lm/distributed.py; docs/distributed.md)
    p.add_argument("--grad-accum-steps", type=int, metavar="K",
                   help="micro-batches accumulated into one optimizer step (default 1); --batch-size stays the "
                        "global batch, split over K micro-batches and the ranks")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="train on N processes: re-launches through mpiexec (pip install -e \".[mpi]\"); the same as "
                        "`mpiexec -n N tinygrad-lm train ...`")
    p.set_defaults(func=cmd_train)


def cmd_train(a):
    from . import distributed
    from .train_config import config_from_args
    args = {k: v for k, v in vars(a).items() if k not in ("func", "preset", "command", "no_progress", "nproc")}
    cfg = config_from_args(args, a.preset)
    cfg.progress = not a.no_progress
    world = distributed.env_world_size()
    if a.nproc is not None and (world is None or world == 1):
        # --nproc N: check what can be checked here, once, then re-launch as N ranks (a --resume's
        # batch is the checkpoint's: the ranks check it once they have read it)
        cfg.validate()
        distributed.check_nproc(a.nproc, None if cfg.resume else cfg.batch_size, cfg.grad_accum_steps)
        if a.nproc > 1:
            return distributed.launch(a.nproc, distributed.strip_nproc(a.argv))
    elif a.nproc is not None and a.nproc != world:
        raise ValueError(f"--nproc {a.nproc}: this process is already one of "
                         f"{world if world > 0 else 'several'} ranks started by mpiexec (leave out --nproc under mpiexec)")
    dist = distributed.init()
    if dist is None:
        return _train(cfg)
    from .train import TrainingDiverged  # decided on all-reduced numbers: every rank raises it at the same step
    return distributed.run_guarded(dist, lambda: _train(cfg), "train", known=_user_errors(), agreed=(TrainingDiverged,))


def _train(cfg):
    from .train import train
    summary = train(cfg)
    if summary["interrupted"]:
        import signal
        return 128 + int(getattr(signal, summary.get("signal") or "SIGINT", signal.SIGINT))
    return 0


def _add_dpo(sub):
    p = sub.add_parser("dpo", help="preference optimization (DPO) of a trained checkpoint on chosen/rejected pairs",
                       description="Direct Preference Optimization: move a trained model toward the chosen answer "
                                   "of each pair and away from the rejected one, against a frozen copy of itself "
                                   "(docs/preference.md).")
    p.add_argument("--init-from", metavar="DIR",
                   help="the --out-dir of a train (or dpo) run: the policy starts from its weights, the frozen "
                        "reference is a copy of them, the tokenizer and shape are its")
    p.add_argument("--pairs", metavar="FILE.jsonl",
                   help='preference pairs, a line {"prompt": ..., "chosen": ..., "rejected": ...} each')
    p.add_argument("--out-dir", help="where checkpoints, loss.csv and loss.png go (default: out-dpo)")
    from .train_config import DPOConfig
    defaults = DPOConfig()
    for name, typ, help_ in (
            ("beta", float, "how strongly the policy is held to the reference"),
            ("val-share", float, "the share of the pairs held out for evaluation"),
            ("batch-size", int, "pairs per step"),
            ("lr", float, "AdamW learning rate, after a linear warmup"),
            ("warmup-iters", int, ""), ("max-iters", int, ""), ("weight-decay", float, ""), ("grad-clip", float, ""),
            ("eval-interval", int, "evaluate on the held-out pairs and save every this many steps"),
            ("seed", int, "the held-out split and the batches")):
        default = f"default {getattr(defaults, name.replace('-', '_')):g}"
        help_ = f"{help_} ({default})" if help_ else default
        p.add_argument(f"--{name}", type=typ, help=help_)
    p.add_argument("--device", help="cpu (default), cuda or cuda:N")
    p.add_argument("--resume", action="store_true", default=None,
                   help="continue the dpo run in --out-dir exactly where it stopped; only --max-iters, "
                        "--eval-interval and --device may change")
    p.add_argument("--force", action="store_true", default=None, help="overwrite a checkpoint already in --out-dir")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_dpo)


def cmd_dpo(a):
    from dataclasses import fields
    from .preference import dpo
    from .train_config import DPOConfig
    cfg = DPOConfig()
    given = []
    for f in fields(DPOConfig):
        v = getattr(a, f.name, None)
        if v is not None and f.name not in ("progress", "explicit"):
            setattr(cfg, f.name, v)
            given.append(f.name)
    cfg.explicit, cfg.progress = tuple(given), not a.no_progress
    summary = dpo(cfg)
    if summary["interrupted"]:
        import signal
        return 128 + int(getattr(signal, summary.get("signal") or "SIGINT", signal.SIGINT))
    return 0


def _add_sample(sub):
    p = sub.add_parser("sample", help="continue a prompt with a trained checkpoint")
    p.add_argument("--out-dir", default="out", help="the training run's folder (default: out)")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--strategy", choices=["greedy", "sample", "beam"], default="sample")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--beam-width", type=int, default=4)
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--show-probs", type=int, nargs="?", const=5, default=0, metavar="K",
                   help="print the top K candidates and their probabilities at each step (default K: 5)")
    p.add_argument("--no-cache", action="store_true", help="re-run the whole context each step instead of using the KV cache")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_sample)


def cmd_sample(a):
    import numpy as np
    from .checkpoint import load_model
    from .evaluate import perplexity
    from .generate import generate, validate_options
    validate_options(a.strategy, a.temperature, a.top_k, a.top_p, a.beam_width, a.num_samples)
    if a.prompt == "":
        raise ValueError("--prompt must not be empty")
    model, tok, meta = load_model(a.out_dir, a.device)
    if a.show_probs > tok.vocab_size:
        raise ValueError(f"--show-probs must be at most the vocabulary size ({tok.vocab_size}), got {a.show_probs}")
    _check_generation_fits(model, meta, a)
    prompt = tok.encode(a.prompt)
    gens = generate(model, prompt, a.max_new_tokens, strategy=a.strategy, temperature=a.temperature, top_k=a.top_k,
                    top_p=a.top_p, num_samples=a.num_samples, beam_width=a.beam_width,
                    rng=np.random.default_rng(a.seed), use_cache=not a.no_cache, show_probs=a.show_probs)
    for i, g in enumerate(gens):
        label = f"beam {i}" if a.strategy == "beam" else f"sample {i}"
        print(f"--- {label}: total log-probability {g.logprob:.3f} over {len(g.tokens)} tokens "
              f"(perplexity {perplexity(-g.logprob / max(len(g.tokens), 1)):.2f})")
        print(a.prompt + tok.decode(g.tokens))
        if g.top:
            for t, (tokid, cands) in enumerate(zip(g.tokens, g.top)):
                shown = "  ".join(f"{tok.decode([c])!r}:{p:.3f}" for c, p in cands)
                print(f"  step {t:3d} chose {tok.decode([tokid])!r:8}  top: {shown}")
    return 0


def _check_generation_fits(model, meta, a):
    """Refuse, before generating, what would not fit: the model's activations for every
    sample (or beam) at once, its KV cache, and the generated tokens kept per row (an int64 in
    the output, its copy in the growing context, a Python int in the result: about 64 bytes),
    with --show-probs K candidates per step (a tuple each: about 120 bytes)."""
    from .checkpoint import model_dtype
    from .resources import SIZE_KEYS, check_sizes, inference_bytes, itemsize
    cfg = {k: getattr(model.config, k) for k in SIZE_KEYS}
    rows_key = "beam_width" if a.strategy == "beam" else "num_samples"
    sizes = {**cfg, rows_key: getattr(a, rows_key), "max_new_tokens": a.max_new_tokens, "show_probs": a.show_probs}
    labels = {**{k: f"the checkpoint's {k}" for k in SIZE_KEYS}, rows_key: "--" + rows_key.replace("_", "-"),
              "max_new_tokens": "--max-new-tokens", "show_probs": "--show-probs"}
    s = itemsize(model_dtype(meta))

    def parts(v):
        rows, n = v[rows_key], v["max_new_tokens"]
        return {**inference_bytes({**cfg, **v}, rows, v["block_size"], s, kv_cache=not a.no_cache),
                "generated tokens": 64 * rows * n, "--show-probs candidates": 120 * rows * n * v["show_probs"]}
    check_sizes(parts, sizes, labels, a.device)


def _add_eval(sub):
    p = sub.add_parser("eval", help="loss and perplexity of a checkpoint on a split or a text file")
    p.add_argument("--out-dir", default="out")
    p.add_argument("--split", choices=["train", "val"], default="val")
    p.add_argument("--data", help="a UTF-8 text file to evaluate on instead (all of it)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-batches", type=int, help="stop after this many batches (default: the whole split)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_eval)


def cmd_eval(a):
    from .checkpoint import load_model, model_dtype, run_text
    from .data import encode_splits, is_jsonl, load_prompt_completion, load_text
    from .evaluate import evaluate_split
    from .resources import SIZE_KEYS, check_sizes, inference_bytes, itemsize
    model, tok, meta = load_model(a.out_dir, a.device)
    block = model.config.block_size
    run = meta.get("train_config") if isinstance(meta.get("train_config"), dict) else {}
    loss_on = run.get("loss_on", "all") if run.get("loss_on") in ("all", "completion") else "all"
    if a.data:
        text = load_text(a.data)
        if is_jsonl(a.data):  # prompt/completion examples, scored as the run scored them
            data, what = load_prompt_completion(text, a.data, tok, block, loss_on, "the checkpoint's", split=False)[0], a.data
        else:
            ids = tok.encode_array(text)
            if len(ids) < block + 1:
                raise ValueError(f"{a.data} has {len(ids)} tokens; need at least block_size + 1 = {block + 1}")
            data, what = ids, a.data
    else:  # the split of the text the run trained on: its recorded file, unchanged since
        text, name, path = run_text(meta, a.out_dir, hint="; pass --data FILE to evaluate on a file as it is now")
        if is_jsonl(path):
            train_ids, val_ids, _ = load_prompt_completion(text, name, tok, block, loss_on, "the checkpoint's")
        else:
            train_ids, val_ids = encode_splits(text, tok, block)
        data, what = (train_ids if a.split == "train" else val_ids), f"{name} ({a.split} split)"
    cfg = {k: getattr(model.config, k) for k in SIZE_KEYS}
    # a batch never holds more windows (or examples) than the data
    rows = min(a.batch_size, len(data) if hasattr(data, "iter_batches") else max((len(data) - 1) // block, 1))
    check_sizes(lambda v: inference_bytes({**cfg, **v}, min(v["batch_size"], rows), block, itemsize(model_dtype(meta))),
                {**cfg, "batch_size": a.batch_size}, {**{k: f"the checkpoint's {k}" for k in SIZE_KEYS},
                                                      "batch_size": "--batch-size"}, a.device)
    r = evaluate_split(model, data, a.batch_size, a.device, a.max_batches)
    print(f"{what}: {r['tokens']:,} tokens, loss {r['loss']:.4f} nats/token, perplexity {r['perplexity']:.3f}")
    return 0


def _add_ngram(sub):
    p = sub.add_parser("ngram", help="counting n-gram baseline: val perplexity and unseen contexts")
    p.add_argument("--n", type=int, nargs="+", default=[1, 2, 3, 4, 5], help="orders to fit (default: 1 2 3 4 5)")
    p.add_argument("--unit", choices=["char", "word"], default="char")
    p.add_argument("--k", type=float, default=1.0, help="add-k smoothing (default 1)")
    p.add_argument("--data", help="a UTF-8 text file (default: the built-in corpus)")
    p.set_defaults(func=cmd_ngram)


def cmd_ngram(a):
    import numpy as np
    from .data import CharTokenizer, load_corpus, train_val_split
    from .ngram import ngram_table, word_ids
    from .resources import check_sizes
    text, name = load_corpus(a.data)
    # counting order n over N tokens keeps n int64 arrays of N - n + 1 (the trie's levels)
    # and sorts each: about 32 n (N - n + 1) bytes
    check_sizes(lambda v: {"n-gram counting": 32 * v["n"] * max(len(text) - v["n"] + 1, 0)}, {"n": max(a.n)},
                {"n": "--n"})
    if a.unit == "char":
        ids = CharTokenizer.from_text(text).encode_array(text)
        train, val = train_val_split(ids)
        V = int(ids.max()) + 1
    else:
        cut = int(len(text) * 0.9)
        train, val, vocab = word_ids(text[:cut], text[cut:])
        V = len(vocab)
    rows = ngram_table(np.asarray(train), np.asarray(val), V, ns=tuple(a.n), k=a.k)
    print(f"{name}: {a.unit} n-grams, add-{a.k:g} smoothing, vocab {V}, {len(train):,} train / {len(val):,} val tokens")
    print(f"{'n':>3}  {'val loss':>9}  {'perplexity':>10}  {'unseen contexts':>15}")
    for r in rows:
        print(f"{r['n']:>3}  {r['nll']:>9.4f}  {r['perplexity']:>10.3f}  {100 * r['unseen_context_frac']:>14.1f}%")
    return 0


def _add_gradcheck(sub):
    p = sub.add_parser("gradcheck", help="finite-difference check of every registered op (and a tiny GPT, under its "
                                         "loss and under DPO)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ops", nargs="+", help="only these ops")
    p.add_argument("--no-gpt", action="store_true", help="skip the whole-GPT checks (the language-model loss and DPO)")
    p.set_defaults(func=cmd_gradcheck)


def cmd_gradcheck(a):
    from . import opcheck
    rows = opcheck.run_op_gradchecks(seed=a.seed, ops=a.ops)
    print(opcheck.format_table(rows))
    ok = all(r["passed"] for r in rows)
    if not a.no_gpt and not a.ops:
        for bias in (True, False):
            report = opcheck.gradcheck_gpt(bias=bias, seed=a.seed)
            print(f"\nwhole GPT (float64; 2 layers, 2 heads, 16 dims, block 8, vocab 11, bias={bias}):")
            print(report.table())
            ok = ok and report.passed
        report = opcheck.gradcheck_dpo(seed=a.seed)
        print("\nwhole DPO objective (float64; the same tiny GPT as the policy, 3 preference pairs, beta 0.5, "
              "a frozen reference copy):")
        print(report.table())
        if report.reference_touched:
            print(f"the frozen reference got gradients: {', '.join(report.reference_touched)}")
        ok = ok and report.passed and not report.reference_touched
    print("all gradients match finite differences" if ok else "GRADIENT CHECK FAILED")
    return 0 if ok else 1


def _add_bench(sub):
    p = sub.add_parser("bench", help="op-level and model-level benchmarks (numpy vs cupy vs PyTorch)",
                       description="Benchmarks: the op sweep (--what ops), one GPT training step against PyTorch "
                                   "(--what model; --profile: where its time goes), both (all, the default), or the "
                                   "per-op Python overhead against bare numpy (--what overhead), or the data-parallel "
                                   "gradient all-reduce against the step (--what allreduce).")
    p.add_argument("--quick", action="store_true", help="a ~30 s smoke run")
    p.add_argument("--what", choices=["ops", "model", "all", "overhead", "allreduce"], default="all",
                   help="allreduce: the data-parallel gradient all-reduce against the step, over --nproc ranks")
    p.add_argument("--config", nargs="+", default=None, help="model configs (default: cpu, plus gpu with a GPU), "
                   "layers/heads/dims, block, batch: cpu = nanoGPT's CPU config (4/4/128, block 64, batch 12); "
                   "6x192 (6/6/192, block 128, batch 16); 6x384 (6/6/384, block 256, batch 8); "
                   "gpu = nanoGPT's GPU config (6/6/384, block 256, batch 64)")
    p.add_argument("--device", nargs="+", default=None, help="devices to run (default: cpu, and cuda when available)")
    p.add_argument("--out-dir", default="bench_out", help="where the CSV and PNG go")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    p.add_argument("--ops", nargs="+", default=None, help="only these ops (--what ops, all or overhead)")
    p.add_argument("--threads", type=int, help="numpy's BLAS threads and torch.set_num_threads "
                   "(default: BLAS's own; needs threadpoolctl)")
    g = p.add_argument_group("model step (--what model or all)")
    g.add_argument("--budget", type=float, help="seconds of timed steps per config, all implementations (default 90)")
    g.add_argument("--warmup", type=int, help="warm-up steps per implementation (default 5)")
    g.add_argument("--block", type=int, help="timed steps per turn of each implementation (default 5; "
                   "each turn starts with untimed steps)")
    g.add_argument("--steps", type=int, help="timed steps per implementation instead of a --budget "
                   "(default: as many as the budget allows, 30 to 200)")
    g.add_argument("--composed", action="store_true", help="also time ours with the composed ops "
                   "(F.use_fused(False)): what the fused ops buy")
    g.add_argument("--fresh", action="store_true", help="first time ours and PyTorch eager (SDPA attention) "
                   "each in a fresh process per round, alternating, --rounds rounds (default 5; median of "
                   "each round's --steps timed steps, default 10); the in-process table follows")
    g.add_argument("--ablate", action="store_true", help="with --fresh: also ours with the tiled causal "
                   "attention off (TINYGRAD_LM_ATTENTION_TILE=0) and with two CPU threads "
                   "(TINYGRAD_LM_NUM_THREADS=2), in the same rounds")
    g = p.add_argument_group("profile (--what model --profile)")
    g.add_argument("--profile", action="store_true", help="instead of timing against PyTorch: where our step's "
                   "time goes (phases, time per op)")
    g.add_argument("--profile-steps", type=int, help="steps per measurement (default 30)")
    g.add_argument("--cprofile", action="store_true", help="also print the cProfile listings")
    g.add_argument("--torch-profile", action="store_true", help="also torch.profiler's table of PyTorch's step")
    g = p.add_argument_group("per-op overhead (--what overhead)")
    g.add_argument("--sizes", nargs="+", choices=["tiny", "small", "medium"],
                   help="1x1, 64x64, 1024x1024 (default: all three)")
    g.add_argument("--clock", choices=["wall", "process"], help="wall: time.perf_counter (default); process: "
                   "this process's CPU time, which other jobs on a busy machine disturb far less")
    g.add_argument("--rounds", type=int, help="timing rounds per figure, the median reported (default 7; "
                   "with --what model --fresh: fresh-process rounds, default 5)")
    g = p.add_argument_group("data parallel (--what allreduce)")
    g.add_argument("--nproc", type=int, help="MPI ranks, launched through mpiexec (default 2)")
    p.set_defaults(func=cmd_bench)


# bench flags that apply to some modes only: flag -> (modes, how to say it); the mode is
# --what, or "profile" for --what model --profile
_MODEL = (("model", "all"), "--what model or all")
_PROFILE = (("profile",), "--what model --profile")
_OVERHEAD = (("overhead",), "--what overhead")
_ALLREDUCE = (("allreduce",), "--what allreduce")
_NOT_OVERHEAD = (("ops", "model", "all", "profile", "allreduce"), "--what ops, model, all or allreduce")
_BENCH_FLAG_MODES = {"budget": _MODEL, "warmup": _MODEL, "block": _MODEL, "steps": _MODEL, "composed": _MODEL,
                     "profile_steps": _PROFILE, "cprofile": _PROFILE, "torch_profile": _PROFILE,
                     "sizes": _OVERHEAD, "clock": _OVERHEAD,
                     "rounds": (("overhead", "model"), "--what overhead, or --what model --fresh"),
                     "fresh": _MODEL, "ablate": _MODEL,
                     "config": _NOT_OVERHEAD, "device": _NOT_OVERHEAD, "nproc": _ALLREDUCE,
                     "threads": (("ops", "model", "all", "profile", "overhead"), "--what ops, model, all or overhead"),
                     "ops": (("ops", "all", "overhead"), "--what ops, all or overhead")}


def cmd_bench(a):
    from . import bench
    if a.profile and a.what != "model":
        raise ValueError("--profile: only with --what model")
    mode = "profile" if a.profile else a.what
    for flag, (modes, where) in _BENCH_FLAG_MODES.items():
        if vars(a)[flag] not in (None, False) and mode not in modes:
            raise ValueError(f"--{flag.replace('_', '-')}: only with {where}")
    if mode == "overhead":
        return bench.run_overhead(ops=a.ops, sizes=a.sizes, clock=a.clock, rounds=a.rounds, quick=a.quick,
                                  threads=a.threads, no_torch=a.no_torch, out_dir=a.out_dir)
    if mode == "profile":
        return bench.run_profile(configs=a.config, devices=a.device, steps=a.profile_steps, cprofile=a.cprofile,
                                 torch_profile=a.torch_profile, threads=a.threads, quick=a.quick)
    return bench.run_bench(what=a.what, quick=a.quick, configs=a.config, devices=a.device, out_dir=a.out_dir,
                           no_torch=a.no_torch, ops=a.ops, threads=a.threads, budget=a.budget, warmup=a.warmup,
                           block=a.block, steps=a.steps, composed=a.composed, nproc=a.nproc, fresh=a.fresh,
                           rounds=a.rounds, ablate=a.ablate)


def _add_graph(sub):
    p = sub.add_parser("graph", help="the computation graph of a tiny GPT's loss as Graphviz DOT (SVG/PNG with `dot`)")
    p.add_argument("--output", "-o", default="gpt_graph.dot", help="file to write: .dot, .svg or .png")
    p.add_argument("--collapse", action="store_true", help="one node per module")
    p.add_argument("--n-layer", type=int, default=1)
    p.add_argument("--no-backward", action="store_true", help="don't run backward (no gradient norms on nodes)")
    p.set_defaults(func=cmd_graph)


def cmd_graph(a):
    from .viz import graph_command
    return graph_command(a)


class _Parser(argparse.ArgumentParser):
    """argparse, with its own errors (an unknown flag, 'abc' for a number) in one line and
    exit status 2, like every other error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def numeric_options(parser) -> dict:
    """{subcommand: {dest: argparse action}} of every option of a build_parser() parser that
    takes a number (type int or float)."""
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sp in action.choices.items():
                out[name] = {a.dest: a for a in sp._actions if a.type in (int, float)}
    return out


def check_ranges(command: str, args) -> None:
    """Every numeric option of `command` given in `args` (a namespace) within its range from
    ranges.FLAG_RANGES; ValueError('--seed must be an integer in [0, 2**64 - 1], got -1')."""
    from .ranges import FLAG_RANGES, flag_name
    for dest, allowed in FLAG_RANGES.get(command, {}).items():
        value = getattr(args, dest, None)
        for v in value if isinstance(value, list) else [value]:
            if v is not None:
                allowed.check(flag_name(dest), v)


def _apply_ranges(parser) -> None:
    """Every subcommand checks its numeric options' ranges (ranges.FLAG_RANGES) before it
    runs, and --help shows each range. A numeric option missing from the table fails a test."""
    from .ranges import FLAG_RANGES
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for name, sp in action.choices.items():
            table = FLAG_RANGES.get(name, {})
            for a in sp._actions:
                if a.dest in table:
                    allowed = table[a.dest]
                    shown = allowed.describe() + (f"; {allowed.note}" if allowed.note else "")
                    a.help = f"{a.help} ({shown})" if a.help else shown
            func = sp.get_default("func")

            def checked(args, _func=func, _name=name):
                check_ranges(_name, args)
                return _func(args)
            sp.set_defaults(func=checked)


def build_parser():
    parser = _Parser(prog="tinygrad-lm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_train, _add_dpo, _add_sample, _add_eval, _add_ngram, _add_gradcheck, _add_bench, _add_graph):
        add(sub)
    _apply_ranges(parser)
    return parser


def _user_errors() -> tuple:
    """The errors a user can cause: one line and exit status 2, no traceback. (TrainingDiverged
    is a FloatingPointError; FolderLockedError and the file errors are OSErrors; ResourceError,
    CheckpointError and DataError are ValueErrors.)"""
    from .backend import DeviceError
    from .checkpoint import CheckpointError
    from .data import DataError
    return ValueError, DataError, CheckpointError, DeviceError, OSError, FloatingPointError, ImportError


def main(argv=None) -> int:
    from .distributed import env_rank
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else [str(x) for x in argv]
    if env_rank():  # rank > 0 of an mpiexec job: every rank parses the same flags; rank 0 reports a bad one
        import contextlib
        import io
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            a = parser.parse_args(argv)
    else:
        a = parser.parse_args(argv)
    a.argv = argv
    if os.environ.get("TINYGRAD_LM_NO_MALLOC_TUNE") != "1":
        from .backend import tune_host_allocator
        tune_host_allocator()  # numpy's temporaries reuse warm pages (docs/performance.md)
    # under mpiexec every rank gets here with the same flags: an error before the ranks'
    # own error handling (distributed.run_guarded) is printed by rank 0 alone
    say = (lambda line: None) if env_rank() else (lambda line: print(line, file=sys.stderr))
    try:
        return a.func(a)
    except _user_errors() as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        say(f"tinygrad-lm {a.command}: error: {msg}")
        return 2
    except KeyboardInterrupt:
        say(f"tinygrad-lm {a.command}: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
