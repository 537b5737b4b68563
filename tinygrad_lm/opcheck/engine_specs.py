"""The engine ops' specs: one `OpSpec` per op of `ops/elementwise.py`, `reduce.py`,
`movement.py`, `indexing.py` and `matmul.py`, registered when this module is imported.

Each spec calls the op the way users do (operators, Tensor methods, module-level functions)
and names a plain numpy reference; see `harness.py` for what the fields mean.
"""
from __future__ import annotations

import math

import numpy as np

from ..ops import movement
from ..tensor import Tensor, cat, embedding, minimum, pad, stack, take_along_dim, where
from .harness import Case, Draw, OpSpec, avoid, register_spec


# ================================================================ samplers shared by several ops
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
    return (cat if form == "cat" else stack)(list(xs), dim=dim)


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


def _call_pad(x, **p):  # p holds "pad" and "value" (a parameter named pad would hide the function)
    return pad(x, p["pad"], p["value"])


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
    return x.gather(dim, idx) if form == "gather" else take_along_dim(x, idx, dim)


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
        return where(c, a, other)
    return a.where(c, b) if form == "method" else where(c, a, b)


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
    return [
        # ---------------------------------------------------------------- elementwise, binary
        OpSpec("Add", _binary_sampler(_normal, _normal), lambda a, b: a + b, np.add),
        OpSpec("Sub", _binary_sampler(_normal, _normal), lambda a, b: a - b, np.subtract),
        OpSpec("Mul", _binary_sampler(_normal, _normal), lambda a, b: a * b, np.multiply),
        OpSpec("Div", _binary_sampler(_normal, _nonzero), lambda a, b: a / b, np.divide),
        OpSpec("Pow", _binary_sampler(_pos, _normal), lambda a, b: a ** b, np.power, doc="tensor ** tensor"),
        OpSpec("Maximum", _sample_maxmin, lambda a, b: a.maximum(b), np.maximum),
        OpSpec("Minimum", _sample_maxmin, lambda a, b: minimum(a, b), np.minimum),
        OpSpec("Where", _sample_where, _call_where, _ref_where),
        OpSpec("MaskedFill", _sample_masked_fill, lambda x, m, value: x.masked_fill(m, value),
               lambda x, m, value: np.where(m, x.dtype.type(value), x)),
        # ---------------------------------------------------------------- elementwise, unary
        OpSpec("PowScalar", _sample_pow_scalar, _call_pow_scalar, lambda x, exponent: x ** x.dtype.type(exponent)),
        OpSpec("Neg", _unary_sampler(_normal), lambda x: -x, np.negative),
        OpSpec("Clone", _unary_sampler(_normal), lambda x: x.clone(), np.copy),
        OpSpec("Cast", _unary_sampler(_normal), lambda x: x.float().double(),
               lambda x: x.astype(np.float32).astype(np.float64), eps=1e-2, fwd_rtol=0, fwd_atol=0,
               doc="float64 -> float32 -> float64; eps=1e-2 so float32 rounding is below the tolerance"),
        OpSpec("Exp", _unary_sampler(_normal), lambda x: x.exp(), np.exp),
        OpSpec("Log", _unary_sampler(_pos), lambda x: x.log(), np.log),
        OpSpec("Sqrt", _unary_sampler(_pos), lambda x: x.sqrt(), np.sqrt),
        OpSpec("Abs", _unary_sampler(_nonzero), lambda x: abs(x), np.abs),
        OpSpec("Tanh", _unary_sampler(_normal), lambda x: x.tanh(), np.tanh),
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
        OpSpec("Cat", _sample_cat, _call_cat, _ref_cat, doc="cat and stack"),
        OpSpec("Pad", _sample_pad, _call_pad, _ref_pad, doc="negative widths crop"),
        OpSpec("ToDevice", _unary_sampler(_normal), lambda x: movement.ToDevice.apply(x, device=x.device), lambda x: x,
               doc="a copy to the tensor's own device (cross-device copies need a GPU)"),
        # ---------------------------------------------------------------- index
        OpSpec("Slice", _sample_slice, lambda x, index: x[index], lambda x, index: x[index],
               doc="ints, slices with any step (negative too), None, Ellipsis"),
        OpSpec("Index", _sample_index, _call_index, _ref_index,
               doc="integer arrays and lists (repeats accumulate), boolean masks, index_select"),
        OpSpec("Gather", _sample_gather, _call_gather, _ref_gather, doc="gather and take_along_dim"),
        OpSpec("EmbeddingLookup", _sample_embedding, lambda w, idx: embedding(w, idx), lambda w, idx: w[idx],
               doc="repeated indices accumulate"),
        # ---------------------------------------------------------------- matmul
        OpSpec("Matmul", _sample_matmul, lambda a, b, form: a @ b, lambda a, b, form: a @ b, fwd_rtol=1e-9,
               doc="1-D, 2-D, batched with broadcast batch dims"),
    ]


for _spec in _engine_specs():
    register_spec(_spec)
