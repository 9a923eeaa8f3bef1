"""The Helm chart, rendered by Helm's own engine (Helm's Go SDK via the helm-python-sdk wheel; offline, so
`lookup` finds nothing and a fresh certificate is generated each render)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from ebb.kube import certs
from ebb.kube.crds import all_crds, render

helm = pytest.importorskip("helm_python", reason="helm-python-sdk (dev dependency) renders the chart")

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "ebb"
NAMESPACE = "ebb-system"


def _render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    chart = helm.Chart.load(str(CHART))
    try:
        rendered = chart.render(values, name="ebb", namespace=NAMESPACE, is_install=True)
    finally:
        chart.close()
    return [document for text in rendered.values() for document in yaml.safe_load_all(text) if document]


def _one(documents: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in documents if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def _container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = _one(documents, "Deployment", "ebb")["spec"]["template"]["spec"]["containers"][0]
    return container


def _allows(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        (group in rule["apiGroups"] or "*" in rule["apiGroups"])
        and (resource in rule["resources"] or "*" in rule["resources"])
        and verb in rule["verbs"]
        for rule in rules
    )


def test_chart_lints_clean() -> None:
    report = helm.lint(str(CHART), strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_default_render_has_every_object() -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in _render())
    assert kinds == sorted(
        [
            ("APIService", "v1beta1.external.metrics.k8s.io"),
            ("ClusterRole", "ebb-external-metrics-reader"),
            ("ClusterRole", "ebb-operator"),
            ("ClusterRoleBinding", "ebb-auth-delegator"),
            ("ClusterRoleBinding", "ebb-hpa-external-metrics"),
            ("ClusterRoleBinding", "ebb-operator"),
            ("Deployment", "ebb"),
            ("Role", "ebb-leases"),
            ("RoleBinding", "ebb-auth-reader"),
            ("RoleBinding", "ebb-leases"),
            ("Secret", "ebb-metrics-api-tls"),
            ("Service", "ebb-metrics-api"),
            ("ServiceAccount", "ebb"),
            ("ValidatingWebhookConfiguration", "ebb-admission"),
        ]
    )


def test_apiservice_trusts_the_generated_serving_certificate() -> None:
    documents = _render()
    api_service = _one(documents, "APIService")["spec"]
    service = _one(documents, "Service", "ebb-metrics-api")
    assert (api_service["group"], api_service["version"]) == ("external.metrics.k8s.io", "v1beta1")
    assert api_service["service"] == {"name": "ebb-metrics-api", "namespace": NAMESPACE, "port": 443}
    assert "insecureSkipTLSVerify" not in api_service
    secret = _one(documents, "Secret")
    data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    bundle = certs.TLSBundle.from_secret_data(data)  # checks the key matches and the CA signed it
    assert base64.b64decode(api_service["caBundle"]) == bundle.ca_cert
    assert not bundle.needs_renewal(certs.service_dns_names("ebb-metrics-api", NAMESPACE))
    assert service["spec"]["ports"][0]["targetPort"] == "https"


def test_deployment_args_probes_and_resources() -> None:
    documents = _render({"watchNamespaces": ["team-a", "team-b"], "logLevel": "DEBUG"})
    container = _container(documents)
    assert container["args"] == [
        "--scaling=hpa",
        "--leader-pod-label",
        "--log-level=DEBUG",
        "--metrics-api-port=6443",
        f"--cluster-object-namespace={NAMESPACE}",
        "--namespace=team-a",
        "--namespace=team-b",
        "--metrics-port=8080",
        "--history-tiers=1s:1h,1m:2d,5m:60d",
        "--tls-cert-file=/etc/ebb/tls/tls.crt",
        "--tls-private-key-file=/etc/ebb/tls/tls.key",
        "--metrics-api-auth=delegated",
        "--webhook-port=9443",
        "--interceptor-service=ebb-interceptor-admin",
        f"--interceptor-namespace={NAMESPACE}",
    ]
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "https", "scheme": "HTTPS"}
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    pod = _one(documents, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["serviceAccountName"] == "ebb"
    [tls_volume] = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert tls_volume["secret"]["secretName"] == "ebb-metrics-api-tls"


def test_deployment_args_are_options_of_the_operator_command() -> None:
    typer = pytest.importorskip("typer")
    from ebb.cli import app

    command = typer.main.get_command(app)
    operator = command.commands["operator"]  # type: ignore[attr-defined]
    known = {name for param in operator.params for name in param.opts}
    for arg in _container(_render({"watchNamespaces": ["x"]}))["args"]:
        assert arg.split("=", 1)[0] in known, f"{arg}: `ebb operator` has no such option"


def test_operator_rbac_is_what_the_operator_needs() -> None:
    documents = _render()
    rules = _one(documents, "ClusterRole", "ebb-operator")["rules"]
    for group, resource, verb in [
        ("keda.sh", "scaledobjects", "watch"),
        ("keda.sh", "scaledobjects", "patch"),
        ("keda.sh", "scaledobjects/status", "patch"),
        ("keda.sh", "scaledjobs/status", "update"),
        ("keda.sh", "clustertriggerauthentications", "list"),
        ("apps", "*/scale", "update"),
        ("argoproj.io", "*/scale", "patch"),
        ("autoscaling", "horizontalpodautoscalers", "create"),
        ("autoscaling", "horizontalpodautoscalers", "delete"),
        ("batch", "jobs", "create"),
        ("", "pods", "list"),
        ("", "pods", "patch"),  # pod-deletion-cost for busy-aware scale-in (ebb.dev/busy-probe)
        ("", "events", "create"),
        ("", "secrets", "get"),
        ("", "configmaps", "watch"),
        ("", "limitranges", "list"),  # the admission webhook's cpu/memory check
        ("eventing.keda.sh", "cloudeventsources", "watch"),
        ("eventing.keda.sh", "clustercloudeventsources", "patch"),  # kopf's finalizer
        ("eventing.keda.sh", "cloudeventsources/status", "patch"),  # the Active condition
        ("eventing.keda.sh", "clustercloudeventsources/status", "patch"),
        ("discovery.k8s.io", "endpointslices", "list"),  # metrics-api aggregateFromKubeServiceEndpoints
        ("discovery.k8s.io", "endpointslices", "watch"),
        # Regression (real cluster): reading a ReplicaSet or a custom resource target was forbidden.
        ("apps", "replicasets", "get"),
        ("apps", "statefulsets", "get"),
        ("argoproj.io", "rollouts", "get"),
    ]:
        assert _allows(rules, group, resource, verb), (group, resource, verb)
    # Least privilege: reads only on Secrets, no pod deletion (pods are only annotated) or deployment writes;
    # the one wildcard is KEDA's `get`.
    for group, resource, verb in [
        ("", "secrets", "create"),
        ("", "secrets", "update"),
        ("", "pods", "delete"),
        ("apps", "deployments", "update"),
        ("keda.sh", "scaledobjects", "delete"),
        ("eventing.keda.sh", "cloudeventsources", "delete"),
        ("discovery.k8s.io", "endpointslices", "delete"),
    ]:
        assert not _allows(rules, group, resource, verb), (group, resource, verb)
    assert [rule["verbs"] for rule in rules if "*" in rule["resources"]] == [["get"]]
    leases = _one(documents, "Role", "ebb-leases")
    assert leases["metadata"]["namespace"] == NAMESPACE
    assert _allows(leases["rules"], "coordination.k8s.io", "leases", "update")
    assert _allows(leases["rules"], "", "pods", "patch")  # the leader labels its own pod


def test_replicas_roll_with_a_ready_standby_and_the_service_selects_the_leader() -> None:
    """Regression: the chart hard-coded one replica and Recreate (each upgrade took the metrics API and the
    webhook down). Every replica is Ready (--leader-pod-label); the Service selects the leader's label."""
    documents = _render()
    deployment = _one(documents, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert "--leader-pod-label" in _container(documents)["args"]
    service = _one(documents, "Service", "ebb-metrics-api")
    assert service["spec"]["selector"]["ebb.dev/leader"] == "true"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert {k: v for k, v in service["spec"]["selector"].items() if k != "ebb.dev/leader"}.items() <= pod_labels.items()
    assert _one(_render({"replicaCount": 3}), "Deployment")["spec"]["replicas"] == 3
    recreate = _one(_render({"strategy": {"type": "Recreate"}}), "Deployment")["spec"]["strategy"]
    assert recreate == {"type": "Recreate"}


def test_aggregated_api_bindings() -> None:
    documents = _render()
    delegator = _one(documents, "ClusterRoleBinding", "ebb-auth-delegator")
    assert delegator["roleRef"]["name"] == "system:auth-delegator"
    reader = _one(documents, "RoleBinding", "ebb-auth-reader")
    assert (reader["metadata"]["namespace"], reader["roleRef"]) == (
        "kube-system",
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "extension-apiserver-authentication-reader"},
    )
    for binding in (delegator, reader, _one(documents, "ClusterRoleBinding", "ebb-operator")):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ebb", "namespace": NAMESPACE}]
    hpa = _one(documents, "ClusterRoleBinding", "ebb-hpa-external-metrics")
    assert hpa["subjects"] == [
        {"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler", "namespace": "kube-system"}
    ]


