"""docs/scalers.md's parameter tables are generated from the scalers' models (scripts/gen_scaler_docs.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_parameter_table_matches_the_models() -> None:
    spec = importlib.util.spec_from_file_location("gen_scaler_docs", ROOT / "scripts" / "gen_scaler_docs.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = generator
    spec.loader.exec_module(generator)
    current = (ROOT / "docs" / "scalers.md").read_text()
    assert generator.missing(current) == []
    assert generator.render(current) == current, "run: python scripts/gen_scaler_docs.py"
