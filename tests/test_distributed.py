"""Data-parallel training (tinygrad_lm/distributed.py): N ranks run the one-rank experiment.

The multi-process tests run `mpiexec -n 2` (the MPICH wheel of the `mpi` extra, which `dev`
pulls in) and skip, saying why, where mpi4py or mpiexec is missing. Every subprocess has a
timeout and its own session, killed whole on expiry: a hung MPI job fails the test, never CI.
"""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tinygrad_lm import distributed
from tinygrad_lm.cli import main
from tinygrad_lm.train import TrainConfig, train, train_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB = os.path.join(ROOT, "tests", "mpi_job.py")
TEXT = "the cat sat on the mat. the dog sat on the log. " * 40
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "8", "--batch-size", "4",
        "--eval-interval", "1000", "--eval-iters", "2", "--warmup-iters", "2", "--no-progress", "--sample-tokens", "0",
        "--dtype", "float64", "--lr-decay-iters", "20"]


def _have_mpi():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install -e \".[mpi]\")"
    if distributed.find_mpiexec(required=False) is None:
        return "no mpiexec next to python or on PATH (pip install -e \".[mpi]\")"
    return None


MPI_MISSING = _have_mpi()
needs_mpi = pytest.mark.skipif(MPI_MISSING is not None, reason=MPI_MISSING or "")


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE",
                                                             "OMPI_COMM_WORLD_RANK", "PMIX_RANK")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_proc(cmd, timeout=60, **kw):
    """Run cmd in its own session; on timeout kill the whole session (mpiexec and its ranks)
    and fail. Returns (returncode, stdout, stderr, seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), start_new_session=True, **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(map(str, cmd))} did not finish in {timeout} s:\n{out}\n{err}")
    return proc.returncode, out, err, time.perf_counter() - t0


def mpiexec(n, *args, timeout=60):
    return run_proc([distributed.find_mpiexec(), "-n", n, sys.executable, *args], timeout=timeout)


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text(TEXT, encoding="utf-8")
    return str(p)


def step_losses(out_dir):
    with open(os.path.join(out_dir, "loss.csv"), newline="") as f:
        return [(int(r["step"]), r["loss"]) for r in csv.DictReader(f) if r["loss"]]


def final_state(out_dir):
    from tinygrad_lm.checkpoint import load_checkpoint
    arrays, _, meta = load_checkpoint(out_dir)
    return arrays, meta


# ---------------------------------------------------------------- one process: the path it always had
def test_without_mpi_init_returns_none_and_never_imports_mpi4py():
    code = ("import sys; from tinygrad_lm import distributed; assert distributed.init() is None; "
            "assert 'mpi4py' not in sys.modules; print('ok')")
    rc, out, err, _ = run_proc([sys.executable, "-c", code], timeout=60)
    assert rc == 0 and out.strip() == "ok", err


def test_one_process_train_is_the_plain_train_step_loop_bit_for_bit(tmp_path, corpus):
    """train() without MPI and without accumulation runs train.train_step on the batch drawn
    from the seeded generator: the same parameters, bit for bit, as that loop written out."""
    from tinygrad_lm.checkpoint import build_model
    from tinygrad_lm.data import build_tokenizer, encode_splits, get_batch, load_corpus
    from tinygrad_lm.engine import manual_seed
    from tinygrad_lm.tensor import Tensor
    from tinygrad_lm.train import MODEL_KEYS, lr_at
    out = tmp_path / "run"
    assert main(["train", "--data", corpus, "--out-dir", out, "--max-iters", "15", *TINY]) == 0
    arrays, meta = final_state(out)

    cfg = TrainConfig(**{k: v for k, v in meta["train_config"].items() if k != "explicit"})
    text, _ = load_corpus(corpus)
    tok = build_tokenizer(cfg.tokenizer, text, cfg.vocab_size)
    train_ids, _ = encode_splits(text, tok, cfg.block_size)
    manual_seed(cfg.seed)
    model = build_model(dict(vocab_size=tok.vocab_size, **{k: getattr(cfg, k) for k in MODEL_KEYS}), "cpu", cfg.dtype)
    opt = model.configure_optimizers(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2))
    rng = np.random.default_rng(cfg.seed)
    model.train()
    for it in range(15):
        for g in opt.param_groups:
            g["lr"] = lr_at(it, cfg)
        x, y = get_batch(train_ids, cfg.batch_size, cfg.block_size, rng)
        train_step(model, opt, Tensor(x), Tensor(y), cfg.grad_clip)
    mine = dict(model.named_parameters())
    for name, arr in arrays.items():
        if name in mine:
            assert np.array_equal(mine[name].data, arr), name


def test_grad_accumulation_equals_a_batch_twice_the_size_float64():
    """K = 2 micro-batches of 4 rows against one step on the 8 rows: 50 steps, 1e-12."""
    from tinygrad_lm.checkpoint import build_model
    from tinygrad_lm.data import get_batch
    from tinygrad_lm.engine import manual_seed
    from tinygrad_lm.tensor import Tensor
    runs = []
    for accum in (1, 2):
        manual_seed(0)
        model = build_model(dict(vocab_size=13, n_layer=2, n_head=2, n_embd=16, block_size=8, dropout=0.0, bias=True,
                                 gelu_approximate="tanh"), "cpu", "float64")
        opt = model.configure_optimizers(0.1, 3e-3, (0.9, 0.99))
        data = np.random.default_rng(1).integers(0, 13, 4000)
        rng = np.random.default_rng(2)
        dp = distributed.DataParallel(model, opt, None, accum, 1.0) if accum > 1 else None
        losses = []
        for _ in range(50):
            x, y = get_batch(data, 8, 8, rng)
            losses.append(dp.step(x, y) if dp else float(train_step(model, opt, Tensor(x), Tensor(y), 1.0).data))
        runs.append(np.array(losses))
    np.testing.assert_allclose(runs[1], runs[0], rtol=1e-12, atol=0)


def test_grad_accumulation_through_the_cli(tmp_path, corpus):
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["train", "--data", corpus, "--max-iters", "12", *TINY]
    assert main([*common, "--out-dir", a]) == 0
    assert main([*common, "--out-dir", b, "--grad-accum-steps", "2"]) == 0
    assert step_losses(a) == step_losses(b)   # 6 decimals
    (wa, _), (wb, _) = final_state(a), final_state(b)
    for k in wa:
        np.testing.assert_allclose(wb[k], wa[k], rtol=1e-10, atol=1e-13)


def test_resume_may_change_grad_accum_steps_and_continues_the_same_run(tmp_path, corpus, capsys):
    """10 steps, resumed to 20 with --grad-accum-steps 2 (allowed on --resume: the same global
    batch in 2 micro-batches), against 20 straight: the same losses (6 decimals, float64) and
    parameters (1e-10); the change is named on a line."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["train", "--data", corpus, *TINY]
    assert main([*common, "--out-dir", straight, "--max-iters", "20"]) == 0
    assert main([*common, "--out-dir", split, "--max-iters", "10"]) == 0
    capsys.readouterr()
    assert main(["train", "--out-dir", split, "--resume", "--max-iters", "20", "--grad-accum-steps", "2",
                 "--no-progress"]) == 0
    assert "--resume: --grad-accum-steps 2 (the run had 1)" in capsys.readouterr().out
    assert step_losses(split) == step_losses(straight)
    (wa, _), (wb, mb) = final_state(straight), final_state(split)
    assert mb["train_config"]["grad_accum_steps"] == 2
    for k in wa:
        np.testing.assert_allclose(wb[k], wa[k], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("flags, match", [
    (["--nproc", "0"], "--nproc must be an integer >= 1, got 0"),
    (["--nproc", "5"], "5 ranks (--nproc or mpiexec -n) are more than --batch-size 4"),
    (["--nproc", "2", "--batch-size", "6", "--grad-accum-steps", "2"],
     "--batch-size 6 (the global batch) is not divisible by 2 rank(s) x --grad-accum-steps 2 = 4"),
    (["--grad-accum-steps", "0"], "--grad-accum-steps must be an integer >= 1, got 0"),
    (["--batch-size", "6", "--grad-accum-steps", "4"], "--batch-size 6 is not divisible by --grad-accum-steps 4"),
])
def test_bad_nproc_and_accumulation_flags_fail_once_before_any_rank_starts(tmp_path, corpus, capsys, flags, match):
    out = tmp_path / "run"
    assert main(["train", "--data", corpus, "--out-dir", out, "--max-iters", "5", *TINY, *flags]) == 2
    cap = capsys.readouterr()
    assert cap.err.count("error:") == 1 and match in cap.err, cap.err
    assert not out.exists()   # nothing written: no rank was started


def test_nproc_without_mpiexec_names_the_install(tmp_path, corpus, capsys, monkeypatch):
    monkeypatch.setattr(distributed, "find_mpiexec", lambda required=True: (_ for _ in ()).throw(
        ImportError(f"--nproc needs mpiexec, found neither next to {sys.executable} nor on PATH: {distributed.MPI_HINT}")))
    assert main(["train", "--data", corpus, "--out-dir", tmp_path / "run", "--max-iters", "5", *TINY,
                 "--nproc", "2"]) == 2
    assert 'pip install -e ".[mpi]"' in capsys.readouterr().err


def test_find_mpiexec_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(distributed.sysconfig, "get_path", lambda name: str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ImportError, match=r'pip install -e "\.\[mpi\]"'):
        distributed.find_mpiexec()


def test_strip_nproc():
    assert distributed.strip_nproc(["train", "--nproc", "2", "--lr", "1"]) == ["train", "--lr", "1"]
    assert distributed.strip_nproc(["train", "--nproc=2"]) == ["train"]


def test_blas_threads_split_the_cpus_among_the_ranks_here(monkeypatch):
    monkeypatch.setattr(distributed.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(distributed.os, "cpu_count", lambda: 8)
    assert [distributed.blas_threads_for(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    monkeypatch.setattr(distributed.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)  # bound by the launcher
    assert distributed.blas_threads_for(4) == 2


# ---------------------------------------------------------------- several ranks (mpiexec -n 2)
def _steps(tmp_path, n, dtype, accum=1, mask=False):
    out = tmp_path / f"steps_{n}_{dtype}_{accum}_{int(mask)}.json"
    if n == 1 and accum == 1:  # the one-process reference, in this process (train_step)
        sys.path.insert(0, os.path.dirname(JOB))
        try:
            import mpi_job
        finally:
            sys.path.pop(0)
        mpi_job.steps_job(str(out), dtype, 50, 1, mask)
    else:
        rc, o, e, _ = mpiexec(n, JOB, "steps", out, dtype, 50, accum, int(mask))
        assert rc == 0, e
    return json.loads(out.read_text())


@needs_mpi
@pytest.mark.parametrize("dtype, rtol, accum, mask", [("float64", 1e-12, 1, False), ("float32", 1e-5, 1, False),
                                                      ("float64", 1e-12, 1, True), ("float64", 1e-12, 2, False)],
                         ids=["float64", "float32", "float64-masked-targets", "float64-grad-accum-2"])
def test_two_ranks_run_the_one_rank_experiment(tmp_path, dtype, rtol, accum, mask):
    """50 steps of the same global batch of 8: one process (train_step) against 2 ranks (x K
    micro-batches): every step's loss equal to rtol, every rank's parameters bit-identical
    after every step. `masked-targets` ignores 70% of the targets in rank 1's rows and 10% in
    rank 0's: a 1/N average of the ranks' means would be off by percent."""
    one = _steps(tmp_path, 1, dtype, 1, mask)
    two = _steps(tmp_path, 2, dtype, accum, mask)
    assert two["world"] == 2 and len(two["identical"]) == 50 and all(two["identical"])
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=rtol, atol=0)


@needs_mpi
@pytest.mark.parametrize("first, second", [(2, 1), (1, 2)])
def test_resume_with_another_number_of_ranks_continues_exactly(tmp_path, corpus, first, second):
    """10 steps on `first` ranks, resumed to 20 on `second`, against 20 straight on one: the
    same losses (6 decimals), batch generator state and parameters (float64, 1e-10)."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["train", "--data", corpus, *TINY]
    assert main([*common, "--out-dir", straight, "--max-iters", 20]) == 0
    for n, extra in ((first, ["--max-iters", 10]), (second, ["--max-iters", 20, "--resume"])):
        # --nproc 2: the launcher re-runs the command through mpiexec; --nproc 1 runs in this process
        if n == 1:
            assert main([*common, "--out-dir", split, "--nproc", 1, *extra]) == 0
        else:
            rc, _, e, _ = run_proc([sys.executable, "-m", "tinygrad_lm", *common, "--out-dir", split, "--nproc", n, *extra])
            assert rc == 0, e
    assert step_losses(split) == step_losses(straight)
    (wa, ma), (wb, mb) = final_state(straight), final_state(split)
    assert mb["step"] == 20 and mb["batch_rng"] == ma["batch_rng"]
    # the evaluations (steps 0 and 20), one of them sharded over 2 ranks
    assert [h["step"] for h in mb["history"]] == [h["step"] for h in ma["history"]] == [0, 20]
    for ha, hb in zip(ma["history"], mb["history"]):
        np.testing.assert_allclose([hb["train_loss"], hb["val_loss"]], [ha["train_loss"], ha["val_loss"]], rtol=1e-12)
    for k in wa:
        np.testing.assert_allclose(wb[k], wa[k], rtol=1e-10, atol=1e-13)


@needs_mpi
def test_an_exception_on_rank_1_ends_the_job_within_seconds_printed_once(tmp_path, corpus):
    rc, out, err, secs = mpiexec(2, JOB, "fail", "train", "--data", corpus, "--out-dir", tmp_path / "run",
                                 "--max-iters", 50, *TINY, timeout=60)
    assert rc != 0 and secs < 10, (rc, secs, err)
    assert (out + err).count("RuntimeError: injected: rank 1 fails at its third step") == 1, out + err
    assert "rank 1 of 2 failed" in err


@needs_mpi
def test_a_setup_failure_on_rank_1_is_agreed_and_printed_once(tmp_path, corpus):
    rc, out, err, secs = mpiexec(2, JOB, "setupfail", "train", "--data", corpus, "--out-dir", tmp_path / "run",
                                 "--max-iters", 5, *TINY)
    assert rc == 2 and secs < 10, (rc, err)
    assert err.count("injected: rank 1 cannot read the corpus") == 1 and "(on rank 1 of 2)" in err, err
    assert not (tmp_path / "run" / "ckpt").exists()


@needs_mpi
@pytest.mark.parametrize("flags, match", [
    (["--batch-size", "5"], "--batch-size 5 (the global batch) is not divisible by 2 rank(s)"),
    (["--data", "/nonexistent/corpus.txt"], "/nonexistent/corpus.txt"),
    (["--n-layer", "0"], "--n-layer must be an integer >= 1, got 0"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_bad_input_under_mpiexec_is_one_error_from_rank_0(tmp_path, corpus, flags, match):
    rc, out, err, _ = mpiexec(2, "-m", "tinygrad_lm", "train", "--data", corpus, "--out-dir", tmp_path / "run",
                              "--max-iters", 5, *TINY, *flags)
    assert rc == 2, err
    assert err.count(match) == 1 and err.count("error:") == 1, err
    assert not (tmp_path / "run").exists()


@needs_mpi
def test_sigint_on_one_rank_is_agreed_at_a_step_boundary(tmp_path, corpus):
    """Rank 1 signals itself during its 5th step (step 4); that flag rides in step 5's
    all-reduce; both ranks stop before step 6; rank 0 saves step 6; the run resumes."""
    out = tmp_path / "run"
    rc, o, e, _ = mpiexec(2, JOB, "sigint", "train", "--data", corpus, "--out-dir", out, "--max-iters", 50, *TINY)
    assert rc == 130, e
    assert o.count("interrupted: saved a checkpoint at step 6") == 1, o
    assert final_state(out)[1]["step"] == 6
    rc, _, e, _ = mpiexec(2, "-m", "tinygrad_lm", "train", "--data", corpus, "--out-dir", out, "--max-iters", 8,
                          "--resume", *TINY)
    assert rc == 0, e
    assert final_state(out)[1]["step"] == 8


@needs_mpi
def test_sigterm_on_one_rank_is_agreed_saved_and_ends_all_with_143(tmp_path, corpus):
    """As Ctrl-C, with SIGTERM (what a batch scheduler sends): train.py's _Interrupt handles
    it, the flag rides in the next all-reduce, rank 0 saves step 6, every rank exits 143."""
    out = tmp_path / "run"
    rc, o, e, _ = mpiexec(2, JOB, "sigterm", "train", "--data", corpus, "--out-dir", out, "--max-iters", 50, *TINY)
    assert rc == 143, e
    assert o.count("interrupted: saved a checkpoint at step 6") == 1 and "[SIGTERM]" in o, o
    assert final_state(out)[1]["step"] == 6


@needs_mpi
def test_divergence_is_agreed_by_every_rank_and_printed_once_as_in_one_process(tmp_path, corpus):
    """The divergence check sees the all-reduced loss and gradient norm, the same bits on every
    rank: both ranks stop at the step one process stops at, rank 0 prints the one-process
    message once, all exit 2 (no abort), and no checkpoint is written."""
    flags = ["--data", corpus, "--max-iters", 20, *TINY, "--lr", "1e30"]
    one, two = tmp_path / "one", tmp_path / "two"
    rc1, _, e1, _ = run_proc([sys.executable, "-m", "tinygrad_lm", "train", "--out-dir", one, *flags])
    rc2, _, e2, _ = mpiexec(2, "-m", "tinygrad_lm", "train", "--out-dir", two, *flags)
    assert rc1 == rc2 == 2, (e1, e2)
    assert e1.count("training diverged at step") == 1 and e2.count("error:") == 1, (e1, e2)
    assert e2.strip().replace(str(two), "<out>") == e1.strip().replace(str(one), "<out>")
    assert not (two / "ckpt").exists()


@needs_mpi
def test_a_second_job_into_a_busy_folder_is_refused_once_and_the_first_goes_on(tmp_path, corpus):
    """Rank 0 alone holds <out-dir>/train.lock: a second 2-rank job into the folder of a running
    2-rank job gets the one-process "in use" error once, naming the holder (the first job's
    rank 0), and changes nothing; the first job then stops on SIGTERM with a checkpoint."""
    out = tmp_path / "run"
    first = subprocess.Popen([distributed.find_mpiexec(), "-n", "2", sys.executable, "-m", "tinygrad_lm", "train",
                              "--data", corpus, "--out-dir", str(out), "--max-iters", "100000", *TINY,
                              "--eval-interval", "5"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                             start_new_session=True)
    try:
        deadline = time.time() + 60
        while not (out / "ckpt").is_dir() and time.time() < deadline and first.poll() is None:
            time.sleep(0.1)
        assert (out / "ckpt").is_dir(), first.communicate(timeout=60)
        holder = int((out / "train.lock").read_text())
        rc, o, e, _ = mpiexec(2, "-m", "tinygrad_lm", "train", "--data", corpus, "--out-dir", out, "--max-iters", 5,
                              *TINY, "--force")
        assert rc == 2, e
        assert e.count("error:") == 1 and f"--out-dir {out} is in use by another tinygrad-lm run (pid {holder})" in e, e
        assert first.poll() is None   # the first job went on
        first.send_signal(signal.SIGTERM)  # mpiexec forwards it to every rank
        o1, e1 = first.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(first.pid, signal.SIGKILL)
        pytest.fail("the first job did not stop after SIGTERM")
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 143, e1
    assert o1.count("interrupted: saved a checkpoint") == 1
    assert final_state(out)[1]["step"] > 0 and not (out / "train.lock").exists()


@needs_mpi
def test_ctrl_c_to_the_nproc_launcher_stops_all_ranks_with_a_checkpoint(tmp_path, corpus):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "tinygrad_lm", "train", "--data", corpus, "--out-dir", str(out),
           "--max-iters", "100000", *TINY, "--nproc", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            start_new_session=True)
    try:
        line, deadline = "", time.time() + 60
        while "step 0:" not in line and time.time() < deadline and proc.poll() is None:
            line = proc.stdout.readline()   # rank 0's first evaluation: training has started
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        o, e = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the job did not stop after SIGINT")
    assert proc.returncode == 130, e
    assert o.count("interrupted: saved a checkpoint") == 1
    assert final_state(out)[1]["step"] > 0


@needs_mpi
def test_bench_allreduce_quick_writes_its_table(tmp_path):
    """`tinygrad-lm bench --what allreduce --quick --config cpu`: a smoke run (2 ranks)."""
    rc, out, err, _ = run_proc([sys.executable, "-m", "tinygrad_lm", "bench", "--what", "allreduce", "--quick",
                                "--config", "cpu", "--out-dir", tmp_path], timeout=120)
    assert rc == 0, err
    with open(tmp_path / "allreduce.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["config"] == "cpu" and int(row["ranks"]) == 2 and int(row["params"]) > 0
    assert 0 < float(row["allreduce_alone_ms"]) and 0 < float(row["allreduce_in_step_ms"]) < float(row["step_ms"])
    assert "| cpu (cpu) | 2 |" in out


# ---------------------------------------------------------------- docs and install
def _read(*parts):
    return open(os.path.join(ROOT, *parts), encoding="utf-8").read()


def test_the_scaling_table_in_the_docs_is_what_its_code_prints():
    import contextlib
    import io
    import re
    text = _read("docs", "distributed.md")
    code = re.search(r"```python\n(.+?)\n```", text, flags=re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {})
    table = out.getvalue().strip()
    assert table.count("\n") == 7 and table in text


def _commands(text):
    """The tinygrad-lm command lines of a markdown text's bash blocks (after mpiexec's own flags)."""
    import re
    import shlex
    for block in re.findall(r"```bash\n(.+?)\n```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if "tinygrad-lm " in line:
                yield shlex.split(line[line.index("tinygrad-lm ") + len("tinygrad-lm "):])


def test_the_documented_commands_parse():
    from tinygrad_lm.cli import build_parser
    readme = _read("README.md").split("## Training on several processes", 1)[1].split("\n## ", 1)[0]
    cmds = list(_commands(readme)) + list(_commands(_read("docs", "distributed.md")))
    assert len(cmds) >= 8
    for argv in cmds:
        build_parser().parse_args(argv)  # SystemExit (a failure) on any flag that does not exist


def test_dev_installs_the_mpi_extra():
    import tomllib
    extras = tomllib.loads(_read("pyproject.toml"))["project"]["optional-dependencies"]
    assert any(r.startswith("mpi4py") for r in extras["mpi"]) and "mpich" in extras["mpi"]
    assert "tinygrad_lm[mpi]" in extras["dev"]


# ---------------------------------------------------------------- GPU: NCCL
from tinygrad_lm.backend import cuda_available  # noqa: E402


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs cupy and an NVIDIA GPU (pip install -e \".[cuda12]\")")
def test_nccl_one_rank_allreduce_equals_its_input():
    from tinygrad_lm import backend
    cp = backend.xp_for("cuda:0")
    nccl = distributed.NcclAllreduce(1, 0, "cuda:0")
    for dtype in (np.float32, np.float64):
        x = cp.asarray(np.random.default_rng(0).standard_normal(1000).astype(dtype))
        before = cp.asnumpy(x)
        nccl.allreduce_(x)
        cp.cuda.get_current_stream().synchronize()
        assert np.array_equal(cp.asnumpy(x), before)
