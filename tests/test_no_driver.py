"""With the real cupy installed but no usable GPU (no driver, or too old a driver), every entry
point that is asked for "cuda" gives one clear error: which device, why (cupy's own reason)
and how to install the matching cupy wheel; a non-zero exit and no traceback; nothing
written. Runs only where cupy imports and no GPU is usable; skipped elsewhere."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REAL_GPU

ROOT = Path(__file__).resolve().parents[1]


def _real_cupy_without_gpu():
    if REAL_GPU:
        return False
    code = "import cupy, sys; sys.exit(0 if not getattr(cupy, '__standin__', False) else 1)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not _real_cupy_without_gpu(),
                                reason="needs the real cupy installed on a machine without a usable GPU")

NEEDLES = ["device 'cuda' was requested but no usable CUDA GPU was found", "cupy-cuda12x", "cupy-cuda13x",
           "nvidia-smi"]


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "tinygrad_lm", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


def test_python_api_says_why_and_how_to_install():
    code = ("import tinygrad_lm as tg\n"
            "from tinygrad_lm.models.gpt import GPT, GPTConfig\n"
            "m = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4))\n"
            "for f in (lambda: tg.zeros(2, device='cuda'), lambda: tg.ones(2).to('cuda'), lambda: tg.ones(2).cuda(),\n"
            "          lambda: tg.randn(2, device='cuda'), lambda: m.to('cuda')):\n"
            "    try:\n"
            "        f()\n"
            "    except tg.DeviceError as e:\n"
            "        print(str(e).replace(\"'cuda:0'\", \"'cuda'\"))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 5, r.stdout
    for line in lines:
        for n in NEEDLES:
            assert n in line, (n, line)


def test_every_cli_entry_point_gives_one_clear_error(tmp_path):
    ckpt = tmp_path / "ckpt"
    r = _cli("train", "--max-iters", "1", "--eval-interval", "1", "--eval-iters", "1", "--n-layer", "1", "--n-head", "1",
             "--n-embd", "8", "--block-size", "8", "--batch-size", "2", "--sample-tokens", "0", "--no-progress",
             "--out-dir", str(ckpt), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    runs = {
        "train": ["train", "--device", "cuda", "--max-iters", "1", "--out-dir", str(tmp_path / "new"), "--no-progress"],
        "sample": ["sample", "--device", "cuda", "--out-dir", str(ckpt), "--max-new-tokens", "4"],
        "eval": ["eval", "--device", "cuda", "--out-dir", str(ckpt)],
        "bench": ["bench", "--quick", "--device", "cuda", "--out-dir", str(tmp_path / "bench")],
    }
    for cmd, args in runs.items():
        r = _cli(*args, cwd=tmp_path)
        assert r.returncode == 2, (cmd, r.returncode, r.stderr)
        assert "Traceback" not in r.stderr, (cmd, r.stderr)
        err = r.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"tinygrad-lm {cmd}: error: "), (cmd, r.stderr)
        for n in NEEDLES:
            assert n in err[0], (cmd, n, err[0])
    assert not (tmp_path / "new").exists() and not (tmp_path / "bench").exists()   # nothing written
