"""The GPT: nanoGPT's names and init, whole-model gradient checks, the KV cache, causality,
gradient accumulation, fused against composed, and a few training steps."""
import math

import numpy as np
import pytest

import tinygrad_lm as tg
from tinygrad_lm import Tensor, gradcheck
from tinygrad_lm.models import GPT, GPTConfig
from tinygrad_lm.nn import functional as F

V, BLOCK = 11, 8


def tiny(bias=True, seed=0, dtype=np.float64, **kw):
    tg.manual_seed(seed)
    cfg = dict(vocab_size=V, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16, bias=bias)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).to(dtype)


def roughen(model, seed=1, scale=0.3):
    """Weights well away from init (LayerNorm gains away from 1, biases non-zero), so every
    parameter's gradient is far above round-off and the checks below are sharp."""
    rng = np.random.default_rng(seed)
    for _, p in model.named_parameters():
        p.data = p.data + scale * rng.standard_normal(p.shape).astype(p.dtype)
    return model


def batch(b=3, t=BLOCK, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (b, t)), rng.integers(0, V, (b, t))


# ================================================================ names, tying, init
def test_parameter_names_are_nanogpts():
    model = tiny(n_layer=1)
    assert [n for n, _ in model.named_parameters()] == [
        "transformer.wte.weight", "transformer.wpe.weight",
        "transformer.h.0.ln_1.weight", "transformer.h.0.ln_1.bias",
        "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_attn.bias",
        "transformer.h.0.attn.c_proj.weight", "transformer.h.0.attn.c_proj.bias",
        "transformer.h.0.ln_2.weight", "transformer.h.0.ln_2.bias",
        "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_fc.bias",
        "transformer.h.0.mlp.c_proj.weight", "transformer.h.0.mlp.c_proj.bias",
        "transformer.ln_f.weight", "transformer.ln_f.bias",
    ]
    shapes = {n: p.shape for n, p in model.named_parameters()}
    assert shapes["transformer.h.0.attn.c_attn.weight"] == (48, 16)  # (out, in), as PyTorch stores Linear weights
    assert shapes["transformer.h.0.mlp.c_fc.weight"] == (64, 16)
    assert [n for n, _ in tiny(n_layer=1, bias=False).named_parameters()] == [
        "transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.ln_1.weight",
        "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_proj.weight", "transformer.h.0.ln_2.weight",
        "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_proj.weight", "transformer.ln_f.weight"]


def test_lm_head_is_tied_to_the_token_embedding():
    model = tiny()
    assert model.lm_head.weight is model.transformer.wte.weight
    sd = model.state_dict()
    assert "lm_head.weight" in sd and "transformer.wte.weight" in sd  # both names, as PyTorch's state_dict
    assert sd["lm_head.weight"].data is sd["transformer.wte.weight"].data
    assert sum(p is model.lm_head.weight for p in model.parameters()) == 1
    n = sum(p.numel() for p in model.parameters())
    assert model.num_params(non_embedding=False) == n and model.num_params() == n - BLOCK * 16
    # loading a state dict (both names present) keeps the tie
    model.load_state_dict({k: v.numpy() for k, v in tiny(seed=5).state_dict().items()})
    assert model.lm_head.weight is model.transformer.wte.weight


def test_init_follows_gpt2():
    model = tiny(n_layer=3, n_embd=64, n_head=4, vocab_size=500, block_size=64, dtype=np.float32)
    for name, p in model.named_parameters():
        w = p.data
        if name.endswith("c_proj.weight"):
            assert abs(w.std() - 0.02 / math.sqrt(2 * 3)) < 0.002, name
        elif name.endswith(("c_attn.weight", "c_fc.weight", "wte.weight", "wpe.weight")):
            assert abs(w.std() - 0.02) < 0.002, name
        elif ".ln_" in name and name.endswith("weight"):
            assert (w == 1).all(), name
        elif name.endswith("bias"):
            assert (w == 0).all(), name
        assert w.dtype == np.float32


