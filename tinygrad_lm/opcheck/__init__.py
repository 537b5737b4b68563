"""The op table: how every op's gradient is checked, and the checks themselves.

* `harness.py`: `OpSpec` (how to sample, call and check one op), `Case`, `Draw`, the table
  (`register_spec`, `all_specs`), and running it (`check_case`, `run_op_gradchecks`,
  `format_table`);
* `engine_specs.py`: one spec per engine op (elementwise, reduce, movement, indexing, matmul);
* `fused_specs.py`: one spec per fused op (`ops/fused.py`), called through `nn.functional`;
* `gpt.py`: `gradcheck_gpt` and `gradcheck_dpo`, every parameter of a tiny GPT against finite
  differences, under the language-model loss and under the DPO objective.

Importing this package registers every spec. `tinygrad-lm gradcheck` runs them all in
float64; tests/test_ops.py runs them with hypothesis choosing the shapes, and fails when a
registered op has no spec. This package sits above the library it checks (it imports ops,
nn and models); nothing in the library imports it.
"""
from .harness import (  # noqa: F401
    Case, Draw, OpCheckRow, OpSpec, SPECS, all_specs, avoid, check_case, check_forward, engine_ops,
    format_table, make_tensors, missing_specs, register_spec, run_op_gradchecks,
)
from . import engine_specs, fused_specs  # noqa: F401  (registering the package's specs)
from .gpt import gradcheck_dpo, gradcheck_gpt  # noqa: F401
