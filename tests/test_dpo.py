"""Preference optimization: the frozen reference, the sequence log-probabilities, the DPO
step, `tinygrad-lm dpo` end to end (evaluations, checkpoint, resume bit for bit), and the
whole objective's gradient. (The bad inputs are cases of tests/reliability_cases.py, class 12;
Ctrl-C and SIGTERM, class 11.)"""
import csv
import json
import math

import numpy as np
import pytest

from tinygrad_lm import Tensor
from tinygrad_lm.checkpoint import load_checkpoint, load_model
from tinygrad_lm.cli import main
from tinygrad_lm.data import PairSet, load_preference_pairs
from tinygrad_lm.generate import sequence_logprob
from tinygrad_lm.preference import (dpo_step, frozen_copy, pair_logprobs, pair_metrics, sequence_logprobs,
                                    split_pairs)

TEXT = "the cat sat on the mat. the dog sat on the log. " * 40
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--eval-interval", "20", "--eval-iters", "2", "--warmup-iters", "2", "--no-progress", "--sample-tokens", "0"]
PAIRS = [{"prompt": "the cat ", "chosen": "sat on the mat.", "rejected": "sat on the log."},
         {"prompt": "the dog ", "chosen": "sat on the log.", "rejected": "sat on the mat."}] * 10
DPO = ["--batch-size", "4", "--lr", "1e-3", "--warmup-iters", "0", "--no-progress"]


def run(args):
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("base")
    (d / "corpus.txt").write_text(TEXT, encoding="utf-8")
    assert run(["train", "--data", d / "corpus.txt", "--out-dir", d / "run", "--max-iters", "40", "--lr", "3e-3",
                *TINY]) == 0
    (d / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PAIRS), encoding="utf-8")
    return d


def test_the_reference_is_a_frozen_copy_that_no_step_changes(base):
    policy = load_model(base / "run")[0]
    ref = frozen_copy(policy)
    assert all(not p.requires_grad for p in ref.parameters()) and not ref.training
    for (name, a), (_, b) in zip(policy.state_dict().items(), ref.state_dict().items()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)
        assert a.data is not b.data and not np.shares_memory(a.data, b.data)
    tok = load_model(base / "run")[1]
    pairs, _ = load_preference_pairs((base / "pairs.jsonl").read_text(), "pairs.jsonl", tok, 16, "the")
    x, y = pairs.rows(np.arange(4))
    ref_lp = sequence_logprobs(ref, x, y)
    optimizer = policy.configure_optimizers(0.0, 1e-2)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]}.isdisjoint({id(p) for p in ref.parameters()})
    before = {k: v.data.copy() for k, v in ref.state_dict().items()}
    loss, _ = dpo_step(policy, optimizer, Tensor(x), Tensor(y), Tensor(ref_lp.data[:4].copy()),
                       Tensor(ref_lp.data[4:].copy()), beta=0.1)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)   # the policy was the reference
    for k, v in ref.state_dict().items():
        np.testing.assert_array_equal(v.data, before[k], err_msg=k)
        assert v.grad is None
    assert not np.array_equal(policy.lm_head.weight.data, ref.lm_head.weight.data)


def test_sequence_logprob_sums_the_answer_tokens_given_the_prompt(base):
    model, tok, _ = load_model(base / "run")
    pairs, _ = load_preference_pairs((base / "pairs.jsonl").read_text(), "pairs.jsonl", tok, 16, "the")
    x, y = pairs.rows([0, 1])
    got = sequence_logprobs(model, x, y).detach().numpy()
    # by hand: the chosen and rejected sequences, prompt + answer, scored token by token
    for row, (key, i) in enumerate([("chosen", 0), ("chosen", 1), ("rejected", 0), ("rejected", 1)]):
        prompt, answer = tok.encode(PAIRS[i]["prompt"]), tok.encode(PAIRS[i][key])
        prompt = prompt[-(17 - len(answer)):]                    # cut from the left to fit block 16
        lp = sequence_logprob(model, prompt + answer)
        assert got[row] == pytest.approx(lp[len(prompt) - 1:].sum(), rel=1e-5)


def test_pair_metrics_are_loss_margin_and_accuracy():
    pc, pr = np.array([-1.0, -5.0, -3.0]), np.array([-2.0, -4.0, -3.0])
    rc = rr = np.zeros(3)
    m = pair_metrics(pc, pr, rc, rr, beta=0.5)
    z = np.array([0.5, -0.5, 0.0])
    assert m["margin"] == pytest.approx(0.0) and m["accuracy"] == pytest.approx(1 / 3) and m["pairs"] == 3
    assert m["loss"] == pytest.approx(np.mean(np.log1p(np.exp(-z))), rel=1e-12)


