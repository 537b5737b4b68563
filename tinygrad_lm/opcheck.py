"""The op table: one `OpSpec` per registered `Function`, and the float64 gradient check of each.

A spec says, for one op of `Function.registry`:

* `sample(draw) -> Case`: random inputs in the op's valid domain (log and sqrt get positive
  numbers; max, min, abs, relu, clamp and maximum get values kept well away from ties and
  kinks, where finite differences are meaningless), with shapes that broadcast, and the
  op's parameters (dim, keepdim, ...);
* `call(*tensors, **params) -> Tensor`: the op as users reach it (operators, Tensor methods,
  module-level functions), so the check covers the API's argument handling too;
* `reference(*arrays, **params) -> ndarray`: the forward in plain numpy.

`run_op_gradchecks()` (behind `tinygrad-lm gradcheck`) runs every spec in float64:
element-wise central differences against backward, and the forward against the reference.
`tests/test_ops.py` runs the same specs with hypothesis choosing the shapes, and fails when
a registered op has no spec.

Other modules add specs for their own ops, either by calling `register_spec(OpSpec(...))`
when they are imported, or (lazily, which avoids import cycles) by defining a module-level
function `opcheck_specs() -> list[OpSpec]` in the module that defines the ops; `all_specs()`
collects both. Example, for a fused op:

    from tinygrad_lm.opcheck import OpSpec, Case, register_spec

    register_spec(OpSpec(
        op="Softmax",                                            # the Function.registry name
        sample=lambda d: Case([d.normal(d.shape(1, 3))], {"dim": -1}),
        call=lambda x, dim: F.softmax(x, dim),
        reference=lambda x, dim: np.exp(x - x.max(dim, keepdims=True)) / np.exp(x - x.max(dim, keepdims=True)).sum(dim, keepdims=True),
    ))
"""
from __future__ import annotations

import importlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from . import backend
from .gradcheck import gradcheck
from .tensor import Function, Tensor

# the module, not the `tensor()` function that tinygrad_lm/__init__.py exports under the same name
_t = importlib.import_module("tinygrad_lm.tensor")

ENGINE_MODULES = tuple(f"tinygrad_lm.ops.{m}" for m in ("elementwise", "reduce", "movement", "matmul", "index"))


# ================================================================ random choices
class Draw:
    """The random choices a spec's sampler may make.

    Structural choices (`integer`, `boolean`, `choice`, `shape`) go through the first four
    methods, which the tests override with hypothesis draws so that failures shrink to the
    smallest shape; values always come from the numpy generator `rng`.
    """

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    # ---- structure
    def integer(self, lo: int, hi: int) -> int:
        """An int in [lo, hi], both ends included."""
        return int(self.rng.integers(lo, hi + 1))

    def boolean(self) -> bool:
        return self.integer(0, 1) == 1

    def choice(self, options):
        options = list(options)
        return options[self.integer(0, len(options) - 1)]

    def shape(self, min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 4) -> tuple:
        return tuple(self.integer(min_side, max_side) for _ in range(self.integer(min_dims, max_dims)))

    # ---- values (float64; tests cast them for float32 runs)
    def normal(self, shape) -> np.ndarray:
        return self.rng.standard_normal(shape)

    def uniform(self, lo: float, hi: float, shape) -> np.ndarray:
        return self.rng.uniform(lo, hi, shape)

    def positive(self, shape, lo: float = 0.5, hi: float = 2.0) -> np.ndarray:
        return self.uniform(lo, hi, shape)

    def nonzero(self, shape, lo: float = 0.3, hi: float = 2.0) -> np.ndarray:
        """Magnitudes in [lo, hi], random signs: away from the kink at 0."""
        return self.uniform(lo, hi, shape) * self.rng.choice([-1.0, 1.0], size=shape)

    def distinct(self, shape, gap: float = 0.1) -> np.ndarray:
        """Values on a shuffled grid of step `gap`, jittered by under gap/4: no two closer than
        3/4 gap (no ties anywhere in the array, far beyond eps), centred on 0."""
        n = math.prod(shape)
        v = (self.rng.permutation(n) - (n - 1) / 2) * gap + self.uniform(0, gap / 4, n)
        return v.reshape(shape)

    def ints(self, lo: int, hi: int, shape) -> np.ndarray:
        """int64 values in [lo, hi)."""
        return self.rng.integers(lo, hi, shape).astype(np.int64)

    def mask(self, shape) -> np.ndarray:
        return self.rng.random(shape) < 0.5

    # ---- compositions of the above
    def dims(self, ndim: int, allow_none: bool = True):
        """A reduction `dim`: None, one axis (maybe negative) or a tuple of axes."""
        kinds = (["none"] if allow_none else []) + (["int", "tuple"] if ndim else [])
        kind = self.choice(kinds) if kinds else "none"
        if kind == "none":
            return None
        if kind == "int":
            d = self.integer(0, ndim - 1)
            return d - ndim if self.boolean() else d
        axes = [d for d in range(ndim) if self.boolean()] or [self.integer(0, ndim - 1)]
        return tuple(axes)

    def broadcast_shapes(self, n: int = 2, min_dims: int = 0, max_dims: int = 3) -> list:
        """n shapes that broadcast together: one full shape, then in each a random subset of
        dims set to 1 and a random number of leading dims dropped."""
        full = self.shape(min_dims, max_dims)
        out = []
        for _ in range(n):
            s = tuple(1 if self.integer(0, 2) == 0 else k for k in full)
            out.append(s[self.integer(0, len(s)):] if self.integer(0, 2) == 0 else s)
        return out


