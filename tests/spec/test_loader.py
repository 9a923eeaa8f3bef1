"""Loading YAML: many documents, errors that name object, field, file and line, cross-object checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ebb.errors import SpecError
from ebb.spec import (
    ConfigMap,
    ManifestError,
    ProcessGroup,
    ResourceSet,
    ScaledObject,
    Secret,
    TriggerAuthentication,
    load_files,
    load_text,
    parse_object,
)
from ebb.spec.models import ClusterTriggerAuthentication
from tests.spec._support import MINIMAL_SCALED_OBJECT, edited, fields_of

SO_TEXT = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {name}
spec:
  scaleTargetRef:
    name: {name}
  triggers:
  - type: redis
    metadata:
      listName: jobs
"""


def so_text(name: str) -> str:
    return SO_TEXT.format(name=name)


def test_multi_document_yaml_with_empty_and_comment_only_documents() -> None:
    text = "---\n# nothing here\n---\n" + so_text("a") + "---\n---\n" + so_text("b") + "...\n"
    result = load_text(text)
    assert result.errors == []
    assert [obj.ref for obj in result.objects] == ["ScaledObject default/a", "ScaledObject default/b"]


def test_one_broken_document_never_hides_the_others() -> None:
    broken = so_text("b").replace("  triggers:", "  pollingInterval: abc\n  triggers:")
    result = load_text(so_text("a") + "---\n" + broken + "---\n" + so_text("c"), "workers.yaml")
    assert [obj.name for obj in result.objects] == ["a", "c"]
    assert len(result.errors) == 1
    error = result.errors[0]
    assert isinstance(error, SpecError)
    assert (error.obj, error.field, error.message) == (
        "ScaledObject default/b",
        "spec.pollingInterval",
        "expected an integer, got 'abc'",
    )


def test_errors_carry_file_and_line() -> None:
    text = so_text("a").replace("  triggers:", "  pollingIntervall: 5\n  triggers:")
    result = load_text(text, "workers.yaml")
    error = result.errors[0]
    assert isinstance(error, ManifestError)
    assert (error.source, error.line) == ("workers.yaml", 8)
    assert str(error) == (
        "workers.yaml:8: ScaledObject default/a: spec.pollingIntervall: "
        "unknown field 'pollingIntervall' (did you mean 'pollingInterval'?)"
    )


def test_missing_field_points_at_the_mapping_that_lacks_it() -> None:
    text = so_text("a").replace("  - type: redis\n", "  - name: first\n")
    error = load_text(text, "w.yaml").errors[0]
    assert (error.field, error.message) == ("spec.triggers[0].type", "required field missing")
    assert isinstance(error, ManifestError) and error.line == 9


def test_errors_of_one_document_come_in_file_order() -> None:
    text = (
        so_text("a")
        .replace("  scaleTargetRef:", "  cooldownPeriod: x\n  scaleTargetRef:")
        .replace("      listName: jobs", "      listName: [a]")
    )
    text = text.replace("  triggers:", "  pollingInterval: y\n  triggers:")
    fields = fields_of(load_text(text).errors)
    assert fields == ["spec.cooldownPeriod", "spec.pollingInterval", "spec.triggers[0].metadata.listName"]


def test_document_without_a_name_is_labelled_by_its_position() -> None:
    text = so_text("a") + "---\napiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {}\nspec: {}\n"
    result = load_text(text, "x.yaml")
    assert {error.obj for error in result.errors} == {"document 2"}
    assert "metadata.name" in fields_of(result.errors)


@pytest.mark.parametrize(
    ("document", "field", "message"),
    [
        ("- a\n- b\n", "", "expected a mapping with apiVersion and kind, got a list"),
        ("just text\n", "", "expected a mapping with apiVersion and kind, got a string"),
        ("kind: ScaledObject\nmetadata: {name: a}\n", "apiVersion", "required field missing"),
        ("apiVersion: keda.sh/v1alpha1\n", "kind", "required field missing"),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n",
            "kind",
            "unknown kind 'Deployment' (apiVersion apps/v1); ebb reads CloudEventSource, ClusterCloudEventSource, "
            "ClusterTriggerAuthentication",
        ),
        (
            "apiVersion: keda.sh/v1\nkind: ScaledObject\nmetadata: {name: a}\n",
            "apiVersion",
            "kind ScaledObject is read as apiVersion keda.sh/v1alpha1, got 'keda.sh/v1'",
        ),
    ],
)
def test_documents_that_are_not_objects_ebb_reads(document: str, field: str, message: str) -> None:
    result = load_text(document, "x.yaml")
    assert result.objects == []
    assert len(result.errors) == 1
    assert result.errors[0].field == field
    assert message in result.errors[0].message


