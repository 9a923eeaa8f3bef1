"""List-then-watch of one resource kind, kept current in memory (client-go's informer, in small).

`Informer.run()` lists the objects (replacing what it held, at once), then watches from the list's
resourceVersion; when the watch fails (410 Gone, a dropped connection, an API error) it lists again after a
short backoff. `on_change` is called after every list and every event, so a consumer rebuilds from `objects`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx2

from ebb.kube.client import API_ERRORS, AsyncClient, api_message, to_dict

log = logging.getLogger("ebb.kube")

Key = tuple[str, str]
#: Seconds before listing again after a failure, doubled up to MAX_BACKOFF.
BACKOFF = 0.5
MAX_BACKOFF = 10.0


#: What ends a list or a watch and is worth listing again for.
FAILURES: tuple[type[BaseException], ...] = (*API_ERRORS, httpx2.HTTPError, OSError, ValueError)


def key_of(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class Informer:
    """The objects of `resource` in `namespace` (None: every namespace) matching `labels`, by (namespace, name)."""

    def __init__(
        self,
        client: AsyncClient,
        resource: Any,
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        on_change: Callable[[], None] | None = None,
        on_event: Callable[[Key, dict[str, Any] | None], None] | None = None,
        what: str = "",
    ) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.labels: dict[str, Any] | None = dict(labels) if labels else None
        self.objects: dict[Key, dict[str, Any]] = {}
        self.on_change = on_change
        #: When set, a watch event calls this with the object's key and body (None: deleted) instead of
        #: `on_change`, so a consumer can update only what that object touches; a (re)listing still calls
        #: `on_change`.
        self.on_event = on_event
        self.what = what or "objects"
        #: Set once the first listing has been loaded.
        self.synced = asyncio.Event()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def _list(self) -> str:
        listing = self.client.list(self.resource, namespace=self.namespace or "*", labels=self.labels)
        found = {key_of(d): d for d in [to_dict(item) async for item in listing]}
        self.objects = found
        self.synced.set()
        self._changed()
        return listing.resourceVersion

    async def _watch(self, version: str) -> None:
        async for kind, obj in self.client.watch(
            self.resource, namespace=self.namespace or "*", labels=self.labels, resource_version=version
        ):
            body = to_dict(obj)
            key = key_of(body)
            if kind == "DELETED":
                self.objects.pop(key, None)
            elif kind in ("ADDED", "MODIFIED"):
                self.objects[key] = body
            else:
                continue
            if self.on_event is not None:
                self.on_event(key, None if kind == "DELETED" else body)
            else:
                self._changed()

    async def run(self) -> None:
        delay = BACKOFF
        while True:
            try:
                version = await self._list()
                delay = BACKOFF
                await self._watch(version)
            except asyncio.CancelledError:
                raise
            except FAILURES as exc:
                log.warning("watch of %s failed (listing again in %.1f s): %s", self.what, delay, api_message(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)
