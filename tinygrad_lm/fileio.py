"""Writing files so that no crash or failure leaves a half-written one: the one writer that
every file tinygrad_lm produces goes through (checkpoint files, loss.csv, loss.png, a saved
tokenizer).

`atomic_write(path, data)`:
  1. creates a new temporary file beside `path` (same folder, so the rename below stays on
     one filesystem) with O_CREAT | O_EXCL | O_NOFOLLOW: an existing file or a planted
     symlink of that name is never opened, and so never written through;
  2. writes the bytes, flushes them and fsyncs the file (on disk before it gets its name);
  3. renames it over `path` with os.replace, which is atomic on POSIX.
A reader sees the old file or the new one, never a mix. If any step fails (a full disk, a
signal), the temporary file is removed and `path` is as it was.

This module imports only the standard library, so every layer may use it (data/ included).
"""
from __future__ import annotations

import os
import secrets

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _create_temp_beside(path: str) -> tuple[int, str]:
    """Open a new, exclusively created temporary file next to `path` -> (fd, its path)."""
    folder, name = os.path.split(path)
    for _ in range(100):
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, _CREATE, 0o666), tmp  # 0o666 less the umask, as open() would give
        except FileExistsError:  # a name already taken (or planted): draw another
            continue
    raise FileExistsError(f"cannot create a temporary file beside {path}: 100 random names all exist")


def atomic_write(path, data: bytes | bytearray | memoryview | str) -> None:
    """Replace the file at `path` with `data` (a str is written as UTF-8) atomically."""
    path = os.fspath(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = _create_temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
