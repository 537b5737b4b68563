"""The package's layers, read from the source: docs/architecture.md's table against the imports.

The import graph has one node per module of tinygrad_lm (every .py file; a package is its
__init__.py, the root package is ""). Its arrows are every `import` / `from ... import`
statement anywhere in a file: at the top, inside functions (lazy imports), under `try`.
`from .x import y` is an arrow to module `x.y` when that is a module of the package, else to
`x`; the parent packages Python runs before a module are not arrows of that module (every
module would depend on tinygrad_lm/__init__.py). Imports by name at run time
(`importlib.import_module`) are not arrows: a test below keeps them to the two known ones.

Rules checked: every module is in exactly one layer of docs/architecture.md's table; every
arrow goes to the module's own layer or to one its row may import; the only import circle
(strongly connected component of more than one module) allowed is among tensor.py and ops/;
ops/ imports nothing but the backend, the engine, tensor.py and other ops; only the CLI
imports the tools; the README's layout table gives each path the same layer; every module
over 600 lines says why at its top. Each rule is a function that returns its violations, and
the last tests plant a violation in a copy of the graph to show the rule catches it.
"""
import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "tinygrad_lm")
LONG = 600  # lines; a longer module says "Why this file is long:" in its docstring


# ================================================================ the graph
def module_files() -> dict:
    """module name ("", "backend", "ops.fused", "nn") -> its file."""
    out = {}
    for d, dirs, fs in os.walk(PKG):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        for f in fs:
            if f.endswith(".py"):
                parts = os.path.relpath(os.path.join(d, f), PKG)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                out[".".join(parts)] = os.path.join(d, f)
    return out


MODULES = module_files()


def imports_of(name: str, path: str, modules=MODULES) -> dict:
    """The package modules `name` imports -> the line of the first such import."""
    package = name.split(".") if path.endswith("__init__.py") else name.split(".")[:-1]
    package = [p for p in package if p]
    out = {}
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 > len(package):
                    raise AssertionError(f"{path}:{node.lineno}: relative import above the package")
                base = package[:len(package) - (node.level - 1)]
            elif (node.module or "").split(".")[0] == "tinygrad_lm":
                base = []
            else:
                continue
            mod = [p for p in (node.module or "").split(".") if p]
            if not node.level:
                mod = mod[1:]                              # drop "tinygrad_lm"
            mod = base + mod
            for alias in node.names:
                sub = ".".join(mod + [alias.name])
                targets.append(sub if sub in modules else ".".join(mod))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "tinygrad_lm":
                    targets.append(".".join(parts[1:]))
        for t in targets:
            if t not in modules:
                raise AssertionError(f"{path}:{node.lineno}: imports {t!r}, not a module of the package")
            if t != name:
                out.setdefault(t, node.lineno)
    return out


def build_graph() -> dict:
    return {m: imports_of(m, p) for m, p in MODULES.items()}


GRAPH = build_graph()


def cycles(graph: dict) -> list:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(comp)
    return out


# ================================================================ the layer table
def _cell_paths(cell: str) -> list:
    return re.findall(r"`([^`]+)`", cell)


