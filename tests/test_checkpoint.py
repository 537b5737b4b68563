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
