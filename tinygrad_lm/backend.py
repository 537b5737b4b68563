"""The backend seam: the only module that knows numpy from cupy.

A device name ("cpu", "cuda", "cuda:1") maps to an array module (`numpy` or
`cupy`). Everything above asks this module for `xp` instead of importing an
array library for math, so an op is written once and runs on both backends.
cupy is imported lazily, on first use of a "cuda" device, so a CPU-only machine
never needs it. The hand-written CUDA kernels (`kernels/`) sit beside this module in the
backend layer: it imports them, they import nothing from the package and get the cupy module
from it at each call.

Why this file is long: it holds every place where numpy and cupy differ, so that nothing
above has to know: device names and transfers, TF32, the counter-based device RNG,
deterministic scatter-adds, erf, the host allocator, the kernel dispatch seam. Each part is
short; spread over several files, "only backend.py knows numpy from cupy" would become a
rule about a folder.
"""
from __future__ import annotations

import math
import os

import numpy as np

from . import kernels  # the CUDA kernels' package imports nothing back (see kernels/__init__.py)
from .kernels import ops as kernel_ops

_cupy = None          # the cupy module once imported
_cupy_error = None    # why importing it failed, if it did
_tf32 = False

INSTALL_HINT = (
    "install the cupy wheel that matches your CUDA driver: run `nvidia-smi` and read "
    "'CUDA Version' in its header; for 12.x use `pip install -e \".[cuda12]\"` "
    "(cupy-cuda12x), for 13.x `pip install -e \".[cuda13]\"` (cupy-cuda13x)"
)


class DeviceError(RuntimeError):
    """A device was asked for that cannot be used, or two devices were mixed."""


def _import_cupy():
    global _cupy, _cupy_error
    if _cupy is None and _cupy_error is None:
        try:
            import cupy  # noqa: F401  (the one import of cupy in the package)
            cupy.cuda.runtime.getDeviceCount()
            _cupy = cupy
        except Exception as e:  # ImportError, or CUDARuntimeError with no GPU
            _cupy_error = e
    return _cupy


def cuda_available() -> bool:
    """True when cupy imports and sees at least one GPU."""
    cp = _import_cupy()
    return cp is not None and cp.cuda.runtime.getDeviceCount() > 0


def device_count() -> int:
    return _import_cupy().cuda.runtime.getDeviceCount() if cuda_available() else 0


def canonical_device(device) -> str:
    """Normalise a device name: None/"cpu" -> "cpu"; "cuda" -> "cuda:0"; "cuda:N" kept.

    Raises DeviceError for unknown names, and for "cuda" when cupy or a GPU is absent.
    """
    if device is None:
        return "cpu"
    if not isinstance(device, str):
        device = str(device)
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        idx = 0 if device == "cuda" else device[5:]
        try:
            idx = int(idx)
        except ValueError:
            raise DeviceError(f"unknown device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'") from None
        if not cuda_available():
            why = f" ({type(_cupy_error).__name__}: {_cupy_error})" if _cupy_error else ""
            raise DeviceError(f"device {device!r} was requested but no usable CUDA GPU was found{why}; {INSTALL_HINT}")
        n = device_count()
        if not 0 <= idx < n:
            raise DeviceError(f"device {device!r} does not exist: {n} CUDA device(s) visible")
        return f"cuda:{idx}"
    raise DeviceError(f"unknown device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")


def xp_for(device: str):
    """The array module for a canonical device name."""
    return np if device == "cpu" else _cupy


def array_module(arr):
    """numpy or cupy, whichever owns `arr`."""
    if type(arr) is np.ndarray or _cupy is None:
        return np
    return _cupy if isinstance(arr, _cupy.ndarray) else np


def device_of(arr) -> str:
    if type(arr) is np.ndarray or _cupy is None or not isinstance(arr, _cupy.ndarray):
        return "cpu"
    return f"cuda:{arr.device.id}"


def to_device(arr, device: str):
    """Copy `arr` to `device` (a canonical name); returns `arr` itself when already there."""
    if device_of(arr) == device:
        return arr
    if device == "cpu":
        return arr.get()
    with _cupy.cuda.Device(int(device[5:])):
        return _cupy.asarray(arr)


