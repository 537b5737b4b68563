"""The autograd engine: the graph node, the backward sweep, grad mode.

Reverse-mode automatic differentiation, read top to bottom:

1. **grad mode** (`no_grad`, `enable_grad`, `is_grad_enabled`): whether ops record a graph.
2. **`Function`**, one node of the graph. `Op.apply(*tensors)` runs the op's `forward` on
   the raw arrays and, when an input needs a gradient, records the node as the output's
   `_ctx` with its inputs as `parents`. The graph is nothing but those links.
3. **the backward sweep** (`backward`): the tensors in reverse topological order, found with
   an explicit stack (no recursion, so a chain 100,000 ops deep is fine); each node's
   `backward(grad_output)` gives its inputs' gradients, and a tensor used several times
   receives their sum. Leaves accumulate into `.grad`.
4. **broadcasting in backward** (`unbroadcast`, `broadcast_shapes`), which every op that
   broadcasts needs;
5. **the random generators**: the host one behind rand/randn/init (`get_rng`), and
   `backend.device_rng`, which draws dropout masks on their device; `manual_seed` seeds both.

The chain rule itself lives in `tinygrad_lm/ops/`: one `Function` per op, its forward and
backward side by side. `tinygrad_lm/tensor.py` holds the `Tensor` class on top of both.

Import rules. This module imports only `backend` (and numpy); `ops/` import `Function` and
the helpers from here; `tensor.py` imports this module and `ops/`. Nothing here imports
tensor.py: the engine reaches tensors through their attributes (`data`, `requires_grad`,
`grad`, `_ctx`, `_hooks`, `_retains_grad`) and makes a new one with `_wrap(array)`, a
constructor every tensor carries, so there is no import cycle.

Module state (below) is read and set as `engine.<name>` by the few modules that need it
(`debug.py` installs `observer`, `nn.Module` pushes on `scope`); `from .engine import
observer` would copy the value at import time and miss later changes.
"""
from __future__ import annotations

import contextlib
import time

import numpy as np

from . import backend

# ================================================================ module state
_grad_enabled = True    # False inside no_grad(): Function.apply records nothing
observer = None         # set by tinygrad_lm.debug (trace, detect_anomaly): sees every forward and backward
scope: list = []        # dotted module names pushed by nn.Module.__call__ (observers record the innermost)
_rng = np.random.default_rng()  # behind rand/randn/init (dropout: backend.device_rng): see manual_seed


# ================================================================ grad mode
class no_grad(contextlib.ContextDecorator):
    """Context manager and decorator: ops inside record no graph (outputs have requires_grad=False).

    `with no_grad():`, `@no_grad()` and `@no_grad` all work. Each call of a decorated function
    gets its own context, so recursion restores the mode correctly."""

    def __new__(cls, fn=None):
        if fn is not None and callable(fn):  # bare @no_grad
            return cls()(fn)
        return super().__new__(cls)

    def __init__(self, fn=None):
        pass

    def _recreate_cm(self):
        return type(self)()

    def __enter__(self):
        global _grad_enabled
        self.prev, _grad_enabled = _grad_enabled, False

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self.prev


class enable_grad(no_grad):
    """Turns recording back on (inside a no_grad block); restores the previous mode on exit."""
    def __enter__(self):
        global _grad_enabled
        self.prev, _grad_enabled = _grad_enabled, True


def is_grad_enabled() -> bool:
    return _grad_enabled


