"""`tinygrad-lm bench`: how fast the engine is, on the CPU, on a GPU, and against PyTorch.

Modes (`--what`), all written to CSV in `--out-dir` (default `bench_out/`) and printed as tables:

* **ops** (`op_sweep.py`; `ops.csv`, `ops_speedup.png` from `plots.py`): matmul, softmax,
  layer norm, GELU (tanh), cross-entropy, causal attention, embedding (forward and backward
  each) and one AdamW update, over a range of sizes, on numpy and, where a GPU is usable, on
  cupy; and the same ops in PyTorch eager where PyTorch is installed. The table and the plot
  give the GPU speedup (CPU ms / GPU ms) against size and the crossover size below which the
  CPU wins; without a GPU they say so and still report the CPU times.
* **model** (`model_step.py`; `model.csv`, `model_steps.csv`): one full GPT training step
  (forward, backward, clip_grad_norm_(1.0), AdamW step, zero_grad) for the configs of
  `configs.py` (from the training presets), ours and PyTorch eager's (`torch_reference.py`,
  explicit softmax attention and F.scaled_dot_product_attention) in the same process, taking
  turns in a rotating order after a warm-up, then ours once more in a fresh child process
  without torch (`ours_own_process`). Reported: median ms/step with min, max and the
  interquartile range, tokens/s, achieved GFLOP/s by nanoGPT's FLOP estimate
  (configs.FLOP_FORMULA), that as a fraction of the machine's own float32 matmul peak
  measured in the same run (`machine.py`), and the ratio ours/that. `--composed` adds ours
  with the composed ops; `--profile` (`step_profile.py`) shows where our step's time goes
  instead.
* **all**: ops and model.
* **overhead** (`overhead.py`; `overhead.csv`): per-op Python overhead, ours and PyTorch
  against the same math in bare numpy, at tiny to medium sizes.
* **allreduce** (`allreduce.py`; `allreduce.csv`): the data-parallel gradient all-reduce
  against the training step over `--nproc` MPI ranks, and the one-process step beside it.

PyTorch is optional: without it every mode runs and says "torch not installed" where its
figures would be; `torch_reference.py` is imported only when it is installed.

The measured figures, the machine and what every column means: benchmarks/RESULTS.md.
Timers: time.perf_counter around each timed call; on a GPU the device is synchronized
before each timer is read. `--quick` is a smoke run for CI: its numbers are not measurements.
"""
from .allreduce import ALLREDUCE_FIELDS, format_allreduce, run_allreduce  # noqa: F401
from .configs import FLOP_FORMULA, MODEL_CONFIGS, flops_per_step  # noqa: F401
from .harness import Settings  # noqa: F401
from .machine import blas_threads, load_torch, machine_info, measure_matmul_peak  # noqa: F401
from .model_step import MODEL_FIELDS, STEP_FIELDS, format_model, run_model, time_alone  # noqa: F401
from .op_sweep import OP_FIELDS, OPS, format_ops, op_summary, run_ops  # noqa: F401
from .overhead import OVERHEAD_FIELDS, OVERHEAD_OPS  # noqa: F401
from .plots import plot_ops  # noqa: F401
from .run import run_bench, run_overhead, run_profile  # noqa: F401
from .step_profile import format_profile, profile_model_step, profile_torch_step  # noqa: F401
