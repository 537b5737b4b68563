"""Tokenizers: a character-level one and a byte-level BPE trained from scratch.

Both map text to integer ids in ``[0, vocab_size)`` and back, are vectorized
with numpy (no Python loop over the characters of a large text), and
serialize to plain JSON (``to_dict`` / ``save`` / ``load``; never pickle, so a
saved tokenizer can be inspected and cannot execute code when loaded).

Why this file is long: the two tokenizers share one interface (`Tokenizer`), one JSON
format and one loader that reads either kind (the factories at the end), and the byte-level
BPE is told whole: its training's array code (pair counting and merging over the whole text
without a Python loop) sits beside the class that runs it. Moving BPE to a file of its own
would need a third one for the shared base, or the factories and BPE would import each other.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from typing import Any, Iterable, Sequence, Union

import numpy as np

from ..fileio import atomic_write
from .corpus import DataError

__all__ = [
    "BPETokenizer",
    "CharTokenizer",
    "SPLIT_PATTERN",
    "SPLIT_PATTERNS",
    "Tokenizer",
    "TokenizerError",
    "build_tokenizer",
    "load_tokenizer",
    "tokenizer_from_dict",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Pre-split pattern used by :class:`BPETokenizer` (a stdlib-``re`` version of
#: the GPT-2 idea).  Text is cut into chunks -- an optional leading space plus a
#: run of ASCII letters, of digits, or of other non-space characters; or a run
#: of whitespace -- and merges never cross a chunk boundary, so tokens do not
#: glue words to punctuation.  The alternatives cover every character, so the
#: chunks always concatenate back to the original text (exact round trip).
#: Non-ASCII letters (``é``, ``Ω``, emoji) fall in the "other" class because
#: stdlib ``re`` has no ``\p{L}``; BPE still learns their byte sequences.
SPLIT_PATTERN = r" ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+"

#: The split patterns a tokenizer may use, by name. A saved tokenizer (a checkpoint's
#: meta.json, a tokenizer file) stores the NAME, and loading looks it up here: a regex is
#: never compiled from a file, so an untrusted checkpoint cannot hand ``re`` a pattern that
#: backtracks for hours, such as ``(?:a+)+b``. Files written before names were stored hold
#: the pattern's text; the text of a pattern in this table is accepted for its name.
SPLIT_PATTERNS = {"gpt2-ascii": SPLIT_PATTERN}

_FORMAT_VERSION = 1

#: The largest tokenizer file :func:`load_tokenizer` reads (a 100,000-merge BPE is ~1.5 MB).
TOKENIZER_MAX_BYTES = 64 * 2**20


class TokenizerError(DataError):
    """Text cannot be encoded, ids cannot be decoded, or a saved tokenizer is bad.

    A subclass of :class:`DataError` (hence of ``ValueError``) so a CLI can
    report every data-layer problem with one ``except``.
    """


def _as_id_array(ids: Iterable[int] | np.ndarray, vocab_size: int) -> np.ndarray:
    """Validate a sequence of ids and return it as a 1-D int64 array."""
    arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids))
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1:
        raise TokenizerError(f"expected a 1-D sequence of token ids, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TokenizerError(f"token ids must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    bad = np.flatnonzero((arr < 0) | (arr >= vocab_size))
    if bad.size:
        i = int(bad[0])
        raise TokenizerError(
            f"token id {int(arr[i])} (at {i}) is out of range for a vocabulary of size {vocab_size}"
        )
    return arr


class Tokenizer:
    """Common interface: ``encode``/``encode_array``/``decode``/``vocab_size``/JSON I/O."""

    kind: str = ""

    @property
    def vocab_size(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode_array(self, text: str) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Encode ``text`` to a list of Python ints."""
        return self.encode_array(text).tolist()

    def first_unencodable(self, text: str) -> int | None:
        """The index of the first character of ``text`` this tokenizer cannot encode, or None.
        A byte-level tokenizer encodes every character UTF-8 can (all but lone surrogates)."""
        cps = _codepoints(text)
        bad = np.flatnonzero((cps >= 0xD800) & (cps <= 0xDFFF))
        return int(bad[0]) if bad.size else None

    def save(self, path: PathLike) -> None:
        """Write ``to_dict()`` as JSON to ``path`` atomically.

        The JSON goes to a temporary file in the same directory, which is then
        renamed over ``path`` with ``os.replace``; a crash mid-write therefore
        never leaves a truncated tokenizer next to a checkpoint.
        """
        save_json_atomic(self.to_dict(), path)

    @classmethod
    def load(cls, path: PathLike) -> "Tokenizer":
        """Load a tokenizer saved with :meth:`save`.

        ``Tokenizer.load`` returns whichever kind the file holds;
        ``CharTokenizer.load`` / ``BPETokenizer.load`` also check the kind.
        """
        tok = load_tokenizer(path)
        if cls is not Tokenizer and not isinstance(tok, cls):
            raise TokenizerError(f"'{os.fspath(path)}' holds a {tok.kind!r} tokenizer, not {cls.kind!r}")
        return tok

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.to_dict() == other.to_dict()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))


