"""CPU emulation of the CUDA kernels: checks the kernels' arithmetic and indexing, not the GPU
(no real warps, memory model or speed).

The kernel sources of tinygrad_lm/kernels, exactly as NVRTC gets them, are compiled with g++
against emu.h (which defines the CUDA built-ins they use) into one shared library, cached per
source hash under the temp dir. `EmuRuntime` launches them through ctypes with the argument
list cupy would pass (pointers, numpy scalars, by-value structs); the launcher checks every
argument's size and kind against the kernel's signature. Plugged in with
`backend.set_host_kernel_runtime(EmuRuntime())`, numpy arrays take the kernel path of every op
marked with `backend.kernel`, so the same host code (tinygrad_lm/kernels/ops.py) runs as on a GPU.

Scheduling: a block's threads are fibers; a warp runs as far as it can (through its shuffles)
before the next warp gets a turn, so a warp can overwrite shared memory another has not read yet
when a __syncthreads is missing. Removing any one of the kernels' 12 __syncthreads (by hand,
one at a time) made tests/test_kernels_emulated.py fail, except the first one of
block_maxsum, which no kernel needs today (each calls it once, so its scratch is never reused);
before warps could run ahead, block_reduce's first barrier and the attention tiles' first
barriers went unnoticed.

What it catches: wrong formulas, indexing and tiling errors (odd sizes, partial tiles), reads of
memory a kernel never wrote (arrays it allocates start as NaN; dynamic shared memory too),
writes past the end of an array (NaN guard zones around every array it allocates or is given
through `guarded`, checked after each launch), missing or divergent __syncthreads, shuffles in
a warp whose lanes returned, argument type mismatches. What it cannot: data races the fiber
schedule happens not to expose, real warp timing, the memory model, atomics' ordering, the GPU's
math library (g++'s libm stands in; results agree to a few ulps), -ftz, speed.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import weakref
from pathlib import Path

import numpy as np

from tinygrad_lm import kernels as K

HERE = Path(__file__).resolve().parent
# kernels of the emulation's own tests (deliberately broken ones), compiled beside the package's
SELFTEST = {"selftest.cu": ("selftest_reverse", "selftest_early_return", "selftest_overflow", "selftest_warp_sum",
                             "selftest_reduce_twice")}
CXX = os.environ.get("CXX", "g++")
FLAGS = ["-std=c++17", "-O1", "-fPIC", "-fno-strict-aliasing", "-Wall", "-Wno-unknown-pragmas",
         "-Wno-unused-function", "-Wno-unused-variable"]
if os.uname().machine in ("x86_64", "AMD64"):
    FLAGS.append("-fcf-protection=none")      # the fiber switch returns into a fresh stack


class EmulationError(RuntimeError):
    """A kernel did something the emulation flags: a bad argument, a barrier problem, an
    out-of-bounds write."""


_compiler_checked: list = []


def compiler_available() -> str | None:
    """None when a C++17 compiler takes the emulation's flags, else why not."""
    if not _compiler_checked:
        why = None
        if shutil.which(CXX) is None:
            why = f"no C++ compiler ({CXX}) on PATH"
        else:
            r = subprocess.run([CXX, *FLAGS, "-fsyntax-only", "-x", "c++", "-"], input="#include <type_traits>\n"
                               "static_assert(std::is_pointer_v<int*>);\n", capture_output=True, text=True)
            if r.returncode:
                why = f"{CXX} does not compile C++17 with the emulation's flags: {r.stderr.strip()[:200]}"
        _compiler_checked.append(why)
    return _compiler_checked[0]


def _sources() -> dict:
    return {**K.SOURCES, **SELFTEST}


def _text(file: str) -> str:
    """A file's text as the compilers get it; the selftest file includes common.cuh like the rest."""
    if file in K.SOURCES:
        return K.load_source(file)
    return K.load_source("common.cuh") + f'#line 1 "{file}"\n' + "\n".join(
        line for line in (HERE / file).read_text().splitlines() if not line.startswith('#include "common.cuh"')) + "\n"


def _symbol(file: str, name: str) -> str:
    return "emu_launch_" + re.sub(r"\W", "_", file.replace(".cu", "") + "__" + name)


