"""`ebb metrics` and `ebb check` against a real Redis list (127.0.0.1:6379) and a SQLite file."""

from __future__ import annotations

import base64
import re
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from ebb.cli import app

runner = CliRunner()
#: Wide enough that no table cell wraps.
WIDE = {"COLUMNS": "400"}


@pytest.fixture
def redis_list() -> Iterator[str]:
    """A list of 17 items under a key of this test's own."""
    key = f"ebb-test-cli-{uuid.uuid4().hex[:12]}"
    client = redis.Redis(host="127.0.0.1", port=6379)
    client.rpush(key, *range(17))
    yield key
    client.delete(key)
    client.close()


@pytest.fixture
def jobs_db(tmp_path: Path) -> Path:
    """A SQLite file with 6 pending jobs."""
    path = tmp_path / "jobs.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY)")
        conn.executemany("INSERT INTO jobs DEFAULT VALUES", [()] * 6)
    conn.close()
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def manifests(name: str, triggers: str, extra: str = "") -> str:
    """A ProcessGroup and a ScaledObject scaling it on `triggers` (YAML list items indented by 4)."""
    return (
        f"apiVersion: ebb.dev/v1alpha1\nkind: ProcessGroup\nmetadata: {{name: {name}}}\n"
        "spec:\n  command: [worker]\n---\n"
        f"apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {{name: {name}}}\nspec:\n"
        f"  scaleTargetRef: {{apiVersion: ebb.dev/v1alpha1, kind: ProcessGroup, name: {name}}}\n"
        f"  triggers:\n{triggers}" + (f"---\n{extra}" if extra else "")
    )


def redis_trigger(key: str, address: str = "127.0.0.1:6379", auth: str = "", username: str = "") -> str:
    user = f", username: {username}" if username else ""
    lines = [
        "    - type: redis\n",
        f"      metadata: {{address: '{address}', listName: {key}, listLength: '5', "
        f"activationListLength: '3'{user}}}\n",
    ]
    if auth:
        lines.append(f"      authenticationRef: {{name: {auth}}}\n")
    return "".join(lines)


def sqlite_trigger(db: Path) -> str:
    return (
        "    - type: sqlite\n"
        f"      metadata: {{databasePath: '{db}', query: 'SELECT count(*) FROM jobs', "
        "targetQueryValue: '4', activationTargetQueryValue: '10'}\n"
    )


def table_rows(output: str) -> list[list[str]]:
    """The cells of each row of the table in `output` (plain aligned columns when not on a terminal)."""
    return [re.split(r"\s{2,}", line.strip()) for line in output.splitlines() if line.strip()]


def row_of(output: str, trigger: str) -> dict[str, str]:
    header = ["object", "trigger", "metric", "value", "target", "activation", "active"]
    found = [r for r in table_rows(output) if len(r) == len(header) and r[1] == trigger]
    assert len(found) == 1, output
    return dict(zip(header, found[0], strict=True))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "manifests.yaml"
    path.write_text(text)
    return path


def test_metrics_shows_value_target_activation_and_activity(tmp_path: Path, redis_list: str, jobs_db: Path) -> None:
    path = write(tmp_path, manifests("queue", redis_trigger(redis_list) + sqlite_trigger(jobs_db)))
    result = runner.invoke(app, ["metrics", str(path)], env=WIDE)
    assert result.exit_code == 0, result.output
    redis_row = row_of(result.output, "[0] redis")
    assert redis_row == {
        "object": "ScaledObject default/queue",
        "trigger": "[0] redis",
        "metric": f"s0-redis-{redis_list}",
        "value": "17",
        "target": "5 (AverageValue)",
        "activation": "3",
        "active": "yes",
    }
    sqlite_row = row_of(result.output, "[1] sqlite")
    assert (sqlite_row["value"], sqlite_row["target"], sqlite_row["activation"], sqlite_row["active"]) == (
        "6",
        "4 (AverageValue)",
        "10",
        "no",
    )


