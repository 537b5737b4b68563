"""Tests for the character and byte-level BPE tokenizers."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygrad_lm.data import (
    SPLIT_PATTERN,
    BPETokenizer,
    CharTokenizer,
    DataError,
    Tokenizer,
    TokenizerError,
    build_tokenizer,
    builtin_corpus,
    load_tokenizer,
    tokenizer_from_dict,
)

SAMPLE = builtin_corpus()[:20_000] + "\nnaïve café — Ωmega 😀🎉 日本語\r\n\ttabs  and   spaces\n"

# Text strategy: arbitrary Unicode (emoji, CJK, combining marks, newlines)
# except lone surrogates, which are not encodable as UTF-8.
unicode_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200
)


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.from_text(SAMPLE, 400)


@pytest.fixture(scope="module")
def bpe_raw() -> BPETokenizer:
    """Trained without regex pre-split (merges may cross word boundaries)."""
    return BPETokenizer.from_text(SAMPLE, 350, pattern=None)


# ---------------------------------------------------------------- char


def test_char_vocab_is_sorted_set():
    tok = CharTokenizer.from_text("hello world")
    assert tok.chars == sorted(set("hello world"))
    assert tok.vocab_size == 8
    assert tok.encode("hello") == [tok.chars.index(c) for c in "hello"]
    ids = tok.encode_array("hello")
    assert ids.dtype == np.int64 and ids.tolist() == tok.encode("hello")


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_char_round_trip(data):
    vocab = data.draw(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30))
    tok = CharTokenizer.from_text(vocab)
    s = data.draw(st.text(alphabet=st.sampled_from(sorted(set(vocab))), max_size=200))
    assert tok.decode(tok.encode(s)) == s
    assert tok.decode(tok.encode_array(s)) == s


def test_char_unknown_character_error_names_char_and_position():
    tok = CharTokenizer.from_text("abc ")
    with pytest.raises(TokenizerError) as ei:
        tok.encode("abcΩ a😀")
    msg = str(ei.value)
    assert "'Ω' (at 3)" in msg and "'😀' (at 6)" in msg
    assert "vocabulary" in msg and "\n" not in msg
    assert isinstance(ei.value, ValueError) and isinstance(ei.value, DataError)


def test_char_unknown_characters_message_is_bounded():
    tok = CharTokenizer.from_text("a")
    with pytest.raises(TokenizerError, match="and 5 more"):
        tok.encode("bcdefghijk")


def test_char_decode_rejects_out_of_range():
    tok = CharTokenizer.from_text("ab")
    with pytest.raises(TokenizerError, match="out of range"):
        tok.decode([0, 2])


def test_char_encode_is_fast_on_one_megabyte():
    import time

    text = (builtin_corpus() * 3)[:1_000_000]
    t0 = time.perf_counter()
    tok = CharTokenizer.from_text(text)
    ids = tok.encode_array(text)
    elapsed = time.perf_counter() - t0
    assert len(ids) == len(text)
    assert elapsed < 1.0  # typically ~0.05 s; generous bound for slow CI


def test_char_dict_round_trip_and_validation(tmp_path):
    tok = CharTokenizer.from_text("zyx\n\tΩ😀")
    d = tok.to_dict()
    json.dumps(d)
    assert tokenizer_from_dict(d) == tok
    p = tmp_path / "tok.json"
    tok.save(p)
    assert CharTokenizer.load(p) == tok and Tokenizer.load(p) == tok
    with pytest.raises(TokenizerError, match="sorted"):
        tokenizer_from_dict({"type": "char", "chars": "ba"})


# ---------------------------------------------------------------- BPE


def test_bpe_vocab_size_respected(bpe):
    assert bpe.vocab_size == 400
    assert len(bpe.merges) == 144
    ids = bpe.encode_array(SAMPLE)
    assert ids.min() >= 0 and ids.max() < 400


def test_bpe_compresses_training_text(bpe, bpe_raw):
    for tok in (bpe, bpe_raw):
        ids = tok.encode(SAMPLE)
        assert len(ids) < len(SAMPLE.encode("utf-8"))
        assert tok.decode(ids) == SAMPLE


def test_bpe_rejects_small_vocab():
    with pytest.raises(TokenizerError, match="255"):
        BPETokenizer().train("hello", 255)
    with pytest.raises(TokenizerError, match="vocab_size"):
        build_tokenizer("bpe", "hello")


def test_bpe_stops_when_no_pair_repeats():
    tok = BPETokenizer.from_text("abcd", 300)
    assert tok.vocab_size == 256  # no pair occurs twice
    tok = BPETokenizer.from_text("abab", 300, pattern=None)
    assert tok.merges == [(ord("a"), ord("b"))]


@settings(max_examples=150, deadline=None)
@given(unicode_text)
def test_bpe_round_trip_arbitrary_text(bpe, bpe_raw, s):
    for tok in (bpe, bpe_raw):
        ids = tok.encode(s)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == s


@settings(max_examples=100, deadline=None)
@given(unicode_text)
def test_split_pattern_covers_every_character(s):
    assert "".join(re.findall(SPLIT_PATTERN, s)) == s


def test_bpe_decode_arbitrary_ids_replaces_bad_bytes(bpe):
    # A lone continuation byte is not UTF-8; decode must not raise.
    assert bpe.decode([0x80, ord("a")]) == "\ufffda"
    with pytest.raises(TokenizerError, match="out of range"):
        bpe.decode([bpe.vocab_size])


def test_bpe_training_is_deterministic():
    a = BPETokenizer.from_text(SAMPLE[:5000], 300)
    b = BPETokenizer.from_text(SAMPLE[:5000], 300)
    assert a.merges == b.merges and a.to_dict() == b.to_dict()


def test_bpe_save_load_round_trip(bpe, bpe_raw, tmp_path):
    for i, tok in enumerate((bpe, bpe_raw)):
        p = tmp_path / f"bpe{i}.json"
        tok.save(p)
        loaded = load_tokenizer(p)
        assert isinstance(loaded, BPETokenizer)
        assert loaded == tok
        assert loaded.encode(SAMPLE) == tok.encode(SAMPLE)
        # Plain JSON, no pickle; only the target file (no temp left behind).
        assert json.loads(p.read_text(encoding="utf-8"))["type"] == "bpe"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bpe0.json", "bpe1.json"]
    with pytest.raises(TokenizerError, match="not 'char'"):
        CharTokenizer.load(tmp_path / "bpe0.json")


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(TokenizerError, match="no such file"):
        load_tokenizer(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(TokenizerError, match="invalid JSON"):
        load_tokenizer(bad)
    with pytest.raises(TokenizerError, match="unknown tokenizer type"):
        tokenizer_from_dict({"type": "wordpiece"})
    with pytest.raises(TokenizerError, match="does not exist yet"):
        tokenizer_from_dict({"type": "bpe", "merges": [[256, 1]]})


# A straightforward pure-Python BPE (minbpe style) to check the vectorized one.


def _ref_merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _ref_train(text, vocab_size, pattern):
    chunks = re.findall(pattern, text) if pattern else [text]
    counts = Counter(chunks)
    seqs = {c: list(c.encode("utf-8")) for c in counts}
    merges = []
    for new_id in range(256, vocab_size):
        stats = Counter()
        for c, seq in seqs.items():
            for p in zip(seq, seq[1:]):
                stats[p] += counts[c]
        if not stats:
            break
        best = min(stats, key=lambda p: (-stats[p], p))  # most frequent, then smallest pair
        if stats[best] < 2:
            break
        merges.append(best)
        seqs = {c: _ref_merge(seq, best, new_id) for c, seq in seqs.items()}
    return merges


def _ref_encode(text, merges, pattern):
    rank = {p: i for i, p in enumerate(merges)}
    out = []
    for chunk in re.findall(pattern, text) if pattern else [text]:
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: rank.get(p, float("inf")))
            if pair not in rank:
                break
            ids = _ref_merge(ids, pair, 256 + rank[pair])
        out.extend(ids)
    return out


@pytest.mark.parametrize("pattern", [SPLIT_PATTERN, None])
def test_bpe_matches_reference_implementation(pattern):
    text = "aaaa aaa aa a! bbbbbb abab " * 3 + SAMPLE[:1500]
    tok = BPETokenizer.from_text(text, 300, pattern=pattern)
    assert tok.merges == _ref_train(text, 300, pattern)
    probe = "aaaaaaa abababa  the  lambda: x?\n\n" + SAMPLE[1500:2500]
    assert tok.encode(probe) == _ref_encode(probe, tok.merges, pattern)


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet="ab \n", max_size=60), st.text(alphabet="ab \n", max_size=60))
def test_bpe_overlapping_pairs_match_reference(train, probe):
    for pattern in (SPLIT_PATTERN, None):
        tok = BPETokenizer.from_text(train, 270, pattern=pattern)
        assert tok.merges == _ref_train(train, 270, pattern)
        assert tok.encode(probe) == _ref_encode(probe, tok.merges, pattern)
        assert tok.decode(tok.encode(probe)) == probe


def test_build_tokenizer():
    assert isinstance(build_tokenizer("char", "abc"), CharTokenizer)
    assert build_tokenizer("bpe", "abab abab", 260).vocab_size <= 260
    with pytest.raises(TokenizerError, match="unknown tokenizer kind"):
        build_tokenizer("word", "abc")
