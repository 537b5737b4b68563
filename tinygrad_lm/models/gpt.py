"""GPT: nanoGPT's model (GPT-2 architecture), module for module and name for name.

    GPT
      transformer.wte   Embedding(vocab_size, n_embd)        token embeddings
      transformer.wpe   Embedding(block_size, n_embd)        position embeddings
      transformer.drop  Dropout
      transformer.h.i   Block: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))
          ln_1, attn (c_attn: n_embd -> 3 n_embd, packed q k v; c_proj), ln_2, mlp (c_fc, gelu, c_proj)
      transformer.ln_f  LayerNorm
      lm_head           Linear(n_embd, vocab_size, bias=False), weight TIED to transformer.wte.weight

Parameter names and Linear weight layouts (out_features, in_features) match nanoGPT /
Hugging Face GPT-2 (up to the transposed Conv1D weights of the latter), so checkpoints can
be exchanged with PyTorch.

Notes and deviations:
* GELU is the tanh approximation by default (GPT-2's original `gelu_new`, one fused op);
  `GPTConfig(gelu_approximate="none")` (`tinygrad-lm train --gelu-approximate none`) is the
  exact erf form of nanoGPT's nn.GELU(). The two differ by < 1e-3 per activation.
* Tied weights: `lm_head.weight` and `transformer.wte.weight` are one Parameter object.
  `named_parameters()` / `parameters()` yield it once, as 'transformer.wte.weight' (PyTorch
  does the same); `state_dict()` has both names, as PyTorch's does.
* `forward(idx)` without targets returns logits for every position (B, T, V); nanoGPT
  returns only the last position's (B, 1, V) at inference. Slice `logits[:, -1]` for that.
* Attention runs through `F.causal_self_attention`: with fused ops on (the default) one op
  reads q, k, v straight out of c_attn's output; with `F.use_fused(False)` it is the composed
  split / scaled_dot_product_attention / merge. Same math either way.
* Loss ignores targets equal to -1 (nanoGPT's `ignore_index=-1`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import backend
from ..nn import functional as F
from ..nn import Module, ModuleList, ModuleDict, Linear, Embedding, LayerNorm, Dropout, GELU, normal_, zeros_
from ..optim import AdamW
from ..engine import no_grad
from ..tensor import Tensor, arange


@dataclass
class GPTConfig:
    vocab_size: int = 50304
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linears and LayerNorms, like GPT-2; False is a bit better and faster
    gelu_approximate: str = "tanh"  # the MLP's GELU: "tanh" (GPT-2's gelu_new) or "none" (exact erf, nanoGPT's nn.GELU())

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, k) <= 0:
                raise ValueError(f"GPTConfig: {k} must be positive, got {getattr(self, k)}")
        if self.gelu_approximate not in ("none", "tanh"):
            raise ValueError(f"GPTConfig: gelu_approximate must be 'none' or 'tanh', got {self.gelu_approximate!r}")


def state_dict_shapes(config: GPTConfig) -> dict:
    """name -> shape of every tensor in `GPT(config).state_dict()`, in its order, without
    building the model (so a checkpoint can be checked before anything is allocated).
    A test keeps this equal to a built model's state_dict."""
    C, bias = config.n_embd, config.bias

    def linear(name, n_in, n_out):
        return {f"{name}.weight": (n_out, n_in), **({f"{name}.bias": (n_out,)} if bias else {})}

    def layer_norm(name):
        return {f"{name}.weight": (C,), **({f"{name}.bias": (C,)} if bias else {})}

    shapes = {"transformer.wte.weight": (config.vocab_size, C), "transformer.wpe.weight": (config.block_size, C)}
    for i in range(config.n_layer):
        h = f"transformer.h.{i}"
        shapes.update({**layer_norm(f"{h}.ln_1"), **linear(f"{h}.attn.c_attn", C, 3 * C),
                       **linear(f"{h}.attn.c_proj", C, C), **layer_norm(f"{h}.ln_2"),
                       **linear(f"{h}.mlp.c_fc", C, 4 * C), **linear(f"{h}.mlp.c_proj", 4 * C, C)})
    shapes.update(layer_norm("transformer.ln_f"))
    shapes["lm_head.weight"] = (config.vocab_size, C)  # tied: the same tensor as transformer.wte.weight
    return shapes


