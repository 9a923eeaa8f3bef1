"""The one Kubernetes client ebb uses (lightkube's AsyncClient), and the resources it talks to.

Everything is handled as plain dicts through lightkube's generic resources: ebb builds its manifests itself
(hpa.py, status.py) and reads them through its own pydantic models (ebb.spec).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import httpx2
from lightkube import AsyncClient, KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource, create_namespaced_resource

__all__ = [
    "API_ERRORS",
    "ApiError",
    "AsyncClient",
    "api_message",
    "client_for_url",
    "default_client",
    "global_resource",
    "is_not_found",
    "namespaced",
    "status_code",
    "to_dict",
]


def default_client() -> AsyncClient:
    """In-cluster service account, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    return AsyncClient(KubeConfig.from_env(), field_manager="ebb-operator")


def client_for_url(url: str, token: str = "ebb") -> AsyncClient:
    """A client for an API server at `url` with a bearer token (tests, port-forwards)."""
    config = KubeConfig.from_dict(
        {
            "clusters": [{"name": "cluster", "cluster": {"server": url}}],
            "users": [{"name": "user", "user": {"token": token}}],
            "contexts": [{"name": "ctx", "context": {"cluster": "cluster", "user": "user"}}],
            "current-context": "ctx",
        }
    )
    return AsyncClient(config, field_manager="ebb-operator")


@cache
def namespaced(group: str, version: str, kind: str, plural: str) -> Any:
    """A lightkube class for a namespaced resource (with .Scale and .Status subresources)."""
    return create_namespaced_resource(group, version, kind, plural)


@cache
def global_resource(group: str, version: str, kind: str, plural: str) -> Any:
    return create_global_resource(group, version, kind, plural)


def to_dict(obj: Any) -> dict[str, Any]:
    """A lightkube object (generic or typed) as a plain manifest dict."""
    if isinstance(obj, dict):
        return dict(obj)
    result: dict[str, Any] = obj.to_dict()
    return result


#: What a failed API call raises. lightkube turns an error into ApiError only when the Content-Type is exactly
#: "application/json"; a server (or proxy) that adds "; charset=utf-8" surfaces as httpx's HTTPStatusError.
API_ERRORS: tuple[type[Exception], ...] = (ApiError, httpx2.HTTPStatusError)


def status_code(exc: BaseException) -> int | None:
    if isinstance(exc, ApiError):
        return exc.status.code
    if isinstance(exc, httpx2.HTTPStatusError):
        return exc.response.status_code
    return None


def api_message(exc: BaseException) -> str:
    """The API server's message for a failed call (its Status.message), else the HTTP status."""
    if isinstance(exc, ApiError):
        return str(exc.status.message or exc.status.reason or exc)
    if isinstance(exc, httpx2.HTTPStatusError):
        try:
            return str(exc.response.json().get("message") or exc.response.status_code)
        except ValueError:
            return f"HTTP {exc.response.status_code}"
    return str(exc)


def is_not_found(exc: BaseException) -> bool:
    return status_code(exc) == 404


SCALED_OBJECT = namespaced("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects")
SCALED_JOB = namespaced("keda.sh", "v1alpha1", "ScaledJob", "scaledjobs")
TRIGGER_AUTHENTICATION = namespaced("keda.sh", "v1alpha1", "TriggerAuthentication", "triggerauthentications")
CLUSTER_TRIGGER_AUTHENTICATION = global_resource(
    "keda.sh", "v1alpha1", "ClusterTriggerAuthentication", "clustertriggerauthentications"
)
HPA = namespaced("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")
EVENT = namespaced("", "v1", "Event", "events")
SECRET = namespaced("", "v1", "Secret", "secrets")
CONFIG_MAP = namespaced("", "v1", "ConfigMap", "configmaps")
JOB = namespaced("batch", "v1", "Job", "jobs")
POD = namespaced("", "v1", "Pod", "pods")
CRD = global_resource("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions")
