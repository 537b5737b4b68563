"""The tiled causal attention (ops/attention.py) against the full-matrix path and the composed
one, forward and gradients, float64 and float32; finite differences with tiny tiles; odd T,
T = 1, broadcasting batches; the thread pool (threads.run_parts) giving bit-identical results
at any thread count; and the paths that must not take the tiles (dropout, additive masks,
non-causal masks, cupy arrays)."""
import os

import numpy as np
import pytest

import tinygrad_lm as tg
from tinygrad_lm import Tensor, gradcheck
from tinygrad_lm.ops import threads
from tinygrad_lm.nn import functional as F
from tinygrad_lm.ops import attention as A

TIGHT = dict(rtol=1e-10, atol=1e-12)   # float64: the same math, summed in another order


@pytest.fixture(autouse=True)
def _threads_restored():
    prev = threads.get_num_threads()
    yield
    threads.set_num_threads(prev)


def _sdpa(q, k, v, g, *, tile, impl="fused", **kw):
    """(y, dq, dk, dv, tiled?) of causal scaled_dot_product_attention with `tile` rows (0: the
    full-matrix path)."""
    ts = [Tensor(a, requires_grad=True) for a in (q, k, v)]
    with A.attention_tile(tile):
        y = F.scaled_dot_product_attention(*ts, is_causal=True, impl=impl, **kw)
        tiled = getattr(y._ctx, "tiled", None)   # read before backward frees the graph
        y.backward(Tensor(g))
    return (y.data, *(t.grad.data for t in ts)), tiled


def _packed(qkv, g, nh, *, tile, impl="fused"):
    x = Tensor(qkv, requires_grad=True)
    with A.attention_tile(tile):
        y = F.causal_self_attention(x, nh, impl=impl)
        tiled = getattr(y._ctx, "tiled", None)
        y.backward(Tensor(g))
    return (y.data, x.grad.data), tiled


def _close(a, b, **tol):
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, **tol)


@pytest.mark.parametrize("t", [1, 2, 5, 7, 13])
@pytest.mark.parametrize("tile", [1, 2, 3, 4, 64])
def test_tiled_matches_full_matrix_and_composed_in_float64(t, tile):
    rng = np.random.default_rng(t * 100 + tile)
    b, h, hs = 2, 3, 4
    q, k, v, g = (rng.standard_normal((b, h, t, hs)) for _ in range(4))
    tiled, was_tiled = _sdpa(q, k, v, g, tile=tile, scale=0.7)
    full, was_full = _sdpa(q, k, v, g, tile=0, scale=0.7)
    composed, _ = _sdpa(q, k, v, g, tile=tile, scale=0.7, impl="composed")
    assert was_tiled is True and was_full is False   # the two paths really ran
    _close(tiled, full, **TIGHT)
    _close(tiled, composed, **TIGHT)


@pytest.mark.parametrize("t,tile", [(1, 1), (5, 2), (9, 4), (12, 64)])
def test_packed_tiled_matches_full_matrix_and_composed(t, tile):
    rng = np.random.default_rng(t)
    b, nh, hs = 3, 2, 3
    qkv, g = rng.standard_normal((b, t, 3 * nh * hs)), rng.standard_normal((b, t, nh * hs))
    tiled, was_tiled = _packed(qkv, g, nh, tile=tile)
    full, was_full = _packed(qkv, g, nh, tile=0)
    composed, _ = _packed(qkv, g, nh, tile=tile, impl="composed")
    assert was_tiled is True and was_full is False
    _close(tiled, full, **TIGHT)
    _close(tiled, composed, **TIGHT)