def test_metrics_api_auth_can_be_turned_off() -> None:
    assert "--metrics-api-auth=none" in _container(_render({"metricsApi": {"auth": "none"}}))["args"]


def test_direct_mode_without_metrics_api() -> None:
    documents = _render(
        {"scaling": {"mode": "direct"}, "metricsApi": {"enabled": False}, "webhooks": {"enabled": False}}
    )
    kinds = {d["kind"] for d in documents}
    assert "APIService" not in kinds and "Secret" not in kinds
    container = _container(documents)
    assert "--scaling=direct" in container["args"]
    assert not any(arg.startswith("--tls-") for arg in container["args"])
    # No auth-delegator/extension-apiserver-authentication-reader bindings: the operator must not need them.
    assert "--metrics-api-auth=none" in container["args"]
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTP"
    assert not any(d["metadata"]["name"] == "ebb-auth-delegator" for d in documents)


def test_insecure_skip_and_existing_secret() -> None:
    insecure = _one(_render({"metricsApi": {"apiService": {"insecureSkipTLSVerify": True}}}), "APIService")
    assert insecure["spec"]["insecureSkipTLSVerify"] is True
    assert "caBundle" not in insecure["spec"]
    ca = certs.generate(["x"]).ca_cert.decode()
    documents = _render({"metricsApi": {"tls": {"existingSecret": "my-tls", "caBundle": ca}}})
    assert "Secret" not in {d["kind"] for d in documents}
    assert base64.b64decode(_one(documents, "APIService")["spec"]["caBundle"]).decode() == ca
    pod = _one(documents, "Deployment")["spec"]["template"]["spec"]
    assert [v["secret"]["secretName"] for v in pod["volumes"] if v["name"] == "tls"] == ["my-tls"]


