"""The README's quick start, word for word: its manifest is examples/mailer.yaml, passes `ebb check`, and the
worker it runs drains a real Redis list and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis
from typer.testing import CliRunner

from ebb.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def quick_start() -> str:
    section = README[README.index("## Quick start: local processes") : README.index("## Kubernetes")]
    [manifest] = [block for block in re.findall(r"```yaml\n(.*?)```", section, re.S) if "kind: ProcessGroup" in block]
    return str(manifest)


def quick_start_commands() -> list[list[str]]:
    section = README[README.index("## Quick start: local processes") : README.index("## Kubernetes")]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [shlex.split(line, comments=True) for block in blocks for line in block.splitlines() if line.strip()]


def test_the_readme_manifest_is_the_shipped_example_and_passes_check(tmp_path: Path) -> None:
    shipped = (ROOT / "examples" / "mailer.yaml").read_text()
    assert quick_start() == "".join(line + "\n" for line in shipped.splitlines() if not line.startswith("#"))
    path = tmp_path / "mailer.yaml"
    path.write_text(quick_start())
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "✓ ScaledObject default/mailer" in result.output
    assert "✓ ProcessGroup default/mailer: python3 examples/mailer.py" in result.output


def test_every_file_the_quick_start_names_exists() -> None:
    commands = quick_start_commands()
    named = {word for command in commands for word in command if word.startswith(("examples/", ".venv/"))}
    assert {"examples/mailer.yaml", "examples/mailer.py", ".venv/bin/activate"} <= named
    for word in named - {".venv/bin/activate", ".venv/bin/ebb"}:
        assert (ROOT / word).is_file(), word
    # The mailer walk-through, in order (the section's other examples name their own files).
    mailer = [c for c in commands if c[0] == "ebb" and "examples/mailer.yaml" in c]
    assert [c[1] for c in mailer] == ["check", "metrics", "run"]


def test_the_mailer_sends_queued_mail_and_stops_on_sigterm() -> None:
    queue = f"ebb-test-mail-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "MAIL_LIST": queue, "EBB_REPLICA_INDEX": "0"}
    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        sent = subprocess.run(
            [sys.executable, "examples/mailer.py", "--send", "3"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert sent.returncode == 0 and client.llen(queue) == 3
        worker = subprocess.Popen(
            [sys.executable, "examples/mailer.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 20
        while client.llen(queue) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=10)
        assert worker.returncode == 0
        assert [line for line in out.splitlines() if "sent" in line] == [f"worker 0 sent mail {n}" for n in (1, 2, 3)]
        assert out.splitlines()[-1] == "worker 0 stopping"
    finally:
        client.delete(queue)
        client.close()
