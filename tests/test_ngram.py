"""Tests for the counting n-gram baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygrad_lm.data import CharTokenizer, DataError, builtin_corpus
from tinygrad_lm.ngram import NGramModel, ngram_table, word_ids, word_tokenize

# a=0, b=1, c=2; V = 3
SEQ = [0, 1, 0, 1, 2, 0, 1, 1]


def test_bigram_probability_matches_hand_count():
    k, v = 0.5, 3
    m = NGramModel(2, k=k).fit(SEQ, v)
    # Bigrams: ab ba ab bc ca ab bb -> C(ab)=3, C(a as context)=3,
    # C(b as context)=3 (ba, bc, bb), C(bc)=1, C(cc)=0, C(c as context)=1.
    assert m.prob([0], 1) == pytest.approx((3 + k) / (3 + k * v))
    assert m.prob([0], 0) == pytest.approx((0 + k) / (3 + k * v))
    assert m.prob([1], 2) == pytest.approx((1 + k) / (3 + k * v))
    assert m.prob([2], 2) == pytest.approx((0 + k) / (1 + k * v))
    # log_prob scores positions 1..7 with exactly these estimates.
    expected = []
    for prev, w in zip(SEQ, SEQ[1:]):
        c_pair = sum(1 for p, q in zip(SEQ, SEQ[1:]) if (p, q) == (prev, w))
        c_ctx = sum(1 for p in SEQ[:-1] if p == prev)
        expected.append(math.log((c_pair + k) / (c_ctx + k * v)))
    np.testing.assert_allclose(m.log_prob(SEQ), expected)


def test_trigram_hand_count_and_unseen_context():
    k, v = 1.0, 3
    m = NGramModel(3, k=k).fit(SEQ, v)
    # Trigrams: aba bab abc bca cab abb -> C(ab*)=3, C(abc)=1.
    assert m.prob([0, 1], 2) == pytest.approx((1 + k) / (3 + k * v))
    # Context "cc" never occurs: uniform 1/V.
    assert m.prob([2, 2], 0) == pytest.approx(1 / v)
    res = m.evaluate([2, 2, 0, 0, 1])  # contexts cc, ca, aa -> 2 unseen of 3
    assert res["n_tokens"] == 3
    assert res["unseen_context_frac"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("k", [1.0, 0.01])
def test_probabilities_sum_to_one(n, k):
    ids = np.random.default_rng(n).integers(0, 7, size=300)
    m = NGramModel(n, k=k).fit(ids, 7)
    for ctx in ([], [1, 2, 3], [6, 6, 6], ids[:10].tolist()):
        ctx = (list(ids[: n - 1]) + ctx)[-(n - 1) :] if n > 1 else []
        p = m.next_token_probs(ctx)
        assert p.shape == (7,)
        assert p.sum() == pytest.approx(1.0)


def test_unigram_k0_is_empirical_frequency():
    m = NGramModel(1, k=0.0).fit(SEQ, 3)
    counts = np.bincount(SEQ, minlength=3)
    np.testing.assert_allclose(m.next_token_probs([]), counts / len(SEQ))
    res = m.evaluate(SEQ)
    expected = -np.mean(np.log(counts[SEQ] / len(SEQ)))
    assert res["nll"] == pytest.approx(expected)
    assert res["perplexity"] == pytest.approx(math.exp(expected))
    # An id never seen in training has probability 0 under k = 0.
    assert NGramModel(1, k=0.0).fit([0, 1], 3).evaluate([2])["nll"] == math.inf


@pytest.fixture(scope="module")
def char_data():
    text = builtin_corpus()[:120_000]
    tok = CharTokenizer.from_text(text)
    ids = tok.encode_array(text)
    return ids[:100_000], ids[100_000:], tok.vocab_size


def test_unseen_context_zero_on_training_data(char_data):
    train, _, v = char_data
    for n in (1, 2, 3, 5):
        res = NGramModel(n, k=0.1).fit(train[:20_000], v).evaluate(train[:20_000])
        assert res["unseen_context_frac"] == 0.0


def test_unseen_context_grows_with_n(char_data):
    train, val, v = char_data
    rows = ngram_table(train, val, v, ns=(1, 2, 3, 4, 5, 6), k=0.1)
    fracs = [r["unseen_context_frac"] for r in rows]
    assert fracs[0] == 0.0
    assert all(a <= b for a, b in zip(fracs, fracs[1:]))
    assert fracs[-1] > fracs[2] > 0
    # Same positions scored by every order, so losses are comparable.
    assert len({r["n_tokens"] for r in rows}) == 1
    # Context helps at low orders on real text.
    assert rows[2]["nll"] < rows[1]["nll"] < rows[0]["nll"]
    for r in rows:
        assert r["perplexity"] == pytest.approx(math.exp(r["nll"]))


def test_uniform_model_perplexity_is_vocab_size(char_data):
    train, val, v = char_data
    for n in (1, 3):
        res = NGramModel(n, k=1e12).fit(train, v).evaluate(val)
        assert res["perplexity"] == pytest.approx(v, rel=1e-3)


def test_word_units_with_unk():
    assert word_tokenize("Hello, world! x=1") == ["Hello", ",", "world", "!", "x", "=", "1"]
    train, val, vocab = word_ids("the cat sat . the cat", "the dog sat")
    assert vocab == ["<unk>", ".", "cat", "sat", "the"]
    assert [vocab[i] for i in train] == ["the", "cat", "sat", ".", "the", "cat"]
    assert val.tolist() == [4, 0, 3]
    res = NGramModel(2).fit(train, len(vocab)).evaluate(val)
    assert res["n_tokens"] == 2 and res["unseen_context_frac"] == pytest.approx(0.5)


def test_large_vocab_high_order_does_not_overflow():
    # V^n = (10^6)^5 >> 2^63: a base-V key would overflow; the trie keys must not.
    v = 1_000_000
    rng = np.random.default_rng(0)
    ids = rng.integers(0, v, size=2000)
    ids[1000:1010] = ids[:10]
    m = NGramModel(5, k=1.0).fit(ids, v)
    assert m.prob(ids[:4], ids[4]) == pytest.approx((2 + 1) / (2 + v))  # C(ctx, w) = C(ctx) = 2
    assert m.prob([v - 1, v - 2, v - 3, v - 4], 0) == pytest.approx(1 / v)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 4), min_size=5, max_size=60),
    st.lists(st.integers(0, 4), min_size=5, max_size=30),
    st.integers(1, 4),
    st.floats(0.01, 5.0),
)
def test_matches_bruteforce_counts(train, val, n, k):
    from collections import Counter

    v = 5
    grams = Counter(tuple(train[i : i + n]) for i in range(len(train) - n + 1))
    ctxs = Counter(g[:-1] for g in grams.elements())
    expected = [
        math.log((grams[tuple(val[t - n + 1 : t + 1])] + k) / (ctxs[tuple(val[t - n + 1 : t])] + k * v))
        for t in range(n - 1, len(val))
    ]
    np.testing.assert_allclose(NGramModel(n, k=k).fit(train, v).log_prob(val), expected, rtol=1e-12)


def test_errors():
    with pytest.raises(ValueError):
        NGramModel(0)
    with pytest.raises(ValueError):
        NGramModel(2, k=-1)
    with pytest.raises(DataError, match="needs at least 3"):
        NGramModel(3).fit([0, 1], 2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        NGramModel(1).fit([0, 5], 2)
    with pytest.raises(RuntimeError):
        NGramModel(1).evaluate([0])
