"""Checkpoints: the format, and everything that writes, reads, checks or builds a model from it.

A checkpoint is a folder `<out_dir>/ckpt/` holding

    model.safetensors      the weights under GPT-2 / nanoGPT names (loadable by PyTorch tools)
    optimizer.safetensors  the optimizer's arrays (AdamW's moments), named by their place in its state
    meta.json              the model config, tokenizer, step, RNG states, the run's configuration, and
                           the optimizer's state with each array replaced by {"__array__": name}

Safetensors files go through the `safetensors` package, the format's reference implementation:
it checks the header, the dtypes, and that the tensors' byte ranges tile the data exactly.
Reading safetensors or JSON runs no code (never pickle).

Writing: `save_checkpoint` refuses non-finite values, writes the three files into `ckpt.tmp/`
(each through fileio.atomic_write; meta.json last, its presence marks the folder complete),
then swaps folders with renames: ckpt -> ckpt.old, ckpt.tmp -> ckpt, ckpt.old removed. A
crash at any moment leaves `ckpt/` or `ckpt.old/` whole, and loading picks up the survivor.

Reading, with every check made before a model is built:
    load_checkpoint     the files: readable, valid safetensors of known dtypes, finite, one step
    model_config        meta.json's model config: every key, each of a valid type and range
    check_model_arrays  the weights against that config: no tensor missing, none extra, each of
                        the shape and dtype the config implies, the tied weights equal
Any problem is a CheckpointError: one line naming the file (and the tensor).

Building: `load_model` -> (model, tokenizer, meta) for sample and eval;
`load_training_checkpoint` adds the optimizer state, for --resume.
"""
from __future__ import annotations

import json
import os
import shutil
import stat

import numpy as np
import safetensors
import safetensors.numpy

from . import backend
from .data import TokenizerError, tokenizer_from_dict
from .fileio import atomic_write
from .tensor import Tensor

# The safetensors dtypes tinygrad_lm writes and reads (others, e.g. BF16, are refused by name).
DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_DTYPE_CODES = {np.dtype(v).type: k for k, v in DTYPES.items()}

CKPT, TMP, OLD = "ckpt", "ckpt.tmp", "ckpt.old"
FILES = ("model.safetensors", "optimizer.safetensors", "meta.json")  # what a complete checkpoint folder holds

