"""Checkpoints: plain arrays in safetensors files plus JSON, written atomically, never pickle.

A checkpoint is a folder `<out_dir>/ckpt/` holding

    model.safetensors      the weights under GPT-2 / nanoGPT names (loadable by PyTorch tools)
    optimizer.safetensors  the optimizer's moment arrays
    meta.json              model config, tokenizer, step, RNG states, run arguments

It is first written complete into `ckpt.tmp/`, then swapped in with renames
(ckpt -> ckpt.old, ckpt.tmp -> ckpt, then ckpt.old removed). A crash at any moment
leaves either `ckpt/` or `ckpt.old/` whole, and `load` picks up the survivor.

The safetensors format (https://huggingface.co/docs/safetensors): 8 bytes little-endian
header length N, N bytes of JSON {name: {dtype, shape, data_offsets}, "__metadata__":
{str: str}}, then the raw little-endian bytes. Reading it executes no code.
"""
from __future__ import annotations

import json
import os
import shutil
import struct

import numpy as np

from .fileio import atomic_write

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}

CKPT, TMP, OLD = "ckpt", "ckpt.tmp", "ckpt.old"
FILES = ("model.safetensors", "optimizer.safetensors", "meta.json")


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupted or does not match what was asked for."""


# ---------------------------------------------------------------- safetensors
def save_safetensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """Write name -> numpy array to `path` in the safetensors format (atomically: temp + rename)."""
    header, offset, arrays = {}, 0, []
    for name, arr in tensors.items():
        arr = np.asarray(arr, order="C")  # (ascontiguousarray would turn 0-d into 1-d)
        if arr.dtype not in _NAMES:
            raise CheckpointError(f"save_safetensors: tensor {name!r} has unsupported dtype {arr.dtype}")
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        header[name] = {"dtype": _NAMES[arr.dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
        arrays.append(arr)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(blob)))
            f.write(blob)
            for arr in arrays:
                f.write(arr.tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_safetensors(path) -> tuple[dict, dict]:
    """Read a safetensors file -> (name -> numpy array, metadata). Validates every offset."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint file {path}: {e.strerror or e}") from None
    if len(raw) < 8:
        raise CheckpointError(f"checkpoint file {path} is truncated ({len(raw)} bytes)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise CheckpointError(f"checkpoint file {path} is truncated or corrupted (header of {n} bytes in a file of {len(raw)})")
    try:
        header = json.loads(raw[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"checkpoint file {path} is corrupted (its header is not valid JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint file {path} is corrupted (header is not a JSON object)")
    meta = header.pop("__metadata__", {}) or {}
    buf = memoryview(raw)[8 + n:]
    out = {}
    for name, info in header.items():
        try:
            dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
            shape = tuple(int(s) for s in info["shape"])
            b, e = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"checkpoint file {path} is corrupted (bad header entry for {name!r})") from None
        if not 0 <= b <= e <= len(buf) or (e - b) != int(np.prod(shape)) * dtype.itemsize:
            raise CheckpointError(f"checkpoint file {path} is truncated or corrupted (tensor {name!r} needs bytes "
                                  f"{b}..{e} of a {len(buf)}-byte data section)")
        out[name] = np.frombuffer(buf[b:e], dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=True)
    return out, meta


# ---------------------------------------------------------------- whole checkpoints
def _write_json(path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=1))


def checkpoint_dir(out_dir) -> str | None:
    """The folder holding the newest complete checkpoint in out_dir, or None."""
    for name in (CKPT, OLD):
        d = os.path.join(out_dir, name)
        if os.path.isfile(os.path.join(d, "meta.json")):
            return d
    return None


def save_checkpoint(out_dir, model_arrays: dict, optim_arrays: dict, meta: dict) -> str:
    """Write a complete checkpoint into out_dir/ckpt, replacing the previous one atomically."""
    os.makedirs(out_dir, exist_ok=True)
    tmp, cur, old = (os.path.join(out_dir, n) for n in (TMP, CKPT, OLD))
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    tag = {"step": str(meta.get("step", 0)), "format": "tinygrad_lm"}
    save_safetensors(os.path.join(tmp, "model.safetensors"), model_arrays, {**tag, "format": "pt"})
    save_safetensors(os.path.join(tmp, "optimizer.safetensors"), optim_arrays, tag)
    _write_json(os.path.join(tmp, "meta.json"), meta)  # written last: its presence marks the folder complete
    if os.path.isdir(cur):
        shutil.rmtree(old, ignore_errors=True)
        os.replace(cur, old)
    os.replace(tmp, cur)
    shutil.rmtree(old, ignore_errors=True)
    return cur


def load_checkpoint(out_dir) -> tuple[dict, dict, dict]:
    """-> (model arrays, optimizer arrays, meta). Raises CheckpointError naming the problem."""
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
        raise CheckpointError(f"checkpoint file {meta_path} is unreadable or corrupted: {e}") from None
    if not isinstance(meta, dict) or "config" not in meta:
        raise CheckpointError(f"checkpoint file {meta_path} is corrupted (no model config)")
    model, mmeta = load_safetensors(os.path.join(d, "model.safetensors"))
    optim_path = os.path.join(d, "optimizer.safetensors")
    optim, ometa = load_safetensors(optim_path) if os.path.exists(optim_path) else ({}, {})
    step = str(meta.get("step", 0))
    if mmeta.get("step", step) != step or (ometa and ometa.get("step", step) != step):
        raise CheckpointError(f"checkpoint in {d} is inconsistent: files from different steps")
    return model, optim, meta
