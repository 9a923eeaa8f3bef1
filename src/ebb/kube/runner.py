"""kopf wiring: the framework does watches, retries and finalizers; the controller does the work."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import kopf

from ebb.kube.client import default_client
from ebb.kube.jobs import ScaledJobController
from ebb.kube.leader import LeaderElector, default_namespace, run_as_leader
from ebb.kube.operator import FINALIZER, OperatorOptions, ScaledObjectController
from ebb.observe.services import Services

log = logging.getLogger("ebb.operator")
SO = ("keda.sh", "v1alpha1", "scaledobjects")
SJ = ("keda.sh", "v1alpha1", "scaledjobs")


def register_handlers(
    registry: kopf.OperatorRegistry, controller: ScaledObjectController, jobs: ScaledJobController | None = None
) -> None:
    """ScaledObject/ScaledJob create/update/resume reconcile; delete stops the loop (kopf holds FINALIZER
    meanwhile)."""

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        # ebb writes status itself (KEDA's fields); kopf keeps its progress in annotations.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="ebb.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="ebb.dev")
        settings.posting.enabled = False

    @kopf.on.resume(*SO, registry=registry)
    @kopf.on.create(*SO, registry=registry)
    @kopf.on.update(*SO, registry=registry)
    async def scaled_object_changed(body: kopf.Body, **_: Any) -> None:
        await controller.reconcile(dict(body))

    @kopf.on.delete(*SO, registry=registry)
    async def scaled_object_deleted(body: kopf.Body, **_: Any) -> None:
        await controller.delete(dict(body))

    if jobs is not None:

        @kopf.on.resume(*SJ, registry=registry)
        @kopf.on.create(*SJ, registry=registry)
        @kopf.on.update(*SJ, registry=registry)
        async def scaled_job_changed(body: kopf.Body, **_: Any) -> None:
            await jobs.reconcile(dict(body))

        @kopf.on.delete(*SJ, registry=registry)
        async def scaled_job_deleted(body: kopf.Body, **_: Any) -> None:
            await jobs.delete(dict(body))

    @kopf.on.cleanup(registry=registry)
    async def stop_loops(**_: Any) -> None:
        await controller.close()
        if jobs is not None:
            await jobs.close()


async def operator_main(
    *,
    namespaces: Sequence[str],
    scaling: Literal["hpa", "direct"],
    metrics_api_port: int,
    cluster_object_namespace: str,
    tls_cert_file: str | None = None,
    tls_private_key_file: str | None = None,
    leader_election: bool = True,
    leader_election_namespace: str | None = None,
    metrics_port: int = 0,
    metrics_host: str = "0.0.0.0",
    dashboard: bool = False,
    history_dir: str | None = None,
) -> None:
    from ebb.kube.metrics_api import MetricsAPIServer

    client = default_client()
    services = None
    if metrics_port:
        # /metrics, the history API and (with --dashboard) the page, as `ebb run` serves them; history lives on
        # the volume given, or in memory.
        services = Services(
            Path(history_dir) if history_dir else Path("/tmp/ebb"),
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            dashboard=dashboard,
            history=history_dir is not None,
            memory_history=history_dir is None,
            announce=log.info,
        )
    options = OperatorOptions(scaling=scaling, cluster_object_namespace=cluster_object_namespace, services=services)
    controller = ScaledObjectController(client, options)
    jobs = ScaledJobController(client, options)
    registry = kopf.OperatorRegistry()
    register_handlers(registry, controller, jobs)
    ssl_context = None
    if tls_cert_file and tls_private_key_file:
        from ebb.kube.certs import load_files

        ssl_context = load_files(tls_cert_file, tls_private_key_file).ssl_context()
    else:
        log.warning("no --tls-cert-file/--tls-private-key-file: the metrics API serves plain HTTP")
    elector = (
        LeaderElector(client, namespace=leader_election_namespace or default_namespace()) if leader_election else None
    )
    # Only the leader has values to serve: followers report not ready, so the Service (and the APIService
    # behind it) sends the HPA's requests to the leader alone.
    ready = (lambda: elector.is_leader) if elector is not None else None
    server = MetricsAPIServer(controller, port=metrics_api_port, ssl_context=ssl_context, ready=ready)
    await server.start()
    if services is not None:
        await services.start()

    async def operate(stop_flag: asyncio.Event | None = None) -> None:
        await kopf.operator(
            registry=registry,
            clusterwide=not namespaces,
            namespaces=list(namespaces),
            standalone=True,
            stop_flag=stop_flag,
        )

    async def stop_loops() -> None:
        await controller.close()
        await jobs.close()

    try:
        if elector is not None:
            # kopf (watches, reconciles, loops) runs only on the Lease holder, as KEDA's manager starts its
            # controllers only after winning; the other replicas wait and take over when the Lease expires.
            log.info("leader election: lease %s/%s as %s", elector.namespace, elector.name, elector.identity)
            await run_as_leader(elector, operate, on_lost=stop_loops)
        else:
            await operate()
    finally:
        if services is not None:
            await services.stop()
        await server.stop()
        await stop_loops()
        await client.aclose()


def run_operator(**kwargs: Any) -> None:
    asyncio.run(operator_main(**kwargs))
