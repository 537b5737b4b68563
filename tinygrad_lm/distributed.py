"""Data-parallel training: N processes (MPI ranks) train one model on one global batch.

The lesson in one line. A step's loss is the mean over the batch's counted targets (those
not equal to the ignore index), n = sum over ranks r of n_r, and splits over the ranks' rows:

    L = (1/n) sum_i l_i = sum_r (n_r / n) L_r,     L_r = (1/n_r) sum_{i in rank r's rows} l_i
    dL/dtheta = sum_r (n_r / n) dL_r/dtheta

so each rank back-propagates its own rows with the seed gradient n_r / n, and one all-reduce
(a sum over ranks) after backward gives every rank dL/dtheta of the whole batch. Clipping and
AdamW then run unchanged on every rank and see the same gradient (and so the global norm);
the parameters stay identical without ever being sent. Masked targets stay exact because
the weights are the ranks' shares of the counted targets, not 1/N.

What runs where:

* Launch: `mpiexec -n N tinygrad-lm train ...` (one machine or many, or under a batch
  scheduler), or `tinygrad-lm train --nproc N ...`, which re-launches itself through the
  mpiexec next to the python executable (`launch`). Without an MPI launcher, or with one
  rank, `init()` returns None, mpi4py is never imported, and training takes the one-process
  code path it always had.
* Threads: N ranks on one machine each pin their BLAS to cpus / ranks-on-this-machine
  threads (`pin_blas_threads`); with the default, every rank spins cpus threads and a step
  runs many times slower (docs/distributed.md has the measurement).
* Data: every rank draws the same global batch from the same seeded generator and keeps
  its rows, [rank * B/N, (rank + 1) * B/N); with --grad-accum-steps K it runs them as K
  micro-batches. N ranks run the one-rank experiment, and a run resumes with any N.
* All-reduce (`DataParallel.step`): the gradients are packed into one preallocated flat
  buffer, with the step's weighted loss and the stop flags (Ctrl-C, SIGTERM seen on this
  rank) in three more slots, all-reduced once (a sum), and unpacked as views of the buffer.
  Clipping and the divergence check (train.py's `check`) come after it, so every rank sees
  the global gradient norm and loss, and all ranks stop at the same step.
  CPU: MPI's Allreduce through mpi4py. GPU: NCCL through cupy.cuda.nccl on the current
  stream (rank 0 makes the unique id, MPI broadcasts it).
  THE NCCL PATH HAS NOT RUN ON A GPU YET: it is written and guarded, and its one-rank test
  (tests/test_distributed.py, marked gpu) skips without one.
* One rank speaks: rank 0 alone writes checkpoints, loss.csv and the progress bar. The
  periodic evaluation is sharded like training (`estimate_loss`): every rank scores its rows
  of the same evaluation batches and one all-reduce sums the weighted means, so the number
  equals the one-rank estimate and costs 1/N of the time, where rank 0 alone would keep
  N - 1 ranks idle.
* Failures (`run_guarded`): an error before training (bad flag, unreadable data or
  checkpoint) is agreed on by every rank and printed once by rank 0; an exception during
  training is printed by its rank and ends the whole job through MPI_Abort, so no rank is
  left waiting in a collective.

Why this file is long: it is one lesson told in order (the math above, then the ranks, the
all-reduce step, the sharded evaluation, the failures, the `--nproc` launcher), and its
parts share the launcher lookup and the install hint (`find_mpiexec`, `MPI_HINT`): `init`
names the mpiexec to use when mpi4py and the launcher disagree. About 50 of its lines are
this docstring.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import traceback

import numpy as np

from . import backend
from .engine import manual_seed, no_grad
from .tensor import Tensor

__all__ = ["IGNORE_INDEX", "DataParallel", "Distributed", "check_batch", "env_rank", "env_world_size",
           "estimate_loss", "find_mpiexec", "init", "launch", "pin_blas_threads", "run_guarded"]

# GPT.forward's cross_entropy(..., ignore_index=-1): targets equal to it count neither in the
# loss nor in the number of targets the ranks' shares are weighted by
IGNORE_INDEX = -1

# the signals a rank's stop flag can carry (train.py's _Interrupt), one slot each in the
# all-reduce; when ranks saw different ones, the later in this tuple is the agreed one (a
# scheduler's SIGTERM outranks a Ctrl-C)
STOP_SIGNALS = ("SIGINT", "SIGTERM")

MPI_HINT = 'pip install -e ".[mpi]" (mpi4py, the MPICH wheel and threadpoolctl)'

# What MPI launchers put in each process's environment: the rank and the number of ranks
# (MPICH's Hydra, Intel MPI, srun --mpi=pmi2: PMI_*; Open MPI: OMPI_COMM_WORLD_*; MVAPICH2:
# MV2_COMM_WORLD_*), and the ranks on this machine. PMIx (srun --mpi=pmix) sets a rank but no
# size; MPI itself is then asked.
_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK")
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _env_int(names) -> int | None:
    for n in names:
        v = os.environ.get(n)
        if v is not None and v.strip().isdigit():
            return int(v)
    return None


def env_rank() -> int | None:
    """This process's rank as its MPI launcher set it in the environment (None: not launched
    by one). Read without importing MPI, so the CLI can keep ranks > 0 quiet early on."""
    return _env_int(_RANK_VARS)


def env_world_size() -> int | None:
    """The number of ranks the launcher started (None: unknown or not launched by MPI)."""
    size = _env_int(_SIZE_VARS)
    if size is None and env_rank() is not None:
        return -1  # launched (PMIx) but the size is only known to MPI
    return size


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def blas_threads_for(ranks_here: int) -> int:
    """BLAS threads per rank when `ranks_here` ranks share this machine: its cpus divided
    among them (at least 1). A rank the launcher bound to fewer cpus than the machine has
    (mpiexec -bind-to core, srun --cpu-bind) keeps the cpus it was given."""
    cpus = _cpus()
    if cpus < (os.cpu_count() or cpus):
        return max(1, cpus)
    return max(1, cpus // max(1, ranks_here))


def pin_blas_threads(ranks_here: int) -> int | None:
    """Limit this process's BLAS (and OpenMP) to blas_threads_for(ranks_here) threads unless
    the user chose a number (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS or MKL_NUM_THREADS set).

    The environment variables are read by a BLAS when it loads, which is before this runs
    under `mpiexec tinygrad-lm` (the package imports numpy), so the running BLAS is limited
    through threadpoolctl; `launch` also sets the variables for the ranks it starts, before
    numpy loads. Returns the thread count set, or None when nothing was changed."""
    if any(v in os.environ for v in _BLAS_VARS):
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    n = blas_threads_for(ranks_here)
    threadpool_limits(n)
    for v in _BLAS_VARS:  # for whatever loads later (and child processes)
        os.environ[v] = str(n)
    return n


# ---------------------------------------------------------------- the ranks
class Distributed:
    """This process's place in a data-parallel job: `rank` of `world_size`, `local_rank` of
    `local_size` on this machine, and the collectives the training loop uses (on MPI's
    COMM_WORLD for host arrays, on NCCL for GPU arrays)."""

    def __init__(self, comm, blas_threads: int | None = None):
        self.comm = comm
        self.rank, self.world_size = comm.Get_rank(), comm.Get_size()
        # the ranks sharing this machine's memory (exact, whatever the launcher)
        from mpi4py import MPI
        local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        self.blas_threads = blas_threads
        self.in_setup = True   # until setup_done(): a failing rank agrees with the others instead of aborting
        self._nccl = {}        # device -> NcclAllreduce, made at the first GPU all-reduce

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def __repr__(self):
        return f"Distributed(rank {self.rank} of {self.world_size}, local {self.local_rank} of {self.local_size})"

    # ------------------------------------------------------------ collectives
    def allreduce_(self, buf):
        """Sum `buf` over the ranks, in place, on every rank: a numpy array through MPI, a
        cupy array through NCCL on the current stream. Returns buf."""
        if type(buf) is np.ndarray:
            from mpi4py import MPI
            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            return buf
        dev = backend.device_of(buf)
        if dev not in self._nccl:
            self._nccl[dev] = NcclAllreduce(self.world_size, self.rank, dev, bcast=self.comm.bcast)
        return self._nccl[dev].allreduce_(buf)

    def allgather(self, obj) -> list:
        return self.comm.allgather(obj)

    def abort(self, code: int):
        """End every rank of the job now (MPI_Abort): for a failure one rank cannot agree on."""
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except Exception:
                pass
        self.comm.Abort(code)

    # ------------------------------------------------------------ setup
    def device_for(self, device: str | None) -> str:
        """The device this rank trains on: "cuda" means the GPU of this rank's local rank
        (or the one GPU the scheduler left visible to it)."""
        if device in (None, "cpu"):
            return "cpu"
        if device.startswith("cuda:") and self.local_size > 1:
            raise ValueError(f"--device {device} names one GPU, but {self.local_size} ranks share this machine: "
                             f"pass --device cuda and each rank takes the GPU of its local rank")
        if device != "cuda":
            return device
        if not backend.cuda_available():
            return backend.canonical_device("cuda")  # raises the usual DeviceError, naming the install
        n = backend.device_count()
        if n == 1:
            return "cuda:0"  # one GPU visible per rank (CUDA_VISIBLE_DEVICES set per rank by the scheduler)
        if self.local_rank >= n:
            raise ValueError(f"--device cuda: {self.local_size} ranks on this machine need {self.local_size} GPUs, "
                             f"{n} visible")
        return f"cuda:{self.local_rank}"

    def setup_done(self, params, seed: int, step: int) -> None:
        """The end of setup, a collective every rank reaches: it either finished setting up
        or failed and is reporting (run_guarded). Raises on every rank alike when some rank
        failed, or when the ranks' parameters differ (each rank builds or loads its model
        itself: a checkpoint must be the same file on every machine). Then gives ranks > 0
        their own dropout stream, drawn from (seed, step, rank)."""
        h = hashlib.blake2b(digest_size=16)
        for p in params:
            h.update(np.ascontiguousarray(backend.to_numpy(p.data)).view(np.uint8))
        results = self.comm.allgather((None, h.hexdigest()))
        failed = [(r, err) for r, (err, _) in enumerate(results) if err is not None]
        if failed:
            raise PeerFailed(failed)
        self.in_setup = False
        differ = [r for r, (_, d) in enumerate(results) if d != results[0][1]]
        if differ:
            raise AgreedError(f"the parameters of rank(s) {', '.join(map(str, differ))} differ from rank 0's after "
                              f"setup: every machine must see the same --out-dir checkpoint and --data")
        if self.rank > 0:
            # dropout masks: rank 0 continues the checkpointed stream (so a one-rank resume is
            # exact), the other ranks draw independent ones rather than repeat rank 0's
            manual_seed(int(np.random.SeedSequence([seed, step, self.rank]).generate_state(1)[0]))


class AgreedError(ValueError):
    """An error every rank raised alike, after agreeing on it: rank 0 reports it, all exit."""


class PeerFailed(Exception):
    """Raised on the ranks that finished setup when another rank failed during it: the
    failing ranks' (rank, (exit code, message)) pairs."""

    def __init__(self, failed):
        super().__init__(failed)
        self.failed = failed