def _table_rows(text: str, header: str) -> list:
    """The rows (lists of cells) of the markdown table whose header line starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def layer_table() -> tuple:
    """(path -> layer, layer -> set of layers it may import, layers top to bottom)."""
    text = open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8").read()
    paths, may, order = {}, {}, []
    for layer, cell, allowed in _table_rows(text, "| layer | paths"):
        order.append(layer)
        may[layer] = {x.strip() for x in allowed.split(",") if x.strip()}
        for p in _cell_paths(cell):
            assert p not in paths, f"docs/architecture.md: {p} is in two layers"
            paths[p] = layer
    return paths, may, order


def _matches(path: str, module: str) -> bool:
    """Does a table path ("tensor.py", "ops/", "__init__.py", "models/gpt.py") hold `module`?"""
    if path.endswith("/"):
        pkg = path[:-1].replace("/", ".")
        return module == pkg or module.startswith(pkg + ".")
    if path == "__init__.py":
        return module == ""
    return module == path[:-3].replace("/", ".").removesuffix(".__init__")


def assign(paths: dict, modules=MODULES) -> tuple:
    """(module -> layer, problems): each module must match exactly one path."""
    out, problems = {}, []
    for m in sorted(modules):
        hits = [p for p in paths if _matches(p, m)]
        if len(hits) != 1:
            problems.append(f"module {m or '<root>'!r} matches {hits or 'no path'} (needs exactly one)")
        else:
            out[m] = paths[hits[0]]
    for p in paths:
        if not any(_matches(p, m) for m in modules):
            problems.append(f"path {p!r} holds no module of the package")
    return out, problems


def layer_violations(graph: dict, layer_of: dict, may: dict) -> list:
    """Every arrow from a layer to another layer its row does not name."""
    return [f"{a or '<root>'} ({layer_of[a]}) imports {b or '<root>'} ({layer_of[b]}), line {line}"
            for a in sorted(graph) for b, line in sorted(graph[a].items())
            if layer_of[a] != layer_of[b] and layer_of[b] not in may[layer_of[a]]]


ALLOWED_CIRCLE = {"tensor"} | {m for m in MODULES if m == "ops" or m.startswith("ops.")}


def circle_violations(graph: dict) -> list:
    return [sorted(c) for c in cycles(graph) if not c <= ALLOWED_CIRCLE]


def ops_violations(graph: dict) -> list:
    """ops/ imports only the backend, the engine, tensor.py and other ops."""
    ok = {"backend", "engine", "tensor"} | {m for m in graph if m == "ops" or m.startswith("ops.")}
    return [f"{a} imports {b}, line {line}" for a in sorted(graph) if a == "ops" or a.startswith("ops.")
            for b, line in sorted(graph[a].items()) if b not in ok]


TOOLS = ("opcheck", "bench")


def tool_violations(graph: dict) -> list:
    """Only cli.py imports opcheck/ and bench/ (from outside them)."""
    return [f"{a} imports {b}" for a in sorted(graph) if a != "cli" and a.split(".")[0] not in TOOLS
            for b in sorted(graph[a]) if b.split(".")[0] in TOOLS]


# ================================================================ the rules, on the package
def test_the_graph_counts_relative_absolute_and_function_level_imports():
    assert {"backend", "engine", "ops.fused", "ops.movement"} <= set(GRAPH["tensor"])   # from .ops import fused, ...
    assert "models.gpt" in GRAPH["checkpoint"]        # imported inside a function
    assert "kernels.ops" in GRAPH["backend"]          # from .kernels import ops as kernel_ops
    assert "cli" in GRAPH["__main__"]
    assert "" in GRAPH["bench.model_step"]            # from .. import Tensor, ...: the package root
    assert "engine" in GRAPH[""] and "tensor" in GRAPH[""]


def test_every_module_is_in_exactly_one_layer():
    paths, may, order = layer_table()
    assert order == ["tools", "workflow", "models", "data", "nn", "engine", "backend"]
    for layer, allowed in may.items():  # a layer may import only layers below it in the table
        assert allowed <= set(order[order.index(layer) + 1:]), (layer, allowed)
        for below in allowed:  # and every layer a path of arrows reaches (the diagram's reading)
            assert may[below] <= allowed, (layer, below, may[below] - allowed)
    _, problems = assign(paths)
    assert not problems, "\n".join(problems)


def test_every_import_goes_to_its_own_layer_or_one_its_row_may_import():
    paths, may, _ = layer_table()
    layer_of, _ = assign(paths)
    bad = layer_violations(GRAPH, layer_of, may)
    assert not bad, "imports that go up or sideways (docs/architecture.md):\n" + "\n".join(bad)


def test_the_only_import_circle_allowed_is_tensor_and_ops():
    assert not circle_violations(GRAPH), circle_violations(GRAPH)
    assert all(c <= ALLOWED_CIRCLE for c in cycles(GRAPH))


def test_ops_import_only_the_backend_the_engine_tensor_and_each_other():
    assert not ops_violations(GRAPH), ops_violations(GRAPH)


def test_only_the_cli_imports_the_tools():
    assert not tool_violations(GRAPH), tool_violations(GRAPH)
    assert {"opcheck", "bench"} <= set(GRAPH["cli"])


def test_the_kernels_import_nothing_from_the_rest_of_the_package():
    for m in MODULES:
        if m.split(".")[0] == "kernels":
            assert all(b.split(".")[0] == "kernels" for b in GRAPH[m]), (m, GRAPH[m])


def test_imports_by_name_at_run_time_are_the_two_known_ones_and_nothing_reads_sys_modules():
    found = set()
    for m, path in MODULES.items():
        tree = ast.parse(open(path, encoding="utf-8").read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "import_module" or \
                    isinstance(node, ast.Name) and node.id == "__import__":
                found.add(m)
            if isinstance(node, ast.Attribute) and node.attr == "modules" and \
                    isinstance(node.value, ast.Name) and node.value.id == "sys":
                raise AssertionError(f"{path}:{node.lineno}: reaches module state through sys.modules")
    assert found == {"opcheck.harness", "bench.harness"}


def readme_layout() -> list:
    """(paths relative to tinygrad_lm/, layer) per row of the README's layout table that names
    package paths; the first path of a row carries the `tinygrad_lm/` prefix, the rest of
    the row's paths are relative to it."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    out = []
    for path_cell, layer, _ in _table_rows(text.split("## Layout", 1)[1], "| path | layer |"):
        ps = _cell_paths(path_cell)
        if ps and ps[0].startswith("tinygrad_lm/"):
            out.append(([p.removeprefix("tinygrad_lm/") for p in ps], layer))
        else:
            assert layer == "", f"README layout: {path_cell} is not in the package and has no layer"
    return out


