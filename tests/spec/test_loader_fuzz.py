"""Fuzzing the loader: thousands of mutated manifests never raise anything but ebb's own errors, never hang."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ebb.cli import app
from ebb.errors import SpecError
from ebb.spec import load_text

ROOT = Path(__file__).resolve().parents[2]
SEEDS = sorted((ROOT / "examples").glob("*.yaml")) + sorted((ROOT / "tests/spec/keda_examples").glob("*.yaml"))
CORPUS = [path.read_text() for path in SEEDS]

#: What breaks YAML and manifests in interesting ways: structure, anchors and aliases, tags, odd scalars.
TOKENS = [
    "&a ",
    "*a",
    "&b [*a, *a, *a]",
    "<<: *a",
    "[",
    "]",
    "{",
    "}",
    ": ",
    "- ",
    ",",
    "\t",
    "\n",
    "  ",
    "---\n",
    "...\n",
    "'",
    '"',
    "#",
    "!!binary ",
    "!!python/object:os.system ",
    "!!set ",
    "!!omap ",
    "? ",
    "|",
    ">",
    "~",
    "null",
    "yes",
    "0x1F",
    "1e400",
    "-1",
    ".nan",
    "9" * 30,
    "{{ .Values.x }}",
    "\x00",
    "\ufeff",
    "\u2028",
    "%YAML 1.1\n",
    "%TAG ! tag:x,2000:\n",
    "kind: List\nitems:\n",
    "apiVersion: v1\n",
    "kind: Secret\n",
    "triggers: []",
    "metadata: {}",
    "scaleTargetRef:\n",
    "type: redis\n",
    "2024-01-31T12:00:00Z",
]

mutation = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.sampled_from(TOKENS)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.text(max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 40)),
    st.tuples(st.just("line"), st.integers(0, 10**6), st.integers(0, 10**6)),
)


def mutate(text: str, mutations: list[tuple[str, int, object]]) -> str:
    for op, at, arg in mutations:
        if op == "insert":
            position = at % (len(text) + 1)
            text = text[:position] + str(arg) + text[position:]
        elif op == "delete" and text:
            position = at % len(text)
            text = text[:position] + text[position + int(str(arg)) :]
        elif op == "line":  # duplicate one line somewhere else: repeated keys, broken indentation
            lines = text.splitlines(keepends=True) or [""]
            lines.insert(int(str(arg)) % (len(lines) + 1), lines[at % len(lines)])
            text = "".join(lines)
    return text


manifests = st.builds(mutate, st.sampled_from(CORPUS), st.lists(mutation, min_size=1, max_size=6))  # type: ignore[arg-type]

FUZZ: dict[str, Any] = dict(
    derandomize=True,
    deadline=timedelta(seconds=5),  # a hang fails the example, it does not stall the suite
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


@settings(max_examples=3000, **FUZZ)
@given(manifests)
def test_loading_mutated_manifests_yields_objects_or_spec_errors(text: str) -> None:
    result = load_text(text, "fuzz.yaml")
    assert all(isinstance(error, SpecError) for error in [*result.errors, *result.warnings])
    for error in result.errors:
        assert str(error).startswith("fuzz.yaml")
    for obj in result.objects:
        obj.to_manifest()


runner = CliRunner()


@pytest.mark.slow
@settings(max_examples=400, **FUZZ)
@given(manifests)
def test_check_on_mutated_manifests_exits_cleanly(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "m.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    for args in (["check", str(path)], ["check", "-o", "json", str(path)]):
        result = runner.invoke(app, args)
        assert result.exit_code in (0, 1), result.output
        assert not isinstance(result.exception, BaseException) or isinstance(result.exception, SystemExit), (
            result.exception
        )
        assert "Traceback" not in result.output
