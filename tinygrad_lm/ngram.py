"""Counting n-gram language models: the baseline a neural LM has to beat.

An order-``n`` model predicts token ``w_t`` from the ``n - 1`` tokens before it
with add-k (Lidstone) smoothing::

    P(w | ctx) = (C(ctx, w) + k) / (C(ctx) + k * V)

where ``C(ctx, w)`` counts the training n-grams ``ctx + (w,)``, ``C(ctx)`` the
training n-grams whose first ``n - 1`` tokens are ``ctx`` (so the probabilities
over the ``V`` vocabulary entries sum to 1), and ``k > 0`` gives unseen
continuations a little mass.  For ``n = 1`` the context is empty and
``C(ctx)`` is the number of training tokens (a smoothed unigram model).  With
``k = 0`` these are maximum-likelihood estimates; an unseen n-gram then has
probability 0 (infinite loss).

Units are integer token ids (characters from a ``CharTokenizer``, or words via
:func:`word_ids`).  Everything is vectorized with numpy; there is no Python
loop over tokens, only over the ``n`` positions of an n-gram.

How n-grams are keyed (correct for any vocabulary size): a base-``V`` number
``w_1 V^{n-1} + ... + w_n`` would overflow int64 for word vocabularies
(10k^5 > 2^63), so the model instead builds a *trie* level by level.  Level
``j`` assigns dense ids to the distinct training prefixes of length ``j + 1``
via ``np.unique(prefix_id * V + w_{j+1}, return_inverse=True)``; since a prefix
id is smaller than the number of training n-grams ``N``, keys stay below
``N * V``.  Looking up held-out n-grams walks the same levels with
``np.searchsorted``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .data.corpus import DataError

__all__ = [
    "NGramModel",
    "UNK",
    "WORD_PATTERN",
    "ngram_table",
    "word_ids",
    "word_tokenize",
]

#: Word-level units: runs of word characters, or single punctuation marks.
WORD_PATTERN = r"\w+|[^\w\s]"
#: Vocabulary entry (id 0) standing for validation words never seen in training.
UNK = "<unk>"


def word_tokenize(text: str) -> list[str]:
    """Split text into words and punctuation: ``re.findall(r"\\w+|[^\\w\\s]", text)``."""
    return re.findall(WORD_PATTERN, text)


def word_ids(train_text: str, val_text: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Word-level ids for an n-gram model: ``(train_ids, val_ids, vocab)``.

    ``vocab = ["<unk>"] + sorted(distinct training words)``; validation words
    not in it map to id 0 (``<unk>``).  Vectorized with ``np.unique`` /
    ``np.searchsorted`` on numpy string arrays.
    """
    train_words = np.array(word_tokenize(train_text), dtype=str)
    val_words = np.array(word_tokenize(val_text), dtype=str)
    uniq, train_inv = np.unique(train_words, return_inverse=True)
    vocab = [UNK] + uniq.tolist()
    train = train_inv.astype(np.int64).reshape(-1) + 1
    if uniq.size == 0 or val_words.size == 0:
        val = np.zeros(val_words.size, dtype=np.int64)
    else:
        pos = np.minimum(np.searchsorted(uniq, val_words), uniq.size - 1)
        val = np.where(uniq[pos] == val_words, pos + 1, 0).astype(np.int64)
    return train, val, vocab


