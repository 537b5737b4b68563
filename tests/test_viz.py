"""Graphviz DOT of the computation graph: nodes, edges, module clusters, collapsing, rendering."""
import re
import shutil
from argparse import Namespace

import numpy as np
import pytest

import tinygrad_lm as tg
from tinygrad_lm import Tensor
from tinygrad_lm import viz
from tinygrad_lm.cli import main as cli_main
from tinygrad_lm.models.gpt import GPT, GPTConfig
from tinygrad_lm.viz import GraphvizNotFound, build_graph, record_scopes, render, to_dot

NODE = re.compile(r"^\s*(\w+) \[label=\"((?:[^\"\\]|\\.)*)\"", re.M)
EDGE = re.compile(r"^\s*(\w+) -> (\w+);$", re.M)


def parse(dot):
    """({node id: label}, [(from, to)]) read back from DOT text."""
    assert dot.startswith("digraph ") and dot.rstrip().endswith("}")
    assert dot.count("{") == dot.count("}")
    nodes = dict(NODE.findall(dot))
    edges = EDGE.findall(dot)
    assert len(nodes) == len(NODE.findall(dot)), "node ids must be unique"
    assert all(a in nodes and b in nodes for a, b in edges), "every edge joins two declared nodes"
    return nodes, edges


def walk(t):
    """The graph walked independently of viz: (#op nodes, #leaf tensors, #edges input -> op)."""
    ops, leaves, edges, stack, seen = set(), set(), 0, [t], set()
    while stack:
        u = stack.pop()
        if id(u) in seen:
            continue
        seen.add(id(u))
        if u._ctx is None:
            leaves.add(id(u))
            continue
        ops.add(id(u._ctx))
        edges += len(u._ctx.parents)
        stack.extend(u._ctx.parents)
    return len(ops), len(leaves), edges


def tiny_gpt(n_layer=1, backward=True):
    tg.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=n_layer, n_head=2, n_embd=16, dropout=0.0, bias=True))
    rng = np.random.default_rng(0)
    x, y = Tensor(rng.integers(0, 11, (2, 8))), Tensor(rng.integers(0, 11, (2, 8)))
    with record_scopes():
        _, loss = model(x, y)
        if backward:
            loss.backward()
    return model, loss


