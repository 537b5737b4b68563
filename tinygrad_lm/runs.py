"""What every optimisation run shares, whatever it optimises: `train` (pretraining and
fine-tuning) and `dpo` (preference optimization) both run on these pieces.

* the output folder: `refuse_if_in_use`, `prepare_out_dir` (never clobber a checkpoint
  unless resuming or forced) and `locked_out_dir` (create it, hold its lock for the whole run,
  clear a killed run's temporaries, and leave no empty folder behind a run that failed
  before writing anything);
* the step loop, `StepLoop`: evaluate every `eval_interval` steps and at the end, save after
  each evaluation, step, and stop cleanly on the first Ctrl-C or SIGTERM (`Interrupt`) with a
  checkpoint of the last finished step;
* `Divergence` (a `StepMonitor`): each step's [loss, gradient norm] row and a sticky "not
  finite" flag stay on the parameters' device, the flag handed to the optimizer as
  `found_inf`, so a non-finite step never reaches the weights and an unlogged step reads
  nothing back; `flush()` reads the rows (one transfer) and stops the run naming the first
  non-finite step, what went non-finite and the flags that plausibly caused it. The loop
  flushes every `read_every` steps (1 on the CPU, DEVICE_LOG_INTERVAL on a GPU) and before
  every evaluation, checkpoint and exit;
* `LossLog`: loss.csv (a row per step and per evaluation, written atomically at each save)
  and loss.png (with matplotlib);
* the progress bar (tqdm, when installed and asked for).
"""
from __future__ import annotations

import csv
import io
import math
import os
import signal
import sys
import time
from contextlib import contextmanager

import numpy as np

from . import backend
from .checkpoint import CheckpointError, checkpoint_dir, read_meta
from .fileio import FolderLock, FolderLockedError, atomic_write, remove_stale_temporaries
from .tensor import Tensor

__all__ = ["DEVICE_LOG_INTERVAL", "Divergence", "Interrupt", "LossLog", "StepLoop", "StepMonitor", "TrainingDiverged",
           "all_finite", "locked_out_dir", "prepare_out_dir", "progress_bar", "read_interval", "refuse_if_in_use", "say"]


# ---------------------------------------------------------------- the output folder
def _in_use(out_dir, pid) -> ValueError:
    return ValueError(f"--out-dir {out_dir} is in use by another tinygrad-lm run "
                      f"({'pid ' + str(pid) if pid else 'pid not yet written'}): wait for it to end or choose "
                      f"another --out-dir")


def refuse_if_in_use(out_dir) -> None:
    """ValueError naming the holder's pid when another run holds out_dir's lock (creates nothing)."""
    held, pid = FolderLock.probe(out_dir)
    if held:
        raise _in_use(out_dir, pid)


def prepare_out_dir(out_dir, resume: bool, force: bool) -> None:
    """Refuse to clobber an existing checkpoint unless --resume or --force; refuse --resume
    without one."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out-dir {out_dir} exists and is not a directory")
    existing = checkpoint_dir(out_dir) if os.path.isdir(out_dir) else None
    if resume and existing is None:
        raise CheckpointError(f"--resume: no checkpoint in {out_dir}")
    if existing and not resume and not force:
        try:
            old = read_meta(out_dir)[1]
            config = old.get("config")
            desc = f" (step {old.get('step')}, config {config})" if "dpo_config" not in old else \
                f" (a dpo run, step {old.get('step')})"
        except CheckpointError:
            desc = ""
        raise ValueError(f"--out-dir {out_dir} already holds a checkpoint{desc}; pass --resume to continue it "
                         f"or --force to overwrite it")


@contextmanager
def locked_out_dir(out_dir, recheck=None):
    """Create out_dir if needed and hold its lock (fileio.FolderLock) for the block; `recheck()`
    runs once the lock is held (another run may have finished in the folder since the first
    checks). A run that fails before writing anything leaves no folder it created."""
    created = not os.path.isdir(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    try:
        lock = FolderLock(out_dir).acquire()
    except FolderLockedError as e:
        raise _in_use(out_dir, e.pid) from None
    try:
        remove_stale_temporaries(out_dir)  # left by a run killed mid-write; ours now
        if recheck is not None:
            recheck()
        yield
    finally:
        lock.release()
        if created and not os.listdir(out_dir):  # failed before writing anything: leave no trace
            os.rmdir(out_dir)


# ---------------------------------------------------------------- signals
class Interrupt:
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


def all_finite(model) -> bool:
    return all(bool(backend.array_module(p.data).isfinite(p.data).all()) for p in model.parameters())


# On a GPU a run reads its steps' losses every this many steps (and before every evaluation,
# checkpoint and exit); on the CPU, where a read costs nothing, every step.
DEVICE_LOG_INTERVAL = 10


def read_interval(device: str) -> int:
    """How often a run on `device` reads its steps' rows: 1 on the CPU, DEVICE_LOG_INTERVAL elsewhere."""
    return 1 if device == "cpu" else DEVICE_LOG_INTERVAL


