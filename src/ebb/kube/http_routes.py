"""InterceptorRoutes (http.keda.sh/v1beta1) under `ebb operator`: status and Events; scaling is a ScaledObject's.

An InterceptorRoute is a route only. The interceptors route it (kube/http_interceptor.py); an ordinary
ScaledObject whose `external-push` trigger says `interceptorRoute: <name>` scales its workload, and ebb's
operator serves that trigger from the interceptors' load (kube/http_feed.py `interceptor_scalers`), under the
add-on scaler's metric names.

Status: one condition, Ready. The add-on's own controller (operator/controllers/http/interceptorroute_controller.go)
only ever writes True / Reconciled; ebb writes False with reason CreateError when the spec does not parse or the
Service has no such port, and ServiceNotFound when `spec.target.service` does not exist (retried until it does),
each with a Warning Event of that reason when the condition turns to it. A route no ScaledObject reads is Ready
(it routes) but says so in the message: it will never scale from zero.

An edit of a route re-reconciles the running ScaledObjects that read it, so a new target value or metric applies
without touching them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from lightkube.types import PatchType

from ebb.kube import status as st
from ebb.kube.client import API_ERRORS, EVENT, SCALED_OBJECT, AsyncClient, api_message, is_not_found, to_dict
from ebb.kube.http_endpoints import service_port_name
from ebb.kube.http_interceptor import INTERCEPTOR_ROUTE, SERVICE
from ebb.kube.http_operator import (
    READY,
    REASON_CREATE_ERROR,
    REASON_RECONCILED,
    REASON_SERVICE_NOT_FOUND,
    _error_text,
    _with_condition,
    ready_condition,
)
from ebb.kube.operator import OperatorOptions, ScaledObjectController
from ebb.scaling.types import ScalingEvent
from ebb.spec import parse_object
from ebb.spec.models import INTERCEPTOR_ROUTE_KEY, InterceptorRoute

log = logging.getLogger("ebb.operator")

READY_MESSAGE = "InterceptorRoute reconciled"


def reads_route(so_body: Mapping[str, Any], name: str) -> bool:
    """Whether a ScaledObject manifest has an `external-push` trigger naming the route `name`."""
    for trigger in (so_body.get("spec") or {}).get("triggers") or ():
        if (
            isinstance(trigger, Mapping)
            and trigger.get("type") == "external-push"
            and (trigger.get("metadata") or {}).get(INTERCEPTOR_ROUTE_KEY) == name
        ):
            return True
    return False


class InterceptorRouteController:
    """Reconciles InterceptorRoutes: the Ready condition, Events, and the ScaledObjects that read them."""

    def __init__(
        self,
        client: AsyncClient,
        options: OperatorOptions | None = None,
        scaled_objects: ScaledObjectController | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.options = options or OperatorOptions()
        self.scaled_objects = scaled_objects
        self.clock = clock
        #: The generation last reconciled per route: a change (not a restart's resume) re-reconciles its readers.
        self.generations: dict[tuple[str, str], Any] = {}

    async def emit(self, body: Mapping[str, Any], reason: str, message: str) -> None:
        event = ScalingEvent(reason, message, "Warning")
        with contextlib.suppress(*API_ERRORS):
            await self.client.create(EVENT(st.event_manifest(st.object_reference(body), event, self.clock())))

    async def _set(self, body: Mapping[str, Any], key: tuple[str, str], status: str, reason: str, message: str) -> bool:
        """Write the Ready condition; a Warning Event when it turns False with a new reason. False on API errors."""
        was: Mapping[str, Any] = next(
            (c for c in (body.get("status") or {}).get("conditions") or () if c.get("type") == READY),
            {},
        )
        conditions = _with_condition(body, ready_condition(status, reason, message), self.clock())
        try:
            await self.client.patch(
                INTERCEPTOR_ROUTE.Status,
                key[1],
                {"status": {"conditions": conditions}},
                namespace=key[0],
                patch_type=PatchType.MERGE,
            )
        except API_ERRORS as exc:
            log.warning("InterceptorRoute %s/%s: cannot write status: %s", *key, api_message(exc))
            return False
        if status == "False" and (was.get("reason") != reason or was.get("message") != message):
            log.warning("InterceptorRoute %s/%s: %s", *key, message)
            await self.emit(body, reason, message)
        return True

    async def _readers(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return [
            body
            for body in [to_dict(o) async for o in self.client.list(SCALED_OBJECT, namespace=namespace)]
            if reads_route(body, name)
        ]

    async def reconcile(self, body: Mapping[str, Any]) -> bool:
        """Never raises for a broken route; False when a retry may succeed (a missing Service, an API error)."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or "default"), str(meta.get("name") or ""))
        obj, errors = parse_object(dict(body), label=f"InterceptorRoute {key[0]}/{key[1]}")
        if errors or not isinstance(obj, InterceptorRoute):
            await self._set(body, key, "False", REASON_CREATE_ERROR, _error_text(errors) or "not an InterceptorRoute")
            return True  # only an edit can fix it, and an edit reconciles again
        target = obj.spec.target
        try:
            service = to_dict(await self.client.get(SERVICE, target.service, namespace=key[0]))
            readers = await self._readers(*key)
        except API_ERRORS as exc:
            if not is_not_found(exc):
                await self._set(body, key, "False", REASON_CREATE_ERROR, f"Kubernetes API: {api_message(exc)}")
                return False
            message = (
                f"spec.target.service: Service {key[0]}/{target.service} does not exist; the interceptor answers "
                "this route's requests with 503 until it does"
            )
            return await self._set(body, key, "False", REASON_SERVICE_NOT_FOUND, message) and False
        if service_port_name(service, target.port, target.port_name) is None:
            field, wanted = (
                ("spec.target.port", f"port {target.port}")
                if target.port is not None
                else ("spec.target.portName", f"a port named {target.port_name!r}")
            )
            message = f"{field}: Service {key[0]}/{target.service} has no {wanted}"
            return await self._set(body, key, "False", REASON_CREATE_ERROR, message) and False
        message = READY_MESSAGE
        if not readers:
            message += (
                f"; no ScaledObject reads it yet (give one an external-push trigger with "
                f"`{INTERCEPTOR_ROUTE_KEY}: {key[1]}`), so it will not scale from zero"
            )
        if not await self._set(body, key, "True", REASON_RECONCILED, message):
            return False
        generation = meta.get("generation")
        changed = key in self.generations and self.generations[key] != generation
        self.generations[key] = generation
        if changed:
            await self._refresh(readers)
        return True

    async def _refresh(self, readers: list[dict[str, Any]]) -> None:
        """Rebuild the scalers of the running ScaledObjects that read the route (its metric may have changed)."""
        if self.scaled_objects is None:
            return
        for so_body in readers:
            so_meta = so_body.get("metadata") or {}
            if (str(so_meta.get("namespace")), str(so_meta.get("name"))) in self.scaled_objects.runtimes:
                await self.scaled_objects.reconcile(so_body)

    async def delete(self, body: Mapping[str, Any]) -> None:
        """Its readers are reconciled again: they report the missing route (ScaledObjectCheckFailed)."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or "default"), str(meta.get("name") or ""))
        self.generations.pop(key, None)
        with contextlib.suppress(*API_ERRORS):
            await self._refresh(await self._readers(*key))
