"""The configuration of a training run: `TrainConfig`, its checks, and the one table of
training recipes, `PRESETS`.

`TrainConfig()` is the quick-start run, the preset "default": `tinygrad-lm train` with no
flags runs exactly it. The CLI's `--preset` (choices and help), the benchmarks, the docs and
the tests read PRESETS. This module imports nothing from the engine, so the CLI can build its
parser (and `sample` or `eval` run) without importing the training loop.

`resume_config` decides what a `--resume` runs: the saved run's whole configuration, with
only the few options in RESUME_MAY_CHANGE open to change (each change printed), and every
other option that differs refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from .ranges import FLAG_RANGES, flag_name


@dataclass
class TrainConfig:
    """Everything a training run needs. The defaults are the quick-start run, the preset
    "default": `tinygrad-lm train` with no flags runs exactly `TrainConfig()`."""
    # data
    data: str | None = None          # a UTF-8 text file (.jsonl: prompt/completion examples); None = the built-in corpus
    loss_on: str = "all"             # all | completion (JSONL examples: only the completion's tokens count)
    init_from: str | None = None     # a checkpoint folder whose weights (and tokenizer, shape) the run starts from
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
    preset: str | None = field(default=None, compare=False)  # the --preset given, if any (checked on --resume)

    def validate(self) -> None:
        """Every numeric option in its range (ranges.FLAG_RANGES["train"]: the CLI's table), then
        the checks that tie options together. Raises ValueError naming the flag."""
        def need(cond, msg):
            if not cond:
                raise ValueError(msg)
        for name, allowed in FLAG_RANGES["train"].items():
            value = getattr(self, name, None)
            if value is not None:  # None: an optional option left out (vocab_size, lr_decay_iters)
                allowed.check(flag_name(name), value)
        need(self.n_embd % self.n_head == 0, f"--n-embd {self.n_embd} is not divisible by --n-head {self.n_head}")
        # the global batch splits into grad_accum_steps micro-batches (and over the ranks:
        # distributed.check_batch, once their number is known). A --resume's batch is the
        # checkpoint's: train checks it once the run's configuration is read.
        need(self.resume or self.batch_size % self.grad_accum_steps == 0,
             f"--batch-size {self.batch_size} is not divisible by --grad-accum-steps {self.grad_accum_steps}")
        need(self.gelu_approximate in ("tanh", "none"), f"--gelu-approximate must be tanh or none, got {self.gelu_approximate!r}")
        need(self.tokenizer in ("char", "bpe"), f"--tokenizer must be char or bpe, got {self.tokenizer!r}")
        need(self.loss_on in ("all", "completion"), f"--loss-on must be all or completion, got {self.loss_on!r}")
        need(self.loss_on == "all" or (isinstance(self.data, str) and self.data.lower().endswith(".jsonl")),
             f"--loss-on completion needs prompt/completion examples: --data FILE.jsonl, a line "
             f'{{"prompt": ..., "completion": ...}} per example (got --data {self.data or "the built-in corpus"})')
        need(self.dtype in ("float32", "float64"), f"--dtype must be float32 or float64, got {self.dtype!r}")
        need(not (self.resume and self.force), "--resume and --force contradict each other: --resume continues the "
                                               "checkpoint, --force replaces it")
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
    given_preset = preset
    preset = "default" if preset is None else preset
    if preset not in PRESETS:
        raise ValueError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    cfg = TrainConfig(**PRESETS[preset])
    cfg.preset = given_preset
    names = {f.name for f in fields(TrainConfig)}
    given = []
    for k, v in args.items():
        if k in names and v is not None:
            setattr(cfg, k, v)
            given.append(k)
    cfg.explicit = tuple(given)
    return cfg


# ---------------------------------------------------------------- --resume
# What --resume may change, and what the change means; every other option is the run's.
RESUME_MAY_CHANGE = {
    "max_iters": "where the run stops (the learning-rate schedule stays the run's)",
    "eval_interval": "how often it evaluates and saves (training steps are unchanged)",
    "eval_iters": "how many batches an evaluation averages (training steps are unchanged)",
    "sample_tokens": "the sample printed at the end",
    "device": "where it runs (the run continues the same numbers on any device)",
    "grad_accum_steps": "how the global batch is split into micro-batches (the same batch and step, up to rounding; "
                        "with dropout, the same in distribution)",
}
# TrainConfig fields that describe one invocation, not the run: never compared.
INVOCATION_KEYS = ("out_dir", "resume", "force", "progress", "explicit", "preset")


def resume_config(cfg: TrainConfig, saved: dict | None, model: dict, dtype: str) -> tuple[TrainConfig, list[str]]:
    """The configuration a --resume runs, and the lines to print about it.

    The base is the checkpoint's saved run (`saved`, meta.json's "train_config"), with the
    architecture (`model`, meta.json's checked "config") and `dtype` of the weights themselves.
    Each option given now (cfg.explicit, and every key of a --preset given) must equal the
    run's, except those in RESUME_MAY_CHANGE, which are taken and named on a line each. A
    differing --data is left to the caller (it compares the text itself, not the path).
    An option the checkpoint does not record (written by an older version) takes the value
    given now, on a printed line. Raises ValueError naming the flag."""
    names = [f.name for f in fields(TrainConfig)]
    saved = dict(saved or {})
    unknown = sorted(set(saved) - set(names))
    if unknown:
        raise ValueError(f"--resume: the checkpoint's run has option {unknown[0]!r}, which this version of "
                         f"tinygrad_lm does not know, so it cannot continue that run")
    notes = []
    run = TrainConfig(**{k: saved[k] for k in names if k in saved and k not in INVOCATION_KEYS})
    if run.data is not None and not isinstance(run.data, str):
        raise ValueError(f"--resume: the checkpoint's run configuration is invalid: its data must be a path or "
                         f"null, got {run.data!r}")
    arch = {k: v for k, v in model.items() if k != "vocab_size"}  # vocab_size here is the BPE option, not the model's
    for k in names:
        if k not in saved and k not in INVOCATION_KEYS and k not in arch and k != "dtype":
            setattr(run, k, getattr(cfg, k))
            notes.append(f"--resume: the checkpoint does not record {flag_name(k)}; using {getattr(cfg, k)!r}")
    for k, v in {**arch, "dtype": dtype}.items():  # the weights' own architecture and dtype
        setattr(run, k, v)
    if run.lr_decay_iters is None:  # "decay over max_iters": the run's, fixed before --max-iters may change
        run.lr_decay_iters = run.max_iters
    given = {k: (getattr(cfg, k), f"{flag_name(k)} {getattr(cfg, k)}") for k in cfg.explicit}
    if cfg.preset is not None:
        for k, v in PRESETS[cfg.preset].items():
            given.setdefault(k, (v, f"--preset {cfg.preset} sets {flag_name(k)} {v}, which"))
    notes += apply_resume_changes(run, given, RESUME_MAY_CHANGE, skip=INVOCATION_KEYS + ("data",))
    for k in INVOCATION_KEYS:
        setattr(run, k, getattr(cfg, k))
    try:
        run.validate()  # meta.json is input too: its values get the flags' checks
    except (TypeError, ValueError) as e:
        raise ValueError(f"--resume: the checkpoint's run configuration is invalid: {e}") from None
    return run, notes


def apply_resume_changes(run, given: dict, may_change: dict, skip=()) -> list[str]:
    """The options given to a --resume (`given`: name -> (value, how to name it in a message))
    against the saved run `run` (changed in place): equal ones pass, those in `may_change` are
    taken with a line each (returned), any other that differs is refused (ValueError)."""
    notes = []
    for k, (value, label) in given.items():
        if k in skip:
            continue
        old = getattr(run, k)
        if value == old:
            continue
        if k in may_change:
            setattr(run, k, value)
            notes.append(f"--resume: {flag_name(k)} {value} (the run had {old}): {may_change[k]}")
            continue
        allowed = ", ".join(flag_name(n) for n in may_change)
        raise ValueError(f"--resume: {label} differs from the checkpoint's {old} (a resumed run is the "
                         f"same run: only {allowed} may change; start a new run with --force or another --out-dir)")
    return notes


# ---------------------------------------------------------------- preference optimization
@dataclass
class DPOConfig:
    """Everything a DPO run needs (`tinygrad-lm dpo`; preference.py runs it). The model, its
    shape and its tokenizer come from the --init-from checkpoint."""
    init_from: str | None = None     # the checkpoint folder the policy and the frozen reference start from
    pairs: str | None = None         # JSONL preference pairs: {"prompt": ..., "chosen": ..., "rejected": ...}
    beta: float = 0.1                # the strength of the pull back to the reference (the KL penalty's weight)
    val_share: float = 0.1           # the share of the pairs held out for evaluation
    batch_size: int = 16             # pairs per step (2 x batch_size sequences)
    lr: float = 2e-5                 # AdamW, constant after a linear warmup
    warmup_iters: int = 10
    max_iters: int = 150
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_interval: int = 50
    seed: int = 1337
    device: str = "cpu"
    out_dir: str = "out-dpo"
    resume: bool = False
    force: bool = False
    progress: bool = True
    explicit: tuple = ()             # names of the options given on the command line (checked on --resume)

    def validate(self) -> None:
        """Every numeric option in its range (ranges.FLAG_RANGES["dpo"]), then the checks that
        tie options together. Raises ValueError naming the flag."""
        for name, allowed in FLAG_RANGES["dpo"].items():
            allowed.check(flag_name(name), getattr(self, name))
        if self.resume and self.force:
            raise ValueError("--resume and --force contradict each other: --resume continues the checkpoint, "
                             "--force replaces it")
        if not self.resume:
            for name, what in (("init_from", "the checkpoint folder to start from, the --out-dir of a train run"),
                               ("pairs", 'a JSONL file of {"prompt": ..., "chosen": ..., "rejected": ...} lines')):
                if getattr(self, name) is None:
                    raise ValueError(f"{flag_name(name)} is required: {what}")


# What dpo --resume may change; every other option is the run's.
DPO_RESUME_MAY_CHANGE = {
    "max_iters": "where the run stops",
    "eval_interval": "how often it evaluates and saves (training steps are unchanged)",
    "device": "where it runs (the run continues the same numbers on any device)",
}
DPO_INVOCATION_KEYS = ("out_dir", "resume", "force", "progress", "explicit")


def dpo_resume_config(cfg: DPOConfig, saved: dict) -> tuple[DPOConfig, list[str]]:
    """The configuration a `dpo --resume` runs: the checkpoint's saved run, with only the
    options of DPO_RESUME_MAY_CHANGE open to change (each change on a line returned). A
    differing --pairs is left to the caller (it compares the text, not the path)."""
    names = [f.name for f in fields(DPOConfig)]
    unknown = sorted(set(saved) - set(names))
    if unknown:
        raise ValueError(f"--resume: the checkpoint's run has option {unknown[0]!r}, which this version of "
                         f"tinygrad_lm does not know, so it cannot continue that run")
    run = DPOConfig(**{k: saved[k] for k in names if k in saved and k not in DPO_INVOCATION_KEYS})
    given = {k: (getattr(cfg, k), f"{flag_name(k)} {getattr(cfg, k)}") for k in cfg.explicit}
    notes = apply_resume_changes(run, given, DPO_RESUME_MAY_CHANGE, skip=DPO_INVOCATION_KEYS + ("pairs",))
    for k in DPO_INVOCATION_KEYS:
        setattr(run, k, getattr(cfg, k))
    try:
        run.validate()  # meta.json is input too: its values get the flags' checks
        if not (isinstance(run.init_from, str) and isinstance(run.pairs, str)):
            raise ValueError(f"its init_from and pairs must be paths, got {run.init_from!r} and {run.pairs!r}")
    except (TypeError, ValueError) as e:
        raise ValueError(f"--resume: the checkpoint's run configuration is invalid: {e}") from None
    return run, notes
