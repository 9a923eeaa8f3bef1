"""Stop the workers a previous ebb left running (it was killed before it could stop them).

Only processes that provably belong to that ebb are touched: a recorded worker whose pid *and* kernel
start time match, or a process (a worker's child, even one that left the worker's process group) whose
environment carries the previous run's id. A pid reused by an unrelated process is never signalled.
"""

from __future__ import annotations

import os
import signal

import psutil

from ebb.runtime.state import RunRecord
from ebb.targets._child import RUN_ID_ENV

#: Start times are compared with this tolerance (psutil derives them from clock ticks).
START_TIME_TOLERANCE = 0.05


def find_leftovers(previous: RunRecord) -> list[psutil.Process]:
    """Live processes that belong to the previous run (never this process)."""
    recorded = dict(previous.children)
    marker = f"{RUN_ID_ENV}={previous.run_id}"
    me = os.getpid()
    uid = os.getuid()
    found: list[psutil.Process] = []
    for proc in psutil.process_iter(["pid", "create_time", "uids", "status"]):
        try:
            info = proc.info
            if info["pid"] == me or info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if info["uids"] is None or info["uids"].real != uid:
                continue
            started = recorded.get(info["pid"])
            if started is not None and abs(float(started) - float(info["create_time"])) <= START_TIME_TOLERANCE:
                found.append(proc)
                continue
            if previous.run_id and _has_marker(proc, marker):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def _has_marker(proc: psutil.Process, marker: str) -> bool:
    try:
        with open(f"/proc/{proc.pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return marker.encode() in data.split(b"\0")


def stop_leftovers(previous: RunRecord, grace: float) -> list[int]:
    """SIGTERM what the previous run left, SIGKILL what is still alive after `grace`; the pids stopped."""
    procs = find_leftovers(previous)
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=1.0)
    return [p.pid for p in procs]
