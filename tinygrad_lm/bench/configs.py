"""The model configs the bench times, and the FLOP count of one training step.

The configs come from the training presets (`tinygrad_lm.train.PRESETS`), the one place
nanoGPT's configs are written down; the bench fixes what a timing needs to be comparable:
the Shakespeare-char vocabulary (65), no bias, and no dropout (so ours and PyTorch do the
same work). Another config is one more entry in MODEL_CONFIGS.
"""
from __future__ import annotations

from ..train import PRESETS

# the preset keys that shape the model and its batch (the rest of a preset is the training recipe)
SHAPE_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "batch_size")


def from_preset(name: str, **overrides) -> dict:
    """A bench config: the preset's model and batch shape, then `overrides`."""
    return dict({k: PRESETS[name][k] for k in SHAPE_KEYS}, **overrides)


MODEL_CONFIGS = {
    # nanoGPT's CPU ("on a macbook") Shakespeare-char config: 4 layers, 4 heads, 128 dims, block 64, batch 12
    "cpu": from_preset("cpu", vocab_size=65, bias=False, dropout=0.0),
    # nanoGPT's baby Shakespeare GPU config, without dropout: 6 layers, 6 heads, 384 dims, block 256, batch 64
    "gpu": from_preset("gpu", vocab_size=65, bias=False, dropout=0.0),
    # two sizes between them for the CPU against PyTorch, named <layers>x<dims>:
    # 6 layers, 6 heads, 192 dims, block 128, batch 16 ...
    "6x192": dict(from_preset("gpu", vocab_size=65, bias=False, dropout=0.0), n_embd=192, block_size=128,
                  batch_size=16),
    # ... and the gpu config's model at batch 8 (6 layers, 6 heads, 384 dims, block 256)
    "6x384": from_preset("gpu", vocab_size=65, bias=False, dropout=0.0, batch_size=8),
}


def describe(name: str) -> str:
    """'name (L layers, H heads, C dims, block T, batch B)' for the CLI's help and the tables."""
    c = MODEL_CONFIGS[name]
    return (f"{name} ({c['n_layer']} layers, {c['n_head']} heads, {c['n_embd']} dims, block {c['block_size']}, "
            f"batch {c['batch_size']})")


def model_kwargs(cfg: dict) -> dict:
    """The GPTConfig (and TorchGPTConfig) arguments of a bench config."""
    return {k: cfg[k] for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "dropout", "bias")}


FLOP_FORMULA = (
    "FLOPs per step = (6*N + 12*L*C*T) * T * B   (nanoGPT's estimate_mfu; C = H*Q)\n"
    "  N = parameters, tied wte/lm_head counted once, position embedding excluded\n"
    "      (nanoGPT's get_num_params(non_embedding=True)): 6*N per token = 2 (multiply-add)\n"
    "      x 3 (forward, plus backward to inputs and to weights) per weight;\n"
    "  12*L*C*T per token: per layer the scores q.k^T (2*T*C) and the weighted sum p@v\n"
    "      (2*T*C) forward, x3 with the backward; full T x T, the causal mask not discounted;\n"
    "  L layers, H heads, Q head size, C = H*Q, T block size, B batch size.\n"
    "  Not counted: layer norm, softmax, GELU, cross-entropy, AdamW (elementwise work)."
)


def flops_per_step(n_params_nonemb: int, cfg: dict) -> float:
    """nanoGPT's estimate_mfu numerator for one training step (see FLOP_FORMULA)."""
    L, C, Tb, B = cfg["n_layer"], cfg["n_embd"], cfg["block_size"], cfg["batch_size"]
    per_token = 6 * n_params_nonemb + 12 * L * C * Tb
    return float(per_token * Tb * B)


def n_params_nonemb(arrays: dict) -> int:
    """N of the FLOP formula from name -> array: the tied wte/lm_head counted once, wpe left out."""
    seen, n = set(), 0
    for k, a in arrays.items():
        if k == "transformer.wpe.weight":
            continue
        if k in ("lm_head.weight", "transformer.wte.weight"):
            if "tied" in seen:
                continue
            seen.add("tied")
        n += a.size
    return n
