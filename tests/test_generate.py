"""Decoding strategies on a model whose probabilities are known exactly."""
import numpy as np
import pytest

from tinygrad_lm import Tensor
from tinygrad_lm.generate import filter_logits, generate, sequence_logprob


class Bigram:
    """p(next | prev) = table[prev]: a model whose every probability we know."""

    def __init__(self, table, block_size=8):
        self.logits = np.log(np.asarray(table, dtype=np.float64))
        self.config = type("C", (), {"block_size": block_size})()
        self.training = False

    def parameters(self):
        return []

    def eval(self):
        self.training = False

    def train(self, mode=True):
        self.training = mode

    def __call__(self, idx, targets=None):
        return Tensor(self.logits[idx.data]), None


# token 0 -> 1 with 0.6, -> 2 with 0.4; token 1 -> 1 with 0.5 (repeats); token 2 -> 3 with 1.0; 3 -> 3 with 1.0
TABLE = [[0.0, 0.6, 0.4, 0.0], [0.0, 0.5, 0.25, 0.25], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]]
TABLE = [[max(p, 1e-12) for p in row] for row in TABLE]


def test_greedy_takes_the_argmax_each_step_and_repeats():
    g = generate(Bigram(TABLE), [0], 4, strategy="greedy")[0]
    assert g.tokens == [1, 1, 1, 1]
    assert g.logprob == pytest.approx(np.log(0.6) + 3 * np.log(0.5), abs=1e-9)


def test_beam_search_finds_the_more_probable_sequence_greedy_misses():
    model = Bigram(TABLE)
    greedy = generate(model, [0], 3, strategy="greedy")[0]
    beams = generate(model, [0], 3, strategy="beam", beam_width=2)
    # 0 -> 2 -> 3 -> 3 has probability 0.4; greedy's 0 -> 1 -> 1 -> 1 has 0.15
    assert beams[0].tokens == [2, 3, 3]
    assert beams[0].logprob == pytest.approx(np.log(0.4), abs=1e-9)
    assert beams[0].logprob > greedy.logprob
    assert [b.logprob for b in beams] == sorted([b.logprob for b in beams], reverse=True)


def test_sampling_frequencies_follow_the_probabilities():
    gens = generate(Bigram(TABLE), [0], 1, strategy="sample", temperature=1.0, num_samples=4000,
                    rng=np.random.default_rng(0))
    first = np.array([g.tokens[0] for g in gens])
    assert abs((first == 1).mean() - 0.6) < 0.03 and abs((first == 2).mean() - 0.4) < 0.03


def test_low_temperature_approaches_greedy_and_high_flattens():
    rng = np.random.default_rng(0)
    cold = generate(Bigram(TABLE), [0], 1, temperature=0.05, num_samples=500, rng=rng)
    assert all(g.tokens[0] == 1 for g in cold)
    hot = generate(Bigram(TABLE), [0], 1, temperature=4.0, num_samples=4000, rng=rng)
    share = np.mean([g.tokens[0] == 1 for g in hot])
    p = np.array(TABLE[0]) ** (1 / 4.0)  # softmax(log p / T) is proportional to p^(1/T)
    expected = p[1] / p.sum()
    assert abs(share - expected) < 0.03 and expected < 0.6


def test_top_k_and_top_p_filter_the_right_tokens():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    assert np.isfinite(filter_logits(logits, top_k=2)).tolist() == [[True, True, False, False]]
    assert np.isfinite(filter_logits(logits, top_p=0.8)).tolist() == [[True, True, False, False]]
    assert np.isfinite(filter_logits(logits, top_p=0.81)).tolist() == [[True, True, True, False]]
    assert np.isfinite(filter_logits(logits, top_p=0.1)).tolist() == [[True, False, False, False]]


def test_top_k_one_sampling_is_greedy():
    gens = generate(Bigram(TABLE), [0], 3, strategy="sample", top_k=1, num_samples=5, rng=np.random.default_rng(3))
    assert all(g.tokens == [1, 1, 1] for g in gens)


def test_context_longer_than_block_size_is_cropped():
    g = generate(Bigram(TABLE, block_size=2), [0, 1, 1, 1], 3, strategy="greedy")[0]
    assert g.tokens == [1, 1, 1]


def test_sequence_logprob_is_the_sum_of_next_token_logprobs():
    lp = sequence_logprob(Bigram(TABLE), [0, 2, 3])
    np.testing.assert_allclose(lp, np.log([0.4, 1.0]), atol=1e-9)


@pytest.mark.parametrize("kw,match", [(dict(temperature=0), "temperature"), (dict(top_p=1.5), "top-p"),
                                      (dict(top_p=0), "top-p"), (dict(top_k=0), "top-k"),
                                      (dict(strategy="nope"), "strategy")])
def test_bad_options_are_clear_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        generate(Bigram(TABLE), [0], 2, **kw)
