"""ProcessGroupTarget against real worker processes (small Python scripts)."""

from __future__ import annotations

import itertools
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ebb.errors import TargetError
from ebb.targets.base import ScaleTarget
from ebb.targets.process import ProcessGroupTarget
from tests.targets._support import (
    FINISHES_ON_SIGTERM,
    IGNORES_SIGTERM,
    PY,
    SLEEPER,
    Recorder,
    alive,
    gone,
    wait_until,
)

MakeGroup = Callable[..., ProcessGroupTarget]


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
async def group(rec: Recorder) -> AsyncIterator[MakeGroup]:
    """Builds targets running `PY script`, with small timings; closes them all after the test."""
    made: list[ProcessGroupTarget] = []

    def make(script: str, *, name: str = "w", grace: float = 2.0, **kwargs: Any) -> ProcessGroupTarget:
        kwargs.setdefault("output", rec)
        kwargs.setdefault("backoff_initial", 0.05)
        kwargs.setdefault("backoff_max", 0.4)
        kwargs.setdefault("jitter", 0.0)  # exact delays; test_restarts_of_workers_failing_together_are_spread has it
        target = ProcessGroupTarget(name, PY, [script], termination_grace_period=grace, **kwargs)
        made.append(target)
        return target

    yield make
    for target in made:
        await target.close()


async def test_scale_0_3_1_0_keeps_the_lowest_indexes(group: MakeGroup) -> None:
    target = group(SLEEPER)
    assert await target.get_replicas() == 0
    assert target.ready_replicas() == 0

    await target.set_replicas(3)
    status = target.status()
    assert [s.name for s in status] == ["w-0", "w-1", "w-2"]
    assert [s.state for s in status] == ["running"] * 3
    assert all(s.started_at is not None and s.restarts == 0 for s in status)
    pids = {s.name: s.pid for s in status}
    assert target.pids() == [pids["w-0"], pids["w-1"], pids["w-2"]]
    assert all(pid is not None and alive(pid) for pid in pids.values())
    assert await target.get_replicas() == 3
    assert target.ready_replicas() == 3

    await target.set_replicas(1)
    assert await target.get_replicas() == 1
    assert target.ready_replicas() == 1
    await wait_until(lambda: len(target.status()) == 1, "surplus workers to terminate")
    [kept] = target.status()
    assert (kept.name, kept.pid, kept.state) == ("w-0", pids["w-0"], "running")
    assert gone(pids["w-1"]) and gone(pids["w-2"])
    assert sorted(e.name for e in target.recent_exits()) == ["w-1", "w-2"]
    assert all(e.returncode == -signal.SIGTERM and not e.unexpected for e in target.recent_exits())

    await target.set_replicas(0)
    await wait_until(lambda: target.status() == [], "the last worker to terminate")
    assert gone(pids["w-0"])
    assert target.ready_replicas() == 0
    assert target.pids() == []


