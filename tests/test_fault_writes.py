"""Fault suite: Planted symlinks, a full disk, kill -9 during saves.

The cases are in tests/reliability_cases.py (class "8."); each one is run here, checked
against its expectations and against its row in docs/reliability.md.
"""
import pytest

from reliability_cases import cases, check_case


@pytest.mark.parametrize("case", cases("8."), ids=lambda c: c.id)
def test_case(case, tmp_path):
    check_case(case, tmp_path)


def test_stale_temporaries_removed_are_only_atomic_writes_own(tmp_path):
    from tinygrad_lm.fileio import remove_stale_temporaries
    for name in (".loss.csv.0123456789ab.tmp", ".meta.json.abcdefabcdef.tmp", "notes.tmp", ".loss.csv.tmp",
                 ".x.0123456789ab.txt", "loss.csv"):
        (tmp_path / name).write_text("x")
    assert sorted(remove_stale_temporaries(tmp_path)) == [".loss.csv.0123456789ab.tmp", ".meta.json.abcdefabcdef.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".loss.csv.tmp", ".x.0123456789ab.txt", "loss.csv", "notes.tmp"]


def test_a_save_that_fails_mid_write_names_the_cause_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """The full-disk case without a tmpfs: the second file's write fails with ENOSPC."""
    import errno
    import os
    import numpy as np
    import tinygrad_lm.checkpoint as ck
    ck.save_checkpoint(tmp_path, {"w": np.ones(2, np.float32)}, {"m": np.zeros(2, np.float32)}, {"config": {}, "step": 1})
    real = ck.save_safetensors

    def full(path, *a, **k):
        if os.path.basename(path) == "optimizer.safetensors":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, *a, **k)
    monkeypatch.setattr(ck, "save_safetensors", full)
    with pytest.raises(ck.CheckpointError, match="No space left on device \\(the previous checkpoint is kept\\)"):
        ck.save_checkpoint(tmp_path, {"w": np.full(2, 2, np.float32)}, {"m": np.zeros(2, np.float32)},
                           {"config": {}, "step": 2})
    assert sorted(os.listdir(tmp_path)) == ["ckpt"] and ck.load_checkpoint(tmp_path)[2]["step"] == 1
