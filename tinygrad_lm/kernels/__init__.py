"""Hand-written CUDA kernels for the fused ops and AdamW, and the host code that launches them.

Where this sits: `backend.kernel(name)` marks the methods a kernel can replace (the fused ops'
forward/backward in `ops/`, `AdamW.step`); for cupy arrays, with kernels enabled, the backend
sends the call here, and everything else runs the method's own numpy code, which is each
kernel's twin and the reference it is tested against. The arrow points one way: the backend
imports this package, which imports nothing from the rest of tinygrad_lm (the backend hands it
what it needs at each call: the cupy module and the host runtime, as `Runtimes`). This
package holds:

* the CUDA C sources, one file per op family (`softmax.cu`, `cross_entropy.cu`, `layernorm.cu`,
  `gelu.cu`, `attention.cu`, `adamw.cu`, `dropout.cu`) and the helpers they share (`common.cuh`); each file
  starts with the math it computes, forward and backward;
* `SOURCES`: per file, the template instantiations the host launches ("softmax_fwd<float>");
* `load_source(file)`: the text every compiler gets (NVRTC through cupy, the compile check in
  `nvrtc.py`, the CPU emulation under tests/): local includes inlined, with #line markers so
  diagnostics name the original file and line;
* `CupyRuntime`: compiles each file once per device with `cupy.RawModule` and launches;
  `Runtimes`: which runtime runs the kernels on an array or a device;
* `ops.py`: the host side of each kernel (grid and block, what forward saves, backward).

Every launch goes through `launch()`, which counts it (`launch_count()`): the benchmark reports
kernel launches per training step from that counter.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

DIR = Path(__file__).resolve().parent

# file -> the name expressions (template instantiations) the host launches from it
_FLOATS = ("float", "double")
SOURCES: dict[str, tuple[str, ...]] = {
    "softmax.cu": tuple(f"{k}<{t}>" for k in ("softmax_fwd", "log_softmax_fwd", "softmax_bwd", "log_softmax_bwd")
                        for t in _FLOATS),
    "cross_entropy.cu": tuple(f"{k}<{t}>" for k in ("cross_entropy_fwd", "cross_entropy_reduce", "cross_entropy_bwd")
                              for t in _FLOATS),
    "layernorm.cu": tuple(f"{k}<{t}>" for k in ("layernorm_fwd", "layernorm_bwd", "layernorm_param_bwd") for t in _FLOATS),
    "gelu.cu": tuple(f"{k}<{t}>" for k in ("gelu_fwd", "gelu_bwd") for t in _FLOATS),
    "attention.cu": tuple(f"attn_bwd_delta<{t}>" for t in _FLOATS)
    + tuple(f"{k}<{t}, {nk}>" for k in ("attn_fwd", "attn_bwd_dkdv", "attn_bwd_dq") for t in _FLOATS for nk in (1, 2, 4)),
    "adamw.cu": tuple(f"adamw_step<{t}>" for t in _FLOATS),
    "dropout.cu": tuple(f"dropout_mask<{t}>" for t in _FLOATS),
}

# NVRTC options for every file. cupy adds -ftz=true and the -arch of the device itself;
# the compile check adds the same (CHECK_OPTIONS) and an explicit architecture.
OPTIONS: tuple[str, ...] = ("--std=c++17",)
CUPY_ADDED_OPTIONS: tuple[str, ...] = ("-ftz=true",)

CTYPE = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$')


def load_source(name: str) -> str:
    """The source of kernel file `name` with its local `#include "..."` lines replaced by the
    included text, framed by #line directives (each local file is inlined where it is included;
    the files include only common.cuh, once)."""
    out = [f'#line 1 "{name}"']
    for lineno, line in enumerate((DIR / name).read_text().splitlines(), 1):
        m = _INCLUDE.match(line)
        if m and (DIR / m.group(1)).is_file():
            out.append(f'#line 1 "{m.group(1)}"')
            out.extend((DIR / m.group(1)).read_text().splitlines())
            out.append(f'#line {lineno + 1} "{name}"')
        else:
            out.append(line)
    return "\n".join(out) + "\n"


class ByValue:
    """A kernel argument passed by value as raw bytes: a size-1 numpy array of a structured
    dtype laid out as the kernel's C struct (cupy passes such arrays by value)."""
    __slots__ = ("array",)

    def __init__(self, array: np.ndarray):
        if array.size != 1:
            raise ValueError(f"ByValue: expected a size-1 structured array, got shape {array.shape}")
        self.array = array


# ---------------------------------------------------------------- launch counting
_launches = 0
_by_name: dict = {}