def to_numpy(arr) -> np.ndarray:
    return arr if isinstance(arr, np.ndarray) else arr.get()


def use_device(device: str):
    """A context manager that makes `device` current for allocations (a no-op on the CPU)."""
    import contextlib
    if device == "cpu":
        return contextlib.nullcontext()
    return _cupy.cuda.Device(int(device[5:]))


# cublasMath_t in cublas_api.h; cupy 14 exports only CUBLAS_DEFAULT_MATH and the deprecated
# CUBLAS_TENSOR_OP_MATH (which means FP16 down-conversion for float32 GEMMs, not TF32)
_CUBLAS_DEFAULT_MATH, _CUBLAS_TF32_TENSOR_OP_MATH = 0, 3
_COMPUTE_TYPE_DEFAULT, _COMPUTE_TYPE_TF32 = 1, 7   # cupy._core._routines_linalg.COMPUTE_TYPE_*


def set_tf32(enabled: bool) -> None:
    """Allow TensorFloat-32 in float32 GPU matmuls: inputs rounded to a 10-bit mantissa
    (relative error ~5e-4 per product), accumulation in float32, several times the
    throughput on tensor cores (compute capability 8.0+). Off by default, so CPU and GPU
    results agree to float32 precision. No effect on the CPU or on float64.

    cupy 14 has no public switch (its CUPY_TF32 variable is read once, at the first float32
    matmul, and only by the 2-D matmul path), so this sets what cupy's matmuls read on every
    call: the float32 compute type of cupy's 2-D GEMM (`cupy._core.set_compute_type`) and the
    math mode of each device's cuBLAS handle (CUBLAS_TF32_TENSOR_OP_MATH), which the batched
    GEMMs of (B, T, C) @ (C, D) follow. cuBLAS handles belong to a thread: call this from the
    thread that runs the model."""
    global _tf32
    _tf32 = bool(enabled)
    cp = _import_cupy()
    if cp is None:
        return
    cp._core.set_compute_type(np.float32, _COMPUTE_TYPE_TF32 if _tf32 else _COMPUTE_TYPE_DEFAULT)
    mode = _CUBLAS_TF32_TENSOR_OP_MATH if _tf32 else _CUBLAS_DEFAULT_MATH
    for i in range(device_count()):
        with cp.cuda.Device(i):
            cp.cuda.cublas.setMathMode(cp.cuda.device.get_cublas_handle(), mode)


def tf32_enabled() -> bool:
    return _tf32


