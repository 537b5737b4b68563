"""`tinygrad-lm bench`: the quick smoke run works and writes well-formed output.

No timing assertions: only that every row has its numbers, the CSVs parse with the
expected columns, and the GPU / PyTorch columns say why they are empty when they are.
"""
import csv
import math
import re

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


def test_quick_model_composed_starts_from_the_same_weights(tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["bench", "--quick", "--what", "model", "--config", "cpu", "--device", "cpu", "--no-torch", "--composed",
                 "--warmup", "1", "--out-dir", str(out)]) == 0
    _, rows = _read(out / "model.csv")
    assert [r["impl"] for r in rows] == ["ours", "ours_composed"]
    # same weights, same batch: the fused and composed ops give the same first loss to float32 rounding
    assert _num(rows[1]["loss_first"]) == pytest.approx(_num(rows[0]["loss_first"]), rel=1e-5)
    assert _num(rows[1]["ours_over_this"]) > 0


def test_quick_overhead(tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["bench", "--quick", "--what", "overhead", "--ops", "add", "matmul", "--out-dir", str(out)]) == 0
    fields, rows = _read(out / "overhead.csv")
    assert fields == bench.OVERHEAD_FIELDS
    assert [(r["op"], r["size"]) for r in rows] == [("add", "tiny"), ("add", "small"), ("matmul", "tiny"),
                                                   ("matmul", "small")]
    for r in rows:
        assert _num(r["numpy_us"]) > 0 and _num(r["ours_us"]) > 0
        assert (r["torch_us"] != "") == _has_torch()
    text = capsys.readouterr().out
    assert "Per-op overhead (tiny, 1 element)" in text and "| add | tiny 1x1 |" in text


def test_profile_times_every_phase_and_the_ops_inside_them():
    p = bench.profile_model_step(config="cpu", steps=2, warmup=1)
    assert set(p["phase_median_s"]) == {"forward", "backward", "clip_grad_norm_", "adamw_step", "zero_grad"}
    assert all(v > 0 for v in p["phase_median_s"].values())
    assert sum(p["op_calls"].values()) > 20  # 4 blocks of attention, MLP and layer norms
    # the time inside the ops is part of the phase that ran them
    ob = p["observed_phase_median_s"]
    assert 0 < sum(p["op_fwd_s"].values()) <= ob["forward"]
    assert 0 < sum(p["op_bwd_s"].values()) <= ob["backward"]
    text = bench.format_profile(p)
    assert "phase shares" in text and "(outside ops" in text and "cProfile" not in text


def test_quick_profile_command(capsys):
    assert main(["bench", "--quick", "--what", "model", "--profile", "--profile-steps", "2"]) == 0
    text = capsys.readouterr().out
    assert "profile of our cpu training step on cpu" in text and "calls/step" in text


