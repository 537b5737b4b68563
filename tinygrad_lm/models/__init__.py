"""Language models. `GPT` follows nanoGPT's architecture and parameter names."""
from .gpt import GPT, GPTConfig, Block, MLP, CausalSelfAttention  # noqa: F401
