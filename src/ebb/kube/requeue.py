"""Objects that lost a conflict, reconciled again as soon as that changes.

A ScaledObject or HTTPScaledObject refused because another one scales its workload (kube/admission.py,
kube/http_admission.py, by arrival: creationTimestamp, then name) is retried with backoff, up to
`MAX_RETRY_DELAY` (5 min) apart. When the winner is deleted, its controller's `delete` calls `released`: every
object refused because of it (its name in the refusal, or the same namespace and workload) is reconciled at once,
in the background, so the survivor starts scaling within a reconcile; so they are when the winner stops scaling
the workload otherwise (moved to another, routing only, broken). The backoff stays as the fallback (an operator
restart, an edit the operator has not reconciled yet).

The other way round: an object that starts scaling (`scaling`) while one that arrived after it already scales the
same workload (made in the same second, while the webhook was off: the name decides) has that one reconciled at
once, which refuses it, so the workload never keeps two scalers until the next restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ebb.kube.client import API_ERRORS, AsyncClient, is_not_found, to_dict

log = logging.getLogger("ebb.operator")

#: (kind, namespace, name)
ObjectKey = tuple[str, str, str]
#: (API group, kind, name) of a workload, as the conflict checks compare them.
Workload = tuple[str, str, str]


async def reconcile_current(
    client: AsyncClient,
    resource: Any,
    namespace: str,
    name: str,
    reconcile: Callable[[dict[str, Any]], Awaitable[bool]],
) -> None:
    """Reconcile the object as it is now (the object it was refused for is going); nothing if it is gone or going."""
    try:
        body = to_dict(await client.get(resource, name, namespace=namespace))
    except API_ERRORS as exc:
        if is_not_found(exc):
            return
        raise
    if not (body.get("metadata") or {}).get("deletionTimestamp"):
        await reconcile(body)


def workload(ref: Mapping[str, Any] | None) -> Workload | None:
    """The workload of a scaleTargetRef (manifest form; apps/v1 Deployment by default), None without a name."""
    ref = ref or {}
    name = ref.get("name")
    if not isinstance(name, str) or not name:
        return None
    api_version = str(ref.get("apiVersion") or "apps/v1")
    return (api_version.rpartition("/")[0], str(ref.get("kind") or "Deployment"), name)


@dataclass(frozen=True)
class Claim:
    """What an object scales, or would scale: its workload, its arrival, and how to reconcile it again."""

    workload: Workload | None
    arrival: tuple[float, str]
    #: Reconcile the object again (reads it afresh; nothing when it is gone).
    retry: Callable[[], Awaitable[Any]]
    #: For a refused object: the object it lost to, as the refusal named it.
    conflicting: ObjectKey | None = None


class Requeue:
    """The refused and the scaling objects of one operator, shared by its controllers (a ScaledObject may lose to an
    HTTPScaledObject and the other way round)."""

    def __init__(self) -> None:
        self._refused: dict[ObjectKey, Claim] = {}
        self._scaling: dict[ObjectKey, Claim] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def refused(self, key: ObjectKey, claim: Claim) -> None:
        """`key` lost a conflict (to `claim.conflicting`)."""
        self._stopped(key, claim.workload)
        self._refused[key] = claim

    def scaling(self, key: ObjectKey, claim: Claim) -> list[ObjectKey]:
        """`key` scales `claim.workload` now: objects of the same namespace that scale it too and arrived later are
        reconciled again (and refused). Returns their keys."""
        self._refused.pop(key, None)
        before = self._scaling.get(key)
        self._scaling[key] = claim
        if before is not None and before.workload != claim.workload:  # moved: what it kept out may scale now
            self._wake(key, before.workload, conflicting=False)
        later = [
            other
            for other, theirs in self._scaling.items()
            if other != key
            and other[1] == key[1]
            and claim.workload is not None
            and theirs.workload == claim.workload
            and claim.arrival < theirs.arrival
        ]
        for other in later:
            log.info("%s %s/%s: %s %s/%s arrived first on its workload, reconciling it again now", *other, *key)
            self._spawn(other, self._scaling.pop(other))
        return later

    def cleared(self, key: ObjectKey) -> list[ObjectKey]:
        """`key` neither scales nor was refused for a conflict (broken, routing only, an API error): what it kept
        from scaling is reconciled again. Returns the keys re-queued."""
        self._refused.pop(key, None)
        return self._stopped(key, None)

    def released(self, key: ObjectKey, target: Workload | None) -> list[ObjectKey]:
        """The object `key` (which scaled `target`) is being deleted: reconcile at once what it kept from scaling
        (refused naming it, or on `target`). Returns the keys re-queued."""
        self._refused.pop(key, None)
        before = self._scaling.pop(key, None)
        return self._wake(key, target or (before.workload if before is not None else None), conflicting=True)

    def _stopped(self, key: ObjectKey, workload: Workload | None) -> list[ObjectKey]:
        """`key` no longer scales (now `workload`, if refused): wake what it kept from its former workload."""
        before = self._scaling.pop(key, None)
        if before is None or before.workload is None or before.workload == workload:
            return []
        return self._wake(key, before.workload, conflicting=False)

    def _wake(self, key: ObjectKey, target: Workload | None, *, conflicting: bool) -> list[ObjectKey]:
        woken = [
            other
            for other, claim in self._refused.items()
            if other != key
            and other[1] == key[1]
            and ((conflicting and claim.conflicting == key) or (target is not None and claim.workload == target))
        ]
        for other in woken:
            log.info("%s %s/%s: %s %s/%s no longer scales its workload, reconciling it again now", *other, *key)
            self._spawn(other, self._refused.pop(other))
        return woken

    def _spawn(self, key: ObjectKey, claim: Claim) -> None:
        task = asyncio.create_task(self._retry(key, claim), name=f"ebb-requeue:{key[1]}/{key[2]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retry(self, key: ObjectKey, claim: Claim) -> None:
        try:
            await claim.retry()
        except Exception as exc:  # the backoff retry is still there; one failure here stops nothing else
            log.warning("%s %s/%s: reconcile after a conflict changed failed: %s", *key, exc)

    async def drain(self) -> None:
        """Wait for the reconciles started here (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Forget everything and stop what is running (the watches stopped; the next term's resume refills it)."""
        self._refused.clear()
        self._scaling.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
