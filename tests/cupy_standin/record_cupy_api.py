"""Record the real cupy package's API into `cupy_api.json`, the manifest the stand-in obeys.

Run it where the real cupy imports (no GPU or driver needed: only names and signatures
are read):

    python -m venv venv-cupy
    venv-cupy/bin/pip install numpy 'cupy-cuda13x==14.2.*' 'nvidia-cublas==13.*'
    venv-cupy/bin/python tests/cupy_standin/record_cupy_api.py

(`nvidia-cublas` only lets `cupy.cuda.cublas` import, so its names can be read too.)

What is recorded, for each module below: every public name, its kind (function, ufunc,
class, module, constant, or "numpy" when cupy re-exports numpy's own object) and, for
functions and methods, the parameter names (from `inspect.signature`, or from the
signature line Cython embeds in the docstring). For cupy's ufuncs: nin, nout and which of
`at` / `reduce` / `accumulate` / `reduceat` really work (cupy 14 implements `at` only where
the ufunc has a scatter op, `reduce`/`accumulate` only for add and multiply, `reduceat`
only for add: cupy/_core/_kernel.pyx). For the classes the code touches (ndarray, Device,
Stream, Event, the random generators, the kernel classes): their attributes and methods.
"""
from __future__ import annotations

import inspect
import json
import re
import sys
import types
from pathlib import Path

import numpy
import cupy
import cupyx
import cupyx.scipy.special

OUT = Path(__file__).with_name("cupy_api.json")

MODULES = ["cupy", "cupyx", "cupyx.scipy.special", "cupy.random", "cupy.linalg", "cupy.cuda",
           "cupy.cuda.runtime", "cupy.cuda.device", "cupy.cuda.cublas", "cupy.cuda.stream",
           "cupy.cuda.memory", "cupy.cuda.nvtx", "cupy.testing"]
# private corners the package uses on purpose (the TF32 switch): only these names
PRIVATE = {"cupy._core": ["set_compute_type", "get_compute_type"],
           "cupy._core._routines_linalg": None}  # None: every public name of the module
CLASSES = {"cupy.ndarray": "cupy.ndarray", "cupy.ufunc": "cupy.ufunc", "cupy.cuda.Device": "cupy.cuda.Device",
           "cupy.cuda.Stream": "cupy.cuda.Stream", "cupy.cuda.Event": "cupy.cuda.Event",
           "cupy.cuda.MemoryPointer": "cupy.cuda.MemoryPointer", "cupy.cuda.MemoryPool": "cupy.cuda.MemoryPool",
           "cupy.random.Generator": "cupy.random.Generator", "cupy.random.RandomState": "cupy.random.RandomState",
           "cupy.RawKernel": "cupy.RawKernel", "cupy.RawModule": "cupy.RawModule",
           "cupy.ElementwiseKernel": "cupy.ElementwiseKernel", "cupy.ReductionKernel": "cupy.ReductionKernel",
           "cupy.flags": None}


def _resolve(path):
    obj = None
    parts = path.split(".")
    obj = sys.modules.get(parts[0]) or __import__(parts[0])
    for p in parts[1:]:
        obj = getattr(obj, p)
    return obj


_SIG_LINE = re.compile(r"^[\w.]*?(\w+)\((.*)\)(\s*->.*)?$")


def _params_from_doc(obj):
    """Cython's embedded signature, 'name(self, a, int b=1, *args, c=None, **kw) -> T'."""
    doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    if not doc:
        return None
    m = _SIG_LINE.match(doc[0].strip())
    if not m:
        return None
    out, kw_only = [], False
    depth, cur, items = 0, "", []
    for ch in m.group(2):  # split on top-level commas only (defaults may hold tuples)
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        items.append(cur)
    for raw in items:
        raw = raw.strip()
        if raw == "*":
            kw_only = True
            continue
        if raw == "/":
            continue
        has_default = "=" in raw
        head = raw.split("=", 1)[0].strip()
        if head.startswith("**"):
            out.append([head[2:], "VAR_KEYWORD", False])
            continue
        if head.startswith("*"):
            out.append([head[1:], "VAR_POSITIONAL", False])
            kw_only = True
            continue
        name = head.split()[-1].lstrip("*")  # drop a C type: 'intptr_t handle' -> 'handle'
        name = name.split(":")[0]
        out.append([name, "KEYWORD_ONLY" if kw_only else "POSITIONAL_OR_KEYWORD", has_default])
    return out


