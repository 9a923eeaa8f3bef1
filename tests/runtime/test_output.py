"""ebb's own output: a reader who stops reading costs dropped lines (counted, then announced), never a block."""

from __future__ import annotations

import os
import re
import time

from ebb.runtime.output import BoundedWriter


def test_writes_never_block_on_a_full_pipe_and_drops_are_announced() -> None:
    read_end, write_end = os.pipe()
    writer = BoundedWriter(write_end, max_bytes=4096)
    try:
        line = "x" * 99 + "\n"
        started = time.monotonic()
        for _ in range(5000):  # 500 KB into a 64 KiB pipe nobody reads
            writer.write(line)
        assert time.monotonic() - started < 5.0  # a blocking write would never return at all
        assert writer.dropped_total > 0
        dropped = writer.dropped_total
        received = bytearray()
        os.set_blocking(read_end, False)
        deadline = time.monotonic() + 10
        writer.write("after\n")
        while b"after\n" not in received and time.monotonic() < deadline:
            try:
                received += os.read(read_end, 65536)
            except BlockingIOError:
                time.sleep(0.01)
        writer.write("last\n")
        while b"last\n" not in received and time.monotonic() < deadline:
            try:
                received += os.read(read_end, 65536)
            except BlockingIOError:
                time.sleep(0.01)
        text = received.decode()
        notices = re.findall(r"ebb: (\d+) line\(s\) of output dropped: stdout was not being read\n", text)
        assert sum(int(n) for n in notices) == dropped  # every dropped line is accounted for
        assert text.endswith("last\n")
        assert writer.drain(5.0)
    finally:
        os.close(read_end)
        os.close(write_end)
