"""The command line: train, resume, sample, eval, ngram, and every bad input it must refuse."""
import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tinygrad_lm.cli import main

TEXT = "the cat sat on the mat. the dog sat on the log. " * 40
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "8", "--batch-size", "4",
        "--eval-interval", "10", "--eval-iters", "2", "--warmup-iters", "2", "--no-progress", "--sample-tokens", "0"]


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text(TEXT, encoding="utf-8")
    return str(p)


def run(args):
    return main([str(a) for a in args])


def losses(out_dir):
    with open(os.path.join(out_dir, "loss.csv"), newline="") as f:
        return [(int(r["step"]), r["loss"], r["eval_val_loss"]) for r in csv.DictReader(f)]


def snapshot(path):
    """Every file under path with its bytes: to prove a refused command changed nothing."""
    out = {}
    for d, _, files in os.walk(path):
        for f in files:
            p = os.path.join(d, f)
            out[p] = open(p, "rb").read()
    return out


def test_tiny_model_overfits_tiny_text(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    assert run(["train", "--data", corpus, "--out-dir", out, "--max-iters", "150", "--lr", "3e-3",
                "--eval-interval", "150", *TINY[:-2], "--sample-tokens", "30"]) == 0
    text = capsys.readouterr().out
    rows = [r for r in losses(out) if r[1]]
    first, last = float(rows[0][1]), float(np.mean([float(r[1]) for r in rows[-10:]]))
    assert first > 2.0            # ~log(vocab) at the start
    assert last < 1.0             # the repeated sentence is memorised
    assert "best val loss" in text and "sample (temperature 0.8)" in text
    assert os.path.exists(out / "ckpt" / "model.safetensors")


def test_resumed_run_matches_an_uninterrupted_one(tmp_path, corpus):
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--data", corpus, "--lr-decay-iters", "30", *TINY]
    assert run(["train", "--out-dir", a, "--max-iters", "30", *common]) == 0
    assert run(["train", "--out-dir", b, "--max-iters", "20", *common]) == 0
    assert run(["train", "--out-dir", b, "--max-iters", "30", "--resume", *common]) == 0
    la, lb = losses(a), losses(b)
    assert [r for r in la if r[1]] == [r for r in lb if r[1]]   # every batch loss, bit for bit (6 decimals)
    assert la == lb


def test_resumed_run_with_dropout_matches_an_uninterrupted_one(tmp_path, corpus):
    # the dropout masks' generator (backend.device_rng) is saved and restored with the checkpoint
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--data", corpus, "--lr-decay-iters", "30", "--dropout", "0.2", *TINY]
    assert run(["train", "--out-dir", a, "--max-iters", "30", *common]) == 0
    assert run(["train", "--out-dir", b, "--max-iters", "20", *common]) == 0
    import json
    meta = json.loads((b / "ckpt" / "meta.json").read_text())
    assert meta["device_rng"]["seed"] == 1337 and meta["device_rng"]["counter"] > 0
    from tinygrad_lm import manual_seed
    manual_seed(99)   # a fresh process's generator, not the one the first half left behind
    assert run(["train", "--out-dir", b, "--max-iters", "30", "--resume", *common]) == 0
    la, lb = losses(a), losses(b)
    assert [r for r in la if r[1]] == [r for r in lb if r[1]]   # every batch loss, bit for bit (6 decimals)
    assert la == lb


@pytest.mark.parametrize("dropout", ["0.2", "0"])
def test_a_checkpoint_without_the_device_rng_state_still_resumes(tmp_path, corpus, capsys, dropout):
    # checkpoints written before dropout masks were drawn on the device have no "device_rng":
    # they resume, the masks seeded by (seed, step), the same on every resume; a note says so
    # when dropout is on (with dropout 0 nothing is drawn and the resume is exact)
    import json
    import shutil
    from tinygrad_lm import manual_seed
    common = ["--data", corpus, "--lr-decay-iters", "30", "--dropout", dropout, *TINY]
    old = tmp_path / "old"
    assert run(["train", "--out-dir", old, "--max-iters", "20", *common]) == 0
    path = old / "ckpt" / "meta.json"
    meta = json.loads(path.read_text())
    del meta["device_rng"]
    path.write_text(json.dumps(meta))
    runs = []
    for name in ("r1", "r2"):
        shutil.copytree(old, tmp_path / name)
        manual_seed(len(name) * 7 + len(runs))   # whatever the generator held before is not used
        capsys.readouterr()
        assert run(["train", "--out-dir", tmp_path / name, "--max-iters", "30", "--resume", *common]) == 0
        runs.append((losses(tmp_path / name), capsys.readouterr().out))
    assert runs[0][0] == runs[1][0]
    noted = "predates dropout masks drawn on the device" in runs[0][1]
    assert noted == (dropout != "0")
    if dropout == "0":
        straight = tmp_path / "straight"
        assert run(["train", "--out-dir", straight, "--max-iters", "30", *common]) == 0
        assert losses(straight) == runs[0][0]


def test_a_malformed_device_rng_state_is_refused_naming_it(tmp_path, corpus, capsys):
    import json
    out = tmp_path / "run"
    common = ["--data", corpus, "--dropout", "0.1", *TINY]
    assert run(["train", "--out-dir", out, "--max-iters", "10", *common]) == 0
    path = out / "ckpt" / "meta.json"
    meta = json.loads(path.read_text())
    meta["device_rng"] = {"seed": "1337", "counter": -4}
    path.write_text(json.dumps(meta))
    before = snapshot(out)
    capsys.readouterr()
    assert run(["train", "--out-dir", out, "--max-iters", "20", "--resume", *common]) == 2
    err = capsys.readouterr().err
    assert "'device_rng' must be" in err and "meta.json" in err and err.count("error") == 1
    assert snapshot(out) == before


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path, corpus):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "tinygrad_lm", "train", "--data", corpus, "--out-dir", str(out),
           "--max-iters", "100000", "--eval-interval", "100000", *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not os.path.exists(out / "loss.csv") and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted: saved a checkpoint" in stdout
    from tinygrad_lm.checkpoint import load_checkpoint
    _, _, meta = load_checkpoint(out)
    assert meta["step"] > 0
    assert run(["train", "--data", corpus, "--out-dir", out, "--max-iters", str(meta["step"] + 2), "--resume", *TINY]) == 0


