"""Data for the second training stage, read from JSONL files (one JSON object per line;
blank lines are skipped):

* prompt/completion examples, ``{"prompt": ..., "completion": ...}``, for fine-tuning with
  ``tinygrad-lm train --data FILE.jsonl`` (``--loss-on completion`` counts only the
  completion's tokens in the loss);
* preference pairs, ``{"prompt": ..., "chosen": ..., "rejected": ...}``, for
  ``tinygrad-lm dpo``.

Each example becomes the token sequence ``seq = prompt + completion`` (the two encoded
separately, so the boundary between them is a token boundary), and a model reads it as
next-token predictions: ``x = seq[:-1]``, ``y = seq[1:]``. Position ``t`` predicts
``seq[t + 1]``, so with a prompt of ``P`` tokens the completion's tokens are the targets at
``t >= P - 1``; the others (the prompt's own tokens) are set to ``IGNORE`` (-1, the GPT's
``ignore_index``) when only the completion counts. Sequences of a batch are right-padded to
the longest: padded inputs are token 0, padded targets ``IGNORE``; causal attention never
lets a real position see the padding after it.

**Overflow policy.** A model sees at most ``block_size`` inputs, so a sequence may hold at
most ``block_size + 1`` tokens. A longer one has its *prompt cut from the left*: the
completion (what is learned, or what DPO scores) stays whole, and so does the end of the
prompt, the part next to the completion. The loaders say how many were cut and the first
line. A completion of more than ``block_size`` tokens leaves no room for even one prompt
token (the first completion token needs something before it to be predicted from) and is
an error naming the line; so is an empty prompt or completion.

Every problem with a file is a :class:`DataError` naming the file and the line.
"""
from __future__ import annotations

import json

import numpy as np

from .corpus import DataError
from .tokenizer import TokenizerError

__all__ = ["IGNORE", "PairSet", "SequenceSet", "check_encodable", "examples_text", "is_jsonl", "load_preference_pairs",
           "load_prompt_completion", "read_records"]

#: The target id that counts in no loss (the GPT's cross-entropy ``ignore_index``).
IGNORE = -1


def is_jsonl(path) -> bool:
    """Whether a --data path names a JSONL file of examples (by its extension, ``.jsonl``)."""
    return path is not None and str(path).lower().endswith(".jsonl")


# ---------------------------------------------------------------- encoding, with the position of what cannot be
def _line_col(text: str, i: int) -> str:
    line = text.count("\n", 0, i) + 1
    return f"line {line}, column {i - (text.rfind(chr(10), 0, i) + 1) + 1}"


def check_encodable(tok, text: str, source: str, whose: str) -> None:
    """TokenizerError naming the first character of `text` that `tok` cannot encode and where
    it is, e.g. "corpus.txt: 'Ω' at line 3, column 7 (character 52) is not in the vocabulary of
    the --init-from checkpoint's char tokenizer (65 characters)"."""
    i = tok.first_unencodable(text)
    if i is not None:
        raise TokenizerError(f"{source}: {text[i]!r} at {_line_col(text, i)} (character {i}) is not in the vocabulary "
                             f"of {whose} {tok.kind} tokenizer ({tok.vocab_size} tokens), so it cannot be encoded")


def _encode_field(tok, value: str, source: str, key: str, whose: str) -> np.ndarray:
    i = tok.first_unencodable(value)
    if i is not None:
        raise TokenizerError(f"{source}: {value[i]!r} at character {i} of its {key!r} is not in the vocabulary of "
                             f"{whose} {tok.kind} tokenizer ({tok.vocab_size} tokens), so it cannot be encoded")
    return tok.encode_array(value)


# ---------------------------------------------------------------- reading a JSONL file
def read_records(text: str, source: str, keys: tuple, what: str) -> list[tuple[int, dict]]:
    """-> [(line number, object)] of the non-blank lines of `text`, each a JSON object whose
    `keys` are strings (other keys are ignored). DataError naming `source` and the line
    otherwise, and when no line holds anything (`what`: "examples", "pairs")."""
    records = []
    for n, line in enumerate(text.split("\n"), 1):  # not splitlines(): JSON strings may hold U+2028
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{source} line {n}: not valid JSON ({e.msg} at column {e.colno})") from None
        except (ValueError, RecursionError) as e:  # e.g. an integer of more digits than Python converts
            raise DataError(f"{source} line {n}: not valid JSON ({type(e).__name__}: {' '.join(str(e).split())[:120]})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{source} line {n}: expected a JSON object with keys {', '.join(map(repr, keys))}, "
                            f"got {_json_type(obj)}")
        for k in keys:
            if k not in obj:
                raise DataError(f"{source} line {n}: no {k!r} key (each line needs {', '.join(map(repr, keys))})")
            if not isinstance(obj[k], str):
                raise DataError(f"{source} line {n}: {k!r} must be a string, got {_json_type(obj[k])}")
        records.append((n, obj))
    if not records:
        raise DataError(f"{source} holds no {what}: every line is blank")
    return records


