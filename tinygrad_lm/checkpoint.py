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
    read_meta           meta.json: a regular file of bounded size, JSON, an object with a config
    model_config        meta.json's model config: every key, each of a valid type and range
    (sizes)             the memory the config's weights take, against what the machine has, and
                        each safetensors file's size against what the config implies: a file
                        far larger than its config (a sparse 50 GB file) is refused unread
    load_checkpoint     the files: regular files (never a FIFO or a device), valid safetensors
                        of known dtypes, finite, one step
    check_model_arrays  the weights against that config: no tensor missing, none extra, each of
                        the shape and dtype the config implies, the tied weights equal
Any problem is a CheckpointError: one line naming the file (and the tensor).

Building: `load_model` -> (model, tokenizer, meta) for sample and eval; `load_init` the
same for the checkpoint a fine-tuning or DPO run starts from (--init-from);
`load_training_checkpoint` adds the optimizer state, for --resume.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import safetensors
import safetensors.numpy

from . import backend
from .data import DataError, TokenizerError, load_corpus, load_text, text_sha256, tokenizer_from_dict
from .fileio import FileTooLargeError, SpecialFileError, atomic_write, open_regular, read_regular
from .resources import (ResourceError, check_fits, check_sizes, format_bytes, gpt_file_elements,
                        gpt_parameter_count, itemsize)
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

# meta.json holds the config, the tokenizer (a BPE's merges), the RNG states, the run's
# history and the optimizer's skeleton: a few MB at most. Anything larger is not ours.
META_MAX_BYTES = 256 * 2**20


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
        fd, size = open_regular(path)  # a FIFO or a device would block or never end
    except SpecialFileError as e:
        raise CheckpointError(f"checkpoint file {path} is {e.kind}, not a regular file") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint file {path}: {e.strerror or e}") from None
    try:
        try:
            check_fits({"its tensors": size}, f"checkpoint file {path} ({format_bytes(size)})")
        except ResourceError as e:
            raise CheckpointError(str(e)) from None
        # the package opens the file by name: give it the one just checked, not whatever the
        # name points at by then (Linux's /proc/self/fd; elsewhere the name itself)
        proc = f"/proc/self/fd/{fd}"
        source = proc if os.path.exists(proc) else path
        try:
            with safetensors.safe_open(source, framework="numpy") as f:
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
    finally:
        os.close(fd)
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
    """The folder holding the newest complete checkpoint in out_dir, or None. (A meta.json
    that is not a regular file still marks its folder: reading it then says what it is.)"""
    for name in (CKPT, OLD):
        d = os.path.join(out_dir, name)
        if os.path.lexists(os.path.join(d, "meta.json")):
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
    step = {"step": str(meta.get("step", 0))}
    try:
        os.makedirs(tmp)
        save_safetensors(os.path.join(tmp, "model.safetensors"), model_arrays, {**step, "format": "pt"})
        save_safetensors(os.path.join(tmp, "optimizer.safetensors"), optim_arrays, {**step, "format": "tinygrad_lm"})
        atomic_write(os.path.join(tmp, "meta.json"), json.dumps(meta, indent=1))  # last: marks the folder complete
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)  # e.g. a full disk: leave no partial folder behind
        if isinstance(e, OSError):
            kept = "the previous checkpoint is kept" if checkpoint_dir(out_dir) else "no checkpoint was written"
            raise CheckpointError(f"cannot save a checkpoint in {out_dir}: {e.strerror or e} ({kept})") from None
        raise
    if os.path.isdir(cur):
        _remove(old)
        os.replace(cur, old)
    os.replace(tmp, cur)
    _remove(old)
    _fsync_dir(out_dir)  # the renames themselves on disk, not only the files (a power cut)
    return cur


def _fsync_dir(path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a folder: the renames are then as durable as they get
        pass
    finally:
        os.close(fd)


def read_meta(out_dir) -> tuple[str, dict]:
    """-> (the folder of the newest complete checkpoint in out_dir, its meta.json), checked:
    a regular file of at most META_MAX_BYTES holding a JSON object with a 'config'."""
    out_dir = os.fspath(out_dir)
    if not os.path.isdir(out_dir):
        raise CheckpointError(f"no checkpoint: {out_dir} is not a directory")
    d = checkpoint_dir(out_dir)
    if d is None:
        raise CheckpointError(f"no checkpoint in {out_dir} (expected {os.path.join(out_dir, CKPT, 'meta.json')})")
    meta_path = os.path.join(d, "meta.json")
    try:
        meta = json.loads(read_regular(meta_path, META_MAX_BYTES).decode("utf-8"))
    except SpecialFileError as e:
        raise CheckpointError(f"checkpoint file {meta_path} is {e.kind}, not a regular file") from None
    except FileTooLargeError as e:
        raise CheckpointError(f"checkpoint file {meta_path} is {format_bytes(e.size)}, more than the "
                              f"{format_bytes(META_MAX_BYTES)} a meta.json may be") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"checkpoint file {meta_path} is unreadable or corrupted: "
                              f"{type(e).__name__}: {_one_line(e)[:200]}") from None
    if not isinstance(meta, dict) or "config" not in meta:
        raise CheckpointError(f"checkpoint file {meta_path} is corrupted (no model config)")
    return d, meta


