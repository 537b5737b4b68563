"""Checkpoint files: safetensors round trips, corruption is detected, writes are atomic."""
import json
import os
import struct

import numpy as np
import pytest

from tinygrad_lm.checkpoint import (CheckpointError, load_checkpoint, load_safetensors, save_checkpoint,
                                    save_safetensors)


def test_safetensors_round_trip_keeps_dtype_shape_and_bytes(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"a": rng.standard_normal((3, 4)).astype(np.float32), "b": np.arange(5, dtype=np.int64),
              "c": rng.standard_normal(()).astype(np.float64), "mask": np.array([True, False])}
    p = tmp_path / "x.safetensors"
    save_safetensors(p, arrays, {"step": 7})
    back, meta = load_safetensors(p)
    assert meta == {"step": "7"}
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        np.testing.assert_array_equal(back[k], v)


def test_safetensors_header_is_the_published_format(tmp_path):
    p = tmp_path / "x.safetensors"
    save_safetensors(p, {"w": np.ones((2, 2), np.float32)})
    raw = p.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert header["w"] == {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    assert len(raw) == 8 + n + 16 and n % 8 == 0


def test_safetensors_readable_by_the_reference_library(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    p = tmp_path / "x.safetensors"
    w = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    save_safetensors(p, {"transformer.wte.weight": w})
    np.testing.assert_array_equal(st.load_file(str(p))["transformer.wte.weight"], w)


@pytest.mark.parametrize("cut", [4, 20, -3])
def test_truncated_file_is_a_clear_error(tmp_path, cut):
    p = tmp_path / "x.safetensors"
    save_safetensors(p, {"w": np.ones((8, 8), np.float32)})
    raw = p.read_bytes()
    p.write_bytes(raw[:cut])
    with pytest.raises(CheckpointError, match="truncated|corrupted"):
        load_safetensors(p)


def test_garbage_header_is_a_clear_error(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(struct.pack("<Q", 4) + b"\xff\xfe{]" + b"\0" * 8)
    with pytest.raises(CheckpointError, match="corrupted"):
        load_safetensors(p)


def _raw_safetensors(path, header: dict, data: bytes):
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)


@pytest.mark.parametrize("header,data", [
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},       # two tensors over the same bytes
      "v": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12),   # a gap before the data
    ({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8),    # a negative dimension
    ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),     # shape and byte count disagree
    ({"__metadata__": {"step": 3}, "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
    ({"w": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),      # no such dtype
])
def test_malformed_headers_are_refused_by_the_reference_reader(tmp_path, header, data):
    p = tmp_path / "x.safetensors"
    _raw_safetensors(p, header, data)
    with pytest.raises(CheckpointError, match="x.safetensors is truncated or corrupted"):
        load_safetensors(p)


def _ckpt(step):
    return {"w": np.full((2,), step, np.float32)}, {"m": np.zeros(2, np.float32)}, {"config": {"x": 1}, "step": step}


def test_checkpoint_round_trip_and_replacement(tmp_path):
    save_checkpoint(tmp_path, *_ckpt(1))
    save_checkpoint(tmp_path, *_ckpt(2))
    m, o, meta = load_checkpoint(tmp_path)
    assert meta["step"] == 2 and m["w"][0] == 2
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # no temp or old folders left


def test_crash_between_renames_leaves_the_old_checkpoint_loadable(tmp_path):
    save_checkpoint(tmp_path, *_ckpt(1))
    # simulate a crash after ckpt -> ckpt.old but before ckpt.tmp -> ckpt
    os.replace(tmp_path / "ckpt", tmp_path / "ckpt.old")
    os.makedirs(tmp_path / "ckpt.tmp")
    m, _, meta = load_checkpoint(tmp_path)
    assert meta["step"] == 1


def test_missing_checkpoint_names_the_folder(tmp_path):
    with pytest.raises(CheckpointError, match=str(tmp_path)):
        load_checkpoint(tmp_path)


def test_no_pickle_anywhere_in_the_package():
    import tinygrad_lm
    root = os.path.dirname(tinygrad_lm.__file__)
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(".py"):
                src = open(os.path.join(dirpath, f), encoding="utf-8").read()
                assert "import pickle" not in src and "allow_pickle=True" not in src, f


# ------------------------------------------------------------------ the format: written by the package
def test_failed_save_keeps_the_old_checkpoint_and_leaves_no_temporary_folder(tmp_path):
    save_checkpoint(tmp_path, *_ckpt(1))
    m, o, meta = _ckpt(2)
    with pytest.raises(CheckpointError, match="unsupported dtype"):
        save_checkpoint(tmp_path, {**m, "bad": np.array(["text"])}, o, meta)
    assert sorted(os.listdir(tmp_path)) == ["ckpt"] and load_checkpoint(tmp_path)[2]["step"] == 1


@pytest.mark.parametrize("where", ["model", "optimizer"])
def test_non_finite_arrays_are_never_saved(tmp_path, where):
    save_checkpoint(tmp_path, *_ckpt(1))
    m, o, meta = _ckpt(2)
    bad = {"w": np.array([1.0, np.nan], np.float32)}
    with pytest.raises(CheckpointError, match=f"{where}: tensor 'w' holds 1 non-finite"):
        save_checkpoint(tmp_path, bad if where == "model" else m, bad if where == "optimizer" else o, meta)
    assert sorted(os.listdir(tmp_path)) == ["ckpt"] and load_checkpoint(tmp_path)[2]["step"] == 1


def _legacy_save_safetensors(path, tensors, metadata):
    """The byte layout of tinygrad_lm's own writer before it used the safetensors package:
    header in insertion order, __metadata__ last, padded with spaces to 8 bytes."""
    names = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int64): "I64"}
    header, offset, blobs = {}, 0, []
    for name, arr in tensors.items():
        arr = np.asarray(arr, order="C")
        header[name] = {"dtype": names[arr.dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
        blobs.append(arr.tobytes())
    header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob + b"".join(blobs))


def test_checkpoints_written_by_the_old_writer_still_load_sample_and_resume(tmp_path, capsys):
    from tinygrad_lm.cli import main
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. " * 60, encoding="utf-8")
    tiny = ["--data", corpus, "--n-layer", "1", "--n-head", "2", "--n-embd", "8", "--block-size", "8", "--batch-size", "4",
            "--eval-interval", "5", "--eval-iters", "1", "--warmup-iters", "1", "--lr-decay-iters", "10",
            "--no-progress", "--sample-tokens", "0"]
    new, old = tmp_path / "new", tmp_path / "old"
    assert main([str(a) for a in ["train", "--out-dir", new, "--max-iters", "10", *tiny]]) == 0
    assert main([str(a) for a in ["train", "--out-dir", old, "--max-iters", "5", *tiny]]) == 0
    model, optim, meta = load_checkpoint(old)
    ckpt = old / "ckpt"
    _legacy_save_safetensors(ckpt / "model.safetensors", model, {"step": meta["step"], "format": "pt"})
    _legacy_save_safetensors(ckpt / "optimizer.safetensors", optim, {"step": meta["step"], "format": "tinygrad_lm"})
    model2, optim2, _ = load_checkpoint(old)
    for a, b in ((model, model2), (optim, optim2)):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    assert main(["sample", "--out-dir", str(old), "--prompt", "the ", "--max-new-tokens", "5"]) == 0
    assert main([str(a) for a in ["train", "--out-dir", old, "--max-iters", "10", "--resume", *tiny]]) == 0
    capsys.readouterr()
    assert (old / "loss.csv").read_bytes() == (new / "loss.csv").read_bytes()  # resumed bit for bit


# ------------------------------------------------------------------ checks before a model is built
from tinygrad_lm.checkpoint import (MODEL_KEYS, build_model, load_model, load_training_checkpoint,  # noqa: E402
                                    model_arrays, save_safetensors)
from tinygrad_lm.data import CharTokenizer  # noqa: E402

CONFIG = dict(n_layer=2, n_head=2, n_embd=8, block_size=4, dropout=0.0, bias=True, gelu_approximate="tanh")


@pytest.fixture
def gpt_ckpt(tmp_path):
    """A small real GPT checkpoint -> (out_dir, model arrays, meta); `write(arrays, meta)` replaces it."""
    tok = CharTokenizer.from_text("abcdefgh ")
    config = dict(vocab_size=tok.vocab_size, **CONFIG)
    arrays = model_arrays(build_model(config))
    meta = {"config": config, "tokenizer": tok.to_dict(), "step": 3, "dtype": "float32"}
    save_checkpoint(tmp_path, arrays, {}, meta)
    return tmp_path, arrays, meta


def rewrite(out_dir, arrays=None, meta=None):
    """Overwrite the files inside ckpt/ in place (no checks: a corrupted or foreign checkpoint)."""
    if arrays is not None:
        save_safetensors(out_dir / "ckpt" / "model.safetensors", arrays, {"step": 3, "format": "pt"})
    if meta is not None:
        (out_dir / "ckpt" / "meta.json").write_text(json.dumps(meta))


def refused(out_dir, *match):
    with pytest.raises(CheckpointError) as e:
        load_model(out_dir)
    msg = str(e.value)
    assert "\n" not in msg and all(m in msg for m in match), msg


def test_a_valid_checkpoint_builds_the_model_it_holds(gpt_ckpt):
    out, arrays, meta = gpt_ckpt
    model, tok, meta2 = load_model(out)
    assert meta2 == meta and tok.vocab_size == meta["config"]["vocab_size"] and not model.training
    for k, v in model_arrays(model).items():
        np.testing.assert_array_equal(v, arrays[k])


def test_state_dict_shapes_are_a_built_models(gpt_ckpt):
    from tinygrad_lm.models.gpt import GPT, GPTConfig, state_dict_shapes
    for bias in (True, False):
        cfg = GPTConfig(vocab_size=7, block_size=5, n_layer=3, n_head=2, n_embd=6, bias=bias)
        built = {k: v.shape for k, v in GPT(cfg).state_dict().items()}
        assert list(state_dict_shapes(cfg).items()) == list(built.items())


def test_model_keys_are_the_gpt_config_fields():
    from dataclasses import fields
    from tinygrad_lm.models.gpt import GPTConfig
    assert set(MODEL_KEYS) == {f.name for f in fields(GPTConfig)} - {"vocab_size"}


def test_wrong_shape_is_refused_naming_file_and_tensor(gpt_ckpt):
    out, arrays, meta = gpt_ckpt
    rewrite(out, {**arrays, "transformer.wpe.weight": np.zeros((5, 8), np.float32)})
    refused(out, "model.safetensors", "'transformer.wpe.weight'", "(5, 8)", "(4, 8)")


def test_config_that_does_not_match_the_weights_is_refused(gpt_ckpt):
    out, arrays, meta = gpt_ckpt
    rewrite(out, meta={**meta, "config": {**meta["config"], "n_embd": 16}})
    refused(out, "model.safetensors", "has shape", "needs")


def test_missing_tensor_is_refused(gpt_ckpt):
    out, arrays, meta = gpt_ckpt
    rewrite(out, {k: v for k, v in arrays.items() if k != "transformer.h.1.mlp.c_fc.bias"})
    refused(out, "model.safetensors", "'transformer.h.1.mlp.c_fc.bias' is missing")


def test_extra_tensor_is_refused(gpt_ckpt):
    out, arrays, meta = gpt_ckpt
    rewrite(out, {**arrays, "transformer.h.2.ln_1.weight": np.ones(8, np.float32)})
    refused(out, "model.safetensors", "unexpected tensor 'transformer.h.2.ln_1.weight'")


def test_a_huge_n_layer_is_refused_at_once(gpt_ckpt):
    out, arrays, meta = gpt_ckpt
    rewrite(out, meta={**meta, "config": {**meta["config"], "n_layer": 10**9}})
    # before any tensor is read: the memory the config asks for (tests/test_fault_resources.py)
    refused(out, "meta.json", "n_layer 1000000000", "of memory")


def test_unknown_dtype_is_refused_by_name(gpt_ckpt):
    out, arrays, meta = gpt_ckpt
    path = out / "ckpt" / "model.safetensors"
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header["transformer.ln_f.bias"]["dtype"] = "BF16"   # 8 values x 2 bytes: a different byte count
    header["transformer.ln_f.bias"]["shape"] = [16]
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n:])
    refused(out, "model.safetensors", "'transformer.ln_f.bias'", "BF16")


