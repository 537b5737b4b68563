"""Data layer: corpus loading, tokenizers and batching (pure numpy, no autodiff).

Typical use::

    from tinygrad_lm.data import builtin_corpus, CharTokenizer, train_val_split, get_batch
    text = builtin_corpus()
    tok = CharTokenizer.from_text(text)
    train, val = train_val_split(tok.encode_array(text))
    x, y = get_batch(train, batch_size=32, block_size=64, rng=np.random.default_rng(0))
"""

from .batches import get_batch, iter_eval_batches, num_eval_tokens, sample_batch
from .corpus import (CORPUS_NAME, DataError, builtin_corpus, encode_splits, load_corpus, load_text, text_sha256,
                     train_val_split)
from .tokenizer import (
    SPLIT_PATTERN,
    SPLIT_PATTERNS,
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    TokenizerError,
    build_tokenizer,
    load_tokenizer,
    tokenizer_from_dict,
)
from .examples import (IGNORE, PairSet, SequenceSet, check_encodable, examples_text, is_jsonl,
                       load_preference_pairs, load_prompt_completion)

__all__ = [
    "BPETokenizer",
    "IGNORE",
    "PairSet",
    "SequenceSet",
    "check_encodable",
    "examples_text",
    "is_jsonl",
    "load_preference_pairs",
    "load_prompt_completion",
    "sample_batch",
    "CORPUS_NAME",
    "CharTokenizer",
    "DataError",
    "SPLIT_PATTERN",
    "SPLIT_PATTERNS",
    "Tokenizer",
    "TokenizerError",
    "build_tokenizer",
    "builtin_corpus",
    "encode_splits",
    "get_batch",
    "iter_eval_batches",
    "load_corpus",
    "load_text",
    "load_tokenizer",
    "text_sha256",
    "num_eval_tokens",
    "tokenizer_from_dict",
    "train_val_split",
]
