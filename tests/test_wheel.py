"""`pip install ebb-autoscaler` then `ebb demo`, from a wheel built here, in a clean virtual environment."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT_VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)


def uv() -> str:
    found = ROOT / ".uv" / "bin" / "uv"
    if found.exists():
        return str(found)
    on_path = shutil.which("uv")
    if on_path is None:
        pytest.skip("no uv: `make lint` installs the pinned one into .uv/")
    return on_path


def run(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
def test_a_built_wheel_installs_by_name_and_runs_the_demo(tmp_path: Path) -> None:
    assert PROJECT_VERSION is not None
    dist = tmp_path / "dist"
    run(uv(), "build", "--wheel", "--out-dir", str(dist), str(ROOT), cwd=tmp_path)
    [wheel] = dist.glob("*.whl")
    assert wheel.name == f"ebb_autoscaler-{PROJECT_VERSION[1]}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in (
        "ebb/py.typed",
        "ebb/web/static/index.html",
        "ebb/web/static/dashboard.js",
        "ebb/web/static/vendor/uPlot.iife.min.js",
        "ebb/scalers/_proto/externalscaler.proto",
    ):
        assert data in names, data

    # A clean environment, with the dependency versions the lock pins (what `pip install ebb-autoscaler` resolves
    # to, made reproducible).
    venv = tmp_path / "venv"
    run(uv(), "venv", "--quiet", "--python", sys.executable, str(venv), cwd=tmp_path)
    constraints = tmp_path / "constraints.txt"
    exported = run(
        uv(), "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", "--quiet", cwd=ROOT
    ).stdout
    constraints.write_text(exported)
    python = venv / "bin" / "python"
    run(uv(), "pip", "install", "--quiet", "--python", str(python), "--constraint", str(constraints), str(wheel),
        cwd=tmp_path)  # fmt: skip

    where = run(str(python), "-c", "import ebb; print(ebb.__file__)", cwd=tmp_path).stdout
    assert str(venv) in where and str(ROOT) not in where
    ebb = venv / "bin" / "ebb"
    assert run(str(ebb), "version", cwd=tmp_path).stdout.strip() == f"ebb {PROJECT_VERSION[1]}"
    demo = run(str(ebb), "demo", "--quick", "--no-live", cwd=tmp_path, timeout=240)
    assert "scaled 0 → N → 0, queue drained" in demo.stdout, demo.stdout