def test_tiled_agrees_in_float32_at_gpt_shapes():
    rng = np.random.default_rng(0)
    b, t, nh, hs = 2, 100, 4, 16   # T not a multiple of the tile
    qkv = rng.standard_normal((b, t, 3 * nh * hs)).astype(np.float32)
    g = rng.standard_normal((b, t, nh * hs)).astype(np.float32)
    tiled, _ = _packed(qkv, g, nh, tile=32)
    ref, _ = _packed(qkv.astype(np.float64), g.astype(np.float64), nh, tile=0)
    assert tiled[0].dtype == tiled[1].dtype == np.float32
    _close(tiled, ref, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("t,tile", [(1, 1), (5, 2), (7, 3)])
def test_tiled_gradcheck_float64_with_tiny_tiles(t, tile):
    rng = np.random.default_rng(t)
    q, k, v = (Tensor(rng.standard_normal((2, t, 3)), requires_grad=True) for _ in range(3))
    qkv = Tensor(rng.standard_normal((2, t, 3 * 2 * 2)), requires_grad=True)
    with A.attention_tile(tile):
        assert gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.8),
                         [q, k, v], mode="element").passed
        assert gradcheck(lambda a: F.causal_self_attention(a, 2), [qkv], mode="element").passed


@pytest.mark.parametrize("kshape", [(1, 3), (3,), ()])
def test_tiled_broadcasts_batch_dims_like_the_full_matrix_path(kshape):
    # q (3, 3, T, hs) against k, v of fewer or size-1 batch dims; (3,) puts k's head axis where
    # q's batch axis is, of the same length: splitting k along it would be wrong
    rng = np.random.default_rng(len(kshape))
    t, hs = 6, 2
    q, g = rng.standard_normal((3, 3, t, hs)), rng.standard_normal((3, 3, t, hs))
    k, v = rng.standard_normal(kshape + (t, hs)), rng.standard_normal(kshape + (t, hs))
    for n in (1, 2):
        threads.set_num_threads(n)
        tiled, was_tiled = _sdpa(q, k, v, g, tile=4)
        full, _ = _sdpa(q, k, v, g, tile=0)
        assert was_tiled and tiled[2].shape == k.shape and tiled[3].shape == v.shape
        _close(tiled, full, **TIGHT)


def test_tiled_backward_twice_with_retain_graph_gives_the_same_gradients():
    rng = np.random.default_rng(2)
    x = Tensor(rng.standard_normal((2, 9, 12)), requires_grad=True)
    with A.attention_tile(4):
        y = F.causal_self_attention(x, 2)
    g = rng.standard_normal(y.shape)
    y.backward(Tensor(g), retain_graph=True)
    first = x.grad.data.copy()
    x.grad = None
    y.backward(Tensor(g))
    np.testing.assert_array_equal(x.grad.data, first)


def test_thread_count_does_not_change_a_bit_of_the_result():
    rng = np.random.default_rng(3)
    qkv = rng.standard_normal((5, 70, 3 * 4 * 8)).astype(np.float32)
    g = rng.standard_normal((5, 70, 4 * 8)).astype(np.float32)
    results = []
    for n in (1, 2, 3, 8):
        threads.set_num_threads(n)
        results.append(_packed(qkv, g, 4, tile=16)[0])
    for r in results[1:]:
        for a, b in zip(r, results[0]):
            np.testing.assert_array_equal(a, b)


def test_dropout_masks_and_non_causal_masks_keep_the_full_matrix_path():
    rng = np.random.default_rng(4)
    q, k, v = (Tensor(rng.standard_normal((1, 2, 5, 3)), requires_grad=True) for _ in range(3))
    tg.manual_seed(0)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=0.3)
    assert y._ctx.tiled is False
    upper = np.triu(np.ones((5, 5), bool))            # allowed where key >= query: not causal
    assert F.scaled_dot_product_attention(q, k, v, attn_mask=upper)._ctx.tiled is False
    causal_bool = np.tril(np.ones((5, 5), bool))     # the causal mask given as a bool attn_mask
    assert F.scaled_dot_product_attention(q, k, v, attn_mask=causal_bool)._ctx.tiled is True
    add = Tensor(np.where(np.tril(np.ones((5, 5))), 0.0, -np.inf))
    assert F.scaled_dot_product_attention(q, k, v, attn_mask=add)._ctx.tiled is False
    q6 = Tensor(rng.standard_normal((1, 2, 6, 3)), requires_grad=True)
    assert F.scaled_dot_product_attention(q6, k, v, is_causal=True)._ctx.tiled is False   # Tq != Tk


