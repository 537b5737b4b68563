"""Optimizers step by step against their update equations written out in numpy; schedules,
clipping, parameter groups and state dicts."""
import math

import numpy as np
import pytest

from tinygrad_lm import Tensor, nn
from tinygrad_lm.optim import SGD, Adam, AdamW, clip_grad_norm_, get_lr


def params(*shapes, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [nn.Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]


def set_grads(ps, step, seed=100):
    rng = np.random.default_rng([seed, step])
    gs = [rng.standard_normal(p.shape).astype(p.dtype) for p in ps]
    for p, g in zip(ps, gs):
        p.grad = Tensor(g.copy())
    return gs


# ================================================================ SGD
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_with_momentum_and_weight_decay_matches_the_equations(nesterov):
    ps = params((3, 4), (5,))
    ref = [p.data.copy() for p in ps]
    bufs = [None, None]
    lr, mom, wd = 0.1, 0.9, 0.01
    opt = SGD(ps, lr=lr, momentum=mom, weight_decay=wd, nesterov=nesterov)
    for step in range(5):
        gs = set_grads(ps, step)
        opt.step()
        for i, g in enumerate(gs):
            d = g + wd * ref[i]
            bufs[i] = d.copy() if bufs[i] is None else mom * bufs[i] + d
            d = d + mom * bufs[i] if nesterov else bufs[i]
            ref[i] = ref[i] - lr * d
            np.testing.assert_allclose(ps[i].data, ref[i], rtol=1e-13, atol=1e-15)


def test_plain_sgd_and_skipping_params_without_grad():
    a, b = params((2,), (2,))
    a0, b0 = a.data.copy(), b.data.copy()
    a.grad = Tensor(np.array([1.0, -2.0]))
    SGD([a, b], lr=0.5).step()
    np.testing.assert_allclose(a.data, a0 - 0.5 * np.array([1.0, -2.0]))
    np.testing.assert_array_equal(b.data, b0)


# ================================================================ AdamW
def adamw_reference(w, g, m, v, t, lr, b1, b2, eps, wd, decoupled=True):
    if decoupled:
        w = w * (1 - lr * wd)
    else:
        g = g + wd * w
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    mhat = m / (1 - b1 ** t)
    vhat = v / (1 - b2 ** t)
    return w - lr * mhat / (np.sqrt(vhat) + eps), m, v


def test_adamw_with_two_param_groups_matches_the_equations():
    ps = params((4, 3), (3,), (2, 2))
    groups = [{"params": [ps[0], ps[2]], "weight_decay": 0.1}, {"params": [ps[1]], "weight_decay": 0.0, "lr": 0.02}]
    opt = AdamW(groups, lr=0.01, betas=(0.9, 0.95), eps=1e-8)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.02]
    hyper = {id(ps[0]): (0.01, 0.1), id(ps[2]): (0.01, 0.1), id(ps[1]): (0.02, 0.0)}
    ref = {id(p): (p.data.copy(), np.zeros(p.shape), np.zeros(p.shape)) for p in ps}
    for t in range(1, 7):
        if t == 4:  # schedule the learning rate the way a training loop does
            for g in opt.param_groups:
                g["lr"] *= 0.5
            hyper = {k: (lr * 0.5, wd) for k, (lr, wd) in hyper.items()}
        gs = set_grads(ps, t)
        opt.step()
        for p, g in zip(ps, gs):
            lr, wd = hyper[id(p)]
            w0, m0, v0 = ref[id(p)]
            w, m, v = adamw_reference(w0, g, m0, v0, t, lr, 0.9, 0.95, 1e-8, wd)
            ref[id(p)] = (w, m, v)
            np.testing.assert_allclose(p.data, w, rtol=1e-12, atol=1e-14)
    st = opt.state[id(ps[0])]
    assert st["step"] == 6
    np.testing.assert_allclose(st["exp_avg"], ref[id(ps[0])][1], rtol=1e-12)


def test_adam_adds_weight_decay_to_the_gradient():
    (p,) = params((3, 3))
    w, m, v = p.data.copy(), np.zeros((3, 3)), np.zeros((3, 3))
    opt = Adam([p], lr=0.05, weight_decay=0.2)
    for t in range(1, 4):
        (g,) = set_grads([p], t)
        opt.step()
        w, m, v = adamw_reference(w, g, m, v, t, 0.05, 0.9, 0.999, 1e-8, 0.2, decoupled=False)
        np.testing.assert_allclose(p.data, w, rtol=1e-12)


def test_adamw_float32_state_stays_float32_on_the_params_device():
    ps = params((8, 8), dtype=np.float32)
    opt = AdamW(ps, lr=1e-3)
    set_grads(ps, 0)
    opt.step()
    st = opt.state[id(ps[0])]
    assert ps[0].dtype == np.float32 and st["exp_avg"].dtype == np.float32 and st["exp_avg_sq"].dtype == np.float32
    assert type(st["exp_avg"]) is type(ps[0].data)


def test_zero_grad_and_bad_arguments():
    ps = params((2,), (3,))
    opt = AdamW(ps)
    set_grads(ps, 0)
    opt.zero_grad()
    assert all(p.grad is None for p in ps)
    set_grads(ps, 0)
    opt.zero_grad(set_to_none=False)
    assert all((p.grad.data == 0).all() for p in ps)
    with pytest.raises(ValueError, match="more than one group"):
        AdamW([{"params": ps}, {"params": ps[:1]}])
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([])
    with pytest.raises(ValueError, match="betas"):
        AdamW(ps, betas=(1.0, 0.9))


