"""A Service's EndpointSlices (discovery.k8s.io/v1), for metrics-api's aggregateFromKubeServiceEndpoints."""

from __future__ import annotations

from typing import Any

from ebb.kube.client import API_ERRORS, AsyncClient, api_message, namespaced, to_dict
from ebb.scalers.base import EndpointSliceLister

ENDPOINT_SLICE = namespaced("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def endpoint_slice_lister(client: AsyncClient) -> EndpointSliceLister:
    """Lists the slices labelled with the Service's name in its namespace, as KEDA's scaler does."""

    async def list_slices(namespace: str, service: str) -> list[dict[str, Any]]:
        try:
            return [
                to_dict(item)
                async for item in client.list(ENDPOINT_SLICE, namespace=namespace, labels={SERVICE_NAME_LABEL: service})
            ]
        except API_ERRORS as exc:
            raise RuntimeError(api_message(exc)) from None

    return list_slices