# ================================================================ the graph node
class Function:
    """One op: `forward(*arrays, **params) -> array` and `backward(grad) -> grads`.

    `backward` gets the gradient of the loss with respect to the output and returns one
    gradient per tensor input (None where `needs_input_grad` is False), each already
    reduced to its input's shape. It may pass `g` itself through (the engine copies it
    before a leaf keeps it as `.grad`) but must not write into `g` or into what forward
    saved (backward can run twice with retain_graph=True), and must not return one array
    for two inputs. Subclasses register themselves in `Function.registry` (names starting
    with "_" stay out) so tests can enumerate every op.
    """

    registry: dict = {}
    differentiable = True
    freed = False  # set on the instance by free()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if not cls.__name__.startswith("_"):
            Function.registry[cls.__name__] = cls

    @classmethod
    def apply(cls, *inputs, **params):
        """Run the op on `inputs` (tensors) and return the output tensor, recording the node
        when grad mode is on and some input requires a gradient."""
        # the hot path of every op: plain loops and attribute stores (see docs/performance.md)
        ctx = cls.__new__(cls)
        datas = [t.data for t in inputs]
        for d in datas:  # a numpy-only graph costs one type check per input
            if type(d) is not np.ndarray:
                _check_devices(cls.__name__, inputs)
                break
        if _grad_enabled and cls.differentiable:
            needs = tuple([t.requires_grad for t in inputs])
            requires = True in needs
            ctx.needs_input_grad = needs if requires else None
        else:
            requires = False
            ctx.needs_input_grad = None
        obs = observer
        if obs is not None:
            t0 = time.perf_counter()
        out = ctx.forward(*datas, **params)
        if type(out) is not np.ndarray and not hasattr(out, "__cuda_array_interface__"):
            out = np.asarray(out)  # numpy returns scalars from 0-d math
        try:
            t = inputs[0]._wrap(out, requires)  # a new plain tensor, made by the class of the inputs
        except IndexError:
            raise TypeError(f"{cls.__name__}.apply: an op needs at least one tensor input") from None
        if requires:
            ctx.parents = inputs
            t._ctx = ctx
        if obs is not None:  # tinygrad_lm.debug: trace timing, anomaly checks, module scopes
            obs.forward(ctx, inputs, t, params, time.perf_counter() - t0)
        return t

    def free(self):
        """Drop what forward saved; the node stays in the graph but can't run backward again."""
        parents = self.parents
        self.__dict__.clear()
        self.parents, self.freed = parents, True

    def __repr__(self):
        return f"<{type(self).__name__}>"


def _check_devices(op, inputs):
    devs = {backend.device_of(t.data) for t in inputs}
    if len(devs) > 1:
        a, b = sorted(devs)[:2]
        raise backend.DeviceError(f"{op}: expected all tensors on one device, got tensors on {a} and {b}")


# ================================================================ the backward sweep
def topological_order(root) -> list:
    """Tensors reachable from `root` through nodes that need grad, inputs before outputs:
    an iterative depth-first post-order (no recursion limit).

    A node is pushed, then a None marker above it, then its parents; popping the marker
    means every parent is done, so the node below it goes into the order. Tensors hash by
    identity (distinct live objects never share a hash, so Tensor's overloaded `==` is
    never called)."""
    order, seen, stack = [], set(), [root]
    while stack:
        t = stack.pop()
        if t is None:  # the marker: the node under it has all its parents ordered
            order.append(stack.pop())
            continue
        if t in seen:
            continue
        seen.add(t)
        ctx = t._ctx
        if ctx is None:  # a leaf has no parents to wait for
            order.append(t)
            continue
        stack.append(t)
        stack.append(None)
        for p in ctx.parents:
            if p.requires_grad and p not in seen:
                stack.append(p)
    return order


