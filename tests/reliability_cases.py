"""Every fault and bad input tinygrad_lm is tried against, as one table: CASES.

A case sets up a folder, does one thing a hostile but realistic user would (a command with a
bad flag or file, a second run into a busy folder, a signal, a kill -9, a full disk), and
reports an Outcome: the exit code, the message (the one line on stderr; for a command that
succeeds, the lines it prints about what it did) and what happened on disk ("unchanged"
when every file under the folder has the bytes it had before).

* tests/test_fault_*.py run the cases of their class and assert each one's expectations, and
  that docs/reliability.md shows the outcome the case gets now;
* benchmarks/reliability_table.py runs every case and writes docs/reliability.md.

Messages are shown with the case's folder as <dir>, a pid as <pid> and the machine's free
memory as <available>, so the table reads the same on every machine.
"""
from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"

TEXT = "the cat sat on the mat. the dog sat on the log. " * 40
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "8", "--block-size", "8", "--batch-size", "4",
        "--eval-interval", "5", "--eval-iters", "1", "--warmup-iters", "1", "--no-progress", "--sample-tokens", "0"]


@dataclass
class Outcome:
    code: int | None          # None: the case could not run here (skipped)
    message: str
    disk: str = "unchanged"


@dataclass
class Case:
    id: str
    klass: str
    what: str                 # what was tried, as the table shows it
    run: object               # function(folder: Path) -> Outcome
    code: int = 2
    says: tuple = ()          # substrings the message must hold
    disk: str = "unchanged"   # the expected disk outcome (exact)
    not_says: tuple = ()


# ---------------------------------------------------------------- running things
def snapshot(root: Path) -> dict:
    """Every entry under root -> what it is: a regular file's bytes (its size and mtime when
    over 1 MB: a sparse 50 GB file is not read), a symlink's target, a special file's kind."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            if os.path.islink(p):
                out[p] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[p] = ("dir",)
            elif not os.path.isfile(p):
                out[p] = ("special", st.st_mode)
            elif st.st_size > 2**20:
                out[p] = ("big", st.st_size, st.st_mtime_ns)
            else:
                with open(p, "rb") as f:
                    out[p] = ("file", f.read())
    return out


def compare(before: dict, after: dict, root: Path) -> str:
    if before == after:
        return "unchanged"
    diff = sorted({k for k in before.keys() | after.keys() if before.get(k) != after.get(k)})
    return "changed: " + ", ".join(os.path.relpath(p, root) for p in diff[:5])


@contextlib.contextmanager
def inside(folder: Path):
    old = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


def run_cli(folder: Path, argv) -> tuple[int, str, str]:
    """tinygrad-lm ARGV in-process, from `folder` -> (exit code, stdout, stderr)."""
    from tinygrad_lm.cli import main
    out, err = io.StringIO(), io.StringIO()
    with inside(folder), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse's own errors
            code = e.code
    return code, out.getvalue(), err.getvalue()


def cli(argv, setup=None, show=(), disk=None):
    """A case that runs `tinygrad-lm ARGV` in its folder after `setup(folder)`. The message
    is stderr, or, when it succeeds, the stdout lines starting with one of `show`. `disk`:
    function(folder) -> the disk outcome (default: the snapshot comparison)."""
    def run(folder: Path) -> Outcome:
        if setup is not None:
            setup(folder)
        before = snapshot(folder)
        code, out, err = run_cli(folder, argv)
        if code:
            msg = err.strip()
        elif callable(show):
            msg = show(out)
        else:
            msg = " / ".join(l for l in out.splitlines() if l.startswith(tuple(show)))
        return Outcome(code, msg, disk(folder) if disk else compare(before, snapshot(folder), folder))
    return run


def numbers_hidden(out: str) -> str:
    """stdout with every decimal number as <x>: losses and log-probabilities differ in their
    last digits from one machine's BLAS to another's."""
    return re.sub(r"-?\d+\.\d+", "<x>", out.strip()).replace("\n", " / ")


def samples_printed(out: str) -> str:
    n = sum(line.startswith("--- sample") for line in out.splitlines())
    return f"{n} sample printed, with its total log-probability" if "total log-probability" in out else out


def sub_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def train_cmd(*args) -> list:
    return [sys.executable, "-m", "tinygrad_lm", "train", *map(str, args)]


def wait_for(cond, timeout=30.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------- set-ups
def corpus(folder: Path, name="corpus.txt", text=TEXT) -> Path:
    p = folder / name
    p.write_text(text, encoding="utf-8")
    return p


_CACHE: dict = {}


def _cleanup():
    for base in _CACHE.values():
        shutil.rmtree(base, ignore_errors=True)


atexit.register(_cleanup)


def trained(folder: Path, variant: str = "char") -> Path:
    """folder/run: a tiny trained run (10 steps, checkpoints at 5 and 10) on folder/corpus.txt,
    trained once per process and copied (its recorded data path pointed at the copy)."""
    if variant not in _CACHE:
        base = Path(tempfile.mkdtemp(prefix="tinygrad-lm-cases-"))
        corpus(base)
        extra = {"char": [], "bpe": ["--tokenizer", "bpe", "--vocab-size", "260"]}[variant]
        code, _, err = run_cli(base, ["train", "--data", "corpus.txt", "--out-dir", "run", "--max-iters", "10",
                                      *TINY, *extra])
        assert code == 0, err
        _CACHE[variant] = base
    base = _CACHE[variant]
    shutil.copy(base / "corpus.txt", folder / "corpus.txt")
    shutil.copytree(base / "run", folder / "run")
    edit_meta(folder / "run", lambda m: (m["data"].update(path=str(folder / "corpus.txt")),
                                         m["train_config"].update(data=str(folder / "corpus.txt"))))
    return folder / "run"


def ckpt_state(folder: Path) -> str:
    """'checkpoint continued to step N on <its recorded data file>', read back through load_model."""
    from tinygrad_lm.checkpoint import load_model
    meta = load_model(folder / "run")[2]
    return f"checkpoint continued to step {meta['step']} on {meta['data']['path']}"


def meta_path(run: Path) -> Path:
    return run / "ckpt" / "meta.json"


def edit_meta(run: Path, change) -> None:
    meta = json.loads(meta_path(run).read_text())
    change(meta)
    meta_path(run).write_text(json.dumps(meta))


def with_run(change=None, variant="char"):
    """A setup: a trained run, then `change(run)`."""
    def setup(folder):
        run = trained(folder, variant)
        if change is not None:
            change(run)
    return setup


def config_edit(**kv):
    return lambda run: edit_meta(run, lambda m: m["config"].update(kv))


def st_rewrite(name="model.safetensors", header=None, data=None, raw=None):
    """Replace a safetensors file of the checkpoint: `header(h)` edits its parsed header,
    `data(bytes)` its data, or `raw(bytes)` the whole file."""
    def change(run):
        p = run / "ckpt" / name
        b = p.read_bytes()
        if raw is not None:
            p.write_bytes(raw(b))
            return
        (n,) = struct.unpack("<Q", b[:8])
        h = json.loads(b[8:8 + n])
        body = b[8 + n:]
        if header is not None:
            header(h)
        if data is not None:
            body = data(body)
        blob = json.dumps(h).encode()
        p.write_bytes(struct.pack("<Q", len(blob)) + blob + body)
    return change


def arrays_edit(edit, name="model.safetensors"):
    """Rewrite the checkpoint's tensors through the package after `edit(arrays)`."""
    def change(run):
        from tinygrad_lm.checkpoint import load_safetensors, save_safetensors
        arrays, md = load_safetensors(run / "ckpt" / name)
        edit(arrays)
        save_safetensors(run / "ckpt" / name, arrays, md)
    return change


def fifo(path: Path):
    if path.exists():
        path.unlink()
    os.mkfifo(path)


def sparse(path: Path, size=50 * 2**30):
    if path.exists():
        path.unlink()
    with open(path, "wb") as f:
        f.truncate(size)


# ---------------------------------------------------------------- the cases
CASES: list[Case] = []


def case(id, klass, what, run, code=2, says=(), disk="unchanged", not_says=()):
    CASES.append(Case(id, klass, what, run, code, tuple(says), disk, tuple(not_says)))


T = [*TINY]
SAMPLE = ["sample", "--out-dir", "run", "--prompt", "the ", "--max-new-tokens", "4"]

# 1 ------------------------------------------------------------ divergence
K = "1. Divergence"