class NcclAllreduce:
    """In-place sum of a cupy array over the ranks through NCCL (cupy.cuda.nccl).

    Rank 0 creates NCCL's unique id, `bcast` (MPI's) hands it to the others, and every rank
    joins one communicator on its device. The all-reduce is queued on the current stream:
    no host round trip. UNTESTED ON A GPU in this repository's CI (no GPU there): the
    one-rank test in tests/test_distributed.py runs where cupy sees one."""

    def __init__(self, world_size: int, rank: int, device: str, bcast=None):
        xp, nccl = backend.xp_for(device), backend.nccl()
        if xp is np or nccl is None:
            raise backend.DeviceError(f"all-reducing on {device} needs NCCL through cupy (cupy.cuda.nccl), which is "
                                      f"not available here: install the NCCL library as CuPy's installation guide "
                                      f"describes (its 'Additional CUDA Libraries')")
        self.xp, self.nccl, self.device = xp, nccl, device
        uid = self.nccl.get_unique_id() if rank == 0 else None
        if bcast is not None:
            uid = bcast(uid, root=0)
        with backend.use_device(device):
            self.comm = self.nccl.NcclCommunicator(world_size, uid, rank)
        self._types = {np.dtype(np.float16): self.nccl.NCCL_FLOAT16, np.dtype(np.float32): self.nccl.NCCL_FLOAT32,
                       np.dtype(np.float64): self.nccl.NCCL_FLOAT64}

    def allreduce_(self, buf):
        if buf.dtype not in self._types or not buf.flags.c_contiguous:
            raise ValueError(f"NCCL all-reduce: need a contiguous float16/32/64 array, got {buf.dtype}")
        with backend.use_device(self.device):
            stream = self.xp.cuda.get_current_stream()
            self.comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, self._types[buf.dtype], self.nccl.NCCL_SUM,
                                stream.ptr)
        return buf