def avoid(x: np.ndarray, points, margin: float = 0.05) -> np.ndarray:
    """Move entries of `x` that lie within `margin` of any of `points` to `margin` past it."""
    x = np.array(x, dtype=np.float64)
    for p in points:
        if p is None:
            continue
        close = np.abs(x - p) < margin
        x[close] = p + margin * np.where(x[close] >= p, 1.0, -1.0)
    return x


# ================================================================ specs
@dataclass
class Case:
    """One sampled call: `inputs` (numpy arrays; float ones become tensors that require grad,
    integer and bool ones plain tensors) and keyword `params` for call and reference."""
    inputs: list
    params: dict = field(default_factory=dict)
    requires_grad: tuple | None = None  # default: every floating input

    def grads(self):
        if self.requires_grad is not None:
            return tuple(self.requires_grad)
        return tuple(np.asarray(a).dtype.kind == "f" for a in self.inputs)

    def describe(self) -> str:
        shapes = ", ".join(str(tuple(np.shape(a))) for a in self.inputs)
        params = " ".join(f"{k}={_short(v)}" for k, v in self.params.items())
        return f"{shapes} {params}".strip()


def _short(v):
    if isinstance(v, np.ndarray):
        return f"array{v.shape}"
    if isinstance(v, tuple) and any(isinstance(x, (slice, np.ndarray)) or x is Ellipsis or x is None for x in v):
        return "[" + ", ".join(_short(x) for x in v) + "]"
    if isinstance(v, slice):
        return ":".join("" if p is None else str(p) for p in (v.start, v.stop, v.step))
    if v is Ellipsis:
        return "..."
    return repr(v)


@dataclass
class OpSpec:
    """How to sample, call and check one registered op (see the module docstring)."""
    op: str                                   # the Function.registry name
    sample: Callable[[Draw], Case]
    call: Callable[..., Tensor]
    reference: Callable[..., np.ndarray] | None
    eps: float = 1e-6                         # finite-difference step
    atol: float = 1e-5
    rtol: float = 1e-3
    fwd_rtol: float = 1e-10                   # forward vs reference, in float64
    fwd_atol: float = 1e-12
    doc: str = ""


SPECS: dict = {}  # op name -> OpSpec


def register_spec(spec: OpSpec, *, replace: bool = False) -> OpSpec:
    """Add `spec` to the table. An op has one spec; registering a second raises unless
    replace=True. Returns the spec."""
    if not isinstance(spec, OpSpec):
        raise TypeError(f"register_spec: expected an OpSpec, got {type(spec).__name__}")
    if spec.op in SPECS and not replace:
        raise ValueError(f"register_spec: op {spec.op!r} already has a spec (pass replace=True to override)")
    SPECS[spec.op] = spec
    return spec


_collected: set = set()


def all_specs() -> dict:
    """Every spec: the engine's, those registered with `register_spec`, and those returned by
    `opcheck_specs()` of each module that defines a registered Function."""
    for cls in list(Function.registry.values()):
        mod = cls.__module__
        if mod in _collected:
            continue
        _collected.add(mod)
        try:
            provider = getattr(importlib.import_module(mod), "opcheck_specs", None)
        except ImportError:
            provider = None
        if provider is not None:
            for spec in provider():
                if spec.op not in SPECS:
                    register_spec(spec)
    return SPECS


def engine_ops() -> list:
    """Names of the registered ops that live in the engine's op modules."""
    return sorted(n for n, c in Function.registry.items() if c.__module__ in ENGINE_MODULES)


def missing_specs(package: str = "tinygrad_lm") -> list:
    """Registered ops defined in `package` that have no spec (so no gradient test)."""
    specs = all_specs()
    return sorted(n for n, c in Function.registry.items() if c.__module__.startswith(package) and n not in specs)


# ================================================================ running a spec
def make_tensors(case: Case, dtype=np.float64, device: str = "cpu") -> list:
    out = []
    for a, g in zip(case.inputs, case.grads()):
        a = np.asarray(a)
        if a.dtype.kind == "f":
            a = a.astype(dtype)
        out.append(Tensor(a, device=device, requires_grad=bool(g)))
    return out