# The model's architecture in meta.json's "config" (besides vocab_size): GPTConfig's fields.
MODEL_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "dropout", "bias", "gelu_approximate")
# Keys added after checkpoints were first written, and what a checkpoint without one meant.
LEGACY_MODEL_DEFAULTS = {"gelu_approximate": "tanh"}
MODEL_DTYPES = ("float32", "float64")


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupted or does not match what was asked for."""


# ---------------------------------------------------------------- safetensors files
def save_safetensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """Write name -> numpy array to `path` in the safetensors format, atomically. Metadata
    values are stored as strings (the format's rule)."""
    arrays = {}
    for name, arr in tensors.items():
        arr = np.asarray(arr)
        if arr.dtype.type not in _DTYPE_CODES:
            raise CheckpointError(f"save_safetensors: tensor {name!r} has unsupported dtype {arr.dtype} "
                                  f"(supported: {', '.join(DTYPES)})")
        # the package reads the array's memory as it lies: it must be C-contiguous
        arrays[name] = arr if arr.flags.c_contiguous else arr.copy(order="C")
    meta = {str(k): str(v) for k, v in metadata.items()} if metadata else None
    atomic_write(path, safetensors.numpy.save(arrays, metadata=meta))


def load_safetensors(path) -> tuple[dict, dict]:
    """Read a safetensors file -> (name -> numpy array, metadata). The package validates the
    header and the byte offsets; tensors of a dtype outside DTYPES are refused by name."""
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint file {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(mode):  # a FIFO or a device would block or never end
        raise CheckpointError(f"checkpoint file {path} is not a regular file")
    try:
        with safetensors.safe_open(path, framework="numpy") as f:
            metadata = f.metadata() or {}
            for name in f.keys():
                code = f.get_slice(name).get_dtype()
                if code not in DTYPES:
                    raise CheckpointError(f"checkpoint file {path}: tensor {name!r} has dtype {code}, which "
                                          f"tinygrad_lm does not read (it reads {', '.join(DTYPES)})")
            arrays = {name: f.get_tensor(name) for name in f.keys()}
    except safetensors.SafetensorError as e:
        raise CheckpointError(f"checkpoint file {path} is truncated or corrupted ({_one_line(e)})") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint file {path}: {e.strerror or e}") from None
    return arrays, metadata


def _one_line(e) -> str:
    return " ".join(str(e).split())


# ---------------------------------------------------------------- optimizer state <-> arrays
def flatten_state(obj, arrays: dict, prefix: str = ""):
    """A JSON-able skeleton of a nested state (dicts, lists, numbers) in which every array is
    replaced by {"__array__": name}, the arrays going into `arrays` under dotted names
    ("state.0.exp_avg"), for a safetensors file."""
    if isinstance(obj, dict):
        return {str(k): flatten_state(v, arrays, f"{prefix}{k}.") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [flatten_state(v, arrays, f"{prefix}{i}.") for i, v in enumerate(obj)]
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        name = prefix[:-1]
        arrays[name] = backend.to_numpy(obj.data if isinstance(obj, Tensor) else obj)
        return {"__array__": name}
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def unflatten_state(skeleton, arrays: dict, where: str = "optimizer.safetensors"):
    """The inverse of flatten_state. Every array must be used exactly where the skeleton
    names it: a missing or an unused one is a CheckpointError naming it."""
    used = set()

    def join(node):
        if isinstance(node, dict):
            if set(node) == {"__array__"}:
                name = node["__array__"]
                if not isinstance(name, str) or name not in arrays:
                    raise CheckpointError(f"checkpoint file {where}: optimizer array {name!r} is missing")
                used.add(name)
                return arrays[name]
            return {k: join(v) for k, v in node.items()}
        if isinstance(node, list):
            return [join(v) for v in node]
        return node

    state = join(skeleton)
    extra = sorted(set(arrays) - used)
    if extra:
        raise CheckpointError(f"checkpoint file {where}: array {extra[0]!r} is not part of the optimizer state "
                              f"in meta.json" + (f" (nor are {len(extra) - 1} more)" if len(extra) > 1 else ""))
    return state


# ---------------------------------------------------------------- checkpoint folders
def checkpoint_dir(out_dir) -> str | None:
    """The folder holding the newest complete checkpoint in out_dir, or None."""
    for name in (CKPT, OLD):
        d = os.path.join(out_dir, name)
        if os.path.isfile(os.path.join(d, "meta.json")):
            return d
    return None


def _check_finite(arrays: dict, what: str) -> None:
    for name, a in arrays.items():
        if np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all():
            bad = a.size - int(np.count_nonzero(np.isfinite(a)))
            raise CheckpointError(f"{what}: tensor {name!r} holds {bad} non-finite value(s) (NaN or inf)")


def _remove(path) -> None:
    """Remove a file, a symlink (not its target) or a folder tree, if present."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def save_checkpoint(out_dir, model_arrays: dict, optim_arrays: dict, meta: dict) -> str:
    """Write a complete checkpoint into out_dir/ckpt, replacing the previous one atomically.
    Refuses (CheckpointError, nothing written) arrays holding NaN or inf."""
    _check_finite(model_arrays, f"refusing to save a checkpoint in {out_dir}: model")
    _check_finite(optim_arrays, f"refusing to save a checkpoint in {out_dir}: optimizer")
    os.makedirs(out_dir, exist_ok=True)
    tmp, cur, old = (os.path.join(out_dir, n) for n in (TMP, CKPT, OLD))
    _remove(tmp)  # a partial folder left by a crash
    os.makedirs(tmp)
    step = {"step": str(meta.get("step", 0))}
    try:
        save_safetensors(os.path.join(tmp, "model.safetensors"), model_arrays, {**step, "format": "pt"})
        save_safetensors(os.path.join(tmp, "optimizer.safetensors"), optim_arrays, {**step, "format": "tinygrad_lm"})
        atomic_write(os.path.join(tmp, "meta.json"), json.dumps(meta, indent=1))  # last: marks the folder complete
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # e.g. a full disk: leave no partial folder behind
        raise
    if os.path.isdir(cur):
        _remove(old)
        os.replace(cur, old)
    os.replace(tmp, cur)
    _remove(old)
    return cur


def _read_checkpoint(out_dir, with_optimizer: bool = True) -> tuple[str, dict, dict, dict]:
    """-> (the folder read, model arrays, optimizer arrays, meta), every file checked."""
    out_dir = os.fspath(out_dir)
    if not os.path.isdir(out_dir):
        raise CheckpointError(f"no checkpoint: {out_dir} is not a directory")
    d = checkpoint_dir(out_dir)
    if d is None:
        raise CheckpointError(f"no checkpoint in {out_dir} (expected {os.path.join(out_dir, CKPT, 'meta.json')})")
    meta_path = os.path.join(d, "meta.json")
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint file {meta_path} is unreadable or corrupted: {_one_line(e)}") from None
    if not isinstance(meta, dict) or "config" not in meta:
        raise CheckpointError(f"checkpoint file {meta_path} is corrupted (no model config)")
    model_path, optim_path = os.path.join(d, "model.safetensors"), os.path.join(d, "optimizer.safetensors")
    model, mmeta = load_safetensors(model_path)
    optim, ometa = load_safetensors(optim_path) if with_optimizer and os.path.exists(optim_path) else ({}, {})
    step = str(meta.get("step", 0))
    if mmeta.get("step", step) != step or (ometa and ometa.get("step", step) != step):
        raise CheckpointError(f"checkpoint in {d} is inconsistent: files from different steps")
    _check_finite(model, f"checkpoint file {model_path}")
    _check_finite(optim, f"checkpoint file {optim_path}")
    return d, model, optim, meta


def load_checkpoint(out_dir, with_optimizer: bool = True) -> tuple[dict, dict, dict]:
    """-> (model arrays, optimizer arrays, meta) of the checkpoint in out_dir, every file read
    and checked (not yet against the model config: see load_model). Raises CheckpointError."""
    _, model, optim, meta = _read_checkpoint(out_dir, with_optimizer)
    return model, optim, meta


# ---------------------------------------------------------------- checks against the model config
def model_config(meta: dict, where: str = "meta.json") -> dict:
    """meta.json's model config with every key present and valid (keys a checkpoint predates
    take the value it implied). Raises CheckpointError naming the key."""
    cfg = meta.get("config")
    if not isinstance(cfg, dict):
        raise CheckpointError(f"checkpoint file {where}: 'config' is not a JSON object")
    keys = ("vocab_size",) + MODEL_KEYS
    unknown = sorted(set(cfg) - set(keys))
    if unknown:
        raise CheckpointError(f"checkpoint file {where}: unknown key {unknown[0]!r} in config")
    out = {}
    for k in keys:
        if k not in cfg and k not in LEGACY_MODEL_DEFAULTS:
            raise CheckpointError(f"checkpoint file {where}: config has no {k!r}")
        out[k] = cfg.get(k, LEGACY_MODEL_DEFAULTS.get(k))

    def need(ok, key, what):
        if not ok:
            raise CheckpointError(f"checkpoint file {where}: config {key!r} must be {what}, got {out[key]!r}")
    for k in ("vocab_size", "n_layer", "n_head", "n_embd", "block_size"):
        need(type(out[k]) is int and out[k] >= 1, k, "a positive integer")
    need(out["n_embd"] % out["n_head"] == 0, "n_embd", f"divisible by n_head {out['n_head']}")
    need(type(out["dropout"]) in (int, float) and 0 <= out["dropout"] < 1, "dropout", "a number in [0, 1)")
    need(type(out["bias"]) is bool, "bias", "true or false")
    need(out["gelu_approximate"] in ("tanh", "none"), "gelu_approximate", "'tanh' or 'none'")
    return out


def model_dtype(meta: dict, where: str = "meta.json") -> str:
    dtype = meta.get("dtype", "float32")  # checkpoints before the key were float32
    if dtype not in MODEL_DTYPES:
        raise CheckpointError(f"checkpoint file {where}: dtype must be one of {', '.join(MODEL_DTYPES)}, got {dtype!r}")
    return dtype


def check_model_arrays(arrays: dict, config: dict, dtype: str, where: str = "model.safetensors") -> None:
    """The weights must be exactly those of a GPT with `config` (a checked model_config):
    every tensor present and none extra, each of its shape and of `dtype`, and the tied
    lm_head / token-embedding weights equal. Raises CheckpointError naming the tensor."""
    from .models.gpt import GPTConfig, state_dict_shapes
    # a config claiming more layers than the file has tensors is wrong before its names are
    # listed (which, for n_layer = 10**9, would take hours)
    if config["n_layer"] > len(arrays):
        raise CheckpointError(f"checkpoint file {where}: the config's n_layer {config['n_layer']} needs more tensors "
                              f"than the {len(arrays)} the file holds")
    expected = state_dict_shapes(GPTConfig(**config))
    missing = [k for k in expected if k not in arrays]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"checkpoint file {where}: tensor {missing[0]!r} is missing{more}")
    extra = [k for k in arrays if k not in expected]
    if extra:
        raise CheckpointError(f"checkpoint file {where}: unexpected tensor {extra[0]!r} "
                              f"(a GPT with the config in meta.json has none of that name)")
    for k, shape in expected.items():
        a = arrays[k]
        if tuple(a.shape) != shape:
            raise CheckpointError(f"checkpoint file {where}: tensor {k!r} has shape {tuple(a.shape)}; "
                                  f"the config in meta.json needs {shape}")
        if a.dtype != np.dtype(dtype):
            raise CheckpointError(f"checkpoint file {where}: tensor {k!r} is {a.dtype}; meta.json says the model is {dtype}")
    if not np.array_equal(arrays["lm_head.weight"], arrays["transformer.wte.weight"]):
        raise CheckpointError(f"checkpoint file {where}: tensors 'lm_head.weight' and 'transformer.wte.weight' "
                              f"differ, but they are one tied weight")


# ---------------------------------------------------------------- models
def build_model(config: dict, device: str = "cpu", dtype: str = "float32"):
    """A freshly initialised GPT(GPTConfig(**config)) in `dtype` on `device`."""
    from .models.gpt import GPT, GPTConfig
    model = GPT(GPTConfig(**config))
    if dtype != "float32":
        for p in model.parameters():
            p.data = p.data.astype(dtype)
    return model.to(device) if device != "cpu" else model


def model_arrays(model) -> dict:
    """name -> numpy array of the model's state_dict (on the host), as written to model.safetensors."""
    return {k: backend.to_numpy(v.data if isinstance(v, Tensor) else v) for k, v in model.state_dict().items()}


def _restore(out_dir, with_optimizer: bool):
    """Read and check everything, then build: -> (folder, model on the CPU, tokenizer, meta, optimizer arrays)."""
    d, arrays, optim, meta = _read_checkpoint(out_dir, with_optimizer)
    meta_path = os.path.join(d, "meta.json")
    config = model_config(meta, meta_path)
    dtype = model_dtype(meta, meta_path)
    check_model_arrays(arrays, config, dtype, os.path.join(d, "model.safetensors"))
    try:
        tok = tokenizer_from_dict(meta.get("tokenizer"))
    except TokenizerError as e:
        raise CheckpointError(f"checkpoint file {meta_path}: bad tokenizer: {_one_line(e)}") from None
    if tok.vocab_size != config["vocab_size"]:
        raise CheckpointError(f"checkpoint file {meta_path}: the tokenizer has {tok.vocab_size} tokens but the "
                              f"model's vocab_size is {config['vocab_size']}")
    model = build_model(config, "cpu", dtype)
    model.load_state_dict(arrays)
    return d, model, tok, meta, optim


def load_model(out_dir, device: str = "cpu"):
    """-> (model in eval mode on `device`, tokenizer, meta) from the checkpoint in out_dir."""
    _, model, tok, meta, _ = _restore(out_dir, with_optimizer=False)
    if device != "cpu":
        model.to(device)
    model.eval()
    return model, tok, meta


# What --resume needs from meta.json besides the model.
_TRAINING_KEYS = ("step", "optimizer", "batch_rng", "model_rng")


def save_training_checkpoint(out_dir, model, optimizer, meta: dict) -> str:
    """Save `model`, `optimizer` (its arrays to optimizer.safetensors, the rest into meta.json
    under "optimizer") and `meta` as the checkpoint in out_dir."""
    optim_arrays = {}
    meta = {**meta, "optimizer": flatten_state(optimizer.state_dict(), optim_arrays)}
    return save_checkpoint(out_dir, model_arrays(model), optim_arrays, meta)


def load_training_checkpoint(out_dir):
    """-> (model on the CPU, tokenizer, meta, optimizer state dict) to continue a training run."""
    d, model, tok, meta, optim = _restore(out_dir, with_optimizer=True)
    for k in _TRAINING_KEYS:
        if k not in meta:
            raise CheckpointError(f"checkpoint file {os.path.join(d, 'meta.json')} has no {k!r}: "
                                  f"it is not a training checkpoint, so it cannot be resumed")
    return model, tok, meta, unflatten_state(meta["optimizer"], optim, os.path.join(d, "optimizer.safetensors"))
