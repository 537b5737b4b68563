"""Decoding: turning next-token distributions into text.

* greedy      pick argmax p(x_t | x_<t) at each step (deterministic; tends to repeat itself).
* sample      draw from softmax(logits / temperature), optionally restricted to the top-k
              tokens or to the smallest set whose probability reaches top-p (nucleus).
* beam        keep the `beam_width` prefixes with the highest total log-probability
              sum_t log p(x_t | x_<t); returns every beam with its score.

Generation runs under no_grad, batched over samples/beams (no Python loop over them), and
with a KV cache when the model offers one: each step then feeds only the newest token.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import backend
from .engine import no_grad
from .tensor import Tensor


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    z = x - m
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def filter_logits(logits: np.ndarray, top_k: int | None = None, top_p: float | None = None) -> np.ndarray:
    """Set logits outside the top-k / top-p (nucleus) set to -inf. logits: (B, V).

    top-p keeps the smallest set of most probable tokens whose total probability is >= top_p
    (the most probable token is always kept)."""
    out = logits
    if top_k is not None and top_k < logits.shape[-1]:
        kth = np.partition(out, -top_k, axis=-1)[:, -top_k][:, None]
        out = np.where(out < kth, -np.inf, out)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-out, axis=-1, kind="stable")
        sorted_logits = np.take_along_axis(out, order, axis=-1)
        probs = np.exp(_log_softmax(sorted_logits))
        cum = np.cumsum(probs, axis=-1)
        drop_sorted = (cum - probs) >= top_p  # tokens after the set already reached top_p
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=-1)
        out = np.where(drop, -np.inf, out)
    return out


def validate_options(strategy: str, temperature: float, top_k, top_p, beam_width: int, num_samples: int) -> None:
    if strategy not in ("greedy", "sample", "beam"):
        raise ValueError(f"--strategy must be greedy, sample or beam, got {strategy!r}")
    if not temperature > 0:
        raise ValueError(f"--temperature must be > 0, got {temperature} (use --strategy greedy for argmax decoding)")
    if top_k is not None and top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"--top-p must be in (0, 1], got {top_p}")
    if beam_width < 1:
        raise ValueError(f"--beam-width must be >= 1, got {beam_width}")
    if num_samples < 1:
        raise ValueError(f"--num-samples must be >= 1, got {num_samples}")


class _Decoder:
    """Feeds a batch of sequences to the model and returns next-token log-probabilities.

    With `use_cache` and a model offering `forward_step(idx, cache) -> (logits, cache)`, the
    prompt is run once and every later call feeds one new token per row; otherwise (or once
    the context outgrows block_size) the whole cropped context is re-run each step. Both
    give the same numbers (tested)."""

    def __init__(self, model, use_cache: bool):
        self.model = model
        self.block_size = model.config.block_size
        self.device = _model_device(model)
        self.use_cache = use_cache and hasattr(model, "forward_step")
        self.cache = None
        self.seq = None

    def _run(self, idx: np.ndarray, cache_step: bool) -> np.ndarray:
        x = Tensor(idx, device=self.device)
        if cache_step:
            logits, self.cache = self.model.forward_step(x, self.cache)
        else:
            logits, _ = self.model(x)
        return _log_softmax(backend.to_numpy(logits.data[:, -1, :]).astype(np.float64))

    def start(self, seq: np.ndarray) -> np.ndarray:
        self.seq = seq
        if self.use_cache and seq.shape[1] <= self.block_size:
            return self._run(seq, cache_step=True)
        return self._run(seq[:, -self.block_size:], cache_step=False)

    def advance(self, tokens: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Append `tokens` (B,) to the rows `rows` of the current batch (beam reordering)."""
        if rows is not None:
            self.seq = self.seq[rows]
            if self.cache is not None:
                self.cache = _reorder(self.cache, rows)
        self.seq = np.concatenate([self.seq, tokens[:, None]], axis=1)
        if self.cache is not None and self.seq.shape[1] <= self.block_size:
            return self._run(tokens[:, None], cache_step=True)
        self.cache = None  # no cache, or the context outgrew block_size: re-run the cropped window
        return self._run(self.seq[:, -self.block_size:], cache_step=False)


def _reorder(cache, rows):
    """Select batch rows of every array in a (nested) cache."""
    if isinstance(cache, (list, tuple)):
        return type(cache)(_reorder(c, rows) for c in cache)
    if isinstance(cache, dict):
        return {k: _reorder(v, rows) for k, v in cache.items()}
    if isinstance(cache, Tensor):
        return Tensor._wrap(cache.data[backend.to_device(rows, cache.device)])
    if hasattr(cache, "shape"):
        return cache[backend.to_device(rows, backend.device_of(cache))]
    return cache


