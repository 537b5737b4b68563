"""The prepared GPU check: one command that proves the cupy backend on a machine with an NVIDIA
GPU, in at most ~8 minutes, and writes one markdown report.

    python benchmarks/gpu_check.py --out gpu_check.md            # on the GPU machine
    python benchmarks/gpu_check.py --standin --out rehearsal.md  # rehearsal on the CPU (~1-2 min)
    python benchmarks/gpu_check.py --standin --tiny --skip suite bench   # CI's smallest form

Sections of the report:
  0. the machine: GPU name, driver, CUDA runtime, cupy, numpy, PyTorch, Python versions;
  1. the whole test suite with the cuda cases on the GPU: passed / skipped / failed, failures listed;
  2. CPU/GPU parity of a GPT: logits, loss and every parameter gradient, float32 and float64;
  3. the model-step benchmark (`tinygrad-lm bench --what model --config gpu`: nanoGPT's baby
     Shakespeare model) with TF32 off and on, against PyTorch eager in the same process when it
     is installed (PyTorch's TF32 switched with ours);
  4. `tinygrad-lm train --preset gpu --device cuda` for a bounded number of steps (ms/step,
     tokens/s), and resume exactness: 2K steps straight against K steps + `--resume` to 2K,
     every training loss and the final evaluation compared bit for bit;
  5. host syncs, copies and device operations in an unlogged and a logged training step
     (counted by running the steps on the cupy API stand-in: a property of the code, not of
     the GPU), and whether the real unlogged step synchronises (cupyx.allow_synchronize(False)).

What the GPU machine needs besides cupy and numpy: pytest and hypothesis for section 1
(tqdm optional). Without internet there, carry them as wheels from a machine that has it:

    pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
        --implementation cp -d wheels pytest hypothesis tqdm
    pip install --no-index --find-links wheels pytest hypothesis tqdm      # on the GPU machine

`--standin` runs everything on the numpy-backed cupy API stand-in (tests/cupy_standin) in
small sizes: a rehearsal of the script itself, whose report says so at the top; its timings
mean nothing. Every step has a time limit taken from what is left of --budget seconds; a step
that would not fit is skipped and the report says so.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("suite", "parity", "bench", "train", "counts")


def _data_file(given):
    if given:
        return given
    for p in (ROOT / "shared" / "data" / "tinyshakespeare.txt", ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"):
        if p.is_file():
            return str(p)
    return None   # the built-in corpus


class Check:
    def __init__(self, args):
        self.a = args
        self.t0 = time.perf_counter()
        self.lines: list[str] = []
        self.failed: list[str] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
        self.env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    # ------------------------------------------------------------ plumbing
    def left(self) -> float:
        return self.a.budget - (time.perf_counter() - self.t0)

    def py(self, *args):
        """The command line for `python ...`, through the stand-in in a rehearsal."""
        if self.a.standin:
            return [sys.executable, str(ROOT / "tests" / "cupy_standin"), *args]
        return [sys.executable, *args]

    def run(self, cmd, limit, env=None):
        limit = max(1.0, min(limit, self.left() - 5))
        t = time.perf_counter()
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env or self.env, timeout=limit)
            return r.returncode, r.stdout, r.stderr, time.perf_counter() - t
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            return 124, out, f"timed out after {limit:.0f} s", time.perf_counter() - t

    def say(self, s=""):
        self.lines.append(s)
        print(s, flush=True)

    def fail(self, what):
        what = " ".join(what.split())   # one line in the report
        self.failed.append(what)
        self.say(f"**FAILED: {what}**")

    def fits(self, name, need):
        if name in self.a.skip:
            self.say(f"_skipped (--skip {name})_")
            return False
        if self.left() < need:
            self.say(f"_skipped: {self.left():.0f} s of the budget left, this step needs about {need:.0f} s_")
            return False
        return True

    # ------------------------------------------------------------ 0. the machine
    def machine(self):
        import numpy
        if self.a.standin:
            sys.path.insert(0, str(ROOT / "tests"))
            import cupy_standin
            cupy_standin.install()
        import tinygrad_lm
        from tinygrad_lm import backend
        rows = [("python", platform.python_version()), ("numpy", numpy.__version__)]
        if not backend.cuda_available():
            self.say(f"no usable GPU: {backend._cupy_error!r}")
            raise SystemExit(2)
        cp = backend.xp_for("cuda:0")
        props = cp.cuda.runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        ver = lambda v: f"{v // 1000}.{(v % 1000) // 10}"  # noqa: E731  12040 -> 12.4
        rows += [("GPU", name), ("CUDA driver API", ver(cp.cuda.runtime.driverGetVersion())),
                 ("CUDA runtime", ver(cp.cuda.runtime.runtimeGetVersion())), ("cupy", cp.__version__)]
        smi = shutil.which("nvidia-smi")
        if smi and not self.a.standin:
            r = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True)
            rows.append(("nvidia-smi", r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout else "?"))
        try:
            import torch
            rows.append(("PyTorch", f"{torch.__version__} (CUDA {torch.version.cuda}, "
                                    f"GPU {'yes' if torch.cuda.is_available() else 'no'})"))
        except ImportError:
            rows.append(("PyTorch", "not installed"))
        rows.append(("tinygrad_lm", f"{tinygrad_lm.__file__}"))
        self.say("| | |\n|---|---|")
        for k, v in rows:
            self.say(f"| {k} | {v} |")

    # ------------------------------------------------------------ 1. the test suite
    def suite(self):
        self.say("\n## 1. The test suite with the cuda cases on " + ("the stand-in" if self.a.standin else "the GPU"))
        if not self.fits("suite", 30):
            return
        missing = [m for m in ("pytest", "hypothesis") if subprocess.run(
            [sys.executable, "-c", f"import {m}"], capture_output=True).returncode != 0]
        if missing:
            self.fail(f"the test suite needs {' and '.join(missing)}: install them (as wheels, see this script's "
                      "docstring) and run again")
            return
        targets = ["tests/test_gpu_paths.py", "tests/test_devices.py"] if self.a.standin else []
        cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", *targets]
        rc, out, err, dt = self.run(cmd, self.a.suite_limit)
        summary = [ln for ln in out.splitlines() if re.search(r"\d+ (passed|failed)", ln)]
        fails = [ln for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR"))]
        self.say(f"`python -m pytest -q {' '.join(targets)}`" + (" (a subset: the rehearsal)" if targets else "") +
                 f": **{summary[-1].strip('= ') if summary else 'no summary line'}** in {dt:.0f} s (exit {rc})")
        for ln in out.splitlines():
            if "cupy API stand-in" in ln and "cuda cases" in ln:
                self.say(f"> {ln.strip()}")
        for f in fails[:40]:
            self.say(f"- `{f}`")
        if rc != 0:
            self.fail(f"test suite exit {rc}" + (f": {err.strip()[:200]}" if rc == 124 else ""))

    # ------------------------------------------------------------ 2. parity
    def parity(self):
        self.say("\n## 2. CPU/GPU parity of a GPT (logits, loss, every parameter gradient)")
        if not self.fits("parity", 10):
            return
        import numpy as np
        import tinygrad_lm as tg
        from tinygrad_lm.models.gpt import GPT, GPTConfig
        tiny = self.a.tiny or self.a.standin
        cfg = GPTConfig(vocab_size=65, block_size=16 if tiny else 64, n_layer=2 if tiny else 4, n_head=2 if tiny else 4,
                        n_embd=32 if tiny else 128, bias=True, dropout=0.0)
        bsz = 4 if tiny else 8
        self.say(f"GPT {cfg.n_layer}x{cfg.n_head}x{cfg.n_embd}, block {cfg.block_size}, batch {bsz}; "
                 "max |GPU - CPU| / max |CPU| per quantity, worst parameter gradient named")
        self.say("\n| dtype | logits | loss | worst gradient | tolerance | |\n|---|---|---|---|---|---|")
        rng = np.random.default_rng(0)
        idx, tgt = rng.integers(0, 65, (bsz, cfg.block_size)), rng.integers(0, 65, (bsz, cfg.block_size))
        for dtype, tol in ((np.float32, 1e-4), (np.float64, 1e-10)):
            out = {}
            for dev in ("cpu", "cuda"):
                tg.manual_seed(0)
                m = GPT(cfg).to(dtype).to(dev)
                logits, loss = m(tg.tensor(idx, device=dev), tg.tensor(tgt, device=dev))
                loss.backward()
                out[dev] = (logits.detach().cpu().numpy(), float(loss.item()),
                            {n: p.grad.cpu().numpy() for n, p in m.named_parameters()})
            rel = lambda a, b: float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))  # noqa: E731
            e_log = rel(out["cuda"][0], out["cpu"][0])
            e_loss = abs(out["cuda"][1] - out["cpu"][1]) / abs(out["cpu"][1])
            grads = {n: rel(out["cuda"][2][n], g) for n, g in out["cpu"][2].items()}
            worst = max(grads, key=grads.get)
            ok = max(e_log, e_loss, grads[worst]) < tol
            self.say(f"| {np.dtype(dtype).name} | {e_log:.2e} | {e_loss:.2e} | {grads[worst]:.2e} ({worst}) | "
                     f"{tol:g} | {'ok' if ok else 'FAIL'} |")
            if not ok:
                self.fail(f"parity {np.dtype(dtype).name}")
        # does set_tf32 reach cupy's matmuls? batched (B, T, C) @ (C, D), as the GPT's Linear, and 2-D
        errs = {}
        for shape in ((4, 256, 384), (1024, 384)):
            tg.manual_seed(1)
            a, w = tg.randn(*shape, device="cuda"), tg.randn(384, 384, device="cuda")
            exact = (a.double() @ w.double()).cpu().numpy()
            for flag in (False, True):
                tg.set_tf32(flag)
                got = (a @ w).cpu().numpy()
                errs[(len(shape), flag)] = float(np.max(np.abs(got - exact)) / np.max(np.abs(exact)))
            tg.set_tf32(False)
        self.say("\nfloat32 matmul against float64, max relative error: " + "; ".join(
            f"{'batched' if nd == 3 else '2-D'} TF32 {'on' if f else 'off'} {e:.1e}" for (nd, f), e in errs.items()))
        for nd in (3, 2):
            if not errs[(nd, True)] > 10 * errs[(nd, False)]:
                self.fail(f"set_tf32(True) did not change the {'batched' if nd == 3 else '2-D'} float32 matmul")

    # ------------------------------------------------------------ 3. model-step bench, TF32 off and on
    def bench(self):
        self.say("\n## 3. Model step (`tinygrad-lm bench --what model`), TF32 off and on")
        if not self.fits("bench", 40):
            return
        config = "cpu" if (self.a.tiny or self.a.standin) else "gpu"
        self.say(f"config `{config}`" + (" (the small one: rehearsal)" if config == "cpu" else
                                         " (nanoGPT's baby Shakespeare: 6x6x384, block 256, batch 64, vocab 65)") +
                 "; ours/torch < 1 means ours is faster")
        self.say("\n| TF32 | impl | ms/step median | tokens/s | ours/this | loss at step 1 | our kernel launches/step |"
                 "\n|---|---|---|---|---|---|---|")
        for tf32 in (False, True):
            out_dir = self.tmp / f"bench_tf32_{int(tf32)}"
            code = ("import sys, tinygrad_lm\n"
                    f"tinygrad_lm.set_tf32({tf32})\n"
                    "try:\n    import torch\n"
                    f"    torch.backends.cuda.matmul.allow_tf32 = {tf32}\n    torch.backends.cudnn.allow_tf32 = {tf32}\n"
                    "except ImportError:\n    pass\n"
                    "from tinygrad_lm.cli import main\n"
                    f"sys.exit(main(['bench', '--what', 'model', '--config', '{config}', '--device', 'cuda', "
                    f"'--out-dir', {str(out_dir)!r}] + {(['--quick'] if self.a.quick_bench else [])!r}))\n")
            rc, out, err, dt = self.run(self.py("-c", code), min(self.a.bench_limit, self.left() / 2))
            path = out_dir / "model.csv"
            if rc != 0 or not path.is_file():
                self.fail(f"bench TF32 {'on' if tf32 else 'off'} (exit {rc}): {(err or out).strip()[-300:]}")
                continue
            for r in csv.DictReader(open(path)):
                if r["device"].startswith("cuda"):
                    self.say(f"| {'on' if tf32 else 'off'} | {r['impl']} | {float(r['ms_median']):.2f} | "
                             f"{float(r['tokens_per_s']):,.0f} | {r['ours_over_this'] or '-'} | {r['loss_first']} | "
                             f"{r.get('kernel_launches_per_step') or '-'} |")
            self.say(f"<!-- bench TF32 {'on' if tf32 else 'off'}: {dt:.0f} s -->")

    # ------------------------------------------------------------ 4. train, and resume exactness
    def train(self):
        self.say("\n## 4. `tinygrad-lm train --preset gpu --device cuda`, and resume exactness")
        k = self.a.train_steps
        if not self.fits("train", 30):
            return
        data = _data_file(self.a.data)
        small = ["--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "4"] \
            if (self.a.tiny or self.a.standin) else []
        base = ["-m", "tinygrad_lm", "train", "--preset", "gpu", "--device", "cuda", "--eval-iters",
                str(self.a.eval_iters), "--sample-tokens", "0", "--no-progress", *small] + (["--data", data] if data else [])
        self.say(f"data: {Path(data).name if data else 'the built-in corpus'}; K = {k} steps; "
                 f"flags: `{' '.join(base[2:])}`")
        a_dir, b_dir = self.tmp / "straight", self.tmp / "resumed"
        runs = [("straight 2K", a_dir, ["--max-iters", str(2 * k), "--eval-interval", str(k)]),
                ("first K", b_dir, ["--max-iters", str(k), "--eval-interval", str(k)]),
                ("resume to 2K", b_dir, ["--max-iters", str(2 * k), "--eval-interval", str(k), "--resume"])]
        for name, d, extra in runs:
            rc, out, err, dt = self.run(self.py(*base, "--out-dir", str(d), *extra), self.a.train_limit)
            if rc != 0:
                self.fail(f"train ({name}) exit {rc}: {(err or out).strip()[-300:]}")
                return
            done = [ln for ln in out.splitlines() if ln.startswith("done:")]
            if name == "straight 2K" and done:
                m = re.search(r"([\d,]+) tokens/s", done[0])
                tps = float(m.group(1).replace(",", "")) if m else float("nan")
                bs, bl = (4, 32) if small else (64, 256)
                self.say(f"- {2 * k} steps: **{1e3 * bs * bl / tps:.1f} ms/step, {tps:,.0f} tokens/s** (training steps "
                         f"only, first steps included; wall {dt:.0f} s with evaluations) — `{done[0]}`")

        def rows(d):
            return {r["step"]: r for r in csv.DictReader(open(d / "loss.csv"))}
        ra, rb = rows(a_dir), rows(b_dir)
        steps = [s for s in ra if k <= int(s) <= 2 * k]
        diff = [s for s in steps if (ra[s]["loss"], ra[s]["eval_val_loss"]) != (rb.get(s, {}).get("loss"),
                                                                               rb.get(s, {}).get("eval_val_loss"))]
        if diff:
            self.fail(f"resume is not exact: steps {diff[:5]} differ (straight {ra[diff[0]]} vs resumed {rb.get(diff[0])})")
        else:
            self.say(f"- resume exactness: steps {k}..{2 * k} of the resumed run equal the straight run's bit for bit "
                     f"({len(steps)} rows: training losses and the evaluation at {2 * k}): **ok**")

    # ------------------------------------------------------------ 5. syncs and launches per step
    def counts(self):
        self.say("\n## 5. Host syncs, copies and device operations per training step")
        if not self.fits("counts", 15):
            return
        counts_py = [sys.executable, str(ROOT / "tests" / "cupy_standin"), str(Path(__file__)), "--_count-step"]
        rc, out, err, _ = self.run(counts_py + (["--tiny"] if (self.a.tiny or self.a.standin) else []), 120)
        if rc != 0:
            self.fail(f"counting under the stand-in (exit {rc}): {err.strip()[-300:]}")
        else:
            for ln in out.splitlines():
                if ln.startswith("counted"):
                    self.say(ln + "\n")
                elif ln.startswith("|"):
                    self.say(ln)
                elif ln.startswith("(the training loop"):   # the table's note, a paragraph of its own
                    self.say("\n" + ln)
        if not self.a.standin:
            rc, out, err, _ = self.run([sys.executable, str(Path(__file__)), "--_sync-probe"] +
                                       (["--tiny"] if self.a.tiny else []), 120)
            self.say(out.strip() if rc == 0 else f"sync probe failed (exit {rc}): {err.strip()[-300:]}")

    # ------------------------------------------------------------ the whole check
    def main(self):
        title = "GPU check" if not self.a.standin else \
            "GPU check REHEARSAL on the numpy-backed cupy API stand-in (no GPU: API use only, timings meaningless)"
        self.say(f"# {title}\n")
        self.say(f"`python benchmarks/gpu_check.py {' '.join(sys.argv[1:])}`, {time.strftime('%Y-%m-%d %H:%M')}\n")
        self.machine()
        for s in ("suite", "parity", "bench", "train", "counts"):
            try:
                getattr(self, s)()
            except Exception as e:  # one broken section must not hide the others
                self.fail(f"{s}: {type(e).__name__}: {e}")
        total = time.perf_counter() - self.t0
        self.say(f"\n---\n{'all checks passed' if not self.failed else 'FAILED: ' + '; '.join(self.failed)} "
                 f"in {total:.0f} s (budget {self.a.budget:.0f} s)")
        Path(self.a.out).write_text("\n".join(self.lines) + "\n")
        print(f"report: {self.a.out}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        return 1 if self.failed else 0


def _count_step(tiny):
    """Run under the stand-in (see Check.counts): warm AdamW training steps of the gpu config,
    as the training loop runs them (with its divergence check, runs.StepMonitor): one unlogged, then one logged (the
    step and the loop's one read of the losses)."""
    import numpy as np
    import cupy_standin
    import tinygrad_lm as tg
    from tinygrad_lm.models.gpt import GPT, GPTConfig
    from tinygrad_lm.train import DEVICE_LOG_INTERVAL, StepMonitor, train_step
    cfg = (dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch=4) if tiny else
           dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch=8))
    print(f"counted on the cupy API stand-in (per training step: forward, backward, clipping, AdamW, the "
          f"divergence check; {cfg['n_layer']}x{cfg['n_head']}x{cfg['n_embd']}, block {cfg['block_size']}, "
          f"batch {cfg['batch']}):\n")
    print("| dropout | step | host syncs | by kind | host->device copies | bytes | device->host bytes | "
          "device operations |")
    print("|---|---|---|---|---|---|---|---|")
    for dropout in (0.0, 0.2):
        tg.manual_seed(0)
        m = GPT(GPTConfig(vocab_size=65, block_size=cfg["block_size"], n_layer=cfg["n_layer"], n_head=cfg["n_head"],
                          n_embd=cfg["n_embd"], dropout=dropout, bias=False)).to("cuda")
        opt = m.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
        rng = np.random.default_rng(0)
        x = tg.tensor(rng.integers(0, 65, (cfg["batch"], cfg["block_size"])), device="cuda")
        y = tg.tensor(rng.integers(0, 65, (cfg["batch"], cfg["block_size"])), device="cuda")
        m.train()
        monitor = StepMonitor()
        train_step(m, opt, x, y, 1.0, monitor)
        monitor.read()
        for kind in ("unlogged", "logged"):
            cupy_standin.counters.reset()
            train_step(m, opt, x, y, 1.0, monitor)
            if kind == "logged":
                monitor.read()
            c = cupy_standin.counters.snapshot()
            print(f"| {dropout} | {kind} | {c['syncs']} | {c['sync_kinds']} | {c['h2d_copies']} | {c['h2d_bytes']:,} | "
                  f"{c['d2h_bytes']} | {c['launches']} |")
    print(f"\n(the training loop logs every {DEVICE_LOG_INTERVAL} steps on a GPU, and before every evaluation, "
          "checkpoint and exit; the batch's upload, two host->device copies of (B, T) int64, is not counted here; "
          "device operations = cupy calls that compute, ~ kernel launches)")


