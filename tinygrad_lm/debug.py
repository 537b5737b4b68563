"""Seeing backprop: a per-op trace, anomaly detection, and module scopes for graph drawing.

All three ride on the engine's observer protocol (`tinygrad_lm.engine.observer`):

* `Function.apply` calls `observer.forward(ctx, inputs, out, params, seconds)` after every
  op's forward;
* `engine.backward` calls `observer.backward(ctx, out, grad_out, in_grads, seconds)` after
  every node's backward, where `grad_out` is dL/d(out) and `in_grads` holds one dL/d(input)
  per input (None where no gradient is needed).

Several observers can be active at once (a `trace()` inside `detect_anomaly()`): entering one
installs a `_Observers` fan-out holding the observers already active plus the new one, and
leaving restores what was there before.

    with tinygrad_lm.trace() as t:
        loss = model(x, y)[1]
        loss.backward()
    print(t.summary())             # time per op type, forward and backward
    print(t.table(limit=20))       # the 20 slowest nodes, with shapes, scope and gradient norm

    with tinygrad_lm.detect_anomaly():
        loss.backward()            # AnomalyError at the first op that makes a NaN or inf

Timing on a GPU measures the time to launch an op's kernels (cupy runs them asynchronously),
not the time the GPU spends on them.
"""
from __future__ import annotations

import linecache
import math
import os
import sys
import sysconfig
import weakref
from dataclasses import dataclass

import numpy as np

from . import backend, engine
from .tensor import Tensor

__all__ = ["trace", "Trace", "OpRecord", "detect_anomaly", "AnomalyError", "record_scopes", "node_info",
           "NodeInfo", "grad_norm", "user_frame"]


# ================================================================ several observers at once
class _Observers:
    """Fans each forward/backward event out to several observers, in the order they were entered."""

    def __init__(self, observers):
        self.observers = tuple(observers)

    def forward(self, ctx, inputs, out, params, seconds):
        for o in self.observers:
            o.forward(ctx, inputs, out, params, seconds)

    def backward(self, ctx, out, grad_out, in_grads, seconds):
        for o in self.observers:
            o.backward(ctx, out, grad_out, in_grads, seconds)


def _flatten(obs):
    if obs is None:
        return ()
    if isinstance(obs, _Observers):
        return obs.observers
    return (obs,)


class _ObserverContext:
    """Base of the context managers: installs `self` as an observer on enter, restores on exit."""

    def __enter__(self):
        self._prev = engine.observer
        engine.observer = _Observers(_flatten(self._prev) + (self,))
        return self

    def __exit__(self, *exc):
        current = engine.observer
        if isinstance(current, _Observers) and current.observers[-1:] == (self,):
            engine.observer = self._prev  # the usual, nested case
        else:  # exited out of order: take only ourselves out of whatever is installed now
            rest = tuple(o for o in _flatten(current) if o is not self)
            engine.observer = None if not rest else rest[0] if len(rest) == 1 else _Observers(rest)
        return False

    def forward(self, ctx, inputs, out, params, seconds):  # pragma: no cover - overridden
        pass

    def backward(self, ctx, out, grad_out, in_grads, seconds):  # pragma: no cover - overridden
        pass


# ================================================================ helpers
def grad_norm(arr) -> float:
    """The L2 norm sqrt(sum g^2) of an array, computed in float64 (inf/NaN pass through)."""
    a = arr.data if isinstance(arr, Tensor) else arr
    xp = backend.array_module(a)
    a64 = a.astype(np.float64, copy=False)
    with np.errstate(over="ignore", invalid="ignore"):
        return float(xp.sqrt((a64 * a64).sum()))


def _current_scope() -> str:
    return engine.scope[-1] if engine.scope else ""


_PKG_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_STDLIB_DIRS = tuple({os.path.abspath(p) + os.sep for p in (sysconfig.get_paths().get("stdlib"),
                                                            sysconfig.get_paths().get("platstdlib")) if p})


