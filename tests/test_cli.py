"""The `ebb` command as a user runs it: check, run (with Ctrl-C), version, help."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from ebb.cli import app
from ebb.errors import SpecError
from ebb.scalers import build_scaler
from ebb.spec.loader import load_files

ROOT = Path(__file__).resolve().parent.parent
KEDA_EXAMPLES = ROOT / "tests" / "spec" / "keda_examples"
runner = CliRunner()


#: KEDA's authentication page writes `host: host` as a placeholder; KEDA's own rabbitmq scaler refuses it too
#: ("unknown host URL scheme") when it builds the scaler, so ebb check is right to name it.
DOC_PLACEHOLDERS = {"ScaledObject default/rabbitmq-consumer": "spec.triggers[0].metadata.host"}


def test_check_accepts_kedas_documentation_examples_unchanged() -> None:
    result = runner.invoke(app, ["check", str(KEDA_EXAMPLES)])
    rejected = [line for line in result.output.splitlines() if line.startswith("✗")]
    assert len(rejected) == len(DOC_PLACEHOLDERS), result.output
    for obj, field in DOC_PLACEHOLDERS.items():
        assert obj in result.output and field in result.output
    accepted = [line for line in result.output.splitlines() if line.startswith("✓")]
    scaled = [o for o in load_files([KEDA_EXAMPLES]).objects if o.kind in ("ScaledObject", "ScaledJob")]
    assert len(accepted) == len(scaled) - len(DOC_PLACEHOLDERS), result.output
    assert "Traceback" not in result.output


def test_check_accepts_the_shipped_examples_each_on_its_own() -> None:
    # examples/http holds two forms of the same route: as one set they conflict, each file on its own is valid.
    result = runner.invoke(app, ["check", "--each", str(ROOT / "examples")])
    assert result.exit_code == 0, result.output
    assert "examples/http/route.yaml" in result.output and "examples/long-jobs/long-jobs.yaml" in result.output
    together = runner.invoke(app, ["check", str(ROOT / "examples")])
    assert together.exit_code == 1 and "defined more than once" in together.output


def test_check_each_fails_when_one_file_does(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    bad = "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\n"
    (tmp_path / "sub" / "bad.yaml").write_text(bad)
    result = runner.invoke(app, ["check", "--each", str(tmp_path)])
    assert result.exit_code == 1 and "sub/bad.yaml" in result.output


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ("spec:\n  pollingIntervall: 5\n", "spec.pollingIntervall"),
        ("spec:\n  minReplicaCount: 5\n  maxReplicaCount: 2\n", "spec.minReplicaCount"),
        ("spec:\n  triggers: []\n", "spec.triggers"),
    ],
)
def test_check_rejects_broken_manifests_naming_the_field(tmp_path: Path, manifest: str, expected: str) -> None:
    body = textwrap.dedent(
        """\
        apiVersion: keda.sh/v1alpha1
        kind: ScaledObject
        metadata:
          name: broken
        spec:
          scaleTargetRef: {name: web}
        """
    )
    extra = manifest.replace("spec:\n", "")
    if "triggers" not in extra:
        extra += (
            "  triggers:\n    - type: cron\n"
            "      metadata: {timezone: UTC, start: '0 9 * * *', end: '0 17 * * *', desiredReplicas: '1'}\n"
        )
    path = tmp_path / "broken.yaml"
    path.write_text(body + extra)
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert "ScaledObject default/broken" in result.output
    assert expected in result.output
    assert "Traceback" not in result.output


def test_check_reports_bad_trigger_metadata_with_the_parameter(tmp_path: Path) -> None:
    path = tmp_path / "so.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            apiVersion: ebb.dev/v1alpha1
            kind: ProcessGroup
            metadata: {name: w}
            spec: {command: ["true"]}
            ---
            apiVersion: keda.sh/v1alpha1
            kind: ScaledObject
            metadata: {name: w}
            spec:
              scaleTargetRef: {apiVersion: ebb.dev/v1alpha1, kind: ProcessGroup, name: w}
              triggers:
                - type: redis
                  metadata: {address: "127.0.0.1:6379", listName: q, listLength: "-3"}
            """
        )
    )
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert "spec.triggers[0].metadata.listLength" in result.output


def test_check_output_yaml_fills_kedas_defaults(tmp_path: Path) -> None:
    path = tmp_path / "so.yaml"
    path.write_text(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: d}\nspec:\n"
        "  scaleTargetRef: {name: web}\n  triggers:\n    - type: cron\n"
        "      metadata: {timezone: UTC, start: '0 9 * * *', end: '0 17 * * *', desiredReplicas: '1'}\n"
    )
    result = runner.invoke(app, ["check", "-o", "yaml", str(path)])
    assert result.exit_code == 0, result.output
    for default in ("pollingInterval: 30", "cooldownPeriod: 300", "minReplicaCount: 0", "maxReplicaCount: 100"):
        assert default in result.output


