"""KEDA's validations, one row per rule, each with a manifest that breaks it: the audit behind docs/validation.md.

KEDA refuses a manifest at four layers: the CRD's OpenAPI schema (`kubectl apply`), its admission webhooks,
its controllers before a scale loop starts, and each scaler's metadata parsing. Every row names the layer and
where in KEDA's code (main @ 8b4f083) the rule lives, and carries `bad`, edits to a small valid manifest that
break the rule, with the field ebb must name, and `good`, the nearest edits that KEDA accepts.
`scripts/gen_validation_doc.py` runs every `bad` case through `ebb check` to write the table, and
tests/spec/test_keda_rules.py checks each row both ways.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Final, Literal

Layer = Literal["CRD schema", "admission webhook", "controller", "scaler"]
#: error: `ebb check`, `ebb run` and the webhook refuse it. warning: valid, but said (KEDA warns or ignores).
#: note: said, not refused. accepted: KEDA accepts it, so must ebb. cluster: needs the cluster's state
#: (`existing` objects); ebb's webhook refuses it.
Outcome = Literal["error", "warning", "note", "accepted", "cluster"]

DELETE: Final = object()

BASES: Final[dict[str, dict[str, Any]]] = {
    "ScaledObject": {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "worker"},
        "spec": {
            "scaleTargetRef": {"name": "worker"},
            "triggers": [{"type": "redis", "metadata": {"address": "redis:6379", "listName": "jobs"}}],
        },
    },
    "ScaledJob": {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledJob",
        "metadata": {"name": "jobs"},
        "spec": {
            "jobTargetRef": {"template": {"spec": {"containers": [{"name": "job", "image": "job:1"}]}}},
            "triggers": [{"type": "redis", "metadata": {"address": "redis:6379", "listName": "jobs"}}],
        },
    },
    "TriggerAuthentication": {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": "auth"},
        "spec": {"secretTargetRef": [{"parameter": "password", "name": "creds", "key": "password"}]},
    },
    "ClusterTriggerAuthentication": {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ClusterTriggerAuthentication",
        "metadata": {"name": "auth"},
        "spec": {"secretTargetRef": [{"parameter": "password", "name": "creds", "key": "password"}]},
    },
    "InterceptorRoute": {
        "apiVersion": "http.keda.sh/v1beta1",
        "kind": "InterceptorRoute",
        "metadata": {"name": "web"},
        "spec": {"target": {"service": "web", "port": 8080}, "scalingMetric": {"concurrency": {"targetValue": 100}}},
    },
}


@dataclass(frozen=True)
class Rule:
    id: str
    #: The kind, or `trigger <type>` for a scaler's rule (checked on a ScaledObject).
    scope: str
    layer: Layer
    rule: str
    #: Where KEDA makes the check.
    keda: str
    #: Edits to the base manifest: dotted paths (list indexes as numbers) to values, DELETE removes.
    bad: dict[str, Any]
    #: The field ebb's finding names.
    field: str
    good: dict[str, Any] | None = None
    outcome: Outcome = "error"
    #: Parameters a TriggerAuthentication gives trigger 0 (a Secret and the authenticationRef are added).
    auth: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Why ebb differs from KEDA here, when it does.
    differs: str = ""
    #: For `cluster` rules: what the cluster already holds (manifests as the API returns them).
    existing: tuple[dict[str, Any], ...] = ()

    @property
    def kind(self) -> str:
        return "ScaledObject" if self.scope.startswith("trigger ") else self.scope


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    parts: list[Any] = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = doc
    for part in parts[:-1]:
        node = node[part]
    if value is DELETE:
        del node[parts[-1]]
    elif isinstance(node, list) and parts[-1] == len(node):
        node.append(value)
    else:
        node[parts[-1]] = value


def manifests(rule: Rule, edits: dict[str, Any]) -> list[dict[str, Any]]:
    """The documents of one case: the base manifest with `edits` applied, and what its `auth` needs."""
    doc = copy.deepcopy(BASES[rule.kind])
    for path, value in edits.items():
        _set(doc, path, value if value is DELETE else copy.deepcopy(value))
    docs = [doc]
    if rule.auth:
        doc["spec"]["triggers"][0]["authenticationRef"] = {"name": "rule-auth"}
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "rule-auth"},
                "stringData": dict(rule.auth),
            }
        )
        docs.append(
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "TriggerAuthentication",
                "metadata": {"name": "rule-auth"},
                "spec": {
                    "secretTargetRef": [{"parameter": k, "name": "rule-auth", "key": k} for k in sorted(rule.auth)]
                },
            }
        )
    return docs


def _trigger(type_: str, **metadata: str) -> dict[str, Any]:
    return {"type": type_, "metadata": metadata}


REDIS = {"address": "redis:6379", "listName": "jobs"}
STREAM = {"address": "redis:6379", "stream": "orders"}
PG = {"query": "SELECT 1", "targetQueryValue": "5", "host": "db", "port": "5432", "userName": "u", "dbName": "d",
      "sslmode": "disable"}  # fmt: skip
MYSQL = {"query": "SELECT 1", "queryValue": "5", "host": "db", "port": "3306", "dbName": "d", "username": "u"}
RMQ = {"host": "amqp://rabbit:5672/", "queueName": "q"}
RMQ_HTTP = {"host": "http://rabbit:15672/", "queueName": "q"}
PROM = {"serverAddress": "http://prometheus:9090", "query": "up", "threshold": "5"}
API = {"url": "http://api/stats", "valueLocation": "queue.depth", "targetValue": "5"}
CRON = {"timezone": "Etc/UTC", "start": "0 8 * * *", "end": "0 18 * * *", "desiredReplicas": "3"}
NATS = {"natsServerMonitoringEndpoint": "nats:8222", "account": "$G", "stream": "s", "consumer": "c"}
OTHER_SO: Final = {
    "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "other", "namespace": "default"},
    "spec": {"scaleTargetRef": {"name": "worker"}, "triggers": [{"type": "cron", "metadata": {}}]},
}  # fmt: skip
OTHER_SO_HPA: Final = {
    "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "other", "namespace": "default"},
    "spec": {"scaleTargetRef": {"name": "elsewhere"}, "triggers": [{"type": "cron", "metadata": {}}],
             "advanced": {"horizontalPodAutoscalerConfig": {"name": "shared"}}},
}  # fmt: skip
FOREIGN_HPA: Final = {
    "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "by-hand", "namespace": "default"},
    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"}},
}  # fmt: skip
DEPLOYMENT: Final = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "worker", "namespace": "default"},
    "spec": {"template": {"spec": {"containers": [{"name": "app", "resources": {"requests": {"memory": "1Gi"}}}]}}},
}  # fmt: skip
AWS: Final = {"awsAccessKeyID": "AKIDEXAMPLE", "awsSecretAccessKey": "secret"}
DYNAMO = {"awsRegion": "eu-west-1", "tableName": "jobs", "keyConditionExpression": "#q = :q",
          "expressionAttributeNames": '{"#q": "queue"}', "expressionAttributeValues": '{":q": {"S": "orders"}}',
          "targetValue": "5"}  # fmt: skip
CLOUDWATCH = {"awsRegion": "eu-west-1", "namespace": "AWS/SQS", "metricName": "ApproximateNumberOfMessagesVisible",
              "dimensionName": "QueueName", "dimensionValue": "orders", "targetMetricValue": "10",
              "minMetricValue": "0"}  # fmt: skip
T0 = "spec.triggers.0"
MD = "spec.triggers.0.metadata"
F0 = "spec.triggers[0]"


def _meta(base: dict[str, str], **changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = dict(base)
    for key, value in changes.items():
        if value is DELETE:
            out.pop(key, None)
        else:
            out[key] = value
    return out


RULES: Final[list[Rule]] = [
    # --- ScaledObject: CRD schema -------------------------------------------------------------------------
    Rule("so-target-required", "ScaledObject", "CRD schema", "spec.scaleTargetRef is required",
         "keda.sh_scaledobjects.yaml: spec.required", {"spec.scaleTargetRef": DELETE}, "spec.scaleTargetRef"),
    Rule("so-target-name", "ScaledObject", "CRD schema", "scaleTargetRef.name is a non-empty string",
         "keda.sh_scaledobjects.yaml: scaleTargetRef.name minLength 1", {"spec.scaleTargetRef.name": ""},
         "spec.scaleTargetRef.name", {"spec.scaleTargetRef.name": "w"}),
    Rule("so-triggers-min", "ScaledObject", "CRD schema", "spec.triggers has at least one item",
         "keda.sh_scaledobjects.yaml: triggers minItems 1", {"spec.triggers": []}, "spec.triggers"),
    Rule("so-trigger-type", "ScaledObject", "CRD schema", "triggers[].type is a non-empty string",
         "keda.sh_scaledobjects.yaml: triggers[].type minLength 1", {f"{T0}.type": ""}, f"{F0}.type"),
    Rule("so-trigger-metadata", "ScaledObject", "CRD schema", "triggers[].metadata is required",
         "keda.sh_scaledobjects.yaml: triggers[].required", {f"{T0}.metadata": DELETE}, f"{F0}.metadata"),
    Rule("so-metadata-strings", "ScaledObject", "CRD schema",
         "trigger metadata values are strings (map[string]string)",
         "keda.sh_scaledobjects.yaml: metadata additionalProperties type string", {f"{MD}.listLength": 5},
         f"{F0}.metadata.listLength", {f"{MD}.listLength": "5"},
         differs="For local objects (a ProcessGroup target) ebb reads a YAML number or boolean as its text."),
    Rule("so-labels-strings", "ScaledObject", "CRD schema", "labels and annotations are strings",
         "ObjectMeta (API server)", {"metadata.labels": {"tier": 1}}, "metadata.labels.tier",
         {"metadata.labels": {"tier": "1"}}),
    Rule("so-name-dns", "ScaledObject", "CRD schema", "metadata.name is a DNS subdomain name",
         "API server (ObjectMeta)", {"metadata.name": "Worker_1"}, "metadata.name", {"metadata.name": "worker-1"}),
    Rule("so-unknown-field", "ScaledObject", "CRD schema", "no unknown fields (kubectl's default strict validation)",
         "API server field validation", {"spec.pollingIntervall": 5}, "spec.pollingIntervall"),
    Rule("so-polling-int", "ScaledObject", "CRD schema", "pollingInterval is an integer",
         "keda.sh_scaledobjects.yaml: pollingInterval type integer", {"spec.pollingInterval": "30"},
         "spec.pollingInterval", {"spec.pollingInterval": 30}),
    Rule("so-polling-min", "ScaledObject", "CRD schema", "pollingInterval ≥ 1",
         "keda.sh_scaledobjects.yaml: pollingInterval minimum 1", {"spec.pollingInterval": 0},
         "spec.pollingInterval", {"spec.pollingInterval": 1}),
    Rule("so-cooldown-min", "ScaledObject", "CRD schema", "cooldownPeriod ≥ 0",
         "keda.sh_scaledobjects.yaml: cooldownPeriod minimum 0", {"spec.cooldownPeriod": -1},
         "spec.cooldownPeriod", {"spec.cooldownPeriod": 0}),
    Rule("so-initial-cooldown-min", "ScaledObject", "CRD schema", "initialCooldownPeriod ≥ 0",
         "keda.sh_scaledobjects.yaml: initialCooldownPeriod minimum 0", {"spec.initialCooldownPeriod": -1},
         "spec.initialCooldownPeriod", {"spec.initialCooldownPeriod": 0}),
    Rule("so-min-min", "ScaledObject", "CRD schema", "minReplicaCount ≥ 0",
         "keda.sh_scaledobjects.yaml: minReplicaCount minimum 0", {"spec.minReplicaCount": -1},
         "spec.minReplicaCount", {"spec.minReplicaCount": 0}),
    Rule("so-max-min", "ScaledObject", "CRD schema", "maxReplicaCount ≥ 1",
         "keda.sh_scaledobjects.yaml: maxReplicaCount minimum 1", {"spec.maxReplicaCount": 0},
         "spec.maxReplicaCount", {"spec.maxReplicaCount": 1}),
    Rule("so-idle-min", "ScaledObject", "CRD schema", "idleReplicaCount ≥ 0",
         "keda.sh_scaledobjects.yaml: idleReplicaCount minimum 0",
         {"spec.idleReplicaCount": -1, "spec.minReplicaCount": 1}, "spec.idleReplicaCount",
         {"spec.idleReplicaCount": 0, "spec.minReplicaCount": 1}),
    Rule("so-min-le-max", "ScaledObject", "CRD schema",
         "minReplicaCount ≤ maxReplicaCount (100 when unset); the webhook checks it again",
         "keda.sh_scaledobjects.yaml x-kubernetes-validations; CheckReplicaCountBoundsAreValid",
         {"spec.minReplicaCount": 101}, "spec.minReplicaCount", {"spec.minReplicaCount": 100}),
    Rule("so-fallback-threshold", "ScaledObject", "CRD schema", "fallback.failureThreshold is required",
         "keda.sh_scaledobjects.yaml: fallback.required", {"spec.fallback": {"replicas": 2}},
         "spec.fallback.failureThreshold", {"spec.fallback": {"replicas": 2, "failureThreshold": 3}}),
    Rule("so-fallback-replicas", "ScaledObject", "CRD schema", "fallback.replicas is required and ≥ 0",
         "keda.sh_scaledobjects.yaml: fallback.required, replicas minimum 0",
         {"spec.fallback": {"failureThreshold": 3, "replicas": -1}}, "spec.fallback.replicas",
         {"spec.fallback": {"failureThreshold": 3, "replicas": 0}}),
    Rule("so-fallback-behavior", "ScaledObject", "CRD schema",
         "fallback.behavior is static, currentReplicas, currentReplicasIfHigher, currentReplicasIfLower or "
         "scalingModifiers", "keda.sh_scaledobjects.yaml: fallback.behavior enum",
         {"spec.fallback": {"failureThreshold": 3, "replicas": 2, "behavior": "latest"}}, "spec.fallback.behavior",
         {"spec.fallback": {"failureThreshold": 3, "replicas": 2, "behavior": "currentReplicas"}}),
    Rule("so-auth-kind", "ScaledObject", "CRD schema",
         "authenticationRef.kind is TriggerAuthentication or ClusterTriggerAuthentication",
         "keda.sh_scaledobjects.yaml: authenticationRef.kind enum",
         {f"{T0}.authenticationRef": {"name": "a", "kind": "Secret"}}, f"{F0}.authenticationRef.kind"),
    Rule("so-modifiers-metric-type", "ScaledObject", "CRD schema",
         "scalingModifiers.metricType is AverageValue or Value",
         "keda.sh_scaledobjects.yaml: scalingModifiers.metricType enum; validateScalingModifiersTarget",
         {f"{T0}.name": "q", "spec.advanced": {"scalingModifiers": {"formula": "q", "target": "5",
                                                                     "metricType": "Utilization"}}},
         "spec.advanced.scalingModifiers.metricType",
         {f"{T0}.name": "q", "spec.advanced": {"scalingModifiers": {"formula": "q", "target": "5",
                                                                     "metricType": "Value"}}}),
    # --- ScaledObject: admission webhook ------------------------------------------------------------------
    Rule("so-name-length", "ScaledObject", "admission webhook",
         "the name is at most 63 characters (it becomes a label value)", "verifyName",
         {"metadata.name": "w" * 64}, "metadata.name", {"metadata.name": "w" * 54}),
    Rule("so-hpa-name-length", "ScaledObject", "admission webhook",
         "the HPA name (keda-hpa-<name> by default) is at most 63 characters", "verifyName",
         {"metadata.name": "w" * 55}, "metadata.name",
         {"metadata.name": "w" * 55, "spec.advanced": {"horizontalPodAutoscalerConfig": {"name": "short"}}}),
    Rule("so-idle-lt-min", "ScaledObject", "admission webhook",
         "idleReplicaCount < minReplicaCount", "verifyReplicaCount (CheckReplicaCountBoundsAreValid)",
         {"spec.idleReplicaCount": 1, "spec.minReplicaCount": 1}, "spec.idleReplicaCount",
         {"spec.idleReplicaCount": 0, "spec.minReplicaCount": 1}),
    Rule("so-fallback-needs-trigger", "ScaledObject", "admission webhook",
         "fallback needs a trigger that is not cpu or memory (unless scalingModifiers)",
         "verifyFallback (CheckFallbackValid)",
         {"spec.triggers": [{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}],
          "spec.minReplicaCount": 1, "spec.fallback": {"failureThreshold": 3, "replicas": 2}}, "spec.fallback",
         {"spec.fallback": {"failureThreshold": 3, "replicas": 2}}),
    Rule("so-fallback-modifiers", "ScaledObject", "admission webhook",
         "fallback.behavior scalingModifiers needs scalingModifiers.formula", "verifyScaledObjects",
         {"spec.fallback": {"failureThreshold": 3, "replicas": 2, "behavior": "scalingModifiers"}},
         "spec.fallback.behavior",
         {f"{T0}.name": "q", "spec.advanced": {"scalingModifiers": {"formula": "q", "target": "5"}},
          "spec.fallback": {"failureThreshold": 3, "replicas": 2, "behavior": "scalingModifiers"}}),
    Rule("so-modifiers-formula", "ScaledObject", "admission webhook",
         "scalingModifiers in use needs a formula", "ValidateAndCompileScalingModifiers",
         {"spec.advanced": {"scalingModifiers": {"target": "5"}}}, "spec.advanced.scalingModifiers.formula"),
    Rule("so-modifiers-target", "ScaledObject", "admission webhook",
         "a formula needs a target", "validateScalingModifiersFormula",
         {f"{T0}.name": "q", "spec.advanced": {"scalingModifiers": {"formula": "q"}}},
         "spec.advanced.scalingModifiers.target"),
    Rule("so-modifiers-target-positive", "ScaledObject", "admission webhook",
         "scalingModifiers.target is a number > 0", "validateScalingModifiersTarget",
         {f"{T0}.name": "q", "spec.advanced": {"scalingModifiers": {"formula": "q", "target": "0"}}},
         "spec.advanced.scalingModifiers.target",
         {f"{T0}.name": "q", "spec.advanced": {"scalingModifiers": {"formula": "q", "target": "0.5"}}}),
    Rule("so-modifiers-compiles", "ScaledObject", "admission webhook",
         "the formula compiles, naming only named triggers (not cpu or memory)", "validateScalingModifiersFormula",
         {f"{T0}.name": "q", "spec.advanced": {"scalingModifiers": {"formula": "q + other", "target": "5"}}},
         "spec.advanced.scalingModifiers.formula",
         {f"{T0}.name": "q", "spec.advanced": {"scalingModifiers": {"formula": "q * 2", "target": "5"}}}),
    Rule("so-trigger-names-unique", "ScaledObject", "admission webhook", "trigger names are unique",
         "verifyTriggers (ValidateTriggers)",
         {f"{T0}.name": "a", "spec.triggers.1": {"type": "redis", "name": "a", "metadata": REDIS}},
         "spec.triggers[1].name",
         {f"{T0}.name": "a", "spec.triggers.1": {"type": "redis", "name": "b", "metadata": REDIS}}),
    Rule("so-cached-metrics", "ScaledObject", "admission webhook",
         "useCachedMetrics is not for cpu, memory or cron triggers", "verifyTriggers (ValidateTriggers)",
         {"spec.triggers.0": {"type": "cron", "useCachedMetrics": True, "metadata": CRON}},
         f"{F0}.useCachedMetrics",
         {"spec.triggers.0": {"type": "redis", "useCachedMetrics": True, "metadata": REDIS}}),
    Rule("so-polling-irrelevant", "ScaledObject", "admission webhook",
         "warning: pollingInterval set but irrelevant (minReplicaCount > 0, no idle, no cached metrics)",
         "verifyScaledObjects (admission warning)", {"spec.minReplicaCount": 1, "spec.pollingInterval": 10},
         "spec.pollingInterval", outcome="warning"),
    Rule("so-cooldown-irrelevant", "ScaledObject", "admission webhook",
         "warning: cooldownPeriod set but irrelevant (minReplicaCount > 0, no idle)",
         "verifyScaledObjects (admission warning)", {"spec.minReplicaCount": 1, "spec.cooldownPeriod": 10},
         "spec.cooldownPeriod", outcome="warning"),
    Rule("so-other-so-target", "ScaledObject", "admission webhook",
         "no other ScaledObject scales the same workload", "verifyScaledObjects",
         {}, "spec.scaleTargetRef", outcome="cluster", existing=(OTHER_SO,),
         differs="Among the files given to `ebb check` it is an error too; against a cluster, ebb's webhook."),
    Rule("so-other-so-hpa", "ScaledObject", "admission webhook",
         "no other ScaledObject owns the same HPA name", "verifyScaledObjects",
         {"spec.advanced": {"horizontalPodAutoscalerConfig": {"name": "shared"}}},
         "spec.advanced.horizontalPodAutoscalerConfig.name", outcome="cluster", existing=(OTHER_SO_HPA,)),
    Rule("so-foreign-hpa", "ScaledObject", "admission webhook",
         "no HPA KEDA does not own targets the workload (unless transfer-hpa-ownership)", "verifyHpas", {},
         "spec.scaleTargetRef", outcome="cluster", existing=(FOREIGN_HPA,)),
    Rule("so-cpu-requests", "ScaledObject", "admission webhook",
         "a cpu/memory trigger needs that request on every container of a Deployment/StatefulSet target "
         "(or a LimitRange default)", "verifyCPUMemoryScalers",
         {"spec.triggers.1": {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}},
         "spec.triggers[1]", outcome="cluster", existing=(DEPLOYMENT,)),
    Rule("so-cpu-only-zero", "ScaledObject", "admission webhook",
         "only cpu/memory triggers with minReplicaCount 0 is refused for a Deployment/StatefulSet target",
         "verifyCPUMemoryScalers",
         {"spec.triggers": [{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}]},
         "spec.minReplicaCount", {"spec.minReplicaCount": 1, "spec.triggers": [
             {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}]},
         outcome="warning",
         differs="It needs the target's kind from the cluster: a warning in `ebb check`, a refusal in the webhook."),
    # --- ScaledObject: controller -------------------------------------------------------------------------
    Rule("so-paused-replicas-int", "ScaledObject", "controller",
         "the paused-replicas annotation is an integer", "scaledobject_controller (GetPausedReplicaCount)",
         {"metadata.annotations": {"autoscaling.keda.sh/paused-replicas": "two"}},
         'metadata.annotations["autoscaling.keda.sh/paused-replicas"]',
         {"metadata.annotations": {"autoscaling.keda.sh/paused-replicas": "2"}}),
    Rule("so-utilization-only-resource", "ScaledObject", "controller",
         "metricType Utilization is only for cpu and memory", "GetMetricTargetType",
         {f"{T0}.metricType": "Utilization"}, f"{F0}.metricType", {f"{T0}.metricType": "Value"}),
    Rule("so-metric-type-enum", "ScaledObject", "controller",
         "metricType is AverageValue, Value or Utilization", "GetMetricTargetType",
         {f"{T0}.metricType": "Average"}, f"{F0}.metricType", {f"{T0}.metricType": "AverageValue"}),
    Rule("so-hpa-policy", "ScaledObject", "controller",
         "HPA behavior as autoscaling/v2 allows (policy type Pods|Percent, value > 0, periodSeconds 1..1800, "
         "stabilizationWindowSeconds 0..3600)", "API server, when KEDA creates the HPA",
         {"spec.advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {"policies": [
             {"type": "Pods", "value": 1, "periodSeconds": 3600}]}}}}},
         "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.policies[0].periodSeconds",
         {"spec.advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {"policies": [
             {"type": "Pods", "value": 1, "periodSeconds": 1800}]}}}}},
         differs="KEDA's CRD does not check these; the API server refuses the HPA KEDA makes from them."),
    # --- ScaledJob ----------------------------------------------------------------------------------------
    Rule("sj-job-target", "ScaledJob", "CRD schema", "spec.jobTargetRef is required",
         "keda.sh_scaledjobs.yaml: spec.required", {"spec.jobTargetRef": DELETE}, "spec.jobTargetRef"),
    Rule("sj-containers", "ScaledJob", "CRD schema", "the job template has containers (JobSpec schema)",
         "keda.sh_scaledjobs.yaml: jobTargetRef.template.spec.containers required",
         {"spec.jobTargetRef.template.spec.containers": DELETE}, "spec.jobTargetRef.template.spec.containers"),
    Rule("sj-triggers-min", "ScaledJob", "CRD schema", "spec.triggers has at least one item",
         "keda.sh_scaledjobs.yaml: triggers minItems 1", {"spec.triggers": []}, "spec.triggers"),
    Rule("sj-rollout-strategy", "ScaledJob", "CRD schema", "rollout.strategy is gradual or immediate",
         "keda.sh_scaledjobs.yaml: rollout.strategy enum", {"spec.rollout": {"strategy": "rolling"}},
         "spec.rollout.strategy", {"spec.rollout": {"strategy": "gradual"}}),
    Rule("sj-scaling-strategy", "ScaledJob", "CRD schema",
         "scalingStrategy.strategy is default, custom, accurate or eager",
         "keda.sh_scaledjobs.yaml: scalingStrategy.strategy enum", {"spec.scalingStrategy": {"strategy": "fast"}},
         "spec.scalingStrategy.strategy", {"spec.scalingStrategy": {"strategy": "eager"}}),
    Rule("sj-multiple-scalers", "ScaledJob", "CRD schema",
         "scalingStrategy.multipleScalersCalculation is max, min, avg or sum",
         "keda.sh_scaledjobs.yaml: multipleScalersCalculation enum",
         {"spec.scalingStrategy": {"multipleScalersCalculation": "median"}},
         "spec.scalingStrategy.multipleScalersCalculation",
         {"spec.scalingStrategy": {"multipleScalersCalculation": "sum"}}),
    Rule("sj-trigger-names-unique", "ScaledJob", "admission webhook", "trigger names are unique",
         "scaledjob_webhook verifyTriggers",
         {f"{T0}.name": "a", "spec.triggers.1": {"type": "redis", "name": "a", "metadata": REDIS}},
         "spec.triggers[1].name"),
    Rule("sj-cached-metrics", "ScaledJob", "admission webhook",
         "useCachedMetrics is not for cpu, memory or cron triggers", "scaledjob_webhook verifyTriggers",
         {"spec.triggers.0": {"type": "cron", "useCachedMetrics": True, "metadata": CRON}},
         f"{F0}.useCachedMetrics"),
    # --- TriggerAuthentication / ClusterTriggerAuthentication ---------------------------------------------
    Rule("ta-secret-ref-fields", "TriggerAuthentication", "CRD schema",
         "secretTargetRef entries have parameter, name and key", "keda.sh_triggerauthentications.yaml",
         {"spec.secretTargetRef.0.key": DELETE}, "spec.secretTargetRef[0].key"),
    Rule("ta-pod-identity-provider", "TriggerAuthentication", "CRD schema",
         "podIdentity.provider is azure-workload, gcp, aws, aws-eks or none",
         "keda.sh_triggerauthentications.yaml: provider enum", {"spec.podIdentity": {"provider": "azure"}},
         "spec.podIdentity.provider", {"spec.podIdentity": {"provider": "azure-workload"}}),
    Rule("ta-identity-owner", "TriggerAuthentication", "CRD schema", "podIdentity.identityOwner is keda or workload",
         "keda.sh_triggerauthentications.yaml: identityOwner enum",
         {"spec.podIdentity": {"provider": "aws", "identityOwner": "pod"}}, "spec.podIdentity.identityOwner"),
    Rule("ta-vault-auth", "TriggerAuthentication", "CRD schema",
         "hashiCorpVault needs address, authentication (token|kubernetes) and secrets",
         "keda.sh_triggerauthentications.yaml: hashiCorpVault.required",
         {"spec.hashiCorpVault": {"address": "https://vault", "authentication": "ldap",
                                  "secrets": [{"parameter": "p", "path": "x", "key": "k"}]}},
         "spec.hashiCorpVault.authentication"),
    Rule("ta-azure-kv-credentials", "TriggerAuthentication", "CRD schema",
         "azureKeyVault.credentials has clientId, tenantId and clientSecret",
         "keda.sh_triggerauthentications.yaml: credentials.required",
         {"spec.azureKeyVault": {"vaultUri": "https://kv", "secrets": [{"parameter": "p", "name": "n"}],
                                 "credentials": {"clientId": "c", "tenantId": "t"}}},
         "spec.azureKeyVault.credentials.clientSecret"),
    Rule("ta-oauth2-type", "TriggerAuthentication", "CRD schema", "oauth2.type is required: clientCredentials",
         "keda.sh_triggerauthentications.yaml: oauth2.required; validateSpec",
         {"spec.oauth2": {"clientId": "c", "tokenUrl": "https://idp/token"}}, "spec.oauth2.type",
         {"spec.oauth2": {"type": "clientCredentials", "clientId": "c", "tokenUrl": "https://idp/token"}}),
    Rule("ta-identity-id", "TriggerAuthentication", "admission webhook",
         "azure-workload identityId, when set, is not empty", "triggerauthentication_webhook validateSpec",
         {"spec.podIdentity": {"provider": "azure-workload", "identityId": ""}}, "spec.podIdentity.identityId",
         {"spec.podIdentity": {"provider": "azure-workload", "identityId": "id"}}),
    Rule("ta-authority-host", "TriggerAuthentication", "admission webhook",
         "azure-workload identityAuthorityHost needs identityTenantId", "validateSpec",
         {"spec.podIdentity": {"provider": "azure-workload", "identityAuthorityHost": "https://login"}},
         "spec.podIdentity.identityTenantId",
         {"spec.podIdentity": {"provider": "azure-workload", "identityAuthorityHost": "https://login",
                               "identityTenantId": "t"}}),
    Rule("ta-role-arn-owner", "TriggerAuthentication", "admission webhook",
         "aws roleArn only when KEDA is the identityOwner", "validateSpec",
         {"spec.podIdentity": {"provider": "aws", "roleArn": "arn:x", "identityOwner": "workload"}},
         "spec.podIdentity.roleArn", {"spec.podIdentity": {"provider": "aws", "roleArn": "arn:x"}}),
    Rule("ta-external-id", "TriggerAuthentication", "admission webhook", "aws externalID needs roleArn",
         "validateSpec", {"spec.podIdentity": {"provider": "aws", "externalID": "e"}},
         "spec.podIdentity.externalID"),
    Rule("ta-oauth2-client-id", "TriggerAuthentication", "admission webhook", "oauth2.clientId is required",
         "validateSpec", {"spec.oauth2": {"type": "clientCredentials", "tokenUrl": "https://idp/token"}},
         "spec.oauth2.clientId"),
    Rule("ta-oauth2-token-url", "TriggerAuthentication", "admission webhook",
         "oauth2.tokenUrl is an http or https URL", "validateSpec",
         {"spec.oauth2": {"type": "clientCredentials", "clientId": "c", "tokenUrl": "ftp://idp"}},
         "spec.oauth2.tokenUrl",
         {"spec.oauth2": {"type": "clientCredentials", "clientId": "c", "tokenUrl": "http://idp"}}),
    Rule("cta-oauth2-token-url", "ClusterTriggerAuthentication", "admission webhook",
         "oauth2.tokenUrl is an http or https URL", "validateSpec (same for the cluster kind)",
         {"spec.oauth2": {"type": "clientCredentials", "clientId": "c", "tokenUrl": "idp"}},
         "spec.oauth2.tokenUrl"),
    Rule("cta-identity-id", "ClusterTriggerAuthentication", "admission webhook",
         "azure-workload identityTenantId, when set, is not empty", "validateSpec (same for the cluster kind)",
         {"spec.podIdentity": {"provider": "azure-workload", "identityTenantId": ""}},
         "spec.podIdentity.identityTenantId"),
    # --- trigger types and parameters -------------------------------------------------------------------
    Rule("trigger-type-unknown", "ScaledObject", "controller",
         "the trigger type exists (KEDA: `no scaler found for type`), with the closest known type",
         "scalers_builder.go buildScaler", {f"{T0}.type": "reddis"}, f"{F0}.type", {f"{T0}.type": "redis"}),
    Rule("trigger-type-keda-only", "ScaledObject", "controller",
         "a KEDA trigger type ebb does not implement: a note for a cluster object, an error for `ebb run`",
         "scalers_builder.go buildScaler", {"spec.triggers.0": _trigger("kafka", bootstrapServers="k:9092",
                                                                          consumerGroup="g", topic="t")},
         "", outcome="note",
         differs="KEDA can scale on it; ebb's operator and `ebb run` cannot, and say so."),
    Rule("trigger-param-unknown", "ScaledObject", "scaler",
         "an unknown parameter is ignored (KEDA logs it only with KEDA_CHECK_UNEXPECTED_SCALERS_PARAMS)",
         "typed_config.go checkUnexpectedParameterExist", {f"{MD}.listLenght": "20"},
         f"{F0}.metadata.listLenght", outcome="warning",
         differs="ebb always warns, with the closest known parameter; the parameter meant keeps its default."),
    Rule("trigger-bool-go", "trigger redis", "scaler",
         "booleans are Go's strconv.ParseBool forms (1 t T TRUE true True 0 f F FALSE false False)",
         "typed_config.go setConfigValueHelper (strconv.ParseBool)", {f"{MD}.enableTLS": "yes"},
         f"{F0}.metadata.enableTLS", {f"{MD}.enableTLS": "F"}),
    Rule("trigger-int-json", "trigger redis", "scaler",
         "integers are JSON integers (no +, no leading zeros, no fraction)",
         "typed_config.go setConfigValueHelper (json.Unmarshal)", {f"{MD}.listLength": "5.0"},
         f"{F0}.metadata.listLength", {f"{MD}.listLength": " 5 "}),
    Rule("trigger-float-json", "trigger prometheus", "scaler",
         "numbers are JSON numbers (no NaN, Inf, .5 or +1)", "typed_config.go setConfigValueHelper (json.Unmarshal)",
         {"spec.triggers.0": _trigger("prometheus", **_meta(PROM, threshold=".5"))}, f"{F0}.metadata.threshold",
         {"spec.triggers.0": _trigger("prometheus", **_meta(PROM, threshold="0.5"))}),
    # redis, redis-streams
    Rule("redis-list-name", "trigger redis", "scaler", "listName is required", "redis_scaler.go redisMetadata",
         {MD: _meta(REDIS, listName=DELETE)}, f"{F0}.metadata.listName"),
    Rule("redis-address", "trigger redis", "scaler",
         "address (or addresses), or host and port (or hosts and ports), is required",
         "redis_scaler.go validateRedisAddress", {MD: {"listName": "jobs", "host": "redis"}},
         f"{F0}.metadata.port", {MD: {"listName": "jobs", "hosts": "redis", "ports": "6379"}}),
    Rule("redis-hosts-ports", "trigger redis", "scaler", "hosts and ports list as many entries",
         "redis_scaler.go validateRedisAddress", {MD: {"listName": "jobs", "host": "a,b", "port": "6379"}},
         f"{F0}.metadata.port",
         {MD: {"listName": "jobs", "address": "redis:6379", "host": "redis", "port": "6379"}}),
    Rule("redis-tls-twice", "trigger redis", "scaler",
         "enableTLS (metadata) and tls (TriggerAuthentication) are not both given",
         "redis_scaler.go SetEnableTLS", {f"{MD}.enableTLS": "true"}, f"{F0}.metadata.enableTLS",
         auth={"tls": "enable"}),
    Rule("redis-tls-enum", "trigger redis", "scaler", "tls (TriggerAuthentication) is enable or disable",
         "redis_scaler.go SetEnableTLS", {}, f"{F0}.metadata.tls", auth={"tls": "on"}),
    Rule("redis-port-number", "trigger redis", "scaler", "port is a number (KEDA: when it connects)",
         "go-redis, at connect", {MD: {"listName": "jobs", "host": "redis", "port": "six"}}, f"{F0}.metadata.port",
         {MD: {"listName": "jobs", "host": "redis", "port": "6379"}},
         differs="ebb checks at load what KEDA finds only when it connects."),
    Rule("redis-bad-pem", "trigger redis", "scaler", "TLS material is valid PEM (KEDA: when it connects)",
         "util.NewTLSConfigWithPassword, at connect", {f"{MD}.enableTLS": "true"}, f"{F0}.authenticationRef",
         auth={"cert": "not a certificate", "key": "not a key"},
         differs="ebb checks at load what KEDA finds only when it connects."),
    Rule("redis-streams-stream", "trigger redis-streams", "scaler", "stream is required",
         "redis_streams_scaler.go Validate", {"spec.triggers.0": _trigger("redis-streams", address="r:6379")},
         f"{F0}.metadata.stream", {"spec.triggers.0": _trigger("redis-streams", **STREAM)}),
    Rule("redis-streams-hosts-ports", "trigger redis-streams", "scaler", "hosts and ports list as many entries",
         "redis_scaler.go validateRedisAddress",
         {"spec.triggers.0": _trigger("redis-streams", stream="orders", hosts="a,b", ports="1")},
         f"{F0}.metadata.port"),
    # postgresql, mysql
    Rule("pg-query", "trigger postgresql", "scaler", "query is required", "postgresql_scaler.go",
         {"spec.triggers.0": _trigger("postgresql", **_meta(PG, query=DELETE))}, f"{F0}.metadata.query",
         {"spec.triggers.0": _trigger("postgresql", **PG)}),
    Rule("pg-target", "trigger postgresql", "scaler",
         "targetQueryValue is required and not 0 (unless the trigger only feeds scalingModifiers)",
         "postgresql_scaler.go parsePostgreSQLMetadata",
         {"spec.triggers.0": _trigger("postgresql", **_meta(PG, targetQueryValue="0"))},
         f"{F0}.metadata.targetQueryValue",
         differs="ebb also refuses a negative target, which the HPA refuses when KEDA creates it."),
    Rule("pg-connection-parts", "trigger postgresql", "scaler",
         "without connection: host, port, userName, dbName and sslmode are required",
         "postgresql_scaler.go Validate",
         {"spec.triggers.0": _trigger("postgresql", **_meta(PG, sslmode=DELETE))}, f"{F0}.metadata.sslmode"),
    Rule("pg-connection-parse", "trigger postgresql", "scaler",
         "the connection string parses (KEDA: when it connects)", "pgx, at connect",
         {"spec.triggers.0": _trigger("postgresql", query="SELECT 1", targetQueryValue="5")},
         f"{F0}.metadata.connection", auth={"connection": "postgresql://u@db:notaport/d"},
         differs="ebb checks at load what KEDA finds only when it connects."),
    Rule("mysql-connection-parse", "trigger mysql", "scaler",
         "the connection string parses (KEDA: when it connects)", "go-sql-driver, at connect",
         {"spec.triggers.0": _trigger("mysql", query="SELECT 1", queryValue="5")},
         f"{F0}.metadata.connectionString", auth={"connectionString": "u:p@tcp(db:3306"},
         differs="ebb checks at load what KEDA finds only when it connects."),
    Rule("mysql-query-value", "trigger mysql", "scaler", "queryValue is required", "mysql_scaler.go mySQLMetadata",
         {"spec.triggers.0": _trigger("mysql", **_meta(MYSQL, queryValue=DELETE))}, f"{F0}.metadata.queryValue",
         {"spec.triggers.0": _trigger("mysql", **MYSQL)}),
    # rabbitmq
    Rule("rmq-host-scheme", "trigger rabbitmq", "scaler", "host's scheme is amqp, amqps, http or https",
         "rabbitmq_scaler.go Validate", {"spec.triggers.0": _trigger("rabbitmq", **_meta(RMQ, host="redis://h/"))},
         f"{F0}.metadata.host", {"spec.triggers.0": _trigger("rabbitmq", **RMQ)}),
    Rule("rmq-protocol", "trigger rabbitmq", "scaler", "protocol is auto, amqp or http",
         "rabbitmq_scaler.go Validate", {"spec.triggers.0": _trigger("rabbitmq", **_meta(RMQ, protocol="stomp"))},
         f"{F0}.metadata.protocol"),
    Rule("rmq-page-size", "trigger rabbitmq", "scaler", "pageSize ≥ 1", "rabbitmq_scaler.go Validate",
         {"spec.triggers.0": _trigger("rabbitmq", **_meta(RMQ_HTTP, pageSize="0"))}, f"{F0}.metadata.pageSize"),
    Rule("rmq-user-password", "trigger rabbitmq", "scaler", "username and password are given together",
         "rabbitmq_scaler.go Validate", {"spec.triggers.0": _trigger("rabbitmq", **RMQ)},
         f"{F0}.metadata.password", auth={"username": "u"}),
    Rule("rmq-regex-http", "trigger rabbitmq", "scaler", "useRegex and excludeUnacknowledged need HTTP",
         "rabbitmq_scaler.go Validate", {"spec.triggers.0": _trigger("rabbitmq", **_meta(RMQ, useRegex="true"))},
         f"{F0}.metadata.useRegex", {"spec.triggers.0": _trigger("rabbitmq", **_meta(RMQ_HTTP, useRegex="true"))}),
    Rule("rmq-mode-value", "trigger rabbitmq", "scaler",
         "mode needs value; queueLength (deprecated) not with mode/value; mode is one of five",
         "rabbitmq_scaler.go validateTrigger",
         {"spec.triggers.0": _trigger("rabbitmq", **_meta(RMQ, mode="QueueLength"))}, f"{F0}.metadata.value",
         {"spec.triggers.0": _trigger("rabbitmq", **_meta(RMQ, mode="QueueLength", value="5"))}),
    Rule("rmq-rate-http", "trigger rabbitmq", "scaler", "the rate modes need HTTP",
         "rabbitmq_scaler.go validateTrigger",
         {"spec.triggers.0": _trigger("rabbitmq", **_meta(RMQ, mode="MessageRate", value="5"))},
         f"{F0}.metadata.mode"),
    Rule("rmq-amqp-timeout", "trigger rabbitmq", "scaler", "AMQP takes no timeout",
         "rabbitmq_scaler.go validateTrigger",
         {"spec.triggers.0": _trigger("rabbitmq", **_meta(RMQ, timeout="5s"))}, f"{F0}.metadata.timeout"),
    Rule("rmq-oauth2-complete", "trigger rabbitmq", "scaler",
         "OAuth2 needs oauthTokenURI, clientID and clientSecret", "rabbitmq_scaler.go validateOAuth2",
         {"spec.triggers.0": _trigger("rabbitmq", **RMQ_HTTP)}, f"{F0}.metadata.clientSecret",
         auth={"oauthTokenURI": "https://idp/token", "clientID": "c"}),
    Rule("rmq-oauth2-http", "trigger rabbitmq", "scaler", "OAuth2 needs HTTP, and not with username/password",
         "rabbitmq_scaler.go validateOAuth2", {"spec.triggers.0": _trigger("rabbitmq", **RMQ)},
         f"{F0}.metadata.oauthTokenURI",
         auth={"oauthTokenURI": "https://idp/token", "clientID": "c", "clientSecret": "s"}),
    # prometheus, metrics-api
    Rule("prom-required", "trigger prometheus", "scaler", "serverAddress, query and threshold are required",
         "prometheus_scaler.go prometheusMetadata",
         {"spec.triggers.0": _trigger("prometheus", **_meta(PROM, threshold=DELETE))}, f"{F0}.metadata.threshold",
         {"spec.triggers.0": _trigger("prometheus", **PROM)}),
    Rule("api-format", "trigger metrics-api", "scaler", "format is json, xml, yaml or prometheus",
         "metrics_api_scaler.go (enum tag)", {"spec.triggers.0": _trigger("metrics-api", **_meta(API, format="csv"))},
         f"{F0}.metadata.format", {"spec.triggers.0": _trigger("metrics-api", **_meta(API, format="yaml"))}),
    Rule("api-target", "trigger metrics-api", "scaler",
         "targetValue is required and not 0 (unless the trigger only feeds scalingModifiers)",
         "metrics_api_scaler.go parseMetricsAPIMetadata",
         {"spec.triggers.0": _trigger("metrics-api", **_meta(API, targetValue=DELETE))},
         f"{F0}.metadata.targetValue"),
    Rule("api-value-location", "trigger metrics-api", "scaler", "valueLocation is required",
         "metrics_api_scaler.go metricsAPIScalerMetadata",
         {"spec.triggers.0": _trigger("metrics-api", **_meta(API, valueLocation=" "))},
         f"{F0}.metadata.valueLocation",
         {"spec.triggers.0": _trigger("metrics-api", **_meta(API, valueLocation='a.#(b.#(=="c"))#|@reverse|0'))}),
    # cron, cpu/memory
    Rule("cron-start", "trigger cron", "scaler", "start and end are 5-field cron schedules",
         "cron_scaler.go Validate", {"spec.triggers.0": _trigger("cron", **_meta(CRON, start="8am"))},
         f"{F0}.metadata.start", {"spec.triggers.0": _trigger("cron", **CRON)}),
    Rule("cron-same", "trigger cron", "scaler", "start and end differ", "cron_scaler.go Validate",
         {"spec.triggers.0": _trigger("cron", **_meta(CRON, end="0 8 * * *"))}, f"{F0}.metadata.end"),
    Rule("cron-replicas", "trigger cron", "scaler", "desiredReplicas is required and not 0",
         "cron_scaler.go Validate", {"spec.triggers.0": _trigger("cron", **_meta(CRON, desiredReplicas="0"))},
         f"{F0}.metadata.desiredReplicas", differs="ebb also refuses a negative count."),
    Rule("resource-metric-type", "trigger cpu", "scaler",
         "cpu/memory take metricType Utilization or AverageValue", "cpu_memory_scaler.go parseResourceMetadata",
         {"spec.triggers.0": {"type": "cpu", "metricType": "Value", "metadata": {"value": "60"}},
          "spec.minReplicaCount": 1}, f"{F0}.metricType",
         {"spec.triggers.0": {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}},
          "spec.minReplicaCount": 1}),
    Rule("resource-type-removed", "trigger memory", "scaler",
         "the old metadata.type is refused (removed in v2.18)", "cpu_memory_scaler.go (deprecated tag)",
         {"spec.triggers.0": {"type": "memory", "metricType": "AverageValue",
                              "metadata": {"type": "AverageValue", "value": "256Mi"}}, "spec.minReplicaCount": 1},
         f"{F0}.metadata.type"),
    Rule("resource-value", "trigger cpu", "scaler", "value is required; with Utilization a whole number",
         "cpu_memory_scaler.go parseUtilization",
         {"spec.triggers.0": {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60%"}},
          "spec.minReplicaCount": 1}, f"{F0}.metadata.value"),
    # external, nats-jetstream
    Rule("external-address", "trigger external", "scaler", "scalerAddress is required",
         "external_scaler.go externalScalerMetadata", {"spec.triggers.0": _trigger("external", queue="q")},
         f"{F0}.metadata.scalerAddress", {"spec.triggers.0": _trigger("external", scalerAddress="s:6000")}),
    Rule("external-cert-without-key", "trigger external", "scaler",
         "a client certificate without its key is ignored, not refused", "util.NewTLSConfig",
         {"spec.triggers.0": _trigger("external", scalerAddress="s:6000")}, "", outcome="accepted",
         auth={"tlsClientCert": "-----BEGIN CERTIFICATE-----"}),
    Rule("redis-address-and-host", "trigger redis", "scaler",
         "address together with host and port is accepted: address is used", "redis_scaler.go validateRedisAddress",
         {MD: {"listName": "jobs", "address": "redis:6379", "host": "other", "port": "6380"}}, "",
         outcome="accepted"),
    Rule("redis-streams-spellings", "trigger redis-streams", "scaler",
         "hosts / ports / addresses are accepted spellings of host / port / address",
         "redis_scaler.go redisConnectionInfo (name=address;addresses ...)",
         {"spec.triggers.0": _trigger("redis-streams", stream="orders", hosts="a,b", ports="1,2")}, "",
         outcome="accepted"),
    # AWS
    Rule("sqs-queue-url", "trigger aws-sqs-queue", "scaler", "queueURL and awsRegion are required",
         "aws_sqs_queue_scaler.go awsSqsQueueMetadata",
         {"spec.triggers.0": _trigger("aws-sqs-queue", awsRegion="eu-west-1")}, f"{F0}.metadata.queueURL",
         {"spec.triggers.0": _trigger("aws-sqs-queue", awsRegion="eu-west-1", queueURL="orders")}, auth=AWS),
    Rule("kinesis-stream-name", "trigger aws-kinesis-stream", "scaler", "streamName is required",
         "aws_kinesis_stream_scaler.go awsKinesisStreamMetadata",
         {"spec.triggers.0": _trigger("aws-kinesis-stream", awsRegion="eu-west-1")}, f"{F0}.metadata.streamName",
         {"spec.triggers.0": _trigger("aws-kinesis-stream", awsRegion="eu-west-1", streamName="s")}, auth=AWS),
    Rule("dynamodb-target", "trigger aws-dynamodb", "scaler",
         "tableName, keyConditionExpression, expressionAttributeNames/Values and targetValue are required",
         "aws_dynamodb_scaler.go parseAwsDynamoDBMetadata",
         {"spec.triggers.0": _trigger("aws-dynamodb", **_meta(DYNAMO, targetValue=DELETE))},
         f"{F0}.metadata.targetValue", {"spec.triggers.0": _trigger("aws-dynamodb", **DYNAMO)}, auth=AWS),
    Rule("dynamodb-streams-table", "trigger aws-dynamodb-streams", "scaler", "tableName is required",
         "aws_dynamodb_streams_scaler.go awsDynamoDBStreamsMetadata",
         {"spec.triggers.0": _trigger("aws-dynamodb-streams", awsRegion="eu-west-1")}, f"{F0}.metadata.tableName",
         {"spec.triggers.0": _trigger("aws-dynamodb-streams", awsRegion="eu-west-1", tableName="t")}, auth=AWS),
    Rule("cloudwatch-min-value", "trigger aws-cloudwatch", "scaler",
         "targetMetricValue and minMetricValue are required", "aws_cloudwatch_scaler.go awsCloudwatchMetadata",
         {"spec.triggers.0": _trigger("aws-cloudwatch", **_meta(CLOUDWATCH, minMetricValue=DELETE))},
         f"{F0}.metadata.minMetricValue", {"spec.triggers.0": _trigger("aws-cloudwatch", **CLOUDWATCH)}, auth=AWS),
    Rule("nats-account", "trigger nats-jetstream", "scaler", "account or accountID is required",
         "nats_jetstream_scaler.go parseNATSJetStreamMetadata",
         {"spec.triggers.0": _trigger("nats-jetstream", **_meta(NATS, account=DELETE))}, f"{F0}.metadata.account",
         {"spec.triggers.0": _trigger("nats-jetstream", **_meta(NATS, account=DELETE, accountID="A"))}),
]  # fmt: skip


# --- The KEDA HTTP add-on's InterceptorRoute (http.keda.sh/v1beta1): kubebuilder markers and CEL rules of
# operator/apis/http/v1beta1/interceptorroute_types.go (kedacore/http-add-on main @ 59b2f6a).
IRT = "interceptorroute_types.go"
PH = "spec.coldStart.placeholder.response"
RULES.extend([
    Rule("ir-target-one-port", "InterceptorRoute", "CRD schema", "target: exactly one of port and portName",
         f"{IRT} TargetRef CEL", {"spec.target": {"service": "web"}}, "spec.target",
         {"spec.target": {"service": "web", "portName": "http"}}),
    Rule("ir-target-port-range", "InterceptorRoute", "CRD schema", "target.port is 1..65535",
         f"{IRT} TargetRef Minimum/Maximum", {"spec.target.port": 0}, "spec.target.port", {"spec.target.port": 1}),
    Rule("ir-target-service", "InterceptorRoute", "CRD schema", "target.service is not empty",
         f"{IRT} TargetRef MinLength", {"spec.target.service": ""}, "spec.target.service"),
    Rule("ir-scaling-metric", "InterceptorRoute", "CRD schema", "scalingMetric sets concurrency or requestRate",
         f"{IRT} ScalingMetricSpec CEL", {"spec.scalingMetric": {}}, "spec.scalingMetric",
         {"spec.scalingMetric": {"requestRate": {"targetValue": 10}}}),
    Rule("ir-both-metrics", "InterceptorRoute", "CRD schema", "concurrency and requestRate together (both reported)",
         "scaler/handlers.go GetMetricSpec",
         {"spec.scalingMetric.requestRate": {"targetValue": 10}}, "", outcome="accepted"),
    Rule("ir-concurrency-target", "InterceptorRoute", "CRD schema", "concurrency.targetValue is at least 1",
         f"{IRT} ConcurrencyTargetSpec Minimum", {"spec.scalingMetric.concurrency.targetValue": 0},
         "spec.scalingMetric.concurrency.targetValue", {"spec.scalingMetric.concurrency.targetValue": 1}),
    Rule("ir-rate-target", "InterceptorRoute", "CRD schema", "requestRate.targetValue is required, at least 1",
         f"{IRT} RequestRateTargetSpec", {"spec.scalingMetric": {"requestRate": {"window": "1m"}}},
         "spec.scalingMetric.requestRate.targetValue",
         {"spec.scalingMetric": {"requestRate": {"window": "1m", "targetValue": 1}}}),
    Rule("ir-rate-window", "InterceptorRoute", "scaler", "requestRate.window is at least the granularity",
         "pkg/queue/bucketing.go (window / granularity buckets)",
         {"spec.scalingMetric": {"requestRate": {"targetValue": 5, "window": "1s", "granularity": "2s"}}},
         "spec.scalingMetric.requestRate.window",
         {"spec.scalingMetric": {"requestRate": {"targetValue": 5, "window": "2s", "granularity": "2s"}}},
         differs="ebb refuses; the add-on accepts it and gets a rate of less than one bucket"),
    Rule("ir-duration", "InterceptorRoute", "CRD schema", "timeouts are Go durations",
         f"{IRT} InterceptorRouteTimeouts (metav1.Duration)", {"spec.timeouts": {"request": "soon"}},
         "spec.timeouts.request", {"spec.timeouts": {"request": "1m30s", "readiness": "0s"}}),
    Rule("ir-cold-start", "InterceptorRoute", "CRD schema", "coldStart sets fallback or placeholder",
         f"{IRT} ColdStartSpec CEL", {"spec.coldStart": {}}, "spec.coldStart",
         {"spec.coldStart": {"placeholder": {}}}),
    Rule("ir-fallback-one-port", "InterceptorRoute", "CRD schema",
         "coldStart.fallback.service: exactly one of port and portName", f"{IRT} ServiceRef CEL",
         {"spec.coldStart": {"fallback": {"service": {"name": "f"}}}}, "spec.coldStart.fallback.service",
         {"spec.coldStart": {"fallback": {"service": {"name": "f", "port": 80}}}}),
    Rule("ir-response-one-body", "InterceptorRoute", "CRD schema", "a response has body or bodyFromConfigMap, not both",
         f"{IRT} StaticResponse CEL",
         {"spec.coldStart": {"placeholder": {"response": {"body": "a", "bodyFromConfigMap": {"name": "b"}}}}}, PH,
         {"spec.coldStart": {"placeholder": {"response": {"bodyFromConfigMap": {"name": "b"}}}}}),
    Rule("ir-response-status", "InterceptorRoute", "CRD schema", "a response's statusCode is 100..599",
         f"{IRT} StaticResponse Minimum/Maximum",
         {"spec.coldStart": {"placeholder": {"response": {"statusCode": 600}}}}, f"{PH}.statusCode",
         {"spec.coldStart": {"placeholder": {"response": {"statusCode": 599}}}}),
    Rule("ir-response-body-size", "InterceptorRoute", "CRD schema", "a response's body is at most 32768 characters",
         f"{IRT} StaticResponse MaxLength",
         {"spec.coldStart": {"placeholder": {"response": {"body": "x" * 32769}}}}, f"{PH}.body",
         {"spec.coldStart": {"placeholder": {"response": {"body": "x" * 32768}}}}),
    Rule("ir-static-rules", "InterceptorRoute", "CRD schema", "a static route has at least one rule",
         f"{IRT} StaticRoute MinItems", {"spec.staticRoutes": [{"rules": [], "response": {}}]},
         "spec.staticRoutes[0].rules", {"spec.staticRoutes": [{"rules": [{}], "response": {}}]}),
    Rule("ir-response-mode", "InterceptorRoute", "CRD schema", "responseMode is Always or WhenUnavailable",
         f"{IRT} StaticRouteResponseMode Enum",
         {"spec.staticRoutes": [{"rules": [{}], "response": {}, "responseMode": "Sometimes"}]},
         "spec.staticRoutes[0].responseMode",
         {"spec.staticRoutes": [{"rules": [{}], "response": {}, "responseMode": "Always"}]}),
    Rule("ir-hosts-set", "InterceptorRoute", "CRD schema", "a rule's hosts are a set (no repeats)",
         f"{IRT} RoutingRule listType=set", {"spec.rules": [{"hosts": ["a.example", "a.example"]}]},
         "spec.rules[0].hosts[1]", {"spec.rules": [{"hosts": ["a.example", "*.example"]}]}),
    Rule("ir-headers-map", "InterceptorRoute", "CRD schema", "a rule's headers are keyed by name (no repeats)",
         f"{IRT} RoutingRule listType=map", {"spec.rules": [{"headers": [{"name": "X"}, {"name": "X"}]}]},
         "spec.rules[0].headers[1].name", {"spec.rules": [{"headers": [{"name": "X"}, {"name": "Y"}]}]}),
    Rule("ir-path-value", "InterceptorRoute", "CRD schema", "a path match's value is not empty",
         f"{IRT} PathMatch MinLength", {"spec.rules": [{"paths": [{"value": ""}]}]}, "spec.rules[0].paths[0].value",
         {"spec.rules": [{"paths": [{"value": "/"}]}]}),
    Rule("ir-no-rules", "InterceptorRoute", "CRD schema", "no rules (the route is reachable by no request)",
         f"{IRT} InterceptorRouteSpec.Rules optional", {"spec.rules": []}, "", outcome="accepted"),
])  # fmt: skip