def test_the_readme_layout_table_gives_every_module_the_layer_of_docs_architecture():
    paths, _, _ = layer_table()
    layer_of, _ = assign(paths)
    readme = {}
    for ps, layer in readme_layout():
        for p in ps:
            assert p not in readme, f"README layout: {p} is in two rows"
            readme[p] = layer
    readme_layer_of, problems = assign(readme)
    assert not problems, "README layout:\n" + "\n".join(problems)
    diff = {m: (readme_layer_of[m], layer_of[m]) for m in MODULES if readme_layer_of[m] != layer_of[m]}
    assert not diff, f"module: (README's layer, docs/architecture.md's) {diff}"


def long_files_without_a_reason(files=MODULES, limit=LONG) -> list:
    out = []
    for m, path in sorted(files.items()):
        text = open(path, encoding="utf-8").read()
        if text.count("\n") > limit:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if not re.search(r"(^|\n)Why this file is long: \S", doc):
                out.append(f"{os.path.relpath(path, ROOT)}: {text.count(chr(10))} lines")
    return out


def test_every_module_over_600_lines_says_why_at_its_top():
    assert not long_files_without_a_reason(), long_files_without_a_reason()


# ================================================================ each rule catches what it is for
def _with_edge(graph, a, b):
    g = {m: dict(e) for m, e in graph.items()}
    g[a][b] = 1
    return g


def test_an_upward_import_from_an_op_is_caught():
    paths, may, _ = layer_table()
    layer_of, _ = assign(paths)
    g = _with_edge(GRAPH, "ops.fused", "nn.functional")     # what ops/fused.py once did
    assert layer_violations(g, layer_of, may) == ["ops.fused (engine) imports nn.functional (nn), line 1"]
    assert ops_violations(g) == ["ops.fused imports nn.functional, line 1"]
    assert circle_violations(g) == [sorted({"nn.functional", "ops.fused", "tensor"})]
    assert tool_violations(_with_edge(GRAPH, "ops.fused", "opcheck.harness")) == ["ops.fused imports opcheck.harness"]


def test_a_circle_outside_tensor_and_ops_is_caught_and_one_between_them_is_not():
    assert circle_violations(_with_edge(GRAPH, "kernels", "backend")) == [["backend", "kernels", "kernels.ops"]]
    assert circle_violations(_with_edge(GRAPH, "train", "runs")) == []          # runs does not import train
    assert circle_violations(_with_edge(GRAPH, "runs", "train")) == [["runs", "train"]]
    assert circle_violations(_with_edge(GRAPH, "ops.fused", "tensor")) == []    # the allowed circle
    assert cycles(_with_edge(GRAPH, "ops.fused", "tensor")) == [{"ops.fused", "tensor"}]


def test_a_module_in_no_layer_or_two_is_caught():
    paths, _, _ = layer_table()
    assert assign(paths, {**MODULES, "newmod": "x"})[1] == ["module 'newmod' matches no path (needs exactly one)"]
    _, problems = assign({**paths, "ops/fused.py": "nn"})
    assert problems == ["module 'ops.fused' matches ['ops/', 'ops/fused.py'] (needs exactly one)"]


def test_a_long_file_without_a_reason_is_caught(tmp_path):
    body = "x = 1\n" * LONG
    files = {}
    for name, doc in (("bare", "A module."), ("said", "A module.\n\nWhy this file is long: one table."),
                      ("buried", "A module. Why this file is long: not a paragraph of its own.")):
        files[name] = str(tmp_path / f"{name}.py")
        open(files[name], "w").write(f'"""{doc}"""\n' + body)
    files["short"] = str(tmp_path / "short.py")
    open(files["short"], "w").write('"""A module."""\n' + "x = 1\n" * (LONG - 1))
    assert [p.split(":")[0] for p in long_files_without_a_reason(files)] == [
        os.path.relpath(files["bare"], ROOT), os.path.relpath(files["buried"], ROOT)]


def test_a_planted_upward_import_in_a_source_file_is_read(tmp_path):
    """The graph is read from the text: a function-level `from ..nn import functional` in a copy
    of ops/fused.py shows up as an arrow."""
    src = open(MODULES["ops.fused"], encoding="utf-8").read()
    planted = tmp_path / "fused.py"
    planted.write_text(src + "\n\ndef _upward():\n    from ..nn import functional\n    return functional\n")
    assert "nn.functional" in imports_of("ops.fused", str(planted))
    assert "nn.functional" not in GRAPH["ops.fused"]