# --------------------------------------------------------------------------
# Character tokenizer
# --------------------------------------------------------------------------


class CharTokenizer(Tokenizer):
    """One token per Unicode character; the vocabulary is the sorted set of
    characters of the training text, and a character's id is its rank in it.

    Encoding is vectorized: the text becomes an array of code points via
    ``np.frombuffer(text.encode("utf-32-le"))`` and each is located in the
    sorted code-point vocabulary with ``np.searchsorted`` (a 1 MB text takes a
    few milliseconds).
    """

    kind = "char"

    def __init__(self, chars: Iterable[str] | str = ()) -> None:
        """Build from an iterable of single characters (sorted and de-duplicated)."""
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise TokenizerError(f"vocabulary entries must be single characters, got {c!r}")
        self.chars: list[str] = sorted(set(chars))
        # Sorted code points (sorted(str) orders by code point, so ranks agree).
        self._cps = _codepoints("".join(self.chars))

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """Vocabulary = sorted set of the characters of ``text``."""
        return cls(set(text))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode_array(self, text: str) -> np.ndarray:
        """Encode to an int64 array.

        Raises:
            TokenizerError: naming the unknown characters (``repr``) and the
                position of their first occurrence, e.g.
                ``text contains characters not in the tokenizer's vocabulary: 'Ω' (at 3)``.
        """
        cps = _codepoints(text)
        if cps.size == 0:
            return np.zeros(0, dtype=np.int64)
        if self._cps.size == 0:
            known = np.zeros(cps.shape, dtype=bool)
            idx = np.zeros(cps.shape, dtype=np.int64)
        else:
            idx = np.searchsorted(self._cps, cps)
            # searchsorted returns len(vocab) for values above the largest one.
            idx = np.minimum(idx, self._cps.size - 1)
            known = self._cps[idx] == cps
        if not known.all():
            raise TokenizerError(_unknown_chars_message(text, cps, known))
        return idx.astype(np.int64, copy=False)

    def first_unencodable(self, text: str) -> int | None:
        """The index of the first character of ``text`` not in the vocabulary, or None."""
        cps = _codepoints(text)
        if cps.size == 0:
            return None
        if self._cps.size == 0:
            return 0
        known = self._cps[np.minimum(np.searchsorted(self._cps, cps), self._cps.size - 1)] == cps
        bad = np.flatnonzero(~known)
        return int(bad[0]) if bad.size else None

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """Map ids back to characters (vectorized through UTF-32)."""
        arr = _as_id_array(ids, self.vocab_size)
        return self._cps[arr].astype("<u4").tobytes().decode("utf-32-le", errors="surrogatepass")

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "version": _FORMAT_VERSION, "chars": "".join(self.chars)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CharTokenizer":
        chars = d.get("chars")
        if not isinstance(chars, str):
            raise TokenizerError("char tokenizer dict needs a 'chars' string")
        # Ids are ranks, so an unsorted or duplicated list would silently change
        # them; refuse rather than re-sort.
        if list(chars) != sorted(set(chars)):
            raise TokenizerError("char tokenizer 'chars' must be sorted and without duplicates")
        return cls(chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def _codepoints(text: str) -> np.ndarray:
    """Code points of ``text`` as a uint32 array (surrogates passed through)."""
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype="<u4")