def _model_device(model) -> str:
    for p in model.parameters():
        return p.device
    return "cpu"


@dataclass
class Generation:
    tokens: list            # generated token ids (prompt excluded)
    logprob: float          # sum of log p(token | prefix) over the generated tokens, under the model
    top: list | None = None  # per step: [(token, prob), ...] top candidates (with show_probs)


@no_grad()
def generate(model, prompt, max_new_tokens: int, strategy: str = "sample", temperature: float = 0.8,
             top_k: int | None = None, top_p: float | None = None, num_samples: int = 1, beam_width: int = 4,
             rng: np.random.Generator | None = None, use_cache: bool = True, show_probs: int = 0) -> list[Generation]:
    """Continue `prompt` (a list of token ids) by `max_new_tokens` tokens.

    Returns `num_samples` generations for greedy/sample (greedy ones are identical), or
    `beam_width` beams for beam search, best first. Each carries its total log-probability
    under the untempered model, so strategies can be compared on one scale.
    """
    validate_options(strategy, temperature, top_k, top_p, beam_width, num_samples)
    if len(prompt) == 0:
        raise ValueError("generate: the prompt must hold at least one token")
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        if strategy == "beam":
            return _beam(model, prompt, max_new_tokens, beam_width, use_cache)
        return _sample(model, prompt, max_new_tokens, strategy, temperature, top_k, top_p, num_samples,
                       rng or np.random.default_rng(), use_cache, show_probs)
    finally:
        if was_training and hasattr(model, "train"):
            model.train()


def _sample(model, prompt, n_new, strategy, temperature, top_k, top_p, num_samples, rng, use_cache, show_probs):
    dec = _Decoder(model, use_cache)
    logp = dec.start(np.tile(np.asarray(prompt, dtype=np.int64), (num_samples, 1)))
    total = np.zeros(num_samples)
    out = np.zeros((num_samples, n_new), dtype=np.int64)
    tops = [[] for _ in range(num_samples)]
    rows = np.arange(num_samples)
    for t in range(n_new):
        if strategy == "greedy":
            tok = logp.argmax(axis=-1)
        else:
            z = filter_logits(logp / temperature, top_k, top_p)
            p = np.exp(_log_softmax(z))
            u = rng.random((num_samples, 1))
            tok = np.minimum((np.cumsum(p, axis=-1) < u).sum(axis=-1), p.shape[-1] - 1)
            tok = np.where(p[rows, tok] > 0, tok, p.argmax(-1))  # never pick a filtered token through rounding
        if show_probs:
            best = np.argsort(-logp, axis=-1)[:, :show_probs]
            for b in range(num_samples):
                tops[b].append([(int(i), float(np.exp(logp[b, i]))) for i in best[b]])
        total += logp[rows, tok]
        out[:, t] = tok
        if t + 1 < n_new:
            logp = dec.advance(tok)
    return [Generation(out[b].tolist(), float(total[b]), tops[b] if show_probs else None) for b in range(num_samples)]


def _beam(model, prompt, n_new, width, use_cache):
    """Beam search: at each step every beam proposes every token; the `width` best
    (beam, token) pairs by total log-probability survive."""
    dec = _Decoder(model, use_cache)
    logp = dec.start(np.asarray(prompt, dtype=np.int64)[None, :])
    scores = np.zeros(1)
    hist = np.zeros((1, 0), dtype=np.int64)
    for t in range(n_new):
        cand = (scores[:, None] + logp).reshape(-1)  # (beams * V,)
        k = min(width, cand.size)
        best = np.argpartition(-cand, k - 1)[:k]
        best = best[np.argsort(-cand[best], kind="stable")]
        rows, tok = np.divmod(best, logp.shape[-1])
        scores = cand[best]
        hist = np.concatenate([hist[rows], tok[:, None]], axis=1)
        if t + 1 < n_new:
            logp = dec.advance(tok, rows)
    return [Generation(hist[b].tolist(), float(scores[b])) for b in range(len(scores))]


@no_grad()
def sequence_logprob(model, tokens) -> np.ndarray:
    """log p(x_t | x_<t) for t = 1..len-1 of one sequence (fits in block_size + 1)."""
    idx = np.asarray(tokens, dtype=np.int64)[None, :]
    if idx.shape[1] - 1 > model.config.block_size:
        raise ValueError(f"sequence_logprob: {idx.shape[1]} tokens exceed block_size + 1 = {model.config.block_size + 1}")
    logits, _ = model(Tensor(idx[:, :-1], device=_model_device(model)))
    lp = _log_softmax(backend.to_numpy(logits.data[0]).astype(np.float64))
    return lp[np.arange(idx.shape[1] - 1), idx[0, 1:]]
