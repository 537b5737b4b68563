"""Index ops used by language models: the embedding lookup."""
from .. import backend
from ..tensor import Function


class EmbeddingLookup(Function):
    """z[..., :] = W[idx[...], :];  dL/dW[r] = sum of dL/dz over the positions where idx == r.

    The backward is a segmented sum (sort + add.reduceat on numpy, atomics on cupy), not
    np.add.at, which is unbuffered and slow."""
    def forward(self, weight, idx):
        self.idx, self.rows = idx, weight.shape[0]
        return weight[idx]

    def backward(self, g):
        flat = g.reshape(self.idx.size, -1)  # (N, C): one row of gradient per looked-up index
        grad = backend.index_add_rows(self.rows, self.idx.reshape(-1), flat)
        return grad.reshape((self.rows,) + g.shape[self.idx.ndim:]), None