def _unknown_chars_message(text: str, cps: np.ndarray, known: np.ndarray, limit: int = 5) -> str:
    bad_pos = np.flatnonzero(~known)
    # First occurrence of each distinct unknown character, in text order.
    uniq, first = np.unique(cps[bad_pos], return_index=True)
    first_pos = np.sort(bad_pos[first])
    parts = [f"{text[p]!r} (at {p})" for p in first_pos[:limit].tolist()]
    more = len(first_pos) - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "text contains characters not in the tokenizer's vocabulary: " + ", ".join(parts)


# --------------------------------------------------------------------------
# Byte-level BPE
# --------------------------------------------------------------------------

# Above this many possible pairs, count with np.unique instead of a dense
# np.bincount table (a 4096-token vocabulary would need a 16M-entry table).
_DENSE_PAIR_LIMIT = 1 << 21
_NO_RANK = np.iinfo(np.int64).max


class BPETokenizer(Tokenizer):
    """Byte-level byte-pair encoding, trained from scratch (cf. minbpe's
    ``BasicTokenizer``/``RegexTokenizer``).

    Ids ``0..255`` are the raw UTF-8 bytes; merge ``i`` (0-based) creates id
    ``256 + i`` from a pair of earlier ids.  Because every text is a byte
    sequence, any text can be encoded, and ``decode(encode(text)) == text``.

    Training (:meth:`train`) repeatedly merges the most frequent adjacent pair.
    With ``pattern`` set (default :data:`SPLIT_PATTERN`) the text is first cut
    into chunks and merges never cross chunk boundaries; training then works on
    the *distinct* chunks, weighted by how often each occurs, which shrinks the
    data several-fold.  ``pattern=None`` trains on the raw byte stream.

    Everything is vectorized with numpy: the chunks live in one flat int64
    array with ``-1`` separators, pair counts come from ``np.bincount`` over
    keys ``a * V + b``, and a merge rewrites the array in a few whole-array
    operations (leftmost-first for overlapping pairs, so ``aaa`` with merge
    ``(a, a)`` becomes ``[aa, a]``).  Ties between equally frequent pairs go to
    the smallest ``(a, b)``, so training is deterministic.
    """

    kind = "bpe"

    def __init__(
        self,
        merges: Sequence[Sequence[int]] = (),
        pattern: str | None = SPLIT_PATTERN,
    ) -> None:
        """Build from an ordered list of merges ``[(a, b), ...]``. ``pattern`` is a name in
        :data:`SPLIT_PATTERNS`, the text of one of its patterns, or None (no pre-split)."""
        self.pattern_name = _pattern_name(pattern)
        merges = [(int(a), int(b)) for a, b in merges]
        for i, (a, b) in enumerate(merges):
            if not (0 <= a < 256 + i and 0 <= b < 256 + i):
                raise TokenizerError(f"merge {i} ({a}, {b}) refers to a token id that does not exist yet")
        self.merges: list[tuple[int, int]] = merges
        self.pattern = None if self.pattern_name is None else SPLIT_PATTERNS[self.pattern_name]
        self._regex = re.compile(self.pattern) if self.pattern is not None else None
        self._build_tables()

    def _build_tables(self) -> None:
        # Byte string of every token, for decoding.
        vocab = [bytes([i]) for i in range(256)]
        for a, b in self.merges:
            vocab.append(vocab[a] + vocab[b])
        self._vocab: list[bytes] = vocab
        # Merge lookup for encoding: sorted pair keys and their ranks.
        v = self.vocab_size
        if self.merges:
            m = np.asarray(self.merges, dtype=np.int64)
            keys = m[:, 0] * v + m[:, 1]
        else:
            keys = np.zeros(0, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        self._merge_keys = keys[order]
        self._merge_ranks = order.astype(np.int64)
        # For small vocabularies a dense (V*V,) rank table turns the lookup
        # into one gather, several times faster than a binary search.
        self._rank_table: np.ndarray | None = None
        if keys.size and v * v <= _DENSE_PAIR_LIMIT:
            table = np.full(v * v, _NO_RANK, dtype=np.int64)
            table[keys] = np.arange(keys.size, dtype=np.int64)
            self._rank_table = table

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.merges)

    # -- training -----------------------------------------------------------

    def train(self, text: str, vocab_size: int, min_frequency: int = 2) -> "BPETokenizer":
        """Learn ``vocab_size - 256`` merges from ``text`` (replacing any existing ones).

        Training stops early if no adjacent pair occurs at least
        ``min_frequency`` times (merging a pair seen once only memorizes the
        training text), so the final ``vocab_size`` is *at most* the one asked.
        Returns ``self``.
        """
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)):
            raise TokenizerError(f"BPE vocab_size must be an integer >= 256, got {vocab_size!r}")
        if vocab_size < 256:
            raise TokenizerError(
                f"BPE vocab_size must be >= 256 (the 256 byte tokens), got {vocab_size}"
            )
        vocab_size = int(vocab_size)
        chunk_counts = Counter(self._split(text))
        try:
            encoded = [c.encode("utf-8") for c in chunk_counts]
        except UnicodeEncodeError as err:
            raise TokenizerError(f"training text cannot be encoded as UTF-8: {err.reason}") from None
        ids, lens = _flatten_chunks(encoded)
        # Weight of each position (separator included) = how many times its
        # chunk occurs in the text, so distinct chunks stand in for all copies.
        counts = np.fromiter(chunk_counts.values(), dtype=np.int64, count=len(chunk_counts))
        weights = np.repeat(counts, lens + 1)

        base = vocab_size  # every id is < vocab_size, so a * base + b is unique
        merges: list[tuple[int, int]] = []
        for new_id in range(256, vocab_size):
            pair, count = _most_frequent_pair(ids, weights, base)
            if pair is None or count < min_frequency:
                break
            ids, keep = _merge(ids, pair[0], pair[1], new_id)
            weights = weights[keep]
            merges.append(pair)

        self.merges = merges
        self._build_tables()
        return self

    @classmethod
    def from_text(
        cls,
        text: str,
        vocab_size: int,
        pattern: str | None = SPLIT_PATTERN,
        min_frequency: int = 2,
    ) -> "BPETokenizer":
        """Shortcut for ``BPETokenizer(pattern=pattern).train(text, vocab_size)``."""
        return cls(pattern=pattern).train(text, vocab_size, min_frequency=min_frequency)

    # -- encoding / decoding -------------------------------------------------

    def _split(self, text: str) -> list[str]:
        if self._regex is None:
            return [text] if text else []
        return self._regex.findall(text)

    def encode_array(self, text: str) -> np.ndarray:
        """Encode ``text`` (any string without lone surrogates) to int64 ids.

        Same result as minbpe: within each chunk, repeatedly merge the pair
        with the lowest merge rank.  Distinct chunks are encoded once (a
        numpy pass per merge actually used), then the per-chunk ids are
        gathered back into text order.
        """
        chunks = self._split(text)
        if not chunks:
            return np.zeros(0, dtype=np.int64)
        # Distinct chunks, and for each chunk of the text its distinct index.
        index: dict[str, int] = {}
        inverse = np.fromiter(
            (index.setdefault(c, len(index)) for c in chunks), dtype=np.int64, count=len(chunks)
        )
        try:
            encoded = [c.encode("utf-8") for c in index]
        except UnicodeEncodeError as err:
            raise TokenizerError(f"text cannot be encoded as UTF-8: {err.reason} (at {err.start})") from None
        ids, _ = _flatten_chunks(encoded)
        ids = self._apply_merges(ids)

        # Locate each distinct chunk's tokens between the -1 separators.
        seps = np.flatnonzero(ids < 0)
        starts = np.concatenate(([0], seps[:-1] + 1))
        lengths = seps - starts
        # Gather: output position j of text chunk c reads ids[starts[u_c] + j].
        out_len = lengths[inverse]
        out_start = np.cumsum(out_len) - out_len
        gather = np.arange(int(out_len.sum()), dtype=np.int64) + np.repeat(starts[inverse] - out_start, out_len)
        return ids[gather]

    def _apply_merges(self, ids: np.ndarray) -> np.ndarray:
        """Merge pairs in rank order until no mergeable pair is left."""
        if self._merge_keys.size == 0:
            return ids
        v = self.vocab_size
        n_merges = self._merge_keys.size
        while ids.size >= 2:
            left, right = ids[:-1], ids[1:]
            valid = (left >= 0) & (right >= 0)  # never pair across a separator
            keys = left * v + right
            if self._rank_table is not None:
                ranks = self._rank_table[np.where(valid, keys, 0)]
                ranks[~valid] = _NO_RANK
            else:
                pos = np.minimum(np.searchsorted(self._merge_keys, keys), n_merges - 1)
                hit = valid & (self._merge_keys[pos] == keys)
                ranks = np.where(hit, self._merge_ranks[pos], _NO_RANK)
            # The lowest-ranked pair present is merged everywhere (as minbpe);
            # later merges can never re-create an earlier-ranked pair, so this
            # equals applying the merges one by one in training order.
            rank = int(ranks.min())
            if rank == _NO_RANK:
                break
            a, b = self.merges[rank]
            ids, _ = _merge(ids, a, b, 256 + rank)
        return ids

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """Concatenate the tokens' bytes and decode them as UTF-8.

        Arbitrary id sequences (e.g. sampled by a model) may split a multi-byte
        character; such bytes become U+FFFD (``errors="replace"``) instead of
        raising.  For ids produced by :meth:`encode` the result is exact.
        """
        arr = _as_id_array(ids, self.vocab_size)
        vocab = self._vocab
        return b"".join([vocab[i] for i in arr.tolist()]).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes a single token stands for."""
        return self._vocab[int(_as_id_array([token_id], self.vocab_size)[0])]

    # -- serialization --------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "version": _FORMAT_VERSION,
            "pattern": self.pattern_name,
            "merges": [[a, b] for a, b in self.merges],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BPETokenizer":
        merges = d.get("merges")
        pattern = d.get("pattern", SPLIT_PATTERN)
        if not isinstance(merges, list) or not all(
            isinstance(m, (list, tuple))
            and len(m) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in m)
            for m in merges
        ):
            raise TokenizerError("BPE tokenizer dict needs 'merges': a list of [int, int] pairs")
        return cls(merges, pattern=pattern)

    def __repr__(self) -> str:
        split = "regex" if self.pattern is not None else "none"
        return f"BPETokenizer(vocab_size={self.vocab_size}, split={split})"


def _pattern_name(pattern) -> str | None:
    """The SPLIT_PATTERNS name of ``pattern`` (a name, or the text of a pattern in the table),
    None for None; anything else is a TokenizerError (and is never compiled)."""
    if pattern is None:
        return None
    if isinstance(pattern, str):
        if pattern in SPLIT_PATTERNS:
            return pattern
        for name, text in SPLIT_PATTERNS.items():
            if pattern == text:
                return name
    shown = repr(pattern) if len(repr(pattern)) <= 60 else repr(pattern)[:57] + "..."
    names = ", ".join(repr(n) for n in SPLIT_PATTERNS)
    raise TokenizerError(f"BPE tokenizer 'pattern' must be one of {names} or null (split patterns are "
                         f"named from a fixed table, never compiled from a file), got {shown}")


def _flatten_chunks(chunks: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Byte chunks -> one int64 array, each chunk followed by a ``-1`` separator.

    Returns ``(ids, lengths)`` where ``lengths`` excludes the separators.
    """
    lens = np.fromiter((len(c) for c in chunks), dtype=np.int64, count=len(chunks))
    if not chunks:
        return np.zeros(0, dtype=np.int64), lens
    joined = b"\xff".join(chunks) + b"\xff"  # placeholder byte, overwritten below
    ids = np.frombuffer(joined, dtype=np.uint8).astype(np.int64)
    ids[np.cumsum(lens + 1) - 1] = -1
    return ids, lens


