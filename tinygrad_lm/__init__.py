"""tinygrad_lm: a reverse-mode tensor autodiff engine written from scratch, with a GPT on top."""
from .tensor import (  # noqa: F401
    Tensor, Function, tensor, no_grad, enable_grad, is_grad_enabled, manual_seed, get_rng,
    zeros, ones, full, empty, rand, randn, randint, arange, eye,
    zeros_like, ones_like, full_like, empty_like, rand_like, randn_like,
    cat, concatenate, stack, where, maximum, minimum, take_along_dim, one_hot, pad, embedding,
    float16, float32, float64, int32, int64, bool_, unbroadcast,
)
from .backend import DeviceError, cuda_available, set_tf32  # noqa: F401
from .gradcheck import gradcheck, GradcheckError  # noqa: F401
from . import ops  # noqa: F401

__version__ = "0.1.0"
from .debug import trace, detect_anomaly, AnomalyError  # noqa: F401
