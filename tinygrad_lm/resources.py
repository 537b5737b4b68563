"""What a run would take, against what the machine has: checked before anything is allocated.

A flag or a checkpoint's meta.json asking for n_layer 10**9, block_size 10**12 or
batch_size 10**9 would otherwise hang in an allocation, swap the machine to a halt or die in a
MemoryError traceback. Each workflow command instead estimates the memory its configuration
needs, from the sizes alone, and refuses with one line naming the value that makes it too big
and the memory it would take:

    --batch-size 1000000000 needs about 1.9 TiB of memory (activations 1.9 TiB, ...); 21.0 GiB is available

The estimates (bytes; s = bytes per element, 4 for float32):

    parameters P  = V C + T C + L (12 C^2 + 2 C [+ 11 C with biases]) + C [+ C]     (exact: a test
                    compares it with a built GPT; lm_head is tied to wte, counted once)
    training      = 4 P s  (weights, gradients, AdamW's two moments)
                  + s (16 L B T C + 1.5 L B H T^2 + 2 B T V + 16 B T C)            (activations kept
                    for backward: q k v, attention probabilities, MLP, logits and their softmax)
    inference     = P s + s (10 B T C + 1.25 B H T^2 + 2 B T V)  (one layer's activations at a time)
                  + 2 L B T C s with a KV cache

The activation coefficients are a little below what tracemalloc measured for one training
step of this engine on the CPU (about 18, 1.8, 2.1 and 18; the fit is within 2% over ten
shapes), so an estimate is a floor: a refused configuration certainly does not fit.

"Available" is the host's MemAvailable (/proc/meminfo), lowered to a cgroup's memory limit
when the process runs under one, or a CUDA device's free memory. Where it cannot be read,
nothing is refused.

This module imports only the standard library (and, for a CUDA device, the backend).
"""
from __future__ import annotations

import os


class ResourceError(ValueError):
    """A configuration would need more memory than the machine has."""


# ---------------------------------------------------------------- the machine
def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_headroom() -> int | None:
    """memory limit - usage of this process's cgroup (v2, then v1), or None without a limit."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file, encoding="ascii") as f:
                limit = f.read().strip()
            with open(usage_file, encoding="ascii") as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:  # "max", or v1's "no limit" (a huge number)
            return max(int(limit) - usage, 0)
    return None


def available_memory(device: str = "cpu") -> int | None:
    """Bytes a new allocation on `device` can count on, or None when unknown."""
    if device.startswith("cuda"):
        from . import backend
        try:
            xp = backend.xp_for(device)
            index = int(device.split(":")[1]) if ":" in device else 0
            with xp.cuda.Device(index):
                free, _total = xp.cuda.runtime.memGetInfo()
            return int(free)
        except Exception:  # no device, no driver: the run will say so itself
            return None
    host = _meminfo_available()
    cgroup = _cgroup_headroom()
    if host is None:
        return cgroup
    return host if cgroup is None else min(host, cgroup)


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; sizes beyond EiB stay in EiB ('4.4e+06 EiB')."""
    try:
        n = float(n)
    except OverflowError:  # an int beyond any float: a meta.json can hold one
        return "more than 1e+290 EiB"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB" if n < 1e5 else f"{n:.2g} EiB"


# ---------------------------------------------------------------- estimates (bytes)
def gpt_parameter_count(config: dict) -> int:
    """Distinct parameters of GPT(GPTConfig(**config)); lm_head (tied to wte) counted once."""
    V, T, C, L = (int(config[k]) for k in ("vocab_size", "block_size", "n_embd", "n_layer"))
    bias = 1 if config.get("bias", True) else 0
    per_layer = 12 * C * C + 2 * C + 11 * C * bias  # ln_1, c_attn, c_proj, ln_2, c_fc, c_proj
    return V * C + T * C + L * per_layer + C + C * bias


def gpt_file_elements(config: dict) -> int:
    """Elements stored in model.safetensors: the state_dict names lm_head and wte both."""
    return gpt_parameter_count(config) + int(config["vocab_size"]) * int(config["n_embd"])


def training_bytes(config: dict, batch_size: int, itemsize: int = 4) -> dict:
    """The parts of a training step's peak memory (see the module docstring)."""
    V, T, C, L, H = (int(config[k]) for k in ("vocab_size", "block_size", "n_embd", "n_layer", "n_head"))
    B, s = int(batch_size), int(itemsize)
    P = gpt_parameter_count(config)
    acts = 16 * L * B * T * C + (3 * L * B * H * T * T) // 2 + 2 * B * T * V + 16 * B * T * C
    return {"weights, gradients and AdamW moments": 4 * P * s, "activations": acts * s}