def test_unknown_kinds_can_be_skipped() -> None:
    text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n---\n" + so_text("a")
    result = load_text(text, ignore_unknown=True)
    assert result.errors == []
    assert result.skipped == ["Deployment shop/web"]
    assert len(result.objects) == 1


def test_yaml_syntax_error_names_file_and_line_and_keeps_earlier_documents() -> None:
    text = so_text("a") + "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: [oops\n"
    result = load_text(text, "broken.yaml")
    assert [obj.name for obj in result.objects] == ["a"]
    error = result.errors[0]
    assert isinstance(error, ManifestError)
    assert error.source == "broken.yaml"
    assert error.line == 16  # where the unclosed `[` is, not the end of the file where it was noticed
    assert error.obj == "document 2"
    assert str(error).startswith("broken.yaml:16: document 2: invalid YAML")


def test_duplicate_yaml_keys_are_errors() -> None:
    text = so_text("a").replace("  triggers:", "  pollingInterval: 5\n  pollingInterval: 10\n  triggers:")
    result = load_text(text, "d.yaml")
    assert result.objects == []
    error = result.errors[0]
    assert (error.field, error.message) == ("spec.pollingInterval", "duplicate key 'pollingInterval' (first on line 8)")
    assert isinstance(error, ManifestError) and error.line == 9


def test_timestamps_stay_as_written_except_creation_timestamp() -> None:
    text = (
        so_text("a")
        .replace("      listName: jobs", "      listName: jobs\n      since: 2024-01-31")
        .replace("  name: a\n", "  name: a\n  creationTimestamp: 2024-01-31T10:00:00Z\n", 1)
    )
    so = load_text(text).objects[0]
    assert isinstance(so, ScaledObject)
    assert so.spec.triggers[0].metadata["since"] == "2024-01-31"
    assert so.metadata.creation_timestamp is not None
    assert so.metadata.creation_timestamp.isoformat() == "2024-01-31T10:00:00+00:00"


def test_kubectl_list_documents_are_expanded() -> None:
    text = (
        "apiVersion: v1\nkind: List\nitems:\n"
        "- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: one}\n  data: {a: '1'}\n"
        "- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: two}\n  data: {b: [x]}\n"
    )
    result = load_text(text, "list.yaml")
    assert [obj.ref for obj in result.objects] == ["ConfigMap default/one"]
    assert result.errors[0].obj == "ConfigMap default/two"
    assert result.errors[0].field == "data.b"
    assert isinstance(result.errors[0], ManifestError) and result.errors[0].line == 11


def test_the_same_object_twice_is_an_error_naming_the_first() -> None:
    result = load_text(so_text("a") + "---\n" + so_text("a"), "twice.yaml")
    assert len(result.objects) == 1
    error = result.errors[0]
    assert error.field == "metadata.name"
    assert error.message == "ScaledObject default/a is defined more than once (first at twice.yaml:1)"


def test_two_scaled_objects_for_one_target_are_refused_as_keda_webhook_does() -> None:
    second = so_text("b").replace("    name: b\n", "    name: a\n")
    result = load_text(so_text("a") + "---\n" + second)
    assert [obj.name for obj in result.objects] == ["a"]
    assert (result.errors[0].field, result.errors[0].message) == (
        "spec.scaleTargetRef.name",
        "Deployment 'a' is already scaled by ScaledObject default/a",
    )


_CRON = (
    "  triggers:\n  - {type: cron, metadata: {timezone: UTC, start: '0 * * * *', end: '30 * * * *', "
    "desiredReplicas: '2'}}\n"
)
_GROUP = "apiVersion: ebb.dev/v1alpha1\nkind: ProcessGroup\nmetadata: {name: web}\nspec: {command: [x]}\n"
_HSO = (
    "apiVersion: http.keda.sh/v1alpha1\nkind: HTTPScaledObject\nmetadata: {name: web%s}\nspec:\n"
    "  hosts: [web.test]\n  scaleTargetRef: {name: web, kind: ProcessGroup, service: web, port: 9000}\n"
    "  replicas: {min: 0, max: 2}\n"
)


