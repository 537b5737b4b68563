"""Tests for corpus loading, the train/val split and batching."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tinygrad_lm.data import (
    CORPUS_NAME,
    DataError,
    builtin_corpus,
    get_batch,
    iter_eval_batches,
    load_text,
    num_eval_tokens,
    train_val_split,
)

# ---------------------------------------------------------------- corpus


def test_builtin_corpus_is_pydoc_topics_and_deterministic():
    from pydoc_data.topics import topics

    text = builtin_corpus()
    assert CORPUS_NAME == "pydoc-topics"
    assert text == builtin_corpus()
    assert text == "\n\n".join(topics[k] for k in sorted(topics))
    assert len(text) > 100_000


def test_load_text_reads_utf8_exactly(tmp_path):
    p = tmp_path / "t.txt"
    content = "héllo\r\nwörld 😀\n"
    p.write_bytes(content.encode("utf-8"))
    assert load_text(p) == content
    assert load_text(str(p)) == content
    p.write_bytes(b"\xef\xbb\xbf" + b"bom")
    assert load_text(p) == "bom"


def _error(path) -> str:
    with pytest.raises(DataError) as ei:
        load_text(path)
    msg = str(ei.value)
    assert str(path) in msg and "\n" not in msg
    return msg


def test_load_text_missing(tmp_path):
    assert "no such file" in _error(tmp_path / "nope.txt")


def test_load_text_directory(tmp_path):
    assert "directory" in _error(tmp_path)


def test_load_text_empty(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_bytes(b"")
    assert "empty" in _error(p)


def test_load_text_not_utf8_gives_byte_offset(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("caf".encode() + "é".encode("latin-1") + b" ok")
    msg = _error(p)
    assert "UTF-8" in msg and "byte offset 3" in msg and "0xe9" in msg


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read anything")
def test_load_text_unreadable(tmp_path):
    p = tmp_path / "secret.txt"
    p.write_text("x")
    p.chmod(0)
    try:
        assert "permission" in _error(p)
    finally:
        p.chmod(0o644)


def test_load_text_unreadable_simulated(tmp_path, monkeypatch):
    # Runs even as root (where chmod 0 does not stop reads).
    p = tmp_path / "locked.txt"
    p.write_text("x")

    def deny(path):
        raise PermissionError(13, "Permission denied", str(path))

    import tinygrad_lm.data.corpus as corpus
    monkeypatch.setattr(corpus, "open_regular", deny)  # the open load_text reads through
    assert "permission denied" in _error(p)


def test_data_error_is_value_error():
    assert issubclass(DataError, ValueError)


# ---------------------------------------------------------------- split


def test_train_val_split_is_90_10_and_deterministic():
    ids = np.arange(1000, dtype=np.int64)
    train, val = train_val_split(ids)
    assert len(train) == 900 and len(val) == 100
    np.testing.assert_array_equal(train, ids[:900])
    np.testing.assert_array_equal(val, ids[900:])
    t2, v2 = train_val_split(ids)
    np.testing.assert_array_equal(train, t2)
    np.testing.assert_array_equal(val, v2)
    t3, v3 = train_val_split(np.arange(11), frac=0.5)
    assert t3.tolist() == [0, 1, 2, 3, 4] and v3.tolist() == list(range(5, 11))
    with pytest.raises(ValueError):
        train_val_split(ids, frac=0.0)


# ---------------------------------------------------------------- batches


def test_get_batch_shapes_and_shift():
    data = np.random.default_rng(1).integers(0, 50, size=500).astype(np.int32)
    x, y = get_batch(data, batch_size=8, block_size=16, rng=np.random.default_rng(0))
    assert x.shape == y.shape == (8, 16)
    assert x.dtype == y.dtype == np.int64
    # Every row is a window of data, and y is the same window shifted by one.
    # Reproduce the offsets from an identically seeded generator.
    offsets = np.random.default_rng(0).integers(0, len(data) - 16, size=8)
    for b, i in enumerate(offsets):
        np.testing.assert_array_equal(x[b], data[i : i + 16])
        np.testing.assert_array_equal(y[b], data[i + 1 : i + 17])
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])


def test_get_batch_deterministic_with_seed():
    data = np.arange(1000)
    a = get_batch(data, 4, 32, np.random.default_rng(123))
    b = get_batch(data, 4, 32, np.random.default_rng(123))
    c = get_batch(data, 4, 32, np.random.default_rng(124))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_get_batch_minimum_length_and_error():
    x, y = get_batch(np.arange(9), 3, 8, np.random.default_rng(0))  # exactly block_size + 1
    assert (x == np.arange(8)).all() and (y == np.arange(1, 9)).all()
    with pytest.raises(DataError, match=r"corpus has 8 tokens; need at least block_size \+ 1 = 9"):
        get_batch(np.arange(8), 3, 8, np.random.default_rng(0))


def test_iter_eval_batches_cover_split_exactly():
    data = np.arange(103)
    batches = list(iter_eval_batches(data, batch_size=4, block_size=10))
    xs = np.concatenate([x for x, _ in batches])
    ys = np.concatenate([y for _, y in batches])
    assert [len(x) for x, _ in batches] == [4, 4, 2]
    assert xs.shape == (10, 10) and xs.dtype == np.int64
    # Contiguous, non-overlapping: flattened inputs/targets are data[:100] / data[1:101].
    np.testing.assert_array_equal(xs.ravel(), data[:100])
    np.testing.assert_array_equal(ys.ravel(), data[1:101])
    assert num_eval_tokens(len(data), 10) == ys.size == 100
    with pytest.raises(DataError, match="need at least"):
        list(iter_eval_batches(np.arange(5), 2, 5))
