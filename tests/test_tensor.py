"""Tensor: construction, dtypes, properties, conversion, factories, seeding."""
import numpy as np
import pytest

import tinygrad_lm as tg
from tinygrad_lm import backend, engine


# ================================================================ construction and dtypes
@pytest.mark.parametrize("data,dtype,shape", [
    (1.5, np.float32, ()), (3, np.int64, ()), (True, np.bool_, ()),
    ([1.0, 2.0], np.float32, (2,)), ([[1, 2], [3, 4]], np.int64, (2, 2)), ([[True], [False]], np.bool_, (2, 1)),
    ([1, 2.5], np.float32, (2,)), ([], np.float32, (0,)), (np.float64(2.0), np.float32, ()),
])
def test_python_data_gets_torch_default_dtypes(data, dtype, shape):
    t = tg.tensor(data)
    assert t.dtype == dtype and t.shape == shape
    np.testing.assert_array_equal(t.numpy(), np.asarray(data))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_])
def test_numpy_arrays_keep_their_dtype(dtype):
    a = np.arange(6).reshape(2, 3).astype(dtype)
    t = tg.Tensor(a)
    assert t.dtype == dtype and t.shape == (2, 3)
    np.testing.assert_array_equal(t.numpy(), a)


def test_dtype_argument_converts():
    assert tg.tensor([1, 2], dtype=tg.float64).dtype == np.float64
    assert tg.tensor(np.ones(2), dtype=np.float32).dtype == np.float32
    assert tg.tensor([1.7, -1.2], dtype=tg.int64).tolist() == [1, -1]
    assert tg.Tensor(tg.tensor([1.0]), dtype=tg.float64).dtype == np.float64


def test_float32_is_the_default_and_float64_is_available():
    assert tg.tensor(1.0).dtype == np.float32
    assert tg.zeros(2).dtype == tg.ones(2).dtype == tg.rand(2).dtype == tg.randn(2).dtype == tg.empty(2).dtype == np.float32
    assert tg.full((2,), 1.5).dtype == np.float32 and tg.eye(2).dtype == np.float32
    assert tg.arange(0.0, 1.0, 0.25).dtype == np.float32
    x = tg.randn(3, 4, dtype=tg.float64, requires_grad=True)
    out = (x.exp() @ x.T).logsumexp(-1).mean()
    assert out.dtype == np.float64
    out.backward()
    assert x.grad.dtype == np.float64


def test_unsupported_data_is_a_clear_error():
    with pytest.raises(TypeError, match="cannot make a tensor"):
        tg.tensor("abc")
    with pytest.raises(TypeError, match="cannot make a tensor"):
        tg.tensor(1 + 2j)


# ================================================================ properties and conversion
def test_properties():
    t = tg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    assert isinstance(t.data, np.ndarray) and t.grad is None and t.requires_grad
    assert t.shape == (2, 3) and t.ndim == 2 and t.dim() == 2 and t.numel() == 6 and len(t) == 2
    assert t.size() == (2, 3) and t.size(1) == 3 and t.device == "cpu" and t.is_leaf
    assert t.is_floating_point() and not tg.tensor([1]).is_floating_point()
    assert not (t * 2).is_leaf


def test_numpy_item_tolist():
    t = tg.tensor([[1.0, 2.0]])
    a = t.numpy()
    assert isinstance(a, np.ndarray) and a.tolist() == [[1.0, 2.0]]
    assert t.tolist() == [[1.0, 2.0]] and isinstance(t.tolist()[0][0], float)
    assert tg.tensor([[7.0]]).item() == 7.0 and isinstance(tg.tensor(3).item(), int)
    assert float(tg.tensor(2.5)) == 2.5 and int(tg.tensor(4)) == 4 and bool(tg.tensor(1.0))
    assert [10, 20, 30][tg.tensor(1)] == 20  # __index__
    with pytest.raises(ValueError, match="one-element"):
        t.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(t)
    with pytest.raises(RuntimeError, match="detach"):
        tg.tensor([1.0], requires_grad=True).numpy()
    assert tg.tensor([1.0], requires_grad=True).detach().numpy().tolist() == [1.0]
    np.testing.assert_array_equal(np.asarray(t), [[1.0, 2.0]])