_DIST: Distributed | None = None
_INIT_DONE = False


def init() -> Distributed | None:
    """This process's Distributed when an MPI launcher started it as one of several ranks,
    else None (and MPI is not touched). Imports mpi4py (MPI_Init) and pins the BLAS threads
    once; later calls return the same object."""
    global _DIST, _INIT_DONE
    if _INIT_DONE:
        return _DIST
    size = env_world_size()
    if size is None or size == 1:
        _INIT_DONE = True
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError(f"this process was launched by mpiexec as one of several ranks, but mpi4py is not "
                          f"installed: {MPI_HINT}") from None
    comm = MPI.COMM_WORLD
    if size > 1 and comm.Get_size() != size:
        raise ImportError(f"mpiexec started {size} ranks but MPI reports {comm.Get_size()}: mpiexec and mpi4py come "
                          f"from different MPI installations (mpi4py uses {MPI.Get_library_version().splitlines()[0]}); "
                          f"run the mpiexec installed with it ({find_mpiexec(required=False) or MPI_HINT})")
    _INIT_DONE = True
    if comm.Get_size() == 1:
        return None
    dist = Distributed(comm)
    dist.blas_threads = pin_blas_threads(dist.local_size) or _env_int(_BLAS_VARS)
    _DIST = dist
    return dist


