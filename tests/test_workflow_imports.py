"""Import rules of the workflow layer (data, checkpoint, evaluate, generate, train, cli):
what may import what, read from the source, lazy imports inside functions included."""
import ast
import os

import pytest

import tinygrad_lm

PKG = os.path.dirname(tinygrad_lm.__file__)


def package_imports(relpath: str) -> set[str]:
    """The tinygrad_lm modules a file imports, as dotted names relative to the package
    ("checkpoint", "data.corpus", "models.gpt"), wherever in the file the import is."""
    package = relpath.split("/")[:-1]  # the folder a relative import starts from (for __init__.py too)
    out = set()
    for node in ast.walk(ast.parse(open(os.path.join(PKG, relpath), encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)]
            mod = base + (node.module.split(".") if node.module else [])
            if node.module:
                out.add(".".join(mod))
            else:  # from . import backend
                out.update(".".join(mod + [a.name]) for a in node.names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            out.update(n[len("tinygrad_lm."):] for n in names if n.startswith("tinygrad_lm."))
    return out


def test_the_helper_reads_relative_and_absolute_imports():
    assert {"checkpoint", "data", "runs", "train_config"} <= package_imports("train.py")
    assert "fileio" in package_imports("runs.py")
    assert "models.gpt" in package_imports("checkpoint.py")  # a lazy import inside a function


@pytest.mark.parametrize("module", ["fileio.py", "ranges.py"])
def test_bottom_modules_import_nothing_from_the_package(module):
    assert package_imports(module) == set()


def test_the_preset_table_and_the_resource_estimates_import_no_engine():
    assert package_imports("train_config.py") == {"ranges"}  # the flags' range table, stdlib only
    assert package_imports("resources.py") == {"backend"}   # only to ask a CUDA device its free memory


@pytest.mark.parametrize("module", ["checkpoint.py", "evaluate.py", "generate.py", "ngram.py",
                                    "data/__init__.py", "data/corpus.py", "data/tokenizer.py", "data/batches.py",
                                    "data/examples.py"])
def test_what_sample_and_eval_use_never_imports_training(module):
    assert not {m for m in package_imports(module) if m.split(".")[0] in ("train", "train_config")}


@pytest.mark.parametrize("module", ["data/__init__.py", "data/corpus.py", "data/tokenizer.py", "data/batches.py",
                                    "data/examples.py"])
def test_data_layer_needs_no_engine(module):
    assert {m for m in package_imports(module) if not m.startswith("data")} <= {"fileio", "resources"}
