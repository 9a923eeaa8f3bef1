"""One child process in its own session, with its output delivered line by line and a graceful stop.

Shared by the process-group target and the local job runner. A custom subprocess protocol is used
instead of `asyncio.subprocess.Process` because `Process.wait()` only returns once every pipe is closed:
a grandchild that inherited stdout would then keep ebb from noticing that the worker itself exited.

On Linux every child gets a parent-death signal (SIGKILL) before it execs, so a worker never outlives an
ebb that dies for any reason, SIGKILL included; it keeps its own session and process group, which is what
a graceful stop signals. (Linux sends it when the *thread* that started the child ends: children are started
from the event loop's thread, which lives as long as ebb.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import resource
import shlex
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import cast

import psutil

from ebb.errors import TargetError

log = logging.getLogger("ebb.targets")

#: A line longer than this is cut into several, so one runaway writer cannot grow ebb's memory.
MAX_LINE = 64 * 1024
#: After the worker exits, how long its leftover output may take to arrive before the pipe is dropped.
DRAIN_TIMEOUT = 1.0
#: How long SIGKILLed leftovers of a group may take to disappear (their new parent, init, reaps them).
GROUP_EXIT_TIMEOUT = 1.0
#: How many of a child's last output lines (stdout and stderr share a pipe) are kept, to explain a crash.
OUTPUT_TAIL = 5
#: Each line kept in the tail is cut to this many characters.
OUTPUT_TAIL_WIDTH = 200
#: The environment variable every child gets: the run of ebb that started it, to recognise leftovers.
RUN_ID_ENV = "EBB_RUN_ID"

_PR_SET_PDEATHSIG = 1
_libc: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    # Loaded once, here: after fork only the call itself may run.
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec function: the child gets SIGKILL when ebb dies (and dies now if ebb is already gone)."""
    libc = _libc
    if libc is None:
        return None
    prctl = libc.prctl
    nofile = _original_nofile

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if nofile is not None:  # ebb raised its own limit, not the workers'
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
        if os.getppid() != parent:  # ebb died between fork and prctl
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


