"""The cupy API stand-in itself: it must behave as cupy 14.2 does where the package's GPU code
could go wrong (tests/cupy_standin/__init__.py lists what it models and what it does not),
and the package may use only names that the real cupy has."""
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import cupy_standin

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cp():
    real = {k: v for k, v in sys.modules.items() if k == "cupy" or k.startswith(("cupy.", "cupyx"))}
    with cupy_standin.installed() as mod:
        cupy_standin.counters.reset()
        yield mod
    assert {k: v for k, v in sys.modules.items() if k == "cupy" or k.startswith(("cupy.", "cupyx"))} == real


def test_the_manifest_comes_from_cupy_14_2():
    rec = cupy_standin.MANIFEST["recorded_from"]
    assert rec["cupy"].startswith("14.2."), rec
    mods = cupy_standin.MANIFEST["modules"]
    for name in ("cupy", "cupyx", "cupyx.scipy.special", "cupy.random", "cupy.cuda", "cupy.cuda.cublas"):
        assert len(mods[name]) > 5 and "__error__" not in mods[name], name


def test_its_arrays_refuse_to_become_numpy_arrays(cp):
    a = cp.arange(5.0)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(a)
    assert isinstance(a.get(), np.ndarray) and isinstance(cp.asnumpy(a), np.ndarray)
    assert not isinstance(a, np.ndarray)


def test_ufuncs_refuse_numpy_arrays_but_take_scalars(cp):
    a = cp.ones(3, dtype=np.float32)
    for bad in (lambda: a + np.ones(3), lambda: np.ones(3) * a, lambda: cp.maximum(a, np.zeros(3))):
        with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
            bad()
    assert (a * 2.0).dtype == np.float32 and (np.float32(2) * a).dtype == np.float32
    with pytest.raises(TypeError, match="Wrong arguments"):
        cp.add(a, a, where=a > 0)   # cupy ufuncs take out, dtype, casting only


def test_numpy_functions_dispatch_only_where_cupy_has_them(cp):
    a = cp.arange(4.0)
    assert type(np.where(a > 1, a, 0)) is cp.ndarray and type(np.exp(a)) is cp.ndarray
    with pytest.raises(TypeError):
        np.add.reduceat(a, [0, 2])   # a numpy list of indices: not a cupy operand


def test_reductions_and_scalar_indexing_give_0d_arrays(cp):
    a = cp.arange(6.0).reshape(2, 3)
    for r in (a.sum(), a.max(), a[1, 2], cp.vdot(a.ravel(), a.ravel()), a.mean()):
        assert type(r) is cp.ndarray and r.ndim == 0


def test_out_of_range_integer_indices_wrap_around_as_on_cupy(cp):
    a = cp.arange(5.0)
    np.testing.assert_array_equal(a[[0, 7]].get(), [0.0, 2.0])          # the example
    np.testing.assert_array_equal(a[cp.asarray([-6])].get(), [4.0])
    np.testing.assert_array_equal(cp.take_along_axis(a, cp.asarray([9]), 0).get(), [4.0])
    z = cp.zeros(3)
    cp.add.at(z, cp.asarray([0, 3, 4]), 1.0)
    np.testing.assert_array_equal(z.get(), [2.0, 1.0, 0.0])
    with pytest.raises(IndexError):
        a[5]   # a scalar index is checked by cupy


def test_only_cupys_names_and_parameters_exist(cp):
    with pytest.raises(AttributeError, match="not in cupy"):
        cp.definitely_not_a_cupy_function
    with pytest.raises(TypeError, match="unexpected keyword argument 'like'"):
        cp.zeros(3, like=None)
    with pytest.raises(AttributeError):
        cp.arange(3).writeable_flag
    with pytest.raises(NotImplementedError, match="not supported yet"):
        cp.exp.at(cp.zeros(2), cp.asarray([0]))     # cupy 14 has ufunc.at only for scatter ops
    with pytest.warns(DeprecationWarning, match="cupy.add.at"):
        import cupyx
        cupyx.scatter_add(cp.zeros(2), cp.asarray([0]), 1.0)


def test_host_syncs_and_copies_are_counted(cp):
    c = cupy_standin.counters
    a = cp.asarray(np.ones(4, dtype=np.float32))
    assert (c.h2d_copies, c.h2d_bytes, c.syncs) == (1, 16, 0)
    s = a.sum()
    float(s), s.item(), bool(s > 0), int(s), a.get(), a.tolist()
    assert c.syncs == 6 and c.d2h_bytes == 4 + 4 + 1 + 4 + 16 + 16
    assert set(c.sync_kinds) == {"float", "item", "bool", "int", "get", "tolist"}
    cp.cuda.Device(0).synchronize()
    assert c.explicit_syncs == 1 and c.syncs == 6


def test_custom_kernels_are_counted_and_need_a_numpy_twin(cp):
    k = cp.ElementwiseKernel("T x", "T y", "y = x * 2", "standin_test_double")
    with pytest.raises(NotImplementedError, match="register a numpy twin"):
        k(cp.ones(2))
    cupy_standin.register_kernel("standin_test_double", lambda x: x * 2)
    np.testing.assert_array_equal(k(cp.ones(2)).get(), [2.0, 2.0])
    assert cupy_standin.counters.launch_kinds["kernel:standin_test_double"] == 2


# ================================================================ the package against the manifest
def _names_used_on_the_array_module():
    """Every `xp.NAME` / `_xp(...).NAME` / `array_module(...).NAME` in the package's source."""
    pat = re.compile(r"(?:\bxp|_xp\([^()]*\)|array_module\([^()]*\)|xp_for\([^()]*\))\.([A-Za-z_]\w*)")
    used = {}
    for f in sorted((ROOT / "tinygrad_lm").rglob("*.py")):
        for m in pat.finditer(f.read_text()):
            used.setdefault(m.group(1), f.relative_to(ROOT).as_posix())
    return used


def test_every_array_module_name_the_package_uses_exists_in_cupy():
    """Code paths no test runs on the GPU still must not call what cupy lacks (numpy has
    e.g. add.reduceat with a list, r_, errstate; cupy does not have all of them)."""
    cupy_names = cupy_standin.MANIFEST["modules"]["cupy"]
    used = _names_used_on_the_array_module()
    assert len(used) > 30
    missing = {n: f for n, f in used.items() if n not in cupy_names}
    assert not missing, f"names used on the array module that cupy {cupy_standin.CUPY_VERSION} lacks: {missing}"