def check_forward(spec: OpSpec, case: Case, dtype=np.float64, device: str = "cpu") -> str:
    """'' when the op's forward matches the numpy reference (values, shape, dtype), else why not."""
    if spec.reference is None:
        return ""
    arrays = [np.asarray(a).astype(dtype) if np.asarray(a).dtype.kind == "f" else np.asarray(a) for a in case.inputs]
    with _t.no_grad():
        out = spec.call(*make_tensors(case, dtype, device), **case.params)
    ref = np.asarray(spec.reference(*arrays, **case.params))
    if out.device != backend.canonical_device(device):  # "cuda" names the device "cuda:0"
        return f"forward output is on {out.device}, inputs on {device}"
    got = out.numpy()
    if got.shape != ref.shape:
        return f"forward shape {got.shape} != reference {ref.shape}"
    if got.dtype != ref.dtype:
        return f"forward dtype {got.dtype} != reference {ref.dtype}"
    if dtype == np.float64:
        rtol, atol = spec.fwd_rtol, spec.fwd_atol
    else:
        rtol, atol = 1e-5, 1e-6
    if not np.allclose(got, ref, rtol=rtol, atol=atol, equal_nan=True):
        err = np.max(np.abs(got.astype(np.float64) - ref)) if got.size else 0.0
        return f"forward differs from the numpy reference by up to {err:.3g}"
    return ""


def check_case(spec: OpSpec, case: Case, device: str = "cpu"):
    """Forward check and float64 element-mode gradcheck of one case -> (report, forward error).
    The same code runs on every backend: `device` picks where the inputs live."""
    fwd = check_forward(spec, case, device=device)
    tensors = make_tensors(case, device=device)
    report = None
    if any(t.requires_grad for t in tensors):
        report = gradcheck(lambda *ts: spec.call(*ts, **case.params), tensors, mode="element", eps=spec.eps,
                           atol=spec.atol, rtol=spec.rtol, raise_exception=False)
    return report, fwd


class _Row(NamedTuple):
    op: str
    shapes: str
    max_rel_err: float
    passed: bool
    seconds: float


class OpCheckRow(_Row):
    """One line of `run_op_gradchecks`: a 5-tuple (op, shapes, max_rel_err, passed, seconds),
    also readable as a dict (`row["passed"]`), with `.detail` saying why a check failed."""

    def __new__(cls, op, shapes, max_rel_err, passed, seconds, detail=""):
        row = super().__new__(cls, op, shapes, max_rel_err, passed, seconds)
        row.detail = detail
        return row

    def __getitem__(self, key):
        return getattr(self, key) if isinstance(key, str) else tuple.__getitem__(self, key)


def run_op_gradchecks(seed: int = 0, ops=None, cases: int = 3) -> list:
    """Gradcheck every spec'd op (or those named in `ops`, matched case-insensitively) in
    float64, element by element, on `cases` random shapes each. Returns OpCheckRow rows
    (op, shapes, max_rel_err, passed, seconds[, detail]), one per case."""
    specs = all_specs()
    names = sorted(specs)
    if ops:
        want = {o.lower() for o in ops}
        unknown = want - {n.lower() for n in names}
        if unknown:
            raise ValueError(f"gradcheck: no spec for {sorted(unknown)}; known ops: {', '.join(names)}")
        names = [n for n in names if n.lower() in want]
    rows = []
    for i, name in enumerate(names):
        spec = specs[name]
        for c in range(cases):
            draw = Draw(np.random.default_rng([seed, i, c]))
            start = time.perf_counter()
            case = spec.sample(draw)
            try:
                report, fwd = check_case(spec, case)
                rel = report.max_rel_err if report else 0.0
                ok = (report is None or report.passed) and not fwd
                detail = fwd if fwd else "" if ok else _failure(report)
            except Exception as e:  # a crash is a failure of that op, not of the whole run
                rel, ok, detail = float("nan"), False, f"{type(e).__name__}: {e}"
            rows.append(OpCheckRow(name, case.describe(), rel, ok, time.perf_counter() - start, detail))
    return rows


def _failure(report) -> str:
    bad = next(r for r in report.inputs if not r.passed)
    return f"input {bad.index} at {bad.worst}: numeric {bad.numeric:.6g} vs analytic {bad.analytic:.6g}"


def format_table(rows) -> str:
    """A fixed-width table of `run_op_gradchecks` rows with a summary line."""
    head = ("op", "shapes / params", "max rel err", "ok", "ms")
    body = [(r.op, r.shapes if len(r.shapes) <= 60 else r.shapes[:57] + "...", f"{r.max_rel_err:.1e}",
             "PASS" if r.passed else "FAIL", f"{1000 * r.seconds:.0f}") for r in rows]
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    for r, b in zip(rows, body):
        lines.append("  ".join(c.ljust(w) for c, w in zip(b, widths)).rstrip())
        if not r.passed and r.detail:
            lines.append("    " + r.detail)
    failed = sum(not r.passed for r in rows)
    n_ops = len({r.op for r in rows})
    lines.append(f"{len(rows) - failed}/{len(rows)} checks passed over {n_ops} ops"
                 f" in {sum(r.seconds for r in rows):.1f}s" + (f"; {failed} FAILED" if failed else ""))
    return "\n".join(lines)


