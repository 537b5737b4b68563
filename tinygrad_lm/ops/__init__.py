"""One `Function` per op, grouped by family. Importing this package registers them all in
`tinygrad_lm.engine.Function.registry`. Each module imports only `engine` and `backend`."""
from . import elementwise, reduce, movement, matmul, indexing  # noqa: F401
from . import fused  # noqa: F401