def test_dashboard_flag_adds_port_and_service() -> None:
    documents = _render({"dashboard": {"enabled": True, "port": 9000}})
    service = _one(documents, "Service", "ebb-dashboard")
    assert service["spec"]["ports"][0]["port"] == 9000
    assert {"name": "dashboard", "containerPort": 9000, "protocol": "TCP"} in _container(documents)["ports"]
    assert {"--metrics-port=9000", "--dashboard"} <= set(_container(documents)["args"])
    assert "--dashboard" not in _container(_render({}))["args"]


def _webhooks(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    configuration = _one(documents, "ValidatingWebhookConfiguration", "ebb-admission")
    return {webhook["name"]: webhook for webhook in configuration["webhooks"]}


def test_admission_webhooks_are_kedas_and_trust_the_serving_certificate() -> None:
    documents = _render()
    webhooks = _webhooks(documents)
    assert sorted(webhooks) == [
        "vcloudeventsource.ebb.dev",
        "vclustercloudeventsource.ebb.dev",
        "vclustertriggerauthentication.ebb.dev",
        "vhttpscaledobject.ebb.dev",
        "vinterceptorroute.ebb.dev",
        "vscaledjob.ebb.dev",
        "vscaledobject.ebb.dev",
        "vtriggerauthentication.ebb.dev",
    ]
    ca_bundle = _one(documents, "APIService")["spec"]["caBundle"]
    secret = _one(documents, "Secret")
    ca_cert = base64.b64decode(secret["data"]["ca.crt"])
    for name, webhook in webhooks.items():
        resource = name.split(".")[0][1:]
        group = "eventing.keda.sh" if "cloudeventsource" in resource else "keda.sh"
        group = "http.keda.sh" if resource in ("httpscaledobject", "interceptorroute") else group
        version = "v1beta1" if resource == "interceptorroute" else "v1alpha1"
        assert webhook["clientConfig"] == {
            "service": {
                "name": "ebb-metrics-api",
                "namespace": NAMESPACE,
                "path": f"/validate-{group.replace('.', '-')}-{version}-{resource}",
                "port": 9443,
            },
            "caBundle": ca_bundle,
        }
        assert base64.b64decode(webhook["clientConfig"]["caBundle"]) == ca_cert
        assert webhook["rules"] == [
            {
                "apiGroups": [group],
                "apiVersions": [version],
                "operations": ["CREATE", "UPDATE"],
                "resources": [f"{resource}s"],
            }
        ]
        assert (webhook["sideEffects"], webhook["admissionReviewVersions"], webhook["failurePolicy"]) == (
            "None",
            ["v1"],
            "Ignore",
        )
        assert "namespaceSelector" not in webhook
    service = _one(documents, "Service", "ebb-metrics-api")
    assert {"name": "webhook", "port": 9443, "targetPort": "webhook", "protocol": "TCP"} in service["spec"]["ports"]
    assert {"name": "webhook", "containerPort": 9443, "protocol": "TCP"} in _container(documents)["ports"]
    # The serving certificate is valid for the name the API server dials for a webhook: <service>.<namespace>.svc.
    data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert f"ebb-metrics-api.{NAMESPACE}.svc" in certs.TLSBundle.from_secret_data(data).dns_names


def test_webhook_values() -> None:
    documents = _render({"webhooks": {"port": 8443, "failurePolicy": "Fail"}, "watchNamespaces": ["team-a"]})
    webhook = _webhooks(documents)["vscaledobject.ebb.dev"]
    assert webhook["failurePolicy"] == "Fail"
    assert webhook["clientConfig"]["service"]["port"] == 8443
    assert webhook["namespaceSelector"] == {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a"]}]
    }
    assert "--webhook-port=8443" in _container(documents)["args"]
    disabled = _render({"webhooks": {"enabled": False}})
    assert "ValidatingWebhookConfiguration" not in {d["kind"] for d in disabled}
    assert "--webhook-port=0" in _container(disabled)["args"]
    assert [p["name"] for p in _one(disabled, "Service", "ebb-metrics-api")["spec"]["ports"]] == ["https"]


def test_webhook_without_metrics_api_still_has_its_certificate() -> None:
    documents = _render({"scaling": {"mode": "direct"}, "metricsApi": {"enabled": False}})
    kinds = {d["kind"] for d in documents}
    assert "APIService" not in kinds and "Secret" in kinds
    service = _one(documents, "Service", "ebb-metrics-api")
    assert [p["name"] for p in service["spec"]["ports"]] == ["webhook"]
    container = _container(documents)
    assert {
        "--webhook-port=9443",
        "--tls-cert-file=/etc/ebb/tls/tls.crt",
        "--tls-private-key-file=/etc/ebb/tls/tls.key",
    } <= set(container["args"])
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    secret = _one(documents, "Secret")
    ca_bundle = _webhooks(documents)["vscaledobject.ebb.dev"]["clientConfig"]["caBundle"]
    assert base64.b64decode(ca_bundle) == base64.b64decode(secret["data"]["ca.crt"])


def test_existing_secret_ca_bundle_goes_to_the_webhooks() -> None:
    ca = certs.generate(["x"]).ca_cert.decode()
    documents = _render({"metricsApi": {"tls": {"existingSecret": "my-tls", "caBundle": ca}}})
    for webhook in _webhooks(documents).values():
        assert base64.b64decode(webhook["clientConfig"]["caBundle"]).decode() == ca


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"scaling": {"mode": "sideways"}}, "scaling.mode must be hpa or direct"),
        ({"metricsApi": {"enabled": False}}, "needs metricsApi.enabled=true"),
        ({"metricsApi": {"auth": "anonymous"}}, "metricsApi.auth must be delegated or none"),
        ({"metricsApi": {"tls": {"existingSecret": "my-tls"}}}, "metricsApi.tls.caBundle is required"),
        (
            {"metricsApi": {"tls": {"existingSecret": "my-tls"}, "apiService": {"insecureSkipTLSVerify": True}}},
            "webhooks.enabled needs metricsApi.tls.caBundle",
        ),
        ({"webhooks": {"failurePolicy": "Sometimes"}}, "webhooks.failurePolicy must be Ignore or Fail"),
    ],
)
def test_impossible_values_fail_to_render(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=message):
        _render(values)


