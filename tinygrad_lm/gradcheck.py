"""Gradient checking: the engine's backward against central finite differences, in float64.

For a scalar L(x) = sum(v * fn(x)) with a fixed random cotangent v (v = 1 for a one-element
output), backward gives the analytic gradient dL/dx (a vector-Jacobian product). The
numeric side is the central difference

    dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)          (element checks)
    <dL/dx, d> ~ (L(x + eps d) - L(x - eps d)) / (2 eps)            (directional checks)

whose error is O(eps^2). The difference is taken output element by output element before
the sum with v, so outputs that stay put (filled with -1e9 or -inf by a mask) cancel exactly
instead of drowning the slope in rounding error. Element checks cost two evaluations per
element, so large inputs (a whole GPT) are checked along random directions d instead, plus
a random sample of elements. A check passes when |numeric - analytic| <= atol + rtol * |numeric|.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import backend
from .engine import no_grad
from .tensor import Tensor


@dataclass
class InputReport:
    """The result for one input tensor."""
    index: int
    name: str
    shape: tuple
    elements_checked: int = 0
    directions: int = 0
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    worst: str = "-"          # the element index, or "direction k", with the largest excess error
    numeric: float = 0.0      # numeric and analytic values at `worst`
    analytic: float = 0.0
    passed: bool = True


@dataclass
class GradcheckReport:
    inputs: list = field(default_factory=list)
    eps: float = 1e-6
    atol: float = 1e-5
    rtol: float = 1e-3
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.inputs)

    @property
    def max_rel_err(self) -> float:
        return max((r.max_rel_err for r in self.inputs), default=0.0)

    @property
    def max_abs_err(self) -> float:
        return max((r.max_abs_err for r in self.inputs), default=0.0)

    def table(self) -> str:
        rows = [("input", "shape", "elements", "directions", "max abs err", "max rel err", "worst at", "numeric", "analytic", "ok")]
        for r in self.inputs:
            rows.append((f"{r.index}:{r.name}", str(tuple(r.shape)), str(r.elements_checked), str(r.directions),
                         f"{r.max_abs_err:.2e}", f"{r.max_rel_err:.2e}", r.worst, f"{r.numeric:.6g}", f"{r.analytic:.6g}",
                         "PASS" if r.passed else "FAIL"))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
        lines.append(f"eps={self.eps:g} atol={self.atol:g} rtol={self.rtol:g}  {'PASSED' if self.passed else 'FAILED'} in {self.seconds:.2f}s")
        return "\n".join(lines)

    __str__ = table


class GradcheckError(AssertionError):
    """Raised when analytic and numeric gradients disagree; `.report` holds the details."""

    def __init__(self, report: GradcheckReport):
        self.report = report
        bad = next(r for r in report.inputs if not r.passed)
        super().__init__(
            f"Jacobian mismatch with respect to input {bad.index} ({bad.name}, shape {tuple(bad.shape)}) at {bad.worst}: "
            f"numeric {bad.numeric:.8g} vs analytic {bad.analytic:.8g} (abs err {bad.max_abs_err:.3g}, "
            f"rel err {bad.max_rel_err:.3g})\n{report.table()}")


def gradcheck(fn, inputs, *, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3, mode: str = "auto",
              max_elements: int = 64, n_directions: int = 3, seed: int = 0, dtype=np.float64,
              raise_exception: bool = True) -> GradcheckReport:
    """Check `fn`'s gradients with respect to `inputs` against finite differences.

    fn:      called as fn(*inputs); returns a Tensor of any shape.
    inputs:  a Tensor, a list of Tensors, or a dict name -> Tensor (e.g. dict(model.named_parameters())).
             Each is perturbed in place and restored; those that require grad are checked.
    mode:    "element"     every element of every input;
             "directional" only `n_directions` random directions per input;
             "auto"        every element of inputs with at most `max_elements` elements; for larger
                           ones a random sample of `max_elements` elements plus the directions.
    dtype:   inputs are converted to this dtype (float64) for the check, then restored.

    Returns a GradcheckReport; raises GradcheckError with it when a check fails (unless
    raise_exception=False).
    """
    if mode not in ("auto", "element", "directional"):
        raise ValueError(f"gradcheck: mode must be 'auto', 'element' or 'directional', got {mode!r}")
    if isinstance(inputs, Tensor):
        inputs = [inputs]
    if isinstance(inputs, dict):
        names, tensors = list(inputs.keys()), list(inputs.values())
    else:
        tensors, names = list(inputs), None
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"gradcheck: input {i} is a {type(t).__name__}, expected a Tensor")
    if names is None:
        names = [t.name or f"input{i}" for i, t in enumerate(tensors)]
    checked = [i for i, t in enumerate(tensors) if t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    saved = [t.data for t in tensors]
    saved_grads = [t.grad for t in tensors]
    try:
        for t in tensors:
            if t.data.dtype.kind == "f":
                # a private C-contiguous copy: perturbing it never touches the caller's array, and
                # reshape(-1) below is a view of it (a transposed input would otherwise be copied)
                t.data = t.data.astype(dtype, order="C")
        report = _check(fn, tensors, names, checked, eps, atol, rtol, mode, max_elements, n_directions, rng)
    finally:
        for t, d, g in zip(tensors, saved, saved_grads):
            t.data, t.grad = d, g
    report.seconds = time.perf_counter() - start
    if raise_exception and not report.passed:
        raise GradcheckError(report)
    return report


def _check(fn, tensors, names, checked, eps, atol, rtol, mode, max_elements, n_directions, rng):
    xp = tensors[checked[0]].xp
    for t in tensors:
        t.grad = None
    out = fn(*tensors)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    v = xp.ones_like(out.data) if out.data.size == 1 else backend.to_device(
        rng.standard_normal(out.shape).astype(out.data.dtype), out.device)
    if out.requires_grad:
        out.backward(Tensor._wrap(v))  # the vector-Jacobian product with v

    def output():
        with no_grad():
            return fn(*tensors).data.copy()  # a copy: a view (reshape, slice) would follow the next perturbation

    def slope(plus, minus):
        # sum(v * (f(x+) - f(x-))) / 2eps, differencing element by element first: outputs that
        # don't move (a masked_fill with -1e9 or -inf) cancel exactly instead of swamping the sum
        with np.errstate(invalid="ignore"):  # inf - inf where a masked output stayed -inf
            diff = xp.where(plus == minus, 0, plus - minus)
        return float((diff * v).sum()) / (2 * eps)

    report = GradcheckReport(eps=eps, atol=atol, rtol=rtol)
    for i in checked:
        t = tensors[i]
        grad = t.grad.data if t.grad is not None else xp.zeros_like(t.data)
        r = InputReport(index=i, name=names[i], shape=t.shape)
        worst_excess = -math.inf

        def record(where, num, ana):
            nonlocal worst_excess
            err = abs(num - ana)
            rel = err / max(abs(num), abs(ana), 1e-12)
            r.max_abs_err = max(r.max_abs_err, err)
            r.max_rel_err = max(r.max_rel_err, rel)
            excess = err - (atol + rtol * abs(num))
            if excess > worst_excess:
                worst_excess, r.worst, r.numeric, r.analytic = excess, where, num, ana
            if excess > 0:
                r.passed = False

        n = t.data.size
        flat = t.data.reshape(-1)  # a view: writing flat[k] perturbs t.data
        gflat = backend.to_numpy(grad).reshape(-1)
        if mode != "directional":
            ks = range(n) if (mode == "element" or n <= max_elements) else rng.choice(n, size=max_elements, replace=False)
            for k in ks:
                k = int(k)
                orig = flat[k].item()
                flat[k] = orig + eps
                fp = output()
                flat[k] = orig - eps
                fm = output()
                flat[k] = orig
                record(str(tuple(int(j) for j in np.unravel_index(k, t.shape))), slope(fp, fm), float(gflat[k]))
                r.elements_checked += 1
        if mode == "directional" or (mode == "auto" and n > max_elements):
            base = t.data
            for d_i in range(n_directions):
                d = backend.to_device(rng.standard_normal(t.shape), t.device).astype(base.dtype)
                d /= max(float(xp.linalg.norm(d)), 1e-30)
                t.data = base + eps * d
                fp = output()
                t.data = base - eps * d
                fm = output()
                t.data = base
                record(f"direction {d_i}", slope(fp, fm), float((grad * d).sum()))
                r.directions += 1
        report.inputs.append(r)
    return report