# ---------------------------------------------------------------- the device random generator
class DeviceGenerator:
    """Random numbers drawn where they are used (on the GPU for a cupy array), from a seed and
    a counter, so no mask is copied from the host and the state is two integers that a
    checkpoint can keep. `manual_seed` seeds the module's `device_rng`, which draws every
    dropout mask on every device.

    Draw i of the stream is the 64-bit word z_i = splitmix64(key + (counter + i) * golden)
    (Steele, Lea and Flood's SplitMix64 finaliser over a Weyl sequence; key = the finaliser of
    the seed, so nearby seeds give unrelated streams); the counter then advances by the number
    of words drawn. `random` scales a word's top 24 bits (float32) or 53 bits (float64) to
    [0, 1); `dropout_mask` uses each word's two 32-bit halves (low half first) as two
    uniform integers. It is integer arithmetic only, so numpy and cupy give the same bits: a
    seed gives the same numbers on every device, and restoring (seed, counter) continues the
    stream exactly."""

    _GOLDEN = np.uint64(0x9E3779B97F4A7C15)
    _M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)

    def __init__(self, seed: int = 0):
        self.manual_seed(seed)

    def manual_seed(self, seed: int) -> None:
        self.seed, self.counter = int(seed) % (1 << 64), 0

    def get_state(self) -> dict:
        return {"seed": self.seed, "counter": self.counter}

    def set_state(self, state: dict) -> None:
        self.seed, self.counter = int(state["seed"]) % (1 << 64), int(state["counter"])

    @classmethod
    def _mix(cls, z, xp):
        z ^= z >> np.uint64(30)
        xp.multiply(z, cls._M1, out=z)
        z ^= z >> np.uint64(27)
        xp.multiply(z, cls._M2, out=z)
        z ^= z >> np.uint64(31)
        return z

    def _reserve(self, n: int) -> int:
        """Take the next n words of the stream: returns their offset and advances the counter.
        (counter + i) * golden + key = i * golden + offset, offset = counter * golden + key
        (mod 2^64): one host integer, so word i needs only i on the device."""
        key = int(self._mix(np.array([self.seed], dtype=np.uint64), np)[0])
        offset = (self.counter * int(self._GOLDEN) + key) % (1 << 64)
        self.counter += n
        return offset

    def _words(self, n: int, xp):
        """The next n words of the stream (uint64, on xp's current device); advances the counter.
        The device does arange, one multiply, one add, the mix."""
        offset = np.uint64(self._reserve(n))
        z = xp.arange(n, dtype=np.uint64)
        xp.multiply(z, self._GOLDEN, out=z)
        z += offset
        return self._mix(z, xp)

    @staticmethod
    def threshold(p: float) -> int:
        """ceil(p 2^32), at most 2^32 - 1: a 32-bit draw u keeps its entry when u >= this."""
        return min(math.ceil(p * 2.0 ** 32), 2 ** 32 - 1)

    def random(self, shape, dtype=np.float32, device: str = "cpu"):
        """An array of `shape` uniform on [0, 1) in `dtype` (float32 or float64) on `device`."""
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"DeviceGenerator.random: dtype must be float32 or float64, got {dtype}")
        xp = xp_for(device)
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        with use_device(device):
            z = self._words(int(np.prod(shape)), xp)
            bits = 24 if dtype == np.float32 else 53
            out = (z >> np.uint64(64 - bits)).astype(dtype) * dtype.type(2.0 ** -bits)
        return out.reshape(shape)

    def dropout_mask(self, shape, p: float, dtype=np.float32, device: str = "cpu"):
        """Inverted dropout's multiplier: an array of `shape` in `dtype` on `device` holding
        1 / (1 - p) where an entry is kept and 0 where it is dropped, 0 <= p < 1.

        Entry j is kept when u_j >= ceil(p 2^32), u_j the j-th 32-bit half of the words
        (u_2i, u_2i+1 = the low and high halves of word i; little-endian, as every machine
        cupy runs on), so P(keep) = 1 - p to within 2^-32, the same entries are kept for
        every dtype, and n entries cost n/2 words: half the integer work of `random`. The
        counter advances by ceil(n / 2). On a GPU with kernels enabled one kernel does it all
        (kernels/dropout.cu, the same bits); the array code below is its twin."""
        if not 0.0 <= p < 1.0:
            raise ValueError(f"DeviceGenerator.dropout_mask: p must be in [0, 1), got {p}")
        dtype = np.dtype(dtype)
        xp = xp_for(device)
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        n = int(np.prod(shape))
        with use_device(device):
            halves = self._words((n + 1) // 2, xp).view(np.uint32)[:n]
            keep = halves >= np.uint32(self.threshold(p))
            # keep (0 or 1) x scale in one pass (np.where with two scalars is several times slower on numpy)
            return xp.multiply(keep, dtype.type(1.0 / (1.0 - p)), dtype=dtype).reshape(shape)


device_rng = DeviceGenerator(0)


# ---------------------------------------------------------------- kernels that differ by backend
_deterministic = True


def use_deterministic_algorithms(mode: bool) -> None:
    """Choose how GPU scatter-adds (the backward of embedding, integer indexing and gather)
    accumulate: True (the default) sorts the indices and sums each run of equal ones, so a
    gradient is the same bits on every run and `--resume` stays exact; False uses cupy's
    atomic `add.at`, where float additions to one element happen in whatever order the
    threads arrive. The CPU is deterministic either way. (PyTorch's name for the switch.)"""
    global _deterministic
    _deterministic = bool(mode)


def are_deterministic_algorithms_enabled() -> bool:
    return _deterministic


def index_span(index) -> tuple:
    """(min, max) of an integer array as Python ints, for bounds checks: one reduction pair
    and a single read from the device (cupy wraps out-of-range indices silently, numpy
    raises, so the ops check first and raise the same IndexError on both)."""
    xp = array_module(index)
    lo, hi = xp.stack((index.min(), index.max())).tolist()
    return int(lo), int(hi)


def scatter_add(target, index, values) -> None:
    """target[index] += values, accumulating repeated indices (np.add.at semantics), in place.

    On cupy, deterministic by default: the flat positions `index` selects are summed with
    `index_add_rows` (sorted segment sums) and added once; `use_deterministic_algorithms(False)`
    takes `cupy.add.at` (atomics) instead. Indices must be in range (callers check)."""
    xp = array_module(target)
    if xp is np or not _deterministic:
        xp.add.at(target, index, values)
        return
    flat = xp.arange(target.size).reshape(target.shape)[index]           # the flat position of each value
    vals = xp.broadcast_to(values, flat.shape).reshape(-1, 1)
    target += index_add_rows(target.size, flat.reshape(-1), vals).reshape(target.shape)


def index_add_rows(num_rows: int, index, values):
    """out[r] = sum of values[i] over i with index[i] == r; out has shape (num_rows, C).

    `index` is 1-D (N,), `values` is (N, C). This is the embedding backward. On numpy: sort
    the indices, then sum each run of equal ones with `add.reduceat` (O(N*C), float32 sums in
    index order; not `np.add.at`, which is unbuffered). reduceat pays a per-row overhead, so
    rows whose index occurs once are copied with one fancy-index assignment instead, and only
    the repeated ones go through reduceat. Indices that are all distinct (a position
    embedding) are one assignment. On cupy see `_segment_sums` (deterministic, the default)
    or `cupy.add.at` (atomic, after `use_deterministic_algorithms(False)`). (Timings, and the
    alternatives measured and rejected: docs/performance.md.)
    """
    xp = array_module(values)
    out = xp.zeros((num_rows,) + values.shape[1:], dtype=values.dtype)
    n = index.shape[0]
    if n == 0:
        return out
    if xp is not np:
        if not _deterministic:
            xp.add.at(out, index, values)
            return out
        return _segment_sums(out, index, values)
    order = np.argsort(index, kind="stable")
    sorted_idx = index[order]
    starts = np.flatnonzero(np.r_[True, sorted_idx[1:] != sorted_idx[:-1]])   # first row of each run
    if starts.size == n:                               # every index distinct
        out[index] = values
        return out
    if 4 * starts.size <= n:                           # runs of 4+ rows on average: one reduceat over all
        out[sorted_idx[starts]] = np.add.reduceat(values[order], starts, axis=0)
        return out
    lens = np.diff(np.r_[starts, n])
    single = lens == 1
    s1 = starts[single]
    out[sorted_idx[s1]] = values[order[s1]]
    multi = ~single
    rows = order[~np.repeat(single, lens)]             # the rows of repeated indices, still sorted
    run_lens = lens[multi]
    out[sorted_idx[starts[multi]]] = np.add.reduceat(values[rows], np.r_[0, np.cumsum(run_lens[:-1])], axis=0)
    return out


def _segment_sums(out, index, values):
    """out[r] = sum of values[i] over i with index[i] == r, with no atomics and no host sync:
    the same bits on every run.

    Sort the indices (stable), prefix-sum the rows in that order in float64, and give each
    row of a run of equal indices the run's total, cs[end] - cs[start] (start and end found
    by binary search in the sorted indices). Every row of a run then holds the same value, so
    writing them all to out[index] is deterministic. The float64 prefix sum keeps the
    difference exact to well below float32 rounding (and to ~N * 1e-16 of the prefix for
    float64 inputs). About ten kernels; no data-dependent shapes, so nothing is read back."""
    xp = array_module(values)
    order = xp.argsort(index)                 # cupy: CUB radix sort, stable
    sorted_idx = index[order]
    cs = xp.cumsum(values[order], axis=0, dtype=np.float64)
    cs = xp.concatenate([xp.zeros((1,) + cs.shape[1:], dtype=np.float64), cs])   # cs[k] = sum of the first k rows
    start = xp.searchsorted(sorted_idx, sorted_idx, side="left")
    end = xp.searchsorted(sorted_idx, sorted_idx, side="right")
    out[sorted_idx] = (cs[end] - cs[start]).astype(out.dtype, copy=False)
    return out


# erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2), z >= 0: the Chebyshev fit of Numerical
# Recipes (erfcc), fractional error < 1.2e-7 for every z (evaluated in float64; in float32
# arithmetic erf comes out within 5e-7).
_ERFC_COEFFS = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807,
                -1.13520398, 1.48851587, -0.82215223, 0.17087277)