def _sync_probe(tiny):
    """On the real GPU: does a training step synchronise? cupyx.allow_synchronize(False) raises
    at the first synchronising call."""
    import traceback
    import numpy as np
    import cupyx
    import tinygrad_lm as tg
    from tinygrad_lm.models.gpt import GPT, GPTConfig
    from tinygrad_lm.train import StepMonitor, train_step
    tg.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=64, dropout=0.2)).to("cuda")
    opt = m.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    x = tg.tensor(np.random.default_rng(0).integers(0, 65, (4, 32)), device="cuda")
    monitor = StepMonitor()
    train_step(m, opt, x, x, 1.0, monitor)
    try:
        with cupyx.allow_synchronize(False):
            train_step(m, opt, x, x, 1.0, monitor)      # an unlogged step of the training loop, dropout on
        rows = monitor.read()
        print("- real GPU: an unlogged training step (dropout 0.2, clipping, the divergence check) ran under "
              f"`cupyx.allow_synchronize(False)` without synchronising; its loss, read after: {rows[-1][0]:.4f}")
    except Exception as e:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if "tinygrad_lm" in f.filename]
        where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno} `{frames[-1].line}`" if frames else "?"
        print(f"- real GPU: the step synchronises ({type(e).__name__}); first at {where}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu_check.md", help="the markdown report (default: gpu_check.md)")
    p.add_argument("--standin", action="store_true", help="rehearse on the numpy-backed cupy API stand-in (no GPU)")
    p.add_argument("--tiny", action="store_true", help="the smallest sizes everywhere (CI's form of the rehearsal)")
    p.add_argument("--skip", nargs="*", default=[], choices=SECTIONS, help="sections to leave out")
    p.add_argument("--budget", type=float, default=470.0, help="seconds for the whole check (default 470)")
    p.add_argument("--data", help="training text (default: shared/data/tinyshakespeare.txt if present)")
    p.add_argument("--train-steps", type=int, default=None, help="K: resume check runs 2K straight vs K + K "
                                                                 "(default 25; 2 in a rehearsal)")
    p.add_argument("--eval-iters", type=int, default=None)
    p.add_argument("--quick-bench", action="store_true", help="tinygrad-lm bench --quick (default in a rehearsal)")
    p.add_argument("--suite-limit", type=float, default=240.0)
    p.add_argument("--bench-limit", type=float, default=100.0)
    p.add_argument("--train-limit", type=float, default=90.0)
    p.add_argument("--_count-step", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_sync-probe", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._count_step:
        return _count_step(a.tiny)
    if a._sync_probe:
        return _sync_probe(a.tiny)
    small = a.standin or a.tiny
    a.train_steps = a.train_steps or (2 if small else 25)
    a.eval_iters = a.eval_iters or (2 if small else 10)
    a.quick_bench = a.quick_bench or small
    return Check(a).main()


if __name__ == "__main__":
    sys.exit(main())
