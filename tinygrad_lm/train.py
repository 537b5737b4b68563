"""Training the GPT: the plain loop of nanoGPT's train.py, on our engine.

One step: draw a random batch of (B, T) windows, x = tokens[i:i+T], y = tokens[i+1:i+T+1]
(every position is a next-token prediction, so one window gives T training targets),
loss = mean cross-entropy of the logits against y, backward, clip the gradient norm,
AdamW step with a warmup + cosine learning rate.

`train(cfg)` runs a whole configured run (TrainConfig and the preset table: train_config.py)
and writes into cfg.out_dir: the checkpoint (checkpoint.py; at every evaluation, at the end
and on Ctrl-C or SIGTERM), loss.csv (a row per step and per evaluation) and, with
matplotlib, loss.png. `train_step` and `fit` are the loop's body for scripts, examples and
benchmarks. What a run does around its steps (the folder's lock, the step loop with its
evaluations, saves and signals, the divergence guard, loss.csv and loss.png) is runs.py,
shared with `dpo` (preference.py).

What a run guarantees (docs/reliability.md has every case, tried):
* everything that can be checked is checked before anything is written: the flags' ranges,
  the data file, the memory the configuration needs, an existing checkpoint;
* one writer per folder: the run holds an exclusive lock on <out_dir>/train.lock throughout,
  and a second run into the same folder fails at once naming the holder's pid;
* --resume is the same run: the checkpoint's whole configuration (train_config.resume_config)
  and the same text (checked by SHA-256);
* a non-finite loss or gradient norm never reaches the weights (the optimizer skips that
  step and every later one, on the device: runs.Divergence's found_inf) and stops the run at
  the next read of the losses, before anything is evaluated or saved (TrainingDiverged): the
  last good checkpoint stays, and the message names the step, what went non-finite and the
  flags that plausibly caused it;
* no host sync in a step the loop does not log: the losses are read every step on the CPU,
  every DEVICE_LOG_INTERVAL steps on a GPU, and before every evaluation, checkpoint and exit;
* the dropout masks' generator (backend.device_rng) is saved with every checkpoint and
  restored on --resume, so a resumed run draws the masks the uninterrupted one would have;
* Ctrl-C and SIGTERM (what batch schedulers send before they kill) both save a checkpoint of
  the last finished step.

Data parallel (docs/distributed.md): launched as several MPI ranks (`mpiexec -n N`, `--nproc
N`), or with --grad-accum-steps > 1, a step is distributed.DataParallel.step instead of
train_step: each rank its rows of the same global batch, one all-reduce of the gradients (and
of the loss and the signal flags) before the clip and the divergence check, so every rank
checks the same numbers and stops at the same step. Rank 0 alone locks the folder, logs and
writes; every rank reads the data and the checkpoint. The hooks are marked "# data parallel".
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, replace
from functools import partial

import numpy as np

from . import backend, distributed
from .checkpoint import (MODEL_KEYS, CheckpointError, build_model, data_record, load_init, load_training_checkpoint,
                         model_config, model_dtype, read_meta, restore_device_rng, run_text, save_training_checkpoint)
from .data import (build_tokenizer, check_encodable, encode_splits, examples_text, get_batch, is_jsonl, load_corpus,
                   load_prompt_completion, sample_batch, text_sha256)
from .engine import get_rng_state, manual_seed, set_rng_state
from .evaluate import estimate_loss, perplexity
from .resources import check_training_fits
from .runs import (DEVICE_LOG_INTERVAL, Divergence, LossLog, StepLoop, StepMonitor, TrainingDiverged, locked_out_dir,
                   progress_bar, read_interval, refuse_if_in_use, say)
from .runs import prepare_out_dir as _prepare_out_dir
from .tensor import Tensor
from .ranges import flag_name
from .train_config import PRESETS, TrainConfig, config_from_args, resume_config

# TrainConfig, PRESETS and config_from_args live in train_config.py (no engine imports, so the
# CLI's parser can read them without importing this module) and are part of this one's API;
# StepMonitor (train_step's device-side check) and DEVICE_LOG_INTERVAL live in runs.py, shared with dpo.
__all__ = ["DEVICE_LOG_INTERVAL", "PRESETS", "StepMonitor", "TrainConfig", "TrainingDiverged", "config_from_args", "fit",
           "lr_at", "prepare_out_dir", "train", "train_step"]


# ---------------------------------------------------------------- one step
def train_step(model, optimizer, x: Tensor, y: Tensor, grad_clip: float = 1.0, check=None) -> Tensor:
    """One optimisation step: loss = cross-entropy(model(x), y); backward; clip the global
    gradient norm to `grad_clip` (0 = off); AdamW step; clear the gradients. Returns the loss
    (a 0-d tensor: reading it is the caller's choice, and on a GPU a host sync).
    `check(loss, grad_norm)` (grad_norm a 0-d tensor, None when not clipping), when given, runs
    before the optimizer step. It may raise to keep the weights as they were (see
    TrainingDiverged), or return `found_inf` for the optimizer's step (runs.StepMonitor and the
    loop's Divergence do: the divergence check without reading the GPU)."""
    from .optim import clip_grad_norm_
    _, loss = model(x, y)
    loss.backward()
    grad_norm = clip_grad_norm_(model.parameters(), grad_clip) if grad_clip > 0 else None
    found_inf = check(loss, grad_norm) if check is not None else None
    if found_inf is None:
        optimizer.step()
    else:
        optimizer.step(found_inf=found_inf)
    optimizer.zero_grad(set_to_none=True)
    return loss


def fit(model, data: np.ndarray, steps: int, batch_size: int = 16, lr: float = 3e-3, weight_decay: float = 0.1,
        betas=(0.9, 0.99), grad_clip: float = 1.0, seed: int = 0) -> list[float]:
    """Train `model` for `steps` steps on random (batch_size, block_size) windows of `data` at a
    constant learning rate (the examples' short runs); returns the batch losses (read from the
    device once, at the end)."""
    device = _model_device(model)
    optimizer = model.configure_optimizers(weight_decay, lr, betas)
    rng = np.random.default_rng(seed)
    model.train()
    losses = []
    for _ in range(steps):
        x, y = get_batch(data, batch_size, model.config.block_size, rng)
        loss = train_step(model, optimizer, Tensor(x, device=device), Tensor(y, device=device), grad_clip)
        losses.append(loss.data)
    model.eval()
    if not losses:
        return []
    xp = backend.array_module(losses[0])
    return [float(v) for v in backend.to_numpy(xp.stack(losses))]


def _model_device(model) -> str:
    return next(iter(model.parameters())).device


# ---------------------------------------------------------------- the loop
def lr_at(it: int, cfg: TrainConfig) -> float:
    """The learning rate of step `it` under cfg's warmup + cosine schedule (optim.get_lr)."""
    from .optim import get_lr
    return get_lr(it, cfg.warmup_iters, cfg.lr_decay_iters or cfg.max_iters, cfg.lr, cfg.min_lr)


# ---------------------------------------------------------------- divergence
def plausible_causes(cfg: TrainConfig, step: int, lr_now: float) -> list[str]:
    """The flags that plausibly made a run diverge, most certain first. Decoupled weight decay
    multiplies every decayed weight by 1 - lr * weight_decay each step: with lr * weight_decay
    above 2 that factor is below -1 and grows the weights without bound whatever the
    gradients, so it is named alone (as --weight-decay when that is above 1, else --lr); otherwise
    the learning rate is the usual cause, helped by no clipping or no warmup."""
    peak = max(cfg.lr, getattr(cfg, "min_lr", 0.0))  # (a dpo run's rate has no decay, so no min_lr)
    factor = 1 - peak * cfg.weight_decay
    if factor < -1:
        why = f"each step multiplies the weights by 1 - lr x weight_decay = {factor:.3g}, so they grow without bound"
        if cfg.weight_decay > 1:  # AdamW's decay is a fraction, 0.1 in GPT-2: the decay is out of line
            return [f"--weight-decay {cfg.weight_decay:g} with --lr {peak:g} ({why})"]
        return [f"--lr {peak:g} with --weight-decay {cfg.weight_decay:g} ({why})"]
    causes = [f"--lr {cfg.lr:g} (the rate at step {step} was {lr_now:.3g})"]
    if cfg.grad_clip == 0:
        causes.append("--grad-clip 0 (no clipping)")
    if cfg.warmup_iters == 0:
        causes.append("--warmup-iters 0 (no warmup)")
    if factor < 0:
        causes.append(f"--weight-decay {cfg.weight_decay:g} (1 - lr x weight_decay = {factor:.3g} flips the weights' "
                      f"signs every step)")
    return causes


def prepare_out_dir(cfg: TrainConfig) -> None:
    """Refuse to clobber an existing checkpoint unless --resume or --force."""
    _prepare_out_dir(cfg.out_dir, cfg.resume, cfg.force)


def train(cfg: TrainConfig, log=print) -> dict:
    """Train a GPT as configured; returns a summary dict. Saves checkpoints to cfg.out_dir at
    every evaluation, at the end, and on Ctrl-C or SIGTERM. Everything that can be refused is
    refused before anything is written; the run then holds out_dir's lock throughout."""
    cfg = replace(cfg)  # resolved below (absolute data path, the schedule): the caller's stays as given
    cfg.validate()
    dist = distributed.init()  # data parallel: None = one process, the loop below exactly
    if dist is not None:
        if not cfg.resume:  # a resumed run's batch is the checkpoint's: checked in _train_locked
            distributed.check_batch(cfg.batch_size, dist.world_size, cfg.grad_accum_steps)
        dist.device_for(cfg.device)
        if not dist.is_main:  # rank 0 alone logs, writes and holds the lock
            log, cfg.progress = (lambda *a, **k: None), False
    backend.canonical_device(cfg.device)
    init_given = cfg.init_from  # as given, for messages
    if cfg.init_from is not None:  # recorded absolute, like --data: a --resume from any folder compares equal
        cfg.init_from = os.path.abspath(cfg.init_from)
        if not cfg.resume and os.path.realpath(cfg.out_dir) == os.path.realpath(cfg.init_from):
            raise ValueError(f"--out-dir {cfg.out_dir} is the --init-from folder: fine-tuning writes a new run into "
                             f"another --out-dir, and the checkpoint it starts from stays as it is")
    if dist is None or dist.is_main:
        refuse_if_in_use(cfg.out_dir)  # first: a folder in use is the one thing to say (and nothing is created)
    prepare_out_dir(cfg)
    fresh = None
    if not cfg.resume:  # read and size everything before the folder is touched
        init = _init_from(cfg, init_given) if cfg.init_from is not None else None
        text, corpus_name = load_corpus(cfg.data)
        if init is not None:
            tok = init[1]
            _check_memory(cfg, tok.vocab_size, "the --init-from checkpoint's vocab_size",
                          {k: f"the --init-from checkpoint's {k}" for k in ("n_layer", "n_head", "n_embd", "block_size")})
        else:
            source = examples_text(text, corpus_name) if is_jsonl(cfg.data) else text
            vocab = cfg.vocab_size if cfg.tokenizer == "bpe" else len(set(source))
            _check_memory(cfg, vocab, "--vocab-size" if cfg.tokenizer == "bpe" else "the text's vocabulary")
            tok = build_tokenizer(cfg.tokenizer, source, cfg.vocab_size)
        train_data, val_data = _splits(text, corpus_name, tok, cfg, log, "the --init-from checkpoint's" if init else None)
        fresh = (text, corpus_name, tok, train_data, val_data, init)
    if dist is not None and not dist.is_main:  # data parallel: ranks > 0 create and lock nothing; a
        return _train_locked(cfg, fresh, log)  # failure of rank 0's (in use) is agreed in setup_done
    # prepare_out_dir again once locked: another run may have finished in the folder since
    with locked_out_dir(cfg.out_dir, recheck=lambda: prepare_out_dir(cfg)):
        return _train_locked(cfg, fresh, log)


def _init_from(cfg: TrainConfig, given: str):
    """Fine-tuning: the --init-from checkpoint (`given`: the path as the user gave it) ->
    (model, tokenizer, meta); cfg takes the checkpoint's shape, dtype and tokenizer. A flag
    given that differs from them is refused."""
    model, tok, meta = load_init(given)
    fixed = {k: getattr(model.config, k) for k in MODEL_KEYS}
    fixed.update(dtype=model_dtype(meta), tokenizer=tok.kind, vocab_size=tok.vocab_size if tok.kind == "bpe" else None)
    for k, v in fixed.items():
        if k in cfg.explicit and getattr(cfg, k) != v:
            raise ValueError(f"--init-from {given}: {flag_name(k)} {getattr(cfg, k)} differs from the "
                             f"checkpoint's {v} (a fine-tuned model keeps the shape, dtype and tokenizer of the "
                             f"checkpoint it starts from: leave {flag_name(k)} out)")
        setattr(cfg, k, v)
    return model, tok, meta


def _splits(text, source, tok, cfg: TrainConfig, log, whose=None):
    """-> (train, val): the token arrays of a text (90/10), or the SequenceSets of a JSONL
    file's prompt/completion examples. `whose` names a tokenizer that did not come from this
    text (--init-from): a character it cannot encode is named with its line and column."""
    if is_jsonl(cfg.data):
        train_set, val_set, notes = load_prompt_completion(text, source, tok, cfg.block_size, cfg.loss_on,
                                                           whose or "the run's")
        for line in notes:
            log(line)
        return train_set, val_set
    if whose is not None:
        check_encodable(tok, text, source, whose)
    return encode_splits(text, tok, cfg.block_size)


def _check_memory(cfg: TrainConfig, vocab_size: int, vocab_label: str, labels: dict | None = None) -> None:
    config = dict(vocab_size=vocab_size, **{k: getattr(cfg, k) for k in MODEL_KEYS})
    check_training_fits(config, cfg.batch_size, cfg.dtype, backend.canonical_device(cfg.device),
                        labels={**(labels or {}), "vocab_size": vocab_label})


def _resume(cfg: TrainConfig, log):
    """-> (cfg of the run to continue, its text, its name) for --resume, every check made and
    the allowed changes printed, before any tensor is read."""
    d, meta = read_meta(cfg.out_dir)
    where = os.path.join(d, "meta.json")
    if "dpo_config" in meta:
        raise CheckpointError(f"--resume: {cfg.out_dir} holds a dpo run, not a train run ({where} has 'dpo_config'): "
                              f"continue it with tinygrad-lm dpo --resume")
    for k in ("step", "optimizer", "batch_rng", "model_rng"):
        if k not in meta:
            raise CheckpointError(f"checkpoint file {where} has no {k!r}: it is not a training checkpoint, "
                                  f"so it cannot be resumed")
    saved = meta.get("train_config")
    if saved is not None and not isinstance(saved, dict):
        raise CheckpointError(f"checkpoint file {where}: 'train_config' is not a JSON object")
    model = model_config(meta, where)
    run, notes = resume_config(cfg, saved, model, model_dtype(meta, where))
    if "data" in cfg.explicit:  # the text given must be the run's text, wherever it now lies
        text, corpus_name = load_corpus(cfg.data)
        rec = meta.get("data") if isinstance(meta.get("data"), dict) else {}
        sha = rec.get("sha256")
        if isinstance(sha, str):
            if text_sha256(text) != sha:
                raise ValueError(f"--resume: --data {cfg.data} is not the text this run trained on "
                                 f"({rec.get('path') or rec.get('name')}; the SHA-256 differs)")
        elif (saved or {}).get("data") is None or os.path.abspath(saved["data"]) != os.path.abspath(cfg.data):
            raise ValueError(f"--resume: --data {cfg.data} differs from the checkpoint's "
                             f"{(saved or {}).get('data') or 'built-in corpus'}")
        if rec.get("path") and os.path.abspath(cfg.data) != rec["path"]:
            notes.append(f"--resume: --data {cfg.data} holds the same text as the run's {rec['path']}")
        run.data = os.path.abspath(cfg.data)
    else:  # the run's own text: never the built-in corpus in place of a file
        text, corpus_name, path = run_text(meta, cfg.out_dir, hint="; pass --data with the text the run trained on")
        run.data = path
    for line in notes:
        log(line)
    _check_memory(run, model["vocab_size"], "the checkpoint's vocab_size",
                  {k: f"the checkpoint's {k}" for k in ("n_layer", "n_head", "n_embd", "block_size", "batch_size")})
    return run, text, corpus_name


def _train_locked(cfg: TrainConfig, fresh, log) -> dict:
    dist = distributed.init()  # data parallel: this rank (None: one process)
    main = dist is None or dist.is_main
    start_iter, best_val, history = 0, math.inf, []
    if cfg.resume:
        cfg, text, corpus_name = _resume(cfg, log)
        # the run's global batch over this job's ranks and --grad-accum-steps (both may differ from the run's)
        distributed.check_batch(cfg.batch_size, 1 if dist is None else dist.world_size, cfg.grad_accum_steps)
        model, tok, meta, optim_state = load_training_checkpoint(cfg.out_dir)
        train_ids, val_ids = _splits(text, corpus_name, tok, cfg, log)
        start_iter, best_val = meta["step"], meta.get("best_val_loss", math.inf)
        history = [h for h in meta.get("history", []) if h["step"] < start_iter]
        init_record = meta.get("init")
    else:
        text, corpus_name, tok, train_ids, val_ids, init = fresh
        if cfg.data is not None:
            cfg.data = os.path.abspath(cfg.data)  # a checkpoint names its data file from any folder
        if cfg.lr_decay_iters is None:  # "decay over max_iters", fixed now: --resume may change max_iters
            cfg.lr_decay_iters = cfg.max_iters
        manual_seed(cfg.seed)
        config = dict(vocab_size=tok.vocab_size, **{k: getattr(cfg, k) for k in MODEL_KEYS})
        model = build_model(config, "cpu", cfg.dtype) if init is None else init[0]
        init_record = None if init is None else {"path": cfg.init_from, "step": init[2].get("step"),
                                                 "data": init[2].get("data")}
    device = backend.canonical_device(cfg.device if dist is None else dist.device_for(cfg.device))
    if device != "cpu":
        model.to(device)
    data = data_record(cfg.data, corpus_name, text)
    config = dict(vocab_size=tok.vocab_size, **{k: getattr(cfg, k) for k in MODEL_KEYS})
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2))
    rng = np.random.default_rng(cfg.seed)
    if cfg.resume:
        optimizer.load_state_dict(optim_state)
        rng.bit_generator.state = meta["batch_rng"]
        set_rng_state(meta["model_rng"])
        note = restore_device_rng(meta, cfg.out_dir, cfg.seed, start_iter)  # the dropout masks' generator
        if note and cfg.dropout > 0:
            log(note)
    n_params = sum(p.numel() for p in model.parameters())
    # data parallel: the step is train_step in one process without accumulation, else DataParallel's
    dp = None if dist is None and cfg.grad_accum_steps == 1 else \
        distributed.DataParallel(model, optimizer, dist, cfg.grad_accum_steps, cfg.grad_clip)
    estimate = estimate_loss if dist is None else partial(distributed.estimate_loss, dist)
    if is_jsonl(cfg.data):
        log(f"examples {corpus_name}: {len(train_ids):,} train / {len(val_ids):,} val examples, "
            f"{train_ids.num_targets():,} / {val_ids.num_targets():,} target tokens (loss on {cfg.loss_on}; "
            f"{cfg.tokenizer} tokenizer, vocab {tok.vocab_size})")
    else:
        log(f"corpus {corpus_name}: {len(text):,} characters -> {len(train_ids):,} train / {len(val_ids):,} val tokens "
            f"({cfg.tokenizer} tokenizer, vocab {tok.vocab_size})")
    if init_record is not None:
        log(f"fine-tuning: the weights of {init_record['path']} (step {init_record['step']}) are the start; its "
            f"tokenizer and shape are the model's")
    log(f"model: {cfg.n_layer} layers, {cfg.n_head} heads, {cfg.n_embd} dims, block {cfg.block_size}, "
        f"{n_params:,} parameters, {device}, {cfg.dtype}" + (f"; resuming at step {start_iter}" if cfg.resume else ""))
    if dist is not None:  # data parallel
        log(f"data parallel: {dist.world_size} ranks x {cfg.batch_size // dist.world_size} rows of the global batch "
            f"{cfg.batch_size}" + (f", {cfg.grad_accum_steps} micro-batches each" if cfg.grad_accum_steps > 1 else "")
            + (f"; BLAS threads per rank: {dist.blas_threads}" if dist.blas_threads else
               "; BLAS threads not pinned (pip install threadpoolctl, or set OMP_NUM_THREADS)" if dist.local_size > 1
               else ""))
        dist.setup_done(dp.params, cfg.seed, start_iter)  # every rank set up alike, or all stop here

    losses = LossLog(cfg.out_dir, LOSS_CSV_FIELDS)
    if cfg.resume:
        losses.resume_from(start_iter)
    guard = Divergence(model, cfg.out_dir, lambda step, lr_now: plausible_causes(cfg, step, lr_now),
                       last_saved=start_iter if cfg.resume else None)

    def save(step):
        meta = {"config": config, "tokenizer": tok.to_dict(), "step": step, "dtype": cfg.dtype,
                "best_val_loss": best_val, "history": history, "batch_rng": rng.bit_generator.state,
                "model_rng": get_rng_state(), "device_rng": backend.device_rng.get_state(),
                "train_config": asdict(cfg), "corpus": corpus_name, "data": data}
        if init_record is not None:
            meta["init"] = init_record
        if main:  # data parallel: rank 0 alone writes
            save_training_checkpoint(cfg.out_dir, model, optimizer, meta)
            losses.write(step)
        guard.saved(step)

    def evaluate(it):
        nonlocal best_val
        tl = estimate(model, train_ids, cfg.batch_size, cfg.block_size, cfg.eval_iters, cfg.seed + 1, device)
        vl = estimate(model, val_ids, cfg.batch_size, cfg.block_size, cfg.eval_iters, cfg.seed + 2, device)
        if not (math.isfinite(tl) and math.isfinite(vl)):
            guard.fail(it, f"the evaluation loss is {tl if not math.isfinite(tl) else vl}", lr_at(max(it - 1, 0), cfg))
        best_val = min(best_val, vl)
        history.append({"step": it, "train_loss": tl, "val_loss": vl})
        losses.add(step=it, eval_train_loss=f"{tl:.6f}", eval_val_loss=f"{vl:.6f}", val_perplexity=f"{perplexity(vl):.4f}")
        say(bar, log, f"step {it}: train loss {tl:.4f}, val loss {vl:.4f}, val perplexity {perplexity(vl):.2f}")

    def step(it):
        nonlocal tokens
        lr = lr_at(it, cfg)
        for g in optimizer.param_groups:
            g["lr"] = lr
        x, y = sample_batch(train_ids, cfg.batch_size, cfg.block_size, rng)
        tokens += x.size

        def check(loss, grad_norm):  # before the optimizer step: a non-finite update is never applied
            # the row stays on the device (nothing read); the returned flag is the optimizer's found_inf.
            # DataParallel passes the all-reduced loss as a float, the same on every rank
            return guard.check(it, loss, grad_norm, lr)
        if dp is None:
            train_step(model, optimizer, Tensor(x, device=device), Tensor(y, device=device), cfg.grad_clip, check)
        else:  # data parallel: the global batch; each rank keeps its rows; the loss is the whole batch's
            dp.step(x, y, loop.signal.hit, check)

    step_loss = [math.nan]  # the last loss read, for the progress bar

    def read():  # the logged step's one host sync: every pending step's loss and norm, checked
        for r in guard.flush():
            losses.add(step=r["step"], lr=f"{r['lr']:.6g}", loss=f"{r['loss']:.6f}")
            step_loss[0] = r["loss"]

    tokens = 0  # inputs fed to training steps (examples are padded to their batch's longest, not block_size)
    t0 = time.perf_counter()
    model.train()
    bar = progress_bar(cfg.progress, cfg.max_iters, start_iter)
    loop = StepLoop(start_iter, cfg.max_iters, cfg.eval_interval, bar)
    loop.run(evaluate, step, save, cfg.out_dir, log,
             postfix=lambda lp, _: f"loss {step_loss[0]:.4f}, {tokens / max(lp.step_seconds, 1e-9):,.0f} tok/s",
             stopped=None if dp is None else (lambda: dp.stop),  # data parallel: agreed in the last step's all-reduce
             read=read, read_every=read_interval(device))  # the losses: read every step on the CPU, every 10 on a GPU
    it, interrupted = loop.it, loop.interrupted
    elapsed = time.perf_counter() - t0
    if main:  # data parallel: rank 0 alone writes
        losses.plot([("cross-entropy (nats/token)", [("loss", "batch loss", "line"),
                                                     ("eval_train_loss", "train (eval)", "o-"),
                                                     ("eval_val_loss", "val (eval)", "o-")])])
    summary = {"steps": it, "best_val_loss": best_val, "best_val_perplexity": perplexity(best_val),
               "seconds": elapsed, "tokens_per_second": tokens / max(loop.step_seconds, 1e-9),
               "interrupted": bool(interrupted), "signal": interrupted, "out_dir": cfg.out_dir}
    log(f"done: {it} steps in {elapsed:.1f}s, {summary['tokens_per_second']:,.0f} tokens/s (training steps only); "
        f"best val loss {best_val:.4f}, perplexity {summary['best_val_perplexity']:.2f}; checkpoint in {cfg.out_dir}")
    if cfg.sample_tokens > 0 and not interrupted and main:
        from .generate import generate
        prompt = tok.encode("\n") if _can_encode(tok, "\n") else [0]
        g = generate(model, prompt, cfg.sample_tokens, strategy="sample", temperature=0.8,
                     rng=np.random.default_rng(cfg.seed))[0]
        summary["sample"] = tok.decode(g.tokens)
        log("sample (temperature 0.8):\n" + summary["sample"])
    return summary


def _can_encode(tok, s):
    try:
        tok.encode(s)
        return True
    except ValueError:
        return False


# loss.csv's columns: a training step fills lr and loss, an evaluation the last three
LOSS_CSV_FIELDS = ["step", "lr", "loss", "eval_train_loss", "eval_val_loss", "val_perplexity"]
