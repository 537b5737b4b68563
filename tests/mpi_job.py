"""Jobs that tests/test_distributed.py runs as `mpiexec -n N python tests/mpi_job.py JOB ...`
(or as one plain process, for the one-rank reference). Not a test module itself.

steps OUT DTYPE STEPS ACCUM MASK
    train a tiny GPT for STEPS steps on a global batch of 8 rows; one plain process uses
    train.train_step (the one-process path), ranks use distributed.DataParallel. Writes
    OUT (JSON, rank 0): every step's loss, whether all ranks' parameters were bit-identical
    after every step, and the final parameters.
fail | setupfail | sigint ARGS...
    run `tinygrad-lm train ARGS` through cli.main with one fault injected on rank 1 only:
    an exception at its third step, a data error while it loads the corpus, a SIGINT to
    itself during its fifth step.
"""
import json
import os
import signal
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tinygrad_lm import distributed  # noqa: E402


def steps_job(out, dtype, steps, accum, mask):
    from tinygrad_lm.checkpoint import build_model
    from tinygrad_lm.data import get_batch
    from tinygrad_lm.engine import manual_seed
    from tinygrad_lm.tensor import Tensor
    from tinygrad_lm.train import train_step
    dist = distributed.init()
    manual_seed(0)
    model = build_model(dict(vocab_size=13, n_layer=2, n_head=2, n_embd=16, block_size=8, dropout=0.0, bias=True,
                             gelu_approximate="tanh"), "cpu", dtype)
    opt = model.configure_optimizers(0.1, 3e-3, (0.9, 0.99))
    data = np.random.default_rng(1).integers(0, 13, 4000)
    rng, mask_rng = np.random.default_rng(2), np.random.default_rng(3)
    dp = None if dist is None and accum == 1 else distributed.DataParallel(model, opt, dist, accum, 1.0)
    losses, identical = [], []
    for _ in range(steps):
        x, y = get_batch(data, 8, 8, rng)
        if mask:  # ignored targets, unevenly: most in the last rows (rank 1's half when N = 2)
            y[4:][mask_rng.random((4, 8)) < 0.7] = -1
            y[:4][mask_rng.random((4, 8)) < 0.1] = -1
        if dp is None:
            losses.append(float(train_step(model, opt, Tensor(x), Tensor(y), 1.0).data))
        else:
            losses.append(dp.step(x, y))
        if dist is not None:
            flat = np.concatenate([p.data.ravel() for p in dp.params])
            identical.append(len({a.tobytes() for a in dist.allgather(flat)}) == 1)
    if dist is None or dist.is_main:
        params = [p.data.ravel().tolist() for p in model.parameters()]
        with open(out, "w") as f:
            json.dump({"losses": losses, "identical": identical, "params": params,
                       "world": 1 if dist is None else dist.world_size}, f)


def fault_job(kind, argv):
    from tinygrad_lm import cli, train
    rank = distributed.env_rank() or 0
    if kind == "setupfail" and rank == 1:
        from tinygrad_lm.data import DataError

        def bad_corpus(path):
            raise DataError("injected: rank 1 cannot read the corpus")
        train.load_corpus = bad_corpus
    if kind in ("fail", "sigint", "sigterm") and rank == 1:
        step, calls = distributed.DataParallel.step, [0]

        def faulty(self, x, y, stop=None, check=None):
            calls[0] += 1
            if kind == "fail" and calls[0] == 3:
                raise RuntimeError("injected: rank 1 fails at its third step")
            if kind in ("sigint", "sigterm") and calls[0] == 5:
                # the handler only sets the flag: this step completes, the next carries the flag
                os.kill(os.getpid(), signal.SIGINT if kind == "sigint" else signal.SIGTERM)
            return step(self, x, y, stop, check)
        distributed.DataParallel.step = faulty
    sys.exit(cli.main(argv))


if __name__ == "__main__":
    job = sys.argv[1]
    if job == "steps":
        out, dtype, n, accum, mask = sys.argv[2:7]
        steps_job(out, dtype, int(n), int(accum), mask == "1")
    else:
        fault_job(job, sys.argv[2:])
