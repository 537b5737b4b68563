"""The computation graph as a picture: Graphviz DOT of a tensor's graph.

    from tinygrad_lm.viz import record_scopes, to_dot, render
    with record_scopes():                 # remember which module made each node, and gradient norms
        logits, loss = model(x, y)
        loss.backward()
    render(to_dot(loss, model=model), "gpt.svg")     # needs Graphviz's `dot` for .svg/.png

* one node per op (a box: op name, output shape and dtype, and after backward the norm of
  the gradient of its output, when record_scopes() saw the backward or the tensor kept .grad);
* one node per leaf tensor (an ellipse: the parameter's name from `model.named_parameters()`
  or `tensor.name`, shape, dtype, `.grad` norm), constants and integer inputs dashed;
* an edge input -> op for every input of every op (x * x draws two);
* ops grouped into nested `subgraph cluster_*` boxes by the module that made them
  (`transformer` > `transformer.h.0` > `transformer.h.0.attn`), when the forward ran inside
  `record_scopes()`; `collapse=True` draws each module as one node instead.

The walk follows `node._ctx.parents` from the tensor, which survives backward (a freed node
keeps its parents), so a graph can be drawn before or after backward.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .debug import grad_norm, node_info, record_scopes  # noqa: F401  (record_scopes is re-exported)
from .fileio import atomic_write
from .tensor import Tensor

__all__ = ["to_dot", "build_graph", "Graph", "GNode", "render", "graph_command", "record_scopes",
           "GraphvizNotFound"]


class GraphvizNotFound(FileNotFoundError):
    """The `dot` program is not installed (the .dot file was still written)."""


@dataclass
class GNode:
    id: str
    kind: str                  # "op", "param" (a leaf that requires grad), "const" (a leaf that does not), "module", "more"
    label: str
    scope: str = ""            # the module cluster it sits in ("" = top level)
    attrs: dict = field(default_factory=dict)


@dataclass
class Graph:
    nodes: list                # GNode, in an order where inputs come before the ops that use them
    edges: list                # (from id, to id)
    truncated: int = 0         # nodes left out by max_nodes

    @property
    def clusters(self) -> list:
        """Every module scope that gets a cluster: each node's scope and all its dotted prefixes."""
        out = set()
        for n in self.nodes:
            s = n.scope
            while s:
                out.add(s)
                s = s.rpartition(".")[0]
        return sorted(out)

    def to_dot(self, title: str | None = None) -> str:
        lines = ["digraph tinygrad_lm {", '  graph [rankdir=TB, fontname="Helvetica", fontsize=10, compound=true];',
                 '  node [fontname="Helvetica", fontsize=9];', '  edge [arrowsize=0.6];']
        if title:
            lines.append(f'  labelloc="t"; label="{_esc(title)}";')
        by_scope: dict = {}
        for n in self.nodes:
            by_scope.setdefault(n.scope, []).append(n)
        children: dict = {}
        for c in self.clusters:
            children.setdefault(c.rpartition(".")[0], []).append(c)

        def emit(scope, indent):
            pad = "  " * indent
            for n in by_scope.get(scope, []):
                lines.append(pad + _node_line(n))
            for c in children.get(scope, []):
                lines.append(f"{pad}subgraph {_cluster_id(c)} {{")
                lines.append(f'{pad}  label="{_esc(c)}"; style="rounded"; color="gray60"; fontcolor="gray30";')
                emit(c, indent + 1)
                lines.append(pad + "}")

        emit("", 1)
        for a, b in self.edges:
            lines.append(f"  {a} -> {b};")
        lines.append("}")
        return "\n".join(lines) + "\n"


def _esc(s: str) -> str:
    return str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _cluster_id(scope: str) -> str:
    return "cluster_" + "".join(ch if ch.isalnum() else "_" for ch in scope)


