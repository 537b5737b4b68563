"""A numpy-backed stand-in for cupy 14.2, restricted to cupy's real API: a conformance check
for the GPU code paths on a machine without a GPU.

`install()` puts modules named `cupy`, `cupyx`, `cupyx.scipy.special`, `cupy.cuda` (with
`runtime`, `device`, `cublas`), `cupy.random`, `cupy.linalg` and `cupy._core` into
`sys.modules`; `uninstall()` takes them out again. They offer exactly the names that
`cupy_api.json` lists (recorded from the real cupy package by `record_cupy_api.py`), and
functions and methods accept only the parameter names cupy's accept. Behaviours copied
from cupy 14.2's source (cupy/_core/core.pyx, _kernel.pyx, _routines_indexing.pyx):

* its arrays are not numpy arrays: `numpy.asarray(a)` raises cupy's TypeError ("Implicit
  conversion to a NumPy array is not allowed"); `.get()`, `cupy.asnumpy` and `.item()` are
  the ways out;
* numpy functions called on them dispatch (`__array_function__`, `__array_ufunc__`) only
  where cupy has a function of that name, else numpy raises TypeError;
* ufuncs refuse numpy arrays ("Unsupported type <class 'numpy.ndarray'>"), accept Python
  and numpy scalars, and take only `out`, `dtype` and `casting`; `ufunc.at` exists only for
  the ufuncs with a scatter op (add, subtract, maximum, minimum, bitwise and/or/xor),
  `reduce`/`accumulate` only for add and multiply, `reduceat` only for add;
* reductions and scalar indexing return 0-d arrays, never numpy scalars;
* out-of-range integer array indices WRAP around (getitem, setitem, take, take_along_axis,
  `ufunc.at`, scatter_add), as cupy documents; a scalar index out of range raises;
* `cupyx.scatter_add` and `ndarray.scatter_add` warn DeprecationWarning, as in cupy 14;
* `cupy.cuda.cublas.setMathMode` with CUBLAS_TF32_TENSOR_OP_MATH (3) on a device's handle,
  or `cupy._core.set_compute_type(float32, COMPUTE_TYPE_TF32)`, makes float32 matmul round
  its inputs to TF32 (10-bit mantissa), so a TF32 switch can be tested.

It counts, in `counters`:
* host syncs (`.item()`, `float()`, `int()`, `bool()`, `.get()`, `.tolist()`, `asnumpy`,
  `repr`, and ops whose output size depends on the data: boolean-mask indexing, `nonzero`,
  `unique` ...; explicit `synchronize()` calls are counted apart);
* host-to-device and device-to-host copies and bytes;
* launches: one per cupy call that computes (a ufunc, a function, a method, an operator,
  a copy), none for views. A real cupy call may launch more kernels (cuBLAS, reductions,
  CUB), so read this as "device operations".

What it does NOT model (a pass here says the code uses cupy's API correctly, not that the
GPU gives the same numbers or speed):
* rounding: every result is numpy's on the CPU (GPU reductions, exp, erf, matmul sum in
  other orders and round differently);
* atomics: scatter-adds are exact and ordered here, nondeterministic in float on a GPU;
* TF32 beyond the input rounding of matmul (cuBLAS's accumulation and algorithm choice);
* asynchrony and streams: every call completes before it returns, so missing
  synchronisation and stream races are invisible; timings mean nothing;
* memory: no allocator, no out-of-memory, no pinned memory, one device (or
  CUPY_STANDIN_DEVICES) and no peer access;
* custom kernels: RawKernel / ElementwiseKernel / ReductionKernel source is not compiled;
  calling one raises NotImplementedError unless a numpy twin was registered with
  `register_kernel(name, fn)` (launches are counted either way). The exception is
  `RawModule` with tinygrad_lm's own kernel sources: those kernels run on the CPU emulation
  of the CUDA kernels (tests/cuda_emulation), which checks their arithmetic and indexing, not
  the GPU's behaviour;
* dtype edge cases where cupy differs from numpy (e.g. float16 math precision, integer
  division by zero);
* argument TYPES beyond "cupy array, scalar or numpy array": names and counts of parameters
  are checked, values are not.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import json
import math
import os
import sys
import threading
import time
import types
import warnings
from pathlib import Path

import numpy as np

MANIFEST = json.loads(Path(__file__).with_name("cupy_api.json").read_text())
CUPY_VERSION = MANIFEST["recorded_from"]["cupy"]
BANNER = ("cuda cases ran on a numpy-backed cupy API stand-in: this checks API use, not GPU numerics "
          f"(recorded from cupy {CUPY_VERSION})")
NOT_MODELLED = ("rounding (numpy's CPU results), atomics (scatter-adds exact and ordered), TF32 beyond "
                "matmul input rounding, asynchrony and streams, speed, memory limits, custom CUDA kernels (tinygrad_lm's "
                "own run on a CPU emulation: arithmetic, not GPU behaviour), "
                "multi-GPU peer access")

_MODS = MANIFEST["modules"]
_CLS = MANIFEST["classes"]
_ND_SPEC = _CLS["cupy.ndarray"]


# ================================================================ counters
class Counters:
    """What the code under test asked of the 'device' since the last reset()."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.syncs = 0
        self.sync_kinds = collections.Counter()
        self.explicit_syncs = 0
        self.h2d_copies = self.h2d_bytes = 0
        self.d2h_copies = self.d2h_bytes = 0
        self.launches = 0
        self.launch_kinds = collections.Counter()

    def snapshot(self) -> dict:
        return {"syncs": self.syncs, "sync_kinds": dict(self.sync_kinds), "explicit_syncs": self.explicit_syncs,
                "h2d_copies": self.h2d_copies, "h2d_bytes": self.h2d_bytes,
                "d2h_copies": self.d2h_copies, "d2h_bytes": self.d2h_bytes,
                "launches": self.launches, "launch_kinds": dict(self.launch_kinds)}


counters = Counters()


def _sync(kind):
    counters.syncs += 1
    counters.sync_kinds[kind] += 1


def _launch(kind):
    counters.launches += 1
    counters.launch_kinds[kind] += 1


def _h2d(nbytes):
    counters.h2d_copies += 1
    counters.h2d_bytes += int(nbytes)


def _d2h(nbytes):
    counters.d2h_copies += 1
    counters.d2h_bytes += int(nbytes)