# ================================================================ the engine's specs
def _binary_sampler(a_values, b_values):
    def sample(d: Draw) -> Case:
        sa, sb = d.broadcast_shapes(2)
        return Case([a_values(d, sa), b_values(d, sb)])
    return sample


def _unary_sampler(values, min_dims=0, max_dims=3, params=None):
    def sample(d: Draw) -> Case:
        s = d.shape(min_dims, max_dims)
        return Case([values(d, s)], params(d, s) if params else {})
    return sample


_normal = lambda d, s: d.normal(s)  # noqa: E731
_pos = lambda d, s: d.positive(s)  # noqa: E731
_nonzero = lambda d, s: d.nonzero(s)  # noqa: E731


def _sample_maxmin(d: Draw) -> Case:
    # a and b on two interleaved grids: a - b is never within 0.15 of 0 (no ties)
    sa, sb = d.broadcast_shapes(2)
    a = d.ints(-3, 3, sa) + d.uniform(0.25, 0.75, sa)
    b = d.ints(-3, 3, sb) + d.uniform(-0.1, 0.1, sb)
    return Case([a, b] if d.boolean() else [b, a])


def _sample_pow_scalar(d: Draw) -> Case:
    s = d.shape()
    c = d.choice([2, 3, 1, 0.5, -1, -0.5, 1.5, 2.5])
    x = d.normal(s) if c in (2, 3, 1) else d.positive(s)
    return Case([x], {"exponent": c})


def _call_pow_scalar(x, exponent):
    if exponent == 0.5:
        return x ** 0.5
    if exponent == -1:
        return x.reciprocal()
    if exponent == -0.5:
        return x.rsqrt()
    if exponent == 2:
        return x.square()
    return x ** exponent


def _reduce_sampler(values, extra=None):
    def sample(d: Draw) -> Case:
        s = d.shape(0, 3)
        p = {"dim": d.dims(len(s)), "keepdim": d.boolean()}
        if extra:
            p.update(extra(d, s, p))
        return Case([values(d, s)], p)
    return sample


def _np_axis(dim):
    return dim if dim is None or isinstance(dim, int) else tuple(dim)


def _var_extra(d, s, p):
    dim = p["dim"]
    axes = range(len(s)) if dim is None else (dim,) if isinstance(dim, int) else dim
    n = math.prod(s[a] for a in axes)  # elements per variance: correction 1 needs two
    return {"correction": d.choice([0, 1]) if n > 1 else 0}