class CausalSelfAttention(Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v for all heads, packed
        self.c_proj = Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = Dropout(config.dropout)
        self.resid_dropout = Dropout(config.dropout)
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout

    def forward(self, x, kv_cache=None):
        """x (B, T, C) -> (B, T, C). With `kv_cache` = (k, v) arrays (B, nh, T_past, hs) or
        (None, None): the new tokens attend to the cached ones too; returns (y, (k, v)) with
        the keys and values of all T_past + T positions."""
        qkv = self.c_attn(x)                                                   # (B, T, 3C)
        if kv_cache is None:
            y = F.causal_self_attention(qkv, self.n_head, self.dropout if self.training else 0.0)
            return self.resid_dropout(self.c_proj(y))
        b, t, c = x.shape
        hs = c // self.n_head
        q, k, v = (z.reshape(b, t, self.n_head, hs).transpose(1, 2) for z in qkv.split(c, dim=2))  # (B, nh, T, hs)
        past_k, past_v = kv_cache
        if past_k is not None:
            xp = backend.array_module(k.data)
            k = Tensor._wrap(xp.concatenate([past_k, k.data], axis=2))
            v = Tensor._wrap(xp.concatenate([past_v, v.data], axis=2))
        t_all = k.shape[2]
        if t == t_all:  # no cache yet: plain causal attention
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif t == 1:    # one new token sees every cached one
            y = F.scaled_dot_product_attention(q, k, v)
        else:           # several new tokens: causal among themselves, all see the cache
            keep = ~F.causal_mask(t, t_all, t_all - t, x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=Tensor._wrap(keep))
        y = y.transpose(1, 2).reshape(b, t, c)                                 # heads merged
        return self.resid_dropout(self.c_proj(y)), (k.data, v.data)


class MLP(Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = GELU(approximate=config.gelu_approximate)
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, kv_cache=None):
        if kv_cache is None:
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))
        a, kv = self.attn(self.ln_1(x), kv_cache)
        x = x + a
        return x + self.mlp(self.ln_2(x)), kv


