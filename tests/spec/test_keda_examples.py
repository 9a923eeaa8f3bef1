"""The manifests of KEDA's documentation (keda-docs 2.20) load unchanged, with KEDA's defaults filled in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ebb.scaling.types import PauseState, ScalingModifiers
from ebb.spec import (
    ClusterTriggerAuthentication,
    LoadResult,
    ScaledJob,
    ScaledObject,
    Secret,
    TriggerAuthentication,
    load_files,
    load_text,
    object_policy,
    pause_state,
    unsupported_auth_providers,
)
from tests.spec._support import assert_contains

EXAMPLES = Path(__file__).parent / "keda_examples"
FILES = sorted(EXAMPLES.glob("*.yaml"))


def load(name: str) -> LoadResult:
    result = load_files([EXAMPLES / name])
    assert result.errors == []
    return result


def scaled_object(result: LoadResult, name: str) -> ScaledObject:
    found = result.resources.get(ScaledObject, "default", name)
    assert found is not None
    return found


def scaled_job(result: LoadResult, name: str) -> ScaledJob:
    found = result.resources.get(ScaledJob, "default", name)
    assert found is not None
    return found


def test_there_are_examples() -> None:
    assert {path.name for path in FILES} >= {
        "scaledobject-spec.yaml",
        "scaledjob-spec.yaml",
        "scaling-deployments.yaml",
        "scaling-jobs.yaml",
        "authentication.yaml",
    }


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_example_loads_unchanged(path: Path) -> None:
    result = load_files([path])
    assert result.errors == []
    documents: list[dict[str, Any]] = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert len(result.objects) == len(documents)
    for document, obj in zip(documents, result.objects, strict=True):
        assert_contains(document, obj.to_manifest(), obj.ref)


def test_the_docs_unquoted_annotation_is_refused_as_the_api_server_refuses_it() -> None:
    text = (EXAMPLES / "scaledjob-spec.yaml").read_text().replace('paused: "true"', "paused: true")
    result = load_text(text, "scaledjob-spec.yaml")
    assert [(e.field, "quote it" in e.message) for e in result.errors] == [
        ('metadata.annotations["autoscaling.keda.sh/paused"]', True)
    ]


def test_scaledobject_spec_overview() -> None:
    so = scaled_object(load("scaledobject-spec.yaml"), "orders")
    spec = so.spec
    assert (spec.scale_target_ref.api_version, spec.scale_target_ref.kind) == ("apps/v1", "Deployment")
    assert spec.scale_target_ref.env_source_container_name == "orders"
    assert (spec.idle_replica_count, spec.min_replica_count, spec.max_replica_count) == (0, 1, 100)
    assert so.hpa_name == "orders-hpa"
    assert spec.advanced is not None and spec.advanced.restore_to_original_replica_count
    assert spec.behavior is not None and spec.behavior.scale_down is not None
    assert spec.behavior.scale_down.stabilization_window_seconds == 300
    assert pause_state(so) == PauseState(paused=True)
    policy = object_policy(so)
    assert policy.fallback is not None and (policy.fallback.failure_threshold, policy.fallback.replicas) == (3, 6)


def test_scaling_modifiers_failover_example() -> None:
    so = scaled_object(load("scaledobject-spec.yaml"), "failover")
    assert so.hpa_name == "keda-hpa-failover"
    assert [t.name for t in so.spec.triggers] == ["best_metric", "slower_metric", "metric_backup"]
    policy = object_policy(so)
    assert policy.modifiers == ScalingModifiers(
        formula="best_metric ?? slower_metric ?? metric_backup ?? 8", target=2.0
    )
    assert policy.fallback is not None and policy.fallback.behavior == "scalingModifiers"


def test_tolerance_where_autoscaling_v2_puts_it() -> None:
    so = scaled_object(load("scaledobject-spec.yaml"), "tolerant")
    assert so.spec.behavior is not None and so.spec.behavior.scale_down is not None
    assert so.spec.behavior.scale_down.tolerance == 0.1
    assert so.spec.triggers[0].metric_type == "Utilization"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("paused", PauseState(paused=True, paused_replicas=0)),
        ("paused-scale-in", PauseState(paused_scale_in=True)),
        ("paused-scale-out", PauseState(paused_scale_out=True)),
        ("forced", PauseState(force_activation=True)),
        ("adopter", PauseState()),
    ],
)
def test_scaling_deployments_annotations(name: str, expected: PauseState) -> None:
    assert pause_state(scaled_object(load("scaling-deployments.yaml"), name)) == expected


def test_scaling_deployments_modifier_examples() -> None:
    result = load("scaling-deployments.yaml")
    average = object_policy(scaled_object(result, "compose-average")).modifiers
    assert average == ScalingModifiers(
        formula="(trig_one + trig_two)/2", target=2.0, activation_target=2.0, metric_type="AverageValue"
    )
    assert object_policy(scaled_object(result, "ternary")).modifiers is not None
    assert scaled_object(result, "adopter").hpa_name == "existing-hpa"
    labels = scaled_object(result, "excluded-labels").metadata.labels
    assert labels == {
        "team": "backend",
        "foo.bar/environment": "bf5011472247b67cce3ee7b24c9a08c5",
        "foo.bar/version": "1",
    }


def test_scaledjob_spec_overview() -> None:
    result = load("scaledjob-spec.yaml")
    job = scaled_job(result, "reports")
    spec = job.spec
    assert pause_state(job) == PauseState(paused=True)
    assert job.metadata.annotations["autoscaling.keda.sh/paused"] == "true"
    target = spec.job_target_ref
    assert (target.parallelism, target.completions, target.active_deadline_seconds, target.backoff_limit) == (
        1,
        1,
        600,
        6,
    )
    assert target.template.spec.restart_policy == "OnFailure"  # KEDA's default when the template has none
    assert spec.job_container.command == ["render-report"]
    assert spec.effective_rollout_strategy == "gradual"
    assert spec.rollout.propagation_policy == "foreground"
    strategy = spec.scaling_strategy
    assert (strategy.strategy, strategy.custom_scaling_queue_length_deduction) == ("custom", 1)
    assert strategy.custom_scaling_running_job_percentage == "0.5"
    assert strategy.pending_pod_conditions == ["Ready", "PodScheduled", "AnyOtherCustomPodCondition"]
    assert (spec.min_replica_count, spec.successful_jobs_history_limit, spec.failed_jobs_history_limit) == (10, 5, 5)

    eager = scaled_job(result, "eager-worker").spec
    assert (eager.polling_interval, eager.max_replica_count, eager.min_replica_count) == (10, 10, 0)
    assert (eager.successful_jobs_history_limit, eager.failed_jobs_history_limit) == (100, 100)
    assert eager.scaling_strategy.multiple_scalers_calculation == "max"
    assert eager.effective_rollout_strategy == "immediate"


def test_scaling_jobs_rabbitmq_example() -> None:
    result = load("scaling-jobs.yaml")
    job = scaled_job(result, "rabbitmq-consumer")
    container = job.spec.job_container
    assert container.name == "demo-rabbitmq-client"
    assert container.command == ["receive", "amqp://user:PASSWORD@rabbitmq.default.svc.cluster.local:5672"]
    assert (
        container.env_from[0].secret_ref is not None
        and container.env_from[0].secret_ref.name == "rabbitmq-consumer-secrets"
    )
    assert job.spec.job_target_ref.template.spec.restart_policy == "Never"
    assert job.spec.triggers[0].metadata == {"queueName": "hello", "host": "RabbitMqHost", "queueLength": "5"}
    assert pause_state(scaled_job(result, "unpaused")) == PauseState()
    secret = result.resources.get(Secret, "default", "rabbitmq-consumer")
    assert secret is not None
    assert secret.decoded() == {"RabbitMqHost": "amqp://user:PASSWORD@rabbitmq.default.svc.cluster.local:5672"}


def test_authentication_examples() -> None:
    result = load("authentication.yaml")
    everything = result.resources.get(TriggerAuthentication, "default", "everything")
    assert everything is not None
    spec = everything.spec
    assert spec.secret_target_ref[0].key == "azure-storage-connectionstring"
    assert spec.env[0].container_name == "my-container"
    assert spec.hashi_corp_vault is not None and spec.hashi_corp_vault.secrets[0].path == "secret/data/rabbitmq"
    assert spec.azure_key_vault is not None and spec.azure_key_vault.cloud is not None
    assert spec.azure_key_vault.cloud.key_vault_resource_url == "https://vault.azure.example"
    assert spec.aws_secret_manager is not None and spec.aws_secret_manager.credentials is not None
    assert spec.aws_secret_manager.credentials.access_key.value_from.secret_key_ref.key == "AWS_ACCESS_KEY_ID"
    assert spec.gcp_secret_manager is not None and spec.gcp_secret_manager.secrets[0].id == "pubsub-credentials"
    assert unsupported_auth_providers(spec) == [
        "podIdentity (provider azure-workload)",
        "hashiCorpVault",
        "azureKeyVault",
        "gcpSecretManager",
        "awsSecretManager",
    ]
    cta = result.resources.get_cluster_trigger_authentication("shared-credentials")
    assert isinstance(cta, ClusterTriggerAuthentication)
    assert cta.spec.file_path == "credentials/params.json"
    ref = scaled_object(result, "uses-cluster-auth").spec.triggers[0].authentication_ref
    assert ref is not None and (ref.name, ref.kind) == ("shared-credentials", "ClusterTriggerAuthentication")
    irsa = result.resources.get(TriggerAuthentication, "default", "aws-irsa")
    assert irsa is not None and irsa.spec.pod_identity is not None
    assert (irsa.spec.pod_identity.role_arn, irsa.spec.pod_identity.identity_owner) == (
        "arn:aws:iam::123456789012:role/keda",
        "keda",
    )