def _unit(files) -> str:
    """A translation unit with the kernels of `files` and one extern "C" launcher per name
    expression (common.cuh, inlined in every file, has an include guard)."""
    lines = ['#include "emu.h"'] + [f'#include "{f}.inl"' for f in files] + [""]
    for file in files:
        for name in _sources()[file]:
            lines.append(
                f'extern "C" int {_symbol(file, name)}(const unsigned* g, const unsigned* b, unsigned long long s, '
                f"void** a, const long long* sz, const int* p, const long long* el, int n, int rev, char* err, "
                f"int len) {{ return emu::launch(&{name}, g, b, s, a, sz, p, el, n, rev, err, len); }}")
    return "\n".join(lines) + "\n"


def _units() -> dict:
    """Two units of kernels, so that two cores compile them in about the same time."""
    heavy = [f for f in _sources() if f == "attention.cu"]
    rest = [f for f in _sources() if f not in heavy]
    return {"kernels_1.cpp": _unit(rest) + _probe_code(rest), "kernels_2.cpp": _unit(heavy) + _probe_code(heavy)}


# C structs passed by value, the file that defines each, and the numpy dtype the host builds it
# with: probes report the C layout (sizeof, offsetof) so a test can hold the two together.
def struct_twins() -> dict:
    from tinygrad_lm.kernels import ops
    twins = {"Layout": ("attention.cu", ops.LAYOUT), "AttnDims": ("attention.cu", ops.DIMS)}
    for t, dt in (("float", np.float32), ("double", np.float64)):
        table = ops.adamw_table_dtype(np.dtype(dt))
        twins[f"AdamWTable<{t}>"] = ("adamw.cu", table)
        twins[f"AdamWSlot<{t}>"] = ("adamw.cu", table.fields["slot"][0].base)
    return twins


def _probe_code(files) -> str:
    lines = ["#include <cstddef>"]
    for i, (ctype, (file, dt)) in enumerate(struct_twins().items()):
        if file not in files:
            continue
        lines.append(f"typedef {ctype} probe_t{i};")
        lines.append(f'extern "C" long long emu_sizeof_{i}() {{ return sizeof(probe_t{i}); }}')
        for j, f in enumerate(dt.names):
            lines.append(f'extern "C" long long emu_offsetof_{i}_{j}() {{ return offsetof(probe_t{i}, {f}); }}')
    return "\n".join(lines) + "\n"


def c_layout(lib, i, dt):
    """(sizeof, {field: offsetof}) of struct twin number i, from the compiled probes."""
    def call(sym):
        f = getattr(lib, sym)
        f.restype = ctypes.c_longlong
        return f()
    return call(f"emu_sizeof_{i}"), {f: call(f"emu_offsetof_{i}_{j}") for j, f in enumerate(dt.names)}


