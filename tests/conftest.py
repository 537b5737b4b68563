"""Shared fixtures for the engine tests."""
import numpy as np
import pytest

from tinygrad_lm import engine


@pytest.fixture(autouse=True)
def _grad_mode_restored():
    """A test that fails inside `no_grad` must not leave recording off for the next one."""
    yield
    engine._grad_enabled = True


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ================================================================ devices
# Every backend the same test runs on. "cuda" runs on the real cupy where a GPU is usable;
# elsewhere it runs on the numpy-backed cupy API stand-in (tests/cupy_standin): the test id
# says "cuda-standin" and the run ends with a line saying what that checks and what not.
from tinygrad_lm import backend as _backend  # noqa: E402
from tinygrad_lm.backend import cuda_available  # noqa: E402

import cupy_standin  # noqa: E402

REAL_GPU = cuda_available()
GPU_REASON = "needs cupy and an NVIDIA GPU (pip install -e \".[cuda12]\" or \".[cuda13]\")"
CUDA_ID = "cuda" if REAL_GPU else "cuda-standin"


def _cuda_param():
    marks = [pytest.mark.gpu] + ([] if REAL_GPU else [pytest.mark.cupy_standin])
    return pytest.param("cuda", id=CUDA_ID, marks=marks)


DEVICES = ["cpu", _cuda_param()]
CUDA = [_cuda_param()]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture(params=CUDA)
def cuda(request):
    """'cuda' for tests that need a GPU device: the real one, or the stand-in without one."""
    return request.param


def _reset_backend():
    # the backend imports cupy lazily, once: forget it so the next use finds the module now
    # in sys.modules (the stand-in, or the real cupy again)
    _backend._cupy = None
    _backend._cupy_error = None


_standin_ran = []


@pytest.fixture(autouse=True)
def _cupy_standin(request):
    """Tests marked cupy_standin (the "cuda" cases without a GPU) run with the stand-in
    installed as `cupy`; it is removed again afterwards, so CPU tests never see it."""
    if request.node.get_closest_marker("cupy_standin") is None:
        yield None
        return
    cupy_standin.install()
    cupy_standin.counters.reset()
    _reset_backend()
    _standin_ran.append(request.node.nodeid)
    try:
        yield cupy_standin
    finally:
        _backend.set_tf32(False)
        cupy_standin.uninstall()
        _reset_backend()


def pytest_configure(config):
    config.addinivalue_line("markers", "cupy_standin: a cuda case run on the numpy-backed cupy API stand-in")


def pytest_report_header(config):
    if REAL_GPU:
        return "cuda cases: real cupy on a GPU"
    return f"cuda cases: {cupy_standin.BANNER}"


def pytest_terminal_summary(terminalreporter):
    if _standin_ran:
        tr = terminalreporter
        tr.write_sep("=", "cupy API stand-in")
        tr.write_line(f"{len(_standin_ran)} {cupy_standin.BANNER}.")
        tr.write_line(f"Not modelled: {cupy_standin.NOT_MODELLED}.")
