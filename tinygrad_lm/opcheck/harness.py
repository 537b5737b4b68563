"""The harness: how an op's check is written (`OpSpec`, `Case`, `Draw`) and run.

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

The package's own specs are in `engine_specs.py` and `fused_specs.py` beside this file.
An op defined elsewhere (your own `Function`) gets one by calling `register_spec(OpSpec(...))`,
or by defining a module-level function `opcheck_specs() -> list[OpSpec]` in the module that
defines the op, which `all_specs()` calls lazily. Example:

    from tinygrad_lm.opcheck import OpSpec, Case, register_spec

    register_spec(OpSpec(
        op="Cube",                                               # the Function.registry name
        sample=lambda d: Case([d.normal(d.shape(0, 3))]),
        call=lambda x: Cube.apply(x),
        reference=lambda x: x ** 3,
    ))
"""
from __future__ import annotations

import importlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from .. import backend
from ..engine import Function, no_grad
from ..gradcheck import gradcheck
from ..tensor import Tensor

ENGINE_MODULES = tuple(f"tinygrad_lm.ops.{m}" for m in ("elementwise", "reduce", "movement", "indexing", "matmul"))


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
    with no_grad():
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
