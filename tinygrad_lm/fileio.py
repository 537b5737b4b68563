"""Files: the one atomic writer, the one guarded reader, and the lock that makes a training
run the only writer of its folder.

Writing so that no crash or failure leaves a half-written file: the one writer that every
file tinygrad_lm produces goes through (checkpoint files, loss.csv, loss.png, a saved
tokenizer).

`atomic_write(path, data)`:
  1. creates a new temporary file beside `path` (same folder, so the rename below stays on
     one filesystem) with O_CREAT | O_EXCL | O_NOFOLLOW: an existing file or a planted
     symlink of that name is never opened, and so never written through;
  2. writes the bytes, flushes them and fsyncs the file (on disk before it gets its name);
  3. renames it over `path` with os.replace, which is atomic on POSIX.
A reader sees the old file or the new one, never a mix. If any step fails (a full disk, a
signal), the temporary file is removed and `path` is as it was.

`read_regular(path, max_bytes)`: every file tinygrad_lm reads from a user (a text file, a
tokenizer, meta.json, safetensors) is opened with O_NONBLOCK and checked with fstat on the
open descriptor: a FIFO, a device such as /dev/zero, a socket or a directory is refused
before a byte is read (a FIFO would block forever, /dev/zero never ends), and so is a file
larger than the caller allows (a sparse 50 GB file is 50 GB to read). Checking the open
descriptor, not the name, leaves no window to swap the file between check and read.

`FolderLock(folder)`: an exclusive flock on `<folder>/train.lock` held for a whole run, the
holder's pid written inside; a second run into the same folder fails at once naming that
pid. The kernel drops the lock when the holder dies (even by kill -9); the file is removed
when the run ends.

This module imports only the standard library, so every layer may use it (data/ included).
"""
from __future__ import annotations

import os
import secrets
import stat

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


# ---------------------------------------------------------------- reading
class SpecialFileError(OSError):
    """A path names something other than a regular file (FIFO, device, socket, directory)."""

    def __init__(self, path: str, kind: str):
        super().__init__(f"{path} is {kind}, not a regular file")
        self.path, self.kind = path, kind


class FileTooLargeError(OSError):
    """A file is larger than its reader allows."""

    def __init__(self, path: str, size: int, limit: int):
        super().__init__(f"{path} is {size} bytes, more than the {limit} allowed")
        self.path, self.size, self.limit = path, size, limit


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path) -> tuple[int, int]:
    """Open `path` for reading -> (fd, size in bytes), refusing anything but a regular file
    (SpecialFileError) without blocking on a FIFO. The caller closes fd."""
    path = os.fspath(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SpecialFileError(path, _kind(st.st_mode))
        return fd, st.st_size
    except BaseException:
        os.close(fd)
        raise


def read_regular(path, max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file at `path`; SpecialFileError for anything else,
    FileTooLargeError (before reading) when it is larger than `max_bytes`."""
    path = os.fspath(path)
    fd, size = open_regular(path)
    with os.fdopen(fd, "rb") as f:
        if max_bytes is not None and size > max_bytes:
            raise FileTooLargeError(path, size, max_bytes)
        data = f.read(size)
        if len(data) != size or f.read(1):
            raise OSError(f"{path} changed while it was read")
    return data


# ---------------------------------------------------------------- one writer per folder
LOCK_NAME = "train.lock"


class FolderLockedError(OSError):
    """Another process holds the folder's lock."""

    def __init__(self, folder: str, pid: int | None):
        who = f"pid {pid}" if pid else "a process whose pid is not yet written"
        super().__init__(f"{folder} is in use by another tinygrad-lm run ({who})")
        self.folder, self.pid = folder, pid


class FolderLock:
    """`with FolderLock(folder):` -- exclusive flock on folder/train.lock for the block."""

    def __init__(self, folder):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, LOCK_NAME)
        self.fd = None

    def acquire(self) -> "FolderLock":
        try:
            import fcntl
        except ImportError:  # no flock on this platform: run unlocked
            return self
        for _ in range(100):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0),
                         0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise FolderLockedError(self.folder, pid) from None
            except BaseException:
                os.close(fd)
                raise
            # the previous holder removes the file when it is done: if it did so between our
            # open and our flock, we hold a lock on a file no one else can see; start again
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path, follow_symlinks=False).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                self.fd = fd
                return self
            os.close(fd)
        raise FolderLockedError(self.folder, None)

    @staticmethod
    def probe(folder) -> tuple[bool, int | None]:
        """(whether another process holds the lock of `folder`, its pid), creating nothing: a
        shared flock on an exclusively held file fails at once."""
        try:
            import fcntl
            fd = os.open(os.path.join(os.fspath(folder), LOCK_NAME),
                         os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except (ImportError, OSError):  # no lock file (or no flock): nobody holds it
            return False, None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False, None
        except BlockingIOError:
            return True, _read_pid(fd)
        finally:
            os.close(fd)  # (also drops the shared lock, if taken)

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)  # while still holding it: see acquire
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text.isdigit() else None
    except (OSError, UnicodeDecodeError):
        return None


def remove_stale_temporaries(folder) -> list[str]:
    """Remove the temporary files atomic_write left in `folder` when its process was killed
    (-9) mid-write: `.<name>.<12 hex>.tmp`. Only call it while holding the folder's lock."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        parts = name.rsplit(".", 2)
        if (name.startswith(".") and name.endswith(".tmp") and len(parts) == 3 and len(parts[1]) == 12
                and all(c in "0123456789abcdef" for c in parts[1])):
            path = os.path.join(folder, name)
            if os.path.islink(path) or os.path.isfile(path):
                os.unlink(path)
                removed.append(name)
    return removed
