"""Module and Parameter: the bookkeeping that turns functions into layers.

A `Module` registers every `Parameter` and sub-`Module` assigned to it as an attribute, in
assignment order, so `named_parameters()` yields PyTorch's dotted names
(`transformer.h.0.attn.c_attn.weight`) and `state_dict()` / `load_state_dict()` can save
and restore a model by name. The values also stay in the instance `__dict__`, so reading
`self.weight` in `forward` is a plain attribute lookup.

Calling a module (`module(x)`) runs `forward` with the module's dotted name pushed on
`tinygrad_lm.engine.scope`, so debugging tools can group graph nodes by layer. The name
is cached; a call costs one list append and one pop.
"""
from __future__ import annotations

import weakref
from collections import namedtuple

import numpy as np

from .. import backend, engine
from ..tensor import Tensor

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])

_generation = 0  # bumped on every sub-module registration: invalidates cached scope names


class Parameter(Tensor):
    """A Tensor that a Module registers as learnable: `requires_grad=True` by default.

    `Parameter(data)` wraps `data` (an array, list or Tensor; a Tensor's array is shared,
    not copied). Results of ops on a Parameter are plain Tensors."""
    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of every layer and model: subclass it, assign Parameters and Modules as
    attributes in `__init__` (after `super().__init__()`), write `forward`."""

    def __init__(self):
        d = self.__dict__
        d["_parameters"], d["_modules"], d["_buffers"], d["_non_persistent"] = {}, {}, {}, set()
        d["training"], d["_parent"], d["_local_name"], d["_scope_cache"] = True, None, "", (-1, "")

    # ------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        d = self.__dict__
        params = d.get("_parameters")
        if isinstance(value, (Parameter, Module)) and params is None:
            raise AttributeError(f"cannot assign {type(value).__name__} {name!r} before Module.__init__() was called "
                                 f"(call super().__init__() first in {type(self).__name__}.__init__)")
        if isinstance(value, Parameter):
            self._forget(name, keep="_parameters")  # re-assigning keeps the name's place in the order
            params[name] = value
        elif isinstance(value, Module):
            self._forget(name, keep="_modules")
            self._adopt(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} of {type(self).__name__} "
                                f"(a Parameter or None is expected)")
            del params[name]
        elif params is not None and name in d["_modules"]:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module {name!r} (a Module or None is expected)")
            del d["_modules"][name]
        elif params is not None and name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer {name!r} (a Tensor or None is expected)")
            d["_buffers"][name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._forget(name)
        object.__delattr__(self, name)

    def _forget(self, name, keep=None):
        d = self.__dict__
        for reg in ("_parameters", "_modules", "_buffers"):
            if reg != keep:
                d[reg].pop(name, None)
        d["_non_persistent"].discard(name)

    def _adopt(self, name, module):
        """Register `module` under `name`. The first live parent stays the module's parent
        for scope names, so wrapping modules in a new container does not rename them."""
        global _generation
        self.__dict__["_modules"][name] = module
        md = module.__dict__
        parent = md["_parent"]() if md["_parent"] is not None else None
        if parent is None or parent is self:
            md["_parent"], md["_local_name"] = weakref.ref(self), name
        _generation += 1

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is None:
            self._forget(name)
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """A non-learnable tensor that moves with the module and (if persistent) is saved in state_dict."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor or None, got {type(tensor).__name__}")
        self._forget(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)
        object.__setattr__(self, name, tensor)

    def add_module(self, name: str, module: Module | None) -> None:
        setattr(self, name, module)

    # ------------------------------------------------------------ calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        scope = engine.scope
        scope.append(self._scope_name())
        try:
            return self.forward(*args, **kwargs)
        finally:
            scope.pop()

    def _scope_name(self) -> str:
        """Dotted name from the outermost parent ("" for the outermost module itself)."""
        d = self.__dict__
        gen, name = d["_scope_cache"]
        if gen == _generation:
            return name
        parts, m, seen = [], self, set()
        while m is not None and id(m) not in seen:
            seen.add(id(m))
            md = m.__dict__
            parent = md["_parent"]() if md["_parent"] is not None else None
            if parent is None:
                break
            parts.append(md["_local_name"])
            m = parent
        name = ".".join(reversed(parts))
        d["_scope_cache"] = (_generation, name)
        return name

    # ------------------------------------------------------------ traversal
    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        """(dotted name, module) for this module ("" or `prefix`) and every descendant, depth first."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        yield from self._modules.items()

    def children(self):
        yield from self._modules.values()

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        """(dotted name, Parameter), in registration order. A Parameter reachable under two
        names (tied weights) is yielded once, under the first, as PyTorch does."""
        seen = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for mp, m in mods:
            for n, p in m._parameters.items():
                if remove_duplicate:
                    if id(p) in seen:
                        continue
                    seen.add(id(p))
                yield (f"{mp}.{n}" if mp else n), p

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True):
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mp, m in mods:
            for n, b in m._buffers.items():
                if b is not None and id(b) not in seen:
                    seen.add(id(b))
                    yield (f"{mp}.{n}" if mp else n), b

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        """Call fn(module) on every descendant (children first) and then on self; returns self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of scalars in the parameters, each shared (tied) Parameter counted once."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # ------------------------------------------------------------ modes and gradients
    def train(self, mode: bool = True):
        for m in self.modules():
            m.__dict__["training"] = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = Tensor._wrap(p.xp.zeros_like(p.data))

    # ------------------------------------------------------------ devices and dtypes
    def to(self, *args, dtype=None, device=None):
        """Move (`to("cuda")`) and/or cast (`to(np.float64)`, floating tensors only) every
        parameter and buffer in place: the Parameter objects stay the same, only their arrays
        change, so an optimizer built before keeps working (its state follows on its next step)."""
        for a in args:
            if isinstance(a, str):
                device = a
            else:
                dtype = a
        device = backend.canonical_device(device) if device is not None else None
        dtype = np.dtype(dtype) if dtype is not None else None

        def convert(arr):
            if dtype is not None and arr.dtype.kind == "f" and arr.dtype != dtype:
                arr = arr.astype(dtype)
            if device is not None:
                arr = backend.to_device(arr, device)
            return arr

        for p in self.parameters():
            p.data = convert(p.data)
            if p.grad is not None:
                p.grad = Tensor._wrap(convert(p.grad.data))
        for b in self.buffers():
            b.data = convert(b.data)
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self, index: int = 0):
        return self.to(f"cuda:{index}")

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    # ------------------------------------------------------------ state
    def state_dict(self, prefix: str = "", keep_vars: bool = False) -> dict:
        """name -> Tensor for every parameter and persistent buffer. Tied parameters appear
        under each of their names (as in PyTorch: 'lm_head.weight' and 'transformer.wte.weight'
        both). The tensors share memory with the model (detached unless keep_vars)."""
        out = {}
        for mp, m in self.named_modules(prefix=prefix, remove_duplicate=False):
            for n, p in m._parameters.items():
                out[f"{mp}.{n}" if mp else n] = p if keep_vars else p.detach()
            for n, b in m._buffers.items():
                if b is not None and n not in m._non_persistent:
                    out[f"{mp}.{n}" if mp else n] = b if keep_vars else b.detach()
        return out

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> IncompatibleKeys:
        """Copy values (Tensors or arrays, any device) into the parameters and buffers by name,
        keeping each one's dtype and device. Everything is checked before anything is written:
        with strict=True missing and unexpected names are errors; a wrong shape always is.
        Returns (missing_keys, unexpected_keys)."""
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        if strict and unexpected:
            errors.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
        if strict and missing:
            errors.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
        for k, t in own.items():
            if k in state_dict:
                shape = tuple(np.shape(state_dict[k].data if isinstance(state_dict[k], Tensor) else state_dict[k]))
                if shape != t.shape:
                    errors.append(f"size mismatch for {k}: copying a param with shape {shape} from checkpoint, "
                                  f"the shape in current model is {t.shape}.")
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(errors))
        for k, t in own.items():
            if k in state_dict:
                v = state_dict[k]
                arr = v.data if isinstance(v, Tensor) else v
                if not (isinstance(arr, np.ndarray) or hasattr(arr, "__cuda_array_interface__")):
                    arr = np.asarray(arr)
                t.data = backend.to_device(arr, t.device).astype(t.dtype, copy=True)
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [ln for ln in self.extra_repr().split("\n") if ln]
        for name, m in self._modules.items():
            lines.append(f"({name}): " + repr(m).replace("\n", "\n  "))
        if not self._modules:
            return f"{type(self).__name__}({', '.join(lines)})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


