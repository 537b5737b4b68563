"""Optimizers (SGD, AdamW), the nanoGPT learning-rate schedule and gradient clipping.

An optimizer updates `p.data` in place from `p.grad.data`: plain array math, no graph.
Its state (momentum buffers, Adam moments) is created on each parameter's own device with
that parameter's array module, on the first step that sees a gradient, and follows the
parameter if it is moved later.

`param_groups` is a list of dicts as in PyTorch: {'params': [...], 'lr': ..., ...}; change
`group['lr']` between steps to schedule the learning rate.

`state_dict()` holds only plain values: per parameter index (counting through the groups in
order) its arrays ('exp_avg', 'exp_avg_sq' / 'momentum_buffer') and its int 'step', plus the
groups' hyperparameters with the parameter indices in place of the parameters, so a
checkpoint can be written as arrays (.npz / safetensors) and read back with
`load_state_dict()`.
"""
from __future__ import annotations

import math

import numpy as np

from . import backend
from .tensor import Tensor


class Optimizer:
    defaults: dict = {}

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups: list[dict] = []
        self.state: dict[int, dict] = {}  # id(param) -> its state
        seen = set()
        for g in groups:
            g = dict(g)
            ps = g["params"]
            g["params"] = [ps] if isinstance(ps, Tensor) else list(ps)
            for p in g["params"]:
                if not isinstance(p, Tensor):
                    raise TypeError(f"{type(self).__name__}: parameters must be Tensors, got {type(p).__name__}")
                if id(p) in seen:
                    raise ValueError(f"{type(self).__name__}: a parameter appears in more than one group (shape {p.shape})")
                seen.add(id(p))
            for k, v in self.defaults.items():
                g.setdefault(k, v)
            self.param_groups.append(g)

    def _all_params(self):
        return [p for g in self.param_groups for p in g["params"]]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self._all_params():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = Tensor._wrap(p.xp.zeros_like(p.data))

    def _state_for(self, p, names):
        """The state dict of `p`, with zero arrays `names` created (or moved) on p's device."""
        st = self.state.get(id(p))
        if st is None:
            xp = backend.array_module(p.data)
            st = self.state[id(p)] = {"step": 0}
            for n in names:
                st[n] = xp.zeros_like(p.data)
        elif type(p.data) is not np.ndarray or type(st[names[0]]) is not np.ndarray:
            dev = backend.device_of(p.data)
            for n in names:
                if backend.device_of(st[n]) != dev:
                    st[n] = backend.to_device(st[n], dev)
        return st

    def step(self, found_inf=None) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------ skipping a step without reading the GPU
    @staticmethod
    def _skip_flag(found_inf):
        """-> (skip now, device flag). `found_inf` (PyTorch's name, from its fused optimizers and
        GradScaler): None, or a 0-d flag, True or nonzero = skip this update. A host value
        (Python or numpy) is read here: (its truth, None). A GPU array is not read: (False,
        the flag as a 0-d bool on its device), for the step to apply on the device."""
        if found_inf is None:
            return False, None
        if type(found_inf) is np.ndarray or not hasattr(found_inf, "__cuda_array_interface__"):
            return bool(found_inf), None
        return False, found_inf.astype(np.bool_).reshape(())

    @staticmethod
    def _update_unless(flag, arrays, update) -> None:
        """Run `update(*copies)` on copies of `arrays` and write each copy back where `flag` is
        False: the same arithmetic as updating them in place, and no change at all when the
        device flag says skip. Without a flag, `update(*arrays)` in place."""
        if flag is None:
            update(*arrays)
            return
        xp = backend.array_module(arrays[0])
        copies = [a.copy() for a in arrays]
        update(*copies)
        keep = xp.logical_not(flag)
        for a, c in zip(arrays, copies):
            xp.copyto(a, c, where=keep)

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """{'state': {index: {'step': int, name: array, ...}}, 'param_groups': [{hyper..., 'params': [index, ...]}]}.
        Arrays are numpy (copied off the GPU; on the CPU the optimizer's own arrays)."""
        state, groups, i = {}, [], 0
        for g in self.param_groups:
            idx = []
            for p in g["params"]:
                st = self.state.get(id(p))
                if st is not None:
                    state[i] = {k: (backend.to_numpy(v) if not isinstance(v, (int, float)) else v) for k, v in st.items()}
                idx.append(i)
                i += 1
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": idx})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{type(self).__name__}.load_state_dict: the checkpoint has {len(groups)} parameter groups, "
                             f"this optimizer {len(self.param_groups)}")
        params = []
        for gi, (saved, g) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(g["params"]):
                raise ValueError(f"{type(self).__name__}.load_state_dict: group {gi} has {len(saved['params'])} parameters "
                                 f"in the checkpoint but {len(g['params'])} here")
            params.extend(zip(saved["params"], g["params"]))
        state = {int(k): v for k, v in state_dict["state"].items()}
        for i, p in params:
            for k, v in state.get(i, {}).items():
                if k != "step" and tuple(np.shape(v)) != p.shape:
                    raise ValueError(f"{type(self).__name__}.load_state_dict: state {k!r} of parameter {i} has shape "
                                     f"{tuple(np.shape(v))} but the parameter has shape {p.shape}")
        self.state = {}
        for i, p in params:
            if i in state:
                dev = backend.device_of(p.data)
                self.state[id(p)] = {k: (int(v) if k == "step" else
                                         backend.to_device(np.asarray(v) if isinstance(v, (list, tuple)) else v, dev)
                                         .astype(p.dtype, copy=True))
                                     for k, v in state[i].items()}
        for saved, g in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    g[k] = tuple(v) if isinstance(v, list) else v


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's update:

        d = g + weight_decay * p
        b = momentum * b + (1 - dampening) * d      (b = d on the first step)
        d = d + momentum * b   if nesterov   else   b      (when momentum > 0)
        p = p - lr * d
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov))

    def step(self, found_inf=None) -> None:
        """One update of every parameter with a gradient. `found_inf` (see Optimizer._skip_flag):
        a set host flag skips the step; a flag on a GPU keeps the weights and momentum buffers
        as they were without being read, but a first step's buffer is still created (then from
        a zero update) and the step counts advance: they live on the host."""
        skip, flag = self._skip_flag(found_inf)
        if skip:
            return
        for g in self.param_groups:
            lr, mom, damp, wd, nest = g["lr"], g["momentum"], g["dampening"], g["weight_decay"], g["nesterov"]
            for p in g["params"]:
                if p.grad is None:
                    continue
                d = p.grad.data
                if wd:
                    d = d + wd * p.data
                if mom:
                    st = self.state.get(id(p))
                    if st is None:
                        first = d.copy() if flag is None else p.xp.where(flag, p.xp.zeros_like(d), d)
                        st = self.state[id(p)] = {"step": 0, "momentum_buffer": first}
                    else:
                        st = self._state_for(p, ("momentum_buffer",))

                        def momentum(buf, d=d):
                            buf *= mom
                            buf += (1.0 - damp) * d
                        self._update_unless(flag, [st["momentum_buffer"]], momentum)
                    st["step"] += 1
                    d = d + mom * st["momentum_buffer"] if nest else st["momentum_buffer"]

                def descend(w, d=d):
                    w -= lr * d
                self._update_unless(flag, [p.data], descend)


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), PyTorch's update. At step t:

        p = p * (1 - lr * weight_decay)                        (decoupled=True: AdamW)
        g = g + weight_decay * p                                (decoupled=False: Adam's L2)
        m = beta1 m + (1 - beta1) g,     v = beta2 v + (1 - beta2) g^2
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    Vectorised per parameter with in-place array ops (one temporary per parameter)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
                 decoupled: bool = True):
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"AdamW: lr, eps and weight_decay must be >= 0, got {lr}, {eps}, {weight_decay}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"AdamW: betas must be in [0, 1), got {tuple(betas)}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, decoupled=decoupled))

    @backend.kernel("adamw")
    def step(self, found_inf=None) -> None:
        """One update of every parameter with a gradient (on a GPU with kernels on: adamw.cu,
        one launch for up to 64 tensors). `found_inf` (see Optimizer._skip_flag): a set host
        flag skips the step, step counts included; a flag on a GPU is not read: the weights and
        moments stay as they were where it is set (the kernel returns at once; the array code
        computes the update on copies and discards it), but the step counts, which live on the
        host, advance. The training loop never continues past a skipped step."""
        skip, flag = self._skip_flag(found_inf)
        if skip:
            return
        for g in self.param_groups:
            lr, (b1, b2), eps, wd, decoupled = g["lr"], g["betas"], g["eps"], g["weight_decay"], g["decoupled"]
            for p in g["params"]:
                if p.grad is None:
                    continue
                xp = backend.array_module(p.data)
                st = self._state_for(p, ("exp_avg", "exp_avg_sq"))
                st["step"] += 1
                t = st["step"]

                def update(w, m, v, grad=p.grad.data, t=t, xp=xp):
                    if wd and decoupled:
                        w *= 1.0 - lr * wd
                    elif wd:
                        grad = grad + wd * w
                    tmp = xp.multiply(grad, 1.0 - b1)
                    m *= b1
                    m += tmp
                    xp.multiply(grad, grad, out=tmp)
                    tmp *= 1.0 - b2
                    v *= b2
                    v += tmp
                    # m / (sqrt(v) / sqrt(bc2) + eps) = sqrt(bc2) m / (sqrt(v) + eps sqrt(bc2)): one pass fewer
                    bc2_sqrt = math.sqrt(1.0 - b2 ** t)
                    xp.sqrt(v, out=tmp)
                    tmp += eps * bc2_sqrt
                    xp.divide(m, tmp, out=tmp)
                    tmp *= -lr * bc2_sqrt / (1.0 - b1 ** t)
                    w += tmp
                self._update_unless(flag, [p.data, st["exp_avg"], st["exp_avg_sq"]], update)


