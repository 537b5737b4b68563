"""Compile the kernel sources with NVRTC, NVIDIA's runtime compiler, without a GPU.

NVRTC is a plain shared library: it compiles CUDA C++ to PTX or, given a real architecture
(`sm_80`), to a cubin (running ptxas inside), and needs no driver and no device. This module
calls it through ctypes, so checking that every kernel compiles needs only the library, e.g.
the `nvidia-cuda-nvrtc` wheel (`pip install -e ".[kernels-check]"`), not cupy or a GPU::

    python -m tinygrad_lm.kernels.nvrtc sm_80 sm_90
    python -m tinygrad_lm.kernels.nvrtc --resources sm_80     # registers and spills per kernel

prints each file's result and exits non-zero on any error or warning. The tests run the same
check (tests/test_kernels_compile.py) and skip when no NVRTC library is found.
"""
from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field

from . import CUPY_ADDED_OPTIONS, DIR, OPTIONS, SOURCES, load_source

# ptxas also warns about register spills to local memory (a silent slowdown otherwise)
CHECK_OPTIONS = OPTIONS + CUPY_ADDED_OPTIONS + ("--ptxas-options=--warn-on-spills",)


def _candidates():
    env = os.environ.get("TINYGRAD_LM_NVRTC")
    if env:
        yield env
    # the pip wheels: nvidia-cuda-nvrtc (CUDA 13: nvidia/cu13/lib) and nvidia-cuda-nvrtc-cu12
    # (nvidia/cuda_nvrtc/lib), found through the `nvidia` namespace package
    spec = importlib.util.find_spec("nvidia")
    for root in (list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else []):
        for pattern in ("cu13/lib/libnvrtc.so*", "cu12/lib/libnvrtc.so*", "cuda_nvrtc/lib/libnvrtc.so*",
                        "cu13/bin/nvrtc64*.dll", "cuda_nvrtc/bin/nvrtc64*.dll"):
            yield from sorted(p for p in glob.glob(os.path.join(root, pattern)) if "builtins" not in p)
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            yield from sorted(glob.glob(os.path.join(home, "lib64", "libnvrtc.so*")))
    yield "libnvrtc.so"


_lib = None


def find_library():
    """The loaded NVRTC library (ctypes.CDLL), or None when none can be loaded."""
    global _lib
    if _lib is None:
        for path in _candidates():
            try:
                lib = ctypes.CDLL(path)
                lib.nvrtcVersion  # noqa: B018  (a libnvrtc, not some other library)
            except (OSError, AttributeError):
                continue
            lib.nvrtcGetErrorString.restype = ctypes.c_char_p
            _lib = lib
            break
    return _lib


def version() -> tuple[int, int]:
    lib = find_library()
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return major.value, minor.value


def supported_archs() -> list[int]:
    lib = find_library()
    n = ctypes.c_int()
    lib.nvrtcGetNumSupportedArchs(ctypes.byref(n))
    archs = (ctypes.c_int * n.value)()
    lib.nvrtcGetSupportedArchs(archs)
    return list(archs)


@dataclass
class CompileResult:
    file: str
    arch: str
    ok: bool                      # NVRTC returned success
    log: str                      # errors and warnings (empty when there are none), mangled names replaced
    cubin_bytes: int = 0
    lowered: dict = field(default_factory=dict)   # name expression -> mangled kernel name

    @property
    def clean(self) -> bool:
        """Compiled, every name expression resolved, and not one diagnostic."""
        return self.ok and not self.log.strip() and len(self.lowered) == len(SOURCES[self.file]) and self.cubin_bytes > 0

    def report(self) -> str:
        head = f"{self.file} for {self.arch}: " + ("clean" if self.clean else "FAILED" if not self.ok else "diagnostics")
        return head + (f" ({self.cubin_bytes} bytes of cubin, {len(self.lowered)} kernels)" if self.ok else "") + \
            (("\n" + self.log.rstrip()) if self.log.strip() else "")


_DIAG = re.compile(r"^(?P<file>[\w.]+)\((?P<line>\d+)\): (?P<kind>error|warning)", re.M)
_FUNC = re.compile(r"(__global__|__device__)[^(]*?\b(\w+)\s*\(")


def _enclosing_function(file: str, line: int) -> str | None:
    """The kernel (or device function) whose body holds `line` of `file`: the nearest definition
    above it with no closing brace at column 0 in between."""
    path = DIR / file
    if not path.is_file():
        return None
    lines = path.read_text().splitlines()
    for i in range(min(line, len(lines)) - 1, -1, -1):
        if lines[i].startswith("}") and i != line - 1:
            return None
        m = _FUNC.search(lines[i])
        if m:
            return ("kernel " if m.group(1) == "__global__" else "function ") + m.group(2)
    return None


def _annotate(log: str) -> str:
    """Append "[in kernel NAME]" to each diagnostic's first line."""
    out = []
    for text in log.splitlines():
        m = _DIAG.match(text)
        where = _enclosing_function(m.group("file"), int(m.group("line"))) if m else None
        out.append(f"{text} [in {where}]" if where else text)
    return "\n".join(out) + ("\n" if log.endswith("\n") else "")


