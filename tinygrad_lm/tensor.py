"""Tensor: an array, its gradient, and the node that made it; the constructors beside it.

A `Tensor` holds `data` (a numpy or cupy array), `requires_grad`, `grad` and `_ctx`, the
graph node (`engine.Function`) that made it. Its operators and methods are thin calls
into `ops/` (`x * y` is `elementwise.Mul.apply(x, y)`), after checking their arguments
(dims, shapes, dtypes) so that a bad call fails with the op's name and the shapes at
fault. `backward()` hands over to `engine.backward`. The module-level constructors
(`tensor`, `zeros`, `randn`, `arange`, ...) and functions over several tensors (`cat`,
`stack`, `where`, `pad`, `embedding`, ...) follow the class, as in `torch`.

Why this file is long: it is the whole public Tensor API, one class whose
methods are mostly one-liners grouped by op family (conversion, operators, elementwise,
reductions, movement), and the constructors that go with it; splitting the class would
scatter one API over several files. The engine that does the differentiating is the
short `engine.py`.

Imports: `backend`, `engine` and `ops/` only (which never import this module); nothing
above (`softmax`/`log_softmax` call the fused ops of `ops/` themselves).
"""
from __future__ import annotations

import functools
import math
import operator
from collections import namedtuple

import numpy as np

from . import backend, engine
from .ops import elementwise, fused, indexing, matmul, movement, reduce

float16, float32, float64 = np.float16, np.float32, np.float64
int32, int64, bool_ = np.int32, np.int64, np.bool_
DEFAULT_DTYPE = np.dtype(np.float32)


# ================================================================ Tensor
def _to_array(data, dtype, device):
    xp = backend.xp_for(device)
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        dtype = np.dtype(dtype)
    if isinstance(data, np.ndarray) or hasattr(data, "__cuda_array_interface__"):
        arr = data if dtype is None else data.astype(dtype, copy=False)
        if device != backend.device_of(arr):
            arr = backend.to_device(arr, device)
        return arr
    arr = np.asarray(data)
    if dtype is None:
        if arr.dtype.kind == "f":
            dtype = DEFAULT_DTYPE
        elif arr.dtype.kind in "iu":
            dtype = np.dtype(np.int64)
        elif arr.dtype.kind == "b":
            dtype = np.dtype(np.bool_)
        else:
            raise TypeError(f"tensor: cannot make a tensor from {type(data).__name__} (numpy dtype {arr.dtype})")
    arr = arr.astype(dtype, copy=False)
    return arr if xp is np else backend.to_device(arr, device)