def test_forward_shapes_initial_loss_and_errors():
    model = tiny(dtype=np.float32)
    idx, tgt = batch()
    logits, loss = model(idx, tgt)
    assert logits.shape == (3, BLOCK, V) and logits.dtype == np.float32 and loss.shape == ()
    assert abs(loss.item() - math.log(V)) < 0.1  # a fresh model is close to uniform
    logits2, none = model(idx[:, :5])
    assert none is None and logits2.shape == (3, 5, V)
    tgt[0, :4] = -1  # nanoGPT's ignore_index
    _, masked = model(idx, tgt)
    assert np.isfinite(masked.item())
    with pytest.raises(ValueError, match="cannot forward a sequence of length 9: block size is only 8"):
        model(np.zeros((1, 9), np.int64))
    with pytest.raises(ValueError, match=r"idx must be a \(B, T\) integer tensor"):
        model(np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="n_embd=10 must be divisible by n_head=3"):
        GPTConfig(n_embd=10, n_head=3)


# ================================================================ whole-model gradient checks
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("impl", ["fused", "composed"])
def test_whole_gpt_gradcheck(bias, impl):
    model = roughen(tiny(bias=bias))
    idx, tgt = batch(2)
    tgt[1, 2] = -1
    with F.use_fused(impl == "fused"):
        report = gradcheck(lambda *ps: model(idx, tgt)[1], dict(model.named_parameters()), mode="auto",
                           max_elements=12, n_directions=2, atol=1e-8, rtol=1e-5)
    assert report.passed and len(report.inputs) == (28 if bias else 15)
    assert all(r.elements_checked + r.directions > 0 for r in report.inputs)
    assert all(p.dtype == np.float64 for p in model.parameters())


@pytest.mark.parametrize("impl", ["fused", "composed"])
def test_whole_gpt_gradcheck_with_exact_gelu(impl):
    model = roughen(tiny(gelu_approximate="none"))
    assert model.transformer.h[0].mlp.gelu.approximate == "none"
    idx, tgt = batch(2)
    with F.use_fused(impl == "fused"):
        report = gradcheck(lambda *ps: model(idx, tgt)[1], dict(model.named_parameters()), mode="auto",
                           max_elements=12, n_directions=2, atol=1e-8, rtol=1e-5)
    assert report.passed and len(report.inputs) == 28
    with pytest.raises(ValueError, match="gelu_approximate must be 'none' or 'tanh'"):
        GPTConfig(gelu_approximate="exact")


def test_fused_and_composed_models_agree_on_loss_and_every_gradient():
    model = roughen(tiny())
    idx, tgt = batch()
    results = []
    for fused in (True, False):
        model.zero_grad()
        with F.use_fused(fused):
            logits, loss = model(idx, tgt)
            loss.backward()
        results.append((logits.data, loss.item(), {n: p.grad.data for n, p in model.named_parameters()}))
    (l1, s1, g1), (l2, s2, g2) = results
    np.testing.assert_allclose(l1, l2, rtol=1e-12, atol=1e-12)
    assert s1 == pytest.approx(s2, rel=1e-12)
    for n in g1:
        np.testing.assert_allclose(g1[n], g2[n], rtol=1e-10, atol=1e-12, err_msg=n)


# ================================================================ KV cache
@pytest.mark.parametrize("impl", ["fused", "composed"])
def test_kv_cache_gives_the_full_forwards_logits(impl):
    model = roughen(tiny()).eval()
    idx, _ = batch(2)
    with F.use_fused(impl == "fused"):
        full, _ = model(idx)
        logits, cache = model.forward_step(idx[:, :3])  # prefill
        got = [logits.data]
        assert len(cache) == 2 and cache[0][0].shape == (2, 2, 3, 8) and model.cache_length(cache) == 3
        for t in (3, 4):  # one token at a time
            logits, cache = model.forward_step(idx[:, t:t + 1], cache)
            got.append(logits.data)
        logits, cache = model.forward_step(idx[:, 5:8], cache)  # a chunk of several new tokens
        got.append(logits.data)
    assert not logits.requires_grad and model.cache_length(cache) == BLOCK
    np.testing.assert_allclose(np.concatenate(got, axis=1), full.data, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="length 1 after 8 cached positions: block size is only 8"):
        model.forward_step(idx[:, :1], cache)


def test_kv_cache_in_float32_matches_to_float32_precision_and_rows_can_be_reordered():
    model = tiny(dtype=np.float32).eval()
    idx, _ = batch(3)
    full, _ = model(idx)
    _, cache = model.forward_step(idx[:, :6])
    logits, _ = model.forward_step(idx[:, 6:7], cache)
    np.testing.assert_allclose(logits.data[:, 0], full.data[:, 6], rtol=1e-4, atol=1e-5)
    order = np.array([2, 0, 0])  # beam search reorders / repeats rows of the cache
    cache2 = [(k[order], v[order]) for k, v in cache]
    logits2, _ = model.forward_step(idx[order, 6:7], cache2)
    np.testing.assert_allclose(logits2.data, logits.data[order], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="cache holds a batch of 3 but idx has 2 rows"):
        model.forward_step(idx[:2, 6:7], cache)