async def test_workers_get_their_identity_and_the_merged_environment(
    group: MakeGroup, rec: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EBB_TEST_INHERITED", "from-parent")
    monkeypatch.setenv("EBB_TEST_OVERRIDDEN", "parent")
    script = (
        "import os, time; e = os.environ; "
        "print(e['EBB_REPLICA_INDEX'], e['EBB_PROCESS_GROUP'], e['EBB_TEST_OWN'], "
        "e['EBB_TEST_INHERITED'], e['EBB_TEST_OVERRIDDEN'], os.getcwd()); time.sleep(60)"
    )
    target = group(
        script,
        name="env-test",
        env={"EBB_TEST_OWN": "own", "EBB_TEST_OVERRIDDEN": "spec"},
        working_dir=tmp_path,
    )
    await target.set_replicas(2)
    await wait_until(lambda: rec.of("env-test-0") and rec.of("env-test-1"), "both workers to print")
    cwd = tmp_path  # pytest gives it resolved, as os.getcwd() reports it
    for index in (0, 1):
        assert rec.of(f"env-test-{index}") == [f"{index} env-test own from-parent spec {cwd}"]


async def test_default_sink_prefixes_every_line_with_the_worker_name(
    group: MakeGroup, capsys: pytest.CaptureFixture[str]
) -> None:
    script = (
        "import sys, time; print('out line'); print('err line', file=sys.stderr); "
        "sys.stdout.write('first\\r\\nsecond\\nno newline'); sys.stdout.flush(); time.sleep(60)"
    )
    target = group(script, name="printer", output=None)
    await target.set_replicas(1)
    seen: list[str] = []

    def printed() -> bool:
        seen.append(capsys.readouterr().out)
        return "[printer-0] second\n" in "".join(seen)

    await wait_until(printed, "the worker's output")
    await target.close()
    seen.append(capsys.readouterr().out)
    out = "".join(seen).splitlines()
    assert out[:4] == [
        "[printer-0] out line",
        "[printer-0] err line",
        "[printer-0] first",
        "[printer-0] second",
    ]
    # The unterminated last line arrives when the pipe closes, then ebb's own line about the exit.
    assert out[4:] == ["[printer-0] no newline", "[printer-0] ebb: killed by SIGTERM"]


async def test_a_worker_that_finishes_within_the_grace_period_exits_cleanly(group: MakeGroup, rec: Recorder) -> None:
    target = group(FINISHES_ON_SIGTERM, grace=5.0)
    await target.set_replicas(1)
    await wait_until(lambda: "ready" in rec.of("w-0"), "the SIGTERM handler to be installed")
    [pid] = target.pids()

    await target.set_replicas(0)
    assert [s.state for s in target.status()] == ["terminating"]
    assert target.ready_replicas() == 0
    assert target.pids() == []
    await wait_until(lambda: target.status() == [], "the worker to finish")

    [end] = target.recent_exits()
    assert (end.pid, end.returncode, end.killed, end.unexpected, end.restart_delay) == (
        pid,
        0,
        False,
        False,
        None,
    )
    assert rec.of("w-0")[-2:] == ["finished job", "ebb: exited with code 0"]
    assert gone(pid)


async def test_workers_ignoring_sigterm_are_killed_after_the_grace_period_in_the_background(
    group: MakeGroup, rec: Recorder
) -> None:
    target = group(IGNORES_SIGTERM, grace=0.3)
    await target.set_replicas(3)
    await wait_until(lambda: all("ready" in rec.of(f"w-{i}") for i in range(3)), "three ready workers")
    pids = target.pids()

    await target.set_replicas(0)
    # set_replicas returned while all three are still being stopped, concurrently.
    assert [(s.name, s.state) for s in target.status()] == [(f"w-{i}", "terminating") for i in range(3)]
    assert all(alive(pid) for pid in pids)
    assert target.ready_replicas() == 0

    await target.close()  # waits for the terminations under way
    assert target.status() == []
    assert all(gone(pid) for pid in pids)
    ends = target.recent_exits()
    assert sorted(e.pid for e in ends) == sorted(pids)
    assert all(e.killed and e.returncode == -signal.SIGKILL and not e.unexpected for e in ends)
    assert "ebb: did not exit within the 0.3s grace period; killed by SIGKILL" in rec.of("w-2")


async def test_scale_up_during_termination_starts_new_workers_at_once(group: MakeGroup, rec: Recorder) -> None:
    target = group(IGNORES_SIGTERM, grace=0.5)
    await target.set_replicas(2)
    await wait_until(lambda: rec.count("w-1", "ready") == 1, "worker 1 to be ready")
    first, old = target.pids()

    await target.set_replicas(1)
    await target.set_replicas(2)
    status = target.status()
    running = [(s.name, s.state) for s in status if s.pid != old]
    assert running == [("w-0", "running"), ("w-1", "running")]
    [leaving] = [s for s in status if s.pid == old]
    assert (leaving.name, leaving.state) == ("w-1", "terminating")
    assert alive(old)
    assert target.ready_replicas() == 2
    assert target.pids()[0] == first and target.pids()[1] not in (first, old)

    await wait_until(lambda: gone(old) and len(target.status()) == 2, "the old worker 1 to be killed")
    [end] = target.recent_exits()
    assert (end.pid, end.killed, end.unexpected) == (old, True, False)
    assert [s.state for s in target.status()] == ["running", "running"]


@pytest.mark.parametrize("exit_code", [3, 0])
async def test_a_worker_that_exits_while_wanted_is_restarted_with_growing_backoff(
    group: MakeGroup, rec: Recorder, exit_code: int
) -> None:
    target = group(f"import sys; print('started'); sys.exit({exit_code})", backoff_max=0.2)
    await target.set_replicas(1)
    await wait_until(lambda: len(target.recent_exits()) >= 5, "five exits")

    ends = target.recent_exits()[:5]
    assert [e.restart_delay for e in ends] == pytest.approx([0.05, 0.1, 0.2, 0.2, 0.2])
    assert all(e.returncode == exit_code and e.unexpected and not e.killed for e in ends)
    assert len({e.pid for e in ends}) == 5
    for before, after in itertools.pairwise(ends):
        # each restart waited (at least about) the announced delay after the previous exit
        assert after.started_at - before.exited_at >= before.restart_delay * 0.8  # type: ignore[operator]
    assert target.status()[0].restarts >= 4
    assert rec.count("w-0", "started") >= 5
    assert f"ebb: exited with code {exit_code}; restarting in 0.1s" in rec.of("w-0")


@pytest.mark.parametrize(
    ("reset_after", "delays"),
    [(0.1, [0.05, 0.05, 0.05]), (60.0, [0.05, 0.1, 0.2])],
    ids=["ran-long-enough-resets", "short-runs-keep-doubling"],
)
async def test_backoff_resets_after_a_long_enough_run(
    group: MakeGroup, reset_after: float, delays: list[float]
) -> None:
    target = group("import time; time.sleep(0.15)", backoff_max=1.0, backoff_reset_after=reset_after)
    await target.set_replicas(1)
    await wait_until(lambda: len(target.recent_exits()) >= 3, "three exits")
    assert [e.restart_delay for e in target.recent_exits()[:3]] == pytest.approx(delays)


async def test_scaling_down_a_worker_in_backoff_removes_it_without_waiting(group: MakeGroup) -> None:
    target = group("import sys; sys.exit(1)", backoff_initial=30.0)
    await target.set_replicas(1)
    await wait_until(lambda: target.status()[0].state == "backoff", "the worker to crash")
    assert target.status()[0].restart_delay == 30.0
    await target.set_replicas(0)
    await wait_until(lambda: target.status() == [], "the worker to be removed")
    assert len(target.recent_exits()) == 1


def _not_executable(tmp_path: Path) -> tuple[list[str], Path | None, str]:
    script = tmp_path / "worker.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    return [str(script)], None, "Permission denied"


@pytest.mark.parametrize(
    "case",
    [
        lambda tmp: (["/nonexistent/ebb-worker", "--flag"], None, "No such file or directory"),
        _not_executable,
        lambda tmp: ([sys.executable, "-c", "pass"], tmp / "missing-dir", "working directory"),
        lambda tmp: ([sys.executable, "-c", "pass\x00"], None, "embedded null byte"),
    ],
    ids=["missing-executable", "not-executable", "missing-working-dir", "nul-in-argument"],
)
async def test_a_command_that_cannot_start_is_reported_and_retried_not_raised(
    rec: Recorder, tmp_path: Path, case: Callable[[Path], tuple[list[str], Path | None, str]]
) -> None:
    command, working_dir, reason = case(tmp_path)
    target = ProcessGroupTarget(
        "broken", command, working_dir=working_dir, output=rec, backoff_initial=0.02, backoff_max=0.05
    )
    try:
        await target.set_replicas(2)
        assert isinstance(target.last_error, TargetError)
        message = str(target.last_error)
        assert "ProcessGroup broken" in message
        assert shlex.join(command) in message
        assert reason in message
        assert target.ready_replicas() == 0
        assert target.pids() == []
        assert all(s.error is not None and "cannot start" in s.error for s in target.status())
        await wait_until(lambda: all(s.restarts >= 2 for s in target.status()), "start retries")
        assert any(
            line.startswith("ebb: ProcessGroup broken: worker broken-1: cannot start") for line in rec.of("broken-1")
        )
    finally:
        await target.close()
    assert target.status() == []


async def test_close_leaves_no_process_alive_including_grandchildren(group: MakeGroup, rec: Recorder) -> None:
    # The grandchild ignores SIGTERM and shares the worker's stdout: it must neither outlive close()
    # nor hold it up.
    grandchild = (
        "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('grandchild', os.getpid(), flush=True); time.sleep(60)"
    )
    script = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {grandchild!r}]); time.sleep(60)"
    target = group(script, grace=5.0)
    await target.set_replicas(2)

    def grandchildren() -> list[int]:
        return [int(line.split()[1]) for _, line in rec.lines if line.startswith("grandchild ")]

    await wait_until(lambda: len(grandchildren()) == 2, "both grandchildren to start")
    pids = target.pids() + grandchildren()
    assert len(pids) == 4 and all(alive(pid) for pid in pids)

    await target.close()
    assert target.status() == []
    assert [pid for pid in pids if not gone(pid)] == []


async def test_a_closed_target_refuses_to_scale_and_negative_counts_are_rejected(group: MakeGroup) -> None:
    target = group(SLEEPER)
    with pytest.raises(ValueError):
        await target.set_replicas(-1)
    await target.close()
    await target.close()  # idempotent
    with pytest.raises(TargetError, match="ProcessGroup w"):
        await target.set_replicas(1)


async def test_a_failing_sink_does_not_stop_supervision(group: MakeGroup) -> None:
    def broken_sink(name: str, line: str) -> None:
        raise RuntimeError("sink is broken")

    target = group("import sys; print('hello'); sys.exit(1)", output=broken_sink)
    await target.set_replicas(1)
    await wait_until(lambda: len(target.recent_exits()) >= 2, "a restart despite the sink")
    assert target.status()[0].restarts >= 1


def test_process_group_target_is_a_scale_target() -> None:
    assert isinstance(ProcessGroupTarget("w", PY, ["pass"]), ScaleTarget)


def test_an_empty_command_is_rejected() -> None:
    with pytest.raises(TargetError, match="ProcessGroup w: command is empty"):
        ProcessGroupTarget("w", [])
