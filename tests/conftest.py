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


# Every backend the same test runs on: "cuda" is skipped, with the reason, where cupy or a GPU is absent.
from tinygrad_lm.backend import cuda_available  # noqa: E402

GPU_REASON = "needs cupy and an NVIDIA GPU (pip install -e \".[cuda12]\" or \".[cuda13]\")"
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not cuda_available(), reason=GPU_REASON)])]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param
