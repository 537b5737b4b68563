"""Training the GPT: the plain loop of nanoGPT's train.py, on our engine.

One step: draw a random batch of (B, T) windows, x = tokens[i:i+T], y = tokens[i+1:i+T+1]
(every position is a next-token prediction, so one window gives T training targets),
loss = mean cross-entropy of the logits against y, backward, clip the gradient norm,
AdamW step with a warmup + cosine learning rate.

`train(cfg)` runs a whole configured run (TrainConfig and the preset table: train_config.py)
and writes into cfg.out_dir: the checkpoint (checkpoint.py; at every evaluation, at the end
and on Ctrl-C or SIGTERM), loss.csv (a row per step and per evaluation) and, with
matplotlib, loss.png. `train_step` and `fit` are the loop's body for scripts, examples and
benchmarks.

What a run guarantees (docs/reliability.md has every case, tried):
* everything that can be checked is checked before anything is written: the flags' ranges,
  the data file, the memory the configuration needs, an existing checkpoint;
* one writer per folder: the run holds an exclusive lock on <out_dir>/train.lock throughout,
  and a second run into the same folder fails at once naming the holder's pid;
* --resume is the same run: the checkpoint's whole configuration (train_config.resume_config)
  and the same text (checked by SHA-256);
* a non-finite loss or gradient norm stops the run before the optimizer uses it
  (TrainingDiverged): the last good checkpoint stays, and the message names the step, what
  went non-finite and the flags that plausibly caused it;
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

import csv
import io
import math
import os
import signal
import sys
import time
from dataclasses import asdict, replace
from functools import partial

import numpy as np

from . import backend, distributed
from .checkpoint import (MODEL_KEYS, CheckpointError, build_model, checkpoint_dir, data_record,
                         load_training_checkpoint, model_config, model_dtype, read_meta, restore_device_rng,
                         run_text, save_training_checkpoint)
from .data import build_tokenizer, encode_splits, get_batch, load_corpus, text_sha256
from .engine import get_rng_state, manual_seed, set_rng_state
from .evaluate import estimate_loss, perplexity
from .fileio import FolderLock, FolderLockedError, atomic_write, remove_stale_temporaries
from .resources import check_training_fits
from .tensor import Tensor
from .train_config import PRESETS, TrainConfig, config_from_args, resume_config

# TrainConfig, PRESETS and config_from_args live in train_config.py (no engine imports, so the
# CLI's parser can read them without importing this module) and are part of this one's API.
__all__ = ["PRESETS", "TrainConfig", "TrainingDiverged", "config_from_args", "fit", "lr_at", "prepare_out_dir",
           "train", "train_step"]


# ---------------------------------------------------------------- one step
def train_step(model, optimizer, x: Tensor, y: Tensor, grad_clip: float = 1.0, check=None) -> Tensor:
    """One optimisation step: loss = cross-entropy(model(x), y); backward; clip the global
    gradient norm to `grad_clip` (0 = off); AdamW step; clear the gradients. Returns the loss
    (a 0-d tensor: reading it is the caller's choice, and on a GPU a host sync).
    `check(loss, grad_norm)` (grad_norm a 0-d tensor, None when not clipping), when given, runs
    before the optimizer step. It may raise to keep the weights as they were (see
    TrainingDiverged), or return `found_inf` for the optimizer's step (StepMonitor does: the
    divergence check without reading the GPU)."""
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


# On a GPU the loop reads the losses every this many steps (and before every evaluation,
# checkpoint and exit); on the CPU, where a read costs nothing, every step.
DEVICE_LOG_INTERVAL = 10


class StepMonitor:
    """The training loop's divergence check and loss log, with at most one host sync per
    logged step and none in between.

    As train_step's (or DataParallel.step's) `check`, for each step: the row [loss, gradient
    norm] (just the loss without clipping) stays on the parameters' device, and so does the
    flag "some step so far was not finite", returned as `found_inf`: the optimizer applies it
    on the device, so from the first non-finite step on no update changes a weight or a
    moment. `read()` brings every row since the last read to the host in one transfer; the
    loop reads at every logged step and before every evaluation, checkpoint and exit, and
    raises TrainingDiverged naming the first non-finite row's step. A diverged step thus never
    reaches the weights nor a checkpoint, as when the check read every step; the difference is
    only when the error is raised (at the next read, up to DEVICE_LOG_INTERVAL - 1 steps
    later, those steps' updates skipped). On the CPU the flag is a host value and the
    optimizer skips the step outright (step counts included)."""

    def __init__(self):
        self.rows = []
        self.bad = None

    def __call__(self, loss, grad_norm):
        loss = loss.data if isinstance(loss, Tensor) else loss
        norm = grad_norm.data if isinstance(grad_norm, Tensor) else grad_norm
        dev = next((v for v in (loss, norm) if hasattr(v, "__cuda_array_interface__")), None)
        if dev is None:  # the CPU (or data parallel's all-reduced float with a CPU norm): reading is free
            row = np.array([float(loss)] + ([] if norm is None else [float(norm)]))
            self.rows.append(row)
            self.bad = bool(self.bad) or not np.isfinite(row).all()
            return np.bool_(self.bad)
        xp = backend.array_module(dev)
        with backend.use_device(backend.device_of(dev)):
            # DataParallel hands the all-reduced loss as a float: 8 bytes up, on a path that reads every step
            row = xp.stack([xp.asarray(v, dtype=np.float64) for v in (loss, norm) if v is not None])
            bad = xp.logical_not(xp.isfinite(row).all())
            self.bad = bad if self.bad is None else xp.logical_or(self.bad, bad)
        self.rows.append(row)
        return self.bad

    def read(self) -> np.ndarray:
        """(steps since the last read, 2) [loss, gradient norm] (1 column without clipping), as
        float64 on the host: one device-to-host transfer for all of them."""
        rows, self.rows = self.rows, []
        if not rows:
            return np.zeros((0, 2))
        xp = backend.array_module(rows[0])
        return backend.to_numpy(xp.stack(rows)) if xp is not np else np.stack(rows)


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


class _Interrupt:
    """Turns the first Ctrl-C (SIGINT) or SIGTERM into a flag the loop checks between steps,
    so the checkpoint saved on exit is of a finished step; a second one interrupts at once.
    `hit` is the signal's name ("SIGINT", "SIGTERM") once one arrived."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.hit = None
        self.prev = {}

    def __enter__(self):
        for sig in self.SIGNALS:
            try:
                self.prev[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread
                pass
        return self

    def _handler(self, signum, _frame):
        if self.hit:
            raise KeyboardInterrupt
        self.hit = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, prev in self.prev.items():
            signal.signal(sig, prev)


# ---------------------------------------------------------------- divergence
class TrainingDiverged(FloatingPointError):
    """The loss or the gradient norm went non-finite: the run stops before the optimizer uses
    it, nothing more is saved, and the message names the step, what went non-finite and the
    flags that plausibly caused it."""


def plausible_causes(cfg: TrainConfig, step: int, lr_now: float) -> list[str]:
    """The flags that plausibly made a run diverge, most certain first. Decoupled weight decay
    multiplies every decayed weight by 1 - lr * weight_decay each step: with lr * weight_decay
    above 2 that factor is below -1 and grows the weights without bound whatever the
    gradients, so it is named alone (as --weight-decay when that is above 1, else --lr); otherwise
    the learning rate is the usual cause, helped by no clipping or no warmup."""
    peak = max(cfg.lr, cfg.min_lr)
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


def _all_finite(model) -> bool:
    return all(bool(backend.array_module(p.data).isfinite(p.data).all()) for p in model.parameters())


def prepare_out_dir(cfg: TrainConfig) -> None:
    """Refuse to clobber an existing checkpoint unless --resume or --force."""
    if os.path.exists(cfg.out_dir) and not os.path.isdir(cfg.out_dir):
        raise ValueError(f"--out-dir {cfg.out_dir} exists and is not a directory")
    existing = checkpoint_dir(cfg.out_dir) if os.path.isdir(cfg.out_dir) else None
    if cfg.resume and existing is None:
        raise CheckpointError(f"--resume: no checkpoint in {cfg.out_dir}")
    if existing and not cfg.resume and not cfg.force:
        try:
            old = read_meta(cfg.out_dir)[1]
            desc = f" (step {old.get('step')}, config {old.get('config')})"
        except CheckpointError:
            desc = ""
        raise ValueError(f"--out-dir {cfg.out_dir} already holds a checkpoint{desc}; pass --resume to continue it "
                         f"or --force to overwrite it")


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
    if dist is None or dist.is_main:
        _refuse_if_in_use(cfg.out_dir)  # first: a folder in use is the one thing to say (and nothing is created)
    prepare_out_dir(cfg)
    fresh = None
    if not cfg.resume:  # read and size everything before the folder is touched
        text, corpus_name = load_corpus(cfg.data)
        vocab = cfg.vocab_size if cfg.tokenizer == "bpe" else len(set(text))
        _check_memory(cfg, vocab, "--vocab-size" if cfg.tokenizer == "bpe" else "the text's vocabulary")
        tok = build_tokenizer(cfg.tokenizer, text, cfg.vocab_size)
        fresh = (text, corpus_name, tok, *encode_splits(text, tok, cfg.block_size))
    if dist is not None and not dist.is_main:  # data parallel: ranks > 0 create and lock nothing; a
        return _train_locked(cfg, fresh, log)  # failure of rank 0's (in use) is agreed in setup_done
    created = not os.path.isdir(cfg.out_dir)
    os.makedirs(cfg.out_dir, exist_ok=True)
    try:
        lock = FolderLock(cfg.out_dir).acquire()
    except FolderLockedError as e:
        raise _in_use(cfg.out_dir, e.pid) from None
    try:
        remove_stale_temporaries(cfg.out_dir)  # left by a run killed mid-write; ours now
        prepare_out_dir(cfg)  # again: another run may have finished in the folder since
        return _train_locked(cfg, fresh, log)
    finally:
        lock.release()
        if created and not os.listdir(cfg.out_dir):  # failed before writing anything: leave no trace
            os.rmdir(cfg.out_dir)


def _in_use(out_dir, pid) -> ValueError:
    return ValueError(f"--out-dir {out_dir} is in use by another tinygrad-lm run "
                      f"({'pid ' + str(pid) if pid else 'pid not yet written'}): wait for it to end or choose "
                      f"another --out-dir")


def _refuse_if_in_use(out_dir) -> None:
    held, pid = FolderLock.probe(out_dir)
    if held:
        raise _in_use(out_dir, pid)


def _check_memory(cfg: TrainConfig, vocab_size: int, vocab_label: str, labels: dict | None = None) -> None:
    config = dict(vocab_size=vocab_size, **{k: getattr(cfg, k) for k in MODEL_KEYS})
    check_training_fits(config, cfg.batch_size, cfg.dtype, backend.canonical_device(cfg.device),
                        labels={**(labels or {}), "vocab_size": vocab_label})


def _resume(cfg: TrainConfig, log):
    """-> (cfg of the run to continue, its text, its name) for --resume, every check made and
    the allowed changes printed, before any tensor is read."""
    d, meta = read_meta(cfg.out_dir)
    where = os.path.join(d, "meta.json")
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
        train_ids, val_ids = encode_splits(text, tok, cfg.block_size)
        start_iter, best_val = meta["step"], meta.get("best_val_loss", math.inf)
        history = [h for h in meta.get("history", []) if h["step"] < start_iter]
    else:
        text, corpus_name, tok, train_ids, val_ids = fresh
        if cfg.data is not None:
            cfg.data = os.path.abspath(cfg.data)  # a checkpoint names its data file from any folder
        if cfg.lr_decay_iters is None:  # "decay over max_iters", fixed now: --resume may change max_iters
            cfg.lr_decay_iters = cfg.max_iters
        manual_seed(cfg.seed)
        config = dict(vocab_size=tok.vocab_size, **{k: getattr(cfg, k) for k in MODEL_KEYS})
        model = build_model(config, "cpu", cfg.dtype)
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
    evaluate = estimate_loss if dist is None else partial(distributed.estimate_loss, dist)
    log(f"corpus {corpus_name}: {len(text):,} characters -> {len(train_ids):,} train / {len(val_ids):,} val tokens "
        f"({cfg.tokenizer} tokenizer, vocab {tok.vocab_size})")
    log(f"model: {cfg.n_layer} layers, {cfg.n_head} heads, {cfg.n_embd} dims, block {cfg.block_size}, "
        f"{n_params:,} parameters, {device}, {cfg.dtype}" + (f"; resuming at step {start_iter}" if cfg.resume else ""))
    if dist is not None:  # data parallel
        log(f"data parallel: {dist.world_size} ranks x {cfg.batch_size // dist.world_size} rows of the global batch "
            f"{cfg.batch_size}" + (f", {cfg.grad_accum_steps} micro-batches each" if cfg.grad_accum_steps > 1 else "")
            + (f"; BLAS threads per rank: {dist.blas_threads}" if dist.blas_threads else
               "; BLAS threads not pinned (pip install threadpoolctl, or set OMP_NUM_THREADS)" if dist.local_size > 1
               else ""))
        dist.setup_done(dp.params, cfg.seed, start_iter)  # every rank set up alike, or all stop here

    csv_path = os.path.join(cfg.out_dir, "loss.csv")
    rows = [r for r in _read_loss_csv(csv_path) if int(r["step"]) < start_iter] if cfg.resume else []
    last_saved = start_iter if cfg.resume else None

    def save(step):
        nonlocal last_saved
        meta = {"config": config, "tokenizer": tok.to_dict(), "step": step, "dtype": cfg.dtype,
                "best_val_loss": best_val, "history": history, "batch_rng": rng.bit_generator.state,
                "model_rng": get_rng_state(), "device_rng": backend.device_rng.get_state(), "train_config": asdict(cfg), "corpus": corpus_name, "data": data}
        if main:  # data parallel: rank 0 alone writes
            save_training_checkpoint(cfg.out_dir, model, optimizer, meta)
            try:
                _write_loss_csv(csv_path, rows)
            except OSError as e:
                raise OSError(f"cannot write {csv_path}: {e.strerror or e} (the checkpoint of step {step} is saved)") from None
        last_saved = step

    def diverged(step, what, lr_now):
        kept = (f"nothing after step {last_saved} was saved (the checkpoint in {cfg.out_dir} is still step "
                f"{last_saved}'s)" if last_saved is not None else "no checkpoint was written")
        weights = "" if _all_finite(model) else " (the weights were already non-finite: the previous update made them so)"
        raise TrainingDiverged(f"training diverged at step {step}: {what}{weights}; {kept}. Plausible causes: "
                               + "; ".join(plausible_causes(cfg, step, lr_now)))

    # the divergence check and the loss log: on the device between reads (StepMonitor), so an
    # unlogged step reads nothing back; `logged` holds the (step, lr) of the rows not yet read
    monitor, logged = StepMonitor(), []
    log_every = 1 if device == "cpu" else DEVICE_LOG_INTERVAL

    def read_losses():  # the logged step's one host sync: every pending step's loss and norm
        for (step, lr_step), row in zip(logged, monitor.read()):
            lossf = float(row[0])
            if not math.isfinite(lossf):
                diverged(step, f"the loss is {lossf}", lr_step)
            if len(row) > 1 and not math.isfinite(row[1]):
                diverged(step, f"the gradient norm is {float(row[1])} (the loss was {lossf:.4g})", lr_step)
            rows.append({"step": step, "lr": f"{lr_step:.6g}", "loss": f"{lossf:.6f}", "eval_train_loss": "",
                         "eval_val_loss": "", "val_perplexity": ""})
            step_loss[0] = lossf
        logged.clear()
    step_loss = [math.nan]

    tokens_per_step = cfg.batch_size * cfg.block_size
    t0 = time.perf_counter()
    train_time, steps_done = 0.0, 0
    model.train()
    it = start_iter
    bar = _progress(cfg, start_iter)
    interrupted = None
    # a diverging step overflows: the check below names it, numpy's warnings would only add noise
    with _Interrupt() as stop, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        while True:
            if it % cfg.eval_interval == 0 or it == cfg.max_iters:
                ts = time.perf_counter()
                read_losses()  # the steps before: checked before anything is evaluated or saved
                train_time += time.perf_counter() - ts
                tl = evaluate(model, train_ids, cfg.batch_size, cfg.block_size, cfg.eval_iters, cfg.seed + 1, device)
                vl = evaluate(model, val_ids, cfg.batch_size, cfg.block_size, cfg.eval_iters, cfg.seed + 2, device)
                if not (math.isfinite(tl) and math.isfinite(vl)):
                    diverged(it, f"the evaluation loss is {tl if not math.isfinite(tl) else vl}", lr_at(max(it - 1, 0), cfg))
                best_val = min(best_val, vl)
                history.append({"step": it, "train_loss": tl, "val_loss": vl})
                rows.append({"step": it, "lr": "", "loss": "", "eval_train_loss": f"{tl:.6f}",
                             "eval_val_loss": f"{vl:.6f}", "val_perplexity": f"{perplexity(vl):.4f}"})
                _say(bar, log, f"step {it}: train loss {tl:.4f}, val loss {vl:.4f}, val perplexity {perplexity(vl):.2f}")
                if it > start_iter or it == cfg.max_iters:
                    save(it)
            if it >= cfg.max_iters:
                break
            hit = stop.hit if dist is None else dp.stop  # data parallel: agreed in the last step's all-reduce
            if hit:
                read_losses()
                interrupted = hit
                break
            ts = time.perf_counter()
            lr = lr_at(it, cfg)
            for g in optimizer.param_groups:
                g["lr"] = lr
            x, y = get_batch(train_ids, cfg.batch_size, cfg.block_size, rng)
            if dp is None:
                train_step(model, optimizer, Tensor(x, device=device), Tensor(y, device=device), cfg.grad_clip, monitor)
            else:  # data parallel: the global batch; each rank keeps its rows; the loss is the whole batch's
                dp.step(x, y, stop.hit, monitor)
            logged.append((it, lr))
            it += 1
            if it % log_every == 0:
                read_losses()
            train_time += time.perf_counter() - ts
            steps_done += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"loss {step_loss[0]:.4f}, {steps_done * tokens_per_step / max(train_time, 1e-9):,.0f} tok/s")
    if bar is not None:
        bar.close()
    if interrupted:
        save(it)
        log(f"interrupted: saved a checkpoint at step {it} in {cfg.out_dir} (continue with --resume)"
            + ("" if interrupted == "SIGINT" else f" [{interrupted}]"))
    elapsed = time.perf_counter() - t0
    if main:  # data parallel: rank 0 alone writes
        _plot_losses(cfg.out_dir, rows, log)
    summary = {"steps": it, "best_val_loss": best_val, "best_val_perplexity": perplexity(best_val),
               "seconds": elapsed, "tokens_per_second": steps_done * tokens_per_step / max(train_time, 1e-9),
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


def _say(bar, log, msg):
    if bar is not None:
        bar.write(msg)
    else:
        log(msg)


def _progress(cfg, start):
    if not cfg.progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=cfg.max_iters, initial=start, unit="step", dynamic_ncols=True, file=sys.stderr,
                disable=None)


# loss.csv's columns: a training step fills lr and loss, an evaluation the last three
LOSS_CSV_FIELDS = ["step", "lr", "loss", "eval_train_loss", "eval_val_loss", "val_perplexity"]


def _read_loss_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_loss_csv(path, rows):
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=LOSS_CSV_FIELDS)
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, text.getvalue())


def _plot_losses(out_dir, rows, log):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    steps = [int(r["step"]) for r in rows if r["loss"]]
    losses = [float(r["loss"]) for r in rows if r["loss"]]
    ev = [(int(r["step"]), float(r["eval_train_loss"]), float(r["eval_val_loss"])) for r in rows if r["eval_val_loss"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, losses, lw=0.6, alpha=0.5, label="batch loss")
    if ev:
        ax.plot([e[0] for e in ev], [e[1] for e in ev], "o-", label="train (eval)")
        ax.plot([e[0] for e in ev], [e[2] for e in ev], "o-", label="val (eval)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    path = os.path.join(out_dir, "loss.png")
    atomic_write(path, png.getbuffer())
    return path
