"""Shared fixtures for the engine tests."""
import importlib

import numpy as np
import pytest

# the module itself: `tinygrad_lm.tensor` as an attribute is the tensor() function
_T = importlib.import_module("tinygrad_lm.tensor")


@pytest.fixture(autouse=True)
def _grad_mode_restored():
    """A test that fails inside `no_grad` must not leave recording off for the next one."""
    yield
    _T._grad_enabled = True


@pytest.fixture
def rng():
    return np.random.default_rng(0)