def test_split_pairs_is_seeded_disjoint_and_keeps_one_on_each_side():
    tr, va = split_pairs(20, 0.1, 3)
    assert len(va) == 2 and len(tr) == 18 and set(tr).isdisjoint(va) and set(tr) | set(va) == set(range(20))
    assert np.array_equal(split_pairs(20, 0.1, 3)[1], va)
    assert len(split_pairs(2, 0.01, 0)[1]) == 1
    with pytest.raises(ValueError, match="holds 1 pair: too few"):
        split_pairs(1, 0.5, 0)


def test_dpo_command_raises_accuracy_and_margin_and_writes_a_run(tmp_path, base, capsys):
    out = tmp_path / "dpo"
    assert run(["dpo", "--init-from", base / "run", "--pairs", base / "pairs.jsonl", "--out-dir", out,
                "--max-iters", "40", "--eval-interval", "20", *DPO]) == 0
    printed = capsys.readouterr().out
    assert "20 pairs -> 18 train / 2 held out" in printed and "no gradients, no optimizer state" in printed
    rows = list(csv.DictReader(open(out / "loss.csv")))
    assert list(rows[0]) == ["step", "lr", "loss", "margin", "accuracy", "eval_loss", "eval_margin", "eval_accuracy"]
    evals = [r for r in rows if r["eval_loss"]]
    assert [int(r["step"]) for r in evals] == [0, 20, 40]
    assert float(evals[-1]["eval_accuracy"]) == 1.0 and float(evals[-1]["eval_margin"]) > 0.05
    assert float(evals[-1]["eval_loss"]) < math.log(2)
    model, tok, meta = load_model(out)
    # at step 0 the policy is the reference: every held-out margin exactly 0, the loss exactly log 2
    first = meta["history"][0]
    assert first["step"] == 0 and first["margin"] == 0.0 and first["accuracy"] == 0.0
    assert first["loss"] == math.log(2)
    assert meta["step"] == 40 and meta["dpo_config"]["beta"] == 0.1 and meta["init"]["path"] == str(base / "run")
    assert len(meta["reference_logps"]["chosen"]) == 20 and meta["history"][-1]["accuracy"] == 1.0
    assert tok == load_model(base / "run")[1]
    # the checkpoint works like train's: sample and eval read it (eval scores the pretraining text)
    assert run(["sample", "--out-dir", out, "--prompt", "the ", "--max-new-tokens", "5"]) == 0
    assert run(["eval", "--out-dir", out]) == 0
    assert "corpus.txt (val split)" in capsys.readouterr().out


def test_a_resumed_dpo_run_matches_an_uninterrupted_one(tmp_path, base):
    common = ["--init-from", base / "run", "--pairs", base / "pairs.jsonl", "--eval-interval", "5", *DPO]
    assert run(["dpo", *common, "--out-dir", tmp_path / "a", "--max-iters", "12"]) == 0
    assert run(["dpo", *common, "--out-dir", tmp_path / "b", "--max-iters", "6"]) == 0
    assert run(["dpo", "--out-dir", tmp_path / "b", "--resume", "--max-iters", "12", "--no-progress"]) == 0
    assert (tmp_path / "a" / "loss.csv").read_bytes() == (tmp_path / "b" / "loss.csv").read_bytes()
    wa, _, ma = load_checkpoint(tmp_path / "a")
    wb, _, mb = load_checkpoint(tmp_path / "b")
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
    assert ma["history"] == mb["history"]


def test_a_resumed_run_needs_neither_the_reference_nor_the_init_folder(tmp_path, base):
    import shutil
    shutil.copytree(base / "run", tmp_path / "init")
    common = ["--pairs", base / "pairs.jsonl", "--eval-interval", "5", *DPO]
    assert run(["dpo", "--init-from", tmp_path / "init", *common, "--out-dir", tmp_path / "d", "--max-iters", "5"]) == 0
    shutil.rmtree(tmp_path / "init")
    assert run(["dpo", "--out-dir", tmp_path / "d", "--resume", "--max-iters", "8", "--no-progress"]) == 0
    assert load_model(tmp_path / "d")[2]["step"] == 8


