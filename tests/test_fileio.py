"""The one atomic file writer: all or nothing, never through a planted symlink."""
import os

import pytest

from tinygrad_lm.fileio import atomic_write


def test_write_then_replace_leaves_only_the_file(tmp_path):
    p = tmp_path / "loss.csv"
    atomic_write(p, "step,loss\n")
    atomic_write(p, b"step,loss\r\n0,4.2\r\n")
    assert p.read_bytes() == b"step,loss\r\n0,4.2\r\n"
    assert os.listdir(tmp_path) == ["loss.csv"]


def test_new_file_gets_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    atomic_write(tmp_path / "a.json", "{}")
    assert os.stat(tmp_path / "a.json").st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "meta.json"
    atomic_write(p, "old")
    with pytest.raises(TypeError):
        atomic_write(p, 12345)  # not bytes: fails inside the write, after the temporary exists
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["meta.json"]


def test_planted_symlinks_are_never_written_through(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(victim, out / "loss.csv.tmp")   # the name a naive writer would use
    os.symlink(victim, out / "loss.csv")       # and the target itself
    atomic_write(out / "loss.csv", "step\n")
    assert victim.read_text() == "precious"
    assert not os.path.islink(out / "loss.csv") and (out / "loss.csv").read_text() == "step\n"


def test_missing_folder_is_an_oserror_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        atomic_write(tmp_path / "nowhere" / "x", "data")