_STYLES = {
    "op": 'shape=box, style="rounded,filled", fillcolor="#dde8f7"',
    "param": 'shape=ellipse, style=filled, fillcolor="#fdf1c7"',
    "const": 'shape=ellipse, style=dashed, color="gray50", fontcolor="gray30"',
    "module": 'shape=box3d, style=filled, fillcolor="#e3f2e1"',
    "more": 'shape=note, style=dashed',
}


def _node_line(n: GNode) -> str:
    return f'{n.id} [label="{_esc(n.label)}", {_STYLES[n.kind]}];'


def _shape_str(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _norm_str(x) -> str:
    return f"|grad| {x:.4g}"


def _count(n, what) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _lines(*parts) -> str:
    return "\n".join(p for p in parts if p)


# ================================================================ the walk
def build_graph(tensor: Tensor, collapse: bool | int = False, max_nodes: int = 2000, model=None,
                names: dict | None = None) -> Graph:
    """The graph behind `tensor` (see the module docstring). `collapse=True` draws each module
    (the innermost one that made an op) as one node; an int collapses to that many levels of
    the dotted module name (`collapse=3`: `transformer.h.0`). `max_nodes` keeps the nodes nearest
    the output and adds one "... N more" node. `names` maps tensors (by identity) to labels,
    on top of `model.named_parameters()`."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"to_dot: expected a Tensor, got {type(tensor).__name__}")
    if max_nodes < 1:
        raise ValueError(f"to_dot: max_nodes must be >= 1, got {max_nodes}")
    label_of: dict = {}
    if model is not None:
        for name, p in model.named_parameters():
            label_of[id(p)] = name
    if names:
        for t, name in names.items():
            label_of[id(t)] = name

    # 1. walk from the output, breadth first: nodes nearest the output first (for max_nodes)
    ids: dict = {}         # id(ctx) for ops, id(tensor) for leaves -> node id
    order: list = []       # (node id, kind, tensor) in BFS order
    edges: list = []       # (input key, op key)
    queue = deque([tensor])
    seen = set()
    while queue:
        t = queue.popleft()
        if id(t) in seen:
            continue
        seen.add(id(t))  # ids stay valid: `order` keeps every visited tensor alive
        ctx = t._ctx
        if ctx is None:
            ids[id(t)] = f"n{len(ids)}"
            order.append((ids[id(t)], "param" if t.requires_grad else "const", t))
            continue
        ids[id(ctx)] = f"n{len(ids)}"
        order.append((ids[id(ctx)], "op", t))
        for p in ctx.parents:
            edges.append((p, ctx))
            queue.append(p)

    def key_of(t):
        return ids[id(t._ctx)] if t._ctx is not None else ids[id(t)]

    edge_ids = [(key_of(p), ids[id(ctx)]) for p, ctx in edges]

    # 2. a node per op / leaf, with its module scope
    consumer_scope: dict = {}
    scope_of_op: dict = {}
    for nid, kind, t in order:
        if kind == "op":
            info = node_info.get(t._ctx)
            scope_of_op[nid] = info.scope if info is not None else ""
    for (a, b) in edge_ids:
        consumer_scope.setdefault(a, scope_of_op.get(b, ""))
    scopes = set(scope_of_op.values()) - {""}

    nodes = []
    for nid, kind, t in order:
        if kind == "op":
            ctx = t._ctx
            info = node_info.get(ctx)
            g = info.grad_norm if info is not None and info.grad_norm is not None else (
                grad_norm(t.grad) if t.grad is not None else None)
            label = _lines(type(ctx).__name__, f"{_shape_str(t.shape)} {t.dtype}", _norm_str(g) if g is not None else "")
            nodes.append(GNode(nid, "op", label, scope_of_op[nid], {"shape": t.shape, "dtype": t.dtype, "grad_norm": g}))
        else:
            name = t.name or label_of.get(id(t))
            if kind == "param":
                scope = name.rpartition(".")[0] if name and name.rpartition(".")[0] in scopes else ""
                label = _lines(name or "leaf", f"{_shape_str(t.shape)} {t.dtype}",
                               _norm_str(grad_norm(t.grad)) if t.grad is not None else "")
            else:
                scope = consumer_scope.get(nid, "")
                if name is None and t.data.size == 1:
                    v = t.data.item()
                    name = f"const {v:.4g}" if isinstance(v, float) else f"const {v}"
                label = _lines(name or "input", f"{_shape_str(t.shape)} {t.dtype}")
            nodes.append(GNode(nid, kind, label, scope))

    if collapse:
        types = {name: type(m).__name__ for name, m in model.named_modules()} if model is not None else {}
        nodes, edge_ids = _collapse(nodes, edge_ids, collapse, types)

    # 3. max_nodes: keep those nearest the output (nodes are in BFS order)
    truncated = 0
    if len(nodes) > max_nodes:
        kept = {n.id for n in nodes[:max_nodes]}
        truncated = len(nodes) - max_nodes
        more = GNode("more", "more", f"... {truncated} more nodes\n(raise max_nodes, or collapse=True)")
        cut = sorted({b for a, b in edge_ids if a not in kept and b in kept})
        nodes = nodes[:max_nodes] + [more]
        edge_ids = [(a, b) for a, b in edge_ids if a in kept and b in kept] + [("more", b) for b in cut]
    nodes.reverse()  # inputs first reads better in the .dot file
    return Graph(nodes, edge_ids, truncated)


def _collapse(nodes, edges, depth, types):
    """One node per module: every op whose module is innermost (no other module of the graph
    lies inside it), with the parameters and constants it consumes, becomes one node. Ops that
    a container module runs itself (a Block's residual adds) stay op nodes in its cluster, so
    the collapsed graph keeps the data flow's order (no cycles). An int `depth` first cuts every
    module name to that many dotted parts (`collapse=3`: one node per `transformer.h.N`)."""
    def cut(scope):
        return scope if depth is True else ".".join(scope.split(".")[:int(depth)])

    cands = {cut(n.scope) for n in nodes if n.kind == "op" and n.scope}
    leaves = {g for g in cands if not any(o.startswith(g + ".") for o in cands)}

    def group(scope):
        g = cut(scope) if scope else ""
        return g if g in leaves else None

    groups: dict = {}
    new_id: dict = {}
    out_nodes = []
    for n in nodes:
        g = group(n.scope)
        if g is None:
            new_id[n.id] = n.id
            out_nodes.append(n)
            continue
        if g not in groups:
            groups[g] = GNode(f"m{len(groups)}", "module", "", g.rpartition(".")[0],
                              {"module": g, "ops": 0, "params": 0, "members": []})
            out_nodes.append(groups[g])
        m = groups[g]
        m.attrs["ops"] += n.kind == "op"
        m.attrs["params"] += n.kind == "param"
        m.attrs["members"].append(n)
        new_id[n.id] = m.id
    consumers: dict = {}
    for a, b in edges:
        consumers.setdefault(a, set()).add(new_id[b])
    for g, m in groups.items():
        a = m.attrs
        # the module's output: its op(s) used outside it (or nowhere: the graph's output)
        outs = [n for n in a["members"] if n.kind == "op" and (consumers.get(n.id, set()) - {m.id} or n.id not in consumers)]
        name = g.rpartition(".")[2] + (f" ({types[g]})" if g in types else "")
        extra = ""
        if len(outs) == 1:
            o = outs[0].attrs
            extra = _lines(f"{_shape_str(o['shape'])} {o['dtype']}",
                           _norm_str(o["grad_norm"]) if o.get("grad_norm") is not None else "")
        m.label = _lines(name, _count(a["ops"], "op") + (", " + _count(a["params"], "param") if a["params"] else ""), extra)
    seen, out_edges = set(), []
    for a, b in edges:
        e = (new_id[a], new_id[b])
        if e[0] != e[1] and e not in seen:
            seen.add(e)
            out_edges.append(e)
    return out_nodes, out_edges


def to_dot(tensor: Tensor, collapse: bool | int = False, max_nodes: int = 2000, model=None,
           names: dict | None = None, title: str | None = None) -> str:
    """Graphviz DOT source for the graph that computed `tensor` (see `build_graph`)."""
    return build_graph(tensor, collapse, max_nodes, model, names).to_dot(title)


# ================================================================ rendering
def render(dot_str: str, path: str) -> str:
    """Write `dot_str` to `path`: a .dot file as is; for .svg or .png, the .dot file beside it
    (same name, .dot extension) and then Graphviz's `dot` program draws the picture. Returns
    `path`. Raises ValueError for another extension and GraphvizNotFound (a FileNotFoundError)
    when `dot` is not installed."""
    base, ext = os.path.splitext(path)
    ext = ext.lower()
    if ext not in (".dot", ".gv", ".svg", ".png"):
        raise ValueError(f"graph: output {path!r} must end in .dot, .svg or .png")
    dot_path = path if ext in (".dot", ".gv") else base + ".dot"
    atomic_write(dot_path, dot_str)
    if ext in (".dot", ".gv"):
        return path
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizNotFound(
            f"graph: Graphviz's `dot` program is not installed, so {path} was not drawn; the graph was written to "
            f"{dot_path} (install graphviz: `apt-get install graphviz` or `brew install graphviz`, then run "
            f"`dot -T{ext[1:]} {dot_path} -o {path}`)")
    proc = subprocess.run([exe, f"-T{ext[1:]}", dot_path, "-o", path], capture_output=True, text=True)
    if proc.returncode != 0:
        raise OSError(f"graph: `dot` failed on {dot_path}: {proc.stderr.strip()[:500]}")
    return path


# ================================================================ CLI: tinygrad-lm graph
def graph_command(args) -> int:
    """`tinygrad-lm graph --output F [--collapse] [--n-layer N] [--no-backward]`: draw the
    graph of a tiny GPT's loss (vocab 11, block 8, 2 heads, 16 dims) on a random batch."""
    from .models.gpt import GPT, GPTConfig
    from .engine import manual_seed

    output = getattr(args, "output", "gpt_graph.dot")
    ext = os.path.splitext(output)[1].lower()
    if ext not in (".dot", ".gv", ".svg", ".png"):
        raise ValueError(f"graph: --output {output!r} must end in .dot, .svg or .png")
    n_layer = getattr(args, "n_layer", 1)
    if n_layer < 1:
        raise ValueError(f"graph: --n-layer must be >= 1, got {n_layer}")
    manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=n_layer, n_head=2, n_embd=16, dropout=0.0, bias=True))
    rng = np.random.default_rng(0)
    x = Tensor(rng.integers(0, 11, (2, 8)))
    y = Tensor(rng.integers(0, 11, (2, 8)))
    backward = not getattr(args, "no_backward", False)
    with record_scopes():
        _, loss = model(x, y)
        if backward:
            loss.backward()
    g = build_graph(loss, collapse=bool(getattr(args, "collapse", False)), model=model,
                    names={x: "idx (B, T)", y: "targets (B, T)"})
    title = (f"GPT loss graph: {n_layer} layer{'s' if n_layer != 1 else ''}, 2 heads, 16 dims, vocab 11, block 8"
             + ("" if backward else " (forward only)"))
    dot = g.to_dot(title)
    what = "modules collapsed, " if getattr(args, "collapse", False) else ""
    try:
        render(dot, output)
    except GraphvizNotFound:
        print(f"graph: {len(g.nodes)} nodes, {len(g.edges)} edges ({what}loss {float(loss.data):.4f})")
        raise
    n_ops = sum(1 for n in g.nodes if n.kind == "op")
    print(f"graph: {len(g.nodes)} nodes ({n_ops} ops), {len(g.edges)} edges, {len(g.clusters)} module clusters "
          f"({what}loss {float(loss.data):.4f}{', gradients shown' if backward else ''})")
    print(f"wrote {output}" + (f" (and {os.path.splitext(output)[0]}.dot)" if ext in (".svg", ".png") else ""))
    return 0
