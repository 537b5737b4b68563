"""Bad input gets a clear error from our code, naming the op and the shapes or values at fault.

`raised_by_us` checks that the exception was raised in tinygrad_lm (not deep inside numpy)
and does not drag a numpy exception along as its context.
"""
import os

import numpy as np
import pytest

import tinygrad_lm as tg

PKG = os.path.dirname(tg.__file__)


def raised_by_us(excinfo, *needles):
    e = excinfo.value
    msg = str(e)
    for n in needles:
        assert n in msg, f"{n!r} not in error message {msg!r}"
    origin = str(excinfo.traceback[-1].path)
    assert origin.startswith(PKG), f"raised in {origin}, not in tinygrad_lm"
    assert e.__context__ is None or e.__suppress_context__, f"chained to {e.__context__!r}"
    return msg


# ================================================================ broadcasting
@pytest.mark.parametrize("name,fn", [
    ("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b),
    ("div", lambda a, b: a / b), ("pow", lambda a, b: a ** b), ("maximum", lambda a, b: a.maximum(b)),
    ("minimum", lambda a, b: a.minimum(b)), ("lt", lambda a, b: a < b), ("eq", lambda a, b: a == b),
    ("where", lambda a, b: tg.where(a > 0, a, b)), ("masked_fill", lambda a, b: a.masked_fill(b > 0, 0.0)),
])
def test_broadcast_mismatch_names_the_op_and_both_shapes(name, fn):
    a = tg.ones(2, 3, requires_grad=True)
    b = tg.ones(4, 1, 2)
    with pytest.raises(ValueError) as e:
        fn(a, b)
    raised_by_us(e, f"{name}:", "(2, 3)", "(4, 1, 2)", "cannot be broadcast")


def test_broadcast_mismatch_with_a_list_operand():
    with pytest.raises(ValueError) as e:
        tg.ones(3) + [1.0, 2.0]
    raised_by_us(e, "add:", "(3,)", "(2,)")


# ================================================================ matmul
@pytest.mark.parametrize("sa,sb,needles", [
    ((2, 3), (4, 5), ["matmul", "(2, 3)", "(4, 5)", "not aligned"]),
    ((3,), (4,), ["matmul", "(3,)", "(4,)"]),
    ((2, 2, 3), (3, 3, 4), ["matmul", "batch dims", "(2, 2, 3)", "(3, 3, 4)"]),
    ((), (3,), ["matmul", "at least 1 dim"]),
])
def test_matmul_shape_mismatch_names_both_shapes(sa, sb, needles):
    with pytest.raises(ValueError) as e:
        tg.zeros(*sa) @ tg.zeros(*sb)
    raised_by_us(e, *needles)


# ================================================================ grads on non-float tensors
@pytest.mark.parametrize("make", [
    lambda: tg.tensor([1, 2], requires_grad=True),
    lambda: tg.tensor([1, 2]).requires_grad_(),
    lambda: tg.zeros(2, dtype=tg.int64, requires_grad=True),
    lambda: tg.tensor([True], requires_grad=True),
])
def test_integer_and_bool_tensors_cannot_require_grad(make):
    with pytest.raises(TypeError) as e:
        make()
    raised_by_us(e, "requires_grad", "only floating point", "dtype")


# ================================================================ backward misuse
def test_backward_on_non_scalar_without_gradient():
    y = tg.ones(2, 3, requires_grad=True) * 2
    with pytest.raises(RuntimeError) as e:
        y.backward()
    raised_by_us(e, "backward", "one-element", "(2, 3)", "gradient=")


def test_backward_with_gradient_of_the_wrong_shape():
    y = tg.ones(2, 3, requires_grad=True) * 2
    with pytest.raises(ValueError) as e:
        y.backward(tg.ones(3, 2))
    raised_by_us(e, "backward", "(3, 2)", "(2, 3)")


def test_backward_on_a_tensor_without_grad():
    with pytest.raises(RuntimeError) as e:
        tg.ones(1).backward()
    raised_by_us(e, "backward", "does not require grad")


def test_second_backward_through_a_freed_graph():
    y = (tg.ones(2, requires_grad=True) * 3).sum()
    y.backward()
    with pytest.raises(RuntimeError) as e:
        y.backward()
    raised_by_us(e, "second time", "retain_graph=True")


# ================================================================ indexing
@pytest.mark.parametrize("index,needles", [
    (5, ["getitem", "out of bounds", "(3, 4)"]),
    ((0, -5), ["getitem", "out of bounds", "(3, 4)"]),
    ([0, 3], ["getitem", "out of bounds", "(3, 4)"]),
    (np.array([[1], [7]]), ["getitem", "out of bounds"]),
    ((0, 0, 0), ["getitem", "too many indices", "(3, 4)"]),
    (np.array([True, False]), ["getitem", "boolean mask of shape (2,)", "(3, 4)"]),
    (1.5, ["getitem"]),
])
def test_out_of_range_and_invalid_indices(index, needles):
    x = tg.zeros(3, 4, requires_grad=True)
    with pytest.raises(IndexError) as e:
        x[index]
    raised_by_us(e, *needles)


@pytest.mark.parametrize("fn,needles", [
    (lambda x: x.gather(1, tg.tensor([[0, 4]])), ["gather", "out of range", "size 4", "[0, 4]"]),
    (lambda x: tg.take_along_dim(x, tg.tensor([[-5]]), 1), ["take_along_dim", "out of range"]),
    (lambda x: x.index_select(0, tg.tensor([0, 3])), ["index_select", "out of range", "size 3", "(3, 4)"]),
    (lambda x: tg.embedding(x, tg.tensor([[1, 3]])), ["embedding", "out of range", "3 rows", "(3, 4)"]),
    (lambda x: tg.embedding(x, tg.tensor([-1])), ["embedding", "out of range"]),
    (lambda x: tg.one_hot(tg.tensor([0, 4]), 3), ["one_hot", "[0, 3)", "[0, 4]"]),
    (lambda x: x.sum(dim=2), ["sum", "dim 2", "2 dims"]),
    (lambda x: x.transpose(0, 3), ["transpose", "dim 3"]),
    (lambda x: x.argmax(dim=-3), ["argmax", "dim -3"]),
    (lambda x: x.unsqueeze(4), ["unsqueeze", "dim 4"]),
])
def test_other_out_of_range_errors_name_op_and_sizes(fn, needles):
    x = tg.zeros(3, 4, requires_grad=True)
    with pytest.raises(IndexError) as e:
        fn(x)
    raised_by_us(e, *needles)


# ================================================================ shape arguments
@pytest.mark.parametrize("fn,exc,needles", [
    (lambda x: x.reshape(5, 3), ValueError, ["reshape", "(5, 3)", "(3, 4)", "12 elements"]),
    (lambda x: x.reshape(-1, -1), ValueError, ["reshape", "only one dimension can be -1"]),
    (lambda x: x.permute(0, 0), ValueError, ["permute", "(0, 0)", "(3, 4)"]),
    (lambda x: x.permute(0, 5), ValueError, ["permute", "(0, 5)"]),
    (lambda x: x.permute(1, 0, 2), ValueError, ["permute", "(1, 0, 2)"]),
    (lambda x: x.expand(2, 4), ValueError, ["expand", "(3, 4)", "(2, 4)"]),
    (lambda x: x.expand(4), ValueError, ["expand", "less than"]),
    (lambda x: tg.cat([x, tg.zeros(2, 5)]), ValueError, ["cat", "(3, 4)", "(2, 5)"]),
    (lambda x: tg.cat([tg.zeros(()), tg.zeros(())]), ValueError, ["cat", "zero-dimensional"]),
    (lambda x: tg.stack([x, tg.zeros(4, 3)]), ValueError, ["stack", "(3, 4)", "(4, 3)"]),
    (lambda x: x.split([1, 1], dim=0), ValueError, ["split", "[1, 1]", "(3, 4)"]),
    (lambda x: x.split(0), ValueError, ["split", "positive"]),
    (lambda x: tg.pad(x, (1,)), ValueError, ["pad", "even length"]),
    (lambda x: tg.pad(x, (0, -5)), ValueError, ["pad", "negative size"]),
    (lambda x: x.gather(0, tg.tensor([0])), ValueError, ["gather", "1 dims", "2"]),
    (lambda x: x.gather(1, tg.zeros(4, 1, dtype=tg.int64)), ValueError, ["gather", "(4, 1)", "larger", "(3, 4)"]),
    (lambda x: tg.take_along_dim(x, tg.zeros(2, 1, dtype=tg.int64), 1), ValueError, ["take_along_dim", "(3,)", "(2,)"]),
    (lambda x: x.tril()[0].tril(), ValueError, ["tril", "at least 2 dims", "(4,)"]),
    (lambda x: x.flatten(1, 0), ValueError, ["flatten", "start_dim"]),
    (lambda x: x.clamp(), ValueError, ["clamp", "min and max"]),
    (lambda x: x.amax(dim=(0, 0)), ValueError, ["amax", "repeats"]),
    (lambda x: tg.zeros(0).amax(), ValueError, ["max", "empty", "(0,)"]),
    (lambda x: tg.zeros(0).argmax(), ValueError, ["argmax", "empty"]),
])
def test_bad_shape_arguments_name_op_and_shapes(fn, exc, needles):
    x = tg.zeros(3, 4, requires_grad=True)
    with pytest.raises(exc) as e:
        fn(x)
    raised_by_us(e, *needles)


@pytest.mark.parametrize("fn,needles", [
    (lambda x: tg.where(tg.tensor([1, 0, 1, 1]), x, 0.0), ["where", "bool", "int64"]),
    (lambda x: x.masked_fill(tg.tensor([1, 0, 1, 1]), 0.0), ["masked_fill", "bool", "int64"]),
    (lambda x: x[tg.tensor([0.5])], ["getitem", "integer or bool", "float32"]),
    (lambda x: x.index_select(0, tg.tensor([[0]])), ["index_select", "1-D integer"]),
    (lambda x: tg.embedding(x, tg.tensor([0.0])), ["embedding", "integers", "float32"]),
    (lambda x: tg.one_hot(tg.tensor([0.0])), ["one_hot", "integer"]),
    (lambda x: x.sum(dim=1.5), ["sum", "dim must be", "1.5"]),
    (lambda x: x.transpose(0, 1.0), ["transpose", "dim must be an int"]),
])
def test_wrong_dtypes_name_op_and_dtype(fn, needles):
    x = tg.zeros(3, 4, requires_grad=True)
    with pytest.raises((TypeError, IndexError)) as e:
        fn(x)
    raised_by_us(e, *needles)


def test_len_of_0d_tensor_and_numpy_of_grad_tensor():
    with pytest.raises(TypeError, match="0-d"):
        len(tg.tensor(1.0))
    with pytest.raises(RuntimeError, match="detach"):
        tg.ones(1, requires_grad=True).numpy()
