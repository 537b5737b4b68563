"""docs/reliability.md lists exactly the cases of tests/reliability_cases.py (each case's
row is compared with a fresh run by its tests/test_fault_*.py)."""
from reliability_cases import BY_ID, CLASSES, doc_rows


def test_the_table_has_a_row_for_every_case_and_no_other():
    rows = doc_rows()
    assert sorted(set(BY_ID) - set(rows)) == [], "missing rows: run python benchmarks/reliability_table.py"
    assert sorted(set(rows) - set(BY_ID)) == [], "stale rows: run python benchmarks/reliability_table.py"


def test_every_class_of_the_issue_has_cases():
    assert [k.split(".")[0] for k in CLASSES] == [str(i) for i in range(1, 13)]
