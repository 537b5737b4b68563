"""The GPT of tinygrad_lm written in PyTorch eager: the reference the benchmarks time against.

Our own code, in the shape of nanoGPT's model.py, with exactly the architecture of
`tinygrad_lm.models.gpt.GPT`:

* token + position embeddings, pre-LayerNorm blocks (attention, then a 4x MLP), a final
  LayerNorm, and an lm_head tied to the token embedding (`lm_head.weight is wte.weight`);
* GELU with the tanh approximation by default (`gelu="tanh"`; `gelu="none"` is the exact erf
  form nanoGPT uses, matching `GPTConfig(gelu_approximate="none")`);
* optional biases in Linear and LayerNorm (`bias`), LayerNorm eps 1e-5;
* causal self-attention written out (q @ k^T / sqrt(d), masked_fill, softmax, @ v), or,
  with `attn="sdpa"`, `F.scaled_dot_product_attention(is_causal=True)` (PyTorch's fused
  kernel: the second column of the benchmark table);
* nanoGPT's init: N(0, 0.02) for Linear and Embedding weights, zero biases, and
  N(0, 0.02 / sqrt(2 * n_layer)) for the residual projections (`*.c_proj.weight`);
* parameter names as nanoGPT's (`transformer.h.0.attn.c_attn.weight`, ...), so a state dict
  moves between the two models by name (the benchmark copies ours in, so both start from
  the same weights and their first losses can be compared);
* float32, no torch.compile; `configure_optimizers` builds torch.optim.AdamW with the
  nanoGPT weight-decay groups (2-D tensors decay, the rest don't), fused=False, foreach
  left at PyTorch's default.

This module imports torch: the bench imports it only once PyTorch is known to be installed.
`tinygrad-lm bench --what model` times it against ours.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class TorchGPTConfig:
    """The fields of tinygrad_lm's GPTConfig that shape the model (bench.configs.model_kwargs)."""
    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = False


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's nn.LayerNorm has no bias=False before 2.1)."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: TorchGPTConfig, attn: str = "explicit"):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0
        if attn not in ("explicit", "sdpa"):
            raise ValueError(f"attn must be 'explicit' or 'sdpa', got {attn!r}")
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.attn_dropout = nn.Dropout(cfg.dropout)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.n_head, self.n_embd, self.dropout, self.attn = cfg.n_head, cfg.n_embd, cfg.dropout, attn
        mask = torch.tril(torch.ones(cfg.block_size, cfg.block_size, dtype=torch.bool))
        self.register_buffer("mask", mask.view(1, 1, cfg.block_size, cfg.block_size), persistent=False)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        if self.attn == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None,
                                               dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            att = att.masked_fill(~self.mask[:, :, :T, :T], float("-inf"))
            att = F.softmax(att, dim=-1)
            att = self.attn_dropout(att)
            y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: TorchGPTConfig, gelu: str = "tanh"):
        super().__init__()
        self.gelu = gelu
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate=self.gelu)))


class Block(nn.Module):
    def __init__(self, cfg: TorchGPTConfig, attn: str = "explicit", gelu: str = "tanh"):
        super().__init__()
        self.ln_1 = LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg, attn)
        self.ln_2 = LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg, gelu)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TorchGPT(nn.Module):
    def __init__(self, cfg: TorchGPTConfig, attn: str = "explicit", gelu: str = "tanh"):
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
            wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
            drop=nn.Dropout(cfg.dropout),
            h=nn.ModuleList([Block(cfg, attn, gelu) for _ in range(cfg.n_layer)]),
            ln_f=LayerNorm(cfg.n_embd, bias=cfg.bias),
        ))
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameters, the tied wte/lm_head matrix counted once; minus the position
        embedding when non_embedding (nanoGPT's convention, used in the FLOP estimate)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def forward(self, idx, targets=None):
        B, T = idx.size()
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than block_size {self.config.block_size}")
        pos = torch.arange(0, T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    def configure_optimizers(self, weight_decay, learning_rate, betas):
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        nodecay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": nodecay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=False)

    @torch.no_grad()
    def load_arrays(self, arrays: dict) -> None:
        """Copy numpy arrays in by nanoGPT name (shapes must match; the tied weight may come
        under either name). Missing names raise KeyError."""
        for name, p in self.named_parameters():
            src = arrays.get(name)
            if src is None and name in ("transformer.wte.weight", "lm_head.weight"):
                src = arrays.get("lm_head.weight", arrays.get("transformer.wte.weight"))
            if src is None:
                raise KeyError(f"load_arrays: no array for parameter {name}")
            t = torch.as_tensor(src)
            if tuple(t.shape) != tuple(p.shape):
                raise ValueError(f"load_arrays: {name} has shape {tuple(t.shape)}, expected {tuple(p.shape)}")
            p.copy_(t.to(p.dtype))


def train_step(model, optimizer, x, y, grad_clip: float = 1.0) -> float:
    """One training step, as tinygrad_lm's: forward, backward, clip, AdamW, zero grads.
    Returns the loss (reading it synchronizes a GPU)."""
    _, loss = model(x, y)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()