def _read_arrays(d: str, meta: dict, with_optimizer: bool) -> tuple[dict, dict]:
    model_path, optim_path = os.path.join(d, "model.safetensors"), os.path.join(d, "optimizer.safetensors")
    model, mmeta = load_safetensors(model_path)
    optim, ometa = load_safetensors(optim_path) if with_optimizer and os.path.lexists(optim_path) else ({}, {})
    step = str(meta.get("step", 0))
    if mmeta.get("step", step) != step or (ometa and ometa.get("step", step) != step):
        raise CheckpointError(f"checkpoint in {d} is inconsistent: files from different steps")
    _check_finite(model, f"checkpoint file {model_path}")
    _check_finite(optim, f"checkpoint file {optim_path}")
    return model, optim


def _read_checkpoint(out_dir, with_optimizer: bool = True) -> tuple[str, dict, dict, dict]:
    """-> (the folder read, model arrays, optimizer arrays, meta), every file checked."""
    d, meta = read_meta(out_dir)
    model, optim = _read_arrays(d, meta, with_optimizer)
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


def check_sizes_before_reading(d: str, config: dict, dtype: str) -> None:
    """Before any tensor is read: the memory a GPT of `config` takes (its weights, and the
    file's copy of them) against what the host has (a model is read and built there), and each safetensors file's size against
    what `config` implies (a header of at most a few hundred bytes per tensor)."""
    s = itemsize(dtype)
    labels = {k: f"meta.json's {k}" for k in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")}
    sizes = {k: config[k] for k in labels}
    try:
        check_sizes(lambda v: {"weights": gpt_parameter_count({**config, **v}) * s,
                               "the file's copy of them": gpt_file_elements({**config, **v}) * s},
                    sizes, labels)
    except ResourceError as e:
        raise CheckpointError(f"checkpoint file {os.path.join(d, 'meta.json')}: {e}") from None
    n_tensors = 4 + 2 * config["n_layer"] * (6 + 6 * bool(config["bias"]))
    slack = 4096 + 512 * n_tensors  # header: a name, a dtype, a shape and two offsets per tensor
    weights = gpt_file_elements(config) * s
    for name, most in (("model.safetensors", weights + slack), ("optimizer.safetensors", 2 * weights + slack)):
        path = os.path.join(d, name)
        try:
            size = os.stat(path).st_size
        except OSError:
            continue  # missing: reported by the reader
        if size > most:
            raise CheckpointError(f"checkpoint file {path} is {format_bytes(size)}, far more than the "
                                  f"{format_bytes(weights)} of weights the config in meta.json implies")


def _restore(out_dir, with_optimizer: bool):
    """Read and check everything, then build: -> (folder, model on the CPU, tokenizer, meta, optimizer arrays)."""
    d, meta = read_meta(out_dir)
    meta_path = os.path.join(d, "meta.json")
    config = model_config(meta, meta_path)
    dtype = model_dtype(meta, meta_path)
    check_sizes_before_reading(d, config, dtype)
    arrays, optim = _read_arrays(d, meta, with_optimizer)
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


def load_init(path, flag: str = "--init-from"):
    """-> (model on the CPU, tokenizer, meta) of the checkpoint a new run starts from: `path`
    is the --out-dir of a `train` (or `dpo`) run. Its weights, not its optimizer state or step.
    Every check of load_model, and the checkpoint must be one those commands write (meta.json
    with a tokenizer and a step). CheckpointError starting with `flag` otherwise."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"{flag} {path}: no such folder (give the --out-dir of a tinygrad-lm train run)")
    if not os.path.isdir(path):
        raise CheckpointError(f"{flag} {path}: not a folder (give the --out-dir of a tinygrad-lm train run)")
    try:
        d, meta = read_meta(path)
        for key in ("tokenizer", "step"):
            if key not in meta:
                raise CheckpointError(f"{os.path.join(d, 'meta.json')} has no {key!r}: the checkpoint was not written "
                                      f"by tinygrad-lm train or dpo")
        _, model, tok, meta, _ = _restore(path, with_optimizer=False)
    except CheckpointError as e:
        raise CheckpointError(f"{flag}: {e}") from None
    return model, tok, meta


def load_model(out_dir, device: str = "cpu"):
    """-> (model in eval mode on `device`, tokenizer, meta) from the checkpoint in out_dir."""
    _, model, tok, meta, _ = _restore(out_dir, with_optimizer=False)
    if device != "cpu":
        model.to(device)
    model.eval()
    return model, tok, meta


# ---------------------------------------------------------------- the run's text
def data_record(path, name: str, text: str) -> dict:
    """What meta.json records (under "data") of the text a run trains on: its absolute path
    (None: the built-in corpus), its name, its length and its SHA-256, so that --resume and
    eval find the file from any folder and notice when it has changed."""
    return {"path": None if path is None else os.path.abspath(os.fspath(path)), "name": name,
            "characters": len(text), "sha256": text_sha256(text)}


def run_text(meta: dict, out_dir, hint: str = "") -> tuple[str, str, str | None]:
    """The text the checkpoint's run trained on -> (text, name, absolute path or None for the
    built-in corpus): the recorded file, checked against the recorded SHA-256. A relative
    path (checkpoints before absolute paths were recorded: relative to the folder training
    ran in) is looked for from the current folder, out_dir's parent, then out_dir. Raises CheckpointError (DataError when the file cannot be
    read), `hint` appended to the message."""
    where = os.path.join(os.fspath(out_dir), CKPT, "meta.json")
    rec = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    tc = meta.get("train_config") if isinstance(meta.get("train_config"), dict) else {}
    path = rec["path"] if "path" in rec else tc.get("data")
    if path is not None and not isinstance(path, str):
        raise CheckpointError(f"checkpoint file {where}: the run's data path must be a string or null, got {path!r}")
    if path is None:
        text, name = load_corpus(None)
    else:
        recorded = path
        if not os.path.isabs(path):  # relative to the folder training ran in: most often out_dir's parent
            run_dir = os.path.abspath(os.fspath(out_dir))
            tried = list(dict.fromkeys([os.path.abspath(path), os.path.join(os.path.dirname(run_dir), path),
                                        os.path.join(run_dir, path)]))
            found = [c for c in tried if os.path.exists(c)]
            if not found:
                raise DataError(f"cannot find the text this checkpoint was trained on: {where} records it as "
                                f"{recorded!r}, a relative path, and it is not in {', '.join(map(os.path.dirname, tried))}"
                                f"{hint}")
            path = found[0]
        try:
            text = load_text(path)
        except DataError as e:
            raise DataError(f"{e} (the text this checkpoint was trained on, recorded in {where}){hint}") from None
        name = path
    sha = rec.get("sha256")
    if isinstance(sha, str) and text_sha256(text) != sha:
        import platform
        if path is None:
            raise CheckpointError(f"the built-in corpus of this Python ({platform.python_version()}) is not the text "
                                  f"this checkpoint was trained on (its SHA-256 differs from the one in {where}){hint}")
        raise CheckpointError(f"the data file {path} has changed since this checkpoint was trained on it (its SHA-256 "
                              f"differs from the one in {where}){hint}")
    return text, name, path


# What --resume needs from meta.json besides the model.
_TRAINING_KEYS = ("step", "optimizer", "batch_rng", "model_rng")


def save_training_checkpoint(out_dir, model, optimizer, meta: dict) -> str:
    """Save `model`, `optimizer` (its arrays to optimizer.safetensors, the rest into meta.json
    under "optimizer") and `meta` as the checkpoint in out_dir."""
    optim_arrays = {}
    meta = {**meta, "optimizer": flatten_state(optimizer.state_dict(), optim_arrays)}
    return save_checkpoint(out_dir, model_arrays(model), optim_arrays, meta)


def restore_device_rng(meta: dict, out_dir, seed: int, step: int) -> str | None:
    """Set `backend.device_rng` (the dropout masks' generator) to the training checkpoint's
    "device_rng" state, {"seed": int, "counter": int}, so a resumed run draws the masks the
    uninterrupted run would have. A checkpoint written before masks were drawn on the device
    has none: the generator is then seeded from (seed, step), the same for every resume of that
    checkpoint, and the returned note says that with dropout > 0 the masks (and so the run)
    differ from what the uninterrupted old run drew. Raises CheckpointError for a malformed
    state."""
    st = meta.get("device_rng")
    if st is None:
        backend.device_rng.manual_seed(int(np.random.SeedSequence([int(seed), int(step)]).generate_state(1, np.uint64)[0]))
        return ("--resume: this checkpoint predates dropout masks drawn on the device (meta.json has no "
                "'device_rng'): the masks from here on are seeded by (seed, step), so the resumed run is not the one "
                "the interrupted run would have continued (exact only with dropout 0)")
    if not (isinstance(st, dict) and set(st) == {"seed", "counter"}
            and all(type(st[k]) is int and 0 <= st[k] < 1 << 64 for k in st)):
        where = os.path.join(os.fspath(out_dir), CKPT, "meta.json")
        raise CheckpointError(f"checkpoint file {where}: 'device_rng' must be {{\"seed\": int, \"counter\": int}}, "
                              f"both in [0, 2^64), got {st!r}")
    backend.device_rng.set_state(st)
    return None


def load_training_checkpoint(out_dir):
    """-> (model on the CPU, tokenizer, meta, optimizer state dict) to continue a training run."""
    d, model, tok, meta, optim = _restore(out_dir, with_optimizer=True)
    for k in _TRAINING_KEYS:
        if k not in meta:
            raise CheckpointError(f"checkpoint file {os.path.join(d, 'meta.json')} has no {k!r}: "
                                  f"it is not a training checkpoint, so it cannot be resumed")
    return model, tok, meta, unflatten_state(meta["optimizer"], optim, os.path.join(d, "optimizer.safetensors"))