class GPT(Module):
    """nanoGPT's GPT. `forward(idx, targets=None) -> (logits (B, T, V), loss or None)`;
    `forward_step(idx, cache)` for incremental decoding with a KV cache."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = ModuleDict(dict(
            wte=Embedding(config.vocab_size, config.n_embd),
            wpe=Embedding(config.block_size, config.n_embd),
            drop=Dropout(config.dropout),
            h=ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying: one Parameter under two names
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():  # scaled init of the residual projections (GPT-2 paper)
            if pn.endswith("c_proj.weight"):
                normal_(p, 0.0, 0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, Linear):
            normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                zeros_(module.bias)
        elif isinstance(module, Embedding):
            normal_(module.weight, 0.0, 0.02)

    # ------------------------------------------------------------ training forward
    def forward(self, idx, targets=None):
        """idx (B, T) integer token ids, T <= block_size; targets (B, T) or None.
        Returns (logits (B, T, vocab_size), mean cross-entropy or None)."""
        idx = self._as_ids(idx, "forward")
        b, t = idx.shape
        pos = arange(t, device=idx.device)                                     # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))                        # (B, T, V)
        loss = None if targets is None else F.cross_entropy(logits, targets, ignore_index=-1)
        return logits, loss

    def _as_ids(self, idx, op, start_pos=0):
        idx = idx if isinstance(idx, Tensor) else Tensor(np.asarray(idx), device=self.lm_head.weight.device)
        if idx.ndim != 2 or idx.dtype.kind not in "iu":
            raise ValueError(f"GPT.{op}: idx must be a (B, T) integer tensor, got shape {idx.shape} dtype {idx.dtype}")
        t = idx.shape[1]
        if start_pos + t > self.config.block_size:
            where = f" after {start_pos} cached positions" if start_pos else ""
            raise ValueError(f"GPT.{op}: cannot forward a sequence of length {t}{where}: block size is only "
                             f"{self.config.block_size}")
        return idx

    # ------------------------------------------------------------ incremental decoding
    @no_grad()
    def forward_step(self, idx, cache=None):
        """Logits for new tokens given the keys and values of the ones before (no graph).

        idx:   (B, T_new) token ids that follow the cached positions (the whole prompt at first).
        cache: None at the start, else the cache this method returned last time: a list with
               one (k, v) pair per layer, numpy/cupy arrays of shape (B, n_head, T_past, head_size).
        Returns (logits (B, T_new, vocab_size), new cache covering T_past + T_new positions).
        The logits equal forward(all tokens so far)[0][:, -T_new:] (up to float rounding).

        Generation:
            logits, cache = model.forward_step(prompt)                  # prefill, prompt (B, T0)
            for _ in range(n):
                nxt = sample(logits[:, -1])                             # (B, 1)
                if model.cache_length(cache) == model.config.block_size:  # context full:
                    logits, cache = model.forward_step(window[:, -block_size:])  # recompute from scratch
                else:
                    logits, cache = model.forward_step(nxt, cache)
        The cache holds absolute positions, so it cannot slide; once full, recompute. Rows of
        the cache can be reordered or repeated for beam search: [(k[i], v[i]) for k, v in cache].
        Call model.eval() first (dropout would otherwise stay on).
        """
        start = self.cache_length(cache)
        if cache is not None and len(cache) != self.config.n_layer:
            raise ValueError(f"GPT.forward_step: cache has {len(cache)} layers, the model {self.config.n_layer}")
        idx = self._as_ids(idx, "forward_step", start)
        t = idx.shape[1]
        if cache is not None and cache[0][0].shape[0] != idx.shape[0]:
            raise ValueError(f"GPT.forward_step: cache holds a batch of {cache[0][0].shape[0]} but idx has {idx.shape[0]} rows")
        pos = arange(start, start + t, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        new_cache = []
        for i, block in enumerate(self.transformer.h):
            x, kv = block(x, cache[i] if cache is not None else (None, None))
            new_cache.append(kv)
        return self.lm_head(self.transformer.ln_f(x)), new_cache

    @staticmethod
    def cache_length(cache) -> int:
        """How many positions a forward_step cache covers (0 for None)."""
        return 0 if cache is None else int(cache[0][0].shape[2])

    # ------------------------------------------------------------ utilities
    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count (the tied lm_head/wte weight counted once); by default without the
        position embeddings, as nanoGPT reports it."""
        n = self.num_parameters()
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    get_num_params = num_params

    def configure_optimizers(self, weight_decay: float, learning_rate: float, betas=(0.9, 0.95), device_type=None):
        """AdamW with nanoGPT's two groups: weight decay on every parameter with >= 2 dims
        (matmul weights, embeddings), none on biases and LayerNorm gains."""
        params = dict(self.named_parameters())
        decay = [p for p in params.values() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in params.values() if p.requires_grad and p.ndim < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        return AdamW(groups, lr=learning_rate, betas=betas)

    def crop_block_size(self, block_size: int) -> None:
        """Shrink the context length (e.g. after loading a checkpoint trained with a larger one)."""
        if not 0 < block_size <= self.config.block_size:
            raise ValueError(f"GPT.crop_block_size: block_size must be in (0, {self.config.block_size}], got {block_size}")
        self.config.block_size = block_size
        w = self.transformer.wpe.weight
        w.data = w.data[:block_size].copy()
        w.grad = None
        self.transformer.wpe.num_embeddings = block_size