def _erf_float32(x):
    """erf for float32 (and float16) arrays in ~15 in-place passes. Absolute error < 5e-7 (a few
    float32 ulps of 1): erf = 1 - erfc is not relatively accurate near 0, which GELU's
    Phi = (1 + erf) / 2, its only user, does not need."""
    dt = x.dtype.type
    z = np.abs(x, out=np.empty(np.shape(x), dtype=x.dtype))  # an array even for 0-d input
    t = np.multiply(z, dt(0.5), out=np.empty_like(z))
    t += dt(1)
    np.reciprocal(t, out=t)
    acc = np.full_like(z, dt(_ERFC_COEFFS[-1]))
    for c in _ERFC_COEFFS[-2::-1]:  # Horner, from the highest power of t down to the constant
        acc *= t
        acc += dt(c)
    np.square(z, out=z)
    acc -= z
    np.exp(acc, out=acc)
    acc *= t                        # erfc(|x|)
    np.subtract(dt(1), acc, out=acc)
    return np.copysign(acc, x, out=acc)


def erf(x):
    """The error function, elementwise, on either backend.

    Uses scipy / cupyx when present. Otherwise float32 (and float16) inputs go through a
    Chebyshev fit of erfc (absolute error < 5e-7, ~15 array passes), and float64 through the
    Maclaurin series for |x| < 1.5 and the continued fraction for erfc beyond, both to about
    1e-15 (the float64 path is slow: it is there for gradchecks). Loops run over series terms,
    never over elements.
    """
    xp = array_module(x)
    if xp is not np:
        from cupyx.scipy.special import erf as cerf
        return cerf(x)
    try:
        from scipy.special import erf as serf
        return serf(x).astype(x.dtype, copy=False)
    except ImportError:
        pass
    if x.dtype.itemsize <= 4:
        return _erf_float32(x)
    a = np.abs(x.astype(np.float64))
    # The series cancels badly for large |x| and the continued fraction converges slowly for
    # small |x|; switching at 1.5 keeps both at ~1e-15 (relative error of erfc ~3e-15 beyond).
    small = np.minimum(a, 1.5)
    # erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
    term = small.copy()
    total = small.copy()
    x2 = small * small
    for n in range(1, 40):
        term = term * (-x2) / n
        total = total + term / (2 * n + 1)
    series = total * (2.0 / np.sqrt(np.pi))
    big = np.maximum(a, 1.5)
    # erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))
    f = big.copy()
    for k in range(120, 0, -1):
        f = big + (k / 2.0) / f
    frac = 1.0 - np.exp(-big * big) / (np.sqrt(np.pi) * f)
    out = np.where(a < 1.5, series, frac)
    return (np.sign(x) * out).astype(x.dtype, copy=False)