_file_kind: dict = {}  # filename -> "package", "stdlib" or "user" (a stack walk per op must be cheap)


def _kind_of(filename: str) -> str:
    kind = _file_kind.get(filename)
    if kind is None:
        path = os.path.abspath(filename)
        if path.startswith(_PKG_DIR):
            kind = "package"
        elif filename.startswith("<frozen") or (path.startswith(_STDLIB_DIRS) and "-packages" + os.sep not in path):
            kind = "stdlib"  # e.g. contextlib wrapping a no_grad-decorated function
        else:
            kind = "user"
        _file_kind[filename] = kind
    return kind


def user_frame():
    """(filename, lineno, function) of the innermost stack frame outside the tinygrad_lm package
    and the standard library: the line of the caller's code that made an op. (Falls back to
    the innermost frame outside the package, e.g. a stdlib module calling tinygrad_lm.)"""
    f = sys._getframe(1)
    fallback = None
    while f is not None:
        code = f.f_code
        kind = _kind_of(code.co_filename)
        if kind == "user":
            return code.co_filename, f.f_lineno, code.co_name
        if kind == "stdlib" and fallback is None:
            fallback = (code.co_filename, f.f_lineno, code.co_name)
        f = f.f_back
    return fallback or ("<unknown>", 0, "<unknown>")


def _where(frame) -> str:
    filename, lineno, func = frame
    line = linecache.getline(filename, lineno).strip()
    return f"{filename}:{lineno} in {func}" + (f"\n    {line}" if line else "")


def _shape(t):
    return tuple(t.shape)


def _fmt_shape(s) -> str:
    return "(" + ", ".join(str(d) for d in s) + ("," if len(s) == 1 else "") + ")"


# ================================================================ trace
@dataclass
class OpRecord:
    """One node of the graph as the trace saw it.

    `forward_s` is None for a node created before the trace began (seen only in backward);
    `backward_s` is None until backward has run through the node. `grad_norm` is the L2
    norm of dL/d(output) (the gradient arriving at the node), `input_grad_norms` those of
    the gradients it passed on (None where an input needs none)."""
    index: int                      # order of creation (graph order)
    op: str
    scope: str                      # module that made the node ("" outside any module)
    input_shapes: tuple
    output_shape: tuple
    dtype: str
    forward_s: float | None = None
    backward_s: float | None = None
    backward_calls: int = 0
    grad_norm: float | None = None
    input_grad_norms: tuple | None = None

    @property
    def total_s(self) -> float:
        return (self.forward_s or 0.0) + (self.backward_s or 0.0)


