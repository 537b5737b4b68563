"""Fault suite: bad inputs to fine-tuning (train --init-from, JSONL examples) and to dpo
(malformed, incomplete or empty pairs, a checkpoint that is missing or not made by train).

The cases are in tests/reliability_cases.py (class "12."); each one is run here, checked
against its expectations and against its row in docs/reliability.md.
"""
import pytest

from reliability_cases import cases, check_case


@pytest.mark.parametrize("case", cases("12."), ids=lambda c: c.id)
def test_case(case, tmp_path):
    check_case(case, tmp_path)
