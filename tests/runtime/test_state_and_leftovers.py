"""The state file: validated on load, failed writes reported, and the record that finds a killed ebb's workers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil

from ebb.runtime.leftovers import find_leftovers
from ebb.runtime.lock import StateLock, StateLocked
from ebb.runtime.state import RunRecord, StateStore
from ebb.scaling.types import LifecycleState, MetricHealth
from ebb.targets.base import ChildRecord


def _store(path: Path) -> tuple[StateStore, list[tuple[str, str]]]:
    seen: list[tuple[str, str]] = []
    store = StateStore(path, on_problem=lambda reason, message: seen.append((reason, message)), run_id="r1")
    store.report_load_problems()
    return store, seen


def test_a_good_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store, _ = _store(path)
    life = LifecycleState(last_active_time=5.0, health={"s0": MetricHealth(2, "Failing")}, recommendations=[(1.0, 3)])
    store.save("ScaledObject/default/a", life, 3)
    store.children_source = lambda: [ChildRecord(123, 456.5)]
    store.flush()
    again, problems = _store(path)
    assert problems == []
    assert again.replicas("ScaledObject/default/a") == 3
    assert again.lifecycle("ScaledObject/default/a") == life
    assert again.previous_run == RunRecord(pid=again.previous_run.pid, run_id="r1", children=[(123, 456.5)])  # type: ignore[union-attr]


def test_wrong_types_are_named_and_the_file_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(
        json.dumps({"ScaledObject/default/a": {"lifecycle": {"health": {"s0": {"number_of_failures": "x"}}}}})
    )
    store, problems = _store(path)
    assert store.lifecycle("ScaledObject/default/a") is None
    [(reason, message)] = problems
    assert reason == "StateFileDamaged"
    assert str(path) in message and "ScaledObject/default/a.lifecycle.health.s0.number_of_failures" in message
    assert not path.exists() and len(list(tmp_path.glob("state.json.damaged-*"))) == 1


def test_unparsable_file_is_reported_not_silently_dropped(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"ScaledObject/default/a": ')
    _, problems = _store(path)
    assert problems and problems[0][0] == "StateFileDamaged" and "not valid state JSON" in problems[0][1]


def test_a_failed_write_is_reported_once_and_its_recovery(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    store, problems = _store(blocker / "state.json")  # its directory is a file: every write fails
    store.save("ScaledObject/default/a", LifecycleState(), 1)
    store.flush()
    store.save("ScaledObject/default/a", LifecycleState(), 2)
    store.flush()
    assert [r for r, _ in problems] == ["StateWriteFailed"]
    assert "cannot write the state file" in problems[0][1]
    blocker.unlink()
    store.flush()
    assert [r for r, _ in problems] == ["StateWriteFailed", "StateWriteRecovered"]
    assert json.loads((blocker / "state.json").read_text())["ScaledObject/default/a"]["replicas"] == 2


def test_a_reused_pid_is_never_taken_for_a_leftover() -> None:
    # A live process that is not ours: its pid recorded with another start time, no run id in its environment.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        started = psutil.Process(other.pid).create_time()
        stale = RunRecord(pid=1, run_id="previous-run", children=[(other.pid, started - 100.0)])
        assert find_leftovers(stale) == []
        exact = RunRecord(pid=1, run_id="previous-run", children=[(other.pid, started)])
        assert [p.pid for p in find_leftovers(exact)] == [other.pid]
    finally:
        other.kill()
        other.wait()


def test_a_leftover_is_found_by_the_run_id_in_its_environment() -> None:
    env = {"EBB_RUN_ID": "run-42", "PATH": "/usr/bin:/bin"}
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=env)
    try:
        time.sleep(0.1)
        assert [p.pid for p in find_leftovers(RunRecord(pid=1, run_id="run-42"))] == [child.pid]
        assert find_leftovers(RunRecord(pid=1, run_id="run-43")) == []
    finally:
        child.kill()
        child.wait()


def test_the_lock_names_its_holder_and_is_released(tmp_path: Path) -> None:
    holder = StateLock(tmp_path)
    holder.acquire()
    try:
        try:
            StateLock(tmp_path).acquire()
        except StateLocked as exc:
            assert exc.pid is not None and f"pid {exc.pid}" in str(exc)
        else:
            raise AssertionError("a second lock on the same directory was granted")
    finally:
        holder.release()
    with StateLock(tmp_path):
        pass


def test_ebb_raises_its_open_file_soft_limit_and_workers_get_the_original() -> None:
    code = (
        "import resource, subprocess, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))\n"
        "from ebb.targets._child import raise_open_file_limit, _die_with_parent\n"
        "import os\n"
        "print(raise_open_file_limit())\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
        "probe = 'import resource; print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])'\n"
        "out = subprocess.run([sys.executable, '-c', probe],"
        " preexec_fn=_die_with_parent(os.getpid()), capture_output=True, text=True).stdout.strip()\n"
        "print(out)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["(256,", "4096)", "4096", "256"]