class StepMonitor:
    """A step's divergence check and its logged numbers, with at most one host sync per read
    and none in between.

    As train_step's (or DataParallel.step's) `check(loss, grad_norm)`, for each step: the row
    [loss, gradient norm] (just the loss without clipping), followed by any `extra` values
    (dpo: the batch's reward margin and accuracy), stays on the parameters' device, and so does
    the flag "the loss or gradient norm of some step so far was not finite", returned as
    `found_inf`: the optimizer applies it on the device, so from the first non-finite step on
    no update changes a weight or a moment. `read()` brings every row since the last read to
    the host in one transfer. On the CPU the flag is a host value (numpy bool) and the
    optimizer skips the step outright (step counts included)."""

    def __init__(self):
        self.rows = []
        self.bad = None

    def __call__(self, loss, grad_norm, *extra):
        vals = [v.data if isinstance(v, Tensor) else v for v in (loss, grad_norm, *extra) if v is not None]
        n_checked = 1 if grad_norm is None else 2       # the loss and the norm decide; extras are logged
        dev = next((v for v in vals if hasattr(v, "__cuda_array_interface__")), None)
        if dev is None:  # the CPU (or data parallel's all-reduced float with a CPU norm): reading is free
            row = np.array([float(v) for v in vals])
            self.rows.append(row)
            self.bad = bool(self.bad) or not np.isfinite(row[:n_checked]).all()
            return np.bool_(self.bad)
        xp = backend.array_module(dev)
        with backend.use_device(backend.device_of(dev)):
            # DataParallel hands the all-reduced loss as a float: 8 bytes up, on a path that reads every step
            row = xp.stack([xp.asarray(v, dtype=np.float64) for v in vals])
            bad = xp.logical_not(xp.isfinite(row[:n_checked]).all())
            self.bad = bad if self.bad is None else xp.logical_or(self.bad, bad)
        self.rows.append(row)
        return self.bad

    def read(self) -> np.ndarray:
        """(steps since the last read, columns) [loss, gradient norm, extras...] (no norm column
        without clipping), as float64 on the host: one device-to-host transfer for all of them."""
        rows, self.rows = self.rows, []
        if not rows:
            return np.zeros((0, 2))
        xp = backend.array_module(rows[0])
        return backend.to_numpy(xp.stack(rows)) if xp is not np else np.stack(rows)


