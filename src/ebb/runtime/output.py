"""ebb's own standard output and error, written by a thread so that a reader who stops reading never blocks ebb.

When the terminal is paused (Ctrl-S) or stdout is a pipe nobody reads, `write()` queues up to a bound
and then drops, counting what it dropped; the next line that gets through is preceded by a notice with the
count. The event loop, signal handling and scaling never wait for the reader.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
from collections import deque
from typing import IO

#: How much output may wait for a slow reader before lines are dropped.
DEFAULT_MAX_BYTES = 1024 * 1024


class BoundedWriter(io.TextIOBase):
    """A text stream on a file descriptor; `write` never blocks (a daemon thread does the writing)."""

    def __init__(self, fd: int, max_bytes: int = DEFAULT_MAX_BYTES, name: str = "stdout") -> None:
        super().__init__()
        self._fd = fd
        self._name = name
        self.max_bytes = max_bytes
        self._queue: deque[bytes] = deque()
        self._size = 0
        self._dropped = 0
        #: Lines dropped in all, for tests and the final notice.
        self.dropped_total = 0
        self._broken = False
        self._busy = False
        self._cond = threading.Condition()
        self._tty = os.isatty(fd)
        self._thread = threading.Thread(target=self._run, name=f"ebb-{name}-writer", daemon=True)
        self._thread.start()

    @classmethod
    def around(cls, stream: IO[str], name: str) -> BoundedWriter | None:
        """A writer on `stream`'s file descriptor, or None when it has none (a test's captured stream)."""
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            return None
        with contextlib.suppress(Exception):
            stream.flush()
        return cls(fd, name=name)

    def isatty(self) -> bool:
        return self._tty

    def fileno(self) -> int:
        return self._fd

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        data = s.encode("utf-8", errors="replace")
        with self._cond:
            if self._broken:
                return len(s)
            if self._size + len(data) > self.max_bytes:
                lines = data.count(b"\n") or 1
                self._dropped += lines
                self.dropped_total += lines
                return len(s)
            self._queue.append(data)
            self._size += len(data)
            self._cond.notify()
        return len(s)

    def flush(self) -> None:
        """Never waits: the thread writes as fast as the reader reads."""

    def drain(self, within: float) -> bool:
        """Wait at most `within` seconds for queued output to be written; True if all of it was."""
        deadline = time.monotonic() + within
        with self._cond:
            while (self._queue or self._busy) and not self._broken:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                chunk = b"".join(self._queue)
                self._queue.clear()
                self._size = 0
                dropped, self._dropped = self._dropped, 0
                self._busy = True
            if dropped:
                notice = f"ebb: {dropped} line(s) of output dropped: {self._name} was not being read\n"
                chunk = notice.encode() + chunk
            ok = self._write_all(chunk)
            with self._cond:
                self._busy = False
                if not ok:
                    self._broken = True
                    self._queue.clear()
                self._cond.notify_all()
            if not ok:
                return

    def _write_all(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except InterruptedError:
                continue
            except OSError:  # the reader went away (EPIPE) or the descriptor was closed
                return False
            view = view[written:]
        return True
