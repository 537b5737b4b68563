"""One `Function` per op, grouped by family. Importing this package registers them all in
`tinygrad_lm.tensor.Function.registry`."""
from . import elementwise, reduce, movement, matmul, indexing  # noqa: F401
from . import fused  # noqa: F401
