"""Corpus loading and the train/validation split.

The data layer is pure numpy/stdlib on purpose: it must not depend on the
autodiff engine, so it can be tested (and reused, e.g. by the n-gram
baseline) on its own.
"""

from __future__ import annotations

import os
from typing import Union

import numpy as np

from ..fileio import FileTooLargeError, SpecialFileError, open_regular, read_regular
from ..resources import ResourceError, check_fits, format_bytes

__all__ = [
    "CORPUS_NAME",
    "DataError",
    "builtin_corpus",
    "encode_splits",
    "load_corpus",
    "load_text",
    "text_sha256",
    "train_val_split",
]

#: Human-readable name of the default corpus returned by :func:`builtin_corpus`.
CORPUS_NAME = "pydoc-topics"

PathLike = Union[str, "os.PathLike[str]"]

#: Memory taken by loading and tokenizing a text, per byte of the file (measured with
#: tracemalloc: about 22 for the char tokenizer, 36 for BPE; the floor is checked).
TEXT_MEMORY_FACTOR = 20


class DataError(ValueError):
    """A problem with user-supplied data (file, corpus size, ...).

    Messages are a single line and name the offending file or sizes, so a CLI
    can print ``str(err)`` as-is without a traceback.
    """


def builtin_corpus() -> str:
    """Return the default corpus, ``"pydoc-topics"`` (about 465 KB).

    It is the text of the documentation topics that ship with every CPython
    (``pydoc_data.topics.topics``, the data behind ``help("if")``), so the
    project needs no download.  Topics are joined in sorted-key order with a
    blank line between them, which makes the result deterministic for a given
    Python version.
    """
    # Imported lazily: the module is ~0.5 MB and only needed when asked for.
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def load_text(path: PathLike) -> str:
    """Read a UTF-8 text file and return its contents unchanged.

    The text is returned exactly as stored (no newline translation), so that
    tokenizers round-trip it byte for byte.  A leading UTF-8 byte-order mark,
    which some editors add, is dropped because it is not part of the text.

    Raises:
        DataError: with a one-line message naming the file if it does not
            exist, is a directory, a FIFO, a device or anything else than a
            regular file (checked before a byte is read, so a FIFO never
            blocks), is too big for the memory the machine has (checked
            against its size before reading: a sparse 50 GB file is refused
            at once), cannot be read (permissions or other OS error), is
            empty, or is not valid UTF-8 (the message gives the byte offset
            of the first bad byte).
    """
    name = f"'{os.fspath(path)}'"
    try:
        fd, size = open_regular(path)  # refuses a FIFO, a device, a directory before reading
        os.close(fd)
        # bytes, str and token ids together take about 20x the file (tracemalloc, char tokenizer)
        check_fits({"the text and its token ids": TEXT_MEMORY_FACTOR * size},
                   f"text file {name} ({format_bytes(size)})")
        raw = read_regular(path, max_bytes=size)
    except FileNotFoundError:
        raise DataError(f"cannot read text file {name}: no such file") from None
    except SpecialFileError as err:
        what = "it is a directory" if err.kind == "a directory" else f"it is {err.kind}, not a regular file"
        raise DataError(f"cannot read text file {name}: {what}") from None
    except FileTooLargeError:
        raise DataError(f"cannot read text file {name}: it grew while it was read") from None
    except ResourceError as err:
        raise DataError(str(err)) from None
    except PermissionError:
        raise DataError(f"cannot read text file {name}: permission denied") from None
    except OSError as err:  # e.g. EIO, a vanished file
        reason = err.strerror or str(err) or type(err).__name__
        raise DataError(f"cannot read text file {name}: {reason}") from None
    if not raw:
        raise DataError(f"text file {name} is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        bad = raw[err.start]
        raise DataError(
            f"text file {name} is not valid UTF-8: {err.reason} "
            f"(byte 0x{bad:02x} at byte offset {err.start})"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text:
        raise DataError(f"text file {name} is empty (only a byte-order mark)")
    return text


def train_val_split(ids: np.ndarray, frac: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Split a 1-D token array into ``(train, val)``: first ``frac``, then the rest.

    Deterministic and contiguous, as in nanoGPT: ``n = int(frac * len(ids))``,
    ``train = ids[:n]``, ``val = ids[n:]``.  A contiguous tail (rather than a
    random sample of positions) keeps validation text unseen as a whole
    passage, which is what a language model's held-out loss should measure.
    The returned arrays are views of ``ids`` (no copy).
    """
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"train_val_split expects a 1-D array of token ids, got shape {arr.shape}")
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"train fraction must be in (0, 1], got {frac}")
    n = int(frac * len(arr))
    return arr[:n], arr[n:]


def load_corpus(path: PathLike | None) -> tuple[str, str]:
    """``(text, name)``: the UTF-8 text file at ``path``, or the built-in corpus when ``path``
    is None (its name is then :data:`CORPUS_NAME`)."""
    if path is None:
        return builtin_corpus(), CORPUS_NAME
    return load_text(path), os.fspath(path)


def text_sha256(text: str) -> str:
    """The SHA-256 of ``text`` as UTF-8 (hex): what a checkpoint records of its training
    text, so a resumed run or an evaluation can tell that a file has changed since."""
    import hashlib

    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def encode_splits(text: str, tokenizer, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokenize ``text`` and split it 90/10 (:func:`train_val_split`) -> ``(train, val)`` ids.

    Each split must hold at least ``block_size + 1`` tokens (one window and its shifted
    targets); otherwise a :class:`DataError` says which split and what to change.
    """
    ids = tokenizer.encode_array(text)
    train, val = train_val_split(ids)
    for name, split in (("train", train), ("val", val)):
        if len(split) < block_size + 1:
            raise DataError(f"the {name} split has {len(split)} tokens; need at least block_size + 1 = {block_size + 1} "
                            f"(the corpus has {len(ids)} tokens in all: use a longer text or a smaller --block-size)")
    return train, val