def test_wrong_dtype_for_the_model_is_refused(gpt_ckpt):
    out, arrays, meta = gpt_ckpt
    rewrite(out, {**arrays, "transformer.ln_f.weight": arrays["transformer.ln_f.weight"].astype(np.float64)})
    refused(out, "model.safetensors", "'transformer.ln_f.weight' is float64", "float32")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused_at_load(gpt_ckpt, value):
    out, arrays, meta = gpt_ckpt
    w = arrays["transformer.h.0.attn.c_proj.weight"].copy()
    w[1, 2] = value
    rewrite(out, {**arrays, "transformer.h.0.attn.c_proj.weight": w})
    refused(out, "model.safetensors", "'transformer.h.0.attn.c_proj.weight' holds 1 non-finite")


def test_untied_embedding_and_head_are_refused(gpt_ckpt):
    out, arrays, meta = gpt_ckpt
    rewrite(out, {**arrays, "lm_head.weight": arrays["lm_head.weight"] + 1})
    refused(out, "model.safetensors", "'lm_head.weight'", "tied")


@pytest.mark.parametrize("key,value,match", [
    ("n_layer", -1, "positive integer"), ("n_head", 3, "divisible"), ("block_size", "4", "positive integer"),
    ("dropout", 1.5, "[0, 1)"), ("bias", "yes", "true or false"), ("gelu_approximate", "relu", "'tanh' or 'none'"),
    ("colour", 1, "unknown key 'colour'"),
])
def test_bad_model_config_is_refused_naming_the_key(gpt_ckpt, key, value, match):
    out, arrays, meta = gpt_ckpt
    rewrite(out, meta={**meta, "config": {**meta["config"], key: value}})
    refused(out, "meta.json", match)