def test_iteration_and_unbinding():
    rows = list(tg.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert [r.tolist() for r in rows] == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(TypeError, match="0-d"):
        iter(tg.tensor(1.0))


def test_repr():
    assert repr(tg.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(tg.tensor([1.0], requires_grad=True)) == "tensor([1.], requires_grad=True)"
    assert "grad_fn=<MulBackward>" in repr(tg.tensor([1.0], requires_grad=True) * 2)
    assert "dtype=float64" in repr(tg.tensor([1.0], dtype=tg.float64))
    assert repr(tg.tensor([1, 2])) == "tensor([1, 2])"
    assert "..." in repr(tg.zeros(1000))


def test_detach_is_a_leaf_without_grad():
    x = tg.tensor([1.0], requires_grad=True)
    d = (x * 2).detach()
    assert d.is_leaf and not d.requires_grad and d.grad is None


def test_to_and_dtype_shortcuts():
    x = tg.tensor([1.5, -2.5])
    assert x.double().dtype == np.float64 and x.half().dtype == np.float16 and x.float().dtype == np.float32
    assert x.long().tolist() == [1, -2] and x.int().dtype == np.int32 and x.bool().tolist() == [True, True]
    assert x.to(tg.float64).dtype == np.float64 and x.to("cpu") is x and x.cpu() is x
    assert x.type_as(tg.tensor([1], dtype=tg.int32)).dtype == np.int32
    assert x.to(np.float32) is x


def test_tensors_are_immutable():
    with pytest.raises(TypeError, match="immutable"):
        tg.tensor([1.0])[0] = 2.0


def test_numpy_arrays_and_scalars_on_the_left_defer_to_tensor_operators():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    for out in (np.array([1.0, 1.0]) + x, np.float64(2.0) * x, np.float32(2.0) - x):
        assert isinstance(out, tg.Tensor) and out.requires_grad


def test_bool_tensor_plus_python_int_is_int64_like_torch():
    t = tg.tensor([True, False]) + 2
    assert t.dtype == np.int64 and t.tolist() == [3, 2]


# ================================================================ factories
@pytest.mark.parametrize("factory", [tg.zeros, tg.ones, tg.empty, tg.rand, tg.randn])
def test_shape_factories_take_varargs_or_a_tuple_and_dtype(factory):
    assert factory(2, 3).shape == (2, 3) and factory((2, 3)).shape == (2, 3) and factory().shape == ()
    assert factory(4, dtype=tg.float64).dtype == np.float64
    t = factory(2, requires_grad=True)
    assert t.requires_grad and t.is_leaf
    assert factory(2, device="cpu").device == "cpu"


def test_factory_values():
    assert tg.zeros(2, 2).tolist() == [[0, 0], [0, 0]] and tg.ones(3).tolist() == [1, 1, 1]
    assert tg.full((2,), 7).dtype == np.int64 and tg.full((2,), True).dtype == np.bool_
    assert tg.full(3, 2.5).tolist() == [2.5, 2.5, 2.5]
    assert tg.full((1, 2), 3, dtype=tg.float64).tolist() == [[3.0, 3.0]]
    assert tg.arange(5).tolist() == [0, 1, 2, 3, 4] and tg.arange(5).dtype == np.int64
    assert tg.arange(2, 8, 3).tolist() == [2, 5] and tg.arange(3, dtype=tg.float64).dtype == np.float64
    assert tg.eye(2).tolist() == [[1, 0], [0, 1]] and tg.eye(2, 3).shape == (2, 3)
    r = tg.rand(1000)
    assert 0 <= r.numpy().min() and r.numpy().max() < 1
    n = tg.randn(20000)
    assert abs(n.numpy().mean()) < 0.05 and abs(n.numpy().std() - 1) < 0.05
    assert tg.randint(0, 3, (100,)).dtype == np.int64 and set(tg.randint(0, 3, (100,)).tolist()) <= {0, 1, 2}


@pytest.mark.parametrize("like", [tg.zeros_like, tg.ones_like, tg.empty_like, tg.rand_like, tg.randn_like])
def test_like_factories_copy_shape_dtype_device_and_accept_overrides(like):
    ref = tg.zeros(2, 3, dtype=tg.float64)
    t = like(ref)
    assert t.shape == (2, 3) and t.dtype == np.float64 and t.device == "cpu"
    assert like(ref, dtype=tg.float32).dtype == np.float32
    assert like(ref, dtype=np.dtype("float32")).dtype == np.float32
    assert like(ref, device="cpu").device == "cpu"
    assert like(tg.tensor(1.0)).shape == ()
    assert like(ref, requires_grad=True).requires_grad


def test_full_like():
    t = tg.full_like(tg.zeros(2, dtype=tg.float64), 4)
    assert t.dtype == np.float64 and t.tolist() == [4.0, 4.0]


def test_factories_reject_integer_requires_grad():
    with pytest.raises(TypeError, match="only floating point"):
        tg.zeros(2, dtype=tg.int64, requires_grad=True)
    with pytest.raises(TypeError, match="only floating point"):
        tg.arange(3, requires_grad=True)


def test_manual_seed_reproduces_random_tensors():
    tg.manual_seed(123)
    a, b, c = tg.rand(3), tg.randn(2, 2), tg.randint(0, 10, (5,))
    tg.manual_seed(123)
    assert tg.rand(3).tolist() == a.tolist() and tg.randn(2, 2).tolist() == b.tolist()
    assert tg.randint(0, 10, (5,)).tolist() == c.tolist()
    tg.manual_seed(124)
    assert tg.rand(3).tolist() != a.tolist()
    tg.manual_seed(7)
    state = engine.get_rng_state()
    x = tg.randn(4).tolist()
    engine.set_rng_state(state)
    assert tg.randn(4).tolist() == x
    assert tg.randn_like(tg.zeros(3, dtype=tg.float64)).dtype == np.float64


def test_cuda_without_a_gpu_is_a_clear_error():
    if backend.cuda_available():
        pytest.skip("a GPU is present")
    with pytest.raises(tg.DeviceError, match="no usable CUDA GPU.*nvidia-smi"):
        tg.zeros(2, device="cuda")
    with pytest.raises(tg.DeviceError, match="unknown device"):
        tg.zeros(2, device="tpu")