def build() -> Path:
    """Compile (or find in the cache) the library of every kernel; returns its path."""
    texts = {"emu.h": (HERE / "emu.h").read_text(), "emu_core.cpp": (HERE / "emu_core.cpp").read_text()}
    for f in _sources():
        texts[f + ".inl"] = _text(f)
    texts.update(_units())
    h = hashlib.sha256()
    version = subprocess.run([CXX, "--version"], capture_output=True, text=True).stdout
    for k in sorted(texts):
        h.update(k.encode() + b"\0" + texts[k].encode() + b"\0")
    h.update((version + " ".join(FLAGS)).encode())
    cache = Path(tempfile.gettempdir()) / "tinygrad_lm_cuda_emulation"
    lib = cache / f"{h.hexdigest()[:24]}.so"
    if lib.exists():
        return lib
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=cache))
    try:
        for k, t in texts.items():
            (work / k).write_text(t)
        units = ["kernels_2.cpp", "kernels_1.cpp", "emu_core.cpp"]
        procs = []
        for u in units:                                   # compile the units two at a time
            procs.append((u, subprocess.Popen([CXX, *FLAGS, "-c", u, "-o", u + ".o"], cwd=work,
                                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
            if len(procs) >= 2:
                _wait(procs.pop(0))
        for p in procs:
            _wait(p)
        tmp = work / "lib.so"
        r = subprocess.run([CXX, "-shared", "-o", str(tmp), *[u + ".o" for u in units]], cwd=work,
                           capture_output=True, text=True)
        if r.returncode:
            raise EmulationError(f"linking the emulation failed:\n{r.stdout}{r.stderr}")
        os.replace(tmp, lib)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return lib


def _wait(item):
    unit, proc = item
    out, _ = proc.communicate()
    if proc.returncode:
        raise EmulationError(f"compiling {unit} for the CPU emulation failed:\n{out}")


_GUARD = 64          # bytes of NaN (0xFF) before and after every guarded array


class EmuRuntime:
    """The kernels' runtime on the CPU (see the module docstring). `reverse=True` runs blocks and
    the threads of each block in reverse order."""
    name = "cpu-emulation"

    def __init__(self, reverse: bool = False, sm_count: int = 3):
        self.lib = ctypes.CDLL(str(build()))
        self.reverse = reverse
        self._sm = sm_count
        self._fns: dict = {}
        self._guarded: list = []          # (weakref to buffer, byte ranges of its two guards)
        self.launched: list = []          # names of the kernels launched, in order

    # --- the runtime interface of tinygrad_lm.kernels
    def owns(self, arr) -> bool:
        return type(arr) is np.ndarray

    def function(self, file: str, name: str):
        key = (file, name)
        fn = self._fns.get(key)
        if fn is None:
            fn = getattr(self.lib, _symbol(file, name))
            fn.restype = ctypes.c_int
            fn.name_expression = name
            self._fns[key] = fn
        return fn

    def launch(self, fn, grid, block, args, shared_mem: int) -> None:
        n = len(args)
        keep, ptrs = [], (ctypes.c_void_p * n)()
        sizes, is_ptr, elems = (ctypes.c_longlong * n)(), (ctypes.c_int * n)(), (ctypes.c_longlong * n)()
        for i, a in enumerate(args):
            if a is None:
                buf, is_ptr[i], sizes[i], elems[i] = ctypes.c_uint64(0), 1, 8, 0
            elif isinstance(a, np.ndarray):
                buf, is_ptr[i], sizes[i], elems[i] = ctypes.c_uint64(a.ctypes.data), 1, 8, a.itemsize
            elif isinstance(a, (K.ByValue, np.generic)):
                raw = (a.array if isinstance(a, K.ByValue) else a).tobytes()
                buf, is_ptr[i], sizes[i], elems[i] = ctypes.create_string_buffer(raw, len(raw)), 0, len(raw), 0
            else:
                raise EmulationError(f"{fn.name_expression}: argument {i} is a {type(a).__name__}; pass numpy scalars "
                                     "(np.int32, np.float32, ...) so that its C type is fixed, as cupy needs")
            keep.append(buf)
            ptrs[i] = ctypes.cast(ctypes.pointer(buf), ctypes.c_void_p)
        g = (ctypes.c_uint * 3)(*(tuple(grid) + (1, 1, 1))[:3])
        b = (ctypes.c_uint * 3)(*(tuple(block) + (1, 1, 1))[:3])
        err = ctypes.create_string_buffer(1024)
        rc = fn(g, b, ctypes.c_ulonglong(shared_mem), ptrs, sizes, is_ptr, elems, n, int(self.reverse), err, 1024)
        self.launched.append(fn.name_expression)
        if rc:
            raise EmulationError(f"{fn.name_expression}: {err.value.decode()}")
        self.check_guards(fn.name_expression)

    def device(self, name: str):
        """The host has one device ("cpu"): nothing to switch."""
        return contextlib.nullcontext()

    def sm_count(self) -> int:
        return self._sm

    def max_shared(self) -> int:
        return 227 * 1024

    def empty(self, shape, dtype):
        """A guarded array filled with 0xFF bytes (NaN for floats): a kernel that leaves an
        entry unwritten leaves a NaN."""
        return self._guarded_empty(shape, np.dtype(dtype))

    def contiguous(self, a):
        return np.ascontiguousarray(a)

    @staticmethod
    def ptr(a) -> int:
        return a.ctypes.data

    # --- guards
    def _guarded_empty(self, shape, dtype):
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        pad = (-nbytes) % 16
        buf = np.full(_GUARD + nbytes + pad + _GUARD, 0xFF, dtype=np.uint8)
        arr = buf[_GUARD:_GUARD + nbytes].view(dtype).reshape(shape)
        self._guarded.append((weakref.ref(buf), nbytes, shape, dtype))
        return arr

    def guarded(self, a):
        """A copy of array `a` inside NaN guard zones (for a kernel's inputs)."""
        out = self._guarded_empty(a.shape, a.dtype)
        out[...] = a
        return out

    def check_guards(self, what="a kernel"):
        alive = []
        for ref, nbytes, shape, dtype in self._guarded:
            buf = ref()
            if buf is None:
                continue
            alive.append((ref, nbytes, shape, dtype))
            head, tail = buf[:_GUARD], buf[_GUARD + nbytes:]
            if (head != 0xFF).any() or (tail != 0xFF).any():
                side = "before the start" if (head != 0xFF).any() else "past the end"
                raise EmulationError(f"{what} wrote {side} of a {dtype} array of shape {shape}")
        self._guarded = alive


_runtimes: dict = {}


def runtime(reverse: bool = False) -> EmuRuntime:
    """A shared EmuRuntime (the library loads once per process)."""
    rt = _runtimes.get(reverse)
    if rt is None:
        rt = _runtimes[reverse] = EmuRuntime(reverse=reverse)
    return rt


# ================================================================ the cupy stand-in's RawModule
_SM90_LIMITS = {"MultiProcessorCount": 132, "MaxSharedMemoryPerBlockOptin": 227 * 1024}   # an H100 / H200


def attach_to_standin(standin):
    """Let the numpy-backed cupy stand-in (tests/cupy_standin) run tinygrad_lm's CUDA kernels: it
    compiles no CUDA, so its `cupy.RawModule` becomes one whose kernels run through this
    emulation on the stand-in arrays' numpy buffers, with cupy's calling convention (stand-in
    arrays as pointers, size-1 numpy arrays as by-value structs, numpy scalars, None as a null
    pointer; above 48 KB of dynamic shared memory the kernel must have been opted in, as on a
    GPU). Each launch counts as one stand-in launch ("kernel:<name>"). `Device.attributes`, which
    the stand-in lacks, reports an sm_90 GPU's limits. Without a C++ compiler the kernels are
    switched off instead (the generic cupy path runs). Returns a function that undoes it all."""
    from tinygrad_lm import backend
    cupy_mod = standin._make_modules()["cupy"]
    if compiler_available() is not None:
        prev = backend.kernels_enabled()
        backend.use_kernels(False)
        return lambda: backend.use_kernels(prev)
    rt = runtime()

    class RawKernel:
        def __init__(self, file, name):
            self.file, self.name, self.max_dynamic_shared_size_bytes = file, name, 48 * 1024

        def __call__(self, grid, block, args, *, shared_mem=0):
            if shared_mem > self.max_dynamic_shared_size_bytes:
                raise standin.CUDARuntimeError(f"{self.name}: {shared_mem} bytes of dynamic shared memory without "
                                               "opting in (max_dynamic_shared_size_bytes)")
            standin._launch(f"kernel:{self.name}")
            out = []
            for a in args:
                if isinstance(a, standin.ndarray):
                    out.append(a._a)
                elif isinstance(a, np.ndarray):
                    out.append(K.ByValue(a))            # cupy passes size-1 numpy arrays by value
                else:
                    out.append(a)
            rt.launch(rt.function(self.file, self.name), grid, block, tuple(out), shared_mem)

    class RawModule:
        def __init__(self, *, code=None, path=None, options=(), backend="nvrtc", translate_cucomplex=False,
                     enable_cooperative_groups=False, name_expressions=None, jitify=None):
            files = [f for f in K.SOURCES if K.load_source(f) == code]
            if not files:
                raise NotImplementedError("the stand-in's RawModule runs only tinygrad_lm's own kernel sources")
            self.file, self.names, self._kernels = files[0], tuple(name_expressions or ()), {}

        def get_function(self, name):
            if name not in self.names:                  # NVRTC lowers only the declared name expressions
                raise standin.CUDARuntimeError(f"{name} is not one of the module's name expressions")
            return self._kernels.setdefault(name, RawKernel(self.file, name))

    saved = cupy_mod.__dict__.get("RawModule")
    cupy_mod.__dict__["RawModule"] = RawModule
    standin.Device.attributes = property(lambda self: dict(_SM90_LIMITS))

    def detach():
        cupy_mod.__dict__.pop("RawModule", None)
        if saved is not None:
            cupy_mod.__dict__["RawModule"] = saved
        del standin.Device.attributes
    return detach
