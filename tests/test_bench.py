"""`tinygrad-lm bench`: the quick smoke run works and writes well-formed output.

No timing assertions: only that every row has its numbers, the CSVs parse with the
expected columns, and the GPU / PyTorch columns say why they are empty when they are.
"""
import csv
import math

import pytest

from tinygrad_lm import bench, cuda_available
from tinygrad_lm.cli import main


def _read(path):
    with open(path, newline="", encoding="utf-8") as f:
        r = csv.DictReader(f)
        return r.fieldnames, list(r)


def _num(s):
    v = float(s)
    assert math.isfinite(v), s
    return v


def _has_torch():
    try:
        import torch  # noqa: F401
        return True
    except Exception:
        return False


def test_quick_ops(tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["bench", "--quick", "--what", "ops", "--out-dir", str(out)]) == 0
    fields, rows = _read(out / "ops.csv")
    assert fields == bench.OP_FIELDS
    seen = {(r["op"], r["pass"]) for r in rows}
    for op in bench.OPS:
        passes = ("step",) if op == "adamw" else ("forward", "backward")
        for p in passes:
            assert (op, p) in seen, (op, p)
    for r in rows:
        assert r["impl"] in ("ours", "torch")
        assert int(r["elements"]) > 0 and int(r["reps"]) >= 1
        lo, med, hi = _num(r["ms_min"]), _num(r["ms_median"]), _num(r["ms_max"])
        assert 0 <= lo <= med <= hi
        if r["op"] in ("matmul", "attention"):
            assert _num(r["gflops"]) > 0
    assert any(r["impl"] == "ours" and r["device"] == "cpu" for r in rows)
    assert any(r["impl"] == "torch" for r in rows) == _has_torch()
    text = capsys.readouterr().out
    assert "ours CPU ms" in text
    if not cuda_available():
        assert "no GPU" in text
    try:
        import matplotlib  # noqa: F401
        assert (out / "ops_speedup.png").stat().st_size > 0
    except ImportError:
        assert "matplotlib is not installed" in text


def test_quick_model(tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["bench", "--quick", "--what", "model", "--config", "cpu", "--device", "cpu", "--out-dir", str(out)]) == 0
    fields, rows = _read(out / "model.csv")
    assert fields == bench.MODEL_FIELDS
    impls = [r["impl"] for r in rows]
    assert impls[0] == "ours"
    assert ("torch" in impls and "torch_sdpa" in impls) == _has_torch()
    for r in rows:
        assert r["config"] == "cpu"
        for k in ("n_params", "tokens_per_step", "gflop_per_step", "steps", "ms_median", "ms_min", "ms_max", "ms_q1",
                  "ms_q3", "tokens_per_s", "gflops", "peak_gflops", "frac_of_peak", "ours_over_this", "loss_first"):
            assert _num(r[k]) >= 0, k
        assert _num(r["ms_min"]) <= _num(r["ms_median"]) <= _num(r["ms_max"])
        assert int(r["tokens_per_step"]) == 12 * 64
        assert 3.5 < _num(r["loss_first"]) < 5.0  # ~ln(65) at init
    assert _num(rows[0]["ours_over_this"]) == pytest.approx(1.0)
    # the FLOP count is nanoGPT's: (6 N + 12 L C T) T B with N the non-embedding parameters
    n = int(rows[0]["n_params"])
    assert _num(rows[0]["gflop_per_step"]) == pytest.approx((6 * n + 12 * 4 * 128 * 64) * 64 * 12 / 1e9, rel=1e-4)
    fields, steps = _read(out / "model_steps.csv")
    assert fields == bench.STEP_FIELDS and len(steps) == sum(int(r["steps"]) for r in rows)
    text = capsys.readouterr().out
    assert "FLOPs per step" in text and "ms/step median" in text
    if _has_torch():
        assert "first-step loss, ours vs torch" in text


def test_quick_model_without_torch(tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["bench", "--quick", "--what", "model", "--device", "cpu", "--no-torch", "--out-dir", str(out)]) == 0
    _, rows = _read(out / "model.csv")
    assert [r["impl"] for r in rows] == ["ours"]
    assert "torch skipped" in capsys.readouterr().out


def test_bad_config_and_device(tmp_path, capsys):
    assert main(["bench", "--quick", "--what", "model", "--config", "tpu", "--out-dir", str(tmp_path)]) == 2
    assert "unknown config" in capsys.readouterr().err
    if not cuda_available():
        assert main(["bench", "--quick", "--device", "cuda", "--out-dir", str(tmp_path)]) == 2
        assert "no usable CUDA GPU" in capsys.readouterr().err


def test_crossover_logic():
    """The summary and crossover from made-up CPU/GPU rows (no GPU needed)."""
    rows = []
    for el, cpu, gpu in ((100, 0.01, 0.05), (1000, 0.1, 0.06), (10000, 1.0, 0.1), (100000, 10.0, 0.3)):
        rows.append({"op": "softmax", "pass": "forward", "impl": "ours", "device": "cpu", "shape": f"s{el}",
                     "elements": el, "ms_median": cpu})
        rows.append({"op": "softmax", "pass": "forward", "impl": "ours", "device": "cuda:0", "shape": f"s{el}",
                     "elements": el, "ms_median": gpu})
    summ, cross = bench.op_summary(rows)
    assert [d["elements"] for d in summ] == [100, 1000, 10000, 100000]
    assert summ[0]["gpu_speedup"] == pytest.approx(0.2)
    assert cross[("softmax", "forward")] == {"elements": 1000, "shape": "s1000", "all": False}
    text = bench.format_ops(summ, cross, True, "torch not installed")
    assert "from s1000" in text and "torch not installed" in text


def test_flops_formula():
    cfg = bench.MODEL_CONFIGS["gpu"]
    # 6 N + 12 L C T per token, times T B tokens
    assert bench.flops_per_step(10, cfg) == (60 + 12 * 6 * 384 * 256) * 256 * 64


def test_quick_gpu(tmp_path, cuda):
    # on the GPU where there is one, else on the cupy API stand-in (test id cuda-standin: the
    # bench's GPU code path runs, its timings mean nothing)
    out = tmp_path / "b"
    assert main(["bench", "--quick", "--what", "ops", "--device", "cpu", "cuda", "--no-torch", "--out-dir", str(out)]) == 0
    _, rows = _read(out / "ops.csv")
    assert any(r["device"].startswith("cuda") for r in rows)
    for r in rows:
        _num(r["ms_median"])


def test_eval_noise_script_reports_the_spread_of_a_few_batch_estimate(tmp_path, capsys):
    import os
    import runpy
    import sys
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat. the dog sat on the log. " * 40, encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", "--data", str(corpus), "--out-dir", str(out), "--max-iters", "20", "--n-layer", "1",
                 "--n-head", "2", "--n-embd", "16", "--block-size", "8", "--batch-size", "4", "--eval-iters", "2",
                 "--no-progress", "--sample-tokens", "0"]) == 0
    capsys.readouterr()
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "eval_noise.py")
    argv = sys.argv
    sys.argv = [script, "--out-dir", str(out), "--batches", "40", "--eval-iters", "5"]
    try:
        with pytest.raises(SystemExit) as e:
            runpy.run_path(script, run_name="__main__")
    finally:
        sys.argv = argv
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "whole val split" in text and "an estimate from 5 batches: sd" in text
    assert "8 disjoint 5-batch estimates" in text
