"""Mini-batches of (input, target) windows for next-token prediction.

A language model sees ``x = data[i : i + T]`` and must predict
``y = data[i + 1 : i + T + 1]``, i.e. ``y[:, t] = data[i + t + 1]``: every
position of the window is a training example for the token that follows it.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from .corpus import DataError

__all__ = ["get_batch", "iter_eval_batches", "num_eval_tokens", "sample_batch"]


def _check(data: np.ndarray, batch_size: int, block_size: int) -> np.ndarray:
    arr = np.asarray(data)
    if arr.ndim != 1:
        raise ValueError(f"data must be a 1-D array of token ids, got shape {arr.shape}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if int(block_size) < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    # A window needs block_size inputs plus one more token for the last target.
    if len(arr) < block_size + 1:
        raise DataError(
            f"corpus has {len(arr)} tokens; need at least block_size + 1 = {block_size + 1}"
        )
    return arr


def get_batch(
    data: np.ndarray, batch_size: int, block_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``batch_size`` random windows; return ``(x, y)``, both int64 ``(B, T)``.

    Start offsets are ``rng.integers(0, len(data) - block_size, size=B)`` (the
    upper bound is exclusive, so the last target ``data[i + T]`` is always in
    range), and windows are gathered in one fancy-indexing step,
    ``data[offsets[:, None] + arange(T)]``, without a Python loop.  The same
    generator state gives the same batch, which makes training reproducible.

    Raises:
        DataError: if ``len(data) < block_size + 1``.
    """
    arr = _check(data, batch_size, block_size)
    offsets = rng.integers(0, len(arr) - block_size, size=int(batch_size))
    idx = offsets[:, None] + np.arange(block_size)
    x = arr[idx].astype(np.int64, copy=False)
    y = arr[idx + 1].astype(np.int64, copy=False)
    return x, y


def sample_batch(data, batch_size: int, block_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A training batch from ``data``: :func:`get_batch`'s random windows of a token array, or
    random examples (right-padded, prompt targets ignored) of a
    :class:`~tinygrad_lm.data.examples.SequenceSet`."""
    if hasattr(data, "get_batch"):
        return data.get_batch(batch_size, rng)
    return get_batch(data, batch_size, block_size, rng)


def num_eval_tokens(n_data: int, block_size: int) -> int:
    """How many target tokens :func:`iter_eval_batches` covers for ``n_data`` tokens."""
    return max(0, (n_data - 1) // block_size) * block_size


def iter_eval_batches(
    data: np.ndarray, batch_size: int, block_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield contiguous, non-overlapping ``(x, y)`` windows covering ``data``.

    Window ``w`` starts at ``w * block_size``; there are
    ``(len(data) - 1) // block_size`` of them, so every target
    ``data[1 : 1 + n_windows * block_size]`` is scored exactly once (the
    final ``< block_size`` leftover targets are dropped, which keeps every
    batch rectangular; :func:`num_eval_tokens` gives the count).  Use this for
    an exact validation loss rather than a sampled estimate.  Windows are
    grouped ``batch_size`` at a time (the last batch may be smaller), each
    gathered with one fancy-indexing step.

    Raises:
        DataError: if ``len(data) < block_size + 1``.
    """
    arr = _check(data, batch_size, block_size)
    n_windows = (len(arr) - 1) // block_size
    cols = np.arange(block_size)
    for first in range(0, n_windows, int(batch_size)):
        starts = np.arange(first, min(first + int(batch_size), n_windows)) * block_size
        idx = starts[:, None] + cols
        yield arr[idx].astype(np.int64, copy=False), arr[idx + 1].astype(np.int64, copy=False)