class Trace(_ObserverContext):
    """Records every op's forward and backward while active. Use through `trace()`."""

    def __init__(self, grad_norms: bool = True):
        self.records: list[OpRecord] = []
        self.grad_norms = grad_norms
        self._by_ctx: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------ observer
    def forward(self, ctx, inputs, out, params, seconds):
        rec = OpRecord(len(self.records), type(ctx).__name__, _current_scope(), tuple(_shape(t) for t in inputs),
                       _shape(out), str(out.dtype), forward_s=seconds)
        self.records.append(rec)
        self._by_ctx[ctx] = rec

    def backward(self, ctx, out, grad_out, in_grads, seconds):
        rec = self._by_ctx.get(ctx)
        if rec is None:  # made before the trace began: record it now
            rec = OpRecord(len(self.records), type(ctx).__name__, "", tuple(_shape(p) for p in ctx.parents),
                           _shape(out), str(out.dtype))
            self.records.append(rec)
            self._by_ctx[ctx] = rec
        rec.backward_s = (rec.backward_s or 0.0) + seconds
        rec.backward_calls += 1
        if self.grad_norms:
            rec.grad_norm = grad_norm(grad_out)
            rec.input_grad_norms = tuple(None if g is None else grad_norm(g) for g in in_grads)

    # ------------------------------------------------------------ numbers
    @property
    def forward_seconds(self) -> float:
        return sum(r.forward_s or 0.0 for r in self.records)

    @property
    def backward_seconds(self) -> float:
        return sum(r.backward_s or 0.0 for r in self.records)

    def by_op(self, by: str = "op") -> list[dict]:
        """Aggregates per op type (`by="op"`) or per module scope (`by="scope"`), largest total first:
        dicts with key, count, forward_ms, backward_ms, total_ms, share (of the traced total, 0..1)."""
        if by not in ("op", "scope"):
            raise ValueError(f"summary: by must be 'op' or 'scope', got {by!r}")
        rows: dict = {}
        for r in self.records:
            key = r.op if by == "op" else (r.scope or "(no module)")
            row = rows.setdefault(key, {"key": key, "count": 0, "forward_ms": 0.0, "backward_ms": 0.0})
            row["count"] += 1
            row["forward_ms"] += 1e3 * (r.forward_s or 0.0)
            row["backward_ms"] += 1e3 * (r.backward_s or 0.0)
        total = 1e3 * (self.forward_seconds + self.backward_seconds)
        out = []
        for row in rows.values():
            row["total_ms"] = row["forward_ms"] + row["backward_ms"]
            row["share"] = row["total_ms"] / total if total > 0 else 0.0
            out.append(row)
        out.sort(key=lambda r: (-r["total_ms"], r["key"]))
        return out

    # ------------------------------------------------------------ text
    def summary(self, by: str = "op") -> str:
        """One line per op type (or module scope): count, forward ms, backward ms, share of the total."""
        rows = self.by_op(by)
        head = "op" if by == "op" else "module"
        width = max([len(head), len("total")] + [len(r["key"]) for r in rows])
        lines = [f"{head:<{width}}  {'count':>6}  {'forward ms':>10}  {'backward ms':>11}  {'total ms':>9}  {'share':>6}"]
        for r in rows:
            lines.append(f"{r['key']:<{width}}  {r['count']:>6}  {r['forward_ms']:>10.3f}  {r['backward_ms']:>11.3f}  "
                         f"{r['total_ms']:>9.3f}  {100 * r['share']:>5.1f}%")
        fwd, bwd = 1e3 * self.forward_seconds, 1e3 * self.backward_seconds
        n_bwd = sum(1 for r in self.records if r.backward_calls)
        lines.append(f"{'total':<{width}}  {len(self.records):>6}  {fwd:>10.3f}  {bwd:>11.3f}  {fwd + bwd:>9.3f}  "
                     f"{100.0 if self.records else 0.0:>5.1f}%")
        lines.append(f"{len(self.records)} nodes recorded, {n_bwd} ran backward")
        return "\n".join(lines)

    def table(self, sort: str = "time", limit: int | None = None) -> str:
        """One line per node: op, module, input shapes -> output shape, forward and backward ms,
        gradient norm. `sort="time"`: slowest (forward + backward) first; `sort="graph"`: in the
        order the nodes were created."""
        if sort not in ("time", "graph"):
            raise ValueError(f"table: sort must be 'time' or 'graph', got {sort!r}")
        recs = sorted(self.records, key=lambda r: -r.total_s) if sort == "time" else list(self.records)
        if limit is not None:
            recs = recs[:limit]

        def ms(s):
            return "-" if s is None else f"{1e3 * s:.3f}"

        rows = [(str(r.index), r.op, r.scope or "-", ", ".join(_fmt_shape(s) for s in r.input_shapes) or "-",
                 _fmt_shape(r.output_shape), ms(r.forward_s), ms(r.backward_s),
                 "-" if r.grad_norm is None else f"{r.grad_norm:.4g}") for r in recs]
        head = ("#", "op", "module", "inputs", "output", "fwd ms", "bwd ms", "|grad|")
        widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(head)]
        right = {0, 5, 6, 7}

        def line(cells):
            return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        out = [line(head)] + [line(r) for r in rows]
        if limit is not None and len(self.records) > limit:
            out.append(f"... {len(self.records) - limit} more nodes")
        return "\n".join(out)

    def __repr__(self):
        return f"<Trace: {len(self.records)} nodes, forward {1e3 * self.forward_seconds:.3f} ms, " \
               f"backward {1e3 * self.backward_seconds:.3f} ms>"


