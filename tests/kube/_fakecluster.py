"""A fake cluster for tests that run kopf (and the operator) for real: kmock plus what a real API server does.

`Cluster` is the server (use it with `pytest.mark.kmock(cls=Cluster)`); `use_kubeconfig` logs kopf and lightkube
in to it as on a workstation; `eventually` waits for what the operator does in the background.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import kmock as km
import pytest
import yaml

CRD_DIR = Path(__file__).resolve().parents[2] / "deploy" / "crds"
CRD_RES = km.resource("apiextensions.k8s.io/v1/customresourcedefinitions")
NAMESPACE_RES = km.resource("v1/namespaces")
VERBS = {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
RV_PATH = "/metadata/resourceVersion"
_WRITES = (km.action.CREATE, km.action.UPDATE, km.action.DELETE)


class Cluster(km.KubernetesEmulator):
    """kmock plus the API server's bookkeeping that kopf, the Lease and the tests rely on.

    - Every change gets the next resourceVersion (a create also a uid and a creationTimestamp), a deletion too.
    - A merge patch carrying an older resourceVersion is refused with 409, a JSON patch whose `test` of it fails
      with 422, as the API server does.
    - As the garbage collector does, an object goes when all its ownerReferences point to objects that are gone.
    - A list tells its resourceVersion; a watch from it sends what changed since (the latest state of each
      changed object, in order), then every change as it happens: no more, no less. kmock 0.8 replays every
      object at the start of a watch instead, and loses what changes while it does: kopf then acts on a stale
      copy, its JSON patch adding the finalizer fails, and no later event makes it try again.

    Writes are applied one at a time, and lists and the start of watches see none half done: a precondition is
    checked against the state the write applies to, and a list's resourceVersion covers exactly what it lists.
    Objects a test puts in `objects` directly are there from the start (no events, no versions needed).
    """

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._last_version = 0
        #: Held by each write from its checks to its garbage collection, and by list and watch snapshots.
        self._serial = asyncio.Lock()

    # --- what the cluster serves

    def serve(self, *resources: str | km.resource, namespaced: bool = True) -> None:
        """Serve built-in resources ("apps/v1/deployments") with every verb, for discovery."""
        for res in resources:
            self.resources[km.resource(res) if isinstance(res, str) else res] = km.ResourceInfo(
                verbs=VERBS, namespaced=namespaced
            )

    def add_namespaces(self, *names: str) -> None:
        """Namespaces, and the resource in discovery (kopf waits for it before it watches anything)."""
        self.resources[NAMESPACE_RES] = km.ResourceInfo(kind="Namespace", verbs=VERBS, namespaced=False)
        for name in names:
            self.objects[NAMESPACE_RES, None, name] = {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name},
            }

    def install_crds(self, directory: Path = CRD_DIR) -> None:
        """ebb's CRDs (deploy/crds) as a cluster serves them: the CRD objects, and their resources in discovery."""
        self.resources[CRD_RES] = km.ResourceInfo(kind="CustomResourceDefinition", verbs=VERBS, namespaced=False)
        for path in sorted(directory.glob("*.yaml")):
            for crd in yaml.safe_load_all(path.read_text()):
                if not crd:
                    continue
                spec, names = crd["spec"], crd["spec"]["names"]
                for served in spec["versions"]:
                    self.resources[f"{spec['group']}/{served['name']}/{names['plural']}"] = km.ResourceInfo(
                        kind=names["kind"],
                        singular=names["singular"],
                        namespaced=spec["scope"] == "Namespaced",
                        verbs=VERBS,
                        shortnames=names.get("shortNames", []),
                        categories=names.get("categories", []),
                        subresources=set(served.get("subresources") or {}),
                    )
                self.objects[CRD_RES, None, crd["metadata"]["name"]] = crd

    # --- the API server's part

    async def _handle(self, request: km.Request) -> Any:
        if request.resource is None or request.action not in _WRITES:
            return await super()._handle(request)
        async with self._serial:
            self._stamp(request)
            response = await super()._handle(request)  # kmock applies the change and tells the watches
            await self._collect_garbage()
            return response

    def _live(self, request: km.Request) -> km.Object | None:
        """The existing object the request names, if any."""
        if request.resource is None or request.name is None:
            return None
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        found: km.Object = self.objects[key]
        return found

    def _next_version(self) -> str:
        self._last_version += 1
        return str(self._last_version)

    def _restamp(self, obj: km.Object) -> None:
        """A new resourceVersion on the stored object itself, for the change kmock is about to make to it."""
        meta = dict(obj.last.raw.get("metadata") or {})
        meta["resourceVersion"] = self._next_version()
        obj.last["metadata"] = meta

    def _stamp(self, request: km.Request) -> None:
        """Check the write's precondition, as the API server does, then give the change a new resourceVersion."""
        live = self._live(request)
        current = (live.raw.get("metadata") or {}).get("resourceVersion") if live is not None else None
        if request.action == km.action.DELETE:
            # kmock marks it (deletionTimestamp) while finalizers hold it, else deletes it: either is a change.
            if live is not None and not (live.raw.get("metadata") or {}).get("deletionTimestamp"):
                self._restamp(live)
        elif isinstance(request.data, list):  # a JSON patch (kopf's finalizers), guarded by a `test` of the version
            tested = [op.get("value") for op in request.data if op.get("op") == "test" and op.get("path") == RV_PATH]
            if any(value != current for value in tested):
                raise km.KubernetesError(status=422, reason="Invalid", message="the object has been modified")
            request.data.append({"op": "add", "path": RV_PATH, "value": self._next_version()})
        elif isinstance(request.data, dict):  # a create or a merge patch, which may carry the version read
            meta = request.data.setdefault("metadata", {})
            expected = meta.get("resourceVersion")
            if request.action == km.action.UPDATE and expected is not None and expected != current:
                raise km.KubernetesError(status=409, reason="Conflict", message="the object has been modified")
            if request.action == km.action.CREATE:
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", datetime.datetime.now(datetime.UTC).isoformat())
            meta["resourceVersion"] = self._next_version()

    async def _serve_list(self, request: km.Request) -> Any:
        async with self._serial:
            listing: Any = await super()._serve_list(request)
            listing["metadata"]["resourceVersion"] = str(self._last_version)
        return listing

    async def _serve_watch(self, request: km.Request) -> AsyncIterator[Any]:
        yield b""  # the headers: the stream has started
        assert request.resource is not None  # a watch is of a resource
        since = request.params.get("resourceVersion", "")
        bus = self._buses[request.resource]
        async with self._serial:  # no write half done: the snapshot and the mark agree
            mark = await bus.mark()
            if since.isdigit():
                changed = sorted(
                    (o for key, o in self.objects.items() if watched(request, *key) and version(o) > int(since)),
                    key=version,
                )
                replay = [{"type": "DELETED" if o.deleted else "MODIFIED", "object": o.last.raw} for o in changed]
            else:
                replay = [
                    {"type": "ADDED", "object": o.raw}
                    for key, o in self.objects.items()
                    if watched(request, *key) and not o.deleted
                ]
        try:
            for event in replay:
                yield event
            async for event in bus.stream(since=mark):
                meta = event.get("object", {}).get("metadata", {})
                if watched(request, request.resource, meta.get("namespace"), meta.get("name")):
                    yield event
        finally:
            await bus.unmark(mark)

    async def _collect_garbage(self) -> None:
        """Dependents whose owners are all gone: deleted, or marked for deletion while finalizers hold them."""
        while True:
            alive = {(o.raw.get("metadata") or {}).get("uid") for o in self.objects.values() if not o.deleted}
            orphans = [
                (key[0], obj)
                for key, obj in self.objects.items()
                if not obj.deleted
                and not (obj.raw.get("metadata") or {}).get("deletionTimestamp")
                and (owners := (obj.raw.get("metadata") or {}).get("ownerReferences") or [])
                and not any(owner.get("uid") in alive for owner in owners)
            ]
            if not orphans:
                return
            async with self._lock:
                for resource, obj in orphans:
                    self._restamp(obj)
                    if (obj.raw.get("metadata") or {}).get("finalizers"):
                        now = datetime.datetime.now(datetime.UTC).isoformat()
                        obj.last["metadata"] = {**obj.last.raw["metadata"], "deletionTimestamp": now}
                        await self._buses[resource].put({"type": "MODIFIED", "object": obj.raw})
                    else:
                        obj.delete()
                        await self._buses[resource].put({"type": "DELETED", "object": obj.last.raw})