def _diverge_after_a_save(folder):
    corpus(folder)
    code, out, err = run_cli(folder, ["train", "--data", "corpus.txt", "--out-dir", "run", "--max-iters", "30",
                                      "--lr", "1e3", "--grad-clip", "0", *T])
    from tinygrad_lm.checkpoint import load_model
    _, _, meta = load_model(folder / "run")
    rows = (folder / "run" / "loss.csv").read_text().splitlines()
    disk = (f"checkpoint of step {meta['step']} kept, loads, finite; loss.csv ends at step "
            f"{rows[-1].split(',')[0]}")
    # the step the overflow reaches nan may differ by one with another BLAS's rounding
    return Outcome(code, re.sub(r"diverged at step \d+", "diverged at step <n>", err.strip()), disk)


case("diverge-lr", K, "train --lr 1e30 (the first step's gradient overflows)",
     cli(["train", "--data", "corpus.txt", "--out-dir", "run", "--max-iters", "30", "--lr", "1e30", *T], corpus),
     says=("training diverged at step 1: the gradient norm is nan", "no checkpoint was written", "--lr 1e+30"))
case("diverge-weight-decay", K, "train --weight-decay 1e30 (decay grows the weights)",
     cli(["train", "--data", "corpus.txt", "--out-dir", "run", "--max-iters", "30", "--weight-decay", "1e30", *T],
         corpus),
     says=("training diverged at step 2", "Plausible causes: --weight-decay 1e+30 with --lr"), not_says=("; --lr",))
case("diverge-no-clip", K, "train --lr 1e30 --grad-clip 0 --weight-decay 0 (the update makes the weights inf)",
     cli(["train", "--data", "corpus.txt", "--out-dir", "run", "--max-iters", "30", "--lr", "1e30", "--grad-clip", "0",
          "--weight-decay", "0", *T], corpus),
     says=("the loss is nan (the weights were already non-finite", "--lr 1e+30", "--grad-clip 0 (no clipping)"),
     not_says=("--weight-decay",))
case("diverge-after-save", K, "train --lr 1e3 --grad-clip 0 (diverges after the step-5 checkpoint)",
     _diverge_after_a_save, says=("training diverged at step <n>: the loss is nan", "nothing after step 5 was saved",
                                  "still step 5's", "Plausible causes: --lr 1000 with --weight-decay 0.1"),
     disk="checkpoint of step 5 kept, loads, finite; loss.csv ends at step 5")
case("dpo-diverge-lr", K, "dpo --lr 1e30 (the first update makes the weights overflow)",
     cli(["dpo", "--init-from", "run", "--pairs", "pairs.jsonl", "--out-dir", "dpo", "--lr", "1e30", "--batch-size", "2",
          "--max-iters", "10", "--eval-interval", "5", "--no-progress"], lambda f: (trained(f), pairs_file(f))),
     says=("dpo diverged at step 1: the gradient norm is nan", "no checkpoint was written", "--lr 1e+30"))
case("weight-decay-nan", K, "train --weight-decay nan", cli(["train", "--weight-decay", "nan"]),
     says=("--weight-decay must be a finite number >= 0, got nan",), not_says=("--lr",))
case("lr-inf", K, "train --lr inf", cli(["train", "--lr", "inf"]), says=("--lr must be a finite number > 0, got inf",))
case("nan-weights-sample", K, "sample from a checkpoint holding a NaN weight (written around the checks)",
     cli(SAMPLE, with_run(arrays_edit(lambda a: a["transformer.h.0.mlp.c_fc.weight"].__setitem__((0, 0), np.nan)))),
     says=("model.safetensors", "'transformer.h.0.mlp.c_fc.weight' holds 1 non-finite value"))
case("nan-moments-resume", K, "train --resume from a checkpoint whose AdamW moments hold inf",
     cli(["train", "--out-dir", "run", "--resume", "--max-iters", "20"],
         with_run(arrays_edit(lambda a: a[sorted(a)[0]].reshape(-1).__setitem__(0, np.inf), "optimizer.safetensors"))),
     says=("optimizer.safetensors", "holds 1 non-finite value"))

# 2 ------------------------------------------------------------ resume
K = "2. Resume"
RESUME = ["train", "--out-dir", "run", "--resume"]


def _resume_bit_for_bit(folder):
    corpus(folder)
    a = run_cli(folder, ["train", "--data", "corpus.txt", "--out-dir", "a", "--max-iters", "20", *T])
    b = run_cli(folder, ["train", "--data", "corpus.txt", "--out-dir", "b", "--max-iters", "10", *T])
    c = run_cli(folder, ["train", "--out-dir", "b", "--resume", "--max-iters", "20", "--no-progress"])
    same = (folder / "a" / "loss.csv").read_bytes() == (folder / "b" / "loss.csv").read_bytes()
    msg = " / ".join(l for l in c[1].splitlines() if l.startswith("--resume:"))
    return Outcome(max(a[0], b[0], c[0]), msg, "loss.csv identical to an uninterrupted run's" if same else "loss.csv differs")


def _moved_data(run):
    (run.parent / "corpus.txt").rename(run.parent / "moved.txt")


def _changed_data(run):
    with open(run.parent / "corpus.txt", "a", encoding="utf-8") as f:
        f.write("one more line\n")


def _same_text_elsewhere(folder):
    trained(folder)
    shutil.copy(folder / "corpus.txt", folder / "copy.txt")


case("resume-no-data", K, "train --resume (no --data: the run's own file, never the built-in corpus)",
     cli([*RESUME, "--max-iters", "12"], with_run(), show=("corpus",), disk=lambda f: ckpt_state(f)),
     code=0, says=("corpus <dir>/corpus.txt",), not_says=("pydoc-topics",),
     disk="checkpoint continued to step 12 on <dir>/corpus.txt")
case("resume-data-moved", K, "train --resume after the data file was moved away",
     cli([*RESUME, "--max-iters", "20"], with_run(_moved_data)),
     says=("cannot read text file '<dir>/corpus.txt': no such file", "pass --data with the text the run trained on"))
case("resume-data-changed", K, "train --resume after the data file was edited",
     cli([*RESUME, "--max-iters", "20"], with_run(_changed_data)),
     says=("the data file <dir>/corpus.txt has changed since this checkpoint was trained on it",))
case("resume-other-data", K, "train --resume --data other.txt (another text)",
     cli([*RESUME, "--data", "other.txt"], with_run(lambda r: corpus(r.parent, "other.txt", "a b c d e f g h " * 50))),
     says=("--data other.txt is not the text this run trained on",))
case("resume-same-text-elsewhere", K, "train --resume --data copy.txt (the same text at another path)",
     cli([*RESUME, "--data", "copy.txt", "--max-iters", "15"], _same_text_elsewhere, show=("--resume:",),
         disk=lambda f: ckpt_state(f)),
     code=0, says=("--data copy.txt holds the same text as the run's <dir>/corpus.txt",),
     disk="checkpoint continued to step 15 on <dir>/copy.txt")
for flag, value, old in (("--tokenizer", "bpe", "char"), ("--lr", "0.01", "0.001"), ("--batch-size", "8", "4"),
                         ("--seed", "7", "1337"), ("--block-size", "16", "8"), ("--dtype", "float64", "float32"),
                         ("--weight-decay", "0.05", "0.1"), ("--lr-decay-iters", "100", "3000")):
    extra = ["--vocab-size", "300"] if flag == "--tokenizer" else []
    case(f"resume-changed{flag}", K, f"train --resume {flag} {value}",
         cli([*RESUME, flag, value, *extra], with_run()),
         says=(f"--resume: {flag} {value} differs from the checkpoint's {old}", "only --max-iters, --eval-interval"))
case("resume-preset", K, "train --resume --preset cpu",
     cli([*RESUME, "--preset", "cpu"], with_run()),
     says=("--preset cpu sets --n-layer 4, which differs from the checkpoint's 1",))
case("resume-allowed", K, "train --resume --max-iters 15 --eval-interval 3 --eval-iters 2 (the changes allowed)",
     cli([*RESUME, "--max-iters", "15", "--eval-interval", "3", "--eval-iters", "2"], with_run(), show=("--resume:",),
         disk=lambda f: ckpt_state(f)),
     code=0, says=("--resume: --max-iters 15 (the run had 10)", "--resume: --eval-interval 3 (the run had 5)",
                   "--resume: --eval-iters 2 (the run had 1)"), disk="checkpoint continued to step 15 on <dir>/corpus.txt")
case("resume-grad-accum", K, "train --resume --max-iters 12 --grad-accum-steps 2 (the same global batch in 2 "
                            "micro-batches: allowed, as is another number of processes)",
     cli([*RESUME, "--max-iters", "12", "--grad-accum-steps", "2"], with_run(), show=("--resume:",),
         disk=lambda f: ckpt_state(f)),
     code=0, says=("--resume: --grad-accum-steps 2 (the run had 1)",),
     disk="checkpoint continued to step 12 on <dir>/corpus.txt")