def _json_type(v) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number")


def _need_text(value: str, source: str, n: int, key: str, why: str) -> None:
    if not value:
        raise DataError(f"{source} line {n}: {key!r} is empty ({why})")


_EMPTY_PROMPT = "the first completion token needs at least one token before it to be predicted from"


def _fit_prompt(prompt: np.ndarray, longest: int, block_size: int, source: str, n: int, key: str):
    """The prompt cut from the left so that it and a completion of `longest` tokens fit in
    block_size + 1 tokens -> (prompt, whether it was cut)."""
    room = block_size + 1 - longest
    if room < 1:
        raise DataError(f"{source} line {n}: {key!r} is {longest} tokens, more than the block_size {block_size} "
                        f"tokens the model can score after at least one prompt token (shorten it, or use a "
                        f"checkpoint with a larger block_size)")
    return (prompt[-room:], True) if len(prompt) > room else (prompt, False)


def _cut_note(cut: list[int], source: str, what: str, block_size: int) -> list[str]:
    if not cut:
        return []
    many = len(cut) > 1
    return [f"{source}: the prompt{'s' if many else ''} of {len(cut)} {what if many else what[:-1]} (first: line "
            f"{cut[0]}) {'were' if many else 'was'} cut from the left to fit block_size {block_size} with "
            f"{'their' if many else 'its'} completions"]


