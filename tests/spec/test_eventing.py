"""CloudEventSource and ClusterCloudEventSource manifests: KEDA's accepted unchanged, its refusals refused."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ebb.cli import app
from ebb.spec import load_text
from ebb.spec.models import (
    CLOUDEVENT_TYPES,
    SUBSCRIBABLE_CLOUDEVENT_TYPES,
    CloudEventSource,
    ClusterCloudEventSource,
)

#: KEDA's config/samples/eventing_v1alpha1_{cloudeventsource,clustercloudeventsource}.yaml, unchanged.
KEDA_SAMPLES = """\
apiVersion: eventing.keda.sh/v1alpha1
kind: CloudEventSource
metadata:
  labels:
    app.kubernetes.io/name: cloudeventsource
    app.kubernetes.io/instance: cloudeventsource-sample
    app.kubernetes.io/part-of: keda
    app.kubernetes.io/managed-by: kustomize
    app.kubernetes.io/created-by: keda
  name: cloudeventsource-sample
spec:
  clusterName: cluster-sample
  destination:
    http:
      uri: http://foo.bar
---
apiVersion: eventing.keda.sh/v1alpha1
kind: ClusterCloudEventSource
metadata:
  labels:
    app.kubernetes.io/name: clustercloudeventsource
    app.kubernetes.io/instance: clustercloudeventsource-sample
    app.kubernetes.io/part-of: keda
    app.kubernetes.io/managed-by: kustomize
    app.kubernetes.io/created-by: keda
  name: clustercloudeventsource-sample
spec:
  clusterName: clustercluster-sample
  destination:
    http:
      uri: http://foo.bar
"""


def one(spec: str, kind: str = "CloudEventSource") -> tuple[object, list[str]]:
    text = f"apiVersion: eventing.keda.sh/v1alpha1\nkind: {kind}\nmetadata:\n  name: s\n  namespace: shop\n" + spec
    result = load_text(textwrap.dedent(text))
    return (result.objects[0] if result.objects else None), [str(e) for e in result.errors]


def test_kedas_samples_load_unchanged() -> None:
    result = load_text(KEDA_SAMPLES)
    assert result.ok, result.errors
    ces, cces = result.objects
    assert isinstance(ces, CloudEventSource) and ces.ref == "CloudEventSource default/cloudeventsource-sample"
    assert (
        isinstance(cces, ClusterCloudEventSource)
        and cces.ref == "ClusterCloudEventSource clustercloudeventsource-sample"
    )
    assert cces.namespace is None
    assert ces.spec.cluster_name == "cluster-sample"
    assert ces.spec.destination.http is not None and ces.spec.destination.http.uri == "http://foo.bar"


def test_every_subscribable_type_is_accepted_in_either_list() -> None:
    """KEDA's webhook test: each of AllEventTypes, included or excluded, is valid."""
    for event_type in SUBSCRIBABLE_CLOUDEVENT_TYPES:
        for key in ("includedEventTypes", "excludedEventTypes"):
            obj, errors = one(
                f"spec:\n  destination:\n    http:\n      uri: http://sink/\n  eventSubscription:\n"
                f"    {key}: [{event_type}]\n"
            )
            assert obj is not None, errors


