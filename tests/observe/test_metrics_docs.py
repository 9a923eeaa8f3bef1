"""docs/observability.md's metrics table is generated from the registered families (scripts/gen_metrics_docs.py):
a series added, renamed or relabelled without the docs following fails here."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from ebb.observe.metrics import DOC_MEANINGS

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "observability.md"


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_metrics_docs", ROOT / "scripts" / "gen_metrics_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_metrics_table_matches_the_code(generator: ModuleType) -> None:
    current = DOC.read_text()
    assert generator.render(current) == current, "run: python scripts/gen_metrics_docs.py"
    assert generator.stale_meanings() == []


def test_the_table_lists_every_family_once_with_its_type_and_labels(generator: ModuleType) -> None:
    rows = generator.families()
    names = [row.name for row in rows]
    assert len(names) == len(set(names))
    table = generator.table()
    for row in rows:
        assert f"`{row.name}`" in table
    line = next(x for x in table.splitlines() if "`ebb_http_hold_seconds`" in x)
    assert line.startswith("| `ebb_http_hold_seconds` | histogram | `namespace, type, name` | ")
    assert "| `keda_scaler_metrics_value` | gauge | L |" in table
    assert "| `ebb_predictive_forecast_value` | gauge | L + `band` |" in table


def test_a_drifted_doc_is_caught(generator: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    current = DOC.read_text()
    edited = current.replace("| `ebb_http_requests_held` | gauge |", "| `ebb_http_requests_held` | counter |")
    assert edited != current and generator.render(edited) != edited
    monkeypatch.setitem(DOC_MEANINGS, "ebb_no_such_series", "gone")
    assert generator.stale_meanings() == ["ebb_no_such_series"]


def test_check_mode_exits_0_on_the_committed_docs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_metrics_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
