"""The whole-model check: every parameter of a tiny GPT against finite differences.

Where the op specs check each op alone, this checks the ops composed as the GPT composes
them (tied embeddings, residual streams, the loss), in float64, for the fused and the
composed implementations alike. `tinygrad-lm gradcheck` and examples/gradcheck_gpt.py run it.
"""
from __future__ import annotations

import numpy as np

from ..engine import manual_seed
from ..gradcheck import gradcheck
from ..models.gpt import GPT, GPTConfig
from ..nn import functional as F


def gradcheck_gpt(bias: bool = True, fused: bool = True, max_elements: int = 16, n_directions: int = 3, seed: int = 0):
    """Finite-difference check of every parameter of a tiny GPT (2 layers, 2 heads, 16 dims,
    block 8, vocab 11) in float64; returns the GradcheckReport (does not raise).

    The weights are first moved away from their init (LayerNorm gains != 1, biases != 0) so
    no gradient is trivially zero. Each parameter gets `max_elements` sampled entries plus
    `n_directions` random directional derivatives (tinygrad_lm.gradcheck, mode="auto")."""
    manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, bias=bias))
    rng = np.random.default_rng(seed)
    for _, p in model.named_parameters():
        p.data = p.data + 0.3 * rng.standard_normal(p.shape).astype(p.dtype)
    idx, targets = rng.integers(0, 11, (2, 8)), rng.integers(0, 11, (2, 8))
    with F.use_fused(fused):
        return gradcheck(lambda *ps: model(idx, targets)[1], dict(model.named_parameters()), mode="auto",
                         max_elements=max_elements, n_directions=n_directions, atol=1e-8, rtol=1e-5,
                         raise_exception=False)