def test_metrics_follows_the_source(tmp_path: Path, redis_list: str) -> None:
    path = write(tmp_path, manifests("queue", redis_trigger(redis_list)))
    client = redis.Redis(host="127.0.0.1", port=6379)
    client.ltrim(redis_list, 0, 1)  # 2 items: below the activation threshold of 3
    client.close()
    result = runner.invoke(app, ["metrics", str(path)], env=WIDE)
    row = row_of(result.output, "[0] redis")
    assert (row["value"], row["active"]) == ("2", "no")


def test_metrics_reports_a_server_that_is_down_and_exits_1(tmp_path: Path, redis_list: str, jobs_db: Path) -> None:
    down = f"127.0.0.1:{free_port()}"
    path = write(tmp_path, manifests("queue", redis_trigger(redis_list, down) + sqlite_trigger(jobs_db)))
    result = runner.invoke(app, ["metrics", str(path), "--timeout", "2"], env=WIDE)
    assert result.exit_code == 1, result.output
    row = row_of(result.output, "[0] redis")
    assert row["active"] == "error"
    assert row["value"] == "error (below)"
    assert down in result.output or "connect" in result.output.lower(), result.output
    # The other trigger is still read.
    assert row_of(result.output, "[1] sqlite")["value"] == "6"
    assert "Traceback" not in result.output


def _secret_manifests(secret: str, *, string_data: bool) -> str:
    data = (
        f"stringData: {{redis-password: '{secret}'}}"
        if string_data
        else f"data: {{redis-password: {base64.b64encode(secret.encode()).decode()}}}"
    )
    return (
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: redis-creds}}\n{data}\n---\n"
        "apiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata: {name: redis-auth}\n"
        "spec:\n  secretTargetRef:\n    - {parameter: password, name: redis-creds, key: redis-password}\n"
    )


@pytest.mark.parametrize("string_data", [True, False])
def test_check_masks_a_password_from_a_secret_and_shows_resolved_parameters(
    tmp_path: Path, redis_list: str, string_data: bool
) -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    text = manifests(
        "queue", redis_trigger(redis_list, auth="redis-auth"), _secret_manifests(secret, string_data=string_data)
    )
    result = runner.invoke(app, ["check", str(write(tmp_path, text))], env=WIDE)
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    assert "password=***" in result.output
    for shown in (f"listName={redis_list}", "listLength=5", "activationListLength=3", "address=127.0.0.1:6379"):
        assert shown in result.output
    assert f"metric s0-redis-{redis_list}, AverageValue target 5, activation 3" in result.output


def test_metrics_never_shows_the_secret_even_when_the_server_refuses_it(tmp_path: Path, redis_list: str) -> None:
    # The Redis under test has no such user: AUTH fails, and the error must not carry the password.
    secret = f"pw-{uuid.uuid4().hex}"
    trigger = redis_trigger(redis_list, auth="redis-auth", username=f"nobody-{uuid.uuid4().hex[:8]}")
    text = manifests("queue", trigger, _secret_manifests(secret, string_data=True))
    result = runner.invoke(app, ["metrics", str(write(tmp_path, text)), "--timeout", "2"], env=WIDE)
    assert secret not in result.output
    assert row_of(result.output, "[0] redis")["active"] == "error"
    assert result.exit_code == 1


def test_check_names_a_missing_secret(tmp_path: Path, redis_list: str) -> None:
    text = manifests(
        "queue",
        redis_trigger(redis_list, auth="redis-auth"),
        "apiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata: {name: redis-auth}\n"
        "spec:\n  secretTargetRef:\n    - {parameter: password, name: nowhere, key: redis-password}\n",
    )
    result = runner.invoke(app, ["check", str(write(tmp_path, text))], env=WIDE)
    assert result.exit_code == 1
    assert "ScaledObject default/queue" in result.output
    assert "nowhere" in result.output
