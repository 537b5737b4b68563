"""Matrix multiplication with numpy's rules (1-D, 2-D, batched N-D with broadcast batch dims)."""
from .. import backend
from ..engine import Function, unbroadcast


class Matmul(Function):
    """Z = A @ B;  dL/dA = dL/dZ @ B^T,  dL/dB = A^T @ dL/dZ.

    A 1-D A acts as a row (1, k) and a 1-D B as a column (k, 1); the inserted axis is
    removed from the result, and put back on the gradient before the two products.
    Batch dims broadcast, so their gradients are summed back (`unbroadcast`). The
    common case of an N-D A times a 2-D weight B folds the batch into one GEMM:
    dL/dB = A.reshape(-1, k)^T @ dL/dZ.reshape(-1, n).
    """
    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: both operands need at least 1 dim, got shapes {a.shape} and {b.shape}")
        ka = a.shape[-1]
        kb = b.shape[-2] if b.ndim > 1 else b.shape[0]
        if ka != kb:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned: {ka} (dim -1 of the first) != {kb} (dim {-2 if b.ndim > 1 else 0} of the second)")
        try:
            out = backend.array_module(a).matmul(a, b)
        except ValueError:
            raise ValueError(f"matmul: batch dims of shapes {a.shape} and {b.shape} cannot be broadcast together") from None
        self.a, self.b = a, b
        return out

    def backward(self, g):
        a, b = self.a, self.b
        na, nb = self.needs_input_grad
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if a.ndim == 1:
            g = g[..., None, :] if b.ndim > 1 else g[..., None]
        if b.ndim == 1:
            g = g[..., None]
        ga = gb = None
        if na:
            ga = unbroadcast(g @ b2.swapaxes(-1, -2), a2.shape).reshape(a.shape)
        if nb:
            if b2.ndim == 2 and a2.ndim > 2:
                gb = a2.reshape(-1, a2.shape[-1]).T @ g.reshape(-1, g.shape[-1])
            else:
                gb = unbroadcast(a2.swapaxes(-1, -2) @ g, b2.shape)
            gb = gb.reshape(b.shape)
        return ga, gb