def tune_host_allocator(limit: int = 1 << 30) -> bool:
    """Keep freed heap memory inside the process (glibc only; a no-op elsewhere). Returns
    whether it applied.

    By default glibc hands every freed block above ~128 KB back to the OS (mmap/munmap), so
    each new temporary of a training step is page-faulted in again. Raising glibc's mmap and
    trim thresholds to `limit` lets the next step reuse warm pages; the cost is that resident
    memory stays near its peak. This changes the whole process's allocator, so importing
    tinygrad_lm never does it: the `tinygrad-lm` command calls it (unless the environment sets
    TINYGRAD_LM_NO_MALLOC_TUNE=1), and a program using the library may. What it measurably
    buys and costs: docs/performance.md."""
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, limit)) and bool(libc.mallopt(m_trim_threshold, limit))
    except (OSError, AttributeError):
        return False


# ================================================================ fused CUDA kernels: the dispatch seam
# Ops keep one code path: their numpy code. A method that a hand-written CUDA kernel can do
# instead (a fused op's forward and backward, an optimizer's step) is marked with
# `@backend.kernel("name")`; for cupy arrays, with kernels enabled, the call goes to
# tinygrad_lm/kernels (ops.py: the host side, *.cu: the kernels), and everything else runs the
# method as written. With kernels disabled, cupy arrays run the same numpy code through cupy
# (the generic path, the reference every kernel is tested against).
_use_kernels = os.environ.get("TINYGRAD_LM_KERNELS", "1") != "0"
_host_kernel_runtime = None   # runs the kernels on numpy arrays: set only by the CPU emulation under tests/