def _most_frequent_pair(
    ids: np.ndarray, weights: np.ndarray, base: int
) -> tuple[tuple[int, int] | None, int]:
    """Most frequent adjacent pair (weighted) and its count; ties -> smallest key."""
    left, right = ids[:-1], ids[1:]
    valid = (left >= 0) & (right >= 0)
    keys = (left * base + right)[valid]
    if keys.size == 0:
        return None, 0
    w = weights[:-1][valid]
    if base * base <= _DENSE_PAIR_LIMIT:
        counts = np.bincount(keys, weights=w, minlength=0)
        best = int(np.argmax(counts))  # argmax returns the first (= smallest key) max
        count = int(counts[best])
    else:
        uniq, inv = np.unique(keys, return_inverse=True)
        counts = np.bincount(inv, weights=w)
        j = int(np.argmax(counts))
        best, count = int(uniq[j]), int(counts[j])
    return (best // base, best % base), count


def _merge(ids: np.ndarray, a: int, b: int, new_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Replace every non-overlapping occurrence of ``(a, b)`` with ``new_id``.

    Occurrences are taken leftmost-first, like a left-to-right scan: in a run
    ``a a a a`` with ``a == b`` the pairs starting at offsets 0 and 2 of the
    run are merged, not the one at 1.  Returns ``(new_ids, keep)`` where
    ``keep`` is the boolean mask of surviving positions of the input (so
    parallel arrays, e.g. training weights, can be filtered the same way).
    Separators (``-1``) never match since ``a, b >= 0``.
    """
    pos = np.flatnonzero((ids[:-1] == a) & (ids[1:] == b))
    if a == b and pos.size > 1:
        # Consecutive candidate positions form runs; keep every other one,
        # counting from the start of each run.
        k = np.arange(pos.size)
        run_start = np.r_[True, np.diff(pos) != 1]
        start_idx = np.maximum.accumulate(np.where(run_start, k, 0))
        pos = pos[(k - start_idx) % 2 == 0]
    keep = np.ones(ids.size, dtype=bool)
    if pos.size == 0:
        return ids, keep
    out = ids.copy()
    out[pos] = new_id
    keep[pos + 1] = False
    return out[keep], keep


# --------------------------------------------------------------------------
# Factories and JSON I/O
# --------------------------------------------------------------------------


def tokenizer_from_dict(d: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from :meth:`Tokenizer.to_dict` output (either kind)."""
    if not isinstance(d, dict):
        raise TokenizerError(f"tokenizer description must be a JSON object, got {type(d).__name__}")
    kind = d.get("type")
    version = d.get("version", _FORMAT_VERSION)
    if version != _FORMAT_VERSION:
        raise TokenizerError(f"unsupported tokenizer format version {version!r} (expected {_FORMAT_VERSION})")
    if kind == CharTokenizer.kind:
        return CharTokenizer.from_dict(d)
    if kind == BPETokenizer.kind:
        return BPETokenizer.from_dict(d)
    raise TokenizerError(f"unknown tokenizer type {kind!r} (expected 'char' or 'bpe')")


def build_tokenizer(kind: str, text: str, vocab_size: int | None = None) -> Tokenizer:
    """Train a tokenizer of ``kind`` (``"char"`` or ``"bpe"``) on ``text``.

    ``vocab_size`` is required for BPE and ignored for ``char`` (whose
    vocabulary is fixed by the text).
    """
    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind == "bpe":
        if vocab_size is None:
            raise TokenizerError("a BPE tokenizer needs a vocab_size (>= 256)")
        return BPETokenizer.from_text(text, vocab_size)
    raise TokenizerError(f"unknown tokenizer kind {kind!r} (expected 'char' or 'bpe')")


def save_json_atomic(obj: Any, path: PathLike) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (see :func:`tinygrad_lm.fileio.atomic_write`)."""
    atomic_write(path, json.dumps(obj, ensure_ascii=False))


def load_tokenizer(path: PathLike) -> Tokenizer:
    """Load a tokenizer JSON file written by :meth:`Tokenizer.save` (either kind)."""
    from ..fileio import FileTooLargeError, SpecialFileError, read_regular

    name = f"'{os.fspath(path)}'"
    try:
        d = json.loads(read_regular(path, max_bytes=TOKENIZER_MAX_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise TokenizerError(f"cannot load tokenizer {name}: no such file") from None
    except SpecialFileError as err:
        raise TokenizerError(f"cannot load tokenizer {name}: it is {err.kind}, not a regular file") from None
    except FileTooLargeError as err:
        raise TokenizerError(f"cannot load tokenizer {name}: it is {err.size:,} bytes, more than the "
                             f"{TOKENIZER_MAX_BYTES:,} a tokenizer file may be") from None
    except (OSError, UnicodeDecodeError) as err:
        raise TokenizerError(f"cannot load tokenizer {name}: {err}") from None
    except (ValueError, RecursionError) as err:  # json.JSONDecodeError is a ValueError; nesting too deep
        raise TokenizerError(f"cannot load tokenizer {name}: invalid JSON ({type(err).__name__}: "
                             f"{' '.join(str(err).split())[:100]})") from None
    try:
        return tokenizer_from_dict(d)
    except TokenizerError as err:
        raise TokenizerError(f"cannot load tokenizer {name}: {err}") from None