def test_sample_and_eval_commands(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    assert run(["train", "--data", corpus, "--out-dir", out, "--max-iters", "20", *TINY]) == 0
    capsys.readouterr()
    assert run(["sample", "--out-dir", out, "--prompt", "the ", "--max-new-tokens", "12", "--num-samples", "2",
                "--show-probs", "3"]) == 0
    text = capsys.readouterr().out
    assert text.count("--- sample") == 2 and "total log-probability" in text and "top:" in text
    assert run(["sample", "--out-dir", out, "--prompt", "the ", "--strategy", "beam", "--beam-width", "3",
                "--max-new-tokens", "6"]) == 0
    beams = [line for line in capsys.readouterr().out.splitlines() if line.startswith("--- beam")]
    scores = [float(line.split("log-probability ")[1].split()[0]) for line in beams]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert run(["eval", "--out-dir", out]) == 0
    assert "perplexity" in capsys.readouterr().out
    assert run(["eval", "--out-dir", out, "--data", corpus]) == 0


def test_kv_cache_generation_equals_full_recompute(tmp_path, corpus):
    from tinygrad_lm.generate import generate
    from tinygrad_lm.checkpoint import load_model
    out = tmp_path / "run"
    assert run(["train", "--data", corpus, "--out-dir", out, "--max-iters", "10", *TINY]) == 0
    model, tok, _ = load_model(str(out))
    prompt = tok.encode("the c")
    for strategy in ("greedy", "sample", "beam"):
        # 20 new tokens with block 8: the cache fills up and generation falls back to the window
        with_cache = generate(model, prompt, 20, strategy=strategy, num_samples=3, rng=np.random.default_rng(1))
        without = generate(model, prompt, 20, strategy=strategy, num_samples=3, rng=np.random.default_rng(1),
                           use_cache=False)
        assert [g.tokens for g in with_cache] == [g.tokens for g in without]
        np.testing.assert_allclose([g.logprob for g in with_cache], [g.logprob for g in without], rtol=1e-4)


def test_ngram_command(capsys, corpus):
    assert run(["ngram", "--data", corpus, "--n", "1", "2", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len([l for l in lines if l.strip()[:1].isdigit()]) == 3


# ------------------------------------------------------------------ bad input
def bad(args, capsys, match):
    code = run(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and match in err, err


def test_bad_data_files(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 ".encode("latin-1") * 50)
    short = tmp_path / "short.txt"
    short.write_text("abc")
    out = tmp_path / "out"
    bad(["train", "--data", tmp_path / "missing.txt", "--out-dir", out, *TINY], capsys, "missing.txt")
    bad(["train", "--data", empty, "--out-dir", out, *TINY], capsys, "empty")
    bad(["train", "--data", latin, "--out-dir", out, *TINY], capsys, "UTF-8")
    bad(["train", "--data", tmp_path, "--out-dir", out, *TINY], capsys, "directory")
    bad(["train", "--data", short, "--out-dir", out, *TINY], capsys, "block_size + 1")
    assert not out.exists()


@pytest.mark.parametrize("flags,match", [
    (["--n-embd", "10", "--n-head", "3"], "not divisible"),
    (["--dropout", "1.5"], "--dropout"),
    (["--tokenizer", "bpe", "--vocab-size", "100"], "vocab-size"),
    (["--device", "tpu"], "unknown device"),
])
def test_impossible_train_flags(tmp_path, corpus, capsys, flags, match):
    out = tmp_path / "out"
    bad(["train", "--data", corpus, "--out-dir", out, *TINY, *flags], capsys, match)
    assert not out.exists()


@pytest.fixture
def trained(tmp_path, corpus):
    out = tmp_path / "run"
    assert run(["train", "--data", corpus, "--out-dir", out, "--max-iters", "10", *TINY]) == 0
    return out


def test_existing_checkpoint_is_not_overwritten(trained, corpus, capsys):
    before = snapshot(trained)
    bad(["train", "--data", corpus, "--out-dir", trained, "--max-iters", "10", *TINY[:4], "--n-embd", "32",
         *TINY[6:]], capsys, "--resume")
    assert snapshot(trained) == before
    assert run(["train", "--data", corpus, "--out-dir", trained, "--max-iters", "10", "--force", *TINY]) == 0


@pytest.mark.parametrize("flags,match", [
    (["--temperature", "0"], "temperature"), (["--temperature", "-1"], "temperature"),
    (["--top-p", "0"], "top-p"), (["--top-p", "1.01"], "top-p"), (["--top-k", "0"], "top-k"),
    (["--prompt", "Ω€"], "vocabulary"), (["--max-new-tokens", "0"], "max-new-tokens"),
])
def test_bad_sample_flags(trained, capsys, flags, match):
    before = snapshot(trained)
    bad(["sample", "--out-dir", trained, *flags], capsys, match)
    assert snapshot(trained) == before


def test_truncated_or_corrupted_checkpoint(trained, capsys):
    model = trained / "ckpt" / "model.safetensors"
    raw = model.read_bytes()
    model.write_bytes(raw[: len(raw) // 2])
    bad(["sample", "--out-dir", trained], capsys, "truncated")
    bad(["eval", "--out-dir", trained], capsys, "truncated")
    model.write_bytes(raw)
    meta = trained / "ckpt" / "meta.json"
    meta.write_text("{not json")
    bad(["sample", "--out-dir", trained], capsys, "meta.json")
    bad(["train", "--out-dir", trained, "--resume", *TINY], capsys, "meta.json")


def test_resume_refuses_a_different_architecture(trained, corpus, capsys):
    before = snapshot(trained)
    bad(["train", "--data", corpus, "--out-dir", trained, "--resume", "--max-iters", "20", *TINY[:6],
         "--block-size", "16", *TINY[8:]], capsys, "--block-size 16 differs")
    assert snapshot(trained) == before


def test_exact_gelu_is_a_model_option_saved_with_the_checkpoint(tmp_path, corpus, capsys):
    import json
    out = tmp_path / "exact"
    assert run(["train", "--data", corpus, "--out-dir", out, "--max-iters", "10", "--gelu-approximate", "none", *TINY]) == 0
    meta = json.loads((out / "ckpt" / "meta.json").read_text())
    assert meta["config"]["gelu_approximate"] == "none"
    from tinygrad_lm.checkpoint import load_model
    model = load_model(str(out))[0]
    assert model.transformer.h[0].mlp.gelu.approximate == "none"
    before = snapshot(out)
    bad(["train", "--data", corpus, "--out-dir", out, "--resume", "--max-iters", "20", "--gelu-approximate", "tanh",
         *TINY], capsys, "--gelu-approximate tanh differs")
    assert snapshot(out) == before
    # a checkpoint written before the option existed has no key: it is the tanh model, and resumes
    del meta["config"]["gelu_approximate"]
    (out / "ckpt" / "meta.json").write_text(json.dumps(meta))
    assert run(["train", "--data", corpus, "--out-dir", out, "--resume", "--max-iters", "20", *TINY]) == 0
    meta = json.loads((out / "ckpt" / "meta.json").read_text())
    assert meta["config"]["gelu_approximate"] == "tanh" and meta["step"] == 20


def test_missing_checkpoint(tmp_path, capsys):
    bad(["sample", "--out-dir", tmp_path / "nothing"], capsys, "nothing")
    bad(["train", "--out-dir", tmp_path / "nothing", "--resume", *TINY], capsys, "no checkpoint")


def test_gradcheck_command_checks_every_op_and_a_whole_gpt(capsys):
    assert run(["gradcheck"]) == 0
    out = capsys.readouterr().out
    from tinygrad_lm import Function
    for name in Function.registry:
        assert name in out, name
    assert "bias=True" in out and "bias=False" in out and "all gradients match" in out
    assert "whole DPO objective" in out and "the frozen reference got gradients" not in out


# ------------------------------------------------------------------ presets
def _configs_run_by(monkeypatch, argv):
    """The TrainConfig `tinygrad-lm train ARGV` hands to the training loop (the loop not run)."""
    import tinygrad_lm.train
    seen = []
    monkeypatch.setattr(tinygrad_lm.train, "train", lambda cfg: seen.append(cfg) or {"interrupted": False})
    assert run(["train", *argv]) == 0
    return seen[0]


def test_train_without_flags_runs_exactly_TrainConfig_defaults(monkeypatch):
    from tinygrad_lm.train import PRESETS, TrainConfig
    assert _configs_run_by(monkeypatch, []) == TrainConfig()
    assert TrainConfig(**PRESETS["default"]) == TrainConfig()


@pytest.mark.parametrize("name", ["default", "cpu", "gpu"])
def test_each_preset_is_a_whole_recipe_and_flags_override_it(monkeypatch, name):
    from tinygrad_lm.train import PRESETS, TrainConfig
    from tinygrad_lm.train_config import PRESET_KEYS
    assert set(PRESETS[name]) == set(PRESET_KEYS)   # no key left to whichever preset ran before
    assert _configs_run_by(monkeypatch, ["--preset", name]) == TrainConfig(**PRESETS[name])
    cfg = _configs_run_by(monkeypatch, ["--preset", name, "--n-layer", "7"])
    assert cfg.n_layer == 7 and cfg.explicit == ("n_layer",) and cfg.n_embd == PRESETS[name]["n_embd"]


def test_train_help_lists_the_presets_from_the_table(capsys):
    from tinygrad_lm.train_config import PRESETS, describe_preset
    with pytest.raises(SystemExit):
        run(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in PRESETS:
        assert f"{name} = " in text and describe_preset(name) in text


def test_readme_preset_table_is_the_PRESETS_table():
    import re
    from tinygrad_lm.train_config import PRESETS
    readme = open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md"), encoding="utf-8").read()
    header = re.search(r"^\| flag \| (.+) \|$", readme, flags=re.M).group(1)
    names = re.findall(r"`--preset (\w+)`", header)
    assert names == list(PRESETS)
    rows = dict(re.findall(r"^\| `--([\w-]+)` \| (.+) \|$", readme, flags=re.M))
    table = {k.replace("-", "_"): [float(v) for v in cells.split(" | ")] for k, cells in rows.items()}
    assert table == {k: [float(PRESETS[n][k]) for n in names] for k in PRESETS["default"]}


def test_resume_keeps_the_checkpoints_dtype_and_refuses_another(tmp_path, corpus, capsys):
    import json
    out = tmp_path / "f64"
    assert run(["train", "--data", corpus, "--out-dir", out, "--max-iters", "10", "--dtype", "float64", *TINY]) == 0
    before = snapshot(out)
    bad(["train", "--data", corpus, "--out-dir", out, "--resume", "--max-iters", "20", "--dtype", "float32", *TINY],
        capsys, "--dtype float32 differs")
    assert snapshot(out) == before
    assert run(["train", "--data", corpus, "--out-dir", out, "--resume", "--max-iters", "20", *TINY]) == 0
    assert json.loads((out / "ckpt" / "meta.json").read_text())["dtype"] == "float64"
    from tinygrad_lm.checkpoint import load_model
    assert load_model(str(out))[0].lm_head.weight.dtype == "float64"
