"""Training the GPT: the plain loop of nanoGPT's train.py, on our engine.

One step: draw a random batch of (B, T) windows, x = tokens[i:i+T], y = tokens[i+1:i+T+1]
(every position is a next-token prediction, so one window gives T training targets),
loss = mean cross-entropy of the logits against y, backward, clip the gradient norm,
AdamW step with a warmup + cosine learning rate.

`train(cfg)` runs a whole configured run (TrainConfig and the preset table: train_config.py)
and writes into cfg.out_dir: the checkpoint (checkpoint.py; at every evaluation, at the end
and on Ctrl-C), loss.csv (a row per step and per evaluation) and, with matplotlib, loss.png.
`train_step` and `fit` are the loop's body for scripts, examples and benchmarks.

Launched as several MPI ranks (`mpiexec -n N`, `--nproc N`), or with --grad-accum-steps > 1,
a step is distributed.DataParallel.step instead: each rank its rows of the same global batch,
one all-reduce of the gradients; rank 0 alone logs and writes (docs/distributed.md).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict
from functools import partial

import numpy as np

from . import backend, distributed
from .checkpoint import (MODEL_KEYS, CheckpointError, build_model, checkpoint_dir, load_training_checkpoint,
                         model_dtype, save_training_checkpoint)
from .data import build_tokenizer, encode_splits, get_batch, load_corpus
from .evaluate import estimate_loss
from .fileio import atomic_write
from .tensor import Tensor, get_rng_state, manual_seed, set_rng_state
from .train_config import PRESETS, TrainConfig, config_from_args

# TrainConfig, PRESETS and config_from_args live in train_config.py (no engine imports, so the
# CLI's parser can read them without importing this module) and are part of this one's API.
__all__ = ["PRESETS", "TrainConfig", "config_from_args", "fit", "lr_at", "prepare_out_dir", "train", "train_step"]


# ---------------------------------------------------------------- one step
def train_step(model, optimizer, x: Tensor, y: Tensor, grad_clip: float = 1.0) -> Tensor:
    """One optimisation step: loss = cross-entropy(model(x), y); backward; clip the global
    gradient norm to `grad_clip` (0 = off); AdamW step; clear the gradients. Returns the loss."""
    from .optim import clip_grad_norm_
    _, loss = model(x, y)
    loss.backward()
    if grad_clip > 0:
        clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def fit(model, data: np.ndarray, steps: int, batch_size: int = 16, lr: float = 3e-3, weight_decay: float = 0.1,
        betas=(0.9, 0.99), grad_clip: float = 1.0, seed: int = 0) -> list[float]:
    """Train `model` for `steps` steps on random (batch_size, block_size) windows of `data` at a
    constant learning rate (the examples' short runs); returns the batch losses."""
    device = _model_device(model)
    optimizer = model.configure_optimizers(weight_decay, lr, betas)
    rng = np.random.default_rng(seed)
    model.train()
    losses = []
    for _ in range(steps):
        x, y = get_batch(data, batch_size, model.config.block_size, rng)
        loss = train_step(model, optimizer, Tensor(x, device=device), Tensor(y, device=device), grad_clip)
        losses.append(float(loss.data))
    model.eval()
    return losses


def _model_device(model) -> str:
    return next(iter(model.parameters())).device


# ---------------------------------------------------------------- the loop
def lr_at(it: int, cfg: TrainConfig) -> float:
    """The learning rate of step `it` under cfg's warmup + cosine schedule (optim.get_lr)."""
    from .optim import get_lr
    return get_lr(it, cfg.warmup_iters, cfg.lr_decay_iters or cfg.max_iters, cfg.lr, cfg.min_lr)


class _Interrupt:
    """Turns the first Ctrl-C into a flag the loop checks between steps, so the checkpoint
    saved on exit is of a finished step; a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.hit = False

    def __enter__(self):
        self.prev = signal.getsignal(signal.SIGINT)
        try:
            signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread
            self.prev = None
        return self

    def _handler(self, *_):
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True

    def __exit__(self, *exc):
        if self.prev is not None:
            signal.signal(signal.SIGINT, self.prev)


def prepare_out_dir(cfg: TrainConfig) -> None:
    """Refuse to clobber an existing checkpoint unless --resume or --force."""
    if os.path.exists(cfg.out_dir) and not os.path.isdir(cfg.out_dir):
        raise ValueError(f"--out-dir {cfg.out_dir} exists and is not a directory")
    existing = checkpoint_dir(cfg.out_dir) if os.path.isdir(cfg.out_dir) else None
    if cfg.resume and existing is None:
        raise CheckpointError(f"--resume: no checkpoint in {cfg.out_dir}")
    if existing and not cfg.resume and not cfg.force:
        try:
            with open(os.path.join(existing, "meta.json"), encoding="utf-8") as f:
                old = json.load(f)
            desc = f" (step {old.get('step')}, config {old.get('config')})"
        except (OSError, ValueError):
            desc = ""
        raise ValueError(f"--out-dir {cfg.out_dir} already holds a checkpoint{desc}; pass --resume to continue it "
                         f"or --force to overwrite it")


def train(cfg: TrainConfig, log=print) -> dict:
    """Train a GPT as configured; returns a summary dict. Saves checkpoints to cfg.out_dir at
    every evaluation, at the end, and on Ctrl-C."""
    cfg.validate()
    # data parallel (distributed.py): None = one process, today's loop exactly
    dist = distributed.init()
    if dist is not None:
        distributed.check_batch(cfg.batch_size, dist.world_size, cfg.grad_accum_steps)
        if not dist.is_main:  # rank 0 alone logs and writes
            log, cfg.progress = (lambda *a, **k: None), False
    main = dist is None or dist.is_main
    device = backend.canonical_device(cfg.device if dist is None else dist.device_for(cfg.device))
    prepare_out_dir(cfg)
    text, corpus_name = load_corpus(cfg.data)

    start_iter, best_val, history = 0, math.inf, []
    if cfg.resume:
        model, tok, meta, optim_state = load_training_checkpoint(cfg.out_dir)
        # the architecture and dtype come from the checkpoint; a flag that contradicts them is refused
        saved = {**{k: getattr(model.config, k) for k in MODEL_KEYS}, "dtype": model_dtype(meta)}
        for k, v in saved.items():
            if k in cfg.explicit and getattr(cfg, k) != v:
                raise ValueError(f"--resume: --{k.replace('_', '-')} {getattr(cfg, k)} differs from the checkpoint's "
                                 f"{v} (a resumed run keeps its checkpoint's architecture and dtype)")
            setattr(cfg, k, v)
        train_ids, val_ids = encode_splits(text, tok, cfg.block_size)
        start_iter, best_val = meta["step"], meta.get("best_val_loss", math.inf)
        history = [h for h in meta.get("history", []) if h["step"] < start_iter]
    else:
        tok = build_tokenizer(cfg.tokenizer, text, cfg.vocab_size)
        train_ids, val_ids = encode_splits(text, tok, cfg.block_size)
        manual_seed(cfg.seed)
        config = dict(vocab_size=tok.vocab_size, **{k: getattr(cfg, k) for k in MODEL_KEYS})
        model = build_model(config, "cpu", cfg.dtype)
    if device != "cpu":
        model.to(device)
    config = dict(vocab_size=tok.vocab_size, **{k: getattr(cfg, k) for k in MODEL_KEYS})
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2))
    rng = np.random.default_rng(cfg.seed)
    if cfg.resume:
        optimizer.load_state_dict(optim_state)
        rng.bit_generator.state = meta["batch_rng"]
        set_rng_state(meta["model_rng"])
    n_params = sum(p.numel() for p in model.parameters())
    # the step: train_step in one process without accumulation, else DataParallel's
    dp = None if dist is None and cfg.grad_accum_steps == 1 else \
        distributed.DataParallel(model, optimizer, dist, cfg.grad_accum_steps, cfg.grad_clip)
    evaluate = estimate_loss if dist is None else partial(distributed.estimate_loss, dist)
    log(f"corpus {corpus_name}: {len(text):,} characters -> {len(train_ids):,} train / {len(val_ids):,} val tokens "
        f"({cfg.tokenizer} tokenizer, vocab {tok.vocab_size})")
    log(f"model: {cfg.n_layer} layers, {cfg.n_head} heads, {cfg.n_embd} dims, block {cfg.block_size}, "
        f"{n_params:,} parameters, {device}, {cfg.dtype}" + (f"; resuming at step {start_iter}" if cfg.resume else ""))
    if dist is not None:
        log(f"data parallel: {dist.world_size} ranks x {cfg.batch_size // dist.world_size} rows of the global batch "
            f"{cfg.batch_size}" + (f", {cfg.grad_accum_steps} micro-batches each" if cfg.grad_accum_steps > 1 else "")
            + (f"; BLAS threads per rank: {dist.blas_threads}" if dist.blas_threads else
               "; BLAS threads not pinned (pip install threadpoolctl, or set OMP_NUM_THREADS)" if dist.local_size > 1
               else ""))
        dist.setup_done(dp.params, cfg.seed, start_iter)  # every rank set up alike, or all stop here

    if main:
        os.makedirs(cfg.out_dir, exist_ok=True)
    csv_path = os.path.join(cfg.out_dir, "loss.csv")
    rows = [r for r in _read_loss_csv(csv_path) if int(r["step"]) < start_iter] if cfg.resume else []

    def save(step):
        meta = {"config": config, "tokenizer": tok.to_dict(), "step": step, "dtype": cfg.dtype,
                "best_val_loss": best_val, "history": history, "batch_rng": rng.bit_generator.state,
                "model_rng": get_rng_state(), "train_config": asdict(cfg), "corpus": corpus_name}
        if main:
            save_training_checkpoint(cfg.out_dir, model, optimizer, meta)
            _write_loss_csv(csv_path, rows)

    tokens_per_step = cfg.batch_size * cfg.block_size
    t0 = time.perf_counter()
    train_time, steps_done = 0.0, 0
    model.train()
    it = start_iter
    bar = _progress(cfg, start_iter)
    interrupted = False
    with _Interrupt() as stop:
        while True:
            if it % cfg.eval_interval == 0 or it == cfg.max_iters:
                tl = evaluate(model, train_ids, cfg.batch_size, cfg.block_size, cfg.eval_iters, cfg.seed + 1, device)
                vl = evaluate(model, val_ids, cfg.batch_size, cfg.block_size, cfg.eval_iters, cfg.seed + 2, device)
                best_val = min(best_val, vl)
                history.append({"step": it, "train_loss": tl, "val_loss": vl})
                rows.append({"step": it, "lr": "", "loss": "", "eval_train_loss": f"{tl:.6f}",
                             "eval_val_loss": f"{vl:.6f}", "val_perplexity": f"{math.exp(vl):.4f}"})
                _say(bar, log, f"step {it}: train loss {tl:.4f}, val loss {vl:.4f}, val perplexity {math.exp(vl):.2f}")
                if it > start_iter or it == cfg.max_iters:
                    save(it)
            if it >= cfg.max_iters:
                break
            if stop.hit if dist is None else dp.stop:  # ranks: agreed in the last step's all-reduce
                interrupted = True
                break
            ts = time.perf_counter()
            lr = lr_at(it, cfg)
            for g in optimizer.param_groups:
                g["lr"] = lr
            x, y = get_batch(train_ids, cfg.batch_size, cfg.block_size, rng)
            if dp is None:
                loss = train_step(model, optimizer, Tensor(x, device=device), Tensor(y, device=device), cfg.grad_clip)
                lossf = float(loss.data)
            else:  # the global batch: each rank keeps its rows; the loss is the whole batch's
                lossf = dp.step(x, y, stop.hit)
            if not math.isfinite(lossf):
                raise FloatingPointError(f"training diverged at step {it}: loss is {lossf} (try a lower --lr)")
            train_time += time.perf_counter() - ts
            steps_done += 1
            rows.append({"step": it, "lr": f"{lr:.6g}", "loss": f"{lossf:.6f}", "eval_train_loss": "",
                         "eval_val_loss": "", "val_perplexity": ""})
            it += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"loss {lossf:.4f}, {steps_done * tokens_per_step / max(train_time, 1e-9):,.0f} tok/s")
    if bar is not None:
        bar.close()
    if interrupted:
        save(it)
        log(f"interrupted: saved a checkpoint at step {it} in {cfg.out_dir} (continue with --resume)")
    elapsed = time.perf_counter() - t0
    if main:
        _plot_losses(cfg.out_dir, rows, log)
    summary = {"steps": it, "best_val_loss": best_val, "best_val_perplexity": math.exp(best_val) if best_val < math.inf else math.inf,
               "seconds": elapsed, "tokens_per_second": steps_done * tokens_per_step / max(train_time, 1e-9),
               "interrupted": interrupted, "out_dir": cfg.out_dir}
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
