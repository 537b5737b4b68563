"""The configuration of a training run: `TrainConfig`, its checks, and the one table of
training recipes, `PRESETS`.

`TrainConfig()` is the quick-start run, the preset "default": `tinygrad-lm train` with no
flags runs exactly it. The CLI's `--preset` (choices and help), the benchmarks, the docs and
the tests read PRESETS. This module imports nothing from the engine, so the CLI can build its
parser (and `sample` or `eval` run) without importing the training loop.
"""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class TrainConfig:
    """Everything a training run needs. The defaults are the quick-start run, the preset
    "default": `tinygrad-lm train` with no flags runs exactly `TrainConfig()`."""
    # data
    data: str | None = None          # a UTF-8 text file; None = the built-in corpus
    tokenizer: str = "char"          # char | bpe
    vocab_size: int | None = None    # for bpe
    # model
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    bias: bool = False
    gelu_approximate: str = "tanh"   # tanh (GPT-2's gelu_new) | none (exact erf, nanoGPT's nn.GELU())
    # optimisation
    batch_size: int = 16
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    max_iters: int = 3000
    lr_decay_iters: int | None = 3000  # None: decay over max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    grad_accum_steps: int = 1        # micro-batches per optimizer step (batch_size is the global batch)
    # evaluation and logging
    eval_interval: int = 500
    eval_iters: int = 20
    sample_tokens: int = 200
    seed: int = 1337
    device: str = "cpu"
    dtype: str = "float32"
    out_dir: str = "out"
    resume: bool = False
    force: bool = False
    progress: bool = True
    explicit: tuple = ()             # names of the options given on the command line (checked on --resume)

    def validate(self) -> None:
        def need(cond, msg):
            if not cond:
                raise ValueError(msg)
        need(self.n_layer >= 1, f"--n-layer must be >= 1, got {self.n_layer}")
        need(self.n_head >= 1 and self.n_embd >= 1, f"--n-head and --n-embd must be >= 1, got {self.n_head} and {self.n_embd}")
        need(self.n_embd % self.n_head == 0, f"--n-embd {self.n_embd} is not divisible by --n-head {self.n_head}")
        need(self.block_size >= 1, f"--block-size must be >= 1, got {self.block_size}")
        need(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}")
        need(0 <= self.dropout < 1, f"--dropout must be in [0, 1), got {self.dropout}")
        need(self.lr > 0 and self.min_lr >= 0, f"--lr must be > 0 and --min-lr >= 0, got {self.lr} and {self.min_lr}")
        need(self.max_iters >= 0 and self.warmup_iters >= 0, "--max-iters and --warmup-iters must be >= 0")
        need(self.eval_interval >= 1 and self.eval_iters >= 1, "--eval-interval and --eval-iters must be >= 1")
        need(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, f"--beta1/--beta2 must be in [0, 1), got {self.beta1}, {self.beta2}")
        need(self.grad_accum_steps >= 1, f"--grad-accum-steps must be >= 1, got {self.grad_accum_steps}")
        need(self.batch_size % self.grad_accum_steps == 0 or self.batch_size < 1,
             f"--batch-size {self.batch_size} is not divisible by --grad-accum-steps {self.grad_accum_steps}")
        need(self.grad_clip >= 0, f"--grad-clip must be >= 0 (0 disables), got {self.grad_clip}")
        need(self.gelu_approximate in ("tanh", "none"), f"--gelu-approximate must be tanh or none, got {self.gelu_approximate!r}")
        need(self.tokenizer in ("char", "bpe"), f"--tokenizer must be char or bpe, got {self.tokenizer!r}")
        need(self.dtype in ("float32", "float64"), f"--dtype must be float32 or float64, got {self.dtype!r}")
        if self.tokenizer == "bpe":
            need(self.vocab_size is not None and self.vocab_size >= 256, f"--tokenizer bpe needs --vocab-size >= 256, got {self.vocab_size}")


# ---------------------------------------------------------------- presets
# What a preset sets: the model's size and the optimisation and evaluation schedule. The rest
# of TrainConfig (data, tokenizer, device, seed, out_dir ...) belongs to the run, not the recipe.
PRESET_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "dropout", "batch_size", "max_iters", "lr", "min_lr",
               "lr_decay_iters", "warmup_iters", "beta2", "weight_decay", "grad_clip", "eval_interval", "eval_iters")

# The one table of training recipes: the CLI's --preset, the benchmarks, the docs and the tests
# read it. Each sets every PRESET_KEYS entry, so TrainConfig(**PRESETS[name]) is the whole recipe.
PRESETS = {
    # the quick-start run, sized to finish in about 5 minutes on a 2-core CPU: TrainConfig's defaults
    "default": {k: getattr(TrainConfig(), k) for k in PRESET_KEYS},
    # nanoGPT's CPU config (config/train_shakespeare_char.py with its "on a macbook" overrides)
    "cpu": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, max_iters=2000, lr=1e-3,
                min_lr=1e-4, lr_decay_iters=2000, warmup_iters=100, dropout=0.0, beta2=0.99, weight_decay=0.1,
                grad_clip=1.0, eval_interval=250, eval_iters=20),
    # nanoGPT's baby Shakespeare config (config/train_shakespeare_char.py)
    "gpu": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64, max_iters=5000, lr=1e-3,
                min_lr=1e-4, lr_decay_iters=5000, warmup_iters=100, dropout=0.2, beta2=0.99, weight_decay=0.1,
                grad_clip=1.0, eval_interval=250, eval_iters=200),
}

PRESET_ABOUT = {
    "default": "the quick-start run",
    "cpu": "nanoGPT's CPU config",
    "gpu": "nanoGPT's baby Shakespeare config",
}


def describe_preset(name: str) -> str:
    """One line for --help and the docs, e.g. "4x4x128, block 64, batch 12, 2000 iters"."""
    p = PRESETS[name]
    text = f"{p['n_layer']}x{p['n_head']}x{p['n_embd']}, block {p['block_size']}, batch {p['batch_size']}, {p['max_iters']} iters"
    return text + (f", dropout {p['dropout']:g}" if p["dropout"] else "")


def config_from_args(args: dict, preset: str | None) -> TrainConfig:
    """TrainConfig from a preset (None: "default") overridden by the values given explicitly (None = not given)."""
    preset = "default" if preset is None else preset
    if preset not in PRESETS:
        raise ValueError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    cfg = TrainConfig(**PRESETS[preset])
    names = {f.name for f in fields(TrainConfig)}
    given = []
    for k, v in args.items():
        if k in names and v is not None:
            setattr(cfg, k, v)
            given.append(k)
    cfg.explicit = tuple(given)
    return cfg
