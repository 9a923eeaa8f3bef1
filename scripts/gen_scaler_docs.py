"""Write the parameter tables of docs/scalers.md from the scalers' metadata models.

Each table sits between `<!-- BEGIN GENERATED parameters: <type> -->` and `<!-- END GENERATED parameters -->`;
the prose around it is written by hand. A row is one parameter: its names, where it may come from (m = trigger
metadata, a = TriggerAuthentication, e = `…FromEnv`, in lookup order), its default and its description.

Usage: python scripts/gen_scaler_docs.py [--check]   (--check: exit 1 when docs/scalers.md is stale)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from pydantic_core import PydanticUndefined

from ebb.scalers import KEDA_TRIGGER_TYPES, available_types, scaler_class
from ebb.scalers.base import field_is_secret, field_names, field_sources

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "scalers.md"
BLOCK = re.compile(
    r"(<!-- BEGIN GENERATED parameters: (?P<type>[a-z-]+) -->\n)(?P<body>.*?)(<!-- END GENERATED parameters -->)",
    re.DOTALL,
)
_SOURCES = {"triggerMetadata": "m", "authParams": "a", "resolvedEnv": "e"}
CATALOG = re.compile(r"(<!-- BEGIN GENERATED catalog -->\n)(?P<body>.*?)(<!-- END GENERATED catalog -->)", re.DOTALL)

_SAAS = "a hosted service: needs an account, and no implementation of its API runs here"
_NO_SERVER = "no server for it in the registries ebb builds with (PyPI, Debian, npm), as looked up"
#: Why a KEDA trigger type ebb lacks cannot be tested here; a type not listed is simply not done yet.
NOT_POSSIBLE_HERE = {
    **dict.fromkeys(
        [
            "azure-app-insights",
            "azure-data-explorer",
            "azure-log-analytics",
            "azure-monitor",
            "azure-pipelines",
            "datadog",
            "dynatrace",
            "gcp-cloudtasks",
            "gcp-spanner",
            "gcp-stackdriver",
            "huawei-cloudeye",
            "new-relic",
            "solarwinds",
            "splunk-observability",
            "sumologic",
            "github-runner",
        ],
        _SAAS,
    ),
    **dict.fromkeys(
        [
            "kafka",
            "apache-kafka",
            "mongodb",
            "couchdb",
            "cassandra",
            "elasticsearch",
            "elastic-forecast",
            "opensearch",
            "nsq",
            "pulsar",
            "arangodb",
            "temporal",
            "artemis-queue",
        ],
        _NO_SERVER,
    ),
    "ibmmq": "IBM MQ is proprietary: no server for it in the registries ebb builds with",
    "solace-direct-messaging": "Solace PubSub+ is proprietary: no server for it in the registries ebb builds with",
    "solace-event-queue": "Solace PubSub+ is proprietary: no server for it in the registries ebb builds with",
    "mssql": "SQL Server: no server for it in the registries ebb builds with",
    "azure-eventhub": "Microsoft's emulator ships only as a container image, and no Docker engine runs here",
    "azure-servicebus": "Microsoft's emulator ships only as a container image, and no Docker engine runs here",
}


def _default(info: Any) -> str:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "shown_default" in extra:
        return str(extra["shown_default"])
    value = info.default
    if value is PydanticUndefined or value is None or value in ((), {}):
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def table(trigger_type: str) -> str:
    model = scaler_class(trigger_type).Metadata
    lines = ["| parameter | src | default | notes |", "|---|---|---|---|"]
    for fname, info in model.model_fields.items():
        names = field_names(fname, info)
        shown = f"`{names[0]}`" + (f" (or {', '.join(f'`{n}`' for n in names[1:])})" if len(names) > 1 else "")
        sources = ", ".join(_SOURCES[s] for s in field_sources(info))
        notes = info.description or ""
        if field_is_secret(info):
            notes = f"**secret**. {notes}" if notes else "**secret**"
        cell = notes.replace("|", "\\|")
        lines.append(f"| {shown} | {sources} | {_default(info)} | {cell} |")
    return "\n".join(lines) + "\n"


def render(current: str) -> str:
    def replace(match: re.Match[str]) -> str:
        return f"{match.group(1)}{table(match.group('type'))}{match.group(4)}"

    return CATALOG.sub(lambda m: f"{m.group(1)}{catalog()}{m.group(3)}", BLOCK.sub(replace, current))


def catalog() -> str:
    """Every trigger type KEDA builds, and ebb's own, with ebb's status for each."""
    ours = set(available_types())
    lines = ["| trigger type | in ebb | why not |", "|---|---|---|"]
    for trigger_type in sorted(KEDA_TRIGGER_TYPES | ours):
        if trigger_type in ours:
            status, why = ("supported (ebb's own)" if trigger_type not in KEDA_TRIGGER_TYPES else "supported"), ""
        elif trigger_type in NOT_POSSIBLE_HERE:
            status, why = "not possible here", NOT_POSSIBLE_HERE[trigger_type]
        else:
            status, why = "not yet", ""
        lines.append(f"| `{trigger_type}` | {status} | {why} |")
    return "\n".join(lines) + "\n"


def missing(current: str) -> list[str]:
    """Trigger types without a generated table."""
    have = {match.group("type") for match in BLOCK.finditer(current)}
    return [t for t in available_types() if t not in have and t != "external-push"]


def main(argv: list[str]) -> int:
    current = DOC.read_text()
    absent = missing(current)
    if not CATALOG.search(current):
        print(f"{DOC.relative_to(ROOT)} has no catalog block", file=sys.stderr)
        return 1
    if absent:
        print(f"{DOC.relative_to(ROOT)} has no parameter table for: {', '.join(absent)}", file=sys.stderr)
        return 1
    wanted = render(current)
    if current == wanted:
        return 0
    if "--check" in argv:
        print(f"{DOC.relative_to(ROOT)} is out of date: run python scripts/gen_scaler_docs.py", file=sys.stderr)
        return 1
    DOC.write_text(wanted)
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
