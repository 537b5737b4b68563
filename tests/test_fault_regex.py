"""Fault suite: An untrusted BPE split pattern.

The cases are in tests/reliability_cases.py (class "7."); each one is run here, checked
against its expectations and against its row in docs/reliability.md.
"""
import pytest

from reliability_cases import cases, check_case


@pytest.mark.parametrize("case", cases("7."), ids=lambda c: c.id)
def test_case(case, tmp_path):
    check_case(case, tmp_path)


def test_a_saved_tokenizer_names_its_pattern_and_any_other_is_refused_uncompiled(monkeypatch):
    import re
    from tinygrad_lm.data import SPLIT_PATTERN, BPETokenizer, TokenizerError, tokenizer_from_dict
    tok = BPETokenizer.from_text("the cat sat on the mat " * 20, 270)
    d = tok.to_dict()
    assert d["pattern"] == "gpt2-ascii"
    assert tokenizer_from_dict(d) == tok
    assert tokenizer_from_dict({**d, "pattern": SPLIT_PATTERN}) == tok  # the text of a table pattern: accepted
    import tinygrad_lm.data.tokenizer as tokmod
    compiled = []

    class NoCompile:  # the tokenizer module's `re`, recording what it would compile
        def compile(self, pattern, *a):
            compiled.append(pattern)
            return re.compile(pattern, *a)
    monkeypatch.setattr(tokmod, "re", NoCompile())
    with pytest.raises(TokenizerError, match="must be one of 'gpt2-ascii' or null"):
        tokenizer_from_dict({**d, "pattern": "(?:a+)+b"})
    assert compiled == []
    tokenizer_from_dict(d)
    assert compiled == [SPLIT_PATTERN]  # what a tokenizer compiles is the table's pattern


def test_no_pickle_eval_exec_or_compile_anywhere_in_the_package():
    """Loading a checkpoint, a tokenizer or a data file can run no code: no pickle (nor its
    relatives), and no call of eval, exec, compile or __import__ anywhere in the package."""
    import ast
    import os
    import tinygrad_lm
    root = os.path.dirname(tinygrad_lm.__file__)
    for dirpath, _, files in os.walk(root):
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(dirpath, f)
            src = open(path, encoding="utf-8").read()
            assert "allow_pickle=True" not in src, path
            for node in ast.walk(ast.parse(src)):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                    assert not {"pickle", "cPickle", "marshal", "shelve", "dill"} & {str(n).split(".")[0] for n in names}, path
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    assert node.func.id not in ("eval", "exec", "compile", "__import__"), (path, node.lineno)
