"""One `ebb run` per state directory: an exclusive flock on `<state dir>/ebb.lock` holding the owner's pid.

The kernel drops the lock when the process dies, however it dies, so a stale lock file never blocks a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from ebb.errors import EbbError

LOCK_FILE = "ebb.lock"


class StateLocked(EbbError):
    """Another ebb holds the state directory."""

    def __init__(self, directory: Path, pid: int | None) -> None:
        holder = f"ebb (pid {pid})" if pid is not None else "another ebb"
        super().__init__(
            f"state directory {directory}: {holder} is already running with it; stop it, "
            "or give this run another --state"
        )
        self.pid = pid


class StateLock:
    """Held from `acquire()` until `release()` or process exit; the file descriptor is not inherited."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise StateLocked (naming the holder's pid); OSError if the directory is unusable."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StateLocked(self.directory, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
