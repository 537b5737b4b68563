"""Layers and the functions behind them (PyTorch's `torch.nn`, the part a GPT needs).

    from tinygrad_lm import nn
    from tinygrad_lm.nn import functional as F
"""
from types import SimpleNamespace

from . import functional  # noqa: F401
from .module import Module, Parameter, ModuleList, ModuleDict, Sequential, IncompatibleKeys  # noqa: F401
from .layers import Linear, Embedding, LayerNorm, Dropout, GELU, ReLU, normal_, uniform_, zeros_, ones_  # noqa: F401

init = SimpleNamespace(normal_=normal_, uniform_=uniform_, zeros_=zeros_, ones_=ones_)
