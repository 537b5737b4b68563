"""Preference optimization: the second training stage, by Direct Preference Optimization
(Rafailov et al., 2023). docs/preference.md derives it; this is the code.

Pretraining made the model likely to continue text the way its corpus does. DPO moves it
toward the answers people prefer, from pairs (prompt, chosen answer, rejected answer):

    policy pi      the model being trained, initialised from a checkpoint (--init-from)
    reference ref  a frozen copy of that same checkpoint: no gradients, no optimizer state
    log pi(y|x)    a sequence log-probability: the sum over the answer's tokens of
                   log p(token | prompt and the answer's tokens before it); prompt tokens masked
    z              beta ((log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected)))
    loss           -log sigmoid(z), averaged over the pairs of a batch (nn.functional.dpo_loss)

beta * (log pi(y) - log ref(y)) is the answer's implicit reward, so z is the reward margin of
the chosen answer over the rejected one. Logged at every evaluation, on a held-out share of
the pairs (--val-share): the loss, the mean reward margin and the preference accuracy (the
share of pairs whose margin is positive).

Choices (each in docs/preference.md):
* the reference is frozen, so its log-probabilities are constants: they are computed once, at
  the start, by the frozen copy (in the batches the held-out evaluation uses, so at step 0 the
  held-out margins are exactly 0 and the loss exactly log 2), and stored in the checkpoint,
  so a resumed run needs neither the reference model nor the --init-from folder;
* dropout is off for the policy too (the reference has none to turn off): otherwise the
  policy's log-probabilities would be noisy copies of the reference's at step 0;
* a prompt + answer longer than block_size + 1 tokens has its prompt cut from the left, for
  both answers of a pair alike (data/examples.py: the overflow policy);
* the learning rate warms up linearly over --warmup-iters steps and then stays at --lr.

The run is a run like `train`'s (runs.py): one lock on --out-dir, a checkpoint at every
evaluation, at the end and on Ctrl-C or SIGTERM, --resume continues it exactly, loss.csv and
loss.png, a non-finite loss or gradient never reaches the weights and stops the run at the
next read. A step reads nothing back: its loss, margin and accuracy are computed on the
device and read with the gradient norm every step on the CPU, every DEVICE_LOG_INTERVAL steps
on a GPU, and before every evaluation, checkpoint and exit. Every check is made before
anything is written.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, replace

import numpy as np

from . import backend
from .checkpoint import (MODEL_KEYS, CheckpointError, build_model, data_record, load_init, load_training_checkpoint,
                         model_arrays, model_dtype, read_meta, restore_device_rng, save_training_checkpoint)
from .data import DataError, load_preference_pairs, load_text, text_sha256
from .engine import get_rng_state, manual_seed, no_grad, set_rng_state
from .nn import functional as F
from .resources import SIZE_KEYS, check_sizes, gpt_parameter_count, itemsize, training_bytes
from .runs import (Divergence, LossLog, StepLoop, locked_out_dir, prepare_out_dir, progress_bar, read_interval,
                   refuse_if_in_use, say)
from .tensor import Tensor
from .train_config import DPOConfig, dpo_resume_config

__all__ = ["DPOConfig", "dpo", "dpo_step", "evaluate_pairs", "frozen_copy", "pair_logprobs", "pair_metrics",
           "sequence_logprobs", "split_pairs"]

ADAMW_BETAS = (0.9, 0.99)
# loss.csv's columns: a step fills lr and the batch's loss, margin and accuracy, an evaluation the last three
DPO_CSV_FIELDS = ["step", "lr", "loss", "margin", "accuracy", "eval_loss", "eval_margin", "eval_accuracy"]


# ---------------------------------------------------------------- the math
def sequence_logprobs(model, x, y) -> Tensor:
    """(R,) log-probability of each row's counted targets: sum over t of log p(y[r, t] | x[r, :t+1])
    for the y[r, t] != IGNORE (the answer's tokens; the prompt and the padding are IGNORE).
    One forward of the (R, T) batch, the fused per-token cross-entropy, summed per row."""
    logits, _ = model(x)                                                           # (R, T, V)
    nll = F.cross_entropy(logits, y, ignore_index=-1, reduction="none")            # (R, T), 0 where ignored
    return -nll.sum(1)


def frozen_copy(model):
    """The reference: a copy of `model`'s weights in a new model of its config and dtype, with
    no gradients (requires_grad False everywhere: backward never reaches it, and no optimizer
    is ever built over it), in eval mode."""
    dtype = str(next(iter(model.parameters())).dtype)
    ref = build_model({"vocab_size": model.config.vocab_size, **{k: getattr(model.config, k) for k in MODEL_KEYS}},
                      "cpu", dtype)
    ref.load_state_dict(model_arrays(model))
    ref.requires_grad_(False)
    device = next(iter(model.parameters())).device
    return (ref.to(device) if device != "cpu" else ref).eval()


@no_grad()
def pair_logprobs(model, pairs, batch_size: int, device: str) -> tuple[np.ndarray, np.ndarray]:
    """(log pi(chosen), log pi(rejected)) of every pair of `pairs` (a PairSet), float64 (N,)
    each, in batches of `batch_size` pairs taken in order."""
    chosen, rejected = [], []
    for first in range(0, len(pairs), batch_size):
        idx = np.arange(first, min(first + batch_size, len(pairs)))
        x, y = pairs.rows(idx)
        lp = backend.to_numpy(sequence_logprobs(model, Tensor(x, device=device), Tensor(y, device=device)).data)
        chosen.append(lp[:len(idx)])
        rejected.append(lp[len(idx):])
    return np.concatenate(chosen).astype(np.float64), np.concatenate(rejected).astype(np.float64)


def pair_stats(pc, pr, rc, rr, beta: float, xp=np):
    """(loss, margin, accuracy) of pairs from their four log-probabilities, arrays of module
    `xp` (numpy or cupy: computed where they lie, nothing read), as 0-d arrays:
    z = beta ((pc - rc) - (pr - rr)), loss = mean log(1 + e^-z), margin = mean z, accuracy =
    the share of z > 0."""
    z = beta * ((pc - rc) - (pr - rr))
    return xp.logaddexp(0.0, -z).mean(), z.mean(), (z > 0).mean()


def pair_metrics(pc, pr, rc, rr, beta: float) -> dict:
    """The DPO loss, mean reward margin and preference accuracy of pairs from their four
    log-probabilities (numpy), as floats (pair_stats)."""
    loss, margin, accuracy = pair_stats(pc, pr, rc, rr, beta)
    return {"loss": float(loss), "margin": float(margin), "accuracy": float(accuracy), "pairs": int(np.size(pc))}


def evaluate_pairs(model, pairs, ref_chosen, ref_rejected, beta: float, batch_size: int, device: str) -> dict:
    """pair_metrics of the policy `model` on `pairs` against the reference's log-probabilities
    (float64 (N,) each, in the order of `pairs`), with dropout off."""
    pc, pr = pair_logprobs(model, pairs, batch_size, device)
    return pair_metrics(pc, pr, ref_chosen, ref_rejected, beta)


def dpo_step(model, optimizer, x: Tensor, y: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, beta: float,
             grad_clip: float = 1.0, check=None) -> tuple[Tensor, Tensor]:
    """One DPO step on a batch of B pairs: x, y (2B, T) hold the chosen sequences, then the
    rejected ones; ref_chosen, ref_rejected (B,) the reference's log-probabilities. loss =
    dpo_loss(...); backward (through the policy's two sequence log-probabilities only); clip
    the gradient norm to `grad_clip` (0 = off); `check(loss, grad_norm, logps)` (grad_norm a
    0-d tensor or None, logps the policy's (2B,) log-probabilities, detached) runs before the
    AdamW step: it may raise to keep the weights as they were, or return `found_inf` for the
    optimizer's step (as train.train_step's check); clear the gradients. Returns (loss, logps),
    nothing read from the device."""
    from .optim import clip_grad_norm_
    logps = sequence_logprobs(model, x, y)                                          # (2B,)
    b = ref_chosen.shape[0]
    loss = F.dpo_loss(logps[:b], logps[b:], ref_chosen, ref_rejected, beta=beta)
    loss.backward()
    grad_norm = clip_grad_norm_(model.parameters(), grad_clip) if grad_clip > 0 else None
    logps = logps.detach()
    found_inf = check(loss, grad_norm, logps) if check is not None else None
    if found_inf is None:
        optimizer.step()
    else:
        optimizer.step(found_inf=found_inf)
    optimizer.zero_grad(set_to_none=True)
    return loss, logps


def dpo_lr(it: int, cfg: DPOConfig) -> float:
    """--lr after a linear warmup over --warmup-iters steps (optim.get_lr with no decay)."""
    from .optim import get_lr
    return get_lr(it, cfg.warmup_iters, max(cfg.warmup_iters, 1), cfg.lr, cfg.lr)


# ---------------------------------------------------------------- a run
def dpo(cfg: DPOConfig, log=print) -> dict:
    """Run DPO as configured; returns a summary dict (the first and last held-out metrics
    among it). Everything that can be refused is refused before anything is written; the run
    then holds out_dir's lock throughout and saves like `train`."""
    cfg = replace(cfg)
    cfg.validate()
    from .distributed import env_world_size
    ranks = env_world_size()
    if ranks is not None and ranks > 1:
        raise ValueError(f"dpo runs in one process, and this one was launched as one of {ranks} MPI ranks "
                         f"(data-parallel dpo is not implemented): run it without mpiexec")
    backend.canonical_device(cfg.device)
    given_init, given_pairs = cfg.init_from, cfg.pairs  # as given, for messages
    for name in ("init_from", "pairs"):
        if getattr(cfg, name) is not None:  # recorded absolute: the checkpoint names them from any folder
            setattr(cfg, name, os.path.abspath(getattr(cfg, name)))
    if not cfg.resume and os.path.realpath(cfg.out_dir) == os.path.realpath(cfg.init_from):
        raise ValueError(f"--out-dir {cfg.out_dir} is the --init-from folder: dpo writes a new run into another "
                         f"--out-dir, and the checkpoint it starts from stays as it is")
    refuse_if_in_use(cfg.out_dir)
    prepare_out_dir(cfg.out_dir, cfg.resume, cfg.force)
    if cfg.resume:
        state = _resume(cfg, given_pairs, log)
    else:
        policy, tok, init_meta = load_init(given_init)
        text = load_text(given_pairs)
        pairs, notes = load_preference_pairs(text, given_pairs, tok, policy.config.block_size,
                                             "the --init-from checkpoint's")
        dtype = model_dtype(init_meta)
        _check_memory(cfg, policy.config, dtype)
        state = {"cfg": cfg, "policy": policy, "tok": tok, "pairs": pairs, "notes": notes, "text": text,
                 "dtype": dtype, "init": {"path": cfg.init_from, "step": init_meta.get("step")},
                 "data": init_meta.get("data"), "meta": None}
    state["split"] = split_pairs(len(state["pairs"]), state["cfg"].val_share, state["cfg"].seed,
                                 given_pairs or state["cfg"].pairs)
    with locked_out_dir(cfg.out_dir, recheck=lambda: prepare_out_dir(cfg.out_dir, cfg.resume, cfg.force)):
        return _dpo_locked(state, log)


def _check_memory(cfg: DPOConfig, config, dtype: str) -> None:
    """The policy's training at 2 x batch_size sequences of block_size, and the reference's weights."""
    conf = {"vocab_size": config.vocab_size, **{k: getattr(config, k) for k in MODEL_KEYS}}
    labels = {k: f"the checkpoint's {k}" for k in SIZE_KEYS} | {"batch_size": "--batch-size"}
    s = itemsize(dtype)
    check_sizes(lambda v: {**training_bytes({**conf, **v}, 2 * v["batch_size"], s),
                           "the frozen reference's weights": gpt_parameter_count({**conf, **v}) * s},
                {k: conf[k] for k in SIZE_KEYS} | {"batch_size": cfg.batch_size}, labels,
                backend.canonical_device(cfg.device))


def split_pairs(n: int, val_share: float, seed: int, source: str = "the pairs file") -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices of n pairs: a permutation drawn from `seed` (--seed), the
    held-out share rounded, at least one pair on each side."""
    n_val = max(1, round(val_share * n))
    if n - n_val < 1:
        raise ValueError(f"{source} holds {n} pair{'s' if n != 1 else ''}: too few to hold out --val-share "
                         f"{val_share:g} and train on the rest (need at least 2)")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _resume(cfg: DPOConfig, given_pairs, log) -> dict:
    """The state of the run in cfg.out_dir to continue, every check made before a tensor is read."""
    d, meta = read_meta(cfg.out_dir)
    where = os.path.join(d, "meta.json")
    saved = meta.get("dpo_config")
    if not isinstance(saved, dict):
        raise CheckpointError(f"--resume: {cfg.out_dir} holds a train run, not a dpo run ({where} has no "
                              f"'dpo_config'): continue it with tinygrad-lm train --resume")
    run, notes = dpo_resume_config(cfg, saved)
    rec = meta.get("pairs") if isinstance(meta.get("pairs"), dict) else {}
    path = cfg.pairs if "pairs" in cfg.explicit else run.pairs
    try:
        text = load_text(path)
    except DataError as e:
        raise DataError(f"{e} (the pairs this dpo run trains on, recorded in {where})") from None
    if text_sha256(text) != rec.get("sha256"):
        if path == rec.get("path"):
            raise ValueError(f"--resume: the pairs file {path} has changed since this run trained on it (its SHA-256 "
                             f"differs from the one in {where})")
        raise ValueError(f"--resume: --pairs {given_pairs} is not the pairs file this run trained on "
                         f"({rec.get('path')}; the SHA-256 differs)")
    if path != run.pairs:
        notes.append(f"--resume: --pairs {given_pairs} holds the same pairs as the run's {run.pairs}")
        run.pairs = path
    ref = meta.get("reference_logps")
    for line in notes:
        log(line)
    policy, tok, meta, optim_state = load_training_checkpoint(cfg.out_dir)
    pairs, pair_notes = load_preference_pairs(text, path, tok, policy.config.block_size, "the run's")
    if not (isinstance(ref, dict) and all(isinstance(ref.get(k), list) and len(ref[k]) == len(pairs)
                                          for k in ("chosen", "rejected"))):
        raise CheckpointError(f"checkpoint file {where}: 'reference_logps' must hold a chosen and a rejected "
                              f"log-probability for each of the {len(pairs)} pairs")
    ref = {k: np.asarray(ref[k], dtype=np.float64) for k in ("chosen", "rejected")}
    if not all(np.isfinite(v).all() for v in ref.values()):
        raise CheckpointError(f"checkpoint file {where}: 'reference_logps' holds non-finite values")
    _check_memory(run, policy.config, model_dtype(meta))
    return {"cfg": run, "policy": policy, "tok": tok, "pairs": pairs, "notes": pair_notes, "text": text,
            "dtype": model_dtype(meta), "init": meta.get("init"), "data": meta.get("data"), "meta": meta,
            "optim_state": optim_state, "ref": ref}


def _dpo_locked(state: dict, log) -> dict:
    cfg, policy, tok, pairs, meta = state["cfg"], state["policy"], state["tok"], state["pairs"], state["meta"]
    device = backend.canonical_device(cfg.device)
    train_idx, val_idx = state["split"]
    train_set, val_set = pairs.subset(train_idx), pairs.subset(val_idx)
    for line in state["notes"]:
        log(line)
    log(f"pairs {cfg.pairs}: {len(pairs):,} pairs -> {len(train_set):,} train / {len(val_set):,} held out "
        f"(--val-share {cfg.val_share:g}); beta {cfg.beta:g}")
    if device != "cpu":
        policy.to(device)
    policy.eval()  # dropout off: the policy starts equal to the reference, not a noisy copy of it
    if meta is None:  # a new run: the frozen reference computes its log-probabilities once
        manual_seed(cfg.seed)
        t0 = time.perf_counter()
        reference = frozen_copy(policy)
        ref = {"chosen": np.zeros(len(pairs)), "rejected": np.zeros(len(pairs))}
        for subset in (train_set, val_set):  # in the batches evaluate_pairs uses: exactly 0 margins at step 0
            c, r = pair_logprobs(reference, subset, cfg.batch_size, device)
            ref["chosen"][subset.index], ref["rejected"][subset.index] = c, r
        del reference
        log(f"reference: a frozen copy of {state['init']['path']} (step {state['init']['step']}; no gradients, no "
            f"optimizer state): the log-probabilities of the {2 * len(pairs):,} answers in "
            f"{time.perf_counter() - t0:.1f}s")
        start_iter, history = 0, []
    else:
        ref = state["ref"]
        start_iter = meta["step"]
        history = [h for h in meta.get("history", []) if h["step"] < start_iter]
    n_params = sum(p.numel() for p in policy.parameters())
    c = policy.config
    log(f"policy: {c.n_layer} layers, {c.n_head} heads, {c.n_embd} dims, block {c.block_size}, {n_params:,} "
        f"parameters, {device}, {state['dtype']}" + (f"; resuming at step {start_iter}" if meta is not None else ""))
    optimizer = policy.configure_optimizers(cfg.weight_decay, cfg.lr, ADAMW_BETAS)
    rng = np.random.default_rng(cfg.seed)
    if meta is not None:
        optimizer.load_state_dict(state["optim_state"])
        rng.bit_generator.state = meta["batch_rng"]
        set_rng_state(meta["model_rng"])
        # the dropout masks' generator: the policy runs without dropout, so the note on an older
        # checkpoint without its state (masks seeded by (seed, step)) concerns no number of this run
        restore_device_rng(meta, cfg.out_dir, cfg.seed, start_iter)
    val_ref = (ref["chosen"][val_set.index], ref["rejected"][val_set.index])
    dt = state["dtype"]
    config = {"vocab_size": tok.vocab_size, **{k: getattr(c, k) for k in MODEL_KEYS}}
    losses = LossLog(cfg.out_dir, DPO_CSV_FIELDS)
    if meta is not None:
        losses.resume_from(start_iter)
    guard = Divergence(policy, cfg.out_dir, lambda step, lr_now: _plausible_causes(cfg, step, lr_now),
                       last_saved=start_iter if meta is not None else None, what="dpo")
    pairs_record = data_record(cfg.pairs, cfg.pairs, state["text"])

    def save(step):
        m = {"config": config, "tokenizer": tok.to_dict(), "step": step, "dtype": dt, "history": history,
             "batch_rng": rng.bit_generator.state, "model_rng": get_rng_state(),
             "device_rng": backend.device_rng.get_state(), "dpo_config": asdict(cfg),
             "pairs": pairs_record, "init": state["init"], "reference_logps": {k: v.tolist() for k, v in ref.items()}}
        if state["data"] is not None:  # the pretraining text: `eval` of this checkpoint scores it there
            m["data"] = state["data"]
        save_training_checkpoint(cfg.out_dir, policy, optimizer, m)
        guard.saved(step)
        losses.write(step)

    def evaluate(it):
        r = evaluate_pairs(policy, val_set, *val_ref, cfg.beta, cfg.batch_size, device)
        if not math.isfinite(r["loss"]):
            guard.fail(it, f"the held-out loss is {r['loss']}", dpo_lr(max(it - 1, 0), cfg))
        history.append({"step": it, **r})
        losses.add(step=it, eval_loss=f"{r['loss']:.6f}", eval_margin=f"{r['margin']:.6f}",
                   eval_accuracy=f"{r['accuracy']:.6f}")
        say(bar, log, f"step {it}: held-out loss {r['loss']:.4f}, reward margin {r['margin']:+.4f}, preference "
                      f"accuracy {r['accuracy']:.3f} ({round(r['accuracy'] * r['pairs'])}/{r['pairs']} pairs)")

    def step(it):
        lr = dpo_lr(it, cfg)
        for g in optimizer.param_groups:
            g["lr"] = lr
        idx = rng.integers(0, len(train_set), size=cfg.batch_size)
        x, y = train_set.rows(idx)
        k = train_set.index[idx]
        # the reference's log-probabilities in float64 on the device (the metrics'), cast there for the loss
        ref64 = [backend.to_device(ref[name][k], device) for name in ("chosen", "rejected")]
        rc, rr = (Tensor._wrap(r.astype(dt)) for r in ref64)

        def check(loss, grad_norm, logps):  # before the optimizer step: a non-finite update is never applied
            # the batch's loss, margin and accuracy, in float64 from its log-probabilities, stay on the
            # device with the gradient norm until the loop reads them (Divergence); the returned flag
            # is the optimizer's found_inf
            with backend.use_device(device):
                lp = logps.data.astype(np.float64)
                b = len(idx)
                stats = pair_stats(lp[:b], lp[b:], *ref64, cfg.beta, backend.array_module(lp))
            return guard.check(it, stats[0], grad_norm, lr, margin=stats[1], accuracy=stats[2])
        dpo_step(policy, optimizer, Tensor(x, device=device), Tensor(y, device=device), rc, rr, cfg.beta,
                 cfg.grad_clip, check)

    last = {}  # the last step read, for the progress bar

    def read():  # the logged step's one host sync: every pending step's loss, margin and accuracy, checked
        for r in guard.flush():
            losses.add(step=r["step"], lr=f"{r['lr']:.6g}", loss=f"{r['loss']:.6f}", margin=f"{r['margin']:.6f}",
                       accuracy=f"{r['accuracy']:.6f}")
            last.update(r)

    t0 = time.perf_counter()
    bar = progress_bar(cfg.progress, cfg.max_iters, start_iter)
    loop = StepLoop(start_iter, cfg.max_iters, cfg.eval_interval, bar).run(
        evaluate, step, save, cfg.out_dir, log, read=read, read_every=read_interval(device),
        postfix=lambda lp, _: f"loss {last.get('loss', math.nan):.4f}, margin {last.get('margin', math.nan):+.3f}, "
                              f"acc {last.get('accuracy', math.nan):.2f}")
    elapsed = time.perf_counter() - t0
    losses.plot([("DPO loss", [("loss", "batch", "line"), ("eval_loss", "held-out", "o-")]),
                 ("reward margin", [("margin", "batch", "line"), ("eval_margin", "held-out", "o-")]),
                 ("preference accuracy", [("accuracy", "batch", "line"), ("eval_accuracy", "held-out", "o-")])],
                title=f"DPO, beta {cfg.beta:g}")
    summary = {"steps": loop.it, "seconds": elapsed, "first_eval": history[0] if history else None,
               "last_eval": history[-1] if history else None, "interrupted": bool(loop.interrupted),
               "signal": loop.interrupted, "out_dir": cfg.out_dir, "train_pairs": len(train_set),
               "held_out_pairs": len(val_set)}
    last = summary["last_eval"]
    log(f"done: {loop.it} steps in {elapsed:.1f}s" + (f"; held-out loss {last['loss']:.4f}, reward margin "
                                                     f"{last['margin']:+.4f}, preference accuracy {last['accuracy']:.3f}"
                                                     if last else "") + f"; checkpoint in {cfg.out_dir}")
    return summary


def _plausible_causes(cfg: DPOConfig, step: int, lr_now: float) -> list[str]:
    from .train import plausible_causes
    return plausible_causes(cfg, step, lr_now)
