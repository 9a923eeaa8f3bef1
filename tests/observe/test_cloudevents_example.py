"""examples/cloudevents.yaml under a real `ebb run` (a subprocess, as a user starts it), its events received by a
real CloudEvents receiver on loopback."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from tests.observe._receiver import receiver

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cloudevents.yaml"

#: A second file: a ScaledObject whose TriggerAuthentication does not exist cannot start (KEDA: CheckFailed).
BROKEN = """\
apiVersion: ebb.dev/v1alpha1
kind: ProcessGroup
metadata: {name: locked}
spec:
  command: ["sh", "-c", "sleep 60"]
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: locked}
spec:
  scaleTargetRef: {kind: ProcessGroup, name: locked}
  triggers:
    - type: cron
      authenticationRef: {name: nowhere}
      metadata: {timezone: UTC, start: "0 1 * * *", end: "0 2 * * *", desiredReplicas: "1"}
"""


async def test_the_example_sends_kedas_events_from_ebb_run(tmp_path: Path) -> None:
    async with receiver() as sink:
        manifest = tmp_path / "cloudevents.yaml"
        text = EXAMPLE.read_text()
        assert "uri: http://127.0.0.1:8080/" in text
        manifest.write_text(text.replace("uri: http://127.0.0.1:8080/", f"uri: {sink.url}"))
        (tmp_path / "broken.yaml").write_text(BROKEN)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ebb.cli", "run", "--no-state", "--no-history", "--metrics-port", "0",
            str(manifest), str(tmp_path / "broken.yaml"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
        try:
            events = await sink.wait_for(2, within=60)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, out.decode()
    by_type = {e.attributes["type"]: e for e in events}
    assert set(by_type) == {"keda.scaledobject.ready.v1", "keda.scaledobject.failed.v1"}, out.decode()
    ready = by_type["keda.scaledobject.ready.v1"]
    assert ready.attributes["source"] == "/laptop/ebb/keda"
    assert ready.attributes["subject"] == "/laptop/default/scaledobject/night-shift"
    assert ready.headers["ce-specversion"] == "1.0" and ready.headers["content-type"] == "application/json"
    assert ready.data == {"reason": "ScaledObjectReady", "message": "ScaledObject is ready for scaling"}
    failed = by_type["keda.scaledobject.failed.v1"]
    assert failed.attributes["subject"] == "/laptop/default/scaledobject/locked"
    assert failed.data["reason"] == "ScaledObjectCheckFailed"
    assert "TriggerAuthentication default/nowhere not found" in failed.data["message"]