def test_pair_logprobs_of_a_pair_set_in_batches_equal_one_batch(base):
    model, tok, _ = load_model(base / "run")
    pairs, _ = load_preference_pairs((base / "pairs.jsonl").read_text(), "p", tok, 16, "the")
    c1, r1 = pair_logprobs(model, pairs, 3, "cpu")
    c2, r2 = pair_logprobs(model, pairs, 20, "cpu")
    np.testing.assert_allclose(c1, c2, rtol=1e-5)
    np.testing.assert_allclose(r1, r2, rtol=1e-5)
    assert isinstance(pairs, PairSet) and len(pairs.subset([3, 5])) == 2


def test_gradcheck_of_the_whole_dpo_objective_through_a_gpt():
    """(The composed dpo_loss is held against the fused one op by op in tests/test_functional.py.)"""
    from tinygrad_lm.opcheck import gradcheck_dpo
    report = gradcheck_dpo(seed=1)
    assert report.passed, report.table()
    assert report.reference_touched == []
    assert len(report.inputs) == 28                           # every parameter of the policy
    assert min(r.elements_checked for r in report.inputs) > 0


def test_gradcheck_command_includes_the_dpo_objective(capsys):
    assert run(["gradcheck", "--ops", "FusedDPOLoss"]) == 0   # the op's own spec
    assert "FusedDPOLoss" in capsys.readouterr().out


def test_dpo_defaults_are_in_range_and_the_required_flags_are_named():
    from tinygrad_lm.ranges import FLAG_RANGES
    from tinygrad_lm.train_config import DPOConfig
    DPOConfig(init_from="base", pairs="p.jsonl").validate()
    for dest, r in FLAG_RANGES["dpo"].items():
        r.check(dest, getattr(DPOConfig(), dest))
    with pytest.raises(ValueError, match="--pairs is required"):
        DPOConfig(init_from="base").validate()
    DPOConfig(resume=True).validate()          # a resumed run takes both from its checkpoint


def test_a_dpo_step_on_cuda_matches_the_cpu(cuda, base):
    """On the GPU where one is usable, else on the cupy API stand-in (test id cuda-standin):
    one dpo_step from the same weights gives the same loss, log-probabilities and update."""
    from tinygrad_lm import backend
    results = []
    for dev in ("cpu", cuda):
        model, tok, _ = load_model(base / "run", dev)
        pairs, _ = load_preference_pairs((base / "pairs.jsonl").read_text(), "p", tok, 16, "the")
        x, y = pairs.rows(np.arange(4))
        ref_c, ref_r = np.full(4, -20.0, np.float32), np.full(4, -21.0, np.float32)
        opt = model.configure_optimizers(0.0, 1e-2)
        seen = []
        loss, logps = dpo_step(model, opt, Tensor(x, device=dev), Tensor(y, device=dev), Tensor(ref_c, device=dev),
                               Tensor(ref_r, device=dev), beta=0.1, check=lambda l, g, lp: seen.append(g))
        assert logps.device == backend.canonical_device(dev) and seen and np.isfinite(seen[0])
        results.append((float(loss.data), backend.to_numpy(logps.data), backend.to_numpy(model.lm_head.weight.data)))
    (l0, lp0, w0), (l1, lp1, w1) = results
    assert l1 == pytest.approx(l0, rel=1e-5)
    np.testing.assert_allclose(lp1, lp0, rtol=1e-5)
    np.testing.assert_allclose(w1, w0, rtol=1e-4, atol=1e-6)


def test_the_dpo_command_runs_on_cuda_and_its_checkpoint_matches_the_cpu_run(cuda, base, tmp_path):
    """The whole command with --device cuda (the cupy API stand-in without a GPU): the frozen
    copy, the reference pass, the steps and the evaluations on the device, the same held-out
    numbers as on the CPU."""
    common = ["--init-from", base / "run", "--pairs", base / "pairs.jsonl", "--max-iters", "6", "--eval-interval", "3",
              *DPO]
    assert run(["dpo", *common, "--out-dir", tmp_path / "cpu"]) == 0
    assert run(["dpo", *common, "--out-dir", tmp_path / "gpu", "--device", cuda]) == 0
    h_cpu, h_gpu = (load_model(tmp_path / d)[2]["history"] for d in ("cpu", "gpu"))
    assert [h["step"] for h in h_gpu] == [0, 3, 6] and h_gpu[0]["margin"] == 0.0
    for a, b in zip(h_cpu, h_gpu):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4) and b["accuracy"] == a["accuracy"]