def trace(grad_norms: bool = True) -> Trace:
    """Context manager recording every op run inside it, forward and backward.

    `t.records` lists one `OpRecord` per node (op name, module scope, input and output shapes,
    forward and backward seconds, norm of the gradient arriving at the node); `t.summary()`
    aggregates them per op type, `t.table(sort="time"|"graph", limit=None)` lists them.
    `grad_norms=False` skips the norms (each costs a pass over the gradient)."""
    return Trace(grad_norms)


# ================================================================ anomaly detection
class AnomalyError(RuntimeError):
    """An op produced a NaN or inf in detect_anomaly mode. Attributes: op, phase ("forward" or
    "backward"), input_shapes, output_shape, where ("file:line in function" of the code that
    made the op, or None)."""

    def __init__(self, message, op=None, phase=None, input_shapes=(), output_shape=(), where=None):
        super().__init__(message)
        self.op, self.phase, self.input_shapes, self.output_shape, self.where = op, phase, input_shapes, output_shape, where


def _nonfinite(a):
    """A short description ('2 NaN, 1 inf of 6 elements') of a floating array's non-finite values, or None."""
    if a is None or getattr(a, "dtype", None) is None or a.dtype.kind not in "fc":
        return None
    xp = backend.array_module(a)
    finite = xp.isfinite(a)
    if bool(finite.all()):
        return None
    n_nan = int(xp.isnan(a).sum())
    n_inf = int(a.size - int(finite.sum()) - n_nan)
    parts = ([f"{n_nan} NaN"] if n_nan else []) + ([f"{n_inf} inf"] if n_inf else [])
    return f"{' and '.join(parts)} of {a.size} element{'s' if a.size != 1 else ''}"


def _has_nan(a) -> bool:
    return a is not None and a.dtype.kind in "fc" and bool(backend.array_module(a).isnan(a).any())


def _has_inf(a) -> bool:
    return a is not None and a.dtype.kind in "fc" and bool(backend.array_module(a).isinf(a).any())


def _deliberate_inf(params) -> bool:
    """An op told to write an infinity (masked_fill(mask, -inf) for causal attention, pad with -inf)."""
    for v in params.values():
        if isinstance(v, (float, np.floating)) and not math.isfinite(v):
            return True
    return False


