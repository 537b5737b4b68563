"""What the bench runs on: CPU, BLAS and its threads, GPU, PyTorch, load, and the measured
float32 matmul peak that the model step's GFLOP/s are set against."""
from __future__ import annotations

import os
import platform
import statistics
import time

import numpy as np

from .. import backend
from .harness import run_in_child, sync


def blas_threads() -> tuple[int, str]:
    """(threads numpy's BLAS uses, how we know)."""
    try:
        from threadpoolctl import threadpool_info
        for info in threadpool_info():
            if info.get("user_api") == "blas" and "numpy" in info.get("filepath", "") + info.get("prefix", ""):
                return int(info["num_threads"]), "threadpoolctl"
        for info in threadpool_info():
            if info.get("user_api") == "blas":
                return int(info["num_threads"]), "threadpoolctl"
    except Exception:
        pass
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var]), var
    return os.cpu_count() or 1, "os.cpu_count() (OpenBLAS's default)"


def limit_blas_threads(threads: int):
    """A threadpoolctl limiter holding numpy's BLAS at `threads` (call .restore_original_limits())."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise ImportError("--threads needs threadpoolctl (pip install threadpoolctl) to set numpy's BLAS threads") from None
    return threadpool_limits(int(threads), user_api="blas")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _blas_name() -> str:
    try:
        cfg = np.show_config(mode="dicts")
        b = cfg["Build Dependencies"]["blas"]
        return f"{b.get('name')} {b.get('version')}"
    except Exception:
        return "unknown"


def machine_info(torch=None) -> dict:
    n, how = blas_threads()
    info = {"cpu": _cpu_model(), "logical_cpus": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "blas": _blas_name(), "blas_threads": n, "blas_threads_from": how,
            "gpu": "none usable (no cupy or no NVIDIA GPU)"}
    if backend.cuda_available():
        cp = backend.xp_for("cuda:0")
        try:
            props = cp.cuda.runtime.getDeviceProperties(0)
            name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        except Exception:
            name = "CUDA GPU"
        info["gpu"] = f"{name} (cupy {cp.__version__})"
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    return info


def machine_line(info: dict, torch_why: str = "") -> str:
    """The one-line machine description every bench run starts with."""
    return (f"machine: {info['cpu']}, {info['logical_cpus']} logical CPUs; numpy {info['numpy']} with {info['blas']}, "
            f"{info['blas_threads']} BLAS threads ({info['blas_threads_from']}); "
            + (f"torch {info['torch']} with {info['torch_threads']} threads" if "torch" in info else torch_why)
            + f"; GPU: {info['gpu']}; load average {loadavg()}")


def load_torch(no_torch: bool = False, threads: int | None = None):
    """(torch module or None, why not). Sets torch's intra-op threads to numpy's BLAS count
    (or to `threads`). OMP_WAIT_POLICY is left alone (benchmarks/RESULTS.md says why)."""
    if no_torch:
        return None, "torch skipped (--no-torch)"
    try:
        import torch
    except Exception:
        return None, "torch not installed"
    torch.set_num_threads(threads or blas_threads()[0])
    return torch, ""


def measure_matmul_peak(device: str = "cpu", n: int = 2048, reps: int = 7) -> dict:
    """float32 (n, n) @ (n, n) GFLOP/s on `device`: best of `reps` (the peak) and median.

    On the CPU it runs in a child process: freeing its large arrays here would raise glibc's
    dynamic mmap/trim thresholds for the rest of this process and change how fast our
    training step runs in it (benchmarks/RESULTS.md, "The allocator")."""
    if device == "cpu":
        try:
            return run_in_child("tinygrad_lm.bench.machine:matmul_peak_here", blas_threads=blas_threads()[0],
                                timeout=300, device="cpu", n=int(n), reps=int(reps))
        except Exception:
            pass  # fall back to measuring here
    return matmul_peak_here(device, n, reps)


def matmul_peak_here(device: str = "cpu", n: int = 2048, reps: int = 7) -> dict:
    """measure_matmul_peak in this process."""
    xp = backend.xp_for(device)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    with backend.use_device(device):
        if xp is not np:
            a, b = xp.asarray(a), xp.asarray(b)
        out = xp.empty((n, n), dtype=np.float32)
        xp.matmul(a, b, out=out)
        sync(device)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            xp.matmul(a, b, out=out)
            sync(device)
            times.append(time.perf_counter() - t0)
    flop = 2.0 * n ** 3
    return {"device": device, "n": n, "reps": reps, "gflops_peak": flop / min(times) / 1e9,
            "gflops_median": flop / statistics.median(times) / 1e9}