@pytest.mark.parametrize("command", [[], ["run"], ["check"], ["metrics"], ["demo"], ["version"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0 and result.output.startswith("ebb ")


def test_run_with_nothing_valid_exits_with_the_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec: {}\n")
    result = runner.invoke(app, ["run", "--no-state", str(path)])
    assert result.exit_code == 1
    assert "spec.scaleTargetRef" in result.output or "spec.triggers" in result.output


def test_run_stops_workers_gracefully_on_ctrl_c(tmp_path: Path) -> None:
    """`ebb run` in a real subprocess: a worker that needs 0.5 s to finish after SIGTERM gets it."""
    marker = tmp_path / "finished"
    worker = (
        "import signal, sys, time\n"
        "def stop(*a):\n"
        "    time.sleep(0.5)\n"
        f"    open({str(marker)!r}, 'a').write('done\\n')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('ready', flush=True)\n"
        "time.sleep(3600)\n"
    )
    manifest = tmp_path / "group.yaml"
    manifest.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: ebb.dev/v1alpha1
            kind: ProcessGroup
            metadata: {{name: steady}}
            spec:
              command: [{sys.executable!r}, "-c", {worker!r}]
              replicas: 2
              terminationGracePeriodSeconds: 10
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ebb.cli", "run", "--no-state", str(manifest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        workers: list[psutil.Process] = []
        while time.monotonic() < deadline:
            children = psutil.Process(proc.pid).children(recursive=True)
            workers = [c for c in children if "time.sleep(3600)" in " ".join(c.cmdline())]
            if len(workers) == 2:
                break
            time.sleep(0.1)
        assert len(workers) == 2, "two workers should be running"
        time.sleep(0.3)  # let them install their SIGTERM handler
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert marker.read_text().count("done") == 2
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    assert "[steady-0] ready" in out


def test_check_rejects_bad_metadata_even_for_cluster_targets(tmp_path: Path) -> None:
    path = tmp_path / "so.yaml"
    path.write_text(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: web}\nspec:\n"
        "  scaleTargetRef: {name: web}\n  triggers:\n    - type: redis\n"
        "      metadata: {address: 'redis:6379', listName: q, listLength: 'many'}\n"
    )
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert "spec.triggers[0].metadata.listLength" in result.output


def test_check_compiles_the_formula_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "so.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            apiVersion: keda.sh/v1alpha1
            kind: ScaledObject
            metadata: {name: f}
            spec:
              scaleTargetRef: {name: web}
              advanced:
                scalingModifiers: {formula: "a + missing", target: "2"}
              triggers:
                - type: cron
                  name: a
                  metadata: {timezone: UTC, start: "0 9 * * *", end: "0 17 * * *", desiredReplicas: "1"}
            """
        )
    )
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert "spec.advanced.scalingModifiers.formula" in result.output and "missing" in result.output


def test_metrics_shows_cpu_triggers_as_measured_under_run_not_as_failures(tmp_path: Path) -> None:
    path = tmp_path / "so.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            apiVersion: ebb.dev/v1alpha1
            kind: ProcessGroup
            metadata: {name: w}
            spec:
              command: ["true"]
              resources: {requests: {cpu: "500m"}}
            ---
            apiVersion: keda.sh/v1alpha1
            kind: ScaledObject
            metadata: {name: w}
            spec:
              scaleTargetRef: {apiVersion: ebb.dev/v1alpha1, kind: ProcessGroup, name: w}
              minReplicaCount: 1
              triggers:
                - type: cpu
                  metricType: Utilization
                  metadata: {value: "60"}
            """
        )
    )
    result = runner.invoke(app, ["metrics", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "measured from running workers" in result.output


KUBECONFIG_NOWHERE = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


@pytest.mark.parametrize(
    ("kubeconfig", "args", "expected"),
    [
        (None, [], "no Kubernetes configuration"),
        (KUBECONFIG_NOWHERE, ["--tls-cert-file", "/nope.crt", "--tls-private-key-file", "/nope.key"], "/nope.crt"),
        (KUBECONFIG_NOWHERE, ["--metrics-api-port", "0"], "extension-apiserver-authentication"),
    ],
)
def test_operator_that_cannot_start_says_why_without_a_traceback(
    tmp_path: Path, kubeconfig: str | None, args: list[str], expected: str
) -> None:
    config = tmp_path / "kubeconfig"
    if kubeconfig is not None:
        config.write_text(kubeconfig)
    env = {**os.environ, "KUBECONFIG": str(config), "HOME": str(tmp_path)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    result = subprocess.run(
        [sys.executable, "-m", "ebb.cli", "operator", "--metrics-port", "0", "--webhook-port", "0", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


LOCAL_TYPO = """\
apiVersion: ebb.dev/v1alpha1
kind: ProcessGroup
metadata: {name: w}
spec: {command: ["true"]}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: w}
spec:
  scaleTargetRef: {apiVersion: ebb.dev/v1alpha1, kind: ProcessGroup, name: w}
  triggers:
    - type: %s
      metadata: {address: "127.0.0.1:6379", listName: q, %s}
"""


def test_check_typos_unknown_type_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "so.yaml"
    path.write_text(LOCAL_TYPO % ("reddis", 'listLength: "5"'))
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert "did you mean 'redis'?" in " ".join(result.output.split())


def test_check_typos_unknown_parameter_is_a_warning_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "so.yaml"
    path.write_text(LOCAL_TYPO % ("redis", 'listLenght: "20"'))
    result = runner.invoke(app, ["check", str(path)])
    output = " ".join(result.output.split())
    assert result.exit_code == 0, output
    assert "warning" in output and "did you mean 'listLength'?" in output


def test_a_keda_type_ebb_lacks_is_an_error_locally_and_a_note_for_a_cluster(tmp_path: Path) -> None:
    local = tmp_path / "local.yaml"
    local.write_text(LOCAL_TYPO % ("kafka", 'topic: "t"'))
    result = runner.invoke(app, ["check", str(local)])
    assert result.exit_code == 1
    assert "ebb does not implement yet" in " ".join(result.output.split())
    with pytest.raises(SpecError, match="KEDA trigger type that ebb does not implement"):  # what `ebb run` reports
        build_scaler("kafka", {"topic": "t"})
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: w}\nspec:\n"
        "  scaleTargetRef: {name: w}\n  triggers:\n"
        "    - {type: kafka, metadata: {bootstrapServers: 'k:9092', consumerGroup: g, topic: t}}\n"
    )
    result = runner.invoke(app, ["check", str(cluster)])
    assert result.exit_code == 0
    assert "KEDA trigger type(s) ebb does not implement yet: kafka" in " ".join(result.output.split())


def test_check_describes_a_process_groups_ports_and_probes() -> None:
    result = runner.invoke(app, ["check", str(ROOT / "examples" / "long-jobs" / "long-jobs.yaml")])
    assert result.exit_code == 0, result.output
    assert "ports     busy=8500 (replica i: port + i)" in result.output
    assert "ready     tcpSocket on port busy, every 2s, timeout 1s, thresholds 1/3" in result.output
    assert "busy      httpGet /busy on port busy; scale-in drains busy workers up to 300s" in result.output


GROUP_AND_OBJECT = """\
apiVersion: ebb.dev/v1alpha1
kind: ProcessGroup
metadata: {name: w}
spec:
  command: ["sleep", "100"]
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: w}
spec:
  scaleTargetRef: {apiVersion: ebb.dev/v1alpha1, kind: ProcessGroup, name: w}
  triggers:
    - type: cron
      metadata: {timezone: UTC, start: "0 0 * * *", end: "1 0 * * *", desiredReplicas: "1"}
"""


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--history-tiers", "1m:1h,90s:2h"], "--history-tiers: tier 2 (90s:2h): resolution must be a whole multiple"),
        (["--history-tiers", "1s:1h,1m"], "--history-tiers: tier 2 (1m): expected RESOLUTION:KEEP"),
        (["--history-tiers", "1m:1h", "--history-retention", "30s"], "retention 30s is shorter than the finest"),
        (["--history-retention", "soon"], "--history-retention: expected a duration"),
    ],
)
def test_run_refuses_bad_history_tiers_with_one_line(tmp_path: Path, flags: list[str], message: str) -> None:
    path = tmp_path / "so.yaml"
    path.write_text(GROUP_AND_OBJECT)
    result = runner.invoke(app, ["run", "--no-state", "--no-history", "--metrics-port", "0", *flags, str(path)])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_operator_refuses_bad_history_flags_before_connecting() -> None:
    def text(output: str) -> str:  # typer's error box, unwrapped
        return " ".join(output.replace("│", " ").split())

    result = runner.invoke(app, ["operator", "--history-tiers", "1s:1h,1m:30m"])
    assert result.exit_code == 2
    assert "tier 2 (1m:30m): keep must be longer than tier 1's (1h)" in text(result.output)
    result = runner.invoke(app, ["operator", "--history-prometheus-address", "prometheus:9090"])
    assert result.exit_code == 2
    assert "expected an http:// or https:// URL, got 'prometheus:9090'" in text(result.output)
