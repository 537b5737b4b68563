"""Devices: the CPU/GPU seam. The "cuda" cases run on the real GPU where one is usable, and on the
numpy-backed cupy API stand-in (tests/cupy_standin; test id "cuda-standin") elsewhere: there they
check that the GPU code paths use cupy's API correctly, not GPU numerics."""
import numpy as np
import pytest

import tinygrad_lm as tg
from tinygrad_lm import backend
from tinygrad_lm.backend import DeviceError
from tinygrad_lm.models.gpt import GPT, GPTConfig



def test_unknown_device_is_a_clear_error():
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        tg.zeros(2, device="tpu")
    with pytest.raises(DeviceError, match="cuda:x"):
        tg.zeros(2, device="cuda:x")


@pytest.mark.skipif(backend.cuda_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_says_how_to_install_cupy():
    for make in (lambda: tg.zeros(2, device="cuda"), lambda: tg.ones(2).to("cuda"), lambda: tg.ones(2).cuda()):
        with pytest.raises(DeviceError) as e:
            make()
        msg = str(e.value)
        assert "'cuda" in msg and "cupy-cuda12x" in msg and "nvidia-smi" in msg


def test_cpu_moves_are_no_ops_and_keep_parameters(device):
    model = GPT(GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=1, n_embd=8))
    params = list(model.parameters())
    assert model.to(device) is model
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    assert all(p.device == backend.canonical_device(device) for p in model.parameters())
    x = tg.randn(3, device=device)
    assert x.to(device) is x


def test_every_constructor_takes_device(device):
    dev = backend.canonical_device(device)
    made = [tg.zeros(2, device=device), tg.ones(2, device=device), tg.full((2,), 3.0, device=device),
            tg.arange(3, device=device), tg.eye(2, device=device), tg.rand(2, device=device),
            tg.randn(2, device=device), tg.empty(2, device=device), tg.tensor([1.0], device=device),
            tg.zeros_like(tg.ones(2), device=device), tg.randint(0, 5, (2,), device=device)]
    assert all(t.device == dev for t in made)


def test_same_seed_gives_the_same_numbers_on_every_device(device):
    tg.manual_seed(3)
    a = tg.randn(4, 5).numpy()
    tg.manual_seed(3)
    b = tg.randn(4, 5, device=device).cpu().numpy()
    np.testing.assert_array_equal(a, b)


def test_moving_between_devices_is_differentiable(cuda):
    x = tg.randn(3, 4, requires_grad=True)
    y = (x.cuda() * 2).sum()
    assert y.device == "cuda:0"
    y.backward()
    assert x.grad.device == "cpu"
    np.testing.assert_allclose(x.grad.numpy(), 2.0)


def test_mixing_devices_names_both(cuda):
    with pytest.raises(DeviceError, match="cpu and cuda:0"):
        tg.ones(2) + tg.ones(2, device="cuda")


@pytest.mark.parametrize("dtype,rtol,atol", [(np.float32, 1e-3, 1e-6), (np.float64, 1e-9, 1e-12)])
def test_gpt_on_gpu_matches_cpu_logits_loss_and_every_gradient(cuda, dtype, rtol, atol):
    cfg = GPTConfig(vocab_size=23, block_size=16, n_layer=2, n_head=2, n_embd=32, bias=True)
    tg.manual_seed(0)
    cpu = GPT(cfg).to(dtype)
    tg.manual_seed(0)
    gpu = GPT(cfg).to(dtype).to("cuda")
    rng = np.random.default_rng(0)
    idx, tgt = rng.integers(0, 23, (4, 16)), rng.integers(0, 23, (4, 16))
    lc, loss_c = cpu(tg.tensor(idx), tg.tensor(tgt))
    lg, loss_g = gpu(tg.tensor(idx, device="cuda"), tg.tensor(tgt, device="cuda"))
    loss_c.backward()
    loss_g.backward()
    assert lg.device == loss_g.device == "cuda:0"
    np.testing.assert_allclose(lg.detach().cpu().numpy(), lc.detach().numpy(), rtol=rtol * 0.1, atol=atol * 10)
    assert abs(loss_g.item() - loss_c.item()) < (1e-5 if dtype == np.float32 else 1e-12)
    gc, gg = dict(cpu.named_parameters()), dict(gpu.named_parameters())
    for name in gc:
        assert gg[name].grad.device == "cuda:0", name
        np.testing.assert_allclose(gg[name].grad.cpu().numpy(), gc[name].grad.numpy(), rtol=rtol, atol=atol, err_msg=name)


def test_optimizer_state_follows_its_parameters_to_the_gpu(cuda):
    model = GPT(GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=1, n_embd=8)).to("cuda")
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    _, loss = model(tg.randint(0, 7, (2, 4), device="cuda"), tg.randint(0, 7, (2, 4), device="cuda"))
    loss.backward()
    opt.step()
    params = list(model.parameters())
    # the live state, not state_dict() (which copies every array to numpy whatever the device)
    for p in params:
        st = opt.state[id(p)]
        arrays = {k: v for k, v in st.items() if k != "step"}
        assert set(arrays) == {"exp_avg", "exp_avg_sq"}, st.keys()
        for k, v in arrays.items():
            assert backend.device_of(v) == "cuda:0", k
            assert v.shape == p.shape and v.dtype == p.dtype, k
    # a checkpoint round trip: numpy arrays out, device arrays back in
    sd = opt.state_dict()
    assert all(isinstance(v, np.ndarray) for st in sd["state"].values() for k, v in st.items() if k != "step")
    opt2 = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    opt2.load_state_dict(sd)
    for p in params:
        for k in ("exp_avg", "exp_avg_sq"):
            v = opt2.state[id(p)][k]
            assert backend.device_of(v) == "cuda:0", k
            np.testing.assert_array_equal(backend.to_numpy(v), backend.to_numpy(opt.state[id(p)][k]))