# ================================================================ devices, handles, TF32
N_DEVICES = int(os.environ.get("CUPY_STANDIN_DEVICES", "1"))
_tls = threading.local()
_math_mode: dict = {}          # cuBLAS handle -> math mode
_compute_types = {"e": 0, "f": 0, "d": 0}   # COMPUTE_TYPE_TBD
COMPUTE = {"TBD": 0, "DEFAULT": 1, "PEDANTIC": 2, "FP16": 3, "FP32": 4, "FP64": 5, "BF16": 6, "TF32": 7}
CUBLAS_TF32_TENSOR_OP_MATH = 3


def _current():
    return getattr(_tls, "device", 0)


def _handle(dev):
    return 0x1000 + dev   # one cuBLAS handle per device (per thread on real cupy)


def _tf32_active(dtype) -> bool:
    if np.dtype(dtype) != np.float32:
        return False
    ct = _compute_types["f"]
    if ct == COMPUTE["TBD"]:
        ct = COMPUTE["TF32"] if int(os.environ.get("CUPY_TF32", "0")) > 0 else COMPUTE["DEFAULT"]
    return ct == COMPUTE["TF32"] or _math_mode.get(_handle(_current()), 0) == CUBLAS_TF32_TENSOR_OP_MATH


def _round_tf32(a):
    """Round float32 to TF32 (1 sign, 8 exponent, 10 mantissa bits), to nearest even."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    lsb = (bits >> np.uint32(13)) & np.uint32(1)
    out = (bits + np.uint32(0x0FFF) + lsb) & np.uint32(0xFFFFE000)
    return out.view(np.float32)


# ================================================================ the array
_SCALARS = (bool, int, float, complex, np.generic)


def _is_host_array(x):
    return isinstance(x, np.ndarray)


def _unsupported(x):
    return TypeError(f"Unsupported type {type(x)}")


class _Flags:
    def __init__(self, a):
        self.c_contiguous = a.flags.c_contiguous
        self.f_contiguous = a.flags.f_contiguous
        self.owndata = a.flags.owndata

    def __getitem__(self, k):
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous, "OWNDATA": self.owndata}[k]


class MemoryPointer:
    def __init__(self, arr, dev):
        self.ptr = arr.ctypes.data if arr.size else 0
        self.device_id = dev
        self.device = Device(dev)


def _wrap(x, dev=None):
    """numpy result -> stand-in array (numpy scalars become 0-d arrays, as cupy returns them)."""
    if isinstance(x, np.ndarray):
        return ndarray._from(x, dev)
    if isinstance(x, np.generic):
        return ndarray._from(np.asarray(x), dev)
    if isinstance(x, tuple):
        return tuple(_wrap(v, dev) for v in x)
    if isinstance(x, list):
        return [_wrap(v, dev) for v in x]
    return x


def _unwrap(x, host_ok=False, where="argument"):
    """stand-in array -> its numpy array; numpy arrays are refused (cupy does not move host
    data implicitly) unless `host_ok`."""
    if type(x) is ndarray:
        return x._a
    if isinstance(x, np.ndarray):
        if host_ok:
            return x
        raise _unsupported(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, host_ok, where) for v in x)
    return x


class ndarray:
    """cupy.ndarray stand-in: a numpy array that refuses to be one."""

    __slots__ = ("_a", "_dev", "__weakref__")
    __array_priority__ = 100   # cupy's value (core.pyx)

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        self._a = np.empty(shape, dtype=dtype, order=order)
        self._dev = _current()

    @classmethod
    def _from(cls, a, dev=None):
        obj = cls.__new__(cls)
        obj._a = a
        obj._dev = _current() if dev is None else dev
        return obj

    # ------------------------------------------------------------ attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: _Flags(self._a))
    device = property(lambda self: Device(self._dev))
    data = property(lambda self: MemoryPointer(self._a, self._dev))
    T = property(lambda self: ndarray._from(self._a.T, self._dev))
    mT = property(lambda self: ndarray._from(np.swapaxes(self._a, -1, -2), self._dev))
    real = property(lambda self: ndarray._from(self._a.real, self._dev))
    imag = property(lambda self: ndarray._from(self._a.imag, self._dev))

    @property
    def base(self):
        b = self._a.base
        return ndarray._from(b, self._dev) if isinstance(b, np.ndarray) else None

    @property
    def __cuda_array_interface__(self):
        return {"shape": self._a.shape, "typestr": self._a.dtype.str, "descr": [("", self._a.dtype.str)],
                "data": (self._a.ctypes.data if self._a.size else 0, False),
                "strides": None if self._a.flags.c_contiguous else self._a.strides,
                "stream": 1, "version": 3}

    # ------------------------------------------------------------ the ways out (host syncs)
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def get(self, stream=None, order="C", out=None, blocking=True):
        _sync("get")
        _d2h(self._a.nbytes)
        if out is not None:
            np.copyto(out, self._a)
            return out
        return np.array(self._a, order=order, copy=True)

    def set(self, arr, stream=None):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(arr)}")
        if arr.shape != self.shape or arr.dtype != self.dtype:
            raise ValueError("Shape or dtype mismatch")
        _h2d(arr.nbytes)
        np.copyto(self._a, arr)

    def item(self):
        if self._a.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        _sync("item")
        _d2h(self._a.itemsize)
        return self._a.item()

    def tolist(self):
        _sync("tolist")
        _d2h(self._a.nbytes)
        return self._a.tolist()

    def __float__(self):
        _sync("float")
        _d2h(self._a.nbytes)
        return float(self._a)

    def __int__(self):
        _sync("int")
        _d2h(self._a.nbytes)
        return int(self._a)

    def __complex__(self):
        _sync("complex")
        return complex(self._a)

    def __bool__(self):
        _sync("bool")
        _d2h(self._a.nbytes)
        return bool(self._a)

    def __repr__(self):
        _sync("repr")
        return repr(self._a)

    def __str__(self):
        _sync("str")
        return str(self._a)

    def __format__(self, spec):
        _sync("format")
        return format(self._a, spec)

    def __len__(self):
        if self._a.ndim == 0:
            raise TypeError("len() of unsized object")
        return self._a.shape[0]

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self._a.shape[0]))

    __hash__ = None

    def __reduce__(self):
        _sync("pickle")
        return (_array_from_host, (self._a.copy(),))

    # ------------------------------------------------------------ numpy interop (cupy's rules)
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        inout = inputs
        if "out" in kwargs:
            out = kwargs["out"]
            if len(out) != 1:
                raise ValueError("The 'out' parameter must have exactly one array value")
            inout += out
            kwargs["out"] = out[0]
        if method not in ("__call__", "outer", "at", "reduce", "accumulate", "reduceat"):
            return NotImplemented
        name = ufunc.__name__
        func = _lookup("cupy", name) or _lookup("cupyx.scipy.special", name)
        if func is None:
            return NotImplemented
        if method != "__call__":
            func = getattr(func, method)
        for x in inout:
            if not (type(x) in (bool, int, float, complex) or isinstance(x, (np.generic, ndarray, np.ndarray))
                    or hasattr(x, "__cuda_array_interface__")):
                return NotImplemented
        if name in ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal"):
            inputs = tuple(x.item() if isinstance(x, np.ndarray) and x.ndim == 0 else x for x in inputs)
        return func(*inputs, **kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        mod = "cupy" + func.__module__[len("numpy"):] if func.__module__.startswith("numpy") else None
        mod = {"cupy._core.multiarray": "cupy", "cupy._core.numeric": "cupy", "cupy._core.fromnumeric": "cupy",
               "cupy.lib._function_base_impl": "cupy", "cupy._core.shape_base": "cupy",
               "cupy.lib._shape_base_impl": "cupy"}.get(mod, mod)
        cupy_func = _lookup(mod, func.__name__) if mod else None
        if cupy_func is None or cupy_func is func:
            return NotImplemented
        for t in types_:
            if not issubclass(t, (ndarray, np.ndarray)):
                return NotImplemented
        return cupy_func(*args, **kwargs)

    # ------------------------------------------------------------ indexing
    def _index(self, key, setting=False):
        """cupy's index preparation: arrays and lists become device arrays (a host-to-device
        copy for host ones), integer arrays wrap around, boolean masks need the host."""
        items = list(key) if isinstance(key, tuple) else [key]
        conv, advanced = [], False
        for s in items:
            if s is None or s is Ellipsis or isinstance(s, slice):
                conv.append(s)
            elif type(s) is ndarray:
                conv.append(s._a)
                advanced = True
            elif isinstance(s, (list, tuple, np.ndarray)):
                arr = np.asarray(s)
                if isinstance(s, (list, tuple)) and arr.size == 0:
                    arr = arr.astype(np.int32)
                if arr.dtype.kind not in "biu":
                    raise IndexError("arrays used as indices must be of integer or boolean type "
                                     f"(actual: {arr.dtype.type})")
                _h2d(arr.nbytes)
                conv.append(arr)
                advanced = True
            elif isinstance(s, (bool, np.bool_)):
                conv.append(s)
                advanced = True
            elif isinstance(s, (int, np.integer)):
                conv.append(s)
            else:
                raise IndexError("only integers, slices (`:`), ellipsis (`...`), numpy.newaxis (`None`) and "
                                 "integer or boolean arrays are valid indices")
        if not advanced:
            return tuple(conv), False
        # which axis does each item index? (to wrap integer arrays by that axis' size)
        used = sum(c.ndim if isinstance(c, np.ndarray) and c.dtype == np.bool_ else
                   0 if (c is None or c is Ellipsis or isinstance(c, (bool, np.bool_))) else 1 for c in conv)
        axis, out, mask = 0, [], False
        for c in conv:
            if c is Ellipsis:
                axis += self._a.ndim - used
                out.append(c)
            elif c is None or isinstance(c, (bool, np.bool_)):
                out.append(c)
            elif isinstance(c, np.ndarray) and c.dtype == np.bool_:
                mask = True
                out.append(c)
                axis += c.ndim
            elif isinstance(c, np.ndarray):
                if axis >= self._a.ndim:
                    raise IndexError("too many indices for array")
                n = self._a.shape[axis]
                out.append(c % n if n else c)
                axis += 1
            else:
                out.append(c)
                axis += 1
        if mask and not setting:
            _sync("boolean mask index")
        return tuple(out), True

    def __getitem__(self, key):
        idx, advanced = self._index(key)
        res = self._a[idx]
        if advanced:
            _launch("getitem")
            res = np.array(res, copy=True)
        elif not isinstance(res, np.ndarray):
            res = np.asarray(self._a[idx + (Ellipsis,)] if idx.count(Ellipsis) == 0 else res)
        return ndarray._from(res, self._dev)

    def __setitem__(self, key, value):
        idx, advanced = self._index(key, setting=True)
        if type(value) is ndarray:
            v = value._a
        elif isinstance(value, np.ndarray):
            if not advanced:  # cupy: `y.fill(value)` refuses CPU arrays (gh-2079)
                raise TypeError("Unsupported type <class 'numpy.ndarray'>: cupy refuses assignment from "
                                "CPU arrays (use cupy.asarray first)")
            _h2d(value.nbytes)
            v = value
        elif isinstance(value, _SCALARS):
            v = value
        else:
            raise _unsupported(value)
        _launch("setitem")
        self._a[idx] = v

    # ------------------------------------------------------------ methods that need care
    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        res = self._a.astype(dtype, order=order, casting=casting or "unsafe", copy=copy)
        if res is self._a:
            return self
        _launch("astype")
        return ndarray._from(res, self._dev)

    def copy(self, order="C"):
        _launch("copy")
        return ndarray._from(self._a.copy(order=order), self._dev)

    def fill(self, value):
        if isinstance(value, np.ndarray) or type(value) is ndarray and value.ndim:
            raise _unsupported(value)
        _launch("fill")
        self._a.fill(value._a if type(value) is ndarray else value)

    def dot(self, b, out=None):
        return _matmul_like("dot", self, b, out)

    def take(self, indices, axis=None, out=None):
        return _take(self, indices, axis, out)

    def scatter_add(self, slices, value):
        warnings.warn("`ndarray.scatter_add` is deprecated. Please use `cupy.add.at` instead.", DeprecationWarning,
                      stacklevel=2)
        _scatter(self, slices, value, np.add)

    def __getattr__(self, name):
        spec = _ND_SPEC.get(name)
        if spec is None or spec["kind"] != "method" or name.startswith("_"):
            raise AttributeError(f"'cupy.ndarray' object has no attribute '{name}'")
        meth = getattr(self._a, name, None)
        if meth is None:
            raise NotImplementedError(f"cupy.ndarray.{name} exists in cupy {CUPY_VERSION} but is not modelled "
                                      "by the stand-in")
        check = _checker(f"cupy.ndarray.{name}", spec["params"])
        a, dev = self._a, self._dev

        host_ok = name in _SHAPE_METHODS  # their arguments are axes or shapes: any sequence will do

        def method(*args, **kw):
            check(args, kw)
            res = meth(*_unwrap(args, host_ok), **{k: _unwrap(v, host_ok or k in _SHAPE_PARAMS) for k, v in kw.items()})
            if name in _DATA_DEPENDENT:
                _sync(name)
            if not (isinstance(res, np.ndarray) and np.may_share_memory(res, a)):
                _launch(name)
            out = kw.get("out")
            return out if out is not None and res is getattr(out, "_a", None) else _wrap(res, dev)
        return method

    # ------------------------------------------------------------ operators (through the ufuncs)
    def _binop(name, reflected=False, inplace=False):  # noqa: N805 (a class-body helper)
        def op(self, other):
            if type(other) is not ndarray and not isinstance(other, (np.ndarray,) + _SCALARS):
                y_uf = getattr(type(other), "__array_ufunc__", _MISSING)
                if (y_uf is None) if y_uf is not _MISSING else (
                        getattr(other, "__array_priority__", 0) > ndarray.__array_priority__):
                    return NotImplemented   # cupy's _should_use_rop: let the other operand's reflected op run
            uf = _lookup("cupy", name)
            if inplace:
                return uf(self, other, out=self)
            return uf(other, self) if reflected else uf(self, other)
        return op

    for _n, _uf in [("add", "add"), ("sub", "subtract"), ("mul", "multiply"), ("truediv", "true_divide"),
                    ("floordiv", "floor_divide"), ("mod", "remainder"), ("pow", "power"), ("and", "bitwise_and"),
                    ("or", "bitwise_or"), ("xor", "bitwise_xor"), ("lshift", "left_shift"),
                    ("rshift", "right_shift")]:
        locals()[f"__{_n}__"] = _binop(_uf)
        locals()[f"__r{_n}__"] = _binop(_uf, reflected=True)
        locals()[f"__i{_n}__"] = _binop(_uf, inplace=True)
    for _n, _uf in [("lt", "less"), ("le", "less_equal"), ("gt", "greater"), ("ge", "greater_equal"),
                    ("eq", "equal"), ("ne", "not_equal")]:
        locals()[f"__{_n}__"] = _binop(_uf)
    del _n, _uf, _binop

    def __matmul__(self, other):
        return _matmul_like("matmul", self, other)

    def __rmatmul__(self, other):
        return _matmul_like("matmul", other, self)

    def __neg__(self):
        return _lookup("cupy", "negative")(self)

    def __pos__(self):
        return _lookup("cupy", "positive")(self)

    def __abs__(self):
        return _lookup("cupy", "absolute")(self)

    def __invert__(self):
        return _lookup("cupy", "invert")(self)


_MISSING = object()
_SHAPE_METHODS = {"transpose", "reshape", "squeeze", "swapaxes", "repeat"}
_SHAPE_PARAMS = {"axes", "axis", "shape", "newshape", "source", "destination"}
_DATA_DEPENDENT = {"nonzero", "unique", "flatnonzero", "argwhere", "compress", "extract"}


def _array_from_host(a):
    _h2d(a.nbytes)
    return ndarray._from(a)


# ================================================================ argument checks
def _checker(qualname, params):
    """A function that raises TypeError, as Python would for cupy's real function, when a call
    passes a keyword cupy's function has no parameter for, or too many positionals."""
    if params is None:
        return lambda args, kw: None
    names = {p[0] for p in params if p[1] in ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY")}
    var_kw = any(p[1] == "VAR_KEYWORD" for p in params)
    var_pos = any(p[1] == "VAR_POSITIONAL" for p in params)
    n_pos = sum(p[1] in ("POSITIONAL_OR_KEYWORD", "POSITIONAL_ONLY") for p in params)

    def check(args, kw):
        if not var_pos and len(args) > n_pos:
            raise TypeError(f"{qualname}() takes at most {n_pos} positional arguments ({len(args)} given) "
                            f"[cupy {CUPY_VERSION} API stand-in]")
        if not var_kw:
            for k in kw:
                if k not in names:
                    raise TypeError(f"{qualname}() got an unexpected keyword argument '{k}' "
                                    f"[cupy {CUPY_VERSION} API stand-in]")
    return check


# ================================================================ ufuncs
class ufunc:
    """cupy ufunc stand-in: only `out`, `dtype`, `casting`; cupy arrays and scalars only."""

    def __init__(self, name, spec, np_func):
        self.__name__ = name
        self.name = spec["ufunc_name"]
        self.nin, self.nout = spec["nin"], spec["nout"]
        self.nargs = self.nin + self.nout
        self._methods = spec["methods"]
        self._np = np_func

    def __repr__(self):
        return f"<ufunc '{self.name}'>"

    def _in(self, x):
        if type(x) is ndarray:
            return x._a
        if type(x) in (bool, int, float, complex) or isinstance(x, np.generic):
            return x
        raise _unsupported(x)

    def __call__(self, *args, **kwargs):
        out = kwargs.pop("out", None)
        kwargs.pop("_where", None)
        dtype = kwargs.pop("dtype", None)
        casting = kwargs.pop("casting", "same_kind")
        if kwargs:
            raise TypeError("Wrong arguments %s" % kwargs)
        if not self.nin <= len(args) <= self.nargs:
            raise TypeError(f"Wrong number of arguments for {self.name!r}. It must be either {self.nin} or "
                            f"{self.nargs} (with outputs), but given {len(args)}.")
        ins = [self._in(x) for x in args[:self.nin]]
        outs = list(args[self.nin:])
        if out is not None:
            if outs:
                raise ValueError("Cannot specify 'out' as both a positional and keyword argument")
            outs = list(out) if isinstance(out, tuple) else [out]
        for o in outs:
            if type(o) is not ndarray:
                raise TypeError(f"Output arguments must be cupy.ndarray, got {type(o)}")
        if self._np is None:
            raise NotImplementedError(f"{self.__name__}: a cupy ufunc with no numpy twin in the stand-in")
        kw = {"casting": casting}
        if dtype is not None:
            kw["dtype"] = dtype
        if outs:
            kw["out"] = tuple(o._a for o in outs) if len(outs) > 1 else outs[0]._a
        _launch(self.__name__)
        with np.errstate(all="ignore"):  # a GPU raises nothing on overflow or 0/0
            res = self._np(*ins, **kw)
        if outs:
            return outs[0] if len(outs) == 1 else tuple(outs)
        return _wrap(res)

    def _need(self, method):
        if not self._methods.get(method):
            raise NotImplementedError(f"`{self.name}.{method}` is not supported yet")

    def at(self, a, indices, b=None):
        self._need("at")
        _scatter(a, indices, b, self._np)

    def reduce(self, array, axis=0, dtype=None, out=None, keepdims=False):
        self._need("reduce")
        return (array.sum if self.name == "cupy_add" else array.prod)(axis, dtype, out, keepdims)

    def accumulate(self, array, axis=0, dtype=None, out=None):
        self._need("accumulate")
        return (array.cumsum if self.name == "cupy_add" else array.cumprod)(axis, dtype, out)

    def reduceat(self, array, indices, axis=0, dtype=None, out=None):
        self._need("reduceat")
        if type(array) is not ndarray:
            raise _unsupported(array)
        idx = self._in(indices) if not isinstance(indices, (list, tuple)) else np.asarray(indices)
        _launch("reduceat")
        res = np.add.reduceat(array._a, idx, axis=axis, dtype=dtype)
        if out is not None:
            out._a[...] = res
            return out
        return _wrap(res)

    def outer(self, A, B, **kwargs):
        A, B = _unwrap(A), _unwrap(B)
        return self(ndarray._from(np.asarray(A)[(...,) + (None,) * np.ndim(B)]), ndarray._from(np.asarray(B)), **kwargs)


def _scatter(a, slices, value, np_ufunc):
    """a[slices] op= value, accumulating repeated indices (cupy's _scatter_op); indices wrap."""
    if type(a) is not ndarray:
        raise _unsupported(a)
    idx, _ = a._index(slices, setting=True)
    if type(value) is ndarray:
        v = value._a
    elif value is None or isinstance(value, _SCALARS):
        v = value
    else:
        raise _unsupported(value)
    _launch(f"{np_ufunc.__name__}.at")
    np_ufunc.at(a._a, idx, v)


def _take(a, indices, axis=None, out=None):
    if type(a) is not ndarray:
        raise _unsupported(a)
    if isinstance(indices, (int, np.integer)):
        idx = indices
    else:
        idx = indices._a if type(indices) is ndarray else np.asarray(indices)
    n = a._a.size if axis is None else a._a.shape[axis]
    _launch("take")
    res = np.take(a._a, np.asarray(idx) % n if n else idx, axis=axis)
    if out is not None:
        out._a[...] = res
        return out
    return _wrap(res, a._dev)


def _matmul_like(name, a, b, out=None, **kw):
    a_, b_ = _unwrap(a), _unwrap(b)
    for x in (a_, b_):
        if not isinstance(x, np.ndarray):
            raise _unsupported(x)
    if a_.ndim == 0 or b_.ndim == 0:
        if name == "matmul":
            raise ValueError("Scalar operands are not allowed, use '*' instead")
    if _tf32_active(np.result_type(a_, b_)):
        a_, b_ = _round_tf32(a_), _round_tf32(b_)
    _launch(name)
    res = getattr(np, name)(a_, b_, **kw)
    if out is not None:
        out._a[...] = res
        return out
    return _wrap(res)


# ================================================================ functions
_HOST_OK = {"array", "asarray", "asanyarray"}          # cupy copies host data in these
_VIEWS = {"broadcast_to", "expand_dims", "squeeze", "swapaxes", "transpose", "moveaxis", "reshape", "ravel",
          "atleast_1d", "atleast_2d", "atleast_3d", "broadcast_arrays", "split", "array_split", "diagonal"}
_SHAPE_FUNCS = {"transpose", "reshape", "moveaxis", "expand_dims", "squeeze", "broadcast_to", "tile", "flip",
                "sum", "prod", "mean", "max", "min", "amax", "amin", "cumsum", "cumprod", "argmax", "argmin"}
_NON_ARRAY = {"shape", "ndim", "size", "isscalar", "result_type", "can_cast", "may_share_memory",
              "shares_memory", "get_array_module", "iscomplexobj", "isrealobj", "min_scalar_type"}


def _creation(name):
    np_func = getattr(np, name)

    def f(obj, dtype=None, *args, **kw):
        kw.pop("blocking", None)
        if type(obj) is ndarray:
            res = np_func(obj._a, dtype, *args, **kw)
            if res is not obj._a:
                _launch(name)
                return ndarray._from(res, obj._dev)
            return obj
        host = np_func(_unwrap(obj, host_ok=True), dtype, *args, **kw)
        if host.dtype.kind in "OUSV":
            raise ValueError(f"Unsupported dtype {host.dtype}")
        host = np.array(host, copy=True)
        _h2d(host.nbytes)
        return ndarray._from(host)
    return f


def _asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    if type(a) is ndarray:
        return a.get(stream=stream, order=order, out=out)
    return np.asarray(a, order=order)


def _get_array_module(*args):
    return sys.modules["cupy"] if any(type(a) is ndarray for a in args) else np


def _copyto(dst, src, casting="same_kind", where=None):
    if type(dst) is not ndarray:
        raise _unsupported(dst)
    if isinstance(src, np.ndarray):
        if src.size != 1:
            raise ValueError("non-scalar numpy.ndarray cannot be used for copyto")
        src = src.squeeze()[()]
    w = None if where is None else _unwrap(where)
    _launch("copyto")
    np.copyto(dst._a, _unwrap(src), casting=casting, where=True if w is None else w)


def _take_along_axis(a, indices, axis):
    if type(a) is not ndarray or type(indices) is not ndarray:
        raise _unsupported(indices if type(a) is ndarray else a)
    if axis is None:
        arr, ax = a._a.reshape(-1), 0
    else:
        arr, ax = a._a, axis
    n = arr.shape[ax]
    _launch("take_along_axis")
    return _wrap(np.take_along_axis(arr, indices._a % n if n else indices._a, axis=ax), a._dev)


def _erf(x, out=None, dtype=None):
    xa = _unwrap(x)
    if isinstance(xa, np.ndarray) and xa.dtype.kind != "f":
        xa = xa.astype(np.float64)
    try:
        from scipy.special import erf as serf
        res = serf(xa)
    except ImportError:
        res = np.asarray(np.frompyfunc(math.erf, 1, 1)(xa), dtype=np.float64)
    _launch("erf")
    res = np.asarray(res).astype(getattr(xa, "dtype", np.float64), copy=False)
    if out is not None:
        out._a[...] = res
        return out
    return _wrap(res)


def _scatter_add_fn(a, slices, value):
    warnings.warn("`ndarray.scatter_add` is deprecated. Please use `cupy.add.at` instead.", DeprecationWarning,
                  stacklevel=2)
    _scatter(a, slices, value, np.add)


def _generic(mod, name, np_func):
    host_ok = name in _HOST_OK
    view_like = name in _VIEWS
    non_array = name in _NON_ARRAY
    data_dep = name in _DATA_DEPENDENT

    def f(*args, **kw):
        nargs = tuple(_unwrap(a, host_ok or (i > 0 and name in _SHAPE_FUNCS)) for i, a in enumerate(args))
        nkw = {k: _unwrap(v, host_ok or k in _SHAPE_PARAMS) for k, v in kw.items()}
        out = kw.get("out")
        with np.errstate(all="ignore"):
            res = np_func(*nargs, **nkw)
        if non_array:
            return res
        if data_dep:
            _sync(name)
        first = next((a for a in nargs if isinstance(a, np.ndarray)), None)
        if not (view_like and first is not None and isinstance(res, np.ndarray) and np.may_share_memory(res, first)):
            _launch(name)
        if out is not None and type(out) is ndarray:
            return out
        return _wrap(res)
    return f


class _NotModelled:
    def __init__(self, qualname):
        self.qualname = qualname

    def __call__(self, *a, **k):
        raise NotImplementedError(f"{self.qualname} exists in cupy {CUPY_VERSION} but is not modelled by the "
                                  "numpy stand-in")

    def __repr__(self):
        return f"<not modelled: {self.qualname}>"


# ================================================================ cuda: devices, streams, events, kernels
class Device:
    def __init__(self, device=None):
        self.id = _current() if device is None else int(device)
        if not 0 <= self.id < N_DEVICES:
            raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
        self._prev = []

    def __enter__(self):
        self._prev.append(_current())
        _tls.device = self.id
        return self

    def __exit__(self, *exc):
        _tls.device = self._prev.pop()

    def use(self):
        _tls.device = self.id

    def synchronize(self):
        counters.explicit_syncs += 1

    @property
    def compute_capability(self):
        return "90"

    @property
    def cublas_handle(self):
        return _handle(self.id)

    @property
    def mem_info(self):
        return (140 << 30, 141 << 30)

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(("Device", self.id))

    def __int__(self):
        return self.id

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


class CUDARuntimeError(RuntimeError):
    pass


class Stream:
    null = None

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        pass

    def synchronize(self):
        counters.explicit_syncs += 1

    def use(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def record(self, event=None):
        event = event or Event()
        event.record(self)
        return event

    def wait_event(self, event):
        pass

    @property
    def done(self):
        return True


Stream.null = Stream(null=True)


class Event:
    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self._t = None

    def record(self, stream=None):
        self._t = time.perf_counter()

    def synchronize(self):
        counters.explicit_syncs += 1

    @property
    def done(self):
        return True


def _elapsed(start, end):
    counters.explicit_syncs += 1
    return (end._t - start._t) * 1e3


_kernel_twins: dict = {}


def register_kernel(name, fn):
    """Give a custom kernel (by its kernel name) a numpy twin, `fn(*args, **kw)`, that the
    stand-in runs when the kernel is launched."""
    _kernel_twins[name] = fn


class _Kernel:
    def __init__(self, *args, name=None, **kwargs):
        if name is None:  # ElementwiseKernel(in_params, out_params, operation, name='kernel', ...)
            name = args[3] if len(args) > 3 else "kernel"
        self.name = name
        self.kwargs = kwargs

    def __call__(self, *args, **kwargs):
        _launch(f"kernel:{self.name}")
        twin = _kernel_twins.get(self.name)
        if twin is None:
            raise NotImplementedError(f"custom kernel {self.name!r}: the stand-in does not compile CUDA; register a "
                                      "numpy twin with tests.cupy_standin.register_kernel")
        return twin(*args, **kwargs)


class RawKernel(_Kernel):
    def __init__(self, code, name, options=(), backend="nvrtc", translate_cucomplex=False, *, enable_cooperative_groups=False, jitify=False):
        super().__init__(name=name)


class ElementwiseKernel(_Kernel):
    pass


class ReductionKernel(_Kernel):
    def __init__(self, in_params, out_params, map_expr, reduce_expr, post_map_expr, identity, name="reduce_kernel", **kw):
        super().__init__(name=name)


class MemoryPool:
    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0

    def free_all_blocks(self, stream=None):
        pass

    def get_limit(self):
        return 0

    def set_limit(self, size=None, fraction=None):
        pass


_pool = MemoryPool()


# ================================================================ random (cupy.random)
class _Generator:
    """cupy.random.Generator stand-in over numpy's PCG64 (cupy's XORWOW numbers differ)."""

    def __init__(self, bit_generator=None, seed=None):
        self._g = np.random.default_rng(seed)

    def random(self, size=None, dtype=np.float64, out=None):
        _launch("random")
        res = self._g.random(size, dtype=dtype)
        if out is not None:
            out._a[...] = res
            return out
        return _wrap(np.asarray(res))

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        _launch("standard_normal")
        res = self._g.standard_normal(size, dtype=dtype)
        if out is not None:
            out._a[...] = res
            return out
        return _wrap(np.asarray(res))

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        _launch("integers")
        return _wrap(np.asarray(self._g.integers(low, high, size, dtype=dtype, endpoint=endpoint)))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        _launch("uniform")
        return _wrap(np.asarray(self._g.uniform(low, high, size).astype(dtype)))


def _default_rng(seed=None):
    return _Generator(seed=seed)


class _RandomState:
    def __init__(self, seed=None, method=None):
        self._r = np.random.RandomState(seed)

    def seed(self, seed=None):
        self._r.seed(seed)

    def _draw(self, name, *args, dtype=None, **kw):
        _launch(name)
        res = np.asarray(getattr(self._r, name)(*args, **kw))
        return _wrap(res.astype(dtype) if dtype is not None else res)

    def rand(self, *size, dtype=float):
        return self._draw("random_sample", size or None, dtype=dtype)

    def randn(self, *size, dtype=float):
        return self._draw("standard_normal", size or None, dtype=dtype)

    def random_sample(self, size=None, dtype=float):
        return self._draw("random_sample", size, dtype=dtype)

    def standard_normal(self, size=None, dtype=float):
        return self._draw("standard_normal", size, dtype=dtype)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=float):
        return self._draw("uniform", low, high, size, dtype=dtype)

    def normal(self, loc=0.0, scale=1.0, size=None, dtype=float):
        return self._draw("normal", loc, scale, size, dtype=dtype)


# ================================================================ building the modules
_CUSTOM = {
    ("cupy", "array"): lambda: _creation("array"), ("cupy", "asarray"): lambda: _creation("asarray"),
    ("cupy", "asanyarray"): lambda: _creation("asanyarray"), ("cupy", "asnumpy"): lambda: _asnumpy,
    ("cupy", "get_array_module"): lambda: _get_array_module, ("cupy", "copyto"): lambda: _copyto,
    ("cupy", "take_along_axis"): lambda: _take_along_axis, ("cupy", "take"): lambda: _take,
    ("cupy", "matmul"): lambda: lambda a, b, out=None, **kw: _matmul_like("matmul", a, b, out),
    ("cupy", "dot"): lambda: lambda a, b, out=None: _matmul_like("dot", a, b, out),
    ("cupy", "ndarray"): lambda: ndarray, ("cupy", "ufunc"): lambda: ufunc,
    ("cupy", "RawKernel"): lambda: RawKernel, ("cupy", "ElementwiseKernel"): lambda: ElementwiseKernel,
    ("cupy", "ReductionKernel"): lambda: ReductionKernel,
    ("cupy", "get_default_memory_pool"): lambda: lambda: _pool,
    ("cupy", "get_default_pinned_memory_pool"): lambda: lambda: _pool,
    ("cupyx", "scatter_add"): lambda: _scatter_add_fn,
    ("cupyx.scipy.special", "erf"): lambda: _erf,
    ("cupy.cuda", "Device"): lambda: Device, ("cupy.cuda", "Stream"): lambda: Stream,
    ("cupy.cuda", "Event"): lambda: Event, ("cupy.cuda", "get_elapsed_time"): lambda: _elapsed,
    ("cupy.cuda", "MemoryPointer"): lambda: MemoryPointer, ("cupy.cuda", "MemoryPool"): lambda: MemoryPool,
    ("cupy.cuda", "get_current_stream"): lambda: lambda device_id=-1: Stream.null,
    ("cupy.cuda", "is_available"): lambda: lambda: N_DEVICES > 0,
    ("cupy.cuda", "get_cublas_handle"): lambda: lambda: _handle(_current()),
    ("cupy.cuda", "get_local_runtime_version"): lambda: lambda: 13000,
    ("cupy.cuda.device", "Device"): lambda: Device,
    ("cupy.cuda.device", "get_cublas_handle"): lambda: lambda: _handle(_current()),
    ("cupy.cuda.device", "get_device_id"): lambda: _current,
    ("cupy.cuda.device", "get_compute_capability"): lambda: lambda: "90",
    ("cupy.cuda.stream", "Stream"): lambda: Stream, ("cupy.cuda.stream", "Event"): lambda: Event,
    ("cupy.cuda.stream", "get_elapsed_time"): lambda: _elapsed,
    ("cupy.cuda.runtime", "getDeviceCount"): lambda: lambda: N_DEVICES,
    ("cupy.cuda.runtime", "getDevice"): lambda: _current,
    ("cupy.cuda.runtime", "setDevice"): lambda: lambda device: setattr(_tls, "device", int(device)),
    ("cupy.cuda.runtime", "deviceSynchronize"): lambda: lambda: setattr(counters, "explicit_syncs",
                                                                        counters.explicit_syncs + 1),
    ("cupy.cuda.runtime", "driverGetVersion"): lambda: lambda: 13000,
    ("cupy.cuda.runtime", "runtimeGetVersion"): lambda: lambda: 13000,
    ("cupy.cuda.runtime", "memGetInfo"): lambda: lambda: (140 << 30, 141 << 30),
    ("cupy.cuda.runtime", "CUDARuntimeError"): lambda: CUDARuntimeError,
    ("cupy.cuda.runtime", "getDeviceProperties"): lambda: lambda device: {
        "name": b"cupy API stand-in (numpy on the CPU)", "totalGlobalMem": 141 << 30, "major": 9, "minor": 0,
        "multiProcessorCount": 0},
    ("cupy.cuda.cublas", "setMathMode"): lambda: lambda handle, mode: _math_mode.__setitem__(handle, int(mode)),
    ("cupy.cuda.cublas", "getMathMode"): lambda: lambda handle: _math_mode.get(handle, 0),
    ("cupy._core", "set_compute_type"): lambda: _set_compute_type,
    ("cupy._core", "get_compute_type"): lambda: _get_compute_type,
    ("cupy._core._routines_linalg", "set_compute_type"): lambda: _set_compute_type,
    ("cupy._core._routines_linalg", "get_compute_type"): lambda: _get_compute_type,
    ("cupy.random", "default_rng"): lambda: _default_rng, ("cupy.random", "Generator"): lambda: _Generator,
    ("cupy.random", "RandomState"): lambda: _RandomState,
}


def _set_compute_type(dtype, compute_type):
    if compute_type not in COMPUTE.values():
        raise ValueError(f"Unknown compute type: {compute_type}")
    _compute_types[np.dtype(dtype).char.lower() if np.dtype(dtype).char in "fFdD" else np.dtype(dtype).char] = compute_type


def _get_compute_type(dtype):
    c = np.dtype(dtype).char.lower()
    if _compute_types[c] == COMPUTE["TBD"]:
        _compute_types[c] = COMPUTE["TF32"] if c == "f" and int(os.environ.get("CUPY_TF32", "0")) > 0 else COMPUTE["DEFAULT"]
    return _compute_types[c]


_NUMPY_HOME = {"cupy": np, "cupy.linalg": np.linalg, "cupyx.scipy.special": None, "cupy.random": None}


class _Module(types.ModuleType):
    """A module that offers exactly the names the manifest lists for it."""

    def __init__(self, name, spec):
        super().__init__(name, f"cupy {CUPY_VERSION} API stand-in for {name} (numpy on the CPU)")
        self.__dict__["_spec"] = spec
        self.__dict__["_cache"] = {}
        self.__dict__["__standin__"] = True

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        cache = self.__dict__["_cache"]
        if name in cache:
            return cache[name]
        spec = self.__dict__["_spec"].get(name)
        if spec is None:
            raise AttributeError(f"module '{self.__name__}' has no attribute '{name}' "
                                 f"(not in cupy {CUPY_VERSION}'s API)")
        val = _build(self.__name__, name, spec)
        cache[name] = val
        return val

    def __dir__(self):
        return sorted(self.__dict__["_spec"])


def _build(mod, name, spec):
    kind = spec["kind"]
    custom = _CUSTOM.get((mod, name))
    if kind == "module":
        target = spec["module"].replace("cupy_backends.cuda.api.runtime", "cupy.cuda.runtime") \
            .replace("cupy_backends.cuda.libs.cublas", "cupy.cuda.cublas")
        return sys.modules.get(target) or _NotModelled(target)
    if kind == "constant":
        return spec["value"]
    if kind == "numpy":
        for home in (np, np.linalg, np.random):
            if hasattr(home, name):
                return getattr(home, name)
        return _NotModelled(f"{mod}.{name}")
    if kind == "ufunc":
        np_func = getattr(np, name, None)
        if np_func is None and (mod, name) in _CUSTOM:
            np_func = _CUSTOM[(mod, name)]()
        if mod == "cupyx" and name == "rsqrt":
            np_func = lambda x, **kw: np.divide(1, np.sqrt(x), **kw)  # noqa: E731
        if mod == "cupyx.scipy.special" and name == "erf":
            return _erf
        return ufunc(name, spec, np_func if isinstance(np_func, np.ufunc) or callable(np_func) else None)
    if custom is not None:
        impl = custom()
        if kind == "function" and callable(impl) and not isinstance(impl, type):
            check = _checker(f"{mod}.{name}", spec.get("params"))

            @functools.wraps(impl)
            def checked(*args, __impl=impl, __check=check, **kw):
                __check(args, kw)
                return __impl(*args, **kw)
            return checked
        return impl
    if kind == "function":
        home = _NUMPY_HOME.get(mod)
        np_func = getattr(home, name, None) if home is not None else None
        if np_func is None or not callable(np_func):
            return _NotModelled(f"{mod}.{name}")
        check = _checker(f"{mod}.{name}", spec.get("params"))
        impl = _generic(mod, name, np_func)

        def fn(*args, **kw):
            check(args, kw)
            return impl(*args, **kw)
        fn.__name__ = name
        fn.__qualname__ = f"{mod}.{name}"
        return fn
    if kind == "class":
        return _NotModelled(f"{mod}.{name}")
    if kind == "unavailable":
        raise AttributeError(f"{mod}.{name} could not be loaded when the manifest was recorded")
    return _NotModelled(f"{mod}.{name}")


def _lookup(mod, name):
    m = sys.modules.get(mod)
    if m is None or not getattr(m, "__standin__", False):
        m = _STANDIN_MODULES.get(mod)
    if m is None:
        return None
    try:
        return getattr(m, name)
    except AttributeError:
        return None


_STANDIN_MODULES: dict = {}
_SAVED: dict = {}
_STANDIN_NAMES = ["cupy", "cupy.cuda", "cupy.cuda.runtime", "cupy.cuda.device", "cupy.cuda.cublas",
                  "cupy.cuda.stream", "cupy.cuda.memory", "cupy.cuda.nvtx", "cupy.random", "cupy.linalg",
                  "cupy._core", "cupy._core._routines_linalg", "cupy.testing", "cupyx", "cupyx.scipy",
                  "cupyx.scipy.special"]


def _make_modules():
    if _STANDIN_MODULES:
        return _STANDIN_MODULES
    for name in _STANDIN_NAMES:
        spec = _MODS.get(name, {})
        if name == "cupyx.scipy":
            spec = {"special": {"kind": "module", "module": "cupyx.scipy.special"}}
        _STANDIN_MODULES[name] = _Module(name, spec)
    root = _STANDIN_MODULES["cupy"]
    root.__dict__["__version__"] = CUPY_VERSION
    # submodules reachable as attributes, as after `import cupy.cuda` on the real package
    for name, m in _STANDIN_MODULES.items():
        if "." in name:
            parent, child = name.rsplit(".", 1)
            _STANDIN_MODULES[parent].__dict__[child] = m
    return _STANDIN_MODULES


def install():
    """Put the stand-in modules into sys.modules (saving any real cupy modules there)."""
    mods = _make_modules()
    for name, m in mods.items():
        if sys.modules.get(name) is not m:
            if name in sys.modules and not getattr(sys.modules[name], "__standin__", False):
                _SAVED[name] = sys.modules[name]
            sys.modules[name] = m
    if not _kernels_detach:
        _kernels_detach.append(_attach_kernels())


_kernels_detach: list = []


def _attach_kernels():
    """`cupy.RawModule` of tinygrad_lm's own kernel sources runs them on the CPU emulation of the
    CUDA kernels (tests/cuda_emulation: their arithmetic and indexing, not GPU behaviour); without
    a C++ compiler tinygrad_lm's kernels are switched off instead. Returns the undo."""
    import cuda_emulation
    return cuda_emulation.attach_to_standin(sys.modules[__name__])


def uninstall():
    while _kernels_detach:
        _kernels_detach.pop()()
    for name, m in _STANDIN_MODULES.items():
        if sys.modules.get(name) is m:
            del sys.modules[name]
    sys.modules.update(_SAVED)
    _SAVED.clear()
    _math_mode.clear()
    for k in _compute_types:
        _compute_types[k] = 0


def active() -> bool:
    return getattr(sys.modules.get("cupy"), "__standin__", False)


@contextlib.contextmanager
def installed():
    install()
    try:
        yield sys.modules["cupy"]
    finally:
        uninstall()
