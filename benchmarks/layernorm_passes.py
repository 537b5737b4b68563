"""Can LayerNorm's numpy forward + backward be made cheaper by reordering its passes?

`ops/fused.py: FusedLayerNorm` makes, forward, 5 elementwise passes over (N, D) (x - mu, the
row dot for the variance, * rstd, * w, + b) and 2 allocations (xhat, saved, and the output);
backward 6 passes (dy * xhat, dy * w, - mean(g), xhat * mean(g xhat), -, * rstd), 4 BLAS
matrix-vector products and 2 allocations. This times it, forward + backward on plain arrays,
against rewrites that keep the math (results agree to float rounding; printed as the largest
relative difference), at the three bench configs' (N, D), one BLAS thread, in alternating
rounds (each round's figure: the median of `--calls` calls):

* recompute:    save x (the graph holds it anyway), mu and rstd instead of xhat; backward
                recomputes x - mu (one (N, D) array fewer saved and allocated, one pass more);
* recompute_ws: the same, its backward scratch a buffer kept between calls (no allocation);
* recompute_sq: recompute, the variance by squaring into a temporary and a matrix-vector
                product instead of einsum's row dot;
* workspace:    the package's math, its backward scratch a kept buffer;
* no_einsum:    the variance by squaring into the output buffer and a matrix-vector product;
* tiled:        every pass in blocks of 256 rows (`--tile-rows`), so a block's passes stay in cache;
* torch:        PyTorch's F.layer_norm forward + backward (when torch is installed).

The glibc allocator is tuned first (`tinygrad_lm.tune_host_allocator()`), as the
`tinygrad-lm` command does; minor page faults per call are printed beside the times.

    python benchmarks/layernorm_passes.py [--rounds 15] [--calls 20] [--tile-rows 256]
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # before numpy loads its BLAS

import argparse       # noqa: E402
import resource       # noqa: E402
import time           # noqa: E402

import numpy as np    # noqa: E402

import tinygrad_lm    # noqa: E402
from tinygrad_lm.ops.fused import FusedLayerNorm   # noqa: E402

SHAPES = {"cpu": (12 * 64, 128), "6x192": (16 * 128, 192), "6x384": (8 * 256, 384)}
EPS = 1e-5
_ws = {}


def _scratch(n, d, dt):
    buf = _ws.get(dt)
    if buf is None or buf.size < n * d:
        buf = _ws[dt] = np.empty(n * d, dt)
    return buf[:n * d].reshape(n, d)


def package(x, w, b, dy):
    ctx = FusedLayerNorm.__new__(FusedLayerNorm)
    ctx.needs_input_grad = (True, True, True)
    y = ctx.forward(x, w, b, d=x.shape[1])
    return (y, *ctx.backward(dy))


def _rstd(xc, inv_d):
    r = np.einsum("ij,ij->i", xc, xc)[:, None]
    r *= inv_d
    r += EPS
    np.sqrt(r, out=r)
    return np.divide(1.0, r, out=r)


def recompute(x, w, b, dy, ws=False, sq=False):
    n, d = x.shape
    inv_d = x.dtype.type(1.0 / d)
    avg = np.full(d, inv_d, x.dtype)
    mu = (x @ avg)[:, None]
    y = np.subtract(x, mu)
    if sq:                                                    # var = ((x - mu)^2) @ avg
        rstd = (np.multiply(y, y) @ avg)[:, None]
        rstd += EPS
        np.sqrt(rstd, out=rstd)
        np.divide(1.0, rstd, out=rstd)
    else:
        rstd = _rstd(y, inv_d)
    y *= rstd
    y *= w
    y += b
    # backward: xhat = (x - mu) rstd is never stored
    sc = np.subtract(x, mu, out=_scratch(n, d, x.dtype)) if ws else np.subtract(x, mu)
    dx = np.multiply(dy, sc)                                  # dy (x - mu) for now
    dw = rstd[:, 0] @ dx
    db = np.ones(n, x.dtype) @ dy
    c, a = (dx @ w)[:, None], (dy @ w)[:, None]
    ri = rstd * inv_d
    a *= ri                                                   # rstd mean(g)
    c *= ri
    c *= rstd
    c *= rstd                                                 # rstd^2 mean(g xhat)
    sc *= c
    sc += a
    np.multiply(dy, w, out=dx)
    dx *= rstd
    dx -= sc
    return y, dx, dw, db


def recompute_ws(x, w, b, dy):
    return recompute(x, w, b, dy, ws=True)


def recompute_sq(x, w, b, dy):
    return recompute(x, w, b, dy, sq=True)


def _backward(xhat, rstd, w, dy, sc):
    n, d = xhat.shape
    inv_d = dy.dtype.type(1.0 / d)
    dx = np.multiply(dy, xhat)
    dw = np.ones(n, dy.dtype) @ dx
    db = np.ones(n, dy.dtype) @ dy
    mgx, mg = (dx @ w)[:, None], (dy @ w)[:, None]
    mg *= inv_d
    mgx *= inv_d
    np.multiply(xhat, mgx, out=sc)
    sc += mg
    np.multiply(dy, w, out=dx)
    dx -= sc
    dx *= rstd
    return dx, dw, db


def workspace(x, w, b, dy):
    n, d = x.shape
    inv_d = x.dtype.type(1.0 / d)
    xhat = x - (x @ np.full(d, inv_d, x.dtype))[:, None]
    rstd = _rstd(xhat, inv_d)
    xhat *= rstd
    y = xhat * w
    y += b
    return (y, *_backward(xhat, rstd, w, dy, _scratch(n, d, x.dtype)))


def no_einsum(x, w, b, dy):
    n, d = x.shape
    inv_d = x.dtype.type(1.0 / d)
    avg = np.full(d, inv_d, x.dtype)
    rstd = (x @ avg)[:, None]                                 # mu for now
    xhat = np.subtract(x, rstd)
    y = np.multiply(xhat, xhat)                               # the output's memory as scratch
    np.matmul(y, avg, out=rstd[:, 0])
    rstd += EPS
    np.sqrt(rstd, out=rstd)
    np.divide(1.0, rstd, out=rstd)
    xhat *= rstd
    np.multiply(xhat, w, out=y)
    y += b
    return (y, *_backward(xhat, rstd, w, dy, np.empty_like(xhat)))


def tiled(x, w, b, dy, rows=256):
    n, d = x.shape
    dt = x.dtype
    inv_d = dt.type(1.0 / d)
    avg, ones = np.full(d, inv_d, dt), np.ones(rows, dt)
    xhat, y, dx, rstd = np.empty_like(x), np.empty_like(x), np.empty_like(x), np.empty((n, 1), dt)
    sc = np.empty((rows, d), dt)
    part = np.empty((2, -(-n // rows), d), dt)               # per-block column sums
    for t, i in enumerate(range(0, n, rows)):
        j = min(n, i + rows)
        m = j - i
        xb, yb, rb, dyb, dxb, s = xhat[i:j], y[i:j], rstd[i:j], dy[i:j], dx[i:j], sc[:m]
        np.matmul(x[i:j], avg, out=rb[:, 0])
        np.subtract(x[i:j], rb, out=xb)
        np.multiply(xb, xb, out=yb)
        np.matmul(yb, avg, out=rb[:, 0])
        rb += EPS
        np.sqrt(rb, out=rb)
        np.divide(1.0, rb, out=rb)
        xb *= rb
        np.multiply(xb, w, out=yb)
        yb += b
        np.multiply(dyb, xb, out=dxb)
        np.matmul(ones[:m], dxb, out=part[0, t])
        np.matmul(ones[:m], dyb, out=part[1, t])
        mgx, mg = (dxb @ w)[:, None], (dyb @ w)[:, None]
        mgx *= inv_d
        mg *= inv_d
        np.multiply(xb, mgx, out=s)
        s += mg
        np.multiply(dyb, w, out=dxb)
        dxb -= s
        dxb *= rb
    k = np.ones(part.shape[1], dt)
    return y, dx, k @ part[0], k @ part[1]


def torch_fn():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    F = torch.nn.functional

    def run(x, w, b, dy):
        xt = torch.from_numpy(x).requires_grad_()
        wt, bt = torch.from_numpy(w).requires_grad_(), torch.from_numpy(b).requires_grad_()
        y = F.layer_norm(xt, (x.shape[1],), wt, bt, EPS)
        y.backward(torch.from_numpy(dy))
        return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--tile-rows", type=int, default=256, help="rows per block of the `tiled` variant")
    args = ap.parse_args()
    tuned = tinygrad_lm.tune_host_allocator()   # as the tinygrad-lm command (and its bench) runs
    fns = {"package": package, "recompute": recompute, "recompute_ws": recompute_ws,
           "recompute_sq": recompute_sq, "workspace": workspace,
           "no_einsum": no_einsum,
           "tiled": lambda x, w, b, dy: tiled(x, w, b, dy, rows=args.tile_rows)}
    if torch_fn() is not None:
        fns["torch"] = torch_fn()
    print(f"one BLAS thread; glibc allocator tuned: {tuned}; {args.rounds} alternating rounds, each the median of {args.calls} calls; "
          f"ratio: per-round time / package's, median [min, max]")
    for name, (n, d) in SHAPES.items():
        rng = np.random.default_rng(0)
        x = (3 * rng.standard_normal((n, d)) + 1).astype(np.float32)
        w, b = rng.standard_normal(d).astype(np.float32), rng.standard_normal(d).astype(np.float32)
        dy = rng.standard_normal((n, d)).astype(np.float32)
        ref = package(x, w, b, dy)
        times, faults = {k: [] for k in fns}, dict.fromkeys(fns, 0)
        for r in range(args.rounds):
            for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
                f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                ts = []
                for _ in range(args.calls):
                    t0 = time.perf_counter()
                    fns[k](x, w, b, dy)
                    ts.append(time.perf_counter() - t0)
                faults[k] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
                times[k].append(float(np.median(ts)))
        base = np.array(times["package"])
        print(f"\n{name}: (N, D) = ({n}, {d}), float32")
        print(f"  {'variant':13s} {'ms':>7s} {'[min, max]':>16s}   ratio [min, max]     faults/call  max rel diff")
        for k, fn in fns.items():
            t = np.array(times[k])
            q = t / base
            diff = max(float(np.abs(a - c).max() / np.abs(a).max()) for a, c in zip(ref, fn(x, w, b, dy)))
            print(f"  {k:13s} {np.median(t) * 1e3:7.3f} [{t.min() * 1e3:6.3f}, {t.max() * 1e3:6.3f}]   "
                  f"{np.median(q):.2f} [{q.min():.2f}, {q.max():.2f}]   {faults[k] / args.rounds / args.calls:8.1f}"
                  f"     {diff:.1e}")


if __name__ == "__main__":
    main()