def _sample_reshape(d: Draw) -> Case:
    s = d.shape(0, 4)
    form = d.choice(["reshape", "view", "flatten", "unsqueeze", "squeeze", "unflatten"])
    p = {"form": form}
    if form in ("reshape", "view"):
        dims = list(s)
        d.rng.shuffle(dims)
        if dims and d.boolean():
            dims[d.integer(0, len(dims) - 1)] = -1
        p["shape"] = tuple(dims) if dims else ()
    elif form == "flatten":
        if s:
            a, b = sorted((d.integer(0, len(s) - 1), d.integer(0, len(s) - 1)))
            p.update(start_dim=a, end_dim=b)
        else:
            p.update(start_dim=0, end_dim=-1)
    elif form == "unsqueeze":
        p["dim"] = d.integer(-len(s) - 1, len(s))
    elif form == "squeeze":
        s = tuple(1 if d.integer(0, 2) == 0 else k for k in s)
        p["dim"] = None if not s or d.boolean() else d.integer(0, len(s) - 1)
    else:  # unflatten
        s = s or (1,)
        dim = d.integer(0, len(s) - 1)
        k = s[dim]
        first = d.choice([f for f in range(1, k + 1) if k % f == 0])
        p.update(dim=dim, sizes=(first, -1) if d.boolean() else (first, k // first))
    return Case([d.normal(s)], p)


def _call_reshape(x, form, **p):
    if form == "reshape":
        return x.reshape(p["shape"])
    if form == "view":
        return x.view(*p["shape"]) if p["shape"] else x.view(())
    if form == "flatten":
        return x.flatten(p["start_dim"], p["end_dim"])
    if form == "unsqueeze":
        return x.unsqueeze(p["dim"])
    if form == "squeeze":
        return x.squeeze(p["dim"])
    return x.unflatten(p["dim"], p["sizes"])


def _ref_reshape(x, form, **p):
    if form in ("reshape", "view"):
        return x.reshape(p["shape"])
    if form == "flatten":
        if x.ndim == 0:
            return x.reshape(1)
        a, b = p["start_dim"] % x.ndim, p["end_dim"] % x.ndim
        return x.reshape(x.shape[:a] + (-1,) + x.shape[b + 1:]) if x.size else x.reshape(x.shape[:a] + (0,) + x.shape[b + 1:])
    if form == "unsqueeze":
        return np.expand_dims(x, p["dim"])
    if form == "squeeze":
        if p["dim"] is None:
            return np.squeeze(x)
        return np.squeeze(x, p["dim"]) if x.shape[p["dim"]] == 1 else x
    dim, sizes = p["dim"], p["sizes"]
    return x.reshape(x.shape[:dim] + tuple(sizes) + x.shape[dim + 1:])


def _sample_permute(d: Draw) -> Case:
    s = d.shape(0, 4)
    form = d.choice(["permute", "transpose", "T", "mT"] if len(s) >= 2 else ["permute", "T"])
    p = {"form": form}
    if form == "permute":
        dims = [int(i) for i in d.rng.permutation(len(s))]
        p["dims"] = tuple(k - len(s) if d.boolean() else k for k in dims)
    elif form == "transpose":
        p["dims"] = (d.integer(-len(s), len(s) - 1), d.integer(-len(s), len(s) - 1))
    return Case([d.normal(s)], p)


def _call_permute(x, form, dims=None):
    if form == "permute":
        return x.permute(*dims) if dims else x.permute(())
    if form == "transpose":
        return x.transpose(*dims)
    return x.T if form == "T" else x.mT


def _ref_permute(x, form, dims=None):
    if form == "permute":
        return np.transpose(x, dims)
    if form == "transpose":
        return np.swapaxes(x, *dims)
    return x.T if form == "T" else np.swapaxes(x, -1, -2)


def _sample_expand(d: Draw) -> Case:
    target = d.shape(0, 4)
    s = tuple(1 if d.boolean() else k for k in target)
    s = s[d.integer(0, len(s)):]
    form = d.choice(["expand", "broadcast_to", "expand_-1"])
    return Case([d.normal(s)], {"form": form, "shape": target})


def _call_expand(x, form, shape):
    if form == "broadcast_to":
        return x.broadcast_to(shape)
    if form == "expand_-1":  # -1 keeps an existing size
        lead = len(shape) - x.ndim
        return x.expand(*[-1 if i >= lead and x.shape[i - lead] == k else k for i, k in enumerate(shape)]) if shape else x.expand(())
    return x.expand(*shape) if shape else x.expand(())


def _sample_slice(d: Draw) -> Case:
    s = d.shape(1, 4)
    idx = []
    for k in s:
        kind = d.choice(["slice", "slice", "int", "full"])
        if kind == "int":
            idx.append(d.integer(-k, k - 1))
        elif kind == "full":
            idx.append(slice(None))
        else:
            step = d.choice([1, 2, -1, -2, 3])
            start = d.choice([None, d.integer(-k, k - 1)])
            stop = d.choice([None, d.integer(-k - 1, k)])
            idx.append(slice(start, stop, step))
    if d.boolean():
        idx.insert(d.integer(0, len(idx)), None)
    if d.boolean():  # replace a run of trailing (or leading) full slices by ...
        cut = d.integer(0, len(idx))
        idx = idx[:cut] + [Ellipsis] if d.boolean() else [Ellipsis] + idx[cut:]
    return Case([d.normal(s)], {"index": tuple(idx)})


def _sample_index(d: Draw) -> Case:
    s = d.shape(1, 3, 1, 4)
    form = d.choice(["tensor", "array", "list", "mask", "tensor_mask", "mixed", "index_select"])
    x = d.normal(s)
    if form in ("tensor", "array", "list"):
        ids = d.ints(-s[0], s[0], (d.integer(1, 6),))  # repeats likely: their gradients must add up
        if d.boolean():
            ids = ids.reshape(-1, 1)
        return Case([x], {"form": form, "index": (ids.tolist() if form == "list" else ids,)})
    if form == "mask":  # over the leading k dims
        return Case([x], {"form": form, "index": (d.mask(s[:d.integer(1, len(s))]),)})
    if form == "tensor_mask":  # over the last dim, after ...
        return Case([x], {"form": form, "index": (Ellipsis, d.mask(s[-1:]))})
    if form == "index_select":
        dim = d.integer(0, len(s) - 1)
        return Case([x], {"form": form, "index": (dim, d.ints(0, s[dim], (d.integer(1, 5),)))})
    # mixed: a slice, then an integer array, then maybe None
    idx = [slice(None, None, d.choice([1, -1]))] if len(s) > 1 else []
    idx.append(d.ints(0, s[len(idx)], (d.integer(1, 4),)))
    if d.boolean():
        idx.append(None)
    return Case([x], {"form": form, "index": tuple(idx)})


def _call_index(x, form, index):
    if form == "index_select":
        return x.index_select(index[0], Tensor(index[1], device=x.device))
    if form in ("tensor", "tensor_mask"):
        index = tuple(Tensor(i, device=x.device) if isinstance(i, np.ndarray) else i for i in index)
    return x[index if len(index) > 1 else index[0]]


def _ref_index(x, form, index):
    if form == "index_select":
        return np.take(x, index[1], axis=index[0])
    return x[tuple(np.asarray(i) if isinstance(i, list) else i for i in index)]


def _sample_cat(d: Draw) -> Case:
    form = d.choice(["cat", "stack"])
    s = d.shape(1 if form == "cat" else 0, 3)
    n = d.integer(1, 3)
    if form == "cat":
        dim = d.integer(0, len(s) - 1)
        shapes = [s[:dim] + (d.integer(1, 3),) + s[dim + 1:] for _ in range(n)]
        dim = dim - len(s) if d.boolean() else dim
    else:
        dim = d.integer(-len(s) - 1, len(s))
        shapes = [s] * n
    return Case([d.normal(sh) for sh in shapes], {"form": form, "dim": dim})


def _call_cat(*xs, form, dim):
    return (_t.cat if form == "cat" else _t.stack)(list(xs), dim=dim)


def _ref_cat(*xs, form, dim):
    return (np.concatenate if form == "cat" else np.stack)(xs, axis=dim)


def _sample_pad(d: Draw) -> Case:
    s = d.shape(1, 3, 1, 4)
    k = d.integer(1, len(s))
    pad = []
    for i in range(k):
        size = s[len(s) - 1 - i]
        b = d.integer(-(size - 1), 2)
        e = d.integer(-(size - 1 - max(0, -b)), 2)
        pad += [b, e]
    return Case([d.normal(s)], {"pad": tuple(pad), "value": d.choice([0.0, -1.5])})


def _ref_pad(x, pad, value):
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    x = x[tuple(slice(max(0, -b), x.shape[j] - max(0, -e)) for j, (b, e) in enumerate(widths))]
    return np.pad(x, [(max(0, b), max(0, e)) for b, e in widths], constant_values=value)


def _sample_gather(d: Draw) -> Case:
    s = d.shape(1, 3)
    dim = d.integer(0, len(s) - 1)
    form = d.choice(["gather", "take_along_dim"])
    if form == "gather":  # index no larger than the input outside dim
        ishape = tuple(d.integer(1, 4) if i == dim else d.integer(1, k) for i, k in enumerate(s))
    else:  # index broadcasts against the input outside dim
        ishape = tuple(d.integer(1, 4) if i == dim else d.choice([1, k]) for i, k in enumerate(s))
    return Case([d.normal(s), d.ints(0, s[dim], ishape)], {"form": form, "dim": dim - len(s) if d.boolean() else dim})


def _call_gather(x, idx, form, dim):
    return x.gather(dim, idx) if form == "gather" else _t.take_along_dim(x, idx, dim)


def _ref_gather(x, idx, form, dim):
    if form == "gather":
        d = dim % x.ndim
        x = x[tuple(slice(None) if i == d else slice(0, k) for i, k in enumerate(idx.shape))]
    else:
        d = dim % x.ndim
        shape = np.broadcast_shapes(x.shape[:d] + x.shape[d + 1:], idx.shape[:d] + idx.shape[d + 1:])
        x = np.broadcast_to(x, shape[:d] + (x.shape[d],) + shape[d:])
        idx = np.broadcast_to(idx, shape[:d] + (idx.shape[d],) + shape[d:])
    return np.take_along_axis(x, idx, axis=d)


def _sample_matmul(d: Draw) -> Case:
    m, k, n = d.integer(1, 4), d.integer(1, 4), d.integer(1, 4)
    form = d.choice(["1d@1d", "1d@2d", "2d@1d", "2d@2d", "batched", "nd@2d", "1d@nd", "nd@1d"])
    batch_a, batch_b = d.broadcast_shapes(2, 1, 2)
    shapes = {
        "1d@1d": ((k,), (k,)), "1d@2d": ((k,), (k, n)), "2d@1d": ((m, k), (k,)), "2d@2d": ((m, k), (k, n)),
        "batched": (batch_a + (m, k), batch_b + (k, n)), "nd@2d": (batch_a + (m, k), (k, n)),
        "1d@nd": ((k,), batch_b + (k, n)), "nd@1d": (batch_a + (m, k), (k,)),
    }[form]
    return Case([d.normal(shapes[0]), d.normal(shapes[1])], {"form": form})


def _sample_embedding(d: Draw) -> Case:
    rows = d.integer(1, 5)
    w = d.normal((rows,) + d.shape(0, 1, 1, 4))
    return Case([w, d.ints(0, rows, d.shape(0, 2, 1, 5))])


def _sample_where(d: Draw) -> Case:
    sc, sa, sb = d.broadcast_shapes(3)
    form = d.choice(["function", "method", "scalar_other"])
    if form == "scalar_other":
        return Case([d.mask(sc), d.normal(sa)], {"form": form, "other": -0.5})
    return Case([d.mask(sc), d.normal(sa), d.normal(sb)], {"form": form})


def _call_where(c, a, b=None, form="function", other=None):
    if form == "scalar_other":
        return _t.where(c, a, other)
    return a.where(c, b) if form == "method" else _t.where(c, a, b)


def _ref_where(c, a, b=None, form="function", other=None):
    return np.where(c, a, other if form == "scalar_other" else b).astype(a.dtype)


def _sample_masked_fill(d: Draw) -> Case:
    sx, sm = d.broadcast_shapes(2)
    sx = np.broadcast_shapes(sx, sm)  # torch: the mask broadcasts to the input, not the reverse
    return Case([d.normal(sx), d.mask(sm)], {"value": d.choice([0.0, -1e9, 2.5])})


def _sample_clamp(d: Draw) -> Case:
    lo, hi = d.choice([(-0.5, 0.5), (-0.5, None), (None, 0.5), (0.0, 1.0)])
    return Case([avoid(d.normal(d.shape()), (lo, hi))], {"min": lo, "max": hi})


def _sample_tril(d: Draw) -> Case:
    return Case([d.normal(d.shape(2, 4))], {"diagonal": d.integer(-2, 2), "upper": d.boolean()})


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _ref_gelu(x, approximate):
    if approximate == "tanh":
        return (0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))).astype(x.dtype)
    return (0.5 * x * (1 + _erf(x / math.sqrt(2)))).astype(x.dtype)


