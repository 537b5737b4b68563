"""The backend seam: the only module that knows numpy from cupy.

A device name ("cpu", "cuda", "cuda:1") maps to an array module (`numpy` or
`cupy`). Everything above asks this module for `xp` instead of importing an
array library for math, so an op is written once and runs on both backends.
cupy is imported lazily, on first use of a "cuda" device, so a CPU-only machine
never needs it.
"""
from __future__ import annotations

import os

import numpy as np

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


def set_tf32(enabled: bool) -> None:
    """Allow TensorFloat-32 in GPU matmuls (faster, ~10-bit mantissa). Off by default so
    CPU and GPU results agree to float32 precision. No effect on the CPU."""
    global _tf32
    _tf32 = bool(enabled)
    cp = _import_cupy()
    if cp is not None:
        import os
        # cupy reads CUPY_TF32 when it creates a cuBLAS handle; set both ways.
        os.environ["CUPY_TF32"] = "1" if _tf32 else "0"
        try:
            cp._core.set_allow_tf32(_tf32) if hasattr(cp._core, "set_allow_tf32") else None
        except Exception:
            pass


def tf32_enabled() -> bool:
    return _tf32


# ---------------------------------------------------------------- kernels that differ by backend
def scatter_add(target, index, values) -> None:
    """target[index] += values, accumulating repeated indices (np.add.at semantics), in place."""
    if type(target) is np.ndarray:
        np.add.at(target, index, values)
    else:
        import cupyx
        cupyx.scatter_add(target, index, values)


def index_add_rows(num_rows: int, index, values):
    """out[r] = sum of values[i] over i with index[i] == r; out has shape (num_rows, C).

    `index` is 1-D (N,), `values` is (N, C). This is the embedding backward. On numpy: sort
    the indices, then sum each run of equal ones with `add.reduceat` (O(N*C), float32 sums in
    index order; `np.add.at` is unbuffered and 5-10x slower). reduceat pays a per-row overhead,
    so rows whose index occurs once are copied with one fancy-index assignment instead, and
    only the repeated ones go through reduceat: 3.4x faster for a 50257-row table with 8192
    indices, where most indices are distinct. Indices that are all distinct (a position
    embedding) are one assignment. Measured and rejected for small tables: a one-hot matmul
    (onehot(R, N) @ values) and `np.bincount` with weights were no faster at GPT's
    (65 rows, 768 indices, 128 wide) and the matmul collapses when BLAS threads have to share
    the cores. On cupy an atomic scatter-add kernel does it.
    """
    xp = array_module(values)
    out = xp.zeros((num_rows,) + values.shape[1:], dtype=values.dtype)
    n = index.shape[0]
    if n == 0:
        return out
    if xp is not np:
        import cupyx
        cupyx.scatter_add(out, index, values)
        return out
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
    """Keep freed heap memory inside the process (glibc only; a no-op elsewhere).

    By default glibc returns every freed block above ~128 KB to the OS (mmap/munmap), so each
    new temporary of a training step pays page faults again: on a 2-core VM, `2.0 * (a + b)`
    on 1 MB arrays took 1.5 ms instead of 0.06 ms. Raising the mmap and trim thresholds lets
    the next step reuse warm pages. Called once when tinygrad_lm is imported, unless the
    environment sets TINYGRAD_LM_NO_MALLOC_TUNE=1; the cost is that resident memory stays
    near its peak. Returns whether it applied."""
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, limit)) and bool(libc.mallopt(m_trim_threshold, limit))
    except (OSError, AttributeError):
        return False


if os.environ.get("TINYGRAD_LM_NO_MALLOC_TUNE") != "1":
    tune_host_allocator()


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