def backward(root, gradient=None, retain_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) into the `.grad` of every leaf that requires a gradient.

    `gradient` (an array of root's shape, or None for the seed 1 of a one-element root) is
    the vector of the vector-Jacobian product. The sweep keeps `grads`, tensor -> the sum of
    the gradients that reached it so far (complete when its turn comes, since the order puts
    it after everything computed from it). Every gradient that leaves an op's backward is
    made an array of its input's shape and dtype here, whatever the op returned (numpy turns
    0-d results into numpy scalars).

    `shared` holds the ids of gradient arrays that another tensor's gradient may alias (the
    caller's seed, or an op passing its output gradient through, like Add): a leaf copies
    those before keeping one as its `.grad`, so no two `.grad`s share memory."""
    if not root.requires_grad:
        raise RuntimeError("backward: this tensor does not require grad and has no grad_fn "
                           "(was it computed under no_grad, or from tensors without requires_grad?)")
    xp = backend.array_module(root.data)
    if gradient is None:
        if root.data.size != 1:
            raise RuntimeError(f"backward: grad can be implicitly created only for one-element outputs, "
                               f"got shape {root.data.shape}; pass gradient= of that shape")
        seed, shared = xp.ones(root.data.shape, dtype=root.data.dtype), set()
    else:
        g = xp.asarray(gradient)
        if g.shape != root.data.shape:
            raise ValueError(f"backward: gradient has shape {g.shape} but the tensor has shape {root.data.shape}")
        seed = g.astype(root.data.dtype, copy=False)
        shared = {id(seed)}

    grads = {root: seed}
    obs = observer
    for t in reversed(topological_order(root)):
        g = grads.pop(t, None)
        if g is None:
            continue
        if t._hooks:
            for hook in t._hooks:
                r = hook(t._wrap(g))
                if r is not None:
                    if r.shape != t.shape:
                        raise ValueError(f"hook returned a gradient of shape {r.shape} for a tensor of shape {t.shape}")
                    g = _as_array(r.data).astype(t.data.dtype, copy=False)
                    shared.add(id(g))
        ctx = t._ctx
        if ctx is None:  # a leaf: accumulate into .grad
            if id(g) in shared or g.base is not None or (type(g) is np.ndarray and not g.flags.writeable):
                g = g.copy()  # a leaf's .grad must own its memory (cupy arrays have no writeable flag)
            t.grad = t._wrap(g) if t.grad is None else t._wrap(_as_array(t.grad.data + g))
            continue
        if t._retains_grad:
            t.grad = t._wrap(g.copy()) if t.grad is None else t._wrap(_as_array(t.grad.data + g))
        if ctx.freed:
            raise RuntimeError(f"backward: trying to backward through the graph a second time ({type(ctx).__name__} "
                               f"was freed after the first backward); pass retain_graph=True to the first call")
        if obs is not None:
            t0 = time.perf_counter()
        in_grads = ctx.backward(g)
        if type(in_grads) is not tuple:
            in_grads = (in_grads,)
        if obs is not None:
            obs.backward(ctx, t, g, in_grads, time.perf_counter() - t0)
        for p, pg in zip(ctx.parents, in_grads):
            if pg is None or not p.requires_grad:
                continue
            if type(pg) is not np.ndarray:
                pg = _as_array(pg)
            pd = p.data
            if pg.shape != pd.shape:
                _wrong_shape(ctx, in_grads, pg, p)
            if pg.dtype is not pd.dtype and pg.dtype != pd.dtype:  # identity first: builtin dtypes are singletons
                pg = pg.astype(pd.dtype)
            prev = grads.get(p)
            if prev is None:
                grads[p] = pg
                if pg is g:
                    shared.add(id(pg))
            else:
                s = prev + pg  # a fresh array, aliasing nothing
                grads[p] = s if type(s) is np.ndarray else _as_array(s)
        if not retain_graph:
            ctx.free()


def _as_array(a):
    """`a` as an array: numpy returns a numpy scalar, not a 0-d array, from math on 0-d
    arrays (`np.ones(()) + np.ones(())`), and a gradient must be an array of its tensor's
    shape. cupy always returns arrays."""
    if type(a) is np.ndarray or hasattr(a, "__cuda_array_interface__"):
        return a
    return np.asarray(a)


def _wrong_shape(ctx, in_grads, pg, p):
    i = next(k for k, q in enumerate(in_grads) if q is not None and q.shape == pg.shape and ctx.parents[k] is p)
    raise RuntimeError(f"backward: a gradient of shape {pg.shape} reached a {'leaf' if p._ctx is None else 'tensor'} "
                       f"of shape {p.data.shape} from {type(ctx).__name__}.backward (input {i}); "
                       f"some op's backward did not reduce it to its input's shape")


# ================================================================ broadcasting in backward
def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`: the backward of numpy broadcasting.

    Broadcasting copies an input along new leading axes and along axes of size 1, so its
    gradient is the sum over those axes.
    """
    if grad.shape == tuple(shape):
        return grad
    nlead = grad.ndim - len(shape)
    axes = tuple(range(nlead)) + tuple(i + nlead for i, s in enumerate(shape) if s == 1 and grad.shape[i + nlead] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def broadcast_shapes(op, *shapes):
    """numpy's broadcast shape, or a ValueError naming the op and the shapes."""
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"{op}: shapes {' and '.join(str(tuple(s)) for s in shapes)} cannot be broadcast together") from None


# ================================================================ random numbers
def manual_seed(seed: int) -> None:
    """Seed both generators: the host one behind rand/randn/init (its numbers are drawn on the
    CPU and moved to the device) and `backend.device_rng`, which draws dropout masks where
    they are used. Either way a seed gives the same tensors and masks on every backend."""
    global _rng
    _rng = np.random.default_rng(seed)
    backend.device_rng.manual_seed(seed)


def get_rng() -> np.random.Generator:
    return _rng


def get_rng_state() -> dict:
    return _rng.bit_generator.state


def set_rng_state(state: dict) -> None:
    _rng.bit_generator.state = state