@pytest.mark.parametrize("name", ["web", "other"])
@pytest.mark.parametrize("api_version", ["", ", apiVersion: ebb.dev/v1alpha1"])
def test_an_http_scaled_object_and_a_scaled_object_on_one_target_are_refused(name: str, api_version: str) -> None:
    """One workload, one scaler: the same rule as ebb's webhook, of the same name too (the add-on's own ScaledObject
    for the HTTPScaledObject would be a second loop: ebb scales the HTTPScaledObject itself)."""
    so = (
        f"apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {{name: {name}}}\nspec:\n"
        f"  scaleTargetRef: {{name: web, kind: ProcessGroup{api_version}}}\n" + _CRON
    )
    result = load_text(_GROUP + "---\n" + _HSO % "" + "---\n" + so)
    assert [obj.kind for obj in result.objects] == ["ProcessGroup", "HTTPScaledObject"]
    assert [(e.obj, e.field, e.message) for e in result.errors] == [
        (
            f"ScaledObject default/{name}",
            "spec.scaleTargetRef.name",
            "ProcessGroup 'web' is already scaled by HTTPScaledObject default/web",
        )
    ]
    # The other way round, and two HTTPScaledObjects: the second is refused.
    result = load_text(_GROUP + "---\n" + so + "---\n" + _HSO % "" + "---\n" + _HSO % "-2")
    assert [e.obj for e in result.errors] == ["HTTPScaledObject default/web", "HTTPScaledObject default/web-2"]


def test_an_http_scaled_object_that_only_routes_claims_nothing() -> None:
    skip = _HSO.replace(
        "metadata: {name: web%s}",
        "metadata:\n  name: web%s\n  annotations:\n    httpscaledobject.keda.sh/skip-scaledobject-creation: 'true'",
    )
    so = (
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: web}\nspec:\n"
        "  scaleTargetRef: {name: web, kind: ProcessGroup}\n" + _CRON
    )
    result = load_text(_GROUP + "---\n" + skip % "" + "---\n" + so)
    assert result.errors == []


def test_two_scaled_objects_sharing_an_hpa_name_are_refused() -> None:
    hpa = "  advanced:\n    horizontalPodAutoscalerConfig:\n      name: shared\n  triggers:"
    result = load_text(so_text("a").replace("  triggers:", hpa) + "---\n" + so_text("b").replace("  triggers:", hpa))
    assert len(result.objects) == 1
    assert result.errors[0].field == "spec.advanced.horizontalPodAutoscalerConfig.name"
    assert "the HPA 'shared' is already managed by ScaledObject default/a" in result.errors[0].message


def test_same_name_in_other_namespace_or_kind_is_fine() -> None:
    other_ns = so_text("a").replace("  name: a\n", "  name: a\n  namespace: other\n", 1)
    group = "apiVersion: ebb.dev/v1alpha1\nkind: ProcessGroup\nmetadata: {name: a}\nspec: {command: [x]}\n"
    result = load_text(so_text("a") + "---\n" + other_ns + "---\n" + group)
    assert result.errors == []
    assert len(result.objects) == 3


def test_load_files_reads_directories_and_reports_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(so_text("a"))
    (tmp_path / "b.yml").write_text(so_text("b"))
    (tmp_path / "notes.txt").write_text("not yaml: [")
    missing = tmp_path / "missing.yaml"
    result = load_files([tmp_path, missing])
    assert [obj.name for obj in result.objects] == ["a", "b"]
    assert [obj.source for obj in result.objects] == [f"{tmp_path / 'a.yaml'}:1", f"{tmp_path / 'b.yml'}:1"]
    assert len(result.errors) == 1
    assert result.errors[0].obj == str(missing)
    assert "cannot read file" in result.errors[0].message