class _LineProtocol(asyncio.SubprocessProtocol):
    def __init__(self, on_line: Callable[[str], None]) -> None:
        loop = asyncio.get_running_loop()
        self._on_line = on_line
        self._buffer = bytearray()
        #: The last non-empty output lines (a crash's traceback is usually among them).
        self.output_tail: deque[str] = deque(maxlen=OUTPUT_TAIL)
        self.transport: asyncio.SubprocessTransport | None = None
        self.exited: asyncio.Future[int] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.SubprocessTransport subclasses; they have its methods.
        self.transport = cast(asyncio.SubprocessTransport, transport)

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        self._buffer += data.encode() if isinstance(data, str) else data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) >= MAX_LINE:
                    self._emit(bytes(self._buffer[:MAX_LINE]))
                    del self._buffer[:MAX_LINE]
                    continue
                return
            self._emit(bytes(self._buffer[:end]))
            del self._buffer[: end + 1]

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if self._buffer:
            self._emit(bytes(self._buffer))
            self._buffer.clear()

    def process_exited(self) -> None:
        assert self.transport is not None
        code = self.transport.get_returncode()
        if not self.exited.done():
            self.exited.set_result(code if code is not None else -1)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def _emit(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        if line.strip():
            self.output_tail.append(line[:OUTPUT_TAIL_WIDTH])
        try:
            self._on_line(line)
        except Exception:
            # A broken sink must not take the worker's supervision down with it.
            log.exception("output sink failed")


class Child:
    """A running child process. Signals go to its whole process group, as systemd's default kill mode does."""

    def __init__(self, transport: asyncio.SubprocessTransport, protocol: _LineProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self.pid: int = transport.get_pid()
        self.started_at = time.time()
        #: The kernel's start time of the process (psutil's create_time): with the pid, its identity.
        self.create_time: float | None = None
        with contextlib.suppress(psutil.Error):
            self.create_time = psutil.Process(self.pid).create_time()
        self.started_monotonic = time.monotonic()
        self.term_sent_at: float | None = None
        self.killed = False

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str | os.PathLike[str] | None,
        on_line: Callable[[str], None],
    ) -> Child:
        """Start `argv` in a new session so the terminal's Ctrl-C reaches ebb only.

        Raises OSError (missing executable, bad working directory) or ValueError (a NUL byte in an argument).
        """
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.subprocess_exec(
            lambda: _LineProtocol(on_line),
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # one pipe: one file descriptor per worker, and the order kept
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
        )
        return cls(transport, protocol)

    @property
    def output_tail(self) -> list[str]:
        """The child's last few non-empty output lines (stdout and stderr), oldest first."""
        return list(self._protocol.output_tail)

    @property
    def returncode(self) -> int | None:
        return self._protocol.exited.result() if self._protocol.exited.done() else None

    async def wait(self) -> int:
        """Wait for the process itself to exit (not for its pipes); negative codes are signals."""
        return await asyncio.shield(self._protocol.exited)

    def signal(self, sig: int) -> bool:
        """Send `sig` to the child's process group. False if nothing was left to signal."""
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def terminate(self) -> None:
        """Send SIGTERM once; the grace period counts from here."""
        if self.term_sent_at is None and self.returncode is None:
            self.term_sent_at = time.monotonic()
            self.signal(signal.SIGTERM)

    async def stop(self, grace: float) -> int:
        """SIGTERM, then SIGKILL if the child is still alive `grace` seconds after the SIGTERM."""
        if self.returncode is None:
            if grace <= 0:
                self.kill()
            else:
                self.terminate()
                assert self.term_sent_at is not None
                remaining = grace - (time.monotonic() - self.term_sent_at)
                try:
                    async with asyncio.timeout(max(remaining, 0.0)):
                        await self.wait()
                except TimeoutError:
                    self.kill()
        return await self.wait()

    def kill(self) -> None:
        if self.returncode is None:
            self.killed = True
        self.signal(signal.SIGKILL)

    async def reap(self) -> None:
        """After the child exited: kill what it left in its group, let its last output arrive, close pipes."""
        if self.signal(signal.SIGKILL):
            await self._group_gone()
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT):
                await asyncio.shield(self._protocol.closed)
        except TimeoutError:
            # Something outside the group (a daemonised grandchild) still holds the pipe.
            pass
        self._transport.close()

    async def _group_gone(self) -> None:
        """Wait (briefly) until killed group members have died, so that "stopped" means nothing is left.

        Dead members may stay zombies until init reaps them, which can be slow: they count as gone.
        """
        deadline = time.monotonic() + GROUP_EXIT_TIMEOUT
        # Polling: the kernel offers no notification for processes that are not our children.
        while time.monotonic() < deadline:
            if not _live_members(self.pid):
                return
            await asyncio.sleep(0.01)

    def kill_now(self) -> None:
        """Last resort when ebb itself is being torn down: no grace, no waiting."""
        self.signal(signal.SIGKILL)
        if self.returncode is not None:
            self._transport.close()


def _live_members(pgid: int) -> bool:
    # Only called after a SIGKILL hit leftovers, so scanning the process table stays rare.
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (OSError, psutil.Error):
            continue
    return False


def start_error(owner: str, argv: Sequence[str], cwd: str | os.PathLike[str] | None, exc: Exception) -> TargetError:
    """Name the owner, the command and the reason a spawn failed (missing executable, bad working dir...)."""
    reason = getattr(exc, "strerror", None) or str(exc)
    filename = getattr(exc, "filename", None)
    if filename is not None and cwd is not None and os.fspath(filename) == os.fspath(cwd):
        reason = f"working directory {os.fspath(cwd)!r}: {reason}"
    return TargetError(f"{owner}: cannot start {shlex.join(argv)}: {reason}")


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


_original_nofile: tuple[int, int] | None = None


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's open-file soft limit to its hard limit (a worker, a socket and a pipe each cost
    descriptors); children get the original limit back. Returns (old soft, new soft)."""
    global _original_nofile
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or wanted <= soft:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError):
        return soft, soft
    _original_nofile = (soft, hard)
    return soft, wanted


def use_pidfd_child_watcher() -> bool:
    """On Python 3.11 asyncio waits for each child in a thread of its own; a pidfd per child costs one file
    descriptor and no thread (Linux 5.3+). Python 3.12 does this by itself. True if installed."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # an older kernel, or a seccomp filter that refuses it
        return False
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
    return True
