"""KEDA's validating admission webhook, served over HTTPS: the shell around kube.admission.

The kube-apiserver POSTs an AdmissionReview v1 to KEDA's paths (`/validate-keda-sh-v1alpha1-scaledobject` ...,
and ebb's own for the HTTP add-on's kinds: `/validate-http-keda-sh-v1alpha1-httpscaledobject`,
`/validate-http-keda-sh-v1beta1-interceptorroute`)
and applies the answer. The checks are `admission.review`; this module holds the server, the Kubernetes reads
the checks make (`KubeCluster`), the loading of the conflict index, and KEDA's webhook metrics.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Mapping, Sequence
from typing import Any, Final

from aiohttp import web
from lightkube import ALL_NS
from prometheus_client import CollectorRegistry, Counter

from ebb.kube.admission import (
    HPA_API_VERSION,
    KINDS_BY_PATH,
    SCALED_OBJECT_API_VERSION,
    Cluster,
    ClusterUnavailable,
    ConflictIndex,
    Review,
    ReviewError,
    review,
)
from ebb.kube.client import API_ERRORS, HPA, SCALED_OBJECT, AsyncClient, api_message, is_not_found, namespaced, to_dict
from ebb.kube.metrics_api import status_body
from ebb.web.server import AppServer

log = logging.getLogger("ebb.webhook")

DEFAULT_PORT: Final = 9443
#: An AdmissionReview carries the object and, on update, its old version: room for two large objects.
MAX_BODY: Final = 8 * 1024 * 1024

_RESOURCES: Final = {
    (SCALED_OBJECT_API_VERSION, "ScaledObject"): SCALED_OBJECT,
    (HPA_API_VERSION, "HorizontalPodAutoscaler"): HPA,
    ("apps/v1", "Deployment"): namespaced("apps", "v1", "Deployment", "deployments"),
    ("apps/v1", "StatefulSet"): namespaced("apps", "v1", "StatefulSet", "statefulsets"),
    ("v1", "LimitRange"): namespaced("", "v1", "LimitRange", "limitranges"),
    ("http.keda.sh/v1alpha1", "HTTPScaledObject"): namespaced(
        "http.keda.sh", "v1alpha1", "HTTPScaledObject", "httpscaledobjects"
    ),
    ("http.keda.sh/v1beta1", "InterceptorRoute"): namespaced(
        "http.keda.sh", "v1beta1", "InterceptorRoute", "interceptorroutes"
    ),
}


class KubeCluster(Cluster):
    """admission.Cluster through the Kubernetes API (the kinds the checks read)."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    @staticmethod
    def _resource(api_version: str, kind: str) -> Any:
        resource = _RESOURCES.get((api_version, kind))
        if resource is None:
            raise ValueError(f"no reads of {kind} in {api_version} are wired")
        return resource

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        try:
            return to_dict(await self.client.get(self._resource(api_version, kind), name, namespace=namespace))
        except API_ERRORS as exc:
            if is_not_found(exc):
                return None
            raise ClusterUnavailable(f"cannot read {kind} {namespace}/{name}: {api_message(exc)}") from None

    async def list(self, api_version: str, kind: str, namespace: str) -> Sequence[Mapping[str, Any]]:
        """Every object of the kind in `namespace` ("*": in every namespace)."""
        try:
            return [to_dict(o) async for o in self.client.list(self._resource(api_version, kind), namespace=namespace)]
        except API_ERRORS as exc:
            if is_not_found(exc):
                return []  # the kind is not served (its CRD is not installed): there is none of it
            where = "any namespace" if namespace == ALL_NS else f"namespace {namespace}"
            raise ClusterUnavailable(f"cannot list {kind} in {where}: {api_message(exc)}") from None