@pytest.mark.parametrize(
    ("subscription", "field", "fragment"),
    [
        # KEDA's validateSpec: both lists set is refused, even when one is empty.
        (
            "includedEventTypes: [keda.scaledobject.ready.v1]\n    excludedEventTypes: [keda.scaledjob.ready.v1]",
            "spec.eventSubscription.excludedEventTypes",
            "at the same time is not supported",
        ),
        (
            "includedEventTypes: []\n    excludedEventTypes: [keda.scaledjob.ready.v1]",
            "spec.eventSubscription.excludedEventTypes",
            "at the same time is not supported",
        ),
        # The CRD enum lists the authentication types; KEDA's webhook (AllEventTypes) refuses them in a filter.
        (
            "includedEventTypes: [keda.authentication.triggerauthentication.created.v1]",
            "spec.eventSubscription.includedEventTypes[0]",
            "not supported in a subscription",
        ),
        (
            "excludedEventTypes: [keda.scaledobject.ready.v1, "
            "keda.authentication.clustertriggerauthentication.removed.v1]",
            "spec.eventSubscription.excludedEventTypes[1]",
            "not supported in a subscription",
        ),
        # Not a type at all: the CRD's enum.
        (
            "includedEventTypes: [keda.scaledobject.scaled.v1]",
            "spec.eventSubscription.includedEventTypes[0]",
            "expected",
        ),
    ],
)
def test_kedas_refusals(subscription: str, field: str, fragment: str) -> None:
    obj, errors = one(
        f"spec:\n  destination:\n    http:\n      uri: http://sink/\n  eventSubscription:\n    {subscription}\n"
    )
    assert obj is None
    (error,) = errors
    assert field in error and fragment in error


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ("spec: {}\n", "spec.destination", "required"),
        ("spec:\n  destination: {}\n", "spec.destination", "http (uri) or azureEventGridTopic"),
        ("spec:\n  destination:\n    http: {}\n", "spec.destination.http.uri", "required"),
        ("spec:\n  destination:\n    http:\n      uri: /events\n", "spec.destination.http.uri", "http:// or https://"),
        (
            "spec:\n  destination:\n    azureEventGridTopic: {}\n",
            "spec.destination.azureEventGridTopic.endpoint",
            "required",
        ),
        (
            "spec:\n  destination:\n    http:\n      uri: http://s/\n  authenticationRef: {}\n",
            "spec.authenticationRef.name",
            "required",
        ),
        ("spec:\n  destinations: {}\n", "spec.destinations", "unknown field"),
    ],
)
def test_malformed_sources_name_the_field(spec: str, field: str, fragment: str) -> None:
    obj, errors = one(spec)
    assert obj is None
    assert any(field in e and fragment in e for e in errors), errors


def test_the_type_lists_are_kedas() -> None:
    assert len(CLOUDEVENT_TYPES) == 19
    assert len(SUBSCRIBABLE_CLOUDEVENT_TYPES) == 13
    assert all(".authentication." not in t for t in SUBSCRIBABLE_CLOUDEVENT_TYPES)


runner = CliRunner()


def test_check_shows_sources_and_warns_about_what_ebb_cannot_send_to(tmp_path: Path) -> None:
    path = tmp_path / "events.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            apiVersion: eventing.keda.sh/v1alpha1
            kind: CloudEventSource
            metadata: {name: sink, namespace: shop}
            spec:
              destination:
                http: {uri: "http://127.0.0.1:8080/events"}
              eventSubscription:
                excludedEventTypes: [keda.scaledobject.paused.v1]
            ---
            apiVersion: eventing.keda.sh/v1alpha1
            kind: ClusterCloudEventSource
            metadata: {name: grid}
            spec:
              authenticationRef: {name: grid-auth, kind: ClusterTriggerAuthentication}
              destination:
                azureEventGridTopic: {endpoint: "https://topic.eventgrid.azure.net/api/events"}
            """
        )
    )
    result = runner.invoke(app, ["check", str(path)], terminal_width=200)
    assert result.exit_code == 0, result.output  # KEDA accepts both
    out = " ".join(result.output.split())  # the console wraps long lines
    assert "✓ CloudEventSource shop/sink" in out
    assert "http http://127.0.0.1:8080/events" in out
    assert "all but keda.scaledobject.paused.v1" in out
    assert "! ClusterCloudEventSource grid" in out
    assert "Azure Event Grid topics are not supported by ebb" in out
    assert "ClusterTriggerAuthentication grid-auth not found" in out


def test_check_refuses_what_kedas_webhook_refuses(tmp_path: Path) -> None:
    path = tmp_path / "events.yaml"
    path.write_text(
        "apiVersion: eventing.keda.sh/v1alpha1\nkind: CloudEventSource\nmetadata: {name: s}\nspec:\n"
        "  destination: {http: {uri: 'http://x/'}}\n  eventSubscription:\n"
        "    includedEventTypes: [keda.scaledobject.ready.v1]\n    excludedEventTypes: [keda.scaledobject.failed.v1]\n"
    )
    result = runner.invoke(app, ["check", str(path)], terminal_width=200)
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "includedEventTypes and excludedEventTypes at the same time is not supported" in out


def test_check_masks_credentials_in_the_destination(tmp_path: Path) -> None:
    path = tmp_path / "events.yaml"
    path.write_text(
        "apiVersion: eventing.keda.sh/v1alpha1\nkind: CloudEventSource\nmetadata: {name: s}\nspec:\n"
        "  destination: {http: {uri: 'https://ebb:s3cr3t-pass@events.example.com/in'}}\n"
    )
    result = runner.invoke(app, ["check", str(path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "s3cr3t-pass" not in result.output
    assert "https://ebb:***@events.example.com/in" in " ".join(result.output.split())