class AnomalyMode(_ObserverContext):
    """Checks every op's output (forward) and input gradients (backward). Use through `detect_anomaly()`."""

    def __init__(self, check_forward: bool = True, check_backward: bool = True):
        self.check_forward, self.check_backward = check_forward, check_backward
        self._where: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._info: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def forward(self, ctx, inputs, out, params, seconds):
        frame = user_frame()
        scope = _current_scope()
        shapes = tuple(_shape(t) for t in inputs)
        try:
            self._where[ctx] = frame
            self._info[ctx] = (shapes, scope)
        except TypeError:  # pragma: no cover - a Function subclass that can't be weakly referenced
            pass
        if not self.check_forward:
            return
        a = out.data
        bad_nan = _has_nan(a)
        # An inf is an anomaly where the op made it out of finite inputs, unless it was told to
        # (masked_fill with -inf): infinities already in an input are passed along silently.
        bad_inf = (not bad_nan and _has_inf(a) and not _deliberate_inf(params)
                   and not any(_has_inf(t.data) for t in inputs))
        if not (bad_nan or bad_inf):
            return
        op = type(ctx).__name__
        bad_inputs = [f"input {i} {_fmt_shape(t.shape)} already holds {_nonfinite(t.data)}"
                      for i, t in enumerate(inputs) if _nonfinite(t.data)]
        msg = (f"detect_anomaly: {op} forward produced {_nonfinite(a)} in its output "
               f"(inputs {', '.join(_fmt_shape(s) for s in shapes) or 'none'} -> output {_fmt_shape(out.shape)})"
               + (f" in module {scope}" if scope else "")
               + (f"; {'; '.join(bad_inputs)}" if bad_inputs else "")
               + f"\n  created at {_where(frame)}")
        raise AnomalyError(msg, op, "forward", shapes, _shape(out), f"{frame[0]}:{frame[1]}")

    def backward(self, ctx, out, grad_out, in_grads, seconds):
        if not self.check_backward:
            return
        op = type(ctx).__name__
        frame = self._where.get(ctx)
        shapes, scope = self._info.get(ctx, (tuple(_shape(p) for p in ctx.parents), ""))
        where = (f"\n  created at {_where(frame)}" if frame else
                 "\n  (created before detect_anomaly was entered: run the forward inside it to see where)")
        common = (f"(inputs {', '.join(_fmt_shape(s) for s in shapes) or 'none'} -> output {_fmt_shape(out.shape)})"
                  + (f" in module {scope}" if scope else ""))
        loc = f"{frame[0]}:{frame[1]}" if frame else None
        bad = _nonfinite(grad_out)
        if bad:
            raise AnomalyError(f"detect_anomaly: the gradient arriving at {op}'s output holds {bad} {common} "
                               f"(it came from the seed gradient, a hook, or summing the gradients of several uses)"
                               + where, op, "backward", shapes, _shape(out), loc)
        for i, g in enumerate(in_grads):
            bad = _nonfinite(g)
            if bad:
                raise AnomalyError(f"detect_anomaly: {op} backward produced {bad} in the gradient for input {i} "
                                   f"{_fmt_shape(shapes[i]) if i < len(shapes) else ''} {common}" + where,
                                   op, "backward", shapes, _shape(out), loc)


def detect_anomaly(check_forward: bool = True, check_backward: bool = True) -> AnomalyMode:
    """Context manager: raise `AnomalyError` at the first op whose forward output, or whose
    backward gradient for any input, holds a NaN or inf.

    The error names the op, its input and output shapes, its module and the file:line of the
    code that made it (recorded at forward time, so run the forward inside the context too).
    Forward rules: any NaN is an anomaly; an inf is one only when the op made it from finite
    inputs and was not told to write it (masked_fill(mask, -inf), as causal attention does).
    Backward: any non-finite gradient is. Checking costs a pass over every array, so use it
    to hunt a bug, not to train."""
    return AnomalyMode(check_forward, check_backward)


# ================================================================ module scopes (for graphs)
@dataclass
class NodeInfo:
    """What `record_scopes()` keeps about a node: the module that made it, and after backward the
    L2 norm of the gradient of its output (None until then)."""
    scope: str
    grad_norm: float | None = None
    where: tuple | None = None


#: ctx -> NodeInfo for nodes made inside record_scopes(); weak, so it empties as graphs are dropped.
node_info: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class ScopeRecorder(_ObserverContext):
    """Remembers each node's module scope (and, in backward, its output gradient's norm) in
    `tinygrad_lm.debug.node_info`, which `tinygrad_lm.viz.to_dot` reads. Use through `record_scopes()`."""

    def __init__(self, grad_norms: bool = True):
        self.grad_norms = grad_norms
        self.count = 0

    def forward(self, ctx, inputs, out, params, seconds):
        if out._ctx is ctx:  # only nodes that stay in a graph
            node_info[ctx] = NodeInfo(_current_scope())
            self.count += 1

    def backward(self, ctx, out, grad_out, in_grads, seconds):
        if not self.grad_norms:
            return
        info = node_info.get(ctx)
        if info is None:
            info = node_info[ctx] = NodeInfo("")
        info.grad_norm = grad_norm(grad_out)


def record_scopes(grad_norms: bool = True) -> ScopeRecorder:
    """Context manager: remember the module scope of every graph node made inside it, and the
    gradient norm of every node backward runs through, for `tinygrad_lm.viz.to_dot`."""
    return ScopeRecorder(grad_norms)
