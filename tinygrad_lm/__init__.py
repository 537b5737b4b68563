"""tinygrad_lm: a reverse-mode tensor autodiff engine written from scratch, with a GPT on top.

`tinygrad_lm.tensor` is the `tensor()` constructor (like `torch.tensor`); the module that
defines it is `tinygrad_lm/tensor.py`, and the engine's state lives in `tinygrad_lm.engine`.
"""
from .engine import (  # noqa: F401
    Function, no_grad, enable_grad, is_grad_enabled, manual_seed, get_rng, unbroadcast,
)
from .tensor import (  # noqa: F401
    Tensor, tensor,
    zeros, ones, full, empty, rand, randn, randint, arange, eye,
    zeros_like, ones_like, full_like, empty_like, rand_like, randn_like,
    cat, concatenate, stack, where, maximum, minimum, take_along_dim, one_hot, pad, embedding,
    float16, float32, float64, int32, int64, bool_,
)
from .backend import DeviceError, cuda_available, set_tf32, tune_host_allocator  # noqa: F401
from .ops.threads import set_num_threads, get_num_threads  # noqa: F401
from .gradcheck import gradcheck, GradcheckError  # noqa: F401
from . import engine, ops  # noqa: F401
from .debug import trace, detect_anomaly, AnomalyError  # noqa: F401

__version__ = "0.1.0"