def check_batch(batch_size: int, world_size: int, grad_accum_steps: int) -> None:
    """The global batch must split into whole rows per rank and per micro-batch."""
    if world_size == 1 and batch_size % grad_accum_steps:
        raise ValueError(f"--batch-size {batch_size} is not divisible by --grad-accum-steps {grad_accum_steps}")
    if world_size > batch_size:
        raise ValueError(f"{world_size} ranks (--nproc or mpiexec -n) are more than --batch-size {batch_size} (the "
                         f"global batch): every rank needs at least one row")
    if batch_size % (world_size * grad_accum_steps):
        raise ValueError(f"--batch-size {batch_size} (the global batch) is not divisible by {world_size} rank(s) x "
                         f"--grad-accum-steps {grad_accum_steps} = {world_size * grad_accum_steps}: each rank's "
                         f"micro-batches must be whole rows")


# ---------------------------------------------------------------- the step
class DataParallel:
    """The training step of rank `dist.rank` of `dist.world_size` (dist None: one process)
    with `grad_accum_steps` micro-batches: the one-process step of train.train_step, with the
    rows split and the gradients summed over ranks in between.

    `step(x, y, stop, check)` takes the GLOBAL batch (B, T) (the same on every rank), runs
    this rank's rows B/N as K micro-batches of B/(N K) rows, each back-propagated with the
    seed n_k / n (its counted targets over the global batch's), so the accumulated gradient
    is this rank's share of dL/dtheta; then one all-reduce, clip, `check(loss, grad_norm)`
    (train.train_step's hook: it may raise to keep the weights as they were, or return a
    found_inf flag for the optimizer step, as runs.StepMonitor does), optimizer step,
    zero_grad. Returns the global batch's mean loss (float). `stop` is the name of the
    signal this rank saw ("SIGINT", "SIGTERM") or None; after the step, `self.stop` is the
    agreed one (the same on every rank; None when no rank saw one). The loss and the norm the
    check sees are those of the whole batch, bit for bit the same on every rank, so every
    rank raises at the same step.

    The flat buffer holds P gradient entries (P = the optimizer's parameters' sizes), then
    the weighted loss and one flag per STOP_SIGNALS entry: one collective per step carries
    them all.
    `allreduce_s` is the time of the last pack + all-reduce + unpack (host clock; on a GPU
    it measures the queueing, not the transfer)."""

    def __init__(self, model, optimizer, dist: Distributed | None = None, grad_accum_steps: int = 1,
                 grad_clip: float = 1.0):
        if grad_accum_steps < 1:
            raise ValueError(f"--grad-accum-steps must be >= 1, got {grad_accum_steps}")
        self.model, self.optimizer, self.dist = model, optimizer, dist
        self.k, self.grad_clip = grad_accum_steps, grad_clip
        self.world = dist.world_size if dist is not None else 1
        self.rank = dist.rank if dist is not None else 0
        # the optimizer's parameters, in its order: the same on every rank
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        first = self.params[0]
        odd = [p.shape for p in self.params if p.dtype != first.dtype or p.device != first.device]
        if odd:
            raise ValueError(f"DataParallel: every parameter must share one dtype and device; {odd} differ from "
                             f"{first.dtype} on {first.device}")
        self.device = first.device
        self.sizes = [p.numel() for p in self.params]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int).tolist()
        self.n = self.offsets[-1]
        # (P + 1 + len(STOP_SIGNALS),): gradients, weighted loss, stop flags; allocated at the first step
        self.flat = None
        self.stop = None
        self.allreduce_s = 0.0

    def _buffer(self):
        if self.flat is None:
            with backend.use_device(self.device):
                self.flat = backend.xp_for(self.device).empty(self.n + 1 + len(STOP_SIGNALS), dtype=self.params[0].dtype)
        return self.flat

    def step(self, x: np.ndarray, y: np.ndarray, stop: str | None = None, check=None) -> float:
        from .optim import clip_grad_norm_
        b = len(x)
        check_batch(b, self.world, self.k)
        rows = b // self.world
        lo = self.rank * rows
        n_total = max(int(np.count_nonzero(y != IGNORE_INDEX)), 1)
        m = rows // self.k
        loss_sum = None
        for k in range(self.k):
            xs, ys = x[lo + k * m: lo + (k + 1) * m], y[lo + k * m: lo + (k + 1) * m]
            nk = int(np.count_nonzero(ys != IGNORE_INDEX))
            if nk == 0:
                continue  # every target of these rows is ignored: they add nothing
            _, loss = self.model(Tensor(xs, device=self.device), Tensor(ys, device=self.device))
            w = nk / n_total
            loss.backward(gradient=loss.xp.full(loss.shape, w, dtype=loss.dtype))  # d(w L_k)/dtheta
            part = loss.data * w
            loss_sum = part if loss_sum is None else loss_sum + part
        if self.dist is None:
            lossf = float(loss_sum) if loss_sum is not None else float("nan")
            self.stop = stop or None
        else:
            lossf = self._allreduce(loss_sum, stop)
        grad_norm = clip_grad_norm_(self.params, self.grad_clip) if self.grad_clip > 0 else None
        found_inf = check(lossf, grad_norm) if check is not None else None  # runs.StepMonitor returns a flag
        if found_inf is None:
            self.optimizer.step()
        else:
            self.optimizer.step(found_inf=found_inf)
        self.optimizer.zero_grad(set_to_none=True)
        return lossf

    def _allreduce(self, loss_sum, stop: str | None) -> float:
        t0 = time.perf_counter()
        flat = self._buffer()
        xp = backend.xp_for(self.device)
        n = self.n
        with backend.use_device(self.device):
            grads = [p.grad.data.reshape(-1) if p.grad is not None else xp.zeros(p.numel(), dtype=flat.dtype)
                     for p in self.params]
            xp.concatenate(grads, out=flat[:n])
            flat[n] = 0 if loss_sum is None else loss_sum
            for i, name in enumerate(STOP_SIGNALS):
                flat[n + 1 + i] = 1.0 if stop == name else 0.0
            self.dist.allreduce_(flat)
            for p, off, size in zip(self.params, self.offsets, self.sizes):
                # the gradient becomes a view of the buffer: no copy back (clip scales it in place)
                p.grad = Tensor._wrap(flat[off:off + size].reshape(p.shape))
            tail = backend.to_numpy(flat[n:])  # the one read back: the logged loss and the stop flags
        self.allreduce_s = time.perf_counter() - t0
        seen = [name for i, name in enumerate(STOP_SIGNALS) if tail[1 + i] > 0]
        self.stop = seen[-1] if seen else None
        return float(tail[0])