def launch_count() -> int:
    """Kernels launched through this package since the process started (or the last reset)."""
    return _launches


def launch_counts() -> dict:
    """name expression -> launches so far (a copy)."""
    return dict(_by_name)


def reset_launch_count() -> None:
    global _launches
    _launches = 0
    _by_name.clear()


def launch(rt, file: str, name: str, grid, block, args, shared_mem: int = 0) -> None:
    """Launch kernel `name` (a name expression of `file`) on runtime `rt`."""
    global _launches
    _launches += 1
    _by_name[name] = _by_name.get(name, 0) + 1
    rt.launch(rt.function(file, name), tuple(grid), tuple(block), tuple(args), int(shared_mem))


# ---------------------------------------------------------------- the cupy runtime
class CupyRuntime:
    """Kernels on an NVIDIA GPU through cupy: one `cupy.RawModule` per (device, file), compiled
    by NVRTC on first use (cupy caches the binary on disk)."""
    name = "cupy"

    def __init__(self, cp):
        self.cp = cp
        self._modules: dict = {}
        self._functions: dict = {}
        self._device_limits: dict = {}

    def owns(self, arr) -> bool:
        return isinstance(arr, self.cp.ndarray)

    def function(self, file: str, name: str):
        dev = self.cp.cuda.Device().id
        key = (dev, file, name)
        fn = self._functions.get(key)
        if fn is None:
            mod = self._modules.get((dev, file))
            if mod is None:
                mod = self._modules[(dev, file)] = self.cp.RawModule(code=load_source(file), options=OPTIONS,
                                                                     name_expressions=SOURCES[file])
            fn = self._functions[key] = mod.get_function(name)
        return fn

    def launch(self, fn, grid, block, args, shared_mem: int) -> None:
        args = tuple(a.array if isinstance(a, ByValue) else a for a in args)
        if shared_mem > 48 * 1024 and fn.max_dynamic_shared_size_bytes < shared_mem:
            fn.max_dynamic_shared_size_bytes = shared_mem       # opt in above the default 48 KB
        fn(grid, block, args, shared_mem=shared_mem)

    def _limits(self):
        dev = self.cp.cuda.Device()
        lim = self._device_limits.get(dev.id)
        if lim is None:
            attrs = dev.attributes
            lim = self._device_limits[dev.id] = (int(attrs["MultiProcessorCount"]),
                                                 int(attrs.get("MaxSharedMemoryPerBlockOptin", 48 * 1024)))
        return lim

    def sm_count(self) -> int:
        return self._limits()[0]

    def max_shared(self) -> int:
        """The most dynamic shared memory one block may ask for (after opting in), in bytes."""
        return self._limits()[1]

    def device(self, name: str):
        """A context manager that makes device `name` ("cuda:N") current for allocations and launches."""
        return self.cp.cuda.Device(int(name[5:]))

    def empty(self, shape, dtype):
        return self.cp.empty(shape, dtype=dtype)

    def contiguous(self, a):
        return self.cp.ascontiguousarray(a)

    @staticmethod
    def ptr(a) -> int:
        return a.data.ptr


# ---------------------------------------------------------------- choosing a runtime
class Runtimes:
    """Where the kernels can run at this call, as the backend sees it: `cupy`, the cupy module
    (None before a GPU is used), and `host`, the runtime for numpy arrays (None, except under
    the CPU emulation in tests/). `backend.kernel` builds one per dispatch and hands it to the
    host code in ops.py, so this package imports nothing from the rest of tinygrad_lm: the
    backend knows the kernels, the kernels do not know the backend."""
    __slots__ = ("cupy", "host")

    def __init__(self, cupy, host):
        self.cupy, self.host = cupy, host

    def for_array(self, arr):
        """The runtime that runs kernels on `arr`'s arrays, or None: cupy arrays get the cupy
        runtime, numpy arrays the host runtime."""
        if type(arr) is np.ndarray:
            return self.host
        if self.cupy is not None and isinstance(arr, self.cupy.ndarray):
            return _cupy_rt(self.cupy)
        return None

    def for_device(self, device: str):
        """The runtime for arrays a kernel will create on `device` (a canonical name): the cupy
        runtime for "cuda:N", the host runtime (or None) for "cpu"."""
        if device == "cpu":
            return self.host
        return _cupy_rt(self.cupy) if self.cupy is not None else None


_cupy_runtime = None


def _cupy_rt(cp):
    global _cupy_runtime
    if _cupy_runtime is None or _cupy_runtime.cp is not cp:     # the cupy module can change (tests)
        _cupy_runtime = CupyRuntime(cp)
    return _cupy_runtime
