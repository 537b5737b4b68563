"""The import rules of the lower layers, read from the source (every import, lazy ones included).

backend (+ kernels/) <- engine <- ops/ <- tensor.py: each imports only the layers below it, so
there is no import cycle among them (tests/test_architecture.py checks the whole package against
docs/architecture.md); opcheck/ is a tool above the library, which only the CLI
imports. (tests/test_workflow_imports.py has the rules of the workflow layer.)
"""
import ast
import os

import pytest

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tinygrad_lm")


def package_imports(path):
    """The tinygrad_lm modules a file imports, as dotted names relative to the package
    ("engine", "ops.fused", "nn.functional"), from `from . import x` and `from .x import y`."""
    rel = os.path.relpath(path, PKG)
    here = rel.replace(os.sep, ".")[:-3].split(".")[:-1]  # the file's package, relative to tinygrad_lm
    if rel.endswith("__init__.py"):
        here = rel.replace(os.sep, ".").split(".")[:-2]
    out = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[:len(here) - (node.level - 1)] if node.level > 1 else list(here)
            mod = base + (node.module.split(".") if node.module else [])
            if node.module:
                out.add(".".join(mod))
            else:
                out.update(".".join(mod + [a.name]) for a in node.names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            out.update(n[len("tinygrad_lm."):] for n in names if n.startswith("tinygrad_lm."))
    return out


def files(sub=""):
    root = os.path.join(PKG, sub)
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".py"))


def test_the_backend_and_its_kernels_import_nothing_above_them():
    """backend.py imports the CUDA kernels' package; the kernels import nothing back (the
    backend hands them the cupy module and the host runtime at each call)."""
    assert package_imports(os.path.join(PKG, "backend.py")) <= {"kernels"}
    for path in files("kernels"):
        assert all(m.split(".")[0] == "kernels" for m in package_imports(path)), path


def test_the_engine_imports_only_the_backend():
    assert package_imports(os.path.join(PKG, "engine.py")) == {"backend"}


@pytest.mark.parametrize("path", files("ops"), ids=os.path.basename)
def test_ops_import_only_the_engine_the_backend_and_each_other(path):
    allowed = {"backend", "engine"} | {f"ops.{os.path.basename(p)[:-3]}" for p in files("ops")}
    assert package_imports(path) <= allowed, f"{path} imports {sorted(package_imports(path) - allowed)}"


def test_tensor_imports_the_engine_and_ops_and_nothing_above():
    got = package_imports(os.path.join(PKG, "tensor.py"))
    ops = {f"ops.{os.path.basename(p)[:-3]}" for p in files("ops")} | {"ops"}
    assert got <= {"backend", "engine"} | ops, sorted(got)


def test_only_the_cli_imports_opcheck():
    users = [os.path.relpath(p, PKG) for p in files() if not os.path.relpath(p, PKG).startswith("opcheck")
             and any(m == "opcheck" or m.startswith("opcheck.") for m in package_imports(p))]
    assert users == ["cli.py"]


def _top_level_calls(path):
    """Names called by a module's top-level statements (what runs when it is imported)."""
    out = set()
    for stmt in ast.parse(open(path, encoding="utf-8").read()).body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for node in ast.walk(stmt):
            if isinstance(node, ast.Call):
                f = node.func
                out.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return out


def test_importing_the_package_changes_no_process_setting_and_the_cli_does_unless_opted_out(monkeypatch, capsys):
    for path in files():
        assert not {"tune_host_allocator", "mallopt", "set_tf32"} & _top_level_calls(path), path
    from tinygrad_lm import backend, cli
    calls = []
    monkeypatch.setattr(backend, "tune_host_allocator", lambda *a, **k: calls.append(1) or True)
    monkeypatch.delenv("TINYGRAD_LM_NO_MALLOC_TUNE", raising=False)
    assert cli.main(["gradcheck", "--ops", "add", "--no-gpt"]) == 0 and calls == [1]
    monkeypatch.setenv("TINYGRAD_LM_NO_MALLOC_TUNE", "1")
    assert cli.main(["gradcheck", "--ops", "add", "--no-gpt"]) == 0 and calls == [1]
    capsys.readouterr()
