"""examples/long-jobs under a real `ebb run`: a pool of long-job workers scales 0→N→0 and no job is interrupted.

The manifest is the shipped one with test-sized timings (a unique list, free ports, jobs of 4-7 s, a 3 s grace
period that is shorter than any job): SIGTERM reaching a worker in the middle of a job would cut it (the worker
finishes its job on SIGTERM, and is SIGKILLed at the end of the grace period). An idle worker exits within 1 s.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "long-jobs"
JOBS = 10


def free_base(span: int) -> int:
    import socket

    for _ in range(200):
        # Below the ephemeral range: there, clients' connections in TIME_WAIT block listening.
        base = random.randrange(20000, 32000)
        sockets = []
        try:
            for port in range(base, base + span):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise AssertionError("no free port range")


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    c = redis.Redis(decode_responses=True)
    try:
        c.ping()
    except redis.ConnectionError:
        pytest.skip("needs Redis on 127.0.0.1:6379")
    yield c
    c.close()


def manifest(tmp_path: Path, jobs: str) -> Path:
    docs: list[dict[str, Any]] = list(yaml.safe_load_all((EXAMPLE / "long-jobs.yaml").read_text()))
    group, so = docs
    spec = group["spec"]
    spec["command"] = [sys.executable, str(EXAMPLE / "worker.py")]
    spec["env"].append({"name": "JOB_LIST", "value": jobs})
    spec["ports"][0]["containerPort"] = free_base(10)
    spec["readinessProbe"]["periodSeconds"] = 0.5
    spec["busyProbe"]["periodSeconds"] = 0.5
    spec["terminationGracePeriodSeconds"] = 3
    so["spec"].update(pollingInterval=1, cooldownPeriod=2, maxReplicaCount=5)
    so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] = 0
    so["spec"]["triggers"][0]["metadata"]["listName"] = jobs
    path = tmp_path / "long-jobs.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


@pytest.mark.slow
def test_long_jobs_drain_with_no_interrupted_job(tmp_path: Path, client: redis.Redis) -> None:
    jobs = f"ebb-test-long-jobs-{uuid.uuid4().hex[:8]}"
    keys = [jobs, f"{jobs}:started", f"{jobs}:done"]
    path = manifest(tmp_path, jobs)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ebb.cli",
            "run",
            "--metrics-port",
            "0",
            "--state",
            str(tmp_path / "state.json"),
            str(path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    output = bytearray()

    def read() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(65536):
            output.extend(chunk)

    threading.Thread(target=read, daemon=True).start()
    try:
        enqueue = [sys.executable, str(EXAMPLE / "worker.py"), "--enqueue", str(JOBS), "--seed", "7"]
        subprocess.run(
            [*enqueue, "--shortest", "3", "--longest", "6"], env={**os.environ, "JOB_LIST": jobs}, check=True
        )
        deadline = time.monotonic() + 90
        while client.llen(f"{jobs}:done") < JOBS:
            assert proc.poll() is None, output.decode(errors="replace")
            assert b"did not exit within" not in output, output.decode(errors="replace")  # a job was cut
            assert time.monotonic() < deadline, output.decode(errors="replace")
            time.sleep(0.2)
        # Back to zero: every worker stopped.
        while "stopping" not in output.decode() or _running_workers(output) > 0:
            assert time.monotonic() < deadline, output.decode(errors="replace")
            time.sleep(0.2)
        text = output.decode(errors="replace")
        started = set(client.hkeys(f"{jobs}:started"))
        done = client.lrange(f"{jobs}:done", 0, -1)
        assert len(done) == JOBS and set(done) == started == {str(n) for n in range(JOBS)}, text
        # Busy workers were chosen for removal and waited for; none was killed.
        assert "busy worker(s)" in text, text
        assert "did not exit within" not in text, text
        report = subprocess.run(
            [sys.executable, str(EXAMPLE / "worker.py"), "--report"],
            env={**os.environ, "JOB_LIST": jobs},
            capture_output=True,
            text=True,
            check=True,
        )
        assert report.stdout.strip() == f"started {JOBS}, finished {JOBS}, in progress or interrupted 0"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        client.delete(*keys)


def _running_workers(output: bytearray) -> int:
    """Workers that said they wait for jobs minus those that said they stop (each line is one worker's)."""
    lines = output.decode(errors="replace").splitlines()
    waiting = sum(1 for line in lines if "waiting for jobs on" in line)
    stopping = sum(1 for line in lines if line.rstrip().endswith("stopping"))
    return waiting - stopping