class NGramModel:
    """Add-k smoothed n-gram model over integer ids (see the module docstring).

    ``P(w | ctx) = (C(ctx, w) + k) / (C(ctx) + k * V)``.

    Usage::

        m = NGramModel(3, k=0.1).fit(train_ids, vocab_size)
        m.evaluate(val_ids)  # {'nll': ..., 'perplexity': ..., 'unseen_context_frac': ..., 'n_tokens': ...}
    """

    def __init__(self, n: int, k: float = 1.0) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n-gram order n must be an integer >= 1, got {n!r}")
        if not (k >= 0 and math.isfinite(k)):
            raise ValueError(f"smoothing k must be finite and >= 0, got {k!r}")
        self.n = int(n)
        self.k = float(k)
        self.vocab_size: int | None = None
        # Trie of training prefixes: _levels[j] = sorted keys of prefixes of length j+1.
        self._levels: list[np.ndarray] = []
        self._ngram_counts: np.ndarray | None = None  # per level n-1 id: C(ctx, w)
        self._ctx_counts: np.ndarray | None = None  # per level n-2 id: C(ctx)
        self._n_train = 0  # number of training n-grams (= C(ctx) for n = 1)

    # -- fitting ---------------------------------------------------------------

    def fit(self, train_ids: Sequence[int] | np.ndarray, vocab_size: int) -> "NGramModel":
        """Count the n-grams of ``train_ids`` (ids in ``[0, vocab_size)``). Returns ``self``."""
        v = int(vocab_size)
        if v < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        ids = self._check_ids(train_ids, v, "training")
        if ids.size < self.n:
            raise DataError(f"training data has {ids.size} tokens; an order-{self.n} model needs at least {self.n}")
        rows = sliding_window_view(ids, self.n)  # (N, n) view, no copy
        n_rows = rows.shape[0]
        if n_rows * v >= 2**63:
            raise ValueError(f"{n_rows} n-grams x vocabulary {v} overflows int64 trie keys")

        levels: list[np.ndarray] = []
        pid = np.zeros(n_rows, dtype=np.int64)  # id of the (empty) prefix
        inverses: list[np.ndarray] = []
        for j in range(self.n):
            uniq, pid = np.unique(pid * v + rows[:, j], return_inverse=True)
            pid = pid.reshape(-1).astype(np.int64)  # numpy 2.0 returned inverse with input shape
            levels.append(uniq)
            inverses.append(pid)

        self.vocab_size = v
        self._levels = levels
        self._n_train = n_rows
        self._ngram_counts = np.bincount(inverses[-1], minlength=levels[-1].size)
        # C(ctx) counts the training n-grams that start with ctx (not every
        # occurrence of ctx), so that sum_w P(w | ctx) = 1 exactly.
        self._ctx_counts = (
            np.bincount(inverses[-2], minlength=levels[-2].size) if self.n > 1 else None
        )
        return self

    # -- scoring ---------------------------------------------------------------

    def _check_ids(self, ids: Iterable[int] | np.ndarray, v: int, what: str) -> np.ndarray:
        arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids))
        if arr.size == 0:
            return np.zeros(0, dtype=np.int64)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{what} ids must be a 1-D integer array, got shape {arr.shape} dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        if arr.min() < 0 or arr.max() >= v:
            raise ValueError(
                f"{what} ids must lie in [0, {v}), got range [{int(arr.min())}, {int(arr.max())}]"
            )
        return arr

    def _require_fit(self) -> int:
        if self.vocab_size is None:
            raise RuntimeError("NGramModel.fit must be called before scoring")
        return self.vocab_size

    def _counts(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For rows ``(M, n)`` return ``(C(ctx, w), C(ctx), context_seen)``, each ``(M,)``."""
        v = self._require_fit()
        m = rows.shape[0]
        pid = np.zeros(m, dtype=np.int64)
        alive = np.ones(m, dtype=bool)
        ctx_pid, ctx_alive = pid, alive
        for j, keys in enumerate(self._levels):
            if j == self.n - 1:  # the first n-1 columns (the context) are done
                ctx_pid, ctx_alive = pid, alive
            key = pid * v + rows[:, j]
            pos = np.minimum(np.searchsorted(keys, key), keys.size - 1)
            alive = alive & (keys[pos] == key)
            pid = np.where(alive, pos, 0)
        assert self._ngram_counts is not None
        c_ngram = np.where(alive, self._ngram_counts[pid], 0)
        if self.n == 1:
            c_ctx = np.full(m, self._n_train, dtype=np.int64)
            seen = np.ones(m, dtype=bool)
        else:
            assert self._ctx_counts is not None
            c_ctx = np.where(ctx_alive, self._ctx_counts[ctx_pid], 0)
            seen = ctx_alive
        return c_ngram, c_ctx, seen

    @staticmethod
    def _log(c_ngram: np.ndarray, c_ctx: np.ndarray, k: float, v: int) -> np.ndarray:
        num = c_ngram + k
        den = c_ctx + k * v
        with np.errstate(divide="ignore", invalid="ignore"):
            # k = 0 and an unseen context gives 0/0: treat as probability 0.
            p = np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
            return np.log(p)

    def log_prob(self, ids: Sequence[int] | np.ndarray, start: int | None = None) -> np.ndarray:
        """Natural-log probabilities ``log P(ids[t] | ids[t-n+1 : t])``.

        One value per scored position ``t = start, ..., len(ids) - 1``;
        ``start`` defaults to ``n - 1`` (the first position with a full
        context) and must be at least that.
        """
        v = self._require_fit()
        arr = self._check_ids(ids, v, "evaluation")
        rows = self._rows(arr, start)
        c_ngram, c_ctx, _ = self._counts(rows)
        return self._log(c_ngram, c_ctx, self.k, v)

    def _rows(self, arr: np.ndarray, start: int | None) -> np.ndarray:
        first = self.n - 1 if start is None else int(start)
        if first < self.n - 1:
            raise ValueError(f"start must be >= n - 1 = {self.n - 1} for an order-{self.n} model, got {first}")
        if arr.size <= first:
            return np.zeros((0, self.n), dtype=np.int64)
        # Row r covers ids[first - n + 1 + r : first + 1 + r]; its target is the last column.
        return sliding_window_view(arr, self.n)[first - self.n + 1 :]

    def evaluate(self, val_ids: Sequence[int] | np.ndarray, start: int | None = None) -> dict[str, Any]:
        """Score held-out ids; return a dict with

        - ``nll``: mean negative log-likelihood, nats per token
        - ``perplexity``: ``exp(nll)``
        - ``unseen_context_frac``: share of scored positions whose ``n - 1``
          token context never occurred in training (0 for ``n = 1``)
        - ``n_tokens``: number of scored positions (``len(val_ids) - start``)
        - ``n``, ``k``: the model's order and smoothing
        """
        v = self._require_fit()
        arr = self._check_ids(val_ids, v, "evaluation")
        rows = self._rows(arr, start)
        if rows.shape[0] == 0:
            raise DataError(f"validation data has {arr.size} tokens; nothing to score for an order-{self.n} model")
        c_ngram, c_ctx, seen = self._counts(rows)
        logp = self._log(c_ngram, c_ctx, self.k, v)
        nll = float(-logp.mean())
        return {
            "n": self.n,
            "k": self.k,
            "nll": nll,
            "perplexity": float(math.exp(nll)) if nll < 700 else math.inf,
            "unseen_context_frac": float(1.0 - seen.mean()),
            "n_tokens": int(rows.shape[0]),
        }

    def next_token_probs(self, context: Sequence[int] | np.ndarray) -> np.ndarray:
        """Distribution ``P(. | context)`` over the ``V`` ids (uses the last ``n - 1`` ids).

        Sums to 1 whenever ``k > 0`` or the context was seen in training
        (with ``k = 0`` an unseen context gives all zeros).
        """
        v = self._require_fit()
        ctx = self._check_ids(context, v, "context")
        if ctx.size < self.n - 1:
            raise ValueError(f"an order-{self.n} model needs a context of {self.n - 1} ids, got {ctx.size}")
        ctx = ctx[ctx.size - (self.n - 1) :]
        rows = np.concatenate([np.broadcast_to(ctx, (v, self.n - 1)), np.arange(v)[:, None]], axis=1)
        c_ngram, c_ctx, _ = self._counts(rows)
        return np.exp(self._log(c_ngram, c_ctx, self.k, v))

    def prob(self, context: Sequence[int], token: int) -> float:
        """``P(token | context)`` for one token (convenience for tests and inspection)."""
        return float(self.next_token_probs(context)[int(token)])

    def __repr__(self) -> str:
        return f"NGramModel(n={self.n}, k={self.k}, vocab_size={self.vocab_size})"


def ngram_table(
    train_ids: Sequence[int] | np.ndarray,
    val_ids: Sequence[int] | np.ndarray,
    vocab_size: int,
    ns: Iterable[int] = (1, 2, 3, 4, 5),
    k: float = 1.0,
) -> list[dict[str, Any]]:
    """Fit and evaluate one model per order in ``ns``; return their ``evaluate`` dicts.

    All orders are scored on the *same* validation positions (from
    ``max(ns) - 1`` on), so their losses are directly comparable.
    """
    orders = [int(n) for n in ns]
    if not orders:
        return []
    start = max(orders) - 1
    return [NGramModel(n, k=k).fit(train_ids, vocab_size).evaluate(val_ids, start=start) for n in orders]
