"""A demo worker: takes jobs from the table until told to stop; on SIGTERM it finishes its job, then exits.

Run as `python -m ebb.demo.worker JOBS_DB`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from ebb.demo import jobs

stopping = False


def _stop(signum: int, frame: FrameType | None) -> None:
    global stopping
    stopping = True


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ebb.demo.worker JOBS_DB", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    name = f"replica {os.environ.get('EBB_REPLICA_INDEX', '?')} (pid {os.getpid()})"
    conn = jobs.connect(Path(argv[0]))
    done = 0
    print(f"{name} ready", flush=True)
    while not stopping:
        job = jobs.claim(conn, name)
        if job is None:
            time.sleep(0.1)
            continue
        job_id, work_ms = job
        time.sleep(work_ms / 1000)  # the "work"; a SIGTERM meanwhile lets it finish
        jobs.finish(conn, job_id)
        done += 1
    print(f"{name} stopping: finished its last job, {done} done", flush=True)
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
