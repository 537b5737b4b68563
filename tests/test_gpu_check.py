"""The prepared GPU check (benchmarks/gpu_check.py), rehearsed in its smallest form on the cupy
API stand-in: the script runs end to end and its report says it is a rehearsal. (On a machine
with a GPU: `python benchmarks/gpu_check.py --out gpu_check.md`.)"""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_rehearses_end_to_end_on_the_standin(tmp_path):
    out = tmp_path / "rehearsal.md"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--standin", "--tiny",
                        "--skip", "suite", "bench", "--train-steps", "1", "--out", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    report = out.read_text()
    assert report.startswith("# GPU check REHEARSAL on the numpy-backed cupy API stand-in")
    for needle in ("| GPU | cupy API stand-in", "| float32 |", "| float64 |", "resume exactness", "**ok**",
                   "host syncs", "_skipped (--skip suite)_", "all checks passed"):
        assert needle in report, needle
    assert "FAIL" not in report
    # section 5 holds a step to issue 13's numbers: no read in an unlogged step, one in a logged
    # step, no host->device copy (dropout on or off)
    for dropout in ("0.0", "0.2"):
        assert f"| {dropout} | unlogged | 0 | {{}} | 0 | 0 | 0 |" in report, dropout
        assert f"| {dropout} | logged | 1 | {{'get': 1}} | 0 | 0 | 32 |" in report, dropout