def _check(lib, rc, what):
    if rc != 0:
        raise RuntimeError(f"NVRTC {what} failed: {lib.nvrtcGetErrorString(rc).decode()}")


def compile_file(file: str, arch: str = "sm_80", extra_options=()) -> CompileResult:
    """Compile kernel file `file` (a key of SOURCES) with every name expression it declares,
    for `arch` (sm_XX: a cubin, so ptxas runs too). Returns the result; raises only when NVRTC
    itself cannot run."""
    lib = find_library()
    if lib is None:
        raise RuntimeError("no NVRTC library found: pip install -e \".[kernels-check]\" (the nvidia-cuda-nvrtc "
                           "wheel), or set TINYGRAD_LM_NVRTC to the path of libnvrtc")
    prog = ctypes.c_void_p()
    src = load_source(file).encode()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), src, file.encode(), 0, None, None), "nvrtcCreateProgram")
    try:
        names = SOURCES[file]
        for n in names:
            _check(lib, lib.nvrtcAddNameExpression(prog, n.encode()), f"nvrtcAddNameExpression({n})")
        opts = [o.encode() for o in CHECK_OPTIONS + tuple(extra_options) + (f"--gpu-architecture={arch}",)]
        rc = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value + 1)
        lib.nvrtcGetProgramLog(prog, buf)
        log = _annotate(buf.value.decode(errors="replace"))
        lowered, cubin = {}, 0
        if rc == 0:
            for n in names:
                out = ctypes.c_char_p()
                if lib.nvrtcGetLoweredName(prog, n.encode(), ctypes.byref(out)) == 0 and out.value:
                    lowered[n] = out.value.decode()
            cs = ctypes.c_size_t()
            if lib.nvrtcGetCUBINSize(prog, ctypes.byref(cs)) == 0:
                cubin = cs.value
        # ptxas names kernels by their mangled names: say which instantiation each one is
        for n, mangled in sorted(lowered.items(), key=lambda kv: -len(kv[1])):
            log = log.replace(mangled, f"{mangled} [{n}]")
        return CompileResult(file, arch, rc == 0, log, cubin, lowered)
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _compile_job(job):
    return compile_file(*job)


def compile_many(jobs, workers: int = 2) -> list:
    """compile_file(file, arch) for each (file, arch) in `jobs`, `workers` processes at a time
    (NVRTC compiles one program at a time per process); results in the order of `jobs`."""
    jobs = list(jobs)
    if workers <= 1 or len(jobs) <= 1:
        return [compile_file(*j) for j in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        return list(ex.map(_compile_job, jobs))


_ENTRY = re.compile(r"Compiling entry function '\S+ \[(?P<name>[^\]]+)\]' for '(?P<arch>\w+)'")
_USED = re.compile(r"Used (?P<regs>\d+) registers")
_SPILL = re.compile(r"(?P<stack>\d+) bytes stack frame, (?P<st>\d+) bytes spill stores, (?P<ld>\d+) bytes spill loads")


def resources(arch: str = "sm_80") -> list[dict]:
    """Per kernel instantiation, ptxas's report for `arch`: registers per thread and bytes of
    stack and spills (shared memory is dynamic for the attention kernels: see ops.py)."""
    rows = []
    for file in SOURCES:
        r = compile_file(file, arch, ("--ptxas-options=-v",))
        cur = None
        for line in r.log.splitlines():
            m = _ENTRY.search(line)
            if m:
                cur = {"file": file, "kernel": m.group("name"), "arch": m.group("arch")}
                rows.append(cur)
            elif cur is not None and (m := _SPILL.search(line)):
                cur.update(stack=int(m.group("stack")), spill_stores=int(m.group("st")), spill_loads=int(m.group("ld")))
            elif cur is not None and (m := _USED.search(line)):
                cur["registers"] = int(m.group("regs"))
    return rows


def main(argv=None) -> int:
    argv = list(argv if argv is not None else sys.argv[1:])
    if argv[:1] == ["--resources"]:
        if find_library() is None:
            print("no NVRTC library found: pip install -e \".[kernels-check]\"", file=sys.stderr)
            return 2
        for arch in argv[1:] or ["sm_80"]:
            print(f"| kernel ({arch}) | registers | spill stores / loads (bytes) |\n| --- | --- | --- |")
            for row in resources(arch):
                print(f"| `{row['kernel']}` | {row.get('registers', '?')} | {row.get('spill_stores', '?')} / "
                      f"{row.get('spill_loads', '?')} |")
        return 0
    archs = argv or ["sm_80", "sm_90"]
    if find_library() is None:
        print("no NVRTC library found: pip install -e \".[kernels-check]\"", file=sys.stderr)
        return 2
    print(f"NVRTC {'.'.join(map(str, version()))}; options: {' '.join(CHECK_OPTIONS)}")
    bad = 0
    for r in compile_many([(file, arch) for arch in archs for file in SOURCES], workers=os.cpu_count() or 1):
        print(r.report())
        bad += not r.clean
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
