"""CPU threads for numpy passes: `set_num_threads`, `get_num_threads`, `run_parts`.

numpy's elementwise passes and reductions run on one core, and numpy releases the GIL inside
them (and inside matmul), so a CPU op may split a large pass into independent row blocks run
by a few Python threads at once (the tiled causal attention, ops/attention.py, splits its
batch). One thread by default: on the 2-core machine of benchmarks/RESULTS.md (#17), shared
with other jobs, two threads did not make the training step faster. The worker pool is
created on first use with more than one thread; importing the package starts no thread.

It lives in ops/ because the ops use it; it imports the standard library only, so any layer
may. `tinygrad_lm.set_num_threads` and `tinygrad_lm.get_num_threads` are these.
"""
from __future__ import annotations

import contextvars
import os
import warnings

_num_threads = None   # None: TINYGRAD_LM_NUM_THREADS, else 1
_pool = None


def set_num_threads(n: int) -> None:
    """Threads the CPU ops split their large passes over (PyTorch's name for the setting):
    the calling thread plus n - 1 workers; 1 (the default) runs everything on the calling
    thread. The result does not depend on it, bit for bit: work is split only where rows are
    independent. numpy's BLAS keeps its own thread count (OPENBLAS_NUM_THREADS, threadpoolctl)."""
    global _num_threads, _pool
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be an integer >= 1, got {n!r}")
    _num_threads = n
    if _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None


def get_num_threads() -> int:
    """set_num_threads's value; by default TINYGRAD_LM_NUM_THREADS when the environment sets
    it (an integer >= 1), else 1."""
    if _num_threads is None:
        return env_int("TINYGRAD_LM_NUM_THREADS", default=1, minimum=1)
    return _num_threads


def env_int(name: str, default: int, minimum: int) -> int:
    """The integer environment variable `name`, or `default` when it is unset or empty. A value
    that is not an integer >= `minimum` is not used: a warning names the variable, the value,
    the allowed range and the default taken instead (once per place, as Python's warnings do)."""
    env = os.environ.get(name, "").strip()
    if not env:
        return default
    if env.isdigit() and int(env) >= minimum:
        return int(env)
    warnings.warn(f"{name}={env!r} is not an integer >= {minimum}: using {default}", RuntimeWarning, stacklevel=3)
    return default


def _forget_pool():
    global _pool
    _pool = None   # a forked child has none of its parent's threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def run_parts(fn, n: int, min_part: int = 1) -> None:
    """Call fn(lo, hi) on contiguous blocks [lo, hi) covering range(n), up to
    get_num_threads() of them and none smaller than `min_part`: the first block on the calling
    thread, the others on worker threads, at the same time. Returns when all are done (an
    exception in any block is raised here). fn must write disjoint outputs per block. Each
    worker runs in a copy of the caller's context, so numpy's errstate (np.errstate is a
    context variable) applies to every block alike."""
    global _pool
    parts = max(1, min(get_num_threads(), n // max(min_part, 1)))
    if parts == 1:
        fn(0, n)
        return
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor
        _pool = ThreadPoolExecutor(get_num_threads() - 1, thread_name_prefix="tinygrad_lm")
    bounds = [n * i // parts for i in range(parts + 1)]
    futures = [_pool.submit(contextvars.copy_context().run, fn, lo, hi) for lo, hi in zip(bounds[1:-1], bounds[2:])]
    try:
        fn(bounds[0], bounds[1])
    finally:
        for f in futures:
            f.result()