def test_config_without_a_required_key_is_refused(gpt_ckpt):
    out, arrays, meta = gpt_ckpt
    rewrite(out, meta={**meta, "config": {k: v for k, v in meta["config"].items() if k != "n_embd"}})
    refused(out, "meta.json", "no 'n_embd'")


def test_tokenizer_must_match_the_embedding_rows(gpt_ckpt):
    out, arrays, meta = gpt_ckpt
    rewrite(out, meta={**meta, "tokenizer": CharTokenizer.from_text("xyz").to_dict()})
    refused(out, "meta.json", "tokenizer has 3 tokens", f"vocab_size is {meta['config']['vocab_size']}")
    rewrite(out, meta={**meta, "tokenizer": {"type": "morse"}})
    refused(out, "meta.json", "bad tokenizer")


def test_unknown_model_dtype_is_refused(gpt_ckpt):
    out, arrays, meta = gpt_ckpt
    rewrite(out, meta={**meta, "dtype": "float8"})
    refused(out, "meta.json", "'float8'")


def test_optimizer_arrays_must_be_exactly_those_meta_json_names(gpt_ckpt):
    out, arrays, meta = gpt_ckpt
    training = {**meta, "batch_rng": {}, "model_rng": {}, "optimizer": {"state": {"0": {"m": {"__array__": "state.0.m"}}}}}
    save_checkpoint(out, arrays, {"state.0.m": np.zeros(2, np.float32)}, training)
    assert load_training_checkpoint(out)[3]["state"]["0"]["m"].shape == (2,)
    save_checkpoint(out, arrays, {}, training)
    with pytest.raises(CheckpointError, match="optimizer.safetensors: optimizer array 'state.0.m' is missing"):
        load_training_checkpoint(out)
    save_checkpoint(out, arrays, {"state.0.m": np.zeros(2, np.float32), "stray": np.ones(1, np.float32)}, training)
    with pytest.raises(CheckpointError, match="optimizer.safetensors: array 'stray' is not part"):
        load_training_checkpoint(out)


def test_a_weights_only_checkpoint_cannot_be_resumed(gpt_ckpt):
    out, arrays, meta = gpt_ckpt
    with pytest.raises(CheckpointError, match="meta.json has no 'optimizer'"):
        load_training_checkpoint(out)


def test_a_fifo_is_not_read_as_a_checkpoint_file(gpt_ckpt):
    out, arrays, meta = gpt_ckpt
    path = out / "ckpt" / "model.safetensors"
    path.unlink()
    os.mkfifo(path)
    refused(out, "model.safetensors", "not a regular file")


def test_sample_and_eval_do_not_import_the_training_module(gpt_ckpt, tmp_path):
    import subprocess
    import sys
    out, _, _ = gpt_ckpt
    text = tmp_path / "text.txt"
    text.write_text("abcdefgh " * 20, encoding="utf-8")
    code = ("import sys\nfrom tinygrad_lm.cli import main\n"
            f"assert main(['sample', '--out-dir', {str(out)!r}, '--prompt', 'ab', '--max-new-tokens', '3']) == 0\n"
            f"assert main(['eval', '--out-dir', {str(out)!r}, '--data', {str(text)!r}]) == 0\n"
            "print('tinygrad_lm.train' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False"  # (train_config, the parser's preset table, is no loop)