def test_state_dict_round_trip_resumes_exactly():
    def run(n_steps, resume_at=None):
        ps = params((3, 2), (2,), seed=1)
        groups = [{"params": ps[:1]}, {"params": ps[1:], "weight_decay": 0.0}]
        opt = AdamW(groups, lr=0.01, weight_decay=0.1)
        for t in range(n_steps):
            if t == resume_at:  # a fresh optimizer and copies of the parameters, restored from plain arrays
                sd = opt.state_dict()
                assert set(sd["state"]) == {0, 1} and sd["state"][0]["step"] == t
                assert all(isinstance(v, np.ndarray) for v in sd["state"][0].values() if not isinstance(v, int))
                assert sd["param_groups"][1]["params"] == [1] and sd["param_groups"][1]["weight_decay"] == 0.0
                saved = {k: {n: (np.array(v) if not isinstance(v, int) else v) for n, v in s.items()}
                         for k, s in sd["state"].items()}
                ps = [nn.Parameter(p.data.copy()) for p in ps]
                opt = AdamW([{"params": ps[:1]}, {"params": ps[1:]}], lr=0.5)
                opt.load_state_dict({"state": saved, "param_groups": sd["param_groups"]})
                assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[1]["weight_decay"] == 0.0
            set_grads(ps, t)
            opt.step()
        return [p.data for p in ps]

    for a, b in zip(run(6), run(6, resume_at=3)):
        np.testing.assert_array_equal(a, b)


def test_load_state_dict_rejects_a_mismatched_checkpoint():
    ps = params((3,), (2,))
    opt = AdamW(ps)
    set_grads(ps, 0)
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="checkpoint has 2 parameter groups, this optimizer 1"):
        AdamW(ps).load_state_dict({"state": sd["state"], "param_groups": sd["param_groups"] * 2})
    other = params((4,), (2,))
    with pytest.raises(ValueError, match=r"shape \(3,\) but the parameter has shape \(4,\)"):
        AdamW(other).load_state_dict(sd)


# ================================================================ schedule and clipping
def test_get_lr_is_nanogpts_warmup_then_cosine():
    lr, min_lr, warm, decay = 1e-3, 1e-4, 10, 110
    assert get_lr(0, warm, decay, lr, min_lr) == pytest.approx(lr * 1 / 11)
    assert get_lr(9, warm, decay, lr, min_lr) == pytest.approx(lr * 10 / 11)
    assert get_lr(warm, warm, decay, lr, min_lr) == pytest.approx(lr)
    assert get_lr(60, warm, decay, lr, min_lr) == pytest.approx((lr + min_lr) / 2)
    assert get_lr(decay, warm, decay, lr, min_lr) == pytest.approx(min_lr)
    assert get_lr(10_000, warm, decay, lr, min_lr) == min_lr
    after = [get_lr(i, warm, decay, lr, min_lr) for i in range(warm, decay + 1)]
    assert all(a >= b for a, b in zip(after, after[1:]))
    assert get_lr(35, warm, decay, lr, min_lr) == pytest.approx(min_lr + 0.5 * (1 + math.cos(math.pi * 0.25)) * (lr - min_lr))
    assert get_lr(5, 0, 0, lr, min_lr) == min_lr


def test_clip_grad_norm_scales_all_grads_together():
    ps = params((3,), (2, 2))
    ps[0].grad = Tensor(np.array([3.0, 0.0, 0.0]))
    ps[1].grad = Tensor(np.array([[0.0, 4.0], [0.0, 0.0]]))
    assert clip_grad_norm_(ps, 10.0) == pytest.approx(5.0)
    np.testing.assert_allclose(ps[0].grad.data, [3.0, 0, 0])  # below the limit: untouched
    assert clip_grad_norm_(ps, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(ps[0].grad.data, [3.0 / 5, 0, 0], rtol=1e-5)
    np.testing.assert_allclose(ps[1].grad.data, [[0, 4.0 / 5], [0, 0]], rtol=1e-5)
    total = math.sqrt(sum(float((p.grad.data ** 2).sum()) for p in ps))
    assert total == pytest.approx(1.0, rel=1e-5)
    ps[0].grad = Tensor(np.array([-7.0, 1.0, 0.0]))
    assert clip_grad_norm_(ps, 100.0, norm_type=float("inf")) == 7.0
    assert clip_grad_norm_([nn.Parameter(np.ones(2))], 1.0) == 0.0  # no grads


def test_clip_grad_norm_accepts_a_generator_like_model_parameters():
    # model.parameters() is a generator: clipping must still scale the gradients (it once
    # computed the norm from the generator and then found nothing left to scale)
    model = nn.Linear(3, 2)
    for p in model.parameters():
        p.grad = Tensor(np.full(p.shape, 10.0, dtype=np.float32))
    norm = clip_grad_norm_(model.parameters(), 1.0)
    assert norm == pytest.approx(10.0 * math.sqrt(8), rel=1e-6)
    total = math.sqrt(sum(float((p.grad.data.astype(np.float64) ** 2).sum()) for p in model.parameters()))
    assert total == pytest.approx(1.0, rel=1e-5)
    ps = params((2,))
    ps[0].grad = Tensor(np.array([3.0, 4.0]))
    clip_grad_norm_((p for p in ps), 1.0)
    np.testing.assert_allclose(ps[0].grad.data, [0.6, 0.8], rtol=1e-5)