case("resume-grad-accum-not-dividing", K, "train --resume --grad-accum-steps 3 (the run's --batch-size is 4)",
     cli([*RESUME, "--grad-accum-steps", "3"], with_run()),
     says=("--batch-size 4 is not divisible by --grad-accum-steps 3",))
case("resume-bit-for-bit", K, "train 10 steps, --resume to 20, against 20 steps in one go",
     _resume_bit_for_bit, code=0, says=("--resume: --max-iters 20 (the run had 10)",),
     disk="loss.csv identical to an uninterrupted run's")
case("resume-and-force", K, "train --resume --force", cli([*RESUME, "--force"], with_run()),
     says=("--resume and --force contradict each other",))
case("resume-nothing", K, "train --resume into an empty folder", cli(RESUME),
     says=("--resume: no checkpoint in run",))
case("resume-weights-only", K, "train --resume from a checkpoint without optimizer state",
     cli(RESUME, with_run(lambda r: edit_meta(r, lambda m: m.pop("optimizer")))),
     says=("has no 'optimizer': it is not a training checkpoint",))
case("resume-bad-saved-config", K, "train --resume, meta.json's train_config has lr \"abc\"",
     cli(RESUME, with_run(lambda r: edit_meta(r, lambda m: m["train_config"].update(lr="abc")))),
     says=("the checkpoint's run configuration is invalid: --lr must be a finite number > 0, got 'abc'",))
case("resume-unknown-saved-option", K, "train --resume, meta.json's train_config has an unknown option",
     cli(RESUME, with_run(lambda r: edit_meta(r, lambda m: m["train_config"].update(turbo=True)))),
     says=("has option 'turbo', which this version of tinygrad_lm does not know",))
case("overwrite-refused", K, "train into a folder holding a checkpoint (no --resume, no --force)",
     cli(["train", "--data", "corpus.txt", "--out-dir", "run", *T], with_run()),
     says=("--out-dir run already holds a checkpoint (step 10", "pass --resume to continue it or --force"))

# 3 ------------------------------------------------------------ concurrent runs
K = "3. Concurrent runs"