# ================================================================ causality, accumulation
def test_changing_token_t_never_changes_earlier_logits():
    model = roughen(tiny())
    idx, _ = batch(2)
    base, _ = model(idx)
    for t in range(BLOCK):
        changed = idx.copy()
        changed[:, t] = (changed[:, t] + 1) % V
        logits, _ = model(changed)
        np.testing.assert_allclose(logits.data[:, :t], base.data[:, :t], rtol=1e-13, atol=1e-13)
        assert not np.allclose(logits.data[:, t], base.data[:, t])


@pytest.mark.parametrize("k", [2, 4])
def test_gradient_accumulation_over_micro_batches_equals_one_big_batch(k):
    model = roughen(tiny())
    idx, tgt = batch(4)
    model(idx, tgt)[1].backward()
    big = {n: p.grad.data.copy() for n, p in model.named_parameters()}
    model.zero_grad()
    m = 4 // k
    for i in range(k):
        _, loss = model(idx[i * m:(i + 1) * m], tgt[i * m:(i + 1) * m])
        (loss / k).backward()  # grads accumulate in .grad across backward calls
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.data, big[n], rtol=1e-10, atol=1e-13, err_msg=n)


# ================================================================ optimizer groups, dropout, training
def test_configure_optimizers_decays_matrices_only():
    model = tiny()
    opt = model.configure_optimizers(weight_decay=0.1, learning_rate=6e-4, betas=(0.9, 0.95))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert len(decay["params"]) == 2 + 2 * 4 and decay["lr"] == 6e-4 and decay["betas"] == (0.9, 0.95)


def test_dropout_is_active_in_training_only_and_seeded():
    model = tiny(dropout=0.2)
    idx, _ = batch(2)
    tg.manual_seed(1)
    a = model(idx)[0].data
    b = model(idx)[0].data
    assert not np.allclose(a, b)
    tg.manual_seed(1)
    np.testing.assert_array_equal(model(idx)[0].data, a)
    model.eval()
    np.testing.assert_array_equal(model(idx)[0].data, model(idx)[0].data)
    tg.manual_seed(1)
    model.train()
    with F.use_fused(False):  # the composed path draws the same masks in the same order
        np.testing.assert_allclose(model(idx)[0].data, a, rtol=1e-10, atol=1e-12)


def test_a_few_adamw_steps_overfit_a_batch():
    model = tiny(dtype=np.float32)
    opt = model.configure_optimizers(weight_decay=0.1, learning_rate=3e-3, betas=(0.9, 0.99))
    idx, tgt = batch(4)
    losses = []
    for _ in range(40):
        _, loss = model(idx, tgt)
        opt.zero_grad()
        loss.backward()
        tg.optim.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.dtype == np.float32 for p in model.parameters())


def test_crop_block_size():
    model = tiny()
    model.crop_block_size(4)
    assert model.transformer.wpe.weight.shape == (4, 16) and model.config.block_size == 4
    assert model(np.zeros((1, 4), np.int64))[0].shape == (1, 4, V)
    with pytest.raises(ValueError, match="length 5: block size is only 4"):
        model(np.zeros((1, 5), np.int64))


def test_the_whole_model_check_catches_a_slightly_wrong_backward(monkeypatch):
    import importlib.util
    import pathlib
    from tinygrad_lm.ops import fused
    right = fused.FusedGeluTanh.backward
    monkeypatch.setattr(fused.FusedGeluTanh, "backward", lambda self, g: right(self, g) * 1.001)
    model = roughen(tiny())
    idx, tgt = batch(2)
    report = gradcheck(lambda *ps: model(idx, tgt)[1], dict(model.named_parameters()), max_elements=12,
                       n_directions=2, atol=1e-8, rtol=1e-5, raise_exception=False)
    assert not report.passed
    assert not next(r for r in report.inputs if r.name == "transformer.h.0.mlp.c_fc.weight").passed
    # and the example script exits non-zero
    path = pathlib.Path(__file__).parent.parent / "examples" / "gradcheck_gpt.py"
    spec = importlib.util.spec_from_file_location("gradcheck_gpt", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.main(["--impl", "fused", "--max-elements", "4", "--directions", "1"]) == 1