def test_an_unlogged_dpo_step_reads_nothing_back(cuda, base, _cupy_standin):
    """A dpo step as the run takes it: its loss, reward margin and accuracy computed on the
    device (pair_stats, float64) go with the gradient norm into the run's divergence check
    (runs.StepMonitor), so steps read nothing back until the loop reads them all at once; and
    the numbers read are the ones pair_metrics gives on the host from the same log-probabilities."""
    from conftest import REAL_GPU
    if REAL_GPU:
        pytest.skip("inspects the cupy stand-in's records (no GPU here)")
    from tinygrad_lm import backend
    from tinygrad_lm.preference import pair_stats
    from tinygrad_lm.runs import StepMonitor
    model, tok, _ = load_model(base / "run", cuda)
    pairs, _ = load_preference_pairs((base / "pairs.jsonl").read_text(), "p", tok, 16, "the")
    x, y = pairs.rows(np.arange(4))
    ref = [backend.to_device(np.full(4, v), "cuda:0") for v in (-20.0, -21.0)]         # float64 (B,) on the device
    x, y, rc, rr = Tensor(x, device=cuda), Tensor(y, device=cuda), Tensor(ref[0].astype(np.float32)), \
        Tensor(ref[1].astype(np.float32))
    opt = model.configure_optimizers(0.0, 1e-2)
    monitor, logps_seen = StepMonitor(), []

    def check(loss, grad_norm, logps):
        logps_seen.append(logps.data.copy())
        lp = logps.data.astype(np.float64)
        s = pair_stats(lp[:4], lp[4:], *ref, 0.1, backend.array_module(lp))
        return monitor(s[0], grad_norm, s[1], s[2])
    dpo_step(model, opt, x, y, rc, rr, beta=0.1, check=check)                 # warm-up: the optimizer's state
    monitor.read()
    counts = _cupy_standin.counters
    counts.reset()
    for _ in range(3):
        dpo_step(model, opt, x, y, rc, rr, beta=0.1, check=check)
    assert counts.syncs == 0 and counts.d2h_copies == 0 and counts.h2d_copies == 0, counts.snapshot()
    rows = monitor.read()
    assert counts.syncs == 1 and counts.d2h_copies == 1 and rows.shape == (3, 4)   # [loss, norm, margin, accuracy]
    for row, lp in zip(rows, logps_seen[1:]):
        lp = backend.to_numpy(lp).astype(np.float64)
        m = pair_metrics(lp[:4], lp[4:], np.full(4, -20.0), np.full(4, -21.0), 0.1)
        assert (row[0], row[2], row[3]) == (m["loss"], m["margin"], m["accuracy"]) and np.isfinite(row[1])
    assert rows[-1][0] < rows[0][0]                                           # it learns


def test_a_dpo_checkpoint_keeps_the_device_generator_and_resume_restores_it(tmp_path, base, capsys):
    """The dropout masks' generator (backend.device_rng) is saved like the other generators and
    restored on --resume; the policy runs without dropout, so a checkpoint without it (written
    before masks were drawn on the device) resumes the same run, with no note."""
    from tinygrad_lm import backend
    common = ["--init-from", base / "run", "--pairs", base / "pairs.jsonl", "--eval-interval", "3", "--seed", "5",
              *DPO]
    assert run(["dpo", *common, "--out-dir", tmp_path / "a", "--max-iters", "6"]) == 0
    meta_path = tmp_path / "a" / "ckpt" / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["device_rng"] == {"seed": 5, "counter": 0}     # seeded by --seed; eval mode draws no mask
    assert run(["dpo", *common, "--out-dir", tmp_path / "b", "--max-iters", "3"]) == 0
    path = tmp_path / "b" / "ckpt" / "meta.json"
    old = json.loads(path.read_text())
    del old["device_rng"]
    path.write_text(json.dumps(old))
    backend.device_rng.manual_seed(99)
    capsys.readouterr()
    assert run(["dpo", "--resume", "--out-dir", tmp_path / "b", "--max-iters", "6", "--no-progress"]) == 0
    said = capsys.readouterr()
    assert "predates dropout masks" not in said.out + said.err and "resuming at step 3" in said.out
    a, b = (load_model(tmp_path / d)[2] for d in ("a", "b"))
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert b["device_rng"]["counter"] == 0
