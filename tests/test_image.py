"""`make image` builds the image the Helm chart runs by default, and says clearly when there is no engine."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def make_image(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "image", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_the_chart_runs_the_image_make_image_builds(tmp_path: Path) -> None:
    assert VERSION is not None
    calls = tmp_path / "calls"
    fake = tmp_path / "docker"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    done = make_image(f"DOCKER={fake}")
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == ["info", f"build -f deploy/Dockerfile -t ebb:{VERSION[1]} ."]
    chart = yaml.safe_load((ROOT / "deploy/helm/ebb/Chart.yaml").read_text())
    values = yaml.safe_load((ROOT / "deploy/helm/ebb/values.yaml").read_text())
    tag = values["image"]["tag"] or chart["appVersion"]
    assert f"{values['image']['repository']}:{tag}" == f"ebb:{VERSION[1]}"
    docs = (ROOT / "docs/kubernetes.md").read_text()
    assert "make image" in docs and f"kind load docker-image ebb:{VERSION[1]}" in docs


def test_without_an_engine_make_image_says_so(tmp_path: Path) -> None:
    missing = make_image(f"DOCKER={tmp_path / 'no-such-docker'}")
    assert missing.returncode != 0
    assert "is not installed; install Docker (or set DOCKER=podman)" in missing.stderr
    dead = tmp_path / "docker"
    dead.write_text("#!/bin/sh\nexit 1\n")
    dead.chmod(0o755)
    down = make_image(f"DOCKER={dead}")
    assert down.returncode != 0
    assert "no container engine answers" in down.stderr
    assert len(down.stderr.splitlines()) <= 2  # the message, and make's own line