def inference_bytes(config: dict, rows: int, tokens: int, itemsize: int = 4, kv_cache: bool = False) -> dict:
    """The parts of a forward pass's peak memory over `rows` sequences of `tokens` (<= block_size)."""
    V, C, L, H = (int(config[k]) for k in ("vocab_size", "n_embd", "n_layer", "n_head"))
    B, T, s = int(rows), int(tokens), int(itemsize)
    acts = 10 * B * T * C + (5 * B * H * T * T) // 4 + 2 * B * T * V
    out = {"weights": gpt_parameter_count(config) * s, "activations": acts * s}
    if kv_cache:
        out["KV cache"] = 2 * L * B * T * C * s
    return out


# ---------------------------------------------------------------- the check
def check_fits(parts: dict, what: str, device: str = "cpu", available: int | None = None) -> None:
    """Raise ResourceError('<what> needs about X of memory (parts); Y is available') when the
    parts add up to more than `device` has (`available` overrides the measurement)."""
    total = sum(parts.values())
    avail = available_memory(device) if available is None else available
    if avail is None or total <= avail:
        return
    shown = ", ".join(f"{k} {format_bytes(v)}" for k, v in parts.items() if v)
    where = "the GPU" if device.startswith("cuda") else "this machine"
    raise ResourceError(f"{what} needs about {format_bytes(total)} of memory ({shown}); "
                        f"{where} has {format_bytes(avail)} available")


def culprit(knobs: dict, reference: dict, estimate) -> str:
    """Which knob makes `estimate(knobs)` big: the one whose reset to its `reference` value
    lowers the estimate most -> 'label value', or 'this configuration' when none does.
    `knobs` maps a label ('--batch-size', "meta.json's n_layer") to its value."""
    full = estimate(knobs)
    best, best_total = None, full
    for label, value in knobs.items():
        ref = reference.get(label)
        if ref is None or value <= ref:
            continue
        total = estimate({**knobs, label: ref})
        if total < best_total:
            best, best_total = label, total
    return "this configuration" if best is None else f"{best} {knobs[best]}"


# ---------------------------------------------------------------- GPT configurations
# Reference sizes for naming the culprit (GPT-2 small, and ordinary run settings): a value
# above its reference whose reset shrinks the estimate most is the one the message names.
REFERENCE = {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024, "vocab_size": 50304,
             "batch_size": 64, "num_samples": 8, "beam_width": 8, "max_new_tokens": 1024, "show_probs": 10, "n": 5}
SIZE_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")


def itemsize(dtype: str) -> int:
    return 8 if str(dtype) == "float64" else 4


def check_sizes(parts_of, sizes: dict, labels: dict, device: str = "cpu", available: int | None = None) -> None:
    """Refuse (ResourceError) when `parts_of(sizes)` (name -> bytes) adds up to more than the
    device has; the message names the size most to blame, as `labels[key]` ('--batch-size',
    "meta.json's n_embd") followed by its value. `sizes`: key -> value, keys from REFERENCE."""
    parts = parts_of(sizes)
    avail = available_memory(device) if available is None else available
    if avail is None or sum(parts.values()) <= avail:
        return
    knobs = {labels.get(k, k): v for k, v in sizes.items()}
    keys = {labels.get(k, k): k for k in sizes}
    name = culprit(knobs, {label: REFERENCE.get(k) for label, k in keys.items()},
                   lambda kn: sum(parts_of({keys[label]: v for label, v in kn.items()}).values()))
    check_fits(parts, name, device, avail)


def check_training_fits(config: dict, batch_size: int, dtype: str = "float32", device: str = "cpu",
                        labels: dict | None = None, available: int | None = None) -> None:
    """Refuse a training run of GPT `config` at `batch_size` that cannot fit in memory.
    `labels` names each size in the message (default: its flag, '--n-layer')."""
    labels = {k: "--" + k.replace("_", "-") for k in SIZE_KEYS + ("batch_size",)} | (labels or {})
    sizes = {k: config[k] for k in SIZE_KEYS} | {"batch_size": batch_size}
    check_sizes(lambda v: training_bytes({**config, **v}, v["batch_size"], itemsize(dtype)), sizes, labels,
                device, available)
