"""The webhook refusing conflicting routes (HTTPScaledObjects, InterceptorRoutes), called by a real API server
(`[against_real_apiserver]`).

Runs only when EBB_TEST_KUBECONFIG names a cluster (the fake API server calls no webhook; the checks themselves are
tested in tests/kube/test_http_admission.py). The operator runs in this process; the API server reaches its webhook
through a selector-less Service whose Endpoints name this host's own address (a real API server refuses loopback
addresses there), with a certificate for the Service's DNS name and its CA in the configuration's caBundle.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from lightkube.core.exceptions import ApiError

from ebb.kube import certs
from ebb.kube.client import AsyncClient, global_resource, namespaced
from ebb.kube.http_interceptor import HTTP_SCALED_OBJECT, INTERCEPTOR_ROUTE, SERVICE

from ._fakecluster import eventually
from .test_drain_e2e import real  # noqa: F401  (the fixture)
from .test_http_kube import own_address
from .test_operator_e2e import free_port, single_operator

ENDPOINTS = namespaced("", "v1", "Endpoints", "endpoints")
WEBHOOKS = global_resource(
    "admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations"
)


#: The HTTP add-on's kinds and the versions the webhook validates.
KINDS = (("httpscaledobject", "v1alpha1"), ("interceptorroute", "v1beta1"))


def webhook(ns: str, kind: str, version: str, ca_cert: bytes) -> dict[str, Any]:
    """One webhook of ebb's chart, for `kind`, reaching the ebb-webhook Service in `ns`."""
    return {
        "name": f"v{kind}.ebb.dev",
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "clientConfig": {
            "service": {
                "name": "ebb-webhook",
                "namespace": ns,
                "path": f"/validate-http-keda-sh-{version}-{kind}",
                "port": 443,
            },
            "caBundle": base64.b64encode(ca_cert).decode(),
        },
        "rules": [
            {
                "apiGroups": ["http.keda.sh"],
                "apiVersions": [version],
                "operations": ["CREATE", "UPDATE"],
                "resources": [f"{kind}s"],
            }
        ],
        # Only this test's namespace: other clients of the cluster are not held up by it.
        "namespaceSelector": {
            "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns]}]
        },
    }


def interceptor_route(name: str, ns: str, host: str, path: str) -> dict[str, Any]:
    return {
        "apiVersion": "http.keda.sh/v1beta1",
        "kind": "InterceptorRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "target": {"service": name, "port": 80},
            "rules": [{"hosts": [host], "paths": [{"value": path}]}],
            "scalingMetric": {"concurrency": {"targetValue": 10}},
        },
    }


def route(name: str, ns: str, prefixes: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "http.keda.sh/v1alpha1",
        "kind": "HTTPScaledObject",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "hosts": [f"{ns}.example.com"],  # hosts are cluster-wide: one of the test's own
            "pathPrefixes": prefixes,
            "scaleTargetRef": {
                "name": name,
                "kind": "Deployment",
                "apiVersion": "apps/v1",
                "service": name,
                "port": 80,
            },
            "replicas": {"min": 0, "max": 3},
            **spec,
        },
    }


async def test_the_api_server_refuses_a_second_route_on_the_same_host_and_prefix(
    real: tuple[AsyncClient, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    client, ns = real
    port = free_port()
    bundle = certs.generate(certs.service_dns_names("ebb-webhook", ns))
    (tmp_path / "tls.crt").write_bytes(bundle.cert)
    (tmp_path / "tls.key").write_bytes(bundle.key)
    await client.create(
        SERVICE(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "ebb-webhook", "namespace": ns},
                "spec": {"ports": [{"name": "webhook", "port": 443, "targetPort": port}]},
            }
        )
    )
    await client.create(
        ENDPOINTS(
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": "ebb-webhook", "namespace": ns},
                "subsets": [{"addresses": [{"ip": own_address()}], "ports": [{"name": "webhook", "port": port}]}],
            }
        )
    )
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": ns},
        "webhooks": [webhook(ns, kind, version, bundle.ca_cert) for kind, version in KINDS],
    }
    replica = single_operator(
        ns,
        webhook_port=port,
        tls_cert_file=str(tmp_path / "tls.crt"),
        tls_private_key_file=str(tmp_path / "tls.key"),
    )
    await client.create(WEBHOOKS(config))
    try:

        async def first() -> str:
            replica.check()
            return await _create(client, route("api", ns, ["/other", "/api"]))

        # The first goes through the webhook too: admitted once the operator serves it (until then, "failed
        # calling webhook").
        await eventually(first, "the first route admitted", ok=lambda problem: not problem)
        problem = await _create(client, route("api-v2", ns, ["/api/"]))
        assert problem == (
            f'admission webhook "vhttpscaledobject.ebb.dev" denied the request: HTTPScaledObject {ns}/api-v2: '
            f"spec.pathPrefixes[0]: host '{ns}.example.com' and path prefix '/api' is already routed by "
            f"HTTPScaledObject {ns}/api (spec.pathPrefixes[1]); two HTTPScaledObjects cannot claim the same host and "
            "path prefix (give one another host, prefix or headers)"
        )
        # Another header set is another route: admitted.
        assert not await _create(client, route("api-v3", ns, ["/api"], headers=[{"name": "X-V", "value": "3"}]))
        # InterceptorRoutes: against an HTTPScaledObject, and the other way round; the same-name pair is admitted
        # (the add-on's migration path).
        host = f"{ns}.example.com"
        problem = await _create(client, interceptor_route("route1", ns, host, "/api"), INTERCEPTOR_ROUTE)
        assert problem.startswith(
            f'admission webhook "vinterceptorroute.ebb.dev" denied the request: InterceptorRoute {ns}/route1: '
            f"spec.rules[0].paths[0].value: host '{host}' and path prefix '/api' is already routed by "
            f"HTTPScaledObject {ns}/api (spec.pathPrefixes[1])"
        ), problem
        assert not await _create(client, interceptor_route("route2", ns, host, "/x"), INTERCEPTOR_ROUTE)
        problem = await _create(client, route("hso", ns, ["/x/"]))
        assert problem.startswith(
            f'admission webhook "vhttpscaledobject.ebb.dev" denied the request: HTTPScaledObject {ns}/hso: '
            f"spec.pathPrefixes[0]: host '{host}' and path prefix '/x' is already routed by InterceptorRoute "
            f"{ns}/route2 (spec.rules[0].paths[0].value)"
        ), problem
        assert not await _create(client, interceptor_route("api", ns, host, "/api"), INTERCEPTOR_ROUTE)
        replica.check()
    finally:
        await client.delete(WEBHOOKS, ns)
        await replica.stop()
    assert replica.error is None


async def _create(client: AsyncClient, body: dict[str, Any], resource: Any = HTTP_SCALED_OBJECT) -> str:
    """Create `body`; the API server's refusal, or "" when it was admitted."""
    try:
        await client.create(resource(body))
    except ApiError as exc:
        return str(exc.status.message)
    return ""