class Tensor:
    """An n-dimensional array with reverse-mode autodiff.

    `Tensor(data, dtype=None, device=None, requires_grad=False)`: `data` is a Python
    scalar, a nested list, a numpy (or cupy) array or a Tensor. Python floats become
    float32 (the default dtype), ints int64, bools bool; arrays keep their dtype, as
    `torch.tensor` does.
    """

    # _span: (the data array, min, max) of an integer tensor whose values' range is known without
    # reading them (made from host values, or by arange): see _index_span. Unset on most tensors.
    __slots__ = ("data", "grad", "requires_grad", "_ctx", "_hooks", "_retains_grad", "name", "_span", "__weakref__")
    __array_priority__ = 1000  # numpy scalars on the left defer to our operators

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.__hash__ is None:  # a subclass defining __eq__ loses __hash__; backward keys dicts by tensor
            cls.__hash__ = object.__hash__

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        device = backend.canonical_device(device) if device is not None else (
            backend.device_of(data.data if isinstance(data, Tensor) else data)
            if isinstance(data, Tensor) or hasattr(data, "__cuda_array_interface__") else "cpu")
        self.data = _to_array(data, dtype, device)
        if device != "cpu" and self.data.dtype.kind in "iu":
            _note_span(self, data)
        self.grad = None
        self._ctx = None
        self._hooks = None
        self._retains_grad = False
        self.name = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @staticmethod
    def _wrap(data, requires_grad=False) -> "Tensor":
        t = Tensor.__new__(Tensor)
        t.data = data
        t.grad = None
        t.requires_grad = requires_grad
        t._ctx = None
        t._hooks = None
        t._retains_grad = False
        t.name = None
        return t

    # ------------------------------------------------------------ properties
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    device = property(lambda self: backend.device_of(self.data))
    is_leaf = property(lambda self: self._ctx is None)
    T = property(lambda self: movement.Permute.apply(self, dims=tuple(range(self.ndim - 1, -1, -1))))
    mT = property(lambda self: self.transpose(-2, -1))

    @property
    def xp(self):
        return backend.array_module(self.data)

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        return self.data.ndim

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def is_floating_point(self) -> bool:
        return self.data.dtype.kind == "f"

    # ------------------------------------------------------------ conversion
    def numpy(self) -> np.ndarray:
        if self.requires_grad:
            raise RuntimeError("numpy(): can't call numpy() on a tensor that requires grad; use tensor.detach().numpy()")
        return backend.to_numpy(self.data)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item(): only one-element tensors can be converted to Python scalars, got shape {self.shape}")
        return self.data.item()

    def tolist(self):
        return backend.to_numpy(self.data).tolist()

    def detach(self) -> "Tensor":
        """A new leaf sharing this tensor's data, cut from the graph."""
        return Tensor._wrap(self.data)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if requires_grad and self.data.dtype.kind not in "fc":
            raise TypeError(f"requires_grad_: only floating point tensors can require gradients, got dtype {self.dtype}")
        if not requires_grad and self._ctx is not None:
            raise RuntimeError("requires_grad_: can't turn off requires_grad of a non-leaf tensor; use detach()")
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> None:
        """Keep `.grad` on this non-leaf tensor after backward (leaves always keep theirs)."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad: can't retain the gradient of a tensor that does not require grad")
        self._retains_grad = True

    def register_hook(self, fn):
        """`fn(grad) -> Tensor or None` runs when this tensor's gradient has been summed,
        before it flows further back (or into `.grad` for a leaf). A returned tensor
        replaces the gradient. Returns a handle with `.remove()`."""
        if not self.requires_grad:
            raise RuntimeError("register_hook: can't register a hook on a tensor that does not require grad")
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(fn)
        hooks = self._hooks
        return _Handle(lambda: fn in hooks and hooks.remove(fn))

    def to(self, *args, dtype=None, device=None) -> "Tensor":
        """`to(device)`, `to(dtype)` or both; differentiable (gradients flow back)."""
        for a in args:
            if isinstance(a, str):
                device = a
            else:
                dtype = a
        out = self
        if dtype is not None and np.dtype(dtype) != out.dtype:
            dtype = np.dtype(dtype)
            # only floating tensors carry gradients: an integer or bool copy is a new leaf
            out = elementwise.Cast.apply(out if dtype.kind in "fc" else out.detach(), dtype=dtype)
        if device is not None:
            device = backend.canonical_device(device)
            if device != out.device:
                src = out
                out = movement.ToDevice.apply(out, device=device)
                if device != "cpu" and out.dtype.kind in "iu":
                    _note_span(out, src.data)
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self, index: int = 0):
        return self.to(f"cuda:{index}")

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def half(self):
        return self.to(np.float16)

    def long(self):
        return self.to(np.int64)

    def int(self):
        return self.to(np.int32)

    def bool(self):
        return self.to(np.bool_)

    def type_as(self, other):
        return self.to(other.dtype)

    def contiguous(self):
        return self

    def clone(self):
        return elementwise.Clone.apply(self)

    def __repr__(self):
        arr = backend.to_numpy(self.data)
        body = np.array2string(arr, separator=", ", precision=4, prefix="tensor(", threshold=200, edgeitems=3)
        extras = []
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if arr.dtype != DEFAULT_DTYPE and arr.dtype != np.int64 and arr.dtype != np.bool_ or arr.size == 0:
            extras.append(f"dtype={arr.dtype}")
        if self._ctx is not None:
            extras.append(f"grad_fn=<{type(self._ctx).__name__}Backward>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body] + extras) + ")"

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(f"bool value of a tensor with {self.data.size} elements is ambiguous")
        return bool(self.data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.data.dtype.kind not in "iu" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    __hash__ = object.__hash__

    def __array__(self, dtype=None, copy=None):
        a = backend.to_numpy(self.data)
        return a if dtype is None else a.astype(dtype)

    # ------------------------------------------------------------ autograd
    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's `.grad` (the sweep is `engine.backward`).

        For a one-element tensor the seed gradient is 1; otherwise pass `gradient`, the
        vector in the vector-Jacobian product, of this tensor's shape.
        """
        engine.backward(self, gradient.data if isinstance(gradient, Tensor) else gradient, retain_graph)

    # ------------------------------------------------------------ constants
    def _const(self, x) -> "Tensor":
        """A Python scalar (or array-like) as a tensor of this tensor's dtype and device."""
        if isinstance(x, Tensor):
            return x
        dtype = self.data.dtype
        if isinstance(x, float) and dtype.kind not in "fc":
            dtype = DEFAULT_DTYPE
        elif isinstance(x, int) and not isinstance(x, bool) and dtype.kind == "b":
            dtype = np.dtype(np.int64)
        xp = self.xp
        return Tensor._wrap(xp.asarray(x, dtype=dtype) if not isinstance(x, (np.ndarray,)) or xp is np else xp.asarray(x))

    # ------------------------------------------------------------ operators
    def __add__(self, o): return elementwise.Add.apply(self, self._const(o))
    def __radd__(self, o): return elementwise.Add.apply(self._const(o), self)
    def __sub__(self, o): return elementwise.Sub.apply(self, self._const(o))
    def __rsub__(self, o): return elementwise.Sub.apply(self._const(o), self)
    def __mul__(self, o): return elementwise.Mul.apply(self, self._const(o))
    def __rmul__(self, o): return elementwise.Mul.apply(self._const(o), self)
    def __truediv__(self, o): return elementwise.Div.apply(self, self._const(o))
    def __rtruediv__(self, o): return elementwise.Div.apply(self._const(o), self)
    def __neg__(self): return elementwise.Neg.apply(self)
    def __matmul__(self, o): return matmul.Matmul.apply(self, self._const(o))
    def __rmatmul__(self, o): return matmul.Matmul.apply(self._const(o), self)
    def __abs__(self): return elementwise.Abs.apply(self)
    def __getitem__(self, idx):
        # index tensors go in as their arrays: ops/ never see (or import) the Tensor class
        if isinstance(idx, Tensor):
            idx = idx.data
        elif type(idx) is tuple:
            idx = tuple([i.data if isinstance(i, Tensor) else i for i in idx])
        return indexing.getitem(self, idx)

    def __pow__(self, o):
        if isinstance(o, Tensor):
            return elementwise.Pow.apply(self, o)
        return elementwise.PowScalar.apply(self, exponent=o)

    def __rpow__(self, o):
        return elementwise.Pow.apply(self._const(o), self)

    def __setitem__(self, idx, value):
        raise TypeError("tensors are immutable in tinygrad_lm: use masked_fill, where or cat to build a new one")

    # comparisons: bool tensors, no gradient
    def _cmp(self, o, fn, op):
        o = o.data if isinstance(o, Tensor) else o
        try:
            out = fn(self.data, o)
        except ValueError:
            engine.broadcast_shapes(op, self.shape, getattr(o, "shape", ()))
            raise
        return Tensor._wrap(backend.array_module(self.data).asarray(out))

    def __eq__(self, o): return self._cmp(o, operator.eq, "eq")
    def __ne__(self, o): return self._cmp(o, operator.ne, "ne")
    def __lt__(self, o): return self._cmp(o, operator.lt, "lt")
    def __le__(self, o): return self._cmp(o, operator.le, "le")
    def __gt__(self, o): return self._cmp(o, operator.gt, "gt")
    def __ge__(self, o): return self._cmp(o, operator.ge, "ge")
    eq, ne, lt, le, gt, ge = __eq__, __ne__, __lt__, __le__, __gt__, __ge__

    def __invert__(self):
        return Tensor._wrap(~self.data)

    def __and__(self, o): return self._cmp(o, operator.and_, "and")
    def __or__(self, o): return self._cmp(o, operator.or_, "or")
    def isnan(self): return Tensor._wrap(self.xp.isnan(self.data))
    def isinf(self): return Tensor._wrap(self.xp.isinf(self.data))
    def isfinite(self): return Tensor._wrap(self.xp.isfinite(self.data))
    def any(self): return Tensor._wrap(self.xp.asarray(self.data.any()))
    def all(self): return Tensor._wrap(self.xp.asarray(self.data.all()))

    def allclose(self, other, rtol=1e-5, atol=1e-8) -> bool:
        o = other.data if isinstance(other, Tensor) else other
        return bool(self.xp.allclose(self.data, o, rtol=rtol, atol=atol))

    # ------------------------------------------------------------ elementwise
    add = __add__
    sub = __sub__
    mul = __mul__
    div = __truediv__
    neg = __neg__
    matmul = __matmul__
    pow = __pow__
    def exp(self): return elementwise.Exp.apply(self)
    def log(self): return elementwise.Log.apply(self)
    def sqrt(self): return elementwise.Sqrt.apply(self)
    def rsqrt(self): return elementwise.PowScalar.apply(self, exponent=-0.5)
    def abs(self): return elementwise.Abs.apply(self)
    def tanh(self): return elementwise.Tanh.apply(self)
    def sigmoid(self): return elementwise.Sigmoid.apply(self)
    def relu(self): return elementwise.Relu.apply(self)
    def square(self): return elementwise.PowScalar.apply(self, exponent=2)
    def reciprocal(self): return elementwise.PowScalar.apply(self, exponent=-1)
    def gelu(self, approximate: str = "none"): return elementwise.Gelu.apply(self, approximate=approximate)
    def maximum(self, o): return elementwise.Maximum.apply(self, self._const(o))
    def minimum(self, o): return elementwise.Minimum.apply(self, self._const(o))

    def clamp(self, min=None, max=None):
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        return elementwise.Clamp.apply(self, min=min, max=max)

    clip = clamp

    def where(self, condition, other):
        """`condition ? self : other` (PyTorch's `Tensor.where`)."""
        return where(condition, self, other)

    def masked_fill(self, mask, value):
        """Positions where `mask` is True take `value`; the gradient there is zero."""
        mask = mask if isinstance(mask, Tensor) else Tensor(mask, device=self.device)
        if mask.dtype != np.bool_:
            raise TypeError(f"masked_fill: mask must be a bool tensor, got dtype {mask.dtype}")
        engine.broadcast_shapes("masked_fill", self.shape, mask.shape)
        return elementwise.MaskedFill.apply(self, mask, value=value)

    def tril(self, diagonal: int = 0): return elementwise.Tril.apply(self, diagonal=diagonal, upper=False)
    def triu(self, diagonal: int = 0): return elementwise.Tril.apply(self, diagonal=diagonal, upper=True)

    # ------------------------------------------------------------ reductions
    def sum(self, dim=None, keepdim=False): return reduce.Sum.apply(self, dim=_dims(dim, self.ndim, "sum"), keepdim=keepdim)
    def mean(self, dim=None, keepdim=False): return reduce.Mean.apply(self, dim=_dims(dim, self.ndim, "mean"), keepdim=keepdim)
    def amax(self, dim=None, keepdim=False): return reduce.Max.apply(self, dim=_dims(dim, self.ndim, "amax"), keepdim=keepdim)
    def amin(self, dim=None, keepdim=False): return reduce.Min.apply(self, dim=_dims(dim, self.ndim, "amin"), keepdim=keepdim)
    def logsumexp(self, dim=None, keepdim=False): return reduce.LogSumExp.apply(self, dim=_dims(dim, self.ndim, "logsumexp"), keepdim=keepdim)
    def prod(self, dim=None, keepdim=False): return reduce.Prod.apply(self, dim=_dims(dim, self.ndim, "prod"), keepdim=keepdim)

    def max(self, dim=None, keepdim=False):
        """Without `dim`: the largest element. With an int `dim`: `(values, indices)` as
        PyTorch returns. Deviation: tied maxima share the gradient evenly (PyTorch's
        `max(dim)` gives it all to one index; its `amax` shares it, as we do)."""
        if dim is None or isinstance(dim, (tuple, list)):
            return self.amax(dim, keepdim)
        return MinMax(self.amax(dim, keepdim), self.argmax(dim, keepdim))

    def min(self, dim=None, keepdim=False):
        """See `max`: ties share the gradient evenly."""
        if dim is None or isinstance(dim, (tuple, list)):
            return self.amin(dim, keepdim)
        return MinMax(self.amin(dim, keepdim), self.argmin(dim, keepdim))

    def var(self, dim=None, correction=1, keepdim=False):
        """Variance with Bessel's `correction` (1 = unbiased, PyTorch's default; 0 = population)."""
        return reduce.Var.apply(self, dim=_dims(dim, self.ndim, "var"), correction=correction, keepdim=keepdim)

    def std(self, dim=None, correction=1, keepdim=False):
        return self.var(dim, correction, keepdim).sqrt()

    def argmax(self, dim=None, keepdim=False): return self._arg(self.xp.argmax, dim, keepdim, "argmax")
    def argmin(self, dim=None, keepdim=False): return self._arg(self.xp.argmin, dim, keepdim, "argmin")

    def _arg(self, fn, dim, keepdim, op):
        if self.data.size == 0:
            raise ValueError(f"{op}: the tensor of shape {self.shape} is empty")
        if dim is None or self.ndim == 0:
            if dim is not None:
                _dims(dim, 0, op)
            out = fn(self.data.reshape(-1))
            return Tensor._wrap(self.xp.asarray(out, dtype=np.int64).reshape((1,) * self.ndim if keepdim else ()))
        d = _dim(dim, self.ndim, op)
        out = fn(self.data, axis=d)
        if keepdim:
            out = self.xp.expand_dims(out, d)
        return Tensor._wrap(self.xp.asarray(out).astype(np.int64, copy=False))

    # ------------------------------------------------------------ movement
    def reshape(self, *shape):
        shape = _shape_arg(shape)
        return movement.Reshape.apply(self, shape=_resolve_shape("reshape", self.shape, shape))

    view = reshape

    def view_as(self, other): return self.reshape(other.shape)
    def reshape_as(self, other): return self.reshape(other.shape)

    def permute(self, *dims):
        dims = _shape_arg(dims)
        n = self.ndim
        norm = tuple([d + n if d < 0 else d for d in dims])
        if sorted(norm) != list(range(n)):  # also catches a wrong count and dims out of range
            raise ValueError(f"permute: dims {tuple(dims)} are not a permutation of the {n} dims of shape {self.shape}")
        return movement.Permute.apply(self, dims=norm)

    def transpose(self, dim0, dim1):
        dims = list(range(self.ndim))
        d0, d1 = _dim(dim0, self.ndim, "transpose"), _dim(dim1, self.ndim, "transpose")
        dims[d0], dims[d1] = dims[d1], dims[d0]
        return movement.Permute.apply(self, dims=tuple(dims))

    swapaxes = transpose

    def squeeze(self, dim=None):
        if dim is None:
            shape = tuple(s for s in self.shape if s != 1)
        else:
            ds = _dims(dim, self.ndim, "squeeze")
            shape = tuple(s for i, s in enumerate(self.shape) if not (i in ds and s == 1))
        return movement.Reshape.apply(self, shape=shape)

    def unsqueeze(self, dim):
        d = _dim(dim, self.ndim + 1, "unsqueeze")
        return movement.Reshape.apply(self, shape=self.shape[:d] + (1,) + self.shape[d:])

    def flatten(self, start_dim=0, end_dim=-1):
        if self.ndim == 0:
            return self.reshape(1)
        s, e = _dim(start_dim, self.ndim, "flatten"), _dim(end_dim, self.ndim, "flatten")
        if s > e:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {self.shape}")
        return movement.Reshape.apply(self, shape=self.shape[:s] + (math.prod(self.shape[s:e + 1]),) + self.shape[e + 1:])

    def unflatten(self, dim, sizes):
        d = _dim(dim, self.ndim, "unflatten")
        return self.reshape(self.shape[:d] + tuple(sizes) + self.shape[d + 1:])

    def expand(self, *sizes):
        sizes = _shape_arg(sizes)
        lead = len(sizes) - self.ndim
        if lead < 0:
            raise ValueError(f"expand: the number of sizes {tuple(sizes)} is less than the tensor's dims {self.shape}")
        shape = tuple(self.shape[i - lead] if (s == -1 and i >= lead) else s for i, s in enumerate(sizes))
        return self.broadcast_to(shape)

    def broadcast_to(self, shape):
        shape = tuple(shape)
        if engine.broadcast_shapes("expand", self.shape, shape) != shape:
            raise ValueError(f"expand: shape {self.shape} cannot be expanded to {shape}")
        return movement.Expand.apply(self, shape=shape)

    def expand_as(self, other): return self.broadcast_to(other.shape)

    def split(self, split_size_or_sections, dim=0):
        """Pieces of `split_size` along `dim` (the last may be smaller), or of the given sizes."""
        d = _dim(dim, self.ndim, "split")
        n = self.shape[d]
        if isinstance(split_size_or_sections, int):
            if split_size_or_sections <= 0:
                raise ValueError(f"split: split_size must be positive, got {split_size_or_sections}")
            sizes = [min(split_size_or_sections, n - i) for i in range(0, n, split_size_or_sections)] or [0]
        else:
            sizes = [int(s) for s in split_size_or_sections]
            if sum(sizes) != n or any(s < 0 for s in sizes):
                raise ValueError(f"split: sections {sizes} sum to {sum(sizes)} but dim {d} of shape {self.shape} has size {n}")
        out, start = [], 0
        for s in sizes:
            idx = (slice(None),) * d + (slice(start, start + s),)
            out.append(indexing.Slice.apply(self, index=idx))
            start += s
        return tuple(out)

    def chunk(self, chunks: int, dim=0):
        if chunks <= 0:
            raise ValueError(f"chunk: chunks must be positive, got {chunks}")
        n = self.shape[_dim(dim, self.ndim, "chunk")]
        return self.split(max(1, -(-n // chunks)), dim)

    def unbind(self, dim=0):
        d = _dim(dim, self.ndim, "unbind")
        return tuple(t.squeeze(d) for t in self.split(1, d))

    def gather(self, dim, index):
        """out[i][j][k] = self[index[i][j][k]][j][k] for dim=0 (and so on), like torch.gather:
        index has self's number of dims, and may be smaller than self (not larger) in the
        other dims, which then only read their first index.size(d) entries. No broadcasting
        (that is `take_along_dim`)."""
        index = index if isinstance(index, Tensor) else Tensor(index, device=self.device)
        d = _dim(dim, self.ndim, "gather")
        if index.ndim != self.ndim:
            raise ValueError(f"gather: index has {index.ndim} dims but input has {self.ndim} (shapes {index.shape} and {self.shape})")
        if any(i != d and si > s for i, (si, s) in enumerate(zip(index.shape, self.shape))):
            raise ValueError(f"gather: index shape {index.shape} is larger than input shape {self.shape} outside dim {d}")
        src = self
        if any(i != d and si != s for i, (si, s) in enumerate(zip(index.shape, self.shape))):
            src = self[tuple(slice(None) if i == d else slice(0, si) for i, si in enumerate(index.shape))]
        return _take_along(src, index, d, "gather")

    def take_along_dim(self, indices, dim=None):
        return take_along_dim(self, indices, dim)

    def index_select(self, dim, index):
        index = index if isinstance(index, Tensor) else Tensor(index, device=self.device)
        if index.ndim != 1 or index.dtype.kind not in "iu":
            raise TypeError(f"index_select: index must be a 1-D integer tensor, got shape {index.shape} dtype {index.dtype}")
        d = _dim(dim, self.ndim, "index_select")
        n = self.shape[d]
        lo, hi = _index_span(index)  # at most one read from a GPU
        if lo < -n or hi >= n:
            raise IndexError(f"index_select: index out of range for dim {d} of size {n}: indices span "
                             f"[{lo}, {hi}] (input shape {self.shape})")
        return indexing.Index.apply(self, index=(slice(None),) * d + (index.data,))

    def repeat(self, *sizes):
        sizes = _shape_arg(sizes)
        if len(sizes) < self.ndim:
            raise ValueError(f"repeat: {len(sizes)} repeats for a tensor of {self.ndim} dims")
        x = self.reshape((1,) * (len(sizes) - self.ndim) + self.shape)
        shape = x.shape
        inter = tuple(v for s, r in zip(shape, sizes) for v in (r, s))
        x = x.reshape(tuple(v for s in shape for v in (1, s))).broadcast_to(inter)
        return x.reshape(tuple(s * r for s, r in zip(shape, sizes)))

    # ------------------------------------------------------------ softmax family
    def softmax(self, dim=-1):
        """The softmax op along `dim` (ops.fused.FusedSoftmax, whose docstring has the math):
        the same op as `F.softmax(x, dim)` with the default impl. `F.use_fused(False)` switches
        nn.functional's functions to their composed twins, not this method."""
        return fused.FusedSoftmax.apply(self, dim=_dim(dim, self.ndim, "softmax"))

    def log_softmax(self, dim=-1):
        """The log-softmax op along `dim` (ops.fused.FusedLogSoftmax), as `F.log_softmax(x, dim)`
        with the default impl."""
        return fused.FusedLogSoftmax.apply(self, dim=_dim(dim, self.ndim, "log_softmax"))


MinMax = namedtuple("MinMax", ["values", "indices"])


class _Handle:
    def __init__(self, remove):
        self.remove = remove


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple([int(s) for s in shape])


def _resolve_shape(op, old, shape):
    size = math.prod(old)
    if shape.count(-1) > 1:
        raise ValueError(f"{op}: only one dimension can be -1, got {shape}")
    if -1 in shape:
        rest = math.prod(s for s in shape if s != -1)
        if rest == 0 or size % rest:
            raise ValueError(f"{op}: shape {shape} is invalid for a tensor of shape {old} ({size} elements)")
        shape = tuple(size // rest if s == -1 else s for s in shape)
    if math.prod(shape) != size:
        raise ValueError(f"{op}: shape {shape} is invalid for a tensor of shape {old} ({size} elements)")
    return shape


def _dims(dim, ndim, op):
    """Normalise `dim` (None, int or tuple) to a sorted tuple of non-negative axes.

    A 0-d tensor accepts dim 0 or -1 (as in PyTorch), which reduces over nothing: ()."""
    if dim is None:
        return None
    ds = dim if isinstance(dim, (tuple, list)) else (dim,)
    n = max(ndim, 1)
    out = []
    for d in ds:
        if not isinstance(d, (int, np.integer)):
            raise TypeError(f"{op}: dim must be None, an int or a tuple of ints, got {dim!r}")
        if not -n <= d < n:
            raise IndexError(f"{op}: dim {d} is out of range for a tensor of {ndim} dims")
        out.append(d % n)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: dim {dim} repeats a dimension")
    return tuple(sorted(out)) if ndim else ()


def _dim(dim, ndim, op) -> int:
    """Normalise one axis index; ops that need a real axis reject 0-d tensors."""
    if not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int, got {type(dim).__name__}")
    if not -ndim <= dim < ndim:
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor of {ndim} dims" +
                         (" (a 0-d tensor has no dims to index)" if ndim == 0 else ""))
    return int(dim) % ndim


# ================================================================ constructors
def tensor(data, dtype=None, device=None, requires_grad=False) -> Tensor:
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def _note_span(t, src) -> None:
    """Record the range of an integer tensor's values when they came from the host: `src`, the
    host data it was made from (a numpy array, list or scalar; anything on a GPU is skipped),
    is still at hand, so its min and max cost one pass on the CPU where a bounds check would
    otherwise read the GPU (cupy wraps out-of-range indices silently, so every op that indexes
    checks first). The range is trusted while `t.data` is the array it was recorded for
    (tensors are immutable; writing into `.data` behind the API's back voids it)."""
    src = src.data if isinstance(src, Tensor) else src
    if hasattr(src, "__cuda_array_interface__"):
        return
    host = src if type(src) is np.ndarray else np.asarray(src)
    if host.dtype == t.data.dtype and host.size:   # no cast in between: the values are the host's
        t._span = (t.data, int(host.min()), int(host.max()))


def _index_span(t) -> tuple:
    """(min, max) of integer tensor t's values as Python ints ((0, -1) when empty): the recorded
    range when there is one (see _note_span, arange), else one reduction pair and, on a GPU,
    one read (backend.index_span)."""
    span = getattr(t, "_span", None)   # an unset slot: None
    if span is not None and span[0] is t.data:
        return span[1], span[2]
    return backend.index_span(t.data) if t.data.size else (0, -1)


def _make(fn, shape, dtype, device, requires_grad):
    device = backend.canonical_device(device)
    dtype = np.dtype(dtype) if dtype is not None else DEFAULT_DTYPE
    arr = fn(backend.xp_for(device), _shape_arg(shape), dtype)
    return Tensor._wrap(arr).requires_grad_(requires_grad) if requires_grad else Tensor._wrap(arr)


def _random(fn, shape, dtype, device, requires_grad):
    # drawn on the CPU from the one seeded generator, then moved: same numbers on every device
    device = backend.canonical_device(device)  # "cuda" -> "cuda:0": to_device takes canonical names only

    def make(xp, shp, dt):
        arr = fn(shp).astype(dt, copy=False)
        return arr if xp is np else backend.to_device(arr, device)
    return _make(make, shape, dtype, device, requires_grad)


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    return _make(lambda xp, s, d: xp.zeros(s, d), shape, dtype, device, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False):
    return _make(lambda xp, s, d: xp.ones(s, d), shape, dtype, device, requires_grad)


def empty(*shape, dtype=None, device=None, requires_grad=False):
    return _make(lambda xp, s, d: xp.empty(s, d), shape, dtype, device, requires_grad)


def full(shape, fill_value, dtype=None, device=None, requires_grad=False):
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if dtype is None and isinstance(fill_value, bool):
        dtype = np.bool_
    elif dtype is None and isinstance(fill_value, int):
        dtype = np.int64
    return _make(lambda xp, s, d: xp.full(s, fill_value, d), shape, dtype, device, requires_grad)


def rand(*shape, dtype=None, device=None, requires_grad=False):
    """Uniform on [0, 1)."""
    return _random(lambda s: engine.get_rng().random(s), shape, dtype, device, requires_grad)


def randn(*shape, dtype=None, device=None, requires_grad=False):
    """Standard normal."""
    return _random(lambda s: engine.get_rng().standard_normal(s), shape, dtype, device, requires_grad)


def randint(low, high, size, dtype=np.int64, device=None):
    return _random(lambda s: engine.get_rng().integers(low, high, s), size, dtype, device, False)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    ints = all(isinstance(v, int) for v in (start, end, step))
    if dtype is None:
        dtype = np.int64 if ints else DEFAULT_DTYPE
    t = _make(lambda xp, s, d: xp.arange(start, end, step, dtype=d), (), dtype, device, requires_grad)
    if ints and t.dtype.kind in "iu" and t.data.size:   # the range is known: bounds checks need not read it
        last = start + (t.data.size - 1) * step
        t._span = (t.data, min(start, last), max(start, last))
    return t


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    return _make(lambda xp, s, d: xp.eye(n, m, dtype=d), (), dtype, device, requires_grad)


def _like(fn):
    @functools.wraps(fn)
    def like(t, dtype=None, device=None, requires_grad=False, **kw):
        return fn(t.shape, dtype=t.dtype if dtype is None else dtype, device=device or t.device,
                  requires_grad=requires_grad, **kw)
    return like


zeros_like, ones_like, empty_like, rand_like, randn_like = map(_like, (zeros, ones, empty, rand, randn))


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False):
    return full(t.shape, fill_value, dtype=t.dtype if dtype is None else dtype, device=device or t.device,
                requires_grad=requires_grad)


# ================================================================ functions over several tensors
def _as_tensors(op, tensors):
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{op}: expected a non-empty list of tensors")
    return [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]


def cat(tensors, dim=0) -> Tensor:
    ts = _as_tensors("cat", tensors)
    if ts[0].ndim == 0:
        raise ValueError("cat: zero-dimensional tensors cannot be concatenated (use stack)")
    d = _dim(dim, ts[0].ndim, "cat")
    ref = ts[0].shape
    for t in ts[1:]:
        if t.ndim != len(ref) or any(a != b for i, (a, b) in enumerate(zip(t.shape, ref)) if i != d):
            raise ValueError(f"cat: shapes {ref} and {t.shape} differ outside dim {d}")
    return movement.Cat.apply(*ts, dim=d)


concatenate = cat


def stack(tensors, dim=0) -> Tensor:
    ts = _as_tensors("stack", tensors)
    for t in ts[1:]:
        if t.shape != ts[0].shape:
            raise ValueError(f"stack: expects tensors of one shape, got {ts[0].shape} and {t.shape}")
    d = _dim(dim, ts[0].ndim + 1, "stack")
    return cat([t.unsqueeze(d) for t in ts], dim=d)


def where(condition, input, other) -> Tensor:
    """Elementwise `condition ? input : other`; the gradient flows to the chosen side."""
    ref = input if isinstance(input, Tensor) else other if isinstance(other, Tensor) else None
    if ref is None:
        raise TypeError("where: at least one of input and other must be a tensor")
    cond = condition if isinstance(condition, Tensor) else Tensor(condition, device=ref.device)
    if cond.dtype != np.bool_:
        raise TypeError(f"where: condition must be a bool tensor, got dtype {cond.dtype}")
    a, b = ref._const(input), ref._const(other)
    engine.broadcast_shapes("where", cond.shape, a.shape, b.shape)
    return elementwise.Where.apply(cond, a, b)


def maximum(a, b): return a.maximum(b) if isinstance(a, Tensor) else b._const(a).maximum(b)
def minimum(a, b): return a.minimum(b) if isinstance(a, Tensor) else b._const(a).minimum(b)


def take_along_dim(input: Tensor, indices, dim=None) -> Tensor:
    """out[..., i, ...] = input[..., indices[..., i, ...], ...] along `dim`; the other dims of
    input and indices broadcast against each other (torch.take_along_dim). dim=None
    reads the flattened input with flattened indices."""
    return _take_along(input, indices, dim, "take_along_dim")


def _take_along(input, indices, dim, op):
    indices = indices if isinstance(indices, Tensor) else Tensor(indices, device=input.device)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must be an integer tensor, got dtype {indices.dtype}")
    if dim is None:
        input, indices, dim = input.reshape(-1), indices.reshape(-1), 0
    d = _dim(dim, input.ndim, op)
    if indices.ndim != input.ndim:
        raise ValueError(f"{op}: indices have {indices.ndim} dims but input has {input.ndim} "
                         f"(shapes {indices.shape} and {input.shape})")
    rest = lambda s: s[:d] + s[d + 1:]  # noqa: E731
    engine.broadcast_shapes(op, rest(input.shape), rest(indices.shape))
    n = input.shape[d]
    lo, hi = _index_span(indices)  # at most one read from a GPU
    if lo < -n or hi >= n:
        raise IndexError(f"{op}: index out of range for dim {d} of size {n}: indices span "
                         f"[{lo}, {hi}] (input shape {input.shape})")
    return indexing.Gather.apply(input, indices, dim=d)


def one_hot(indices, num_classes: int = -1) -> Tensor:
    """int64 one-hot encoding along a new last dim (no gradient), like F.one_hot."""
    idx = indices.data if isinstance(indices, Tensor) else np.asarray(indices)
    xp = backend.array_module(idx)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expected an integer tensor, got dtype {idx.dtype}")
    lo, hi = _index_span(indices if isinstance(indices, Tensor) else Tensor._wrap(idx))  # at most one read from a GPU
    if num_classes < 0:
        num_classes = hi + 1
    if lo < 0 or hi >= num_classes:
        raise IndexError(f"one_hot: class values must be in [0, {num_classes}), got range [{lo}, {hi}]")
    return Tensor._wrap((idx[..., None] == xp.arange(num_classes)).astype(np.int64))


def pad(input: Tensor, pad, value=0.0) -> Tensor:
    """Constant padding; `pad` lists (before, after) pairs starting from the LAST dim, as
    torch.nn.functional.pad does. Negative padding crops."""
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: padding {pad} must have an even length of at most 2*{input.ndim} for shape {input.shape}")
    widths = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):
        widths[input.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    for (b, a), s in zip(widths, input.shape):
        if s + b + a < 0:
            raise ValueError(f"pad: padding {pad} makes a negative size for shape {input.shape}")
    return movement.Pad.apply(input, widths=tuple(widths), value=value)


def embedding(weight: Tensor, indices) -> Tensor:
    """Rows of `weight` picked by integer `indices`: out[..., :] = weight[indices[...], :]."""
    idx = indices if isinstance(indices, Tensor) else Tensor(indices, device=weight.device)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got dtype {idx.dtype}")
    n = weight.shape[0]
    lo, hi = _index_span(idx)  # at most one read from a GPU, which would wrap
    if lo < 0 or hi >= n:
        raise IndexError(f"embedding: index out of range: indices span [{lo}, {hi}] "
                         f"but the table has {n} rows (weight shape {weight.shape})")
    return indexing.EmbeddingLookup.apply(weight, idx)