def test_chart_crds_are_the_generated_ones() -> None:
    chart = helm.Chart.load(str(CHART))
    try:
        shipped = {Path(crd["name"]).name: crd["data"] for crd in chart.crds}
    finally:
        chart.close()
    expected = {name: render(manifest) for name, manifest in all_crds().items()}
    assert {name: yaml.safe_load(text) for name, text in shipped.items()} == {
        name: yaml.safe_load(text) for name, text in expected.items()
    }


def test_history_tiers_volume_and_prometheus_read_back() -> None:
    default = _container(_render({}))
    assert "--history-tiers=1s:1h,1m:2d,5m:60d" in default["args"]
    assert not any(a.startswith(("--history-dir", "--history-prometheus-address")) for a in default["args"])
    values = {
        "history": {
            "tiers": "10s:6h,5m:30d",
            "existingClaim": "ebb-history",
            "prometheusAddress": "http://prometheus.monitoring:9090",
        }
    }
    documents = _render(values)
    container = _container(documents)
    assert {
        "--history-tiers=10s:6h,5m:30d",
        "--history-dir=/var/lib/ebb/history",
        "--history-prometheus-address=http://prometheus.monitoring:9090",
    } <= set(container["args"])
    assert {"name": "history", "mountPath": "/var/lib/ebb/history"} in container["volumeMounts"]
    pod = _one(documents, "Deployment", "ebb")["spec"]["template"]["spec"]
    assert {"name": "history", "persistentVolumeClaim": {"claimName": "ebb-history"}} in pod["volumes"]