# ================================================================ containers
class ModuleList(Module):
    """A list of modules, registered as '0', '1', ... (so names read `h.0.attn...`)."""

    def __init__(self, modules=None):
        super().__init__()
        for m in modules or ():
            self.append(m)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(list(self._modules.values()))

    def __getitem__(self, idx):
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return ModuleList(mods[idx])
        if not -len(mods) <= idx < len(mods):
            raise IndexError(f"ModuleList: index {idx} is out of range for a list of {len(mods)} modules")
        return mods[idx]

    def __setitem__(self, idx, module):
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"ModuleList: index {idx} is out of range for a list of {n} modules")
        setattr(self, str(idx % n), module)

    def append(self, module: Module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList: can only hold Modules, got {type(module).__name__}")
        setattr(self, str(len(self)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module):
        mods = list(self._modules.values())
        mods.insert(index, module)
        for k in list(self._modules):
            delattr(self, k)
        for m in mods:
            self.append(m)


class ModuleDict(Module):
    """A dict of modules, registered under their keys (nanoGPT's `transformer`)."""

    def __init__(self, modules=None):
        super().__init__()
        for k, m in (modules.items() if isinstance(modules, dict) else modules or ()):
            self[k] = m

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        setattr(self, key, module)

    def __contains__(self, key):
        return key in self._modules

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(list(self._modules))

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules):
        for k, m in (modules.items() if isinstance(modules, dict) else modules):
            self[k] = m


class Sequential(Module):
    """Modules applied one after another: Sequential(a, b, c)(x) = c(b(a(x)))."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], dict):
            for k, m in modules[0].items():
                setattr(self, k, m)
        else:
            for i, m in enumerate(modules):
                setattr(self, str(i), m)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(list(self._modules.values()))

    def __getitem__(self, idx):
        mods = list(self._modules.values())
        return Sequential(*mods[idx]) if isinstance(idx, slice) else mods[idx]

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