def test_duplicates_across_files_are_detected(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(so_text("a"))
    (tmp_path / "two.yaml").write_text("# again\n" + so_text("a"))
    result = load_files([tmp_path / "one.yaml", tmp_path / "two.yaml"])
    assert len(result.objects) == 1
    error = result.errors[0]
    assert isinstance(error, ManifestError)
    assert (error.source, error.line) == (str(tmp_path / "two.yaml"), 5)
    assert f"first at {tmp_path / 'one.yaml'}:1" in error.message


def test_parse_object_validates_api_data_without_a_file() -> None:
    obj, errors = parse_object(MINIMAL_SCALED_OBJECT)
    assert errors == [] and isinstance(obj, ScaledObject)
    obj, errors = parse_object(edited(MINIMAL_SCALED_OBJECT, ("spec.maxReplicaCount", -1)))
    assert obj is None
    assert [(e.obj, e.field) for e in errors] == [("ScaledObject default/worker", "spec.maxReplicaCount")]
    assert not isinstance(errors[0], ManifestError) or errors[0].source is None


# --- ResourceSet ------------------------------------------------------------------------------------

RESOURCES = """
apiVersion: ebb.dev/v1alpha1
kind: ProcessGroup
metadata: {name: worker}
spec: {command: [work]}
---
apiVersion: ebb.dev/v1alpha1
kind: ProcessGroup
metadata: {name: idle}
spec: {command: [rest], replicas: 2}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: worker-scaler}
spec:
  scaleTargetRef: {kind: ProcessGroup, name: worker}
  triggers: [{type: redis, metadata: {listName: q}}]
---
apiVersion: keda.sh/v1alpha1
kind: ClusterTriggerAuthentication
metadata: {name: shared, namespace: ignored}
spec: {}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {region: eu}
"""


def test_resource_set_lookups() -> None:
    result = load_text(RESOURCES)
    assert result.errors == []
    resources = result.resources
    assert len(resources) == 5
    so = resources.get(ScaledObject, "default", "worker-scaler")
    worker = resources.get(ProcessGroup, "default", "worker")
    idle = resources.get(ProcessGroup, None, "idle")
    assert so is not None and worker is not None and idle is not None
    assert resources.get(ProcessGroup, "other", "worker") is None
    assert resources.get(TriggerAuthentication, "default", "worker") is None
    assert resources.scale_target(so) is worker
    assert resources.scaled_object_for(worker) is so
    assert resources.scaled_object_for(idle) is None
    assert [g.name for g in resources.process_groups()] == ["worker", "idle"]
    cta = resources.get_cluster_trigger_authentication("shared")
    assert isinstance(cta, ClusterTriggerAuthentication)
    assert cta.ref == "ClusterTriggerAuthentication shared" and cta.namespace is None
    assert resources.get_config_map("default", "settings") == {"region": "eu"}
    assert resources.get_secret("default", "settings") is None
    assert resources.discard("ProcessGroup", "default", "idle") is idle
    assert resources.get(ProcessGroup, "default", "idle") is None


def test_resource_set_add_raises_on_conflict() -> None:
    so = load_text(so_text("a")).objects[0]
    clone = load_text(so_text("a")).objects[0]
    resources = ResourceSet([so])
    with pytest.raises(SpecError) as caught:
        resources.add(clone)
    assert caught.value.field == "metadata.name"
    resources.replace(clone)
    assert resources.get(ScaledObject, "default", "a") is clone


def test_secret_store_decodes_data() -> None:
    text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {u: YWRtaW4=}\nstringData: {p: pw}\n"
    resources = load_text(text).resources
    assert resources.get_secret("default", "s") == {"u": "admin", "p": "pw"}
    assert isinstance(resources.get(Secret, "default", "s"), Secret)
    assert resources.get(ConfigMap, "default", "s") is None


@pytest.mark.parametrize(
    ("edits", "fields"),
    [
        ([], []),
        ([("spec.pollingInterval", 5)], []),
        ([("spec.minReplicaCount", 1), ("spec.pollingInterval", 5)], ["spec.pollingInterval"]),
        ([("spec.minReplicaCount", 1), ("spec.cooldownPeriod", 5)], ["spec.cooldownPeriod"]),
        ([("spec.minReplicaCount", 1), ("spec.cooldownPeriod", 5), ("spec.idleReplicaCount", 0)], []),
        ([("spec.minReplicaCount", 1), ("spec.pollingInterval", 5), ("spec.triggers.0.useCachedMetrics", True)], []),
        (
            [("spec.triggers", [{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "50"}}])],
            ["spec.triggers", "spec.minReplicaCount"],  # the request check needs the cluster: a warning here
        ),
    ],
)
def test_settings_without_effect_are_warnings_not_errors(edits: list[tuple[str, object]], fields: list[str]) -> None:
    text = yaml.safe_dump(edited(MINIMAL_SCALED_OBJECT, *edits))
    result = load_text(text, "w.yaml")
    assert result.errors == []
    assert len(result.objects) == 1
    assert fields_of(result.warnings) == fields
    assert all(isinstance(w, ManifestError) and w.line is not None for w in result.warnings)