@pytest.mark.parametrize("argv, message", [
    (["--what", "ops", "--profile"], "--profile: only with --what model"),
    (["--what", "model", "--sizes", "tiny"], "--sizes: only with --what overhead"),
    (["--what", "overhead", "--device", "cpu"], "--device: only with --what ops, model, all or allreduce"),
    (["--what", "model", "--profile", "--composed"], "--composed: only with --what model or all"),
    (["--what", "model", "--cprofile"], "--cprofile: only with --what model --profile"),
    (["--what", "model", "--budget", "0"], "--budget must be a finite number > 0, got 0.0"),
    (["--what", "model", "--block", "0"], "--block must be an integer >= 1, got 0"),
    (["--what", "overhead", "--ops", "nope"], "--ops: unknown value nope"),
    (["--what", "model", "--steps", "3", "--budget", "1"], "--steps and --budget: give one of them"),
    (["--what", "ops", "--steps", "3"], "--steps: only with --what model or all"),
    (["--what", "allreduce", "--device", "cpu", "cpu"], "--device: --what allreduce runs on one device, got cpu cpu"),
    (["--what", "model", "--nproc", "2"], "--nproc: only with --what allreduce"),
    (["--what", "allreduce", "--threads", "1"], "--threads: only with --what ops, model, all or overhead"),
    (["--what", "model", "--ops", "add"], "--ops: only with --what ops, all or overhead"),
    (["--what", "ops", "--fresh"], "--fresh: only with --what model or all"),
    (["--what", "ops", "--rounds", "3"], "--rounds: only with --what overhead, or --what model --fresh"),
    (["--what", "model", "--ablate"], "--rounds and --ablate (with --what model): only with --fresh"),
    (["--what", "model", "--rounds", "3"], "--rounds and --ablate (with --what model): only with --fresh"),
    (["--what", "model", "--fresh", "--rounds", "0"], "--rounds must be an integer >= 1, got 0"),
])
def test_bad_bench_flags_name_the_flag(tmp_path, capsys, argv, message):
    assert main(["bench", "--quick", "--out-dir", str(tmp_path)] + argv) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_python_entry_points_check_the_cli_ranges(tmp_path):
    """Keyword callers of run_bench / run_profile / run_overhead get the CLI's range messages."""
    with pytest.raises(ValueError, match=r"^--warmup must be an integer >= 0, got -1$"):
        bench.run_bench(what="model", warmup=-1, out_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"^--profile-steps must be an integer >= 1, got 0$"):
        bench.run_profile(steps=0)
    with pytest.raises(ValueError, match=r"^--rounds must be an integer >= 1, got 0$"):
        bench.run_overhead(rounds=0, out_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_model_configs_come_from_the_training_presets():
    from tinygrad_lm.train import PRESETS
    for name in ("cpu", "gpu"):
        cfg = bench.MODEL_CONFIGS[name]
        for k in ("n_layer", "n_head", "n_embd", "block_size", "batch_size"):
            assert cfg[k] == PRESETS[name][k], (name, k)
        assert (cfg["vocab_size"], cfg["dropout"], cfg["bias"]) == (65, 0.0, False)


def test_the_cpu_comparison_configs_and_the_config_help_names_them(capsys):
    shape = lambda c: tuple(bench.MODEL_CONFIGS[c][k] for k in ("n_layer", "n_head", "n_embd", "block_size",  # noqa: E731
                                                                 "batch_size"))
    assert shape("cpu") == (4, 4, 128, 64, 12)
    assert shape("6x192") == (6, 6, 192, 128, 16)
    assert shape("6x384") == (6, 6, 384, 256, 8)
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in bench.MODEL_CONFIGS:
        assert f"{name} (" in text or f"{name} =" in text, name


def test_fresh_rounds_alternate_in_child_processes_and_report_medians_and_ratios(monkeypatch):
    """run_fresh with the child processes replaced by a fake that records what it was asked:
    every implementation once per round, the order reversed every other round, the variants'
    environment passed on, the medians and per-round ratios computed from the children's times."""
    from tinygrad_lm.bench import fresh
    calls = []
    ms = {"ours": [8, 9, 10], "torch_sdpa": [10, 10, 10], "ours_untiled": [12, 12, 12]}

    def fake_child(func, *, blas_threads, env=None, **kw):
        assert func == "tinygrad_lm.bench.fresh:fresh_step" and kw["config"] == "cpu"
        name = {"TINYGRAD_LM_ATTENTION_TILE": "ours_untiled"}.get(next(iter(env), None), kw["impl"])
        calls.append(name)
        r = sum(1 for c in calls if c == name) - 1
        return {"times": [ms[name][r] / 1e3] * 3, "loss_first": 4.2, "peak_rss_mb": 100.0}
    monkeypatch.setattr(fresh, "run_in_child", fake_child)
    rows, per_round = fresh.run_fresh("cpu", "cpu", 3, 1, 3, 100.0, ("ours", "ours_untiled", "torch_sdpa"),
                                      log=lambda *a: None)
    assert calls == ["ours", "ours_untiled", "torch_sdpa", "torch_sdpa", "ours_untiled", "ours",
                     "ours", "ours_untiled", "torch_sdpa"]
    by = {r["impl"]: r for r in rows}
    assert by["ours"]["ms_median"] == pytest.approx(9) and by["ours"]["ratio_ours"] == pytest.approx(0.9)
    assert (by["ours"]["ratio_min"], by["ours"]["ratio_round_median"], by["ours"]["ratio_max"]) == (
        pytest.approx(0.8), pytest.approx(0.9), pytest.approx(1.0))
    assert by["ours_untiled"]["ratio_ours"] == pytest.approx(1.2) and by["torch_sdpa"]["ratio_ours"] == 1
    assert by["ours"]["gflops"] > 0 and 0 < by["ours"]["frac_of_peak"] and by["ours"]["peak_rss_mb"] == 100
    assert len(per_round) == 9
    assert "0.90" in fresh.format_fresh(rows, {"gflops_peak": 100.0, "n": 2048, "reps": 7})


def test_importing_the_bench_does_not_import_torch():
    import subprocess
    import sys
    code = "import sys, tinygrad_lm.bench; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"


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


def test_quick_model_on_cuda_reports_kernel_launches_per_step(cuda, tmp_path, capsys, monkeypatch):
    """The model step on cuda counts our kernels per timed step (#16 item 4). Without a GPU
    this runs on the cupy API stand-in (test id cuda-standin), where the kernels run on a CPU
    emulation: it checks the counting and the columns, not GPU speed. A tiny config (one more
    entry in MODEL_CONFIGS) keeps it to a few seconds there."""
    from tinygrad_lm import Tensor, backend, kernels
    from tinygrad_lm.bench.model_step import build_ours, make_batches, ours_step_fn
    tiny = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=4, vocab_size=65, bias=False, dropout=0.0)
    monkeypatch.setitem(bench.MODEL_CONFIGS, "tiny", tiny)
    out = tmp_path / "b"
    assert main(["bench", "--quick", "--what", "model", "--config", "tiny", "--device", cuda, "--no-torch",
                 "--warmup", "1", "--steps", "2", "--out-dir", str(out)]) == 0
    fields, rows = _read(out / "model.csv")
    assert fields == bench.MODEL_FIELDS
    (row,) = rows
    assert row["impl"] == "ours" and row["device"].startswith("cuda") and int(row["steps"]) == 2
    n = int(row["kernel_launches_per_step"])
    _, steps = _read(out / "model_steps.csv")
    assert [int(s["kernel_launches"]) for s in steps] == [n, n]  # every timed step launches the same kernels
    text = capsys.readouterr().out
    assert "launches/step" in text and re.search(rf"cuda:0 .* 1\.00 +{n}\n", text)  # the table's last column
    # the count is one step's, not a turn's or the warm-up's: a step counted here directly
    model, opt = build_ours(tiny, cuda)
    step = ours_step_fn(model, opt, cuda)
    x, y = (Tensor(a, device=cuda) for a in make_batches(tiny, 1)[0])
    step(x, y)
    kernels.reset_launch_count()
    step(x, y)
    assert n == backend.kernel_launches() > 0
    assert kernels.launch_counts()["adamw_step<float>"] == 1  # AdamW over all parameters in one launch
    # docs/kernels.md's count: per layer 4 forward + 8 backward, the final layer norm 3, cross-entropy 3, AdamW 1
    assert n == 12 * tiny["n_layer"] + 7
    # with the kernels off, the generic cupy path launches none of ours
    with backend.use_kernels(False):
        assert main(["bench", "--quick", "--what", "model", "--config", "tiny", "--device", cuda, "--no-torch",
                     "--warmup", "1", "--steps", "1", "--out-dir", str(out)]) == 0
    (row,) = _read(out / "model.csv")[1]
    assert int(row["kernel_launches_per_step"]) == 0


def test_model_on_cpu_leaves_the_kernel_launch_column_empty(tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["bench", "--quick", "--what", "model", "--config", "cpu", "--device", "cpu", "--no-torch",
                 "--warmup", "1", "--steps", "1", "--out-dir", str(out)]) == 0
    (row,) = _read(out / "model.csv")[1]
    assert row["kernel_launches_per_step"] == "" and int(row["steps"]) == 1
    assert "launches/step" not in capsys.readouterr().out