def _second_run(extra):
    def run(folder):
        corpus(folder)
        first = subprocess.Popen(train_cmd("--data", "corpus.txt", "--out-dir", "run", "--max-iters", "100000",
                                           *T[:-2], "--eval-interval", "20", "--sample-tokens", "0"),
                                 cwd=folder, env=sub_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            if not wait_for(lambda: (folder / "run" / "ckpt").is_dir(), proc=first):
                return Outcome(-1, "the first run did not start: " + first.communicate()[1][-300:], "")
            code, _, err = run_cli(folder, ["train", "--data", "corpus.txt", "--out-dir", "run", *extra, *T])
            err = err.strip().replace(f"pid {first.pid}", "pid <holder>")
        finally:
            first.send_signal(signal.SIGTERM)
            out, _ = first.communicate(timeout=60)
        from tinygrad_lm.checkpoint import load_model
        step = load_model(folder / "run")[2]["step"]
        disk = (f"the first run went on, saved on SIGTERM (exit {first.returncode}) and its checkpoint loads"
                if first.returncode == 143 and step > 0 else f"first run: exit {first.returncode}, step {step}")
        return Outcome(code, err, disk)
    return run


def _after_kill_9(folder):
    corpus(folder)
    first = subprocess.Popen(train_cmd("--data", "corpus.txt", "--out-dir", "run", "--max-iters", "100000",
                                       *T[:-2], "--eval-interval", "20", "--sample-tokens", "0"),
                             cwd=folder, env=sub_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: (folder / "run" / "ckpt").is_dir(), proc=first)
    first.kill()
    first.wait()
    stale = (folder / "run" / "train.lock").exists()
    code, out, err = run_cli(folder, ["train", "--out-dir", "run", "--resume", "--max-iters", "40", "--no-progress"])
    shown = " / ".join(l for l in out.splitlines() if l.startswith("model:"))
    return Outcome(code, err.strip() or re.sub(r"resuming at step \d+", "resuming at step <n>", shown),
                   ("a stale train.lock (its holder killed) was taken over; " if stale else "")
                   + f"lock removed at the end: {not (folder / 'run' / 'train.lock').exists()}")


case("second-run", K, "a second train into the --out-dir of a running one",
     _second_run([]), says=("--out-dir run is in use by another tinygrad-lm run (pid <holder>)",),
     disk="the first run went on, saved on SIGTERM (exit 143) and its checkpoint loads")
case("second-run-force", K, "a second train --force into the --out-dir of a running one",
     _second_run(["--force"]), says=("is in use by another tinygrad-lm run (pid <holder>)",),
     disk="the first run went on, saved on SIGTERM (exit 143) and its checkpoint loads")
def _second_dpo(folder):
    trained(folder)
    pairs_file(folder)
    first = subprocess.Popen(dpo_cmd("--max-iters", "100000", "--eval-interval", "20"), cwd=folder, env=sub_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if not wait_for(lambda: (folder / "dpo" / "ckpt").is_dir(), proc=first):
            return Outcome(-1, "the first run did not start: " + first.communicate()[1][-300:], "")
        code, _, err = run_cli(folder, ["dpo", *DPO_RUN, "--force"])
        err = err.strip().replace(f"pid {first.pid}", "pid <holder>")
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    from tinygrad_lm.checkpoint import load_model
    step = load_model(folder / "dpo")[2]["step"]
    disk = (f"the first run went on, saved on SIGTERM (exit {first.returncode}) and its checkpoint loads"
            if first.returncode == 143 and step > 0 else f"first run: exit {first.returncode}, step {step}")
    return Outcome(code, err, disk)


case("second-dpo", K, "a second dpo --force into the --out-dir of a running one", _second_dpo,
     says=("--out-dir dpo is in use by another tinygrad-lm run (pid <holder>)",),
     disk="the first run went on, saved on SIGTERM (exit 143) and its checkpoint loads")
case("after-kill-9", K, "train --resume after the previous run was killed with kill -9",
     _after_kill_9, code=0, says=("resuming at step",),
     disk="a stale train.lock (its holder killed) was taken over; lock removed at the end: True")

# 4 ------------------------------------------------------------ special and huge files
K = "4. Special and huge files"
for name, make, kind in (("fifo", lambda f: fifo(f / "data.txt"), "it is a FIFO (named pipe), not a regular file"),
                         ("sparse", lambda f: sparse(f / "data.txt"), "(50.0 GiB) needs about 1000.0 GiB of memory"),
                         ("dir", lambda f: (f / "data.txt").mkdir(), "it is a directory")):
    what = {"fifo": "a FIFO", "sparse": "a sparse 50 GB file", "dir": "a directory"}[name]
    case(f"data-{name}", K, f"train --data data.txt, {what}",
         cli(["train", "--data", "data.txt", "--out-dir", "run", *T], make), says=("'data.txt'", kind))
case("data-dev-zero", K, "train --data /dev/zero", cli(["train", "--data", "/dev/zero", "--out-dir", "run", *T]),
     says=("cannot read text file '/dev/zero': it is a character device, not a regular file",))
case("eval-data-fifo", K, "eval --data data.txt, a FIFO",
     cli(["eval", "--out-dir", "run", "--data", "data.txt"], with_run(lambda r: fifo(r.parent / "data.txt"))),
     says=("'data.txt': it is a FIFO",))
case("ngram-data-sparse", K, "ngram --data data.txt, a sparse 50 GB file",
     cli(["ngram", "--data", "data.txt"], lambda f: sparse(f / "data.txt")), says=("(50.0 GiB) needs about",))
for fname in ("model.safetensors", "optimizer.safetensors", "meta.json"):
    cmd = RESUME if fname == "optimizer.safetensors" else SAMPLE
    label = "train --resume" if fname == "optimizer.safetensors" else "sample"
    case(f"ckpt-fifo-{fname}", K, f"{label}: ckpt/{fname} is a FIFO",
         cli(cmd, with_run(lambda r, n=fname: fifo(r / "ckpt" / n))),
         says=(f"run/ckpt/{fname} is a FIFO (named pipe), not a regular file",))
    case(f"ckpt-sparse-{fname}", K, f"{label}: ckpt/{fname} is a sparse 50 GB file",
         cli(cmd, with_run(lambda r, n=fname: sparse(r / "ckpt" / n))),
         says=(f"run/ckpt/{fname} is 50.0 GiB",))
case("ckpt-dev-zero", K, "sample: ckpt/model.safetensors is a symlink to /dev/zero",
     cli(SAMPLE, with_run(lambda r: ((r / "ckpt" / "model.safetensors").unlink(),
                                     os.symlink("/dev/zero", r / "ckpt" / "model.safetensors")))),
     says=("model.safetensors is a character device, not a regular file",))


def _api_tokenizer(make):
    def run(folder):
        from tinygrad_lm.data import TokenizerError, load_tokenizer
        make(folder / "tok.json")
        before = snapshot(folder)
        try:
            load_tokenizer(folder / "tok.json")
            return Outcome(0, "", compare(before, snapshot(folder), folder))
        except TokenizerError as e:
            return Outcome(2, str(e).replace(str(folder), "<dir>"), compare(before, snapshot(folder), folder))
    return run


case("tokenizer-fifo", K, "python: load_tokenizer('tok.json'), a FIFO", _api_tokenizer(fifo),
     says=("tok.json': it is a FIFO (named pipe), not a regular file",))
case("tokenizer-sparse", K, "python: load_tokenizer('tok.json'), a sparse 50 GB file", _api_tokenizer(sparse),
     says=("it is 53,687,091,200 bytes, more than the 67,108,864 a tokenizer file may be",))

# 5 ------------------------------------------------------------ resource bombs
K = "5. Resource bombs"
for flag, value in (("--n-layer", "1000000000"), ("--n-embd", "1000000"), ("--block-size", "1000000000000"),
                    ("--batch-size", "1000000000")):
    extra = ["--n-head", "1"] if flag == "--n-embd" else []
    case(f"train{flag}", K, f"train {flag} {value}",
         cli(["train", "--data", "corpus.txt", "--out-dir", "run", *T, *extra, flag, value], corpus),
         says=(f"{flag} {value} needs about", "of memory", "available"))
case("train--vocab-size", K, "train --tokenizer bpe --vocab-size 1000000000000",
     cli(["train", "--data", "corpus.txt", "--out-dir", "run", *T, "--tokenizer", "bpe", "--vocab-size", "1000000000000"],
         corpus), says=("--vocab-size 1000000000000 needs about",))
for flag, value, extra in (("--max-new-tokens", "1000000000000", []), ("--num-samples", "1000000000", []),
                           ("--beam-width", "1000000000", ["--strategy", "beam"])):
    case(f"sample{flag}", K, f"sample {flag} {value}" + (" --strategy beam" if extra else ""),
         cli(["sample", "--out-dir", "run", "--prompt", "the ", flag, value, *extra], with_run()),
         says=(f"{flag} {value} needs about", "of memory"))
case("sample--show-probs", K, "sample --show-probs 1000000 (more than the vocabulary)",
     cli([*SAMPLE, "--show-probs", "1000000"], with_run()),
     says=("--show-probs must be at most the vocabulary size (14), got 1000000",))
# each far beyond any machine's memory (TiB), so every machine refuses them the same way
for key, value in (("n_layer", 10**9), ("n_embd", 10**6), ("block_size", 10**12), ("vocab_size", 10**12)):
    case(f"meta-{key}", K, f"sample, meta.json's config has {key} {value}",
         cli(SAMPLE, with_run(config_edit(**{key: value, **({"n_head": 1} if key == "n_embd" else {})}))),
         says=(f"meta.json: meta.json's {key} {value} needs about", "of memory"))
case("meta-n-layer-resume", K, "train --resume, meta.json's config has n_layer 1000000000",
     cli(RESUME, with_run(config_edit(n_layer=10**9))),
     says=("the checkpoint's n_layer 1000000000 needs about", "of memory"))
case("meta-huge-int", K, "sample, meta.json's config has a 5000-digit n_layer",
     cli(SAMPLE, with_run(lambda r: meta_path(r).write_text(
         meta_path(r).read_text().replace('"n_layer": 1', '"n_layer": 1' + "0" * 5000, 1)))),
     says=("meta.json is unreadable or corrupted", "ValueError"))
case("eval-huge-batch", K, "eval --batch-size 1000000000 (a batch holds at most the data's windows: runs)",
     cli(["eval", "--out-dir", "run", "--batch-size", "1000000000"], with_run(), show=numbers_hidden),
     code=0, says=("(val split)", "perplexity"))
case("ngram-huge-n", K, "ngram --n 1000000 on a 1,920-character text",
     cli(["ngram", "--data", "corpus.txt", "--n", "1000000"], corpus),
     says=("an order-1000000 model needs at least 1000000",))

# 6 ------------------------------------------------------------ checkpoint corruption
K = "6. Checkpoint corruption"
W = "transformer.ln_f.weight"


def _overlap(h):
    """wpe's bytes start 4 bytes into wte's."""
    start = h["transformer.wte.weight"]["data_offsets"][0] + 4
    a, b = h["transformer.wpe.weight"]["data_offsets"]
    h["transformer.wpe.weight"]["data_offsets"] = [start, start + b - a]


def _gap(h):
    a, b = h[W]["data_offsets"]
    h[W]["data_offsets"] = [a + 4, b + 4]


CORRUPTIONS = [
    ("truncated", "model.safetensors cut in half", st_rewrite(raw=lambda b: b[:len(b) // 2]),
     ("model.safetensors is truncated or corrupted",)),
    ("garbage-header", "model.safetensors header is not JSON", st_rewrite(raw=lambda b: b[:8] + b"\xff" * 40 + b[48:]),
     ("model.safetensors is truncated or corrupted", "Error while deserializing header")),
    ("header-too-long", "header length field says 10**12 bytes", st_rewrite(raw=lambda b: struct.pack("<Q", 10**12) + b[8:]),
     ("truncated or corrupted", "header too large")),
    ("overlap", "two tensors over overlapping bytes", st_rewrite(header=_overlap),
     ("truncated or corrupted",)),
    ("gap", "a gap between tensors (offsets moved by 4)", st_rewrite(header=_gap), ("truncated or corrupted",)),
    ("reversed-offsets", "data_offsets [end, start]",
     st_rewrite(header=lambda h: h[W].update(data_offsets=h[W]["data_offsets"][::-1])),
     ("invalid offset for tensor `transformer.ln_f.weight`",)),
    ("negative-dim", "a negative dimension", st_rewrite(header=lambda h: h[W].update(shape=[-8])),
     ("invalid value: integer `-8`",)),
    ("shape-bytes", "shape and byte count disagree", st_rewrite(header=lambda h: h[W].update(shape=[9])),
     ("truncated or corrupted",)),
    ("metadata-not-map", "__metadata__ is a list", st_rewrite(header=lambda h: h.update(__metadata__=["step"])),
     ("expected a map",)),
    ("metadata-value", "__metadata__ value is a number", st_rewrite(header=lambda h: h.update(__metadata__={"step": 10})),
     ("expected a string",)),
    ("unknown-dtype", "dtype Q7", st_rewrite(header=lambda h: h[W].update(dtype="Q7")), ("truncated or corrupted",)),
    ("bf16", "dtype BF16 (a real dtype tinygrad_lm does not read)",
     st_rewrite(header=lambda h: h[W].update(dtype="BF16", shape=[16])),
     ("tensor 'transformer.ln_f.weight' has dtype BF16, which tinygrad_lm does not read",)),
    ("wrong-shape", "a tensor of another shape than the config's",
     arrays_edit(lambda a: a.update({"transformer.wpe.weight": np.zeros((5, 8), np.float32)})),
     ("tensor 'transformer.wpe.weight' has shape (5, 8); the config in meta.json needs (8, 8)",)),
    ("missing-tensor", "a tensor missing", arrays_edit(lambda a: a.pop("transformer.h.0.mlp.c_fc.weight")),
     ("tensor 'transformer.h.0.mlp.c_fc.weight' is missing",)),
    ("extra-tensor", "an extra tensor", arrays_edit(lambda a: a.update({"transformer.h.1.ln_1.weight": np.ones(8, np.float32)})),
     ("unexpected tensor 'transformer.h.1.ln_1.weight'",)),
    ("wrong-dtype", "a float64 tensor in a float32 model",
     arrays_edit(lambda a: a.update({W: a[W].astype(np.float64)})), ("'transformer.ln_f.weight' is float64",)),
    ("untied", "lm_head.weight differs from the tied wte",
     arrays_edit(lambda a: a.update({"lm_head.weight": a["lm_head.weight"] + 1})), ("differ, but they are one tied weight",)),
    ("inf-weight", "an inf weight", arrays_edit(lambda a: a[W].__setitem__(0, np.inf)), ("holds 1 non-finite value",)),
    ("mixed-steps", "model.safetensors from another step", lambda r: _restep(r),
     ("inconsistent: files from different steps",)),
    ("meta-not-json", "meta.json is not JSON", lambda r: meta_path(r).write_text("{not json"),
     ("meta.json is unreadable or corrupted",)),
    ("meta-not-object", "meta.json is a JSON list", lambda r: meta_path(r).write_text("[1, 2]"),
     ("meta.json is corrupted (no model config)",)),
    ("meta-nested", "meta.json nested 100,000 deep", lambda r: meta_path(r).write_text("[" * 100000 + "]" * 100000),
     ("meta.json is unreadable or corrupted: RecursionError",)),
    ("config-negative", "config n_layer -1", config_edit(n_layer=-1), ("'n_layer' must be a positive integer, got -1",)),
    ("config-string", "config block_size \"8\"", config_edit(block_size="8"), ("'block_size' must be a positive integer",)),
    ("config-nan", "config dropout NaN", config_edit(dropout=float("nan")), ("'dropout' must be a number in [0, 1)",)),
    ("config-unknown", "config has an unknown key", config_edit(colour=1), ("unknown key 'colour' in config",)),
    ("config-missing", "config without n_embd", lambda r: edit_meta(r, lambda m: m["config"].pop("n_embd")),
     ("config has no 'n_embd'",)),
    ("config-mismatch", "config n_embd 16, weights of 8", config_edit(n_embd=16), ("has shape", "needs")),
    ("dtype-unknown", "meta.json dtype float8", lambda r: edit_meta(r, lambda m: m.update(dtype="float8")),
     ("dtype must be one of float32, float64, got 'float8'",)),
    ("tokenizer-vocab", "tokenizer of 3 characters for 14 embedding rows",
     lambda r: edit_meta(r, lambda m: m.update(tokenizer={"type": "char", "version": 1, "chars": "abc"})),
     ("the tokenizer has 3 tokens but the model's vocab_size is 14",)),
    ("tokenizer-type", "tokenizer of an unknown type", lambda r: edit_meta(r, lambda m: m.update(tokenizer={"type": "morse"})),
     ("bad tokenizer: unknown tokenizer type 'morse'",)),
]


def _restep(run):
    from tinygrad_lm.checkpoint import load_safetensors, save_safetensors
    arrays, md = load_safetensors(run / "ckpt" / "model.safetensors")
    save_safetensors(run / "ckpt" / "model.safetensors", arrays, {**md, "step": "7"})


for cid, what, change, says in CORRUPTIONS:
    case(f"corrupt-{cid}", K, f"sample: {what}", cli(SAMPLE, with_run(change)), says=says)
case("corrupt-resume", K, "train --resume: meta.json is not JSON",
     cli(RESUME, with_run(lambda r: meta_path(r).write_text("{not json"))), says=("meta.json is unreadable",))
case("corrupt-eval", K, "eval: model.safetensors cut in half",
     cli(["eval", "--out-dir", "run"], with_run(st_rewrite(raw=lambda b: b[:len(b) // 2]))),
     says=("model.safetensors is truncated or corrupted",))


def _crash_between_renames(run):
    os.replace(run / "ckpt", run / "ckpt.old")
    os.makedirs(run / "ckpt.tmp")


case("crash-between-renames", K, "sample after a crash between the folder renames (ckpt.old + partial ckpt.tmp)",
     cli(SAMPLE, with_run(_crash_between_renames), show=samples_printed), code=0, says=("total log-probability",))

# 7 ------------------------------------------------------------ untrusted split pattern
K = "7. Untrusted split pattern"


def _timed(run):
    def timed(folder):
        t = time.perf_counter()
        out = run(folder)
        out.disk += f"; answered in {'under' if time.perf_counter() - t < 2 else 'OVER'} 2 s"
        return out
    return timed


case("regex-redos", K, "sample, BPE tokenizer pattern (?:a+)+b in meta.json, prompt of 40 a's",
     _timed(cli(["sample", "--out-dir", "run", "--prompt", "a" * 40 + "!", "--max-new-tokens", "2"],
                with_run(lambda r: edit_meta(r, lambda m: m["tokenizer"].update(pattern="(?:a+)+b")), "bpe"))),
     says=("BPE tokenizer 'pattern' must be one of 'gpt2-ascii' or null", "never compiled from a file",
           "got '(?:a+)+b'"), disk="unchanged; answered in under 2 s")


def _legacy_pattern(run):
    from tinygrad_lm.data import SPLIT_PATTERN
    edit_meta(run, lambda m: m["tokenizer"].update(pattern=SPLIT_PATTERN))


case("regex-legacy", K, "sample, meta.json holds the pattern's text (as written before names)",
     cli(SAMPLE, with_run(_legacy_pattern, "bpe"), show=samples_printed), code=0, says=("total log-probability",))

# 8 ------------------------------------------------------------ temporary files, symlinks, full disk, kill -9
K = "8. Writes: symlinks, full disk, kill -9"


def _planted(folder):
    corpus(folder)
    victim = folder / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("precious")
    run = folder / "run"
    run.mkdir()
    for name in ("loss.csv.tmp", "loss.png.tmp", "meta.json.tmp", ".loss.csv.tmp"):
        os.symlink(victim / "precious.txt", run / name)
    os.symlink(victim, run / "ckpt.tmp")
    os.symlink(victim, run / "ckpt.old")
    before = snapshot(victim)
    code, out, err = run_cli(folder, ["train", "--data", "corpus.txt", "--out-dir", "run", "--max-iters", "10", *T])
    ok = snapshot(victim) == before and (victim / "precious.txt").read_text() == "precious"
    return Outcome(code, err.strip(), "the symlinks' targets unchanged" if ok else "A SYMLINK TARGET CHANGED")


case("symlinks", K, "train into a folder with planted symlinks loss.csv.tmp, .loss.csv.tmp, ckpt.tmp, ckpt.old "
                    "(pointing at a victim file and folder)", _planted, code=0, disk="the symlinks' targets unchanged")


def _namespace_prefix():
    """How to run a command in a private mount namespace here, or None."""
    for prefix in (["unshare", "-rm"], ["unshare", "-m"]):
        try:
            if subprocess.run(prefix + ["true"], capture_output=True, timeout=10).returncode == 0:
                return prefix
        except (OSError, subprocess.TimeoutExpired):
            pass
    return None


FULL_DISK = r"""
import json, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from reliability_cases import run_cli, T, corpus
d = Path(sys.argv[1])
corpus(d)
first = run_cli(d, ["train", "--data", "corpus.txt", "--out-dir", "run", "--max-iters", "5", *T])
assert first[0] == 0, first
fd = os.open(d / "filler", os.O_WRONLY | os.O_CREAT)   # fill the disk, then free 6 KB
try:
    while True:
        os.write(fd, b"x" * 1024)
except OSError:
    pass
os.close(fd)
os.truncate(d / "filler", os.path.getsize(d / "filler") - 6 * 1024)
code, out, err = run_cli(d, ["train", "--out-dir", "run", "--resume", "--max-iters", "10", "--no-progress"])
from tinygrad_lm.checkpoint import load_model
step = load_model(d / "run")[2]["step"]
left = sorted(os.listdir(d / "run"))
print(json.dumps({"code": code, "err": err.strip(), "step": step, "left": left}))
"""


def _full_disk(folder):
    prefix = _namespace_prefix()
    if prefix is None:
        return Outcome(None, "mounting a tmpfs is not allowed here")
    mnt = folder / "mnt"
    mnt.mkdir()
    script = folder / "full_disk.py"
    script.write_text(FULL_DISK)
    cmd = prefix + ["sh", "-c", f'mount -t tmpfs -o size=192k tmpfs "{mnt}" && exec "{sys.executable}" "{script}" '
                                f'"{mnt}" "{Path(__file__).parent}"']
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=sub_env())
    if r.returncode != 0 and "mount" in r.stderr and not r.stdout:
        return Outcome(None, "mounting a tmpfs is not allowed here: " + r.stderr.strip()[-200:])
    res = json.loads(r.stdout.strip().splitlines()[-1])
    err = res["err"].replace(str(mnt), "<dir>")
    disk = f"checkpoint of step {res['step']} kept and loads; left in the folder: {', '.join(res['left'])}"
    return Outcome(res["code"], err, disk)


case("full-disk", K, "train --resume on a full disk (a 192 KB tmpfs, filled up): the save fails",
     _full_disk, says=("cannot save a checkpoint in run: No space left on device (the previous checkpoint is kept)",),
     disk="checkpoint of step 5 kept and loads; left in the folder: ckpt, loss.csv")

KILL_SAVE = r"""
import sys
sys.path.insert(0, sys.argv[2])
import numpy as np
from tinygrad_lm.checkpoint import save_checkpoint
from tinygrad_lm.checkpoint import CheckpointError, load_checkpoint
try:
    step = load_checkpoint(sys.argv[1])[2]["step"]   # go on from the survivor of the last kill
except CheckpointError:
    step = 0
print("ready", flush=True)
while True:
    step += 1
    w = np.full((64, 64), step, np.float32)
    save_checkpoint(sys.argv[1], {"w": w}, {"m": w * 2}, {"config": {}, "step": step})
"""


def _kill_9_saves(folder, rounds=5):
    """kill -9 a process that saves checkpoints in a loop, at random moments, `rounds` times;
    after each kill the checkpoint must load and be consistent (w == step, m == 2 step)."""
    from tinygrad_lm.checkpoint import checkpoint_dir, load_checkpoint
    script = folder / "saver.py"
    script.write_text(KILL_SAVE)
    rng = np.random.default_rng(0)
    loaded, steps = 0, []
    for _ in range(rounds):
        p = subprocess.Popen([sys.executable, str(script), str(folder / "run"), str(ROOT)], env=sub_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        p.stdout.readline()  # "ready": imported, saving from now on
        wait_for(lambda: checkpoint_dir(folder / "run") is not None, proc=p)  # the first round's first save
        time.sleep(float(rng.uniform(0.02, 0.2)))
        p.kill()
        p.wait()
        m, o, meta = load_checkpoint(folder / "run")
        if (m["w"] == meta["step"]).all() and (o["m"] == 2 * meta["step"]).all():
            loaded += 1
            steps.append(meta["step"])
    return Outcome(0, "", f"{loaded} of {rounds} kills left a loadable, consistent checkpoint"
                          + (" (steps seen increase)" if steps == sorted(steps) and len(set(steps)) > 1 else ""))


case("kill-9-saves", K, "kill -9 a process saving checkpoints in a loop, at 5 random moments",
     _kill_9_saves, code=0, disk="5 of 5 kills left a loadable, consistent checkpoint (steps seen increase)")


def _kill_9_train(folder, rounds=3):
    """kill -9 `train` (a checkpoint every step) at random moments; each time the run resumes."""
    from tinygrad_lm.checkpoint import CheckpointError, load_model, read_meta

    def step():
        try:
            return read_meta(folder / "run")[1]["step"]
        except CheckpointError:
            return -1
    corpus(folder)
    rng = np.random.default_rng(1)
    ok = 0
    for i in range(rounds):
        last = step()
        args = (["--out-dir", "run", "--resume", "--max-iters", "100000", "--no-progress"] if i else
                ["--data", "corpus.txt", "--out-dir", "run", "--max-iters", "100000", *T[:-2], "--eval-interval", "1"])
        p = subprocess.Popen(train_cmd(*args), cwd=folder, env=sub_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        wait_for(lambda: step() > last, proc=p)  # saving (every step): from now on a kill hits one sooner or later
        time.sleep(float(rng.uniform(0.05, 0.3)))
        p.kill()
        p.wait()
        model, tok, meta = load_model(folder / "run")
        ok += meta["step"] > last
    return Outcome(0, "", f"{ok} of {rounds} kills left a checkpoint that loads and resumes, further on each time")


case("kill-9-train", K, "kill -9 train (a checkpoint every step) 3 times, resuming after each",
     _kill_9_train, code=0, disk="3 of 3 kills left a checkpoint that loads and resumes, further on each time")

# 9 ------------------------------------------------------------ flags
K = "9. Flags"


def bad_values(r) -> list[str]:
    """Values just outside `r` (a ranges.Range), and NaN and inf for floats."""
    vals = []
    if r.lo is not None:
        vals.append(str(r.lo - (0 if r.lo_open else 1)) if r.kind is int else f"{r.lo - (0 if r.lo_open else 1):g}")
    if r.hi is not None:
        vals.append(str(r.hi + (0 if r.hi_open else 1)) if r.kind is int else f"{r.hi + (0 if r.hi_open else 1):g}")
    if r.kind is float:
        vals += ["nan", "inf"]
    return vals


def _flag_case(command, dest, r):
    from tinygrad_lm.ranges import flag_name

    def run(folder):
        codes, msgs = [], []
        for v in bad_values(r):
            argv = [command] + ([flag_name(dest), "2", v] if dest == "n" else [flag_name(dest), v])
            code, _, err = run_cli(folder, argv)
            codes.append(code)
            msgs.append(err.strip())
        bad = [m for m in msgs if f"{flag_name(dest)} must be {r.describe()}" not in m or len(m.splitlines()) != 1]
        msg = msgs[0] if not bad else "UNEXPECTED: " + bad[0]
        return Outcome(max(codes) if min(codes) == max(codes) else -1, msg, "unchanged")
    return run


def _flag_cases():
    from tinygrad_lm.ranges import FLAG_RANGES, flag_name
    for command, table in FLAG_RANGES.items():
        for dest, r in table.items():
            case(f"flag-{command}-{dest}", K, f"{command} {flag_name(dest)} " + ", ".join(bad_values(r)),
                 _flag_case(command, dest, r), says=(f"{flag_name(dest)} must be {r.describe()}",))


_flag_cases()
case("flag-not-a-number", K, "train --n-layer abc", cli(["train", "--n-layer", "abc"]),
     says=("argument --n-layer: invalid int value: 'abc'",))
# the data-parallel flags together with --batch-size (the global batch): refused before any rank starts
case("nproc-more-than-batch", K, "train --batch-size 4 --nproc 5",
     cli(["train", "--data", "corpus.txt", "--out-dir", "run", *T, "--nproc", "5"], corpus),
     says=("5 ranks (--nproc or mpiexec -n) are more than --batch-size 4 (the global batch)",))
case("nproc-batch-not-divisible", K, "train --batch-size 6 --grad-accum-steps 2 --nproc 2",
     cli(["train", "--data", "corpus.txt", "--out-dir", "run", *T, "--batch-size", "6", "--grad-accum-steps", "2",
          "--nproc", "2"], corpus),
     says=("--batch-size 6 (the global batch) is not divisible by 2 rank(s) x --grad-accum-steps 2 = 4",))
case("grad-accum-not-divisible", K, "train --batch-size 6 --grad-accum-steps 4",
     cli(["train", "--data", "corpus.txt", "--out-dir", "run", *T, "--batch-size", "6", "--grad-accum-steps", "4"],
         corpus),
     says=("--batch-size 6 is not divisible by --grad-accum-steps 4",))

# 10 ----------------------------------------------------------- paths
K = "10. Paths in checkpoints"


def _from_elsewhere(relative_record):
    def run(folder):
        trained(folder)
        if relative_record:  # as checkpoints recorded it before absolute paths
            edit_meta(folder / "run", lambda m: (m.pop("data"), m["train_config"].update(data="corpus.txt")))
        elsewhere = folder / "elsewhere"
        elsewhere.mkdir()
        before = snapshot(folder)
        code, out, err = run_cli(elsewhere, ["eval", "--out-dir", str(folder / "run")])
        msg = err.strip() or numbers_hidden(out)
        return Outcome(code, msg, compare(before, snapshot(folder), folder))
    return run


case("eval-from-elsewhere", K, "eval --out-dir <dir>/run from another folder (the data path is stored absolute)",
     _from_elsewhere(False), code=0, says=("<dir>/corpus.txt (val split)", "perplexity"))
case("eval-legacy-relative", K, "eval --out-dir <dir>/run from another folder, data recorded as 'corpus.txt' "
                                "(older checkpoints): resolved against the run's folder too",
     _from_elsewhere(True), code=0, disk="unchanged", says=("perplexity",))

# 11 ----------------------------------------------------------- signals
K = "11. Signals"


def _signal(sig, command="train"):
    def run(folder):
        if command == "dpo":  # DPO from a trained run: the same loop machinery, its own checkpoint
            trained(folder)
            pairs_file(folder)
            out_dir = "dpo"
            cmd = dpo_cmd("--max-iters", "100000", "--eval-interval", "100000")
        else:
            corpus(folder)
            out_dir = "run"
            cmd = train_cmd("--data", "corpus.txt", "--out-dir", "run", "--max-iters", "100000",
                            *T[:-2], "--eval-interval", "100000", "--sample-tokens", "0")
        p = subprocess.Popen(cmd, cwd=folder, env={**sub_env(), "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        first = []
        for line in p.stdout:  # "step 0: ..." is printed inside the loop, its handlers installed
            first.append(line)
            if line.startswith("step 0:"):
                break
        time.sleep(0.3)
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
        out = "".join(first) + out
        from tinygrad_lm.checkpoint import load_model
        meta = load_model(folder / out_dir)[2]
        resumed = run_cli(folder, [command, "--out-dir", out_dir, "--resume", "--max-iters", str(meta["step"] + 2),
                                   "--no-progress"])[0]
        msg = " / ".join(l for l in out.splitlines() if l.startswith("interrupted"))
        msg = re.sub(r"step \d+", "step <n>", msg)
        return Outcome(p.returncode, msg, f"checkpoint of the last finished step saved; it loads and resumes "
                                          f"(exit {resumed})")
    return run


case("sigterm", K, "SIGTERM to a running train", _signal(signal.SIGTERM), code=143,
     says=("interrupted: saved a checkpoint at step <n> in run (continue with --resume) [SIGTERM]",),
     disk="checkpoint of the last finished step saved; it loads and resumes (exit 0)")
case("sigint", K, "Ctrl-C (SIGINT) to a running train", _signal(signal.SIGINT), code=130,
     says=("interrupted: saved a checkpoint at step <n> in run (continue with --resume)",), not_says=("[SIG",),
     disk="checkpoint of the last finished step saved; it loads and resumes (exit 0)")
case("dpo-sigterm", K, "SIGTERM to a running dpo", _signal(signal.SIGTERM, "dpo"), code=143,
     says=("interrupted: saved a checkpoint at step <n> in dpo (continue with --resume) [SIGTERM]",),
     disk="checkpoint of the last finished step saved; it loads and resumes (exit 0)")
case("dpo-sigint", K, "Ctrl-C (SIGINT) to a running dpo", _signal(signal.SIGINT, "dpo"), code=130,
     says=("interrupted: saved a checkpoint at step <n> in dpo (continue with --resume)",), not_says=("[SIG",),
     disk="checkpoint of the last finished step saved; it loads and resumes (exit 0)")

# 12 ----------------------------------------------------------- fine-tuning and preference data
K = "12. Fine-tuning and preference data"
# the trained run's characters are those of TEXT; its block_size is 8
GOOD_PAIRS = [{"prompt": "the ", "chosen": "cat", "rejected": "dog"}, {"prompt": "a ", "chosen": "mat.", "rejected": "log."},
              {"prompt": "dog ", "chosen": "sat", "rejected": "sat."}, {"prompt": "on ", "chosen": "the", "rejected": "a"}]
DPO_RUN = ["--init-from", "run", "--pairs", "pairs.jsonl", "--out-dir", "dpo", "--batch-size", "2", "--max-iters", "4",
           "--eval-interval", "2", "--no-progress"]


def dpo_cmd(*args) -> list:
    return [sys.executable, "-m", "tinygrad_lm", "dpo", "--init-from", "run", "--pairs", "pairs.jsonl", "--out-dir",
            "dpo", "--batch-size", "2", "--no-progress", *map(str, args)]


def pairs_file(folder: Path, lines=None, name="pairs.jsonl") -> Path:
    """folder/pairs.jsonl: GOOD_PAIRS, or `lines` (objects are written as JSON, strings as they are)."""
    rows = GOOD_PAIRS if lines is None else lines
    p = folder / name
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return p


def with_pairs(lines=None, name="pairs.jsonl", after=None):
    """A setup: a trained run and a pairs file (then `after(folder)`)."""
    def setup(folder):
        trained(folder)
        pairs_file(folder, lines, name)
        if after is not None:
            after(folder)
    return setup


def _dpo_done(folder):
    code, out, err = run_cli(folder, ["dpo", *DPO_RUN])
    assert code == 0, err


for cid, what, lines, says in (
        ("dpo-malformed-json", "line 2 of the pairs is not valid JSON", [GOOD_PAIRS[0], '{"prompt": "the ", "chosen": "cat",'],
         ("pairs.jsonl line 2: not valid JSON (",)),
        ("dpo-not-an-object", "line 1 is a JSON array", ['["the ", "cat", "dog"]'],
         ("pairs.jsonl line 1: expected a JSON object with keys 'prompt', 'chosen', 'rejected', got an array",)),
        ("dpo-missing-key", "line 3 has no 'rejected'", [*GOOD_PAIRS[:2], {"prompt": "the ", "chosen": "cat"}],
         ("pairs.jsonl line 3: no 'rejected' key",)),
        ("dpo-not-a-string", "line 1's 'chosen' is a number", [{"prompt": "the ", "chosen": 3, "rejected": "dog"}],
         ("pairs.jsonl line 1: 'chosen' must be a string, got a number",)),
        ("dpo-empty-chosen", "line 2's 'chosen' is empty", [GOOD_PAIRS[0], {"prompt": "a ", "chosen": "", "rejected": "log"}],
         ("pairs.jsonl line 2: 'chosen' is empty",)),
        ("dpo-empty-rejected", "line 1's 'rejected' is empty", [{"prompt": "a ", "chosen": "cat", "rejected": ""}],
         ("pairs.jsonl line 1: 'rejected' is empty",)),
        ("dpo-empty-prompt", "line 1's 'prompt' is empty", [{"prompt": "", "chosen": "cat", "rejected": "dog"}],
         ("pairs.jsonl line 1: 'prompt' is empty (the first completion token needs",)),
        ("dpo-identical", "line 2's chosen and rejected are identical",
         [GOOD_PAIRS[0], {"prompt": "a ", "chosen": "cat", "rejected": "cat"}],
         ("pairs.jsonl line 2: 'chosen' and 'rejected' are identical",)),
        ("dpo-blank-file", "a pairs file of blank lines", ["", "   "], ("pairs.jsonl holds no pairs: every line is blank",)),
        ("dpo-unencodable", "line 2's 'rejected' holds a character the checkpoint's tokenizer lacks",
         [GOOD_PAIRS[0], {"prompt": "a ", "chosen": "cat", "rejected": "Z"}],
         ("pairs.jsonl line 2: 'Z' at character 0 of its 'rejected' is not in the vocabulary of the --init-from "
          "checkpoint's char tokenizer",)),
        ("dpo-answer-too-long", "line 1's 'chosen' is longer than the model's block_size 8",
         [{"prompt": "a ", "chosen": "the cat sat", "rejected": "dog"}],
         ("pairs.jsonl line 1: 'chosen' is 11 tokens, more than the block_size 8",)),
        ("dpo-one-pair", "a pairs file of one pair", GOOD_PAIRS[:1], ("holds 1 pair: too few to hold out --val-share 0.1",)),
):
    case(cid, K, f"dpo: {what}", cli(["dpo", *DPO_RUN], with_pairs(lines)), says=says)
case("dpo-empty-file", K, "dpo: an empty pairs file", cli(["dpo", *DPO_RUN], with_pairs([], after=lambda f: (
    f / "pairs.jsonl").write_bytes(b""))), says=("text file 'pairs.jsonl' is empty",))
case("dpo-pairs-missing", K, "dpo --pairs nothing.jsonl (no such file)",
     cli(["dpo", *DPO_RUN, "--pairs", "nothing.jsonl"], with_pairs()),
     says=("cannot read text file 'nothing.jsonl': no such file",))
case("dpo-no-init-flag", K, "dpo without --init-from", cli(["dpo", "--pairs", "pairs.jsonl"], with_pairs()),
     says=("--init-from is required: the checkpoint folder to start from",))
case("dpo-init-missing", K, "dpo --init-from nothing (no such folder)",
     cli(["dpo", *DPO_RUN, "--init-from", "nothing"], with_pairs()),
     says=("--init-from nothing: no such folder (give the --out-dir of a tinygrad-lm train run)",))
case("dpo-init-no-checkpoint", K, "dpo --init-from empty (a folder without a checkpoint)",
     cli(["dpo", *DPO_RUN, "--init-from", "empty"], with_pairs(after=lambda f: (f / "empty").mkdir())),
     says=("--init-from: no checkpoint in empty",))


def _not_by_train(folder):
    from tinygrad_lm.checkpoint import save_checkpoint
    save_checkpoint(folder / "other", {"w": np.zeros(3, np.float32)}, {}, {"config": {}, "step": 1})


case("dpo-init-not-train", K, "dpo --init-from other (a checkpoint folder not written by train: no tokenizer)",
     cli(["dpo", *DPO_RUN, "--init-from", "other"], with_pairs(after=_not_by_train)),
     says=("has no 'tokenizer': the checkpoint was not written by tinygrad-lm train or dpo",))
case("dpo-out-is-init", K, "dpo --out-dir run --init-from run",
     cli(["dpo", *DPO_RUN, "--out-dir", "run"], with_pairs()),
     says=("--out-dir run is the --init-from folder: dpo writes a new run into another --out-dir",))
case("dpo-overwrite-refused", K, "dpo into a folder holding a dpo checkpoint (no --resume, no --force)",
     cli(["dpo", *DPO_RUN], with_pairs(after=_dpo_done)),
     says=("--out-dir dpo already holds a checkpoint (a dpo run, step 4); pass --resume",))
case("dpo-resume-changed-beta", K, "dpo --resume --beta 0.5 (the run had 0.1)",
     cli(["dpo", "--out-dir", "dpo", "--resume", "--beta", "0.5"], with_pairs(after=_dpo_done)),
     says=("--resume: --beta 0.5 differs from the checkpoint's 0.1", "only --max-iters, --eval-interval, --device"))
case("dpo-resume-pairs-changed", K, "dpo --resume after the pairs file was edited",
     cli(["dpo", "--out-dir", "dpo", "--resume", "--max-iters", "6"],
         with_pairs(after=lambda f: (_dpo_done(f), pairs_file(f, GOOD_PAIRS[::-1])))),
     says=("--resume: the pairs file <dir>/pairs.jsonl has changed since this run trained on it",))
case("dpo-resume-a-train-run", K, "dpo --resume --out-dir run (a train run)",
     cli(["dpo", "--out-dir", "run", "--resume"], with_pairs()),
     says=("--resume: run holds a train run, not a dpo run", "continue it with tinygrad-lm train --resume"))
case("train-resume-a-dpo-run", K, "train --resume --out-dir dpo (a dpo run)",
     cli(["train", "--out-dir", "dpo", "--resume"], with_pairs(after=_dpo_done)),
     says=("--resume: dpo holds a dpo run, not a train run", "continue it with tinygrad-lm dpo --resume"))
case("dpo-prompt-cut", K, "dpo with a prompt too long for block_size 8 (cut from the left, said once)",
     cli(["dpo", *DPO_RUN], with_pairs([*GOOD_PAIRS, {"prompt": "the cat sat on ", "chosen": "the", "rejected": "a"}]),
         show=("pairs.jsonl:", "pairs "), disk=lambda f: ckpt_state_dpo(f)),
     code=0, says=("pairs.jsonl: the prompt of 1 pair (first: line 5) was cut from the left to fit block_size 8",),
     disk="a dpo checkpoint of step 4 that loads")


def ckpt_state_dpo(folder: Path) -> str:
    from tinygrad_lm.checkpoint import load_model
    return f"a dpo checkpoint of step {load_model(folder / 'dpo')[2]['step']} that loads"


FT = ["--init-from", "run", "--out-dir", "ft", "--max-iters", "2", *T]
EXAMPLES_OK = [{"prompt": "the ", "completion": "cat"}, {"prompt": "a ", "completion": "dog"}]
case("ft-unencodable", K, "train --init-from run --data new.txt holding a character the checkpoint's tokenizer lacks",
     cli(["train", *FT, "--data", "new.txt"], with_run(lambda r: corpus(r.parent, "new.txt", "the cat sat on the Mat"))),
     says=("new.txt: 'M' at line 1, column 20 (character 19) is not in the vocabulary of the --init-from "
           "checkpoint's char tokenizer",))
case("ft-shape-flag", K, "train --init-from run --n-embd 16 (the checkpoint has 8)",
     cli(["train", *FT, "--data", "corpus.txt", "--n-embd", "16"], with_run()),
     says=("--init-from run: --n-embd 16 differs from the checkpoint's 8",))
case("ft-init-missing", K, "train --init-from nothing (no such folder)",
     cli(["train", *FT, "--init-from", "nothing", "--data", "corpus.txt"], with_run()),
     says=("--init-from nothing: no such folder",))
case("ft-init-not-train", K, "train --init-from other (a checkpoint folder not written by train)",
     cli(["train", *FT, "--init-from", "other", "--data", "corpus.txt"], with_run(lambda r: _not_by_train(r.parent))),
     says=("has no 'tokenizer': the checkpoint was not written by tinygrad-lm train or dpo",))
case("ft-out-is-init", K, "train --init-from run --out-dir run",
     cli(["train", *FT, "--out-dir", "run", "--data", "corpus.txt"], with_run()),
     says=("--out-dir run is the --init-from folder",))
case("ft-loss-on-text", K, "train --loss-on completion --data corpus.txt (not JSONL examples)",
     cli(["train", "--loss-on", "completion", "--data", "corpus.txt", "--out-dir", "ft", *T], corpus),
     says=("--loss-on completion needs prompt/completion examples: --data FILE.jsonl",))
for cid, what, lines, says in (
        ("ft-jsonl-malformed", "line 3 of the examples is not valid JSON", [*EXAMPLES_OK, "{prompt: the}"],
         ("ex.jsonl line 3: not valid JSON (Expecting property name enclosed in double quotes at column 2)",)),
        ("ft-jsonl-missing-key", "line 2 has no 'completion'", [EXAMPLES_OK[0], {"prompt": "a "}],
         ("ex.jsonl line 2: no 'completion' key (each line needs 'prompt', 'completion')",)),
        ("ft-jsonl-empty-completion", "line 1's completion is empty", [{"prompt": "a ", "completion": ""}, EXAMPLES_OK[0]],
         ("ex.jsonl line 1: 'completion' is empty",)),
        ("ft-jsonl-one-example", "an examples file of one example", EXAMPLES_OK[:1],
         ("ex.jsonl holds 1 example; need at least 2",)),
):
    case(cid, K, f"train --init-from run --data ex.jsonl --loss-on completion: {what}",
         cli(["train", *FT, "--data", "ex.jsonl", "--loss-on", "completion"],
             with_run(lambda r, rows=lines: pairs_file(r.parent, rows, "ex.jsonl"))), says=says)


# ---------------------------------------------------------------- checking and showing
CLASSES = list(dict.fromkeys(c.klass for c in CASES))
BY_ID = {c.id: c for c in CASES}
assert len(BY_ID) == len(CASES), "case ids must be unique"


def cases(klass_prefix: str) -> list:
    return [c for c in CASES if c.klass.startswith(klass_prefix)]


def normalize(text: str, folder: Path) -> str:
    for f in {str(folder), os.path.realpath(folder)}:
        text = text.replace(f, "<dir>")
    text = re.sub(r"has [\d.]+ [KMGTPE]?i?B available", "has <available> available", text)
    return text


def run_case(c: Case, folder: Path) -> Outcome:
    out = c.run(folder)
    out.message = normalize(out.message, folder)
    out.disk = normalize(out.disk, folder)
    return out


def problems(c: Case, out: Outcome) -> list[str]:
    """What is wrong with an outcome against its case's expectations ([] when nothing)."""
    bad = []
    if out.code != c.code:
        bad.append(f"exit code {out.code}, expected {c.code}")
    if c.code != 0 and len(out.message.splitlines()) != 1:
        bad.append(f"not one line: {out.message!r}")
    bad += [f"message lacks {s!r}" for s in c.says if s not in out.message]
    bad += [f"message has {s!r}" for s in c.not_says if s in out.message]
    if out.disk != c.disk:
        bad.append(f"on disk: {out.disk!r}, expected {c.disk!r}")
    return bad


def stable(row_text: str) -> str:
    """A row as compared with the file: the safetensors package's own detail of a refused
    header is masked (its wording is the package's, and may change between its versions;
    the cases check the parts tinygrad_lm writes)."""
    return re.sub(r"\(Error while deserializing header: (?:(?! \|).)*\)", "(<the package's detail>)", row_text)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def row(c: Case, out: Outcome) -> str:
    code = "skipped" if out.code is None else str(out.code)
    return f"| `{c.id}` | {cell(c.what)} | {code} | {cell(out.message) or '-'} | {cell(out.disk)} |"


def doc_rows() -> dict:
    """id -> the row docs/reliability.md shows for it."""
    if not DOC.exists():
        return {}
    return {m.group(1): line for line in DOC.read_text(encoding="utf-8").splitlines()
            if (m := re.match(r"^\| `([^`]+)` \|", line))}


def check_case(c: Case, folder: Path) -> Outcome:
    """Run a case (pytest-skipped where it cannot run), assert its expectations, and that
    docs/reliability.md shows exactly this outcome."""
    import pytest
    out = run_case(c, folder)
    if out.code is None:
        pytest.skip(out.message)
    bad = problems(c, out)
    assert not bad, f"{c.id}: {bad}; message {out.message!r}; disk {out.disk!r}"
    shown = doc_rows().get(c.id)
    fresh = row(c, out)
    assert stable(shown or "") == stable(fresh), (f"docs/reliability.md shows for {c.id}:\n  {shown}\nbut the case now gets:\n  {fresh}\n"
                            f"(regenerate it: python benchmarks/reliability_table.py)")
    return out