def is_acyclic(nodes, edges):
    indeg = {n: 0 for n in nodes}
    for _, b in edges:
        indeg[b] += 1
    ready = [n for n, d in indeg.items() if d == 0]
    out = {n: [] for n in nodes}
    for a, b in edges:
        out[a].append(b)
    seen = 0
    while ready:
        n = ready.pop()
        seen += 1
        for m in out[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    return seen == len(nodes)


def test_dot_nodes_and_edges_match_the_graph():
    a = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    b = Tensor(np.array([0.5, 0.5, 0.5]), requires_grad=True)
    a.name = "a"
    loss = ((a * b + a).tanh() * a).sum()
    nodes, edges = parse(to_dot(loss))
    n_ops, n_leaves, n_edges = walk(loss)
    assert (n_ops, n_leaves) == (5, 2)                     # Mul Add Tanh Mul Sum; a and b
    assert len(nodes) == n_ops + n_leaves and len(edges) == n_edges == 8   # a is used three times
    labels = list(nodes.values())
    assert sum(lbl.startswith("Mul\\n(3,) float64") for lbl in labels) == 2
    assert any(lbl.startswith("a\\n(3,) float64") for lbl in labels)
    assert any(lbl.startswith("leaf\\n(3,) float64") for lbl in labels)     # b has no name
    assert not any("|grad|" in lbl for lbl in labels)                        # no backward yet


def test_gradient_norms_appear_after_backward_even_with_the_graph_freed():
    a = Tensor(np.array([3.0, 4.0]), requires_grad=True)
    with record_scopes():
        loss = (a * 2.0).sum()
        loss.backward()                       # frees the graph; parents survive
    assert loss._ctx.freed
    nodes, edges = parse(to_dot(loss))
    labels = sorted(nodes.values())
    assert "Sum\\n() float64\\n|grad| 1" in labels
    assert "Mul\\n(2,) float64\\n|grad| 1.414" in labels         # d loss / d (2a) = ones(2)
    assert "leaf\\n(2,) float64\\n|grad| 2.828" in labels        # d loss / d a = 2 * ones(2)
    assert any(lbl.startswith("const 2\\n() float64") for lbl in labels)
    assert len(edges) == 3


def test_gpt_graph_matches_an_independent_walk_and_names_parameters():
    model, loss = tiny_gpt()
    dot = to_dot(loss, model=model)
    nodes, edges = parse(dot)
    n_ops, n_leaves, n_edges = walk(loss)
    assert len(nodes) == n_ops + n_leaves and len(edges) == n_edges
    labels = " ".join(nodes.values())
    for name, p in model.named_parameters():   # every parameter, by name, with its shape and .grad norm
        shape = "(" + ", ".join(map(str, p.shape)) + ("," if p.ndim == 1 else "") + ")"
        assert f"{name}\\n{shape} float32\\n|grad| {np.linalg.norm(p.grad.numpy().astype(np.float64)):.4g}" in labels
    assert "transformer.h.0.attn.c_attn.weight\\n(48, 16) float32\\n|grad| " in labels
    assert "FusedSoftmaxCrossEntropy\\n() float32\\n|grad| 1" in labels


def _cluster_body(dot, name):
    """The text of `subgraph cluster_<name> { ... }`, nested clusters included."""
    start = dot.index(f"subgraph cluster_{name} {{")
    depth, i = 0, start
    while True:
        if dot[i] == "{":
            depth += 1
        elif dot[i] == "}":
            depth -= 1
            if depth == 0:
                return dot[start:i]
        i += 1


def test_gpt_nodes_are_clustered_by_module():
    model, loss = tiny_gpt(n_layer=2)
    dot = to_dot(loss, model=model)
    for c in ("transformer", "transformer_h", "transformer_h_0", "transformer_h_1", "transformer_h_0_attn",
              "transformer_h_0_attn_c_attn", "transformer_h_1_mlp_c_fc", "transformer_ln_f", "lm_head"):
        assert f"subgraph cluster_{c} {{" in dot
    c_attn = _cluster_body(dot, "transformer_h_0_attn_c_attn")
    assert "FusedLinear\\n(2, 8, 48) float32" in c_attn and "transformer.h.0.attn.c_attn.weight" in c_attn
    assert "transformer.h.1" not in c_attn
    h0 = _cluster_body(dot, "transformer_h_0")
    assert "FusedPackedCausalAttention" in h0 and "transformer.h.1." not in h0
    assert "FusedSoftmaxCrossEntropy" not in _cluster_body(dot, "transformer")   # the loss is the root module's


def test_without_record_scopes_there_are_no_clusters():
    tg.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16))
    _, loss = model(Tensor(np.zeros((1, 4), dtype=np.int64)), Tensor(np.zeros((1, 4), dtype=np.int64)))
    dot = to_dot(loss, model=model)
    assert "subgraph" not in dot
    nodes, _ = parse(dot)
    assert len(nodes) == sum(walk(loss)[:2])