def params_of(obj, drop_self=False):
    try:
        sig = inspect.signature(obj)
        ps = [[p.name, p.kind.name, p.default is not inspect.Parameter.empty] for p in sig.parameters.values()]
    except (TypeError, ValueError):
        ps = _params_from_doc(obj)
    if ps is not None and drop_self and ps and ps[0][0] == "self":
        ps = ps[1:]
    return ps


def _numpy_alias(name, obj):
    for mod in (numpy, getattr(numpy, "linalg", None), getattr(numpy, "random", None)):
        if mod is not None and getattr(mod, name, None) is obj and not isinstance(obj, (int, float, str, bool)):
            return True
    return False


def describe(name, obj):
    if isinstance(obj, cupy.ufunc):
        ops = {"at": getattr(obj, "_scatter_op", None) is not None,
               "reduce": obj.name in ("cupy_add", "cupy_multiply"),
               "accumulate": obj.name in ("cupy_add", "cupy_multiply"),
               "reduceat": obj.name == "cupy_add", "outer": True}
        return {"kind": "ufunc", "nin": obj.nin, "nout": obj.nout, "ufunc_name": obj.name, "methods": ops}
    if isinstance(obj, types.ModuleType):
        return {"kind": "module", "module": obj.__name__}
    if _numpy_alias(name, obj):
        return {"kind": "numpy"}
    if isinstance(obj, type):
        return {"kind": "class", "qualname": f"{obj.__module__}.{obj.__qualname__}"}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"kind": "constant", "value": obj}
    if callable(obj):
        return {"kind": "function", "params": params_of(obj)}
    return {"kind": "other", "type": type(obj).__name__}


def record_module(path, only=None):
    try:
        mod = _resolve(path)
    except Exception as e:  # a library the module loads is missing on this machine
        return {"__error__": f"{type(e).__name__}: {e}"}
    names = only if only is not None else [n for n in dir(mod) if not n.startswith("_")]
    out = {}
    for n in names:
        try:
            out[n] = describe(n, getattr(mod, n))
        except Exception as e:  # a lazily loaded submodule that cannot load here
            out[n] = {"kind": "unavailable", "error": f"{type(e).__name__}: {e}"}
    return out


def record_class(cls):
    out = {}
    for n in dir(cls):
        if n.startswith("_") and not (n.startswith("__") and n.endswith("__")):
            continue
        try:
            static = inspect.getattr_static(cls, n)
        except AttributeError:
            continue
        if isinstance(static, (property, types.GetSetDescriptorType, types.MemberDescriptorType)) \
                or type(static).__name__ in ("getset_descriptor", "member_descriptor"):
            out[n] = {"kind": "attribute"}
        elif isinstance(static, (staticmethod, classmethod)):
            out[n] = {"kind": "method", "params": params_of(getattr(cls, n))}
        elif callable(static):
            out[n] = {"kind": "method", "params": params_of(static, drop_self=True)}
        else:
            out[n] = {"kind": "attribute"}
    return out


def main():
    manifest = {"recorded_from": {"cupy": cupy.__version__, "numpy": numpy.__version__,
                                  "python": sys.version.split()[0]},
                "modules": {}, "classes": {}}
    for m in MODULES:
        manifest["modules"][m] = record_module(m)
    for m, only in PRIVATE.items():
        manifest["modules"][m] = record_module(m, only)
    for name, path in CLASSES.items():
        if path is None:
            continue
        try:
            manifest["classes"][name] = record_class(_resolve(path))
        except Exception as e:
            manifest["classes"][name] = {"__error__": f"{type(e).__name__}: {e}"}
    OUT.write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str) + "\n")
    n = sum(len(v) for v in manifest["modules"].values())
    print(f"wrote {OUT.name}: cupy {cupy.__version__}, {n} module names, "
          f"{sum(len(v) for v in manifest['classes'].values())} class members")


if __name__ == "__main__":
    main()
