"""ebb's own output: a reader who stops reading costs dropped lines (counted, then announced), never a block."""

from __future__ import annotations

import os
import re
import time

from ebb.runtime.output import BoundedWriter


def _read_until(fd: int, received: bytearray, done: object, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not done() and time.monotonic() < deadline:  # type: ignore[operator]
        try:
            received += os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.01)


def test_writes_never_block_on_a_full_pipe_and_drops_are_announced() -> None:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    writer = BoundedWriter(write_end, max_bytes=4096)
    try:
        line = "x" * 99 + "\n"
        started = time.monotonic()
        for _ in range(5000):  # 500 KB into a 64 KiB pipe nobody reads
            writer.write(line)
        assert time.monotonic() - started < 5.0  # a blocking write would never return at all
        assert writer.dropped_total > 0
        received = bytearray()
        _read_until(read_end, received, lambda: writer.drain(0.0))  # the reader is back: the queue empties
        writer.write("last\n")
        _read_until(read_end, received, lambda: received.endswith(b"last\n"))
        text = received.decode()
        assert text.endswith("last\n")
        notices = re.findall(r"ebb: (\d+) line\(s\) of output dropped: stdout was not being read\n", text)
        assert notices and sum(int(n) for n in notices) == writer.dropped_total  # every dropped line announced
        lines = [x for x in text.splitlines() if x.startswith("x")]
        assert len(lines) + writer.dropped_total == 5000
    finally:
        os.close(read_end)
        os.close(write_end)
