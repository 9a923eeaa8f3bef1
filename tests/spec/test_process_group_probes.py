"""ProcessGroup ports, readinessProbe, busyProbe and maxDrainSeconds: defaults and errors naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from ebb.spec.models import ProcessGroup
from tests.spec._support import MINIMAL_PROCESS_GROUP, edited, load_docs

PG = MINIMAL_PROCESS_GROUP


def load_group(doc: dict[str, Any]) -> ProcessGroup:
    result = load_docs(doc)
    assert not result.errors, [str(e) for e in result.errors]
    group = result.objects[0]
    assert isinstance(group, ProcessGroup)
    return group


def test_kubernetes_probe_defaults() -> None:
    group = load_group(
        edited(
            PG,
            ("spec.ports", [{"name": "http", "containerPort": 8000}, {"name": "metrics-x", "containerPort": 9100}]),
            ("spec.readinessProbe", {"httpGet": {"path": "/healthz", "port": "http"}}),
            ("spec.busyProbe", {"file": "/tmp/busy-{index}"}),
        )
    )
    probe = group.spec.readiness_probe
    assert probe is not None
    assert (probe.initial_delay_seconds, probe.period_seconds, probe.timeout_seconds) == (0, 10, 1)
    assert (probe.success_threshold, probe.failure_threshold) == (1, 3)
    assert group.spec.port_number(probe.port) == 8000
    assert group.spec.effective_max_drain_seconds == 600
    assert group.spec.replica_ports(2) == {"PORT": "8002", "PORT_HTTP": "8002", "PORT_METRICS_X": "9102"}


def test_without_ports_no_port_variables() -> None:
    assert load_group(PG).spec.replica_ports(3) == {}


@pytest.mark.parametrize(
    ("edits", "field", "message"),
    [
        (
            [("spec.ports", [{"name": "http", "containerPort": 80}, {"name": "http", "containerPort": 81}])],
            "spec.ports[1].name",
            "'http' is already the name of ports[0]",
        ),
        (
            [("spec.ports", [{"containerPort": 80}, {"containerPort": 80}])],
            "spec.ports[1].containerPort",
            "80 is already ports[0]",
        ),
        ([("spec.ports", [{"name": "Web_1", "containerPort": 80}])], "spec.ports[0].name", "not a valid port name"),
        ([("spec.ports", [{"containerPort": 0}])], "spec.ports[0].containerPort", "at least 1"),
        (
            [("spec.readinessProbe", {"tcpSocket": {"port": 1}, "httpGet": {"port": 1}})],
            "spec.readinessProbe",
            "give exactly one of tcpSocket or httpGet (got tcpSocket and httpGet)",
        ),
        ([("spec.readinessProbe", {"periodSeconds": 5})], "spec.readinessProbe", "give exactly one of"),
        (
            [("spec.readinessProbe", {"tcpSocket": {"port": "web"}})],
            "spec.readinessProbe.tcpSocket.port",
            "'web' names no port of this group",
        ),
        (
            [("spec.busyProbe", {"httpGet": {"port": "busy"}})],
            "spec.busyProbe.httpGet.port",
            "(declared: none)",
        ),
        (
            [("spec.busyProbe", {"file": "/tmp/x", "exitWhenIdle": True})],
            "spec.busyProbe",
            "give exactly one of httpGet, file or exitWhenIdle: true (got file and exitWhenIdle)",
        ),
        ([("spec.busyProbe", {"periodSeconds": 2})], "spec.busyProbe", "give exactly one of"),
        (
            [("spec.busyProbe", {"httpGet": {"port": 80, "path": "busy"}})],
            "spec.busyProbe.httpGet.path",
            "expected a path starting with '/'",
        ),
        ([("spec.maxDrainSeconds", 60)], "spec.maxDrainSeconds", "has no effect without a busyProbe"),
        (
            [("spec.busyProbe", {"file": "/tmp/x"}), ("spec.maxDrainSeconds", -1)],
            "spec.maxDrainSeconds",
            "at least 0",
        ),
    ],
)
def test_errors_name_object_and_field(edits: list[tuple[str, Any]], field: str, message: str) -> None:
    result = load_docs(edited(PG, *edits))
    found = [(e.obj, e.field, e.message) for e in result.errors]
    assert any(obj == "ProcessGroup default/worker" and f == field and message in m for obj, f, m in found), found