@no_grad()
def estimate_loss(dist: Distributed, model, data: np.ndarray, batch_size: int, block_size: int, iters: int,
                  seed: int, device: str) -> float:
    """evaluate.estimate_loss sharded over the ranks: the same `iters` batches from the same
    seeded generator; each rank scores its rows; one all-reduce of the `iters` weighted
    means. Equals the one-rank estimate up to rounding, in 1/N of the time."""
    from .data import sample_batch  # windows of a token array, or examples of a SequenceSet
    rng = np.random.default_rng(seed)
    was = model.training
    model.eval()
    rows = batch_size // dist.world_size
    lo = dist.rank * rows
    parts = []
    for _ in range(iters):
        x, y = sample_batch(data, batch_size, block_size, rng)
        xr, yr = x[lo:lo + rows], y[lo:lo + rows]
        n_total, nr = int(np.count_nonzero(y != IGNORE_INDEX)), int(np.count_nonzero(yr != IGNORE_INDEX))
        if nr == 0:
            parts.append(None)
            continue
        _, loss = model(Tensor(xr, device=device), Tensor(yr, device=device))
        parts.append(loss.data * (nr / max(n_total, 1)))
    model.train(was)
    xp = backend.xp_for(device)
    with backend.use_device(device):
        dtype = next(iter(model.parameters())).dtype
        buf = xp.stack([xp.zeros((), dtype=dtype) if p is None else p.astype(dtype).reshape(()) for p in parts])
        dist.allreduce_(buf)
        return float(backend.to_numpy(buf).mean())


