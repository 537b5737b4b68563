"""The whole-model checks: every parameter of a tiny GPT against finite differences, under
its language-model loss (`gradcheck_gpt`) and under the DPO objective against a frozen
reference copy (`gradcheck_dpo`).

Where the op specs check each op alone, these check the ops composed as the GPT composes
them (tied embeddings, residual streams, the loss), in float64, for the fused and the
composed implementations alike. `tinygrad-lm gradcheck` and examples/gradcheck_gpt.py run them.
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


# the tiny DPO problem: (prompt, chosen, rejected) token ids of different lengths, so padding,
# the prompt mask and the chosen/rejected halves are all exercised
_DPO_PAIRS = (([1, 2, 3], [4, 5], [6]), ([7], [8, 9, 10], [2, 2]), ([5, 4, 3, 2], [1], [0, 9, 8]))


def gradcheck_dpo(beta: float = 0.5, fused: bool = True, max_elements: int = 16, n_directions: int = 3, seed: int = 0):
    """Finite-difference check of the whole DPO objective in float64 (returns the
    GradcheckReport, does not raise):

        L(policy) = dpo_loss(log pi(chosen), log pi(rejected), log ref(chosen), log ref(rejected), beta)

    with the sequence log-probabilities of tinygrad_lm.preference (sum over each answer's
    tokens, prompt masked) for 3 pairs of different lengths, pi a tiny GPT (2 layers, 2 heads,
    16 dims, block 8, vocab 11; weights moved off their init), and ref its frozen copy
    (preference.frozen_copy), whose log-probabilities are constants computed once, as a dpo
    run computes them. The policy is then moved away from the reference, so the margins are
    not 0 and sigmoid(-z) differs from pair to pair. Checked: every policy parameter (sampled
    entries plus random directions), as in gradcheck_gpt; `report.reference_touched` lists
    the reference's parameters that require or hold a gradient afterwards (none should)."""
    from ..data import PairSet
    from ..engine import no_grad
    from ..preference import frozen_copy, sequence_logprobs
    manual_seed(seed)
    policy = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, bias=True))
    rng = np.random.default_rng(seed)
    for _, p in policy.named_parameters():
        p.data = p.data + 0.3 * rng.standard_normal(p.shape).astype(p.dtype)
    reference = frozen_copy(policy)
    for _, p in policy.named_parameters():
        p.data = p.data + 0.3 * rng.standard_normal(p.shape).astype(p.dtype)
    policy.eval()
    pairs = PairSet.from_lists(*[[np.array(t) for t in part] for part in zip(*_DPO_PAIRS)], lines=range(len(_DPO_PAIRS)))
    x, y = pairs.rows(np.arange(len(pairs)))     # (6, T): the 3 chosen sequences, then the 3 rejected ones
    b = len(pairs)
    with no_grad():
        ref = sequence_logprobs(reference, x, y)

    def objective(*_params):
        pol = sequence_logprobs(policy, x, y)
        return F.dpo_loss(pol[:b], pol[b:], ref[:b], ref[b:], beta=beta)

    with F.use_fused(fused):
        report = gradcheck(objective, dict(policy.named_parameters()), mode="auto", max_elements=max_elements,
                           n_directions=n_directions, atol=1e-8, rtol=1e-5, raise_exception=False)
    report.reference_touched = [n for n, p in reference.named_parameters() if p.grad is not None or p.requires_grad]
    return report
