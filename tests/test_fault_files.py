"""Fault suite: FIFOs, devices and huge sparse files as data, checkpoint and tokenizer files.

The cases are in tests/reliability_cases.py (class "4."); each one is run here, checked
against its expectations and against its row in docs/reliability.md.
"""
import pytest

from reliability_cases import cases, check_case


@pytest.mark.parametrize("case", cases("4."), ids=lambda c: c.id)
def test_case(case, tmp_path):
    check_case(case, tmp_path)


def test_reading_a_fifo_never_blocks(tmp_path):
    import os
    import threading
    from tinygrad_lm.fileio import SpecialFileError, read_regular
    os.mkfifo(tmp_path / "pipe")
    got = []

    def read():
        try:
            read_regular(tmp_path / "pipe")
        except SpecialFileError as e:
            got.append(e.kind)
    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(5)
    assert got == ["a FIFO (named pipe)"]


def test_a_file_over_the_limit_is_refused_before_reading(tmp_path):
    from tinygrad_lm.fileio import FileTooLargeError, read_regular
    p = tmp_path / "big"
    with open(p, "wb") as f:
        f.truncate(10**12)  # sparse: reading it would take forever
    with pytest.raises(FileTooLargeError) as e:
        read_regular(p, max_bytes=2**20)
    assert e.value.size == 10**12
    (tmp_path / "small").write_bytes(b"abc")
    assert read_regular(tmp_path / "small", max_bytes=3) == b"abc"