# ---------------------------------------------------------------- failures
def _report(command: str, e: BaseException, known: tuple) -> tuple[int, str]:
    """(exit code, the one line the CLI prints) for an exception, as cli.main would."""
    if isinstance(e, KeyboardInterrupt):
        return 130, f"tinygrad-lm {command}: interrupted"
    if isinstance(e, SystemExit):
        return (e.code if isinstance(e.code, int) else 1), f"tinygrad-lm {command}: exited ({e.code})"
    if isinstance(e, known):
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return 2, f"tinygrad-lm {command}: error: {msg}"
    return 1, f"tinygrad-lm {command}: error: {type(e).__name__}: {e}"


def run_guarded(dist: Distributed, fn, command: str, known: tuple = (), agreed: tuple = ()) -> int:
    """Run fn() (returns an exit code) on a rank of a multi-rank job so that no failure can
    leave the other ranks waiting, and each error is printed once:

    * during setup (before Distributed.setup_done): the failing rank joins the setup
      collective with its error; every rank learns who failed; rank 0 prints the first
      failure; all exit with its code.
    * an AgreedError, or during training an error of a class in `agreed` (errors every rank
      raises at the same point because it follows from all-reduced numbers, such as
      train.TrainingDiverged): rank 0 prints it; all exit with its code (2 for a known one).
    * anything else, during training: the rank prints it (a traceback for an unexpected
      exception) and MPI_Abort ends every rank. Ranks > 0 wait a second first: an error that
      every rank hits at once (a second Ctrl-C) is then printed by rank 0 alone, whose abort
      ends the others before they print.
    """
    try:
        return fn()
    except PeerFailed as e:
        return _agreed_report(dist, e.failed)
    except AgreedError as e:
        code, line = _report(command, e, (AgreedError,))
        if dist.is_main:
            print(line, file=sys.stderr)
        return code
    except BaseException as e:  # noqa: B902 -- every failure must end the job
        code, line = _report(command, e, known + agreed)
        if agreed and isinstance(e, agreed) and not dist.in_setup:
            if dist.is_main:
                print(line, file=sys.stderr)
            return code
        if dist.in_setup:
            results = dist.allgather(((code, line), None))
            return _agreed_report(dist, [(r, err) for r, (err, _) in enumerate(results) if err is not None])
        if dist.rank > 0:
            time.sleep(1.0)
        where = f"rank {dist.rank} of {dist.world_size}"
        if code == 1:  # unexpected: the traceback (its last line is the error), then who failed
            traceback.print_exception(e, file=sys.stderr)
            print(f"tinygrad-lm {command}: {where} failed (traceback above); ending every rank", file=sys.stderr)
        else:
            print(f"{line} ({where})", file=sys.stderr)
        dist.abort(code)
        return code  # not reached


