"""The CLI's output contract: -o on every listing, tables that never fold, the documented error form,
ports validated, other tools' kinds skipped, missing ProcessGroups refused, secrets masked in -o yaml."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ebb.cli import app
from ebb.observe.events import EventLog, EventRecord
from ebb.observe.history import HistoryStore
from ebb.scaling.types import ScalingEvent
from tests.observe._records import SO, poll, trigger

runner = CliRunner()

LONG = "mailer-for-the-very-long-customer-notification-queue-in-production"

PROCESS_GROUP = """\
apiVersion: ebb.dev/v1alpha1
kind: ProcessGroup
metadata:
  name: mailer
spec:
  command: ["python", "mailer.py"]
"""

SCALED_OBJECT = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: mailer
spec:
  scaleTargetRef:
    apiVersion: ebb.dev/v1alpha1
    kind: ProcessGroup
    name: {target}
  triggers:
    - type: redis
      metadata:
        address: 127.0.0.1:6379
        listName: mail
        listLength: "{length}"
"""


def flat(text: str) -> str:
    """Text with rich's error box and its line breaks taken out."""
    return " ".join(text.replace("│", " ").split())


def write(tmp_path: Path, text: str, name: str = "app.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def so(target: str = "mailer", length: str = "20") -> str:
    return SCALED_OBJECT.format(target=target, length=length)


@pytest.fixture
def history(tmp_path: Path) -> Path:
    from ebb.observe.catalog import ObjectInfo
    from ebb.observe.metrics import TriggerInfo
    from ebb.runtime.observer import ObjectRef

    ref = ObjectRef("ScaledObject", "shop", LONG)
    now = time.time()
    store = HistoryStore(tmp_path / "history.db")
    store.register(
        [
            ObjectInfo(ref, f"ProcessGroup/{LONG}", 1, 9, (TriggerInfo(0, "redis", "backlog"),)),
            ObjectInfo(SO, "ProcessGroup/workers", 0, 3, (TriggerInfo(0, "redis", "jobs"),)),
        ]
    )
    store.write(
        [
            poll(ref, now - 60, (trigger(0, 17.0, active=True, name="backlog"),), current=1, desired=4),
            poll(SO, now - 30, (trigger(0, 0.0, name="jobs"),), current=0, desired=0),
        ]
    )
    store.close()
    log = EventLog(tmp_path / "events.jsonl")
    log.append(EventRecord.of(SO, ScalingEvent("SuccessfulRescale", "New size: 4 " + "because " * 30), now - 5))
    return tmp_path


# --- -o ---------------------------------------------------------------------------------------------------------


def test_status_json_and_yaml(history: Path) -> None:
    result = runner.invoke(app, ["status", "--history", str(history / "history.db"), "-o", "json"])
    assert result.exit_code == 0, result.output
    objects = json.loads(result.output)
    assert {o["name"] for o in objects} == {LONG, SO.name}
    [long] = [o for o in objects if o["name"] == LONG]
    assert (long["desired"], long["max_replicas"]) == (4, 9)
    result = runner.invoke(app, ["status", "--history", str(history / "history.db"), "-o", "yaml"])
    assert yaml.safe_load(result.output) == objects


def test_events_json_is_one_object_per_line_and_yaml_a_list(history: Path) -> None:
    result = runner.invoke(app, ["events", "--log", str(history / "events.jsonl"), "-o", "json"])
    assert result.exit_code == 0, result.output
    [event] = [json.loads(line) for line in result.output.splitlines()]
    assert (event["object"], event["reason"]) == (str(SO), "SuccessfulRescale")
    result = runner.invoke(app, ["events", "--log", str(history / "events.jsonl"), "-o", "yaml"])
    assert yaml.safe_load(result.output)[0]["reason"] == "SuccessfulRescale"


def test_metrics_json(tmp_path: Path) -> None:
    path = write(tmp_path, PROCESS_GROUP + "---\n" + so().replace("6379", "1"))  # nothing listens on port 1
    result = runner.invoke(app, ["metrics", str(path), "-o", "json", "--timeout", "2"])
    assert result.exit_code == 1
    [row] = json.loads(result.stdout)
    assert (row["object"], row["trigger"], row["target"], row["value"]) == (
        "ScaledObject default/mailer",
        "[0] redis",
        20,
        None,
    )
    assert "127.0.0.1:1" in row["error"]


@pytest.mark.parametrize("command", ["check", "metrics", "status", "events"])
def test_an_unknown_output_format_is_an_error(tmp_path: Path, command: str) -> None:
    args = [command, "-o", "xml"] + ([str(write(tmp_path, PROCESS_GROUP))] if command in ("check", "metrics") else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "'xml' is not one of 'table', 'json', 'yaml'" in flat(result.output)


# --- tables ------------------------------------------------------------------------------------------------------


def ebb(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ebb.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def test_status_in_a_pipe_keeps_each_row_on_one_line_so_grep_finds_it(history: Path) -> None:
    done = ebb("status", "--history", str(history / "history.db"), env={"COLUMNS": "60"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3  # header and two objects: nothing folded
    [row] = [line for line in lines if LONG in line]
    assert row.split()[:3] == ["shop", LONG, "ScaledObject"]
    assert "backlog=17/5" in row
    events = ebb("events", "--log", str(history / "events.jsonl"), env={"COLUMNS": "60"})
    assert len(events.stdout.splitlines()) == 2
    assert ("because " * 30).strip() in events.stdout


def test_status_on_a_terminal_truncates_with_an_ellipsis(history: Path) -> None:
    terminal = {"TTY_COMPATIBLE": "1", "NO_COLOR": "1"}
    for width in (80, 160):
        done = ebb("status", "--history", str(history / "history.db"), env={**terminal, "COLUMNS": str(width)})
        assert done.returncode == 0, done.stderr
        lines = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout).splitlines()
        assert len(lines) == 3, done.stdout
        assert all(len(line) <= width for line in lines), done.stdout
        assert "…" in done.stdout
        if width == 160:  # short columns keep their header and value whole; the long ones give way
            assert lines[0].split()[:4] == ["NAMESPACE", "NAME", "KIND", "TARGET"]
            assert lines[2].split()[:3] == ["shop", "orders", "ScaledObject"]


# --- errors -------------------------------------------------------------------------------------------------------


def test_errors_have_the_documented_form_naming_the_object_once(tmp_path: Path) -> None:
    path = write(tmp_path, PROCESS_GROUP + "---\n" + so(length="-3"))
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    [line] = [line for line in result.output.splitlines() if "listLength" in line]
    assert line == (
        f"✗ {path}:22: ScaledObject default/mailer: spec.triggers[0].metadata.listLength: "
        "Input should be greater than 0 (got -3)"
    )


@pytest.mark.parametrize("output", ["table", "json", "yaml"])
def test_check_exits_the_same_in_every_output_mode(tmp_path: Path, output: str) -> None:
    refused = write(tmp_path, PROCESS_GROUP + "---\n" + so(length="-3"))
    result = runner.invoke(app, ["check", "-o", output, str(refused)])
    assert result.exit_code == 1, result.output
    assert "spec.triggers[0].metadata.listLength" in result.stderr + result.stdout
    accepted = write(tmp_path, PROCESS_GROUP + "---\n" + so(), "ok.yaml")
    assert runner.invoke(app, ["check", "-o", output, str(accepted)]).exit_code == 0


def test_check_yaml_masks_secrets_unless_asked(tmp_path: Path) -> None:
    text = (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {password: s3cr3t-from-secret}\n---\n"
        + PROCESS_GROUP.replace(
            '  command: ["python", "mailer.py"]\n',
            '  command: ["python", "mailer.py"]\n  env:\n'
            "    - {name: REDIS_URL, value: 'redis://mailer:s3cr3t-in-url@127.0.0.1:6379/0'}\n"
            "    - {name: PG, value: 'host=db user=app password=s3cr3t-in-dsn dbname=app'}\n",
        )
        + "---\n"
        + so()
    )
    path = write(tmp_path, text)
    for output in ("yaml", "json"):
        result = runner.invoke(app, ["check", "-o", output, str(path)])
        assert result.exit_code == 0, result.output
        assert "s3cr3t" not in result.output
        assert "redis://mailer:***@127.0.0.1" in result.output and "password=***" in result.output
    shown = runner.invoke(app, ["check", "-o", "yaml", "--show-secrets", str(path)])
    assert "s3cr3t-from-secret" in shown.output and "s3cr3t-in-url" in shown.output


# --- ports -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["99999", "-5", "65536"])
def test_port_arguments_are_validated(tmp_path: Path, port: str) -> None:
    path = write(tmp_path, PROCESS_GROUP)
    for option, args in (("--metrics-port", ["run", str(path)]), ("--port", ["dashboard"])):
        result = runner.invoke(app, [*args, option, port])
        assert result.exit_code == 2, result.output
        bound = "greater than or equal to 0" if port.startswith("-") else "less than or equal to 65535"
        assert f"Invalid value for '{option}': Input should be {bound}" in flat(result.output)
        assert "Traceback" not in result.output and "OverflowError" not in result.output


def test_dashboard_on_a_busy_port_is_a_one_line_error(history: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = ebb("dashboard", "--history", str(history / "history.db"), "--port", str(port))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"cannot serve the dashboard on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


# --- kinds and targets -------------------------------------------------------------------------------------------

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: orders, namespace: shop}
spec:
  selector: {matchLabels: {app: orders}}
  template:
    metadata: {labels: {app: orders}}
    spec: {containers: [{name: orders, image: shop/orders:1}]}
---
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop}
spec: {ports: [{port: 80}]}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: orders, namespace: shop}
spec:
  scaleTargetRef: {name: orders}
  triggers:
    - type: redis
      metadata: {address: "redis.shop:6379", listName: orders, listLength: "10"}
"""


def test_a_kedas_users_file_with_a_deployment_passes_check(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", str(write(tmp_path, DEPLOYMENT))])
    assert result.exit_code == 0, result.output
    assert "✓ ScaledObject shop/orders" in result.output
    assert "note: skipped Deployment shop/orders: not a kind ebb reads" in result.stderr
    assert "note: skipped Service shop/orders" in result.stderr


def test_a_misspelled_kind_of_kedas_own_is_still_an_error(tmp_path: Path) -> None:
    text = DEPLOYMENT.replace("kind: ScaledObject", "kind: ScaledObjekt")
    result = runner.invoke(app, ["check", str(write(tmp_path, text))])
    assert result.exit_code == 1
    assert "unknown kind 'ScaledObjekt' (apiVersion keda.sh/v1alpha1); did you mean 'ScaledObject'?" in result.stderr


def test_a_scale_target_ref_to_a_missing_process_group_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, PROCESS_GROUP + "---\n" + so(target="mailr"))
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"{path}:16: ScaledObject default/mailer: spec.scaleTargetRef.name: "
        "no ProcessGroup 'mailr' in namespace 'default' in the loaded files (did you mean 'mailer'?)"
    )


def test_run_refuses_a_missing_process_group(tmp_path: Path) -> None:
    path = write(tmp_path, so(target="nowhere"))
    done = ebb("run", str(path), "--no-state", "--metrics-port", "0", cwd=tmp_path)
    assert done.returncode == 1
    assert "spec.scaleTargetRef.name: no ProcessGroup 'nowhere'" in done.stderr
    assert "nothing to run" in done.stderr


def test_run_reports_a_broken_trigger_in_the_documented_form(tmp_path: Path) -> None:
    group = PROCESS_GROUP.replace('["python", "mailer.py"]', '["sleep", "30"]')
    path = write(tmp_path, group + "---\n" + so(length="-3"))
    args = ["run", str(path), "--no-state", "--no-history", "--metrics-port", "0"]
    proc = subprocess.Popen([sys.executable, "-m", "ebb.cli", *args], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline and "listLength" not in line:
            line = proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert line.split(" ", 1)[1].strip() == (
        f"error {path}:22: ScaledObject default/mailer: spec.triggers[0].metadata.listLength: "
        "Input should be greater than 0 (got -3)"
    )