def watched(request: km.Request, resource: km.resource, namespace: str | None, name: str | None) -> bool:
    """Whether the object is one the (list or watch) request asks for."""
    return resource == request.resource and request.namespace in (None, namespace) and request.name in (None, name)


def version(obj: km.Object) -> int:
    """The resourceVersion of the object's last change (its deletion, if it is deleted); 0 if it has none."""
    found = str((obj.last.raw.get("metadata") or {}).get("resourceVersion") or "0")
    return int(found) if found.isdigit() else 0


def use_kubeconfig(cluster: km.KubernetesEmulator, directory: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """How both kopf and lightkube log in on a workstation: KUBECONFIG naming a file (written in `directory`)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": str(cluster.url)}}],
        "users": [{"name": "tester", "user": {"token": "ebb-tests"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester"}}],
        "current-context": "kmock",
    }
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


async def eventually(
    probe: Callable[[], Any],
    what: str,
    *,
    ok: Callable[[Any], bool] = bool,
    within: float = 30.0,
) -> Any:
    """Poll `probe` (sync or async) until `ok(result)`; fail naming `what` and the last result after `within` s.

    A deadline for a hung operator, not a measurement: generous, for a loaded machine.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: Any = None
    while True:
        try:
            last = probe()
            if inspect.isawaitable(last):
                last = await last
            if ok(last):
                return last
        except (KeyError, aiohttp.ClientError, OSError) as exc:  # not there yet
            last = exc
        if loop.time() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}; last seen: {last!r}")
        await asyncio.sleep(0.05)
