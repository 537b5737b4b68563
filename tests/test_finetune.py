"""Fine-tuning: `train --init-from DIR` starts from a checkpoint's weights (its tokenizer and
shape, not its optimizer state or step), and `--loss-on completion` counts only the
completion tokens of JSONL prompt/completion examples. (The bad inputs are cases of
tests/reliability_cases.py, class 12.)"""
import json

import numpy as np
import pytest

from tinygrad_lm.checkpoint import load_checkpoint, load_model
from tinygrad_lm.cli import main
from tinygrad_lm.data import CharTokenizer, SequenceSet, load_prompt_completion

TEXT = "the cat sat on the mat. the dog sat on the log. " * 40
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--eval-interval", "10", "--eval-iters", "2", "--warmup-iters", "2", "--no-progress", "--sample-tokens", "0"]
RUN = ["--eval-interval", "10", "--eval-iters", "2", "--warmup-iters", "2", "--no-progress", "--sample-tokens", "0",
       "--batch-size", "4"]
EXAMPLES = [{"prompt": "the cat ", "completion": "sat on the mat."}, {"prompt": "the dog ", "completion": "sat on the log."}]


def run(args):
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny pretrained run on TEXT (20 steps)."""
    d = tmp_path_factory.mktemp("base")
    (d / "corpus.txt").write_text(TEXT, encoding="utf-8")
    assert run(["train", "--data", d / "corpus.txt", "--out-dir", d / "run", "--max-iters", "20", *TINY]) == 0
    return d / "run"


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_init_from_starts_from_the_weights_with_the_checkpoints_tokenizer_and_shape_and_a_fresh_optimizer(
        tmp_path, base):
    data = tmp_path / "new.txt"
    data.write_text("the mat sat on the cat. " * 30, encoding="utf-8")
    out = tmp_path / "ft"
    # --max-iters 0: evaluate and save the starting point, nothing trained
    assert run(["train", "--init-from", base, "--data", data, "--out-dir", out, "--max-iters", "0", *RUN]) == 0
    m0, tok0, meta0 = load_model(base)
    m1, tok1, meta1 = load_model(out)
    assert tok1 == tok0 and meta1["config"] == meta0["config"] and meta1["step"] == 0
    for (name, a), (_, b) in zip(m0.state_dict().items(), m1.state_dict().items()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)
    assert meta1["init"]["path"] == str(base) and meta1["init"]["step"] == 20
    assert meta1["train_config"]["init_from"] == str(base)
    assert load_checkpoint(base)[2]["optimizer"]["state"]["0"]["step"] == 20
    optim, meta = load_checkpoint(out)[1:]
    assert optim == {} and meta["optimizer"]["state"] == {}  # no AdamW moments or step count taken from the base run
    # and training on from there changes the weights, writing only into the new folder
    before = (base / "ckpt" / "model.safetensors").read_bytes()
    assert run(["train", "--init-from", base, "--data", data, "--out-dir", tmp_path / "ft2", "--max-iters", "5", *RUN]) == 0
    assert (base / "ckpt" / "model.safetensors").read_bytes() == before
    m2 = load_model(tmp_path / "ft2")[0]
    assert not np.array_equal(m2.lm_head.weight.data, m0.lm_head.weight.data)


def test_a_shape_flag_given_with_init_from_must_match_the_checkpoint(tmp_path, base, capsys):
    data = tmp_path / "t.txt"
    data.write_text(TEXT, encoding="utf-8")
    assert run(["train", "--init-from", base, "--data", data, "--out-dir", tmp_path / "a", "--n-embd", "16",
                "--max-iters", "0", *RUN]) == 0   # the same value is no conflict
    assert run(["train", "--init-from", base, "--data", data, "--out-dir", tmp_path / "b", "--n-embd", "32", *RUN]) == 2
    assert "--n-embd 32 differs from the checkpoint's 16" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_a_character_the_checkpoints_tokenizer_lacks_is_named_with_its_line_and_column(tmp_path, base, capsys):
    data = tmp_path / "new.txt"
    data.write_text("the cat sat\non the Mat\n", encoding="utf-8")
    assert run(["train", "--init-from", base, "--data", data, "--out-dir", tmp_path / "ft", *RUN]) == 2
    err = capsys.readouterr().err
    assert "'\\n' at line 1, column 12 (character 11)" in err and "--init-from checkpoint's char tokenizer" in err
    assert not (tmp_path / "ft").exists()


def test_first_unencodable_finds_the_first_unknown_character():
    tok = CharTokenizer.from_text("abc")
    assert tok.first_unencodable("abcab") is None
    assert tok.first_unencodable("abxcy") == 2
    from tinygrad_lm.data import BPETokenizer
    assert BPETokenizer.from_text("abc abc", 257).first_unencodable("Ωé \u2028 anything") is None


# ---------------------------------------------------------------- --loss-on completion
def test_sequence_rows_ignore_the_prompt_targets_and_the_padding():
    s = SequenceSet([np.array([1, 2, 3]), np.array([4])], [np.array([5, 6]), np.array([7, 8, 9])], "completion")
    x, y = s.rows([0, 1])
    np.testing.assert_array_equal(x, [[1, 2, 3, 5], [4, 7, 8, 0]])
    np.testing.assert_array_equal(y, [[-1, -1, 5, 6], [7, 8, 9, -1]])   # targets 5 6 | 7 8 9: the completions
    s.loss_on = "all"
    np.testing.assert_array_equal(s.rows([0, 1])[1], [[2, 3, 5, 6], [7, 8, 9, -1]])
    assert s.num_targets() == 7


def test_completion_loss_is_the_mean_negative_log_probability_of_the_completion_tokens(base):
    """The training loss of a batch of examples equals -mean log p(completion token | everything
    before it), computed token by token from sequence_logprob: the prompt counts only as context."""
    from tinygrad_lm.generate import sequence_logprob
    model, tok, _ = load_model(base)
    text = "".join(json.dumps(r) + "\n" for r in EXAMPLES * 2)
    train_set, _, _ = load_prompt_completion(text, "ex.jsonl", tok, 16, "completion", "the")
    x, y = train_set.rows([0, 1])
    _, loss = model(x, y)
    per_token = []
    for i in (0, 1):
        seq = train_set.tokens[train_set.starts[i]:train_set.starts[i] + train_set.lengths[i]]
        lp = sequence_logprob(model, seq)                  # log p(seq[t+1] | seq[:t+1])
        per_token.extend(lp[train_set.prompt_lengths[i] - 1:])  # the completion's tokens only
    assert float(loss.data) == pytest.approx(-np.mean(per_token), rel=1e-5)


def test_fine_tuning_on_completions_learns_them_and_eval_scores_the_same_examples(tmp_path, base, capsys):
    data = write_jsonl(tmp_path / "ex.jsonl", EXAMPLES * 5)
    out = tmp_path / "ft"
    assert run(["train", "--init-from", base, "--data", data, "--loss-on", "completion", "--out-dir", out,
                "--max-iters", "60", "--lr", "1e-2", "--warmup-iters", "0", "--eval-interval", "60", "--eval-iters", "2",
                "--batch-size", "4", "--no-progress", "--sample-tokens", "0"]) == 0
    printed = capsys.readouterr().out
    assert "9 train / 1 val examples, 135 / 15 target tokens (loss on completion" in printed
    import csv
    rows = list(csv.DictReader(open(out / "loss.csv")))
    evals = [float(r["eval_val_loss"]) for r in rows if r["eval_val_loss"]]
    assert evals[-1] < 0.6 * evals[0]
    meta = load_model(out)[2]
    assert meta["train_config"]["loss_on"] == "completion"
    assert run(["eval", "--out-dir", out]) == 0
    assert "ex.jsonl (val split): 15 tokens" in capsys.readouterr().out
    # a resumed fine-tuning run is the same run: its data, its --init-from, its --loss-on
    assert run(["train", "--out-dir", out, "--resume", "--max-iters", "62", "--no-progress"]) == 0
    assert load_model(out)[2]["init"]["path"] == str(base)


def test_examples_from_scratch_build_the_tokenizer_from_the_strings_not_the_json(tmp_path, capsys):
    """JSON escapes: "\\u00e9" in the file is the character é in the example."""
    data = tmp_path / "ex.jsonl"
    data.write_text('{"prompt": "caf", "completion": "\\u00e9!"}\n' * 4, encoding="utf-8")
    out = tmp_path / "run"
    assert run(["train", "--data", data, "--out-dir", out, "--max-iters", "2", *TINY]) == 0
    tok = load_model(out)[1]
    assert "é" in tok.chars and "{" not in tok.chars


def test_fine_tuning_on_examples_over_two_ranks_matches_one_process(tmp_path, base):
    """Data parallel (mpiexec -n 2): the padded, prompt-masked example batches split by rows and
    weighted by counted targets give the one-process losses (float32: to its rounding)."""
    from test_distributed import mpiexec, needs_mpi, step_losses
    if needs_mpi.args[0]:
        pytest.skip(needs_mpi.kwargs["reason"])
    data = write_jsonl(tmp_path / "ex.jsonl", EXAMPLES * 5)
    common = ["train", "--init-from", base, "--data", data, "--loss-on", "completion", "--max-iters", "6",
              "--eval-interval", "3", "--eval-iters", "2", "--batch-size", "4", "--no-progress", "--sample-tokens", "0"]
    assert run([*common, "--out-dir", tmp_path / "one"]) == 0
    code, out, err, _ = mpiexec(2, "-m", "tinygrad_lm", *map(str, common), "--out-dir", str(tmp_path / "two"))
    assert code == 0, err
    one, two = step_losses(tmp_path / "one"), step_losses(tmp_path / "two")
    assert [s for s, _ in one] == [s for s, _ in two] == list(range(6))
    np.testing.assert_allclose([float(l) for _, l in two], [float(l) for _, l in one], rtol=1e-5)