def test_interceptor_is_its_own_deployment_with_services_and_read_only_rbac() -> None:
    assert not [d for d in _render() if "interceptor" in d["metadata"]["name"]]
    values = {
        "interceptor": {
            "enabled": True,
            "replicas": 3,
            "port": 8081,
            "adminPort": 9091,
            "service": {"port": 8000},
            "conditionWait": 45,
            "resources": {"requests": {"cpu": "250m"}},
        },
        "watchNamespaces": ["shop"],
    }
    documents = _render(values)
    deployment = _one(documents, "Deployment", "ebb-interceptor")
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["ebb", "interceptor"]
    assert {"--port=8081", "--admin-port=9091", "--condition-wait=45", "--namespace=shop"} <= set(container["args"])
    assert container["resources"] == {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}}
    assert pod["terminationGracePeriodSeconds"] == 35
    assert pod["serviceAccountName"] == "ebb-interceptor"
    # Its pods are not the operator's: neither Deployment's selector matches the other's pods.
    operator = _one(documents, "Deployment", "ebb")
    operator_selector = operator["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert not operator_selector.items() <= pod_labels.items()
    proxy = _one(documents, "Service", "ebb-interceptor-proxy")
    assert proxy["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    admin = _one(documents, "Service", "ebb-interceptor-admin")
    assert admin["spec"]["ports"][0]["name"] == "admin"  # the operator follows this port name
    assert proxy["spec"]["selector"] == admin["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    operator_args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert {"--interceptor-service=ebb-interceptor-admin", f"--interceptor-namespace={NAMESPACE}"} <= set(operator_args)
    rules = _one(documents, "ClusterRole", "ebb-interceptor")["rules"]
    for group, resource in (
        ("http.keda.sh", "httpscaledobjects"),
        ("http.keda.sh", "interceptorroutes"),
        ("", "services"),
        ("", "configmaps"),
        ("discovery.k8s.io", "endpointslices"),
    ):
        assert _allows(rules, group, resource, "watch")
    assert not any(_allows(rules, g, r, "patch") for g, r in (("http.keda.sh", "httpscaledobjects"), ("", "services")))
    assert _allows(rules, "", "events", "create")  # cold-start Events
    operator_rules = _one(documents, "ClusterRole", "ebb-operator")["rules"]
    assert _allows(operator_rules, "http.keda.sh", "httpscaledobjects/status", "patch")
    assert _allows(operator_rules, "http.keda.sh", "interceptorroutes/status", "patch")
