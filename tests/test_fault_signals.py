"""Fault suite: SIGTERM and Ctrl-C save a checkpoint.

The cases are in tests/reliability_cases.py (class "11."); each one is run here, checked
against its expectations and against its row in docs/reliability.md.
"""
import pytest

from reliability_cases import cases, check_case


@pytest.mark.parametrize("case", cases("11."), ids=lambda c: c.id)
def test_case(case, tmp_path):
    check_case(case, tmp_path)
