"""Causal attention in tiles on the CPU: the forward and backward that `FusedAttention` and
`FusedPackedCausalAttention` (ops/fused.py) take for causal self-attention on numpy arrays
with no dropout and no additive mask.

With S = q k^T * scale (T x T), causal mask M (-inf where key > query), P = softmax(S + M)
row by row and y = P v:

    forward:   per query row i, m_i = max_j S_ij, P~_ij = e^(S_ij - m_i), l_i = sum_j P~_ij,
               y_i = (sum_j P~_ij v_j) / l_i
    backward:  dV = P^T dO,  dP = dO V^T,  dS = P * (dP - D),  D_i = sum_j dP_ij P_ij (= dO_i . y_i),
               dQ = dS K * scale,  dK = dS^T Q * scale

The queries go in tiles of `attention_tile` rows (default 64), each tile against the keys up
to its own last query only: the score tiles above the diagonal, where every entry is masked,
are never computed, and the mask is added to the diagonal block alone. A tile's row max and
row sum cover every key the tile's queries see, so each tile is an exact softmax (no running
rescale is needed when a tile holds all its keys at once). The forward keeps the unnormalised
exp tiles P~ and 1/l; the backward folds 1/l into dO once (gl = dO / l, a (T, hs) pass instead
of a pass over the scores), so it never forms P itself. docs/attention.md derives all of it,
and the identity D = dO . y that a kernel looping over key tiles would use instead.

Layout: each tile's scores are kept transposed, S^T (..., keys, queries), like the full-matrix
path in fused.py; q (scaled once), k and v are first copied into plain contiguous (..., T, hs)
arrays so every small per-head product runs at BLAS speed. The leading batch axis is split over
`threads.run_parts` (numpy releases the GIL inside matmul and ufuncs); each part writes its
own rows, so the result does not depend on the thread count.

Imports: numpy and ops/threads.py only (this is a layer below nn/ and models/).
"""
from __future__ import annotations

import numpy as np

from . import threads


_tile_rows = threads.env_int("TINYGRAD_LM_ATTENTION_TILE", default=64, minimum=0)   # 0: the tiled path is off (the full-matrix path in fused.py runs)
_diag_bias_cache: dict = {}
_causal_masks_seen: dict = {}


class attention_tile:
    """`attention_tile(rows)`: the query rows per tile of the tiled causal attention, as a
    plain call (from here on) or a context manager (inside the block only); 0 turns the tiled
    path off (causal attention then goes through the full T x T scores). An op reads the
    size when its forward runs, and its backward uses the same tiles. Default 64, or the
    environment's TINYGRAD_LM_ATTENTION_TILE; the tests use tiny tiles to run many
    iterations of the tile loop."""

    def __init__(self, rows: int):
        global _tile_rows
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise ValueError(f"attention_tile: rows must be an integer >= 0 (0: off), got {rows!r}")
        self.prev, _tile_rows = _tile_rows, rows

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _tile_rows
        _tile_rows = self.prev


def tile_rows() -> int:
    """The query rows per tile that a forward run now would use."""
    return _tile_rows


def _query_tiles(t, rows):
    return [(i0, min(i0 + rows, t)) for i0 in range(0, t, rows)]


def _diag_bias(n, dtype):
    """The causal mask of a diagonal block (keys x queries, both n), additive: -inf where
    key > query, else 0; cached per (n, dtype)."""
    key = (n, np.dtype(dtype).str)
    bias = _diag_bias_cache.get(key)
    if bias is None:
        dtype = np.dtype(dtype)
        bias = np.where(np.arange(n)[:, None] > np.arange(n)[None, :], dtype.type(-np.inf), dtype.type(0))
        if len(_diag_bias_cache) >= 16:
            _diag_bias_cache.clear()
        _diag_bias_cache[key] = bias
    return bias


def _is_causal(drop_mask, tq, tk) -> bool:
    """Whether a bool mask is exactly the causal mask of a square (T, T) score matrix (True
    where key > query); remembered per mask object (the causal masks are cached, so a training
    step compares once). The cache holds the mask, so its id cannot be reused meanwhile."""
    if drop_mask is None or tq != tk or type(drop_mask) is not np.ndarray or drop_mask.shape != (tq, tk):
        return False
    hit = _causal_masks_seen.get(id(drop_mask))
    if hit is not None and hit[0] is drop_mask:
        return hit[1]
    ok = bool(np.array_equal(drop_mask, np.arange(tk)[None, :] > np.arange(tq)[:, None]))
    if len(_causal_masks_seen) >= 32:
        _causal_masks_seen.clear()
    _causal_masks_seen[id(drop_mask)] = (drop_mask, ok)
    return ok


def tiles_apply(arrays, tq, tk, drop_mask, add_mask, dropout_p) -> bool:
    """Whether the tiled path applies to attention of tq queries over tk keys from `arrays`
    (q, k, v or the packed qkv): all numpy arrays (not cupy, not the CUDA stand-in),
    `drop_mask` exactly the causal mask of square scores, no additive mask and no dropout
    (dropout keeps the full-matrix path and its mask draws)."""
    return (_tile_rows > 0 and all(type(a) is np.ndarray for a in arrays) and add_mask is None
            and dropout_p == 0.0 and _is_causal(drop_mask, tq, tk))


def _batch_parts(fn, batch, *arrays):
    """fn(lo, hi) over blocks of the first batch axis on threads.run_parts when every array
    has that axis at full length; fn(None, None) over the whole batch at once otherwise (an
    input broadcasts along it, or there is no batch axis)."""
    if batch and batch[0] > 1 and all(a.ndim == len(batch) + 2 and a.shape[0] == batch[0] for a in arrays):
        threads.run_parts(fn, batch[0])
    else:
        fn(None, None)