class Adam(AdamW):
    """Adam: like AdamW but weight decay (default 0) is an L2 term added to the gradient."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr, betas, eps, weight_decay, decoupled=False)


# ================================================================ schedule and clipping
def get_lr(it: int, warmup_iters: int, lr_decay_iters: int, lr: float, min_lr: float) -> float:
    """nanoGPT's schedule: linear warmup to `lr` over `warmup_iters` steps, then cosine decay
    to `min_lr` at `lr_decay_iters`, then `min_lr`:

        it < warmup:   lr * (it + 1) / (warmup + 1)
        it > decay:    min_lr
        otherwise:     min_lr + 0.5 (1 + cos(pi r)) (lr - min_lr),  r = (it - warmup) / (decay - warmup)
    """
    if it < warmup_iters:
        return lr * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    span = lr_decay_iters - warmup_iters
    ratio = (it - warmup_iters) / span if span > 0 else 1.0
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0) -> Tensor:
    """Scale all gradients together so their joint `norm_type` norm is at most `max_norm`:
    g <- g * min(1, max_norm / (norm + 1e-6)) (PyTorch's coefficient). Returns the norm before
    clipping as a 0-d float64 tensor on the gradients' device, as PyTorch returns a tensor.

    On a GPU nothing is read back: the norm and the coefficient stay on the device and every
    gradient is multiplied by the coefficient (by exactly 1 when the norm is within the
    limit, which changes no bit). On the CPU, where reading a value costs nothing, gradients
    within the limit are not touched. Both paths compute the norm's square root and the
    coefficient in float64 and multiply in the gradients' dtype, so they agree bit for bit
    given the same sum of squares."""
    # a list first: model.parameters() is a generator, and it is walked twice (norm, then scale)
    parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad.data for p in parameters if p.grad is not None]
    if not grads:
        return Tensor(np.zeros((), dtype=np.float64))
    xp = backend.array_module(grads[0])
    norm_type = float(norm_type)
    if xp is np:
        if math.isinf(norm_type):
            total = max(float(abs(g).max()) for g in grads)
        elif norm_type == 2.0:
            total = math.sqrt(float(sum(np.vdot(g.ravel(), g.ravel()) for g in grads)))
        else:
            total = sum(float((abs(g) ** norm_type).sum()) for g in grads) ** (1.0 / norm_type)
        coef = max_norm / (total + 1e-6)
        if coef < 1.0:
            for g in grads:
                g *= coef
        return Tensor(np.asarray(total, dtype=np.float64))
    with backend.use_device(backend.device_of(grads[0])):
        if math.isinf(norm_type):
            total = xp.stack([xp.abs(g).max() for g in grads]).max().astype(np.float64)
        elif norm_type == 2.0:
            # one sum of per-parameter dot products on the device, as the CPU path sums them
            total = xp.sqrt(sum(xp.vdot(g.ravel(), g.ravel()) for g in grads).astype(np.float64))
        else:
            total = sum((xp.abs(g) ** norm_type).sum().astype(np.float64) for g in grads) ** (1.0 / norm_type)
        coef = xp.minimum(max_norm / (total + 1e-6), 1.0)
        # what g *= <Python float> does on the CPU: the factor rounded to g's dtype, then multiplied
        factors = {dt: coef.astype(dt) for dt in {g.dtype for g in grads}}
        for g in grads:
            g *= factors[g.dtype]
    return Tensor._wrap(total)