class Divergence(StepMonitor):
    """The run's guard against non-finite numbers: a StepMonitor that knows each row's step.
    `check(step, loss, grad_norm, lr_now, **extra)` is the step's `check` (before the optimizer
    step; returns `found_inf`); `flush()` reads the rows since the last flush and raises
    TrainingDiverged naming the first non-finite one; `fail(step, what, lr_now)` raises it for
    what the run found itself (an evaluation). `causes(step, lr_now)` lists the flags that
    plausibly made it diverge; `saved(step)` records the last checkpoint (named in the
    message). A diverged step never reaches the weights (found_inf) nor a checkpoint (the loop
    flushes before every save); on a GPU the error comes at the next flush, the steps in
    between skipped."""

    def __init__(self, model, out_dir, causes, last_saved=None, what="training"):
        super().__init__()
        self.model, self.out_dir, self.causes, self.last_saved, self.what = model, out_dir, causes, last_saved, what
        self.pending = []   # (step, lr_now, grad_norm given, extra names) of each row not yet read

    def saved(self, step) -> None:
        self.last_saved = step

    def fail(self, step, what, lr_now):
        kept = (f"nothing after step {self.last_saved} was saved (the checkpoint in {self.out_dir} is still step "
                f"{self.last_saved}'s)" if self.last_saved is not None else "no checkpoint was written")
        weights = "" if all_finite(self.model) else " (the weights were already non-finite: the previous update made them so)"
        raise TrainingDiverged(f"{self.what} diverged at step {step}: {what}{weights}; {kept}. Plausible causes: "
                               + "; ".join(self.causes(step, lr_now)))

    def check(self, step, loss, grad_norm, lr_now, **extra):
        """Record step `step`'s row (nothing is read on a GPU); returns the sticky found_inf flag."""
        self.pending.append((step, lr_now, grad_norm is not None, tuple(extra)))
        return self(loss, grad_norm, *extra.values())

    def flush(self) -> list[dict]:
        """Every step checked since the last flush, in order, as {"step", "lr", "loss",
        "grad_norm" (None without clipping), extras...} with float values: one read. Raises
        TrainingDiverged at the first step whose loss or gradient norm is not finite."""
        pending, self.pending = self.pending, []
        out = []
        for (step, lr_now, has_norm, names), row in zip(pending, self.read()):
            lossf = float(row[0])
            norm = float(row[1]) if has_norm else None
            if not math.isfinite(lossf):
                self.fail(step, f"the loss is {lossf}", lr_now)
            if norm is not None and not math.isfinite(norm):
                self.fail(step, f"the gradient norm is {norm} (the loss was {lossf:.4g})", lr_now)
            rest = [float(v) for v in row[1 + has_norm:]]
            out.append({"step": step, "lr": lr_now, "loss": lossf, "grad_norm": norm, **dict(zip(names, rest))})
        return out