def _agreed_report(dist: Distributed, failed: list) -> int:
    """Every rank knows the failures of setup; rank 0 prints the first, all return its code."""
    first_rank, (code, line) = failed[0]
    if dist.is_main:
        same = [r for r, (_, l) in failed if l == line]
        if len(same) < dist.world_size:
            ranks = ", ".join(map(str, same))
            line += f" (on rank{'s' if len(same) > 1 else ''} {ranks} of {dist.world_size})"
        print(line, file=sys.stderr)
    return code


# ---------------------------------------------------------------- --nproc: the launcher
def find_mpiexec(required: bool = True) -> str | None:
    """mpiexec next to this python (a virtual environment's, where the MPICH wheel puts it),
    else on PATH."""
    dirs = [os.path.dirname(sys.executable), sysconfig.get_path("scripts")]
    for d in dirs:
        for name in ("mpiexec", "mpiexec.exe"):
            p = os.path.join(d, name)
            if os.path.isfile(p) and os.access(p, os.X_OK):
                return p
    found = shutil.which("mpiexec")
    if found is None and required:
        raise ImportError(f"--nproc needs mpiexec, found neither next to {sys.executable} nor on PATH: {MPI_HINT}")
    return found


def check_nproc(nproc: int, batch_size: int | None, grad_accum_steps: int) -> None:
    """--nproc in its range, and the global batch split over it (batch_size None: not known
    yet, as for a --resume, whose batch is the checkpoint's: the ranks check it)."""
    from .ranges import FLAG_RANGES
    FLAG_RANGES["train"]["nproc"].check("--nproc", nproc)
    if batch_size is not None:
        check_batch(batch_size, nproc, grad_accum_steps)


def strip_nproc(argv: list[str]) -> list[str]:
    """argv without its --nproc N / --nproc=N."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def launch(nproc: int, argv: list[str]) -> int:
    """Re-run `python -m tinygrad_lm <argv>` as `nproc` ranks through mpiexec, with each rank's
    BLAS threads set in its environment before numpy loads; returns mpiexec's exit status.
    The job gets its own session, and this process forwards SIGINT and SIGTERM to mpiexec
    (which forwards them to the ranks): one Ctrl-C stops training at the next step with a
    checkpoint, a second one makes mpiexec abort."""
    mpiexec = find_mpiexec()
    import importlib.util
    if importlib.util.find_spec("mpi4py") is None:
        raise ImportError(f"--nproc needs mpi4py in {sys.executable}: {MPI_HINT}")
    env = dict(os.environ)
    if not any(v in env for v in _BLAS_VARS):
        n = blas_threads_for(nproc)
        env.update({v: str(n) for v in _BLAS_VARS})
    cmd = [mpiexec, "-n", str(nproc), sys.executable, "-m", "tinygrad_lm", *argv]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    prev = {}

    def forward(signum, _frame):
        if proc.poll() is None:
            proc.send_signal(signum)

    for s in (signal.SIGINT, signal.SIGTERM):
        try:
            prev[s] = signal.signal(s, forward)
        except ValueError:  # not the main thread
            pass
    try:
        return proc.wait()
    finally:
        for s, h in prev.items():
            signal.signal(s, h)