def test_cuda_attention_keeps_its_own_path(cuda):
    """On cupy arrays (a real GPU, or the cupy stand-in without one: id cuda-standin) the tiles
    never run; the result matches the CPU's."""
    rng = np.random.default_rng(5)
    qkv = rng.standard_normal((2, 7, 12)).astype(np.float32)
    x = Tensor(qkv, device=cuda, requires_grad=True)
    with A.attention_tile(2):
        y = F.causal_self_attention(x, 2)
    assert y._ctx is not None and not getattr(y._ctx, "tiled", False)
    y.sum().backward()
    ref, _ = _packed(qkv, np.ones((2, 7, 4), np.float32), 2, tile=2)
    np.testing.assert_allclose(y.detach().cpu().numpy(), ref[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x.grad.cpu().numpy(), ref[1], rtol=1e-4, atol=1e-5)


def test_attention_tile_checks_its_argument_and_restores_the_size():
    before = A.tile_rows()
    with A.attention_tile(3):
        assert A.tile_rows() == 3
    assert A.tile_rows() == before
    for bad in (-1, 2.0, True, "4"):
        with pytest.raises(ValueError, match="attention_tile: rows must be an integer >= 0"):
            A.attention_tile(bad)


def test_run_parts_covers_the_range_once_on_up_to_n_threads_and_raises_errors():
    import threading
    seen, names = [], set()

    def fn(lo, hi):
        seen.append((lo, hi))
        names.add(threading.current_thread().name)
    threads.set_num_threads(3)
    threads.run_parts(fn, 10)
    assert sorted(seen) == [(0, 3), (3, 6), (6, 10)] and len(names) <= 3
    seen.clear()
    threads.run_parts(fn, 10, min_part=6)          # one part only: on the calling thread
    assert seen == [(0, 10)]
    threads.set_num_threads(1)
    seen.clear()
    threads.run_parts(fn, 10)
    assert seen == [(0, 10)]

    def boom(lo, hi):
        if lo > 0:
            raise RuntimeError("part failed")
    threads.set_num_threads(2)
    with pytest.raises(RuntimeError, match="part failed"):
        threads.run_parts(boom, 4)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="set_num_threads: n must be an integer >= 1"):
            threads.set_num_threads(bad)


def test_run_parts_workers_see_the_callers_errstate():
    big = np.full(4, 3e38, np.float32)
    threads.set_num_threads(2)

    def overflow(lo, hi):
        big[lo:hi] * np.float32(10)
    with np.errstate(over="raise"):
        with pytest.raises(FloatingPointError):
            threads.run_parts(overflow, 4)     # the worker's block overflows too: both raise
    with np.errstate(over="ignore"):
        threads.run_parts(overflow, 4)         # and ignore it alike: no warning, no error


@pytest.mark.parametrize("value", ["abc", "-2", "1.5"])
def test_a_bad_environment_value_is_named_in_a_warning_and_the_default_is_used(value):
    """TINYGRAD_LM_ATTENTION_TILE / TINYGRAD_LM_NUM_THREADS that are not integers in range are
    not silently taken: a RuntimeWarning names the variable, the value and the default used."""
    import subprocess
    import sys
    code = ("import tinygrad_lm.ops.attention as a, tinygrad_lm.ops.threads as t;"
            "print(a._tile_rows, t.get_num_threads())")
    env = dict(os.environ, TINYGRAD_LM_ATTENTION_TILE=value, TINYGRAD_LM_NUM_THREADS=value)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["64", "1"]
    assert f"TINYGRAD_LM_ATTENTION_TILE={value!r} is not an integer >= 0: using 64" in r.stderr
    assert f"TINYGRAD_LM_NUM_THREADS={value!r} is not an integer >= 1: using 1" in r.stderr