def _ref_sigmoid(x):
    return (1 / (1 + np.exp(-x.astype(np.float64)))).astype(x.dtype)


def _ref_lse(x, dim, keepdim):
    if x.ndim == 0:
        return x.copy()
    return np.logaddexp.reduce(x, axis=_np_axis(dim), keepdims=keepdim)


def _engine_specs():
    E = np  # noqa: N806  (short, so the table stays one line per op)
    specs = [
        # ---------------------------------------------------------------- elementwise, binary
        OpSpec("Add", _binary_sampler(_normal, _normal), lambda a, b: a + b, E.add),
        OpSpec("Sub", _binary_sampler(_normal, _normal), lambda a, b: a - b, E.subtract),
        OpSpec("Mul", _binary_sampler(_normal, _normal), lambda a, b: a * b, E.multiply),
        OpSpec("Div", _binary_sampler(_normal, _nonzero), lambda a, b: a / b, E.divide),
        OpSpec("Pow", _binary_sampler(_pos, _normal), lambda a, b: a ** b, E.power, doc="tensor ** tensor"),
        OpSpec("Maximum", _sample_maxmin, lambda a, b: a.maximum(b), E.maximum),
        OpSpec("Minimum", _sample_maxmin, lambda a, b: _t.minimum(a, b), E.minimum),
        OpSpec("Where", _sample_where, _call_where, _ref_where),
        OpSpec("MaskedFill", _sample_masked_fill, lambda x, m, value: x.masked_fill(m, value),
               lambda x, m, value: np.where(m, x.dtype.type(value), x)),
        # ---------------------------------------------------------------- elementwise, unary
        OpSpec("PowScalar", _sample_pow_scalar, _call_pow_scalar, lambda x, exponent: x ** x.dtype.type(exponent)),
        OpSpec("Neg", _unary_sampler(_normal), lambda x: -x, E.negative),
        OpSpec("Clone", _unary_sampler(_normal), lambda x: x.clone(), E.copy),
        OpSpec("Cast", _unary_sampler(_normal), lambda x: x.float().double(),
               lambda x: x.astype(np.float32).astype(np.float64), eps=1e-2, fwd_rtol=0, fwd_atol=0,
               doc="float64 -> float32 -> float64; eps=1e-2 so float32 rounding is below the tolerance"),
        OpSpec("Exp", _unary_sampler(_normal), lambda x: x.exp(), E.exp),
        OpSpec("Log", _unary_sampler(_pos), lambda x: x.log(), E.log),
        OpSpec("Sqrt", _unary_sampler(_pos), lambda x: x.sqrt(), E.sqrt),
        OpSpec("Abs", _unary_sampler(_nonzero), lambda x: abs(x), E.abs),
        OpSpec("Tanh", _unary_sampler(_normal), lambda x: x.tanh(), E.tanh),
        OpSpec("Sigmoid", _unary_sampler(lambda d, s: 3 * d.normal(s)), lambda x: x.sigmoid(), _ref_sigmoid, fwd_rtol=1e-9),
        OpSpec("Relu", _unary_sampler(_nonzero), lambda x: x.relu(), lambda x: np.maximum(x, 0)),
        OpSpec("Clamp", _sample_clamp, lambda x, min, max: x.clamp(min, max),
               lambda x, min, max: np.clip(x, min, max)),
        OpSpec("Gelu", _unary_sampler(lambda d, s: 2 * d.normal(s), params=lambda d, s: {"approximate": d.choice(["none", "tanh"])}),
               lambda x, approximate: x.gelu(approximate=approximate), _ref_gelu, fwd_rtol=1e-9, fwd_atol=1e-12),
        OpSpec("Tril", _sample_tril, lambda x, diagonal, upper: x.triu(diagonal) if upper else x.tril(diagonal),
               lambda x, diagonal, upper: np.triu(x, diagonal) if upper else np.tril(x, diagonal)),
        # ---------------------------------------------------------------- reductions
        OpSpec("Sum", _reduce_sampler(_normal), lambda x, dim, keepdim: x.sum(dim, keepdim=keepdim),
               lambda x, dim, keepdim: np.sum(x, axis=_np_axis(dim), keepdims=keepdim)),
        OpSpec("Mean", _reduce_sampler(_normal), lambda x, dim, keepdim: x.mean(dim, keepdim=keepdim),
               lambda x, dim, keepdim: np.mean(x, axis=_np_axis(dim), keepdims=keepdim)),
        OpSpec("Max", _reduce_sampler(lambda d, s: d.distinct(s)),
               lambda x, dim, keepdim: x.max(dim, keepdim).values if isinstance(dim, int) else x.amax(dim, keepdim),
               lambda x, dim, keepdim: np.max(x, axis=_np_axis(dim), keepdims=keepdim)),
        OpSpec("Min", _reduce_sampler(lambda d, s: d.distinct(s)),
               lambda x, dim, keepdim: x.min(dim, keepdim).values if isinstance(dim, int) else x.amin(dim, keepdim),
               lambda x, dim, keepdim: np.min(x, axis=_np_axis(dim), keepdims=keepdim)),
        OpSpec("Var", _reduce_sampler(_normal, _var_extra),
               lambda x, dim, keepdim, correction: x.var(dim, correction=correction, keepdim=keepdim),
               lambda x, dim, keepdim, correction: np.var(x, axis=_np_axis(dim), ddof=correction, keepdims=keepdim)),
        OpSpec("LogSumExp", _reduce_sampler(lambda d, s: 3 * d.normal(s)),
               lambda x, dim, keepdim: x.logsumexp(dim, keepdim=keepdim), _ref_lse, fwd_rtol=1e-9),
        OpSpec("Prod", _reduce_sampler(lambda d, s: d.nonzero(s, 0.5, 1.5)),
               lambda x, dim, keepdim: x.prod(dim, keepdim=keepdim),
               lambda x, dim, keepdim: np.prod(x, axis=_np_axis(dim), keepdims=keepdim)),
        # ---------------------------------------------------------------- movement
        OpSpec("Reshape", _sample_reshape, _call_reshape, _ref_reshape, doc="reshape, view, flatten, (un)squeeze, unflatten"),
        OpSpec("Permute", _sample_permute, _call_permute, _ref_permute, doc="permute, transpose, .T, .mT"),
        OpSpec("Expand", _sample_expand, _call_expand, lambda x, form, shape: np.broadcast_to(x, shape)),
        OpSpec("Slice", _sample_slice, lambda x, index: x[index], lambda x, index: x[index],
               doc="ints, slices with any step (negative too), None, Ellipsis"),
        OpSpec("Index", _sample_index, _call_index, _ref_index,
               doc="integer arrays and lists (repeats accumulate), boolean masks, index_select"),
        OpSpec("Cat", _sample_cat, _call_cat, _ref_cat, doc="cat and stack"),
        OpSpec("Pad", _sample_pad, lambda x, pad, value: _t.pad(x, pad, value), _ref_pad, doc="negative widths crop"),
        OpSpec("Gather", _sample_gather, _call_gather, _ref_gather, doc="gather and take_along_dim"),
        OpSpec("ToDevice", _unary_sampler(_normal), lambda x: _t._M.ToDevice.apply(x, device=x.device), lambda x: x,
               doc="a copy to the tensor's own device (cross-device copies need a GPU)"),
        # ---------------------------------------------------------------- matmul, index
        OpSpec("Matmul", _sample_matmul, lambda a, b, form: a @ b, lambda a, b, form: a @ b, fwd_rtol=1e-9,
               doc="1-D, 2-D, batched with broadcast batch dims"),
        OpSpec("EmbeddingLookup", _sample_embedding, lambda w, idx: _t.embedding(w, idx), lambda w, idx: w[idx],
               doc="repeated indices accumulate"),
    ]
    for s in specs:
        register_spec(s)


_engine_specs()
