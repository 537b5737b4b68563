"""Fault suite: Two runs into one folder, and a run killed while holding it.

The cases are in tests/reliability_cases.py (class "3."); each one is run here, checked
against its expectations and against its row in docs/reliability.md.
"""
import pytest

from reliability_cases import cases, check_case


@pytest.mark.parametrize("case", cases("3."), ids=lambda c: c.id)
def test_case(case, tmp_path):
    check_case(case, tmp_path)


def test_the_lock_within_one_process(tmp_path):
    import os
    from tinygrad_lm.fileio import LOCK_NAME, FolderLock, FolderLockedError
    assert FolderLock.probe(tmp_path) == (False, None) and os.listdir(tmp_path) == []  # a probe creates nothing
    with FolderLock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
        assert FolderLock.probe(tmp_path) == (True, os.getpid())
        with pytest.raises(FolderLockedError, match=f"pid {os.getpid()}"):
            FolderLock(tmp_path).acquire()  # flock is per open file: a second lock in one process fails too
    assert os.listdir(tmp_path) == []  # removed when released
    assert FolderLock.probe(tmp_path) == (False, None)


def test_a_planted_lock_symlink_is_not_followed(tmp_path):
    import os
    from tinygrad_lm.fileio import LOCK_NAME, FolderLock
    victim = tmp_path / "victim"
    victim.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(victim, run / LOCK_NAME)
    with pytest.raises(OSError):
        FolderLock(run).acquire()
    assert victim.read_text() == "precious"
