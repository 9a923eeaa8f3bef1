"""Write the metrics table of docs/observability.md from the metric families ebb registers.

The table sits between `<!-- BEGIN GENERATED metrics -->` and `<!-- END GENERATED metrics -->`. Each row's name,
type and labels come from the families themselves (EbbMetrics, the operator's WebhookMetrics, the HTTP routes'
collector); its meaning from `ebb.observe.metrics.DOC_MEANINGS`, else the family's HELP text. Adjacent rows that
differ only by name are one row. `L` is KEDA's per-trigger label set.

Usage: python scripts/gen_metrics_docs.py [--check]   (--check: exit 1 when docs/observability.md is stale)
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from ebb.kube.webhook import WebhookMetrics
from ebb.observe.http_routes import FAMILIES, LABELS
from ebb.observe.metrics import DOC_MEANINGS, SCALER_LABELS, EbbMetrics

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "observability.md"
BLOCK = re.compile(r"(<!-- BEGIN GENERATED metrics -->\n)(?P<body>.*?)(<!-- END GENERATED metrics -->)", re.DOTALL)


@dataclass(frozen=True)
class Row:
    name: str
    type: str
    labels: tuple[str, ...]
    help: str
    where: str


def families() -> list[Row]:
    """Every family, in registration order: ebb run's and the operator's, the operator's webhook, the HTTP routes'."""
    rows: list[Row] = []
    registry = CollectorRegistry(auto_describe=True)
    metrics = EbbMetrics(registry)
    for value in vars(metrics).values():
        describe = getattr(value, "describe", None)
        if describe is None or value is registry:
            continue
        [family] = describe()
        name = family.name + ("_total" if family.type == "counter" else "")
        rows.append(Row(name, family.type, tuple(value._labelnames), family.documentation, "all"))
    webhook = WebhookMetrics(CollectorRegistry())
    for counter in (webhook.validations, webhook.validation_errors):
        [family] = counter.describe()
        rows.append(
            Row(family.name + "_total", "counter", tuple(counter._labelnames), family.documentation, "operator")
        )
    for name, kind, help_text in FAMILIES:
        rows.append(Row(name + ("_total" if kind == "counter" else ""), kind, LABELS, help_text, "http"))
    return rows


def _labels(labels: tuple[str, ...]) -> str:
    if labels[: len(SCALER_LABELS)] == SCALER_LABELS:
        extra = labels[len(SCALER_LABELS) :]
        return "L" + "".join(f" + `{x}`" for x in extra)
    return "`" + ", ".join(labels) + "`" if labels else ""


WHERE = {"all": "", "operator": "`ebb operator` only: ", "http": ""}


def _meaning(row: Row) -> str:
    text = DOC_MEANINGS.get(row.name) or row.help[:1].lower() + row.help[1:].rstrip(".")
    return WHERE[row.where] + text


def table() -> str:
    lines = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    merged: list[tuple[list[str], str, str, str]] = []
    for row in families():
        cells = (row.type, _labels(row.labels), _meaning(row))
        if merged and merged[-1][1:] == cells:
            merged[-1][0].append(row.name)
        else:
            merged.append(([row.name], *cells))
    for names, kind, labels, meaning in merged:
        lines.append(f"| {', '.join(f'`{n}`' for n in names)} | {kind} | {labels} | {meaning} |")
    return "\n".join(lines) + "\n"


def stale_meanings() -> list[str]:
    """DOC_MEANINGS entries for series that no longer exist."""
    names = {row.name for row in families()}
    return sorted(set(DOC_MEANINGS) - names)


def render(text: str) -> str:
    if not BLOCK.search(text):
        raise SystemExit(f"{DOC}: no <!-- BEGIN GENERATED metrics --> block")
    return BLOCK.sub(lambda m: m.group(1) + table() + m.group(3), text)


def main(argv: list[str]) -> int:
    current = DOC.read_text()
    wanted = render(current)
    if "--check" in argv:
        if wanted != current or stale_meanings():
            print(f"{DOC.relative_to(ROOT)} is stale: run python scripts/gen_metrics_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(wanted)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