# ---------------------------------------------------------------- the loop
class StepLoop:
    """The loop of a run, from step `start` to `max_iters`:

        every eval_interval steps and at max_iters:  read(); evaluate(it); save(it) (not at the step resumed from)
        then, unless at max_iters or interrupted:    step(it); read() every read_every steps

    The first Ctrl-C or SIGTERM stops it between steps (after a read) and saves the last
    finished step. `read` (a run's Divergence.flush with its logging) brings the steps' losses
    to the host and raises on a non-finite one: so nothing non-finite is ever evaluated or
    saved, and between reads a step need not wait for the device. After `run`: `it` (the step
    reached), `interrupted` (the signal's name or None), `steps_done` and `step_seconds` (the
    time inside `step` and the reads)."""

    def __init__(self, start: int, max_iters: int, eval_interval: int, bar=None):
        self.start, self.max_iters, self.eval_interval, self.bar = start, max_iters, eval_interval, bar
        self.it, self.interrupted, self.steps_done, self.step_seconds = start, None, 0, 0.0

    def _read(self, read):
        if read is not None:
            ts = time.perf_counter()
            read()
            self.step_seconds += time.perf_counter() - ts  # the wait for the steps' device work

    def run(self, evaluate, step, save, out_dir, log=print, postfix=None, stopped=None, read=None, read_every=1):
        """`postfix(loop, what step returned)` -> the progress bar's text after each step.
        `stopped()`, when given, replaces this process's own signal flag (`loop.signal.hit`,
        readable inside `step`) as the test of whether to stop: data parallel ranks stop on
        the flag they agreed on in the last step's all-reduce. `read()` runs after every
        `read_every` steps and before every evaluation and exit (see the class)."""
        # a diverging step overflows: Divergence names it, numpy's warnings would only add noise
        with Interrupt() as stop, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            self.signal = stop
            while True:
                it = self.it
                if it % self.eval_interval == 0 or it == self.max_iters:
                    self._read(read)  # the steps before: checked before anything is evaluated or saved
                    evaluate(it)
                    if it > self.start or it == self.max_iters:
                        save(it)
                if it >= self.max_iters:
                    break
                hit = stop.hit if stopped is None else stopped()
                if hit:
                    self._read(read)
                    self.interrupted = hit
                    break
                ts = time.perf_counter()
                result = step(it)
                self.step_seconds += time.perf_counter() - ts
                self.steps_done += 1
                self.it += 1
                if self.it % read_every == 0:
                    self._read(read)
                if self.bar is not None:
                    self.bar.update(1)
                    if postfix is not None:
                        self.bar.set_postfix_str(postfix(self, result))
        if self.bar is not None:
            self.bar.close()
        if self.interrupted:
            save(self.it)
            log(f"interrupted: saved a checkpoint at step {self.it} in {out_dir} (continue with --resume)"
                + ("" if self.interrupted == "SIGINT" else f" [{self.interrupted}]"))
        return self


def progress_bar(enabled: bool, total: int, start: int):
    """A tqdm bar on stderr (None when not enabled or tqdm is missing; tqdm hides itself when
    stderr is not a terminal)."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, file=sys.stderr, disable=None)


def say(bar, log, msg):
    """Print `msg` above the progress bar (or with `log` when there is none)."""
    if bar is not None:
        bar.write(msg)
    else:
        log(msg)


# ---------------------------------------------------------------- loss.csv and loss.png
class LossLog:
    """loss.csv in out_dir: the columns `fields`, a row per step and per evaluation (empty
    cells where a row has no value). `resume_from(step)` keeps the rows before the step a
    run resumes at; `write()` replaces the file atomically; `plot(panels)` draws loss.png."""

    def __init__(self, out_dir, fields):
        self.out_dir, self.fields = out_dir, list(fields)
        self.path = os.path.join(out_dir, "loss.csv")
        self.rows: list[dict] = []

    def resume_from(self, start: int) -> None:
        if os.path.exists(self.path):
            with open(self.path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) < start]

    def add(self, **values) -> None:
        self.rows.append({k: values.get(k, "") for k in self.fields})

    def write(self, step) -> None:
        text = io.StringIO(newline="")
        w = csv.DictWriter(text, fieldnames=self.fields)
        w.writeheader()
        w.writerows(self.rows)
        try:
            atomic_write(self.path, text.getvalue())
        except OSError as e:
            raise OSError(f"cannot write {self.path}: {e.strerror or e} (the checkpoint of step {step} is saved)") from None

    def plot(self, panels, title=None):
        """loss.png: one panel per (ylabel, [(column, label, style)]) in `panels`, each column
        plotted against the step where it has values. Returns the path, or None without matplotlib."""
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        fig, axes = plt.subplots(1, len(panels), figsize=(7 if len(panels) == 1 else 5 * len(panels), 4), squeeze=False)
        for ax, (ylabel, series) in zip(axes[0], panels):
            for col, label, style in series:
                pts = [(int(r["step"]), float(r[col])) for r in self.rows if r.get(col)]
                if style == "line":
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=0.6, alpha=0.5, label=label)
                else:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
            ax.set_xlabel("step")
            ax.set_ylabel(ylabel)
            ax.legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=100)
        plt.close(fig)
        path = os.path.join(self.out_dir, "loss.png")
        atomic_write(path, png.getbuffer())
        return path