# ---------------------------------------------------------------- token sequences
class SequenceSet:
    """Token sequences, each a prompt followed by a completion, stored flat: sequence i is
    ``tokens[starts[i] : starts[i] + lengths[i]]`` and its first ``prompt_lengths[i]`` tokens
    are the prompt. `loss_on` "completion" ignores the prompt's targets, "all" counts them."""

    def __init__(self, prompts: list, completions: list, loss_on: str = "completion"):
        if loss_on not in ("all", "completion"):
            raise ValueError(f"loss_on must be 'all' or 'completion', got {loss_on!r}")
        if not prompts:
            raise ValueError("SequenceSet: no sequences")
        self.loss_on = loss_on
        self.prompt_lengths = np.array([len(p) for p in prompts], dtype=np.int64)
        self.lengths = self.prompt_lengths + np.array([len(c) for c in completions], dtype=np.int64)
        self.starts = np.concatenate(([0], np.cumsum(self.lengths)[:-1])).astype(np.int64)
        self.tokens = np.concatenate([np.concatenate((p, c)) for p, c in zip(prompts, completions)]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.lengths)

    def num_targets(self) -> int:
        """How many targets count in the loss over the whole set."""
        if self.loss_on == "all":
            return int((self.lengths - 1).sum())
        return int((self.lengths - self.prompt_lengths).sum())

    def rows(self, idx) -> tuple[np.ndarray, np.ndarray]:
        """The sequences `idx` as a batch -> (x, y), int64 (R, T) with T = the longest one's
        length - 1: x = seq[:-1], y = seq[1:], right-padded (x with 0, y with IGNORE), prompt
        targets IGNORE when only the completion counts. One gather, no loop over rows."""
        idx = np.asarray(idx, dtype=np.int64)
        length = self.lengths[idx]
        pos = np.arange(int(length.max()) - 1)
        src = np.minimum(self.starts[idx, None] + pos, len(self.tokens) - 2)   # (R, T), clipped in the padding
        inside = pos < (length - 1)[:, None]
        x = np.where(inside, self.tokens[src], 0)
        counts = inside if self.loss_on == "all" else inside & (pos >= (self.prompt_lengths[idx] - 1)[:, None])
        y = np.where(counts, self.tokens[src + 1], IGNORE)
        return x, y

    def get_batch(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """`batch_size` sequences drawn at random (with replacement) -> rows(...)."""
        return self.rows(rng.integers(0, len(self), size=int(batch_size)))

    def iter_batches(self, batch_size: int):
        """Every sequence once, in order, `batch_size` at a time -> (x, y) batches."""
        for first in range(0, len(self), int(batch_size)):
            yield self.rows(np.arange(first, min(first + int(batch_size), len(self))))


def examples_text(text: str, source: str) -> str:
    """The prompts and completions of a JSONL file's examples, one after the other: the text a
    tokenizer for them is built from (not the file itself, whose JSON escapes such as
    \\u00e9 are not the characters they stand for)."""
    return "\n".join(obj[k] for _, obj in read_records(text, source, ("prompt", "completion"), "examples")
                     for k in ("prompt", "completion"))


def load_prompt_completion(text: str, source: str, tok, block_size: int, loss_on: str, whose: str,
                           split: bool = True):
    """The prompt/completion examples of a JSONL file's `text`, split 90/10 in file order (the
    last tenth, at least one example, held out, as train_val_split does with text) ->
    (train SequenceSet, val SequenceSet, notes to print); with split=False -> (all of them,
    None, notes)."""
    prompts, completions, cut = [], [], []
    for n, obj in read_records(text, source, ("prompt", "completion"), "examples"):
        _need_text(obj["prompt"], source, n, "prompt", _EMPTY_PROMPT)
        _need_text(obj["completion"], source, n, "completion", "nothing to learn")
        where = f"{source} line {n}"
        p = _encode_field(tok, obj["prompt"], where, "prompt", whose)
        c = _encode_field(tok, obj["completion"], where, "completion", whose)
        p, was_cut = _fit_prompt(p, len(c), block_size, source, n, "completion")
        if was_cut:
            cut.append(n)
        prompts.append(p)
        completions.append(c)
    notes = _cut_note(cut, source, "examples", block_size)
    if not split:
        return SequenceSet(prompts, completions, loss_on), None, notes
    if len(prompts) < 2:
        raise DataError(f"{source} holds 1 example; need at least 2 (one to train on, one held out)")
    n_val = max(1, len(prompts) // 10)
    k = len(prompts) - n_val
    return SequenceSet(prompts[:k], completions[:k], loss_on), SequenceSet(prompts[k:], completions[k:], loss_on), notes


# ---------------------------------------------------------------- preference pairs
class PairSet:
    """Preference pairs as sequences: pair i is prompt + chosen (sequence 2i of `seqs`) and
    prompt + rejected (sequence 2i + 1), one prompt for both, only the completions' targets
    counting. A subset shares the sequences and keeps the indices of its pairs (`index`);
    `lines` are the file lines the pairs came from."""

    def __init__(self, seqs: SequenceSet, index, lines):
        self.seqs, self.index, self.lines = seqs, np.asarray(index, dtype=np.int64), np.asarray(lines, dtype=np.int64)

    @classmethod
    def from_lists(cls, prompts, chosen, rejected, lines) -> "PairSet":
        both = [c for pair in zip(chosen, rejected) for c in pair]
        seqs = SequenceSet([p for p in prompts for _ in range(2)], both, "completion")
        return cls(seqs, np.arange(len(prompts)), lines)

    def __len__(self) -> int:
        return len(self.index)

    def rows(self, pairs) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of 2R rows for the R pairs `pairs` (positions in this set): the chosen
        sequences first, then the rejected ones in the same order, so the sequence
        log-probabilities split in halves."""
        k = self.index[np.asarray(pairs, dtype=np.int64)]
        return self.seqs.rows(np.concatenate((2 * k, 2 * k + 1)))

    def subset(self, pairs) -> "PairSet":
        """The pairs at positions `pairs` of this set, as a set of their own."""
        pairs = np.asarray(pairs, dtype=np.int64)
        return PairSet(self.seqs, self.index[pairs], self.lines[pairs])


def load_preference_pairs(text: str, source: str, tok, block_size: int, whose: str) -> tuple[PairSet, list[str]]:
    """The preference pairs of a JSONL file's `text` -> (PairSet, notes to print). Refused,
    naming the line: malformed JSON, a missing or non-string key, an empty prompt, chosen or
    rejected, chosen identical to rejected (no preference to learn), a character the
    tokenizer cannot encode, a completion longer than block_size tokens."""
    prompts, chosen, rejected, lines, cut = [], [], [], [], []
    for n, obj in read_records(text, source, ("prompt", "chosen", "rejected"), "pairs"):
        _need_text(obj["prompt"], source, n, "prompt", _EMPTY_PROMPT)
        _need_text(obj["chosen"], source, n, "chosen", "a preference needs two answers")
        _need_text(obj["rejected"], source, n, "rejected", "a preference needs two answers")
        if obj["chosen"] == obj["rejected"]:
            raise DataError(f"{source} line {n}: 'chosen' and 'rejected' are identical (there is no preference to "
                            f"learn: the DPO gradient of such a pair is zero)")
        where = f"{source} line {n}"
        p = _encode_field(tok, obj["prompt"], where, "prompt", whose)
        c = _encode_field(tok, obj["chosen"], where, "chosen", whose)
        r = _encode_field(tok, obj["rejected"], where, "rejected", whose)
        longer = "chosen" if len(c) >= len(r) else "rejected"
        p, was_cut = _fit_prompt(p, max(len(c), len(r)), block_size, source, n, longer)
        if was_cut:
            cut.append(n)
        prompts.append(p)
        chosen.append(c)
        rejected.append(r)
        lines.append(n)
    return PairSet.from_lists(prompts, chosen, rejected, lines), _cut_note(cut, source, "pairs", block_size)