def test_collapse_makes_each_module_one_node_and_stays_acyclic():
    model, loss = tiny_gpt(n_layer=2)
    full_nodes, _ = parse(to_dot(loss, model=model))
    g = build_graph(loss, collapse=True, model=model)
    nodes, edges = parse(g.to_dot())
    assert len(nodes) < len(full_nodes) / 2
    modules = [n for n in g.nodes if n.kind == "module"]
    assert sorted(n.attrs["module"] for n in modules) == sorted(
        ["transformer.wte", "transformer.wpe", "transformer.ln_f", "lm_head"]
        + [f"transformer.h.{i}.{m}" for i in range(2) for m in
           ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.gelu", "mlp.c_proj")])
    c_attn = next(n for n in modules if n.attrs["module"] == "transformer.h.0.attn.c_attn")
    assert c_attn.label == "c_attn (Linear)\n1 op, 2 params\n(2, 8, 48) float32\n|grad| " + c_attn.label.split("|grad| ")[1]
    assert c_attn.scope == "transformer.h.0.attn"           # drawn inside its parent's cluster
    assert is_acyclic(nodes, edges)
    assert "transformer.h.0.attn.c_attn.weight" not in g.to_dot()   # folded into its module
    by_depth = build_graph(loss, collapse=3, model=model)
    assert sorted(n.attrs["module"] for n in by_depth.nodes if n.kind == "module") == [
        "lm_head", "transformer.h.0", "transformer.h.1", "transformer.ln_f", "transformer.wpe", "transformer.wte"]
    assert is_acyclic(*parse(by_depth.to_dot()))


def test_max_nodes_keeps_the_nodes_nearest_the_output():
    model, loss = tiny_gpt()
    g = build_graph(loss, max_nodes=10, model=model)
    nodes, edges = parse(g.to_dot())
    n_ops, n_leaves, _ = walk(loss)
    assert len(nodes) == 11 and g.truncated == n_ops + n_leaves - 10
    assert f"... {g.truncated} more nodes" in nodes["more"]
    assert any(a == "more" for a, _ in edges)
    assert "FusedSoftmaxCrossEntropy" in " ".join(nodes.values())
    with pytest.raises(ValueError, match="max_nodes"):
        build_graph(loss, max_nodes=0)


def test_a_leaf_alone_is_one_node():
    nodes, edges = parse(to_dot(Tensor(np.ones((2, 3)), requires_grad=True)))
    assert len(nodes) == 1 and edges == []


def test_render_without_dot_writes_the_dot_file_and_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    a = Tensor(np.ones(2), requires_grad=True)
    dot = to_dot((a * a).sum())
    out = tmp_path / "g.svg"
    with pytest.raises(GraphvizNotFound) as e:
        render(dot, str(out))
    msg = str(e.value)
    assert "apt-get install graphviz" in msg and str(tmp_path / "g.dot") in msg and "was not drawn" in msg
    assert isinstance(e.value, OSError)                 # the CLI turns it into a one-line error
    assert (tmp_path / "g.dot").read_text() == dot and not out.exists()


def test_render_dot_and_bad_extension(tmp_path):
    dot = to_dot((Tensor(np.ones(2), requires_grad=True) * 2.0).sum())
    assert render(dot, str(tmp_path / "g.dot")) == str(tmp_path / "g.dot")
    assert (tmp_path / "g.dot").read_text() == dot
    with pytest.raises(ValueError, match="must end in .dot, .svg or .png"):
        render(dot, str(tmp_path / "g.pdf"))


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_render_svg_with_graphviz(tmp_path):
    model, loss = tiny_gpt()
    out = render(to_dot(loss, model=model), str(tmp_path / "g.svg"))
    svg = (tmp_path / "g.svg").read_text()
    assert out.endswith("g.svg") and "<svg" in svg and "transformer.h.0.attn.c_attn.weight" in svg


def test_graph_command_writes_a_dot_file_and_reports_counts(tmp_path, capsys):
    out = tmp_path / "gpt.dot"
    assert viz.graph_command(Namespace(output=str(out), collapse=False, n_layer=2, no_backward=False)) == 0
    text = capsys.readouterr().out
    nodes, edges = parse(out.read_text())
    assert f"graph: {len(nodes)} nodes" in text and f"{len(edges)} edges" in text and f"wrote {out}" in text
    assert "|grad|" in out.read_text() and "transformer.h.1.mlp.c_proj.weight" in out.read_text()
    assert viz.graph_command(Namespace(output=str(out), collapse=True, n_layer=1, no_backward=True)) == 0
    collapsed, _ = parse(out.read_text())
    assert len(collapsed) < len(nodes) and "|grad|" not in out.read_text()
    with pytest.raises(ValueError, match="must end in .dot, .svg or .png"):
        viz.graph_command(Namespace(output=str(tmp_path / "g.txt"), collapse=False, n_layer=1, no_backward=False))


def test_cli_graph(tmp_path, capsys, monkeypatch):
    out = tmp_path / "g.dot"
    assert cli_main(["graph", "--output", str(out), "--collapse", "--n-layer", "1", "--no-backward"]) == 0
    assert out.exists()
    assert cli_main(["graph", "--output", str(tmp_path / "g.jpg")]) == 2
    assert "must end in .dot, .svg or .png" in capsys.readouterr().err
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert cli_main(["graph", "--output", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert "apt-get install graphviz" in err and (tmp_path / "g.dot").exists()
