"""`ebb simulate` as a user runs it: options, JSON output, plots, and clear errors instead of tracebacks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ebb.cli import app
from tests.simulate.test_engine import POSTGRES, daily_trace, manifest

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
TRACES = Path(os.environ.get("EBB_TRACES", ROOT.parent / "shared" / "traces"))


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["simulate", *args])
    return result.exit_code, result.output


def test_json_output_with_chosen_policies_and_overrides(tmp_path: Path) -> None:
    code, out = run(
        str(manifest(tmp_path)),
        "--trace", str(daily_trace(tmp_path, days=2)),
        "--policies", "manifest,keda-default",
        "--service-rate", "0.5",
        "--startup-delay", "20",
        "--scale", "2",
        "--seed", "4",
        "--set", "spec.cooldownPeriod=120",
        "--set", "spec.triggers[0].metadata.listLength=10",
        "-o", "json",
    )  # fmt: skip
    assert code == 0, out
    doc = json.loads(out)
    assert [p["name"] for p in doc["policies"]] == ["manifest", "keda-default"]
    assert doc["settings"]["cooldown_period"] == 120
    assert doc["settings"]["triggers"][0]["target"] == 10
    assert doc["settings"]["scale"] == 2 and doc["settings"]["seed"] == 4
    assert doc["trace"]["format"] == "counts"


def test_table_output(tmp_path: Path) -> None:
    code, out = run(str(manifest(tmp_path)), "--trace", str(daily_trace(tmp_path, days=1)), "--policies", "oracle")
    assert code == 0, out
    assert "oracle" in out and "cold" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--policies", "magic"], "--policies: unknown policy 'magic'"),
        (["--service-rate", "0"], "--service-rate: expected a finite number more than 0"),
        (["--scale", "nan"], "--scale: expected a finite number"),
        (["--set", "spec.cooldownPeriod=-5"], "spec.cooldownPeriod"),
        (["--set", "nonsense"], "--set nonsense: expected PATH=VALUE"),
        (["--plot", "out.svg"], "expected a .html or .png file name"),
    ],
)
def test_bad_options_are_named(tmp_path: Path, args: list[str], expected: str) -> None:
    code, out = run(str(manifest(tmp_path)), "--trace", str(daily_trace(tmp_path, days=1)), *args)
    assert code == 2
    assert expected in " ".join(out.split())
    assert "Traceback" not in out


@pytest.mark.parametrize(
    ("trigger", "metadata", "expected"),
    [
        ("cpu", "{value: '50'}", "cannot simulate a cpu trigger: it measures the workers' CPU use"),
        ("cron", "{timezone: UTC, start: '0 8 * * *', end: '0 9 * * *', desiredReplicas: '2'}", "scales by the clock"),
        ("postgresql", POSTGRES, None),
    ],
)
def test_trigger_types(tmp_path: Path, trigger: str, metadata: str, expected: str | None) -> None:
    so = manifest(tmp_path, trigger, metadata)
    if trigger == "cpu":
        so.write_text(so.read_text().replace("    - type: cpu", "    - type: cpu\n      metricType: Utilization"))
    code, out = run(str(so), "--trace", str(daily_trace(tmp_path, days=1)), "--policies", "manifest")
    if expected is None:
        assert code == 0, out
    else:
        assert code == 2, out
        assert "spec.triggers[0]" in out and expected in " ".join(out.split())
        assert "Traceback" not in out


def test_bad_trace_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n0,1\n300,NaN\n")
    code, out = run(str(manifest(tmp_path)), "--trace", str(bad))
    assert code == 2
    assert "row 3, field 'value': NaN" in " ".join(out.split())
    assert "Traceback" not in out


def test_html_plot_is_self_contained(tmp_path: Path) -> None:
    plot = tmp_path / "plot.html"
    code, out = run(
        str(manifest(tmp_path)), "--trace", str(daily_trace(tmp_path, days=2)), "--plot", str(plot),
        "--policies", "manifest,predictive,oracle",
    )  # fmt: skip
    assert code == 0, out
    page = plot.read_text()
    assert "uPlot" in page and "predictive forecast" in page
    assert "<script src" not in page and "<link" not in page  # nothing loaded from elsewhere


def test_png_plot_says_how_to_enable_it(tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        code, out = run(
            str(manifest(tmp_path)), "--trace", str(daily_trace(tmp_path, days=1)), "--plot", str(tmp_path / "p.png")
        )
        assert code == 2
        assert "pip install 'ebb-autoscaler[plot]'" in " ".join(out.split())
    else:
        code, out = run(
            str(manifest(tmp_path)), "--trace", str(daily_trace(tmp_path, days=1)), "--plot", str(tmp_path / "p.png")
        )
        assert code == 0, out
        assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.skipif(not TRACES.is_dir(), reason=f"no real traces at {TRACES} (CI has ../shared; set EBB_TRACES)")
@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("twitter_volume_IBM.csv", ["--scale", "0.05"]),
        ("elb_request_count.csv", ["--scale", "0.002", "--gaps", "previous"]),
        ("azure_llm_code.csv", ["--format", "arrivals", "--scale", "0.1"]),
    ],
)
def test_real_traces(tmp_path: Path, name: str, args: list[str]) -> None:
    code, out = run(
        str(ROOT / "examples" / "simulate-worker.yaml"), "--trace", str(TRACES / name), *args,
        "--policies", "keda-default,oracle,fixed-p99", "-o", "json", "--service-rate", "0.2",
    )  # fmt: skip
    assert code == 0, out
    doc = json.loads(out)
    assert doc["policies"][0]["items"] > 0
    assert doc["policies"][1]["cold_starts"] == 0


@pytest.mark.skipif(not TRACES.is_dir(), reason=f"no real traces at {TRACES} (CI has ../shared; set EBB_TRACES)")
def test_a_real_trace_with_gaps_is_refused_by_default() -> None:
    code, out = run(str(ROOT / "examples" / "simulate-worker.yaml"), "--trace", str(TRACES / "elb_request_count.csv"))
    assert code == 2
    assert "pass --gaps previous" in " ".join(out.split())
