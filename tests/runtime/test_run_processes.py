"""`ebb run` as real processes: what happens to workers when ebb dies, is stopped twice, or cannot write.

Each worker carries a unique marker in its command line, so that the test counts exactly its own processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

EBB = [sys.executable, "-m", "ebb.cli", "run", "--metrics-port", "0"]


def _group(name: str, script: str, replicas: int, grace: int = 30) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: ebb.dev/v1alpha1
        kind: ProcessGroup
        metadata: {{name: {name}}}
        spec:
          command: [{sys.executable!r}, "-c", {script!r}]
          replicas: {replicas}
          terminationGracePeriodSeconds: {grace}
        """
    )


def _marked(marker: str) -> list[psutil.Process]:
    """Live processes whose command line holds `marker` (zombies excluded)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(proc.info["cmdline"] or ()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _wait_for(condition: object, what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _workers(marker: str, n: int) -> list[psutil.Process]:
    _wait_for(lambda: len(_marked(marker)) >= n, f"{n} workers")
    return _marked(marker)


class Ebb:
    """One `ebb run` subprocess; its output is read by a thread unless `read_output` is False."""

    def __init__(self, cwd: Path, manifest: Path, *args: str, read_output: bool = True) -> None:
        self.proc = subprocess.Popen(
            [*EBB, *args, str(manifest)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
        self.output = bytearray()
        self._reader: threading.Thread | None = None
        if read_output:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read1(65536):
            self.output += chunk

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def wait(self, within: float) -> int:
        return self.proc.wait(timeout=within)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def marker() -> Iterator[str]:
    mark = f"ebb-test-{uuid.uuid4().hex[:12]}"
    yield mark
    for proc in _marked(mark):  # never leave a stray process behind, whatever the test did
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Ebb]]:
    runs: list[Ebb] = []
    yield runs
    for run in runs:
        run.cleanup()


# A worker that ignores SIGTERM and writes nothing: the kind that outlived ebb.
def _stubborn(marker: str) -> str:
    return f"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); M = {marker!r}; time.sleep(3600)"


def test_workers_die_when_ebb_is_sigkilled(tmp_path: Path, marker: str, started: list[Ebb]) -> None:
    manifest = tmp_path / "group.yaml"
    manifest.write_text(_group("quiet", _stubborn(marker), replicas=3))
    ebb = Ebb(tmp_path, manifest)
    started.append(ebb)
    _workers(marker, 3)
    ebb.signal(signal.SIGKILL)
    ebb.wait(10)
    _wait_for(lambda: not _marked(marker), "the workers to die with ebb", within=10)


@pytest.mark.slow
def test_a_restart_stops_what_a_killed_ebb_left_and_never_doubles(
    tmp_path: Path, marker: str, started: list[Ebb]
) -> None:
    # Each worker starts a helper in its process group; the parent-death signal reaches the worker only,
    # so the helpers outlive a SIGKILLed ebb, as grandchildren do.
    # The helper's marker is only assembled at run time, so that it is in the helper's command line alone.
    worker = (
        f"import subprocess, sys, time; M = {marker!r}; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)', M + '-helper']); time.sleep(3600)"
    )
    manifest = tmp_path / "group.yaml"
    manifest.write_text(_group("pair", worker, replicas=2, grace=2))
    first = Ebb(tmp_path, manifest)
    started.append(first)
    _wait_for(lambda: len(_marked(f"{marker}-helper")) == 2, "two helpers")
    old_helpers = {p.pid for p in _marked(f"{marker}-helper")}
    _wait_for(lambda: (tmp_path / ".ebb/state.json").exists(), "the state file")
    state = json.loads((tmp_path / ".ebb/state.json").read_text())
    assert len(state["_ebb"]["children"]) == 2  # the workers, with their start times
    first.signal(signal.SIGKILL)
    first.wait(10)
    assert all(psutil.pid_exists(pid) for pid in old_helpers)  # left behind

    second = Ebb(tmp_path, manifest)
    started.append(second)
    _wait_for(
        lambda: len(helpers := _marked(f"{marker}-helper")) == 2 and not old_helpers & {p.pid for p in helpers},
        "the old helpers to be stopped and new ones to run",
    )
    time.sleep(0.5)
    assert len(_marked(f"{marker}-helper")) == 2  # two, not four
    events = (tmp_path / ".ebb/events.jsonl").read_text()
    assert "LeftoverWorkersStopped" in events
    second.signal(signal.SIGINT)
    assert second.wait(20) == 0


@pytest.mark.slow
def test_a_second_ebb_on_the_same_state_refuses_and_names_the_holder(
    tmp_path: Path, marker: str, started: list[Ebb]
) -> None:
    manifest = tmp_path / "group.yaml"
    manifest.write_text(_group("one", _stubborn(marker), replicas=1, grace=1))
    first = Ebb(tmp_path, manifest)
    started.append(first)
    _workers(marker, 1)
    second = Ebb(tmp_path, manifest)
    started.append(second)
    assert second.wait(20) == 1
    second._reader.join(5)  # type: ignore[union-attr]
    assert f"(pid {first.proc.pid})" in second.text
    assert "Traceback" not in second.text
    assert len(_marked(marker)) == 1  # the second started nothing

    other = Ebb(tmp_path, manifest, "--state", str(tmp_path / "other" / "state.json"))
    started.append(other)
    _wait_for(lambda: len(_marked(marker)) == 2, "the run with its own state to start its worker")
    for run in (first, other):
        run.signal(signal.SIGINT)
        run.signal(signal.SIGINT)
        run.wait(20)


@pytest.mark.slow
def test_a_second_ctrl_c_kills_workers_that_trap_sigterm(tmp_path: Path, marker: str, started: list[Ebb]) -> None:
    manifest = tmp_path / "group.yaml"
    manifest.write_text(_group("stubborn", _stubborn(marker), replicas=3, grace=600))
    ebb = Ebb(tmp_path, manifest)
    started.append(ebb)
    _workers(marker, 3)
    time.sleep(0.3)  # their SIG_IGN is in place
    ebb.signal(signal.SIGINT)
    _wait_for(lambda: "stopping" in ebb.text, "the first Ctrl-C to be taken")
    time.sleep(0.3)  # every worker is now terminating, and ignores it
    assert len(_marked(marker)) == 3
    ebb.signal(signal.SIGINT)
    assert ebb.wait(10) == 130
    _wait_for(lambda: not _marked(marker), "the terminating workers to be killed", within=5)


@pytest.mark.slow
def test_a_damaged_state_file_is_moved_aside_and_reported(tmp_path: Path, marker: str, started: list[Ebb]) -> None:
    (tmp_path / ".ebb").mkdir()
    (tmp_path / ".ebb/state.json").write_text('{"ScaledObject/default/x": {"replicas": "three"}}')
    manifest = tmp_path / "group.yaml"
    manifest.write_text(_group("one", _stubborn(marker), replicas=1, grace=1))
    ebb = Ebb(tmp_path, manifest)
    started.append(ebb)
    _workers(marker, 1)
    _wait_for(lambda: "StateFileDamaged" in ebb.text, "the damage to be reported")
    aside = list((tmp_path / ".ebb").glob("state.json.damaged-*"))
    assert len(aside) == 1 and "three" in aside[0].read_text()
    events = (tmp_path / ".ebb/events.jsonl").read_text()
    assert "StateFileDamaged" in events and "ScaledObject/default/x.replicas" in events
    ebb.signal(signal.SIGINT)
    ebb.signal(signal.SIGINT)
    ebb.wait(20)


def test_an_unusable_state_directory_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    manifest = tmp_path / "group.yaml"
    manifest.write_text(_group("one", "import time; time.sleep(60)", replicas=1))
    result = subprocess.run(
        [*EBB, "--state", str(blocker / "state.json"), str(manifest)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert f"state directory {blocker}" in result.stderr


def _chatty(marker: str) -> str:
    # As much output as the pipe takes, from several workers.
    return f"import sys; M = {marker!r}; line = 'x' * 200 + chr(10)\nwhile True: sys.stdout.write(line)"


@pytest.mark.slow
def test_stop_under_output_load_is_bounded_every_time(tmp_path: Path, marker: str, started: list[Ebb]) -> None:
    manifest = tmp_path / "group.yaml"
    manifest.write_text(_group("chatty", _chatty(marker), replicas=3, grace=5))
    for attempt in range(20):
        ebb = Ebb(tmp_path, manifest, "--no-history", "--no-state")
        started.append(ebb)
        _workers(marker, 3)
        _wait_for(lambda: len(ebb.output) > 100_000, "output to flow")  # noqa: B023
        ebb.signal(signal.SIGTERM)
        try:
            code = ebb.wait(20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"stop {attempt + 1} of 20 did not finish")
        assert code == 0, ebb.text[-2000:]
        _wait_for(lambda: not _marked(marker), "the workers to be gone", within=5)
        started.remove(ebb)


@pytest.mark.slow
def test_a_blocked_stdout_does_not_stop_signals_or_stopping(tmp_path: Path, marker: str, started: list[Ebb]) -> None:
    manifest = tmp_path / "group.yaml"
    manifest.write_text(_group("chatty", _chatty(marker), replicas=2, grace=5))
    ebb = Ebb(tmp_path, manifest, "--no-history", read_output=False)  # nobody reads the pipe
    started.append(ebb)
    _workers(marker, 2)
    time.sleep(2.0)  # the pipe (64 KiB) is long full
    ebb.signal(signal.SIGTERM)
    assert ebb.wait(20) == 0
    _wait_for(lambda: not _marked(marker), "the workers to be gone", within=5)


def test_sighup_stops_ebb_gracefully(tmp_path: Path, marker: str, started: list[Ebb]) -> None:
    # A closed terminal or SSH session: the workers get their SIGTERM and ebb exits cleanly.
    worker = (
        f"import signal, sys, time; M = {marker!r}; "
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(3600)"
    )
    manifest = tmp_path / "group.yaml"
    manifest.write_text(_group("hup", worker, replicas=2, grace=5))
    ebb = Ebb(tmp_path, manifest)
    started.append(ebb)
    _workers(marker, 2)
    time.sleep(0.3)
    ebb.signal(signal.SIGHUP)
    assert ebb.wait(20) == 0
    _wait_for(lambda: not _marked(marker), "the workers to be gone", within=5)
    assert "exited with code 0" in ebb.text


def test_the_grace_period_running_out_kills_a_worker_that_traps_sigterm(
    tmp_path: Path, marker: str, started: list[Ebb]
) -> None:
    manifest = tmp_path / "group.yaml"
    manifest.write_text(_group("stubborn", _stubborn(marker), replicas=2, grace=1))
    ebb = Ebb(tmp_path, manifest)
    started.append(ebb)
    _workers(marker, 2)
    time.sleep(0.3)
    ebb.signal(signal.SIGTERM)
    assert ebb.wait(20) == 0
    assert not _marked(marker)
    assert "did not exit within the 1s grace period; killed by SIGKILL" in ebb.text


def test_workers_cost_no_thread_each(tmp_path: Path, marker: str, started: list[Ebb]) -> None:
    # Python 3.11's asyncio waits for each child in a thread; ebb uses a pidfd per child instead.
    manifest = tmp_path / "group.yaml"
    manifest.write_text(_group("many", f"import time; M = {marker!r}; time.sleep(3600)", replicas=30, grace=1))
    ebb = Ebb(tmp_path, manifest, "--no-history", "--no-state")
    started.append(ebb)
    _workers(marker, 30)
    assert psutil.Process(ebb.proc.pid).num_threads() < 20
    ebb.signal(signal.SIGINT)
    assert ebb.wait(20) == 0