async def load_conflicts(cluster: Cluster, index: ConflictIndex, namespaces: Sequence[str] = ()) -> None:
    """Fill `index` from full listings of the ScaledObjects and HPAs in `namespaces` (none: every namespace).

    Run before the watches start: their events then keep it current, and the index is complete for the first
    reconcile. The listings are awaited first and loaded at once, so no check sees a half-loaded index.
    """
    scaled_objects: list[Mapping[str, Any]] = []
    hpas: list[Mapping[str, Any]] = []
    for namespace in namespaces or (ALL_NS,):
        scaled_objects += await cluster.list(SCALED_OBJECT_API_VERSION, "ScaledObject", namespace)
        hpas += await cluster.list(HPA_API_VERSION, "HorizontalPodAutoscaler", namespace)
    index.replace(scaled_objects, hpas, namespaces=namespaces or None)
    log.info("conflict index: %d ScaledObjects, %d HPAs", len(scaled_objects), len(hpas))


class WebhookMetrics:
    """KEDA's webhook counters (`keda:pkg/metricscollector/webhook`), on the operator's registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.validations = Counter(
            "keda_webhook_scaled_object_validations",
            "Total number of scaled object validations.",
            ["namespace", "action"],
            registry=self.registry,
        )
        self.validation_errors = Counter(
            "keda_webhook_scaled_object_validation_errors",
            "Total number of scaled object validating errors.",
            ["namespace", "action", "reason"],
            registry=self.registry,
        )

    def record(self, outcome: Review) -> None:
        # As KEDA: ScaledObject validations are counted; a ScaledJob's trigger errors count as errors too
        # (KEDA's verifyTriggers records them under the same metric).
        if not outcome.validated:
            return
        if outcome.kind == "ScaledObject":
            self.validations.labels(outcome.namespace, outcome.action).inc()
        if outcome.allowed or outcome.reason is None:
            return
        if outcome.kind == "ScaledObject" or (outcome.kind == "ScaledJob" and outcome.reason == "incorrect-triggers"):
            self.validation_errors.labels(outcome.namespace, outcome.action, outcome.reason).inc()


def _json(status: int, body: Mapping[str, Any]) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body, separators=(",", ":")).encode(), content_type="application/json"
    )


def make_app(
    index: ConflictIndex | None, cluster: Cluster | None, metrics: WebhookMetrics | None = None
) -> web.Application:
    """The aiohttp application answering AdmissionReviews at KEDA's four paths (TLS belongs to the site)."""

    def handler_for(kind: str) -> Any:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()  # aiohttp answers 413 beyond MAX_BODY
            try:
                outcome = await review(body, kind=kind, index=index, cluster=cluster)
            except ReviewError as exc:
                return _json(400, status_body(400, f"not an AdmissionReview v1 request: {exc}"))
            except Exception as exc:  # one bad request never stops the server, and never shows a traceback
                log.error("admission review of a %s failed: %s", kind, type(exc).__name__)
                log.debug("admission review failure", exc_info=True)
                return _json(500, status_body(500, f"internal error while validating the {kind}"))
            if metrics is not None:
                metrics.record(outcome)
            if not outcome.allowed:
                log.info("refused %s %s: %s", outcome.action, kind, outcome.message)
            return _json(200, outcome.response())

        return handle

    app = web.Application(client_max_size=MAX_BODY)
    for path, kind in KINDS_BY_PATH.items():
        app.router.add_post(path, handler_for(kind))
    return app


class WebhookServer(AppServer):
    """Serves the admission webhook on host:port (port 0 picks a free one) with `ssl_context`."""

    label = "admission webhook"

    def __init__(
        self,
        index: ConflictIndex | None,
        cluster: Cluster | None,
        *,
        host: str = "0.0.0.0",
        port: int = DEFAULT_PORT,
        ssl_context: ssl.SSLContext | None = None,
        metrics: WebhookMetrics | None = None,
    ) -> None:
        super().__init__(host, port, ssl_context)
        self.index = index
        self.cluster = cluster
        self.metrics = metrics

    def make_app(self) -> web.Application:
        return make_app(self.index, self.cluster, self.metrics)