def causal_forward(ctx, q, k, v, scale, out=None):
    """y = softmax(q k^T * scale + causal mask) v over (..., T, hs) arrays (batch dims
    broadcast), a tile of queries at a time; written into `out` when given (any strides).
    Saves on ctx: rows (the tile size), exp_tiles (P~^T per tile, (..., i1, i1 - i0)),
    inv_l (1/l, (..., T, 1)), qs (q * scale), kc, vc (contiguous k, v) and y (for its shape)."""
    batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    t, dtype = q.shape[-2], q.dtype
    qs = np.multiply(q, dtype.type(scale), out=np.empty(q.shape, dtype=dtype))   # scaled once, contiguous
    k, v = np.ascontiguousarray(k), np.ascontiguousarray(v)
    if out is None:
        out = np.empty(batch + (t, v.shape[-1]), dtype=dtype)
    tiles = _query_tiles(t, _tile_rows)
    exp_tiles = [np.empty(batch + (i1, i1 - i0), dtype=dtype) for i0, i1 in tiles]   # keys 0..i1 x queries i0..i1
    inv_l = np.empty(batch + (t, 1), dtype=dtype)

    def part(lo, hi):
        b = slice(lo, hi)
        qp, kp, vp, yp, lp = qs[b], k[b], v[b], out[b], inv_l[b]
        for (i0, i1), mem in zip(tiles, exp_tiles):
            st = mem[b]                                  # S^T of this tile, (..., i1, tq)
            np.matmul(kp[..., :i1, :], qp[..., i0:i1, :].swapaxes(-1, -2), out=st)
            st[..., i0:, :] += _diag_bias(i1 - i0, dtype)
            st -= st.max(axis=-2, keepdims=True)     # finite: key 0 is in every query's row
            np.exp(st, out=st)                       # P~^T = e^(S - m)
            l = np.ones((1, i1), dtype=dtype) @ st    # l = sum over the keys, (..., 1, tq), >= 1
            np.divide(1.0, l, out=l)
            lt = l.swapaxes(-1, -2)                  # 1/l, (..., tq, 1)
            lp[..., i0:i1, :] = lt
            o = yp[..., i0:i1, :]
            np.matmul(st.swapaxes(-1, -2), vp[..., :i1, :], out=o)
            o *= lt                                  # y = (P~ v) / l

    _batch_parts(part, batch, q, k, v)
    ctx.rows, ctx.exp_tiles, ctx.qs, ctx.kc, ctx.vc, ctx.inv_l, ctx.y = _tile_rows, exp_tiles, qs, k, v, inv_l, out
    return out


def causal_backward(ctx, g, scale, outs=(None, None, None)):
    """The gradients of `causal_forward`'s y for dO = g, from what it saved. With P = P~ / l
    and gl = dO / l (row by row), per query tile against all the keys its queries see:

        dV = P~^T gl,   dP = dO V^T,   P * dP = P~ * (gl V^T),   D = rowsum(P * dP),
        dS = P * dP - P~ * (D / l),   dQ = dS K * scale,   dK = dS^T q * scale,

    which is dS = P * (dP - D).

    D could also be rowsum(dO * y) (the identity docs/attention.md derives, which a kernel
    whose inner loop runs over key tiles needs); here every tile holds all its queries' keys,
    so D comes from the tile itself, as in the full-matrix path: where the softmax saturates
    (P one-hot) P * dP - P * D is then exactly 0, not a rounding residue of two dot products.
    Returns (dQ, dK, dV) at the broadcast batch shape, written into `outs` where given."""
    batch, t = ctx.y.shape[:-2], ctx.y.shape[-2]
    qs, k, v = ctx.qs, ctx.kc, ctx.vc
    dq, dk, dv = (o if o is not None else np.empty(batch + (t, a.shape[-1]), dtype=g.dtype)
                  for o, a in zip(outs, (qs, k, v)))
    tiles = list(enumerate(_query_tiles(t, ctx.rows)))[::-1]   # the last tile first: it reaches every key

    def part(lo, hi):
        b = slice(lo, hi)
        gp = g[b]
        gl = np.multiply(gp, ctx.inv_l[b], out=np.empty(np.broadcast_shapes(gp.shape, ctx.inv_l[b].shape),
                                                           dtype=g.dtype))   # dO / l, (..., T, hs), contiguous
        qp, kp, vp, lp, dqp, dkp, dvp = qs[b], k[b], v[b], ctx.inv_l[b], dq[b], dk[b], dv[b]
        for n, (i0, i1) in tiles:
            pt, gi = ctx.exp_tiles[n][b], gl[..., i0:i1, :]
            dst = np.matmul(vp[..., :i1, :], gi.swapaxes(-1, -2))     # (dP / l)^T, (..., i1, tq)
            pdp = dst * pt                                            # (P * dP)^T
            d = np.ones((1, i1), dtype=g.dtype) @ pdp                 # D, (..., 1, tq)
            d *= lp[..., i0:i1, :].swapaxes(-1, -2)                   # D / l: P * D = P~ * (D / l)
            np.multiply(pt, d, out=dst)
            np.subtract(pdp, dst, out=dst)                            # dS^T (without the scale)
            if i1 == t:                                  # the first tile visited covers every key
                np.matmul(pt, gi, out=dvp)
                np.matmul(dst, qp[..., i0:i1, :], out=dkp)
            else:
                dvp[..., :i1, :] += pt @ gi
                dkp[..., :i1, :] += dst @ qp[..., i0:i1, :]
            np.matmul(dst.swapaxes(-1, -2), kp[..., :i1, :], out=dqp[..., i0:i1, :])
        dqp *= g.dtype.type(scale)

    _batch_parts(part, batch, qs, k, v, g)
    return dq, dk, dv