class use_kernels:
    """`use_kernels(True|False)`: run the fused CUDA kernels for cupy arrays (the default; the
    environment variable TINYGRAD_LM_KERNELS=0 starts with them off), or the generic cupy path.
    Takes effect at once; as a context manager it restores the previous choice on exit. A node
    recorded by a kernel forward still runs the kernel backward (what forward saved differs)."""

    def __init__(self, enabled: bool = True):
        global _use_kernels
        self.prev, _use_kernels = _use_kernels, bool(enabled)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _use_kernels
        _use_kernels = self.prev


def kernels_enabled() -> bool:
    return _use_kernels


def host_kernel_runtime():
    return _host_kernel_runtime


def set_host_kernel_runtime(runtime):
    """Run the kernels on numpy arrays with `runtime` (None: never). Only the CPU emulation of
    the CUDA kernels under tests/ uses this; returns the previous runtime."""
    global _host_kernel_runtime
    prev, _host_kernel_runtime = _host_kernel_runtime, runtime
    return prev


def kernel_launches() -> int:
    """Fused kernels launched so far (tinygrad_lm's own kernels only; cupy's generic kernels
    are not counted). The benchmark reads it before and after a step."""
    return kernels.launch_count()


def kernel(name: str):
    """Mark `forward` / `backward` (of a Function) or `step` (of an optimizer) as done by the
    CUDA kernel `name` (a key of tinygrad_lm.kernels.ops.OPS) where one applies.

    forward / step: when kernels are enabled and cupy is loaded (or a host runtime is set),
    OPS[name].runtime(runtimes, ...) is handed where kernels can run (`kernels.Runtimes`: the
    cupy module, the host runtime), looks at the arguments (array type, dtype, layout,
    options) and returns the runtime to run them on, or None to run the method itself. forward records
    that runtime on the node, and backward follows the forward: the kernel backward for a node
    the kernel forward recorded, the method otherwise."""
    import functools

    def deco(method):
        kind = method.__name__
        if kind == "backward":
            def wrapper(ctx, *args, **kw):
                rt = ctx.__dict__.get("_kernel_rt")
                if rt is None:
                    return method(ctx, *args, **kw)
                return kernel_ops.OPS[name].backward(rt, ctx, *args, **kw)
        else:
            def wrapper(obj, *args, **kw):
                if _use_kernels and (_cupy is not None or _host_kernel_runtime is not None) and not (
                        args and type(args[0]) is np.ndarray and _host_kernel_runtime is None):
                    impl = kernel_ops.OPS[name]
                    rt = impl.runtime(kernels.Runtimes(_cupy, _host_kernel_runtime), obj, *args, **kw)
                    if rt is not None:
                        if kind == "forward":
                            obj._kernel_rt = rt
                        return getattr(impl, kind)(rt, obj, *args, **kw)
                return method(obj, *args, **kw)
        return functools.wraps(method)(wrapper)
    return deco


# the device generator's masks take the dropout kernel where one applies (`kernel` is defined
# after the class, so the method is wrapped here)
DeviceGenerator.dropout_mask = kernel("dropout_mask")(DeviceGenerator.dropout_mask)


def nccl():
    """cupy's NCCL bindings (`cupy.cuda.nccl`, for data-parallel GPU all-reduce in
    distributed.py), or None where cupy, a GPU or the NCCL library is missing."""
    if _import_cupy() is None:
        return None
    try:
        import cupy.cuda.nccl as nccl_module  # a submodule: `import cupy` does not load it
    except ImportError:
        return None
    return nccl_module if getattr(nccl_module, "available", True) else None
