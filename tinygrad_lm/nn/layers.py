"""Layers: Linear, Embedding, LayerNorm, Dropout, GELU, ReLU, and in-place initialisers.

Each layer holds its Parameters and calls the matching function in `functional.py`, so
the fused / composed switch applies to layers too. Initial values come from
tinygrad_lm's one seeded generator (`manual_seed`), drawn on the CPU in float64, cast to
the layer's dtype and moved to its device: a seed gives the same weights everywhere.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..engine import get_rng
from ..tensor import DEFAULT_DTYPE
from . import functional as F
from .module import Module, Parameter


# ================================================================ initialisers (torch.nn.init)
def _fill(p: Parameter, values: np.ndarray) -> Parameter:
    p.data = backend.to_device(values.astype(p.dtype, copy=False), p.device)
    return p


def normal_(p: Parameter, mean: float = 0.0, std: float = 1.0) -> Parameter:
    """p ~ N(mean, std^2), in place."""
    return _fill(p, get_rng().normal(mean, std, p.shape))


def uniform_(p: Parameter, a: float = 0.0, b: float = 1.0) -> Parameter:
    """p ~ U(a, b), in place."""
    return _fill(p, get_rng().uniform(a, b, p.shape))


def zeros_(p: Parameter) -> Parameter:
    return _fill(p, np.zeros(p.shape))


def ones_(p: Parameter) -> Parameter:
    return _fill(p, np.ones(p.shape))


def _param(shape, dtype, device) -> Parameter:
    device = backend.canonical_device(device)
    dtype = np.dtype(dtype) if dtype is not None else DEFAULT_DTYPE
    return Parameter(backend.xp_for(device).empty(shape, dtype=dtype))


# ================================================================ layers
class Linear(Module):
    """y = x W^T + b, W (out_features, in_features) as PyTorch stores it.

    Init as PyTorch: W and b ~ U(-1/sqrt(in_features), 1/sqrt(in_features))."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
        self.weight = uniform_(_param((out_features, in_features), dtype, device), -bound, bound)
        self.bias = uniform_(_param((out_features,), dtype, device), -bound, bound) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table: out[...] = weight[idx[...]], weight (num_embeddings, embedding_dim) ~ N(0, 1)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = normal_(_param((num_embeddings, embedding_dim), dtype, device))

    def forward(self, idx):
        return F.embedding(idx, self.weight)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """(x - mean) / sqrt(var + eps) * weight + bias over the last dims `normalized_shape`;
    weight = 1, bias = 0 at init. bias=False drops the bias (nanoGPT's `bias` option)."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps = eps
        self.weight = ones_(_param(self.normalized_shape, dtype, device)) if elementwise_affine else None
        self.bias = zeros_(_param(self.normalized_shape, dtype, device)) if elementwise_affine and bias else None

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.weight is not None}, bias={self.bias is not None}"


class Dropout(Module):
    """Zero entries with probability p and scale the rest by 1/(1-p) in training mode; identity in eval."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class GELU(Module):
    """x * Phi(x); approximate='tanh' is GPT-2's tanh approximation."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class ReLU(Module):
    """max(x, 0)."""

    def forward(self, x):
        return x.relu()
