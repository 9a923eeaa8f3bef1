"""kopf wiring: the framework does watches, retries and finalizers; the controller does the work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import kopf
from lightkube.core.exceptions import ConfigError

from ebb.kube.admission import ClusterUnavailable, ConflictIndex
from ebb.kube.authn import AuthConfigError, delegated_auth
from ebb.kube.client import default_client
from ebb.kube.eventing import (
    CloudEventSourceController,
    register_authentication_events,
    register_eventing_handlers,
)
from ebb.kube.http_feed import DEFAULT_PORT_NAME as DEFAULT_INTERCEPTOR_PORT_NAME
from ebb.kube.http_feed import DEFAULT_SERVICE as DEFAULT_INTERCEPTOR_SERVICE
from ebb.kube.http_feed import InterceptorFeed
from ebb.kube.http_operator import HTTPScaledObjectController
from ebb.kube.http_routes import InterceptorRouteController
from ebb.kube.jobs import ScaledJobController
from ebb.kube.leader import LeaderElector, LeaderPodLabel, default_namespace, run_as_leader
from ebb.kube.operator import FINALIZER, OperatorOptions, ScaledObjectController, retry_delay
from ebb.kube.webhook import DEFAULT_PORT as DEFAULT_WEBHOOK_PORT
from ebb.kube.webhook import KubeCluster, WebhookMetrics, WebhookServer, load_conflicts
from ebb.observe.cloudevents import DEFAULT_CLUSTER, CloudEventHub
from ebb.observe.cost import Pricing
from ebb.observe.history import DEFAULT_TIERS, Tier
from ebb.observe.services import Services

log = logging.getLogger("ebb.operator")
SO = ("keda.sh", "v1alpha1", "scaledobjects")
SJ = ("keda.sh", "v1alpha1", "scaledjobs")
HPAS = ("autoscaling", "v2", "horizontalpodautoscalers")
HSO = ("http.keda.sh", "v1alpha1", "httpscaledobjects")
IR = ("http.keda.sh", "v1beta1", "interceptorroutes")


def register_handlers(
    registry: kopf.OperatorRegistry,
    controller: ScaledObjectController,
    jobs: ScaledJobController | None = None,
    *,
    http: HTTPScaledObjectController | None = None,
    routes: InterceptorRouteController | None = None,
    after_cleanup: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """ScaledObject/ScaledJob/HTTPScaledObject create/update/resume reconcile; delete stops the loop (kopf holds
    FINALIZER meanwhile). `after_cleanup` runs when kopf stops, once every loop has stopped."""

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # What lightkube's default_client() uses too: the pod's service account, else the kubeconfig. A registry
        # of our own has none of kopf's default login handlers ("Ran out of valid credentials" without this).
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

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
    async def scaled_object_changed(body: kopf.Body, retry: int, **_: Any) -> None:
        if not await controller.reconcile(dict(body)):
            # Ready=False is written; kopf calls again after the delay (until the object changes or goes).
            raise kopf.TemporaryError("reconcile failed, trying again", delay=retry_delay(retry))

    @kopf.on.delete(*SO, registry=registry)
    async def scaled_object_deleted(body: kopf.Body, **_: Any) -> None:
        await controller.delete(dict(body))

    if jobs is not None:

        @kopf.on.resume(*SJ, registry=registry)
        @kopf.on.create(*SJ, registry=registry)
        @kopf.on.update(*SJ, registry=registry)
        async def scaled_job_changed(body: kopf.Body, retry: int, **_: Any) -> None:
            if not await jobs.reconcile(dict(body)):
                raise kopf.TemporaryError("reconcile failed, trying again", delay=retry_delay(retry))

        @kopf.on.delete(*SJ, registry=registry)
        async def scaled_job_deleted(body: kopf.Body, **_: Any) -> None:
            await jobs.delete(dict(body))

    if http is not None:

        @kopf.on.resume(*HSO, registry=registry)
        @kopf.on.create(*HSO, registry=registry)
        @kopf.on.update(*HSO, registry=registry)
        async def http_scaled_object_changed(body: kopf.Body, retry: int, **_: Any) -> None:
            if not await http.reconcile(dict(body)):
                raise kopf.TemporaryError("reconcile failed, trying again", delay=retry_delay(retry))

        @kopf.on.delete(*HSO, registry=registry)
        async def http_scaled_object_deleted(body: kopf.Body, **_: Any) -> None:
            await http.delete(dict(body))

    if routes is not None:

        @kopf.on.resume(*IR, registry=registry)
        @kopf.on.create(*IR, registry=registry)
        @kopf.on.update(*IR, registry=registry)
        async def interceptor_route_changed(body: kopf.Body, retry: int, **_: Any) -> None:
            if not await routes.reconcile(dict(body)):
                raise kopf.TemporaryError("reconcile failed, trying again", delay=retry_delay(retry))

        # optional: no finalizer (nothing to clean up that a missed delete would leak).
        @kopf.on.delete(*IR, registry=registry, optional=True)
        async def interceptor_route_deleted(body: kopf.Body, **_: Any) -> None:
            await routes.delete(dict(body))

    conflicts = controller.options.conflicts
    if conflicts is not None:
        # Every ScaledObject and HPA event updates the conflict index (async: kopf runs sync handlers in threads).
        # operator_main loads it from full listings before the watches start; the watches' own initial listing
        # arrives here too, which also covers objects created in between.
        # The same events keep the controller's view of status current (no GET per poll).
        @kopf.on.event(*SO, registry=registry)
        async def index_scaled_object(event: kopf.RawEvent, **_: Any) -> None:
            deleted = event["type"] == "DELETED"
            conflicts.apply("ScaledObject", event["object"], deleted=deleted)
            controller.observe("ScaledObject", event["object"], deleted=deleted)

        @kopf.on.event(*HPAS, registry=registry)
        async def index_hpa(event: kopf.RawEvent, **_: Any) -> None:
            deleted = event["type"] == "DELETED"
            conflicts.apply("HorizontalPodAutoscaler", event["object"], deleted=deleted)
            controller.observe("HorizontalPodAutoscaler", event["object"], deleted=deleted)

    @kopf.on.cleanup(registry=registry)
    async def stop_loops(**_: Any) -> None:
        await controller.close()
        if jobs is not None:
            await jobs.close()
        if http is not None:
            await http.close()
        if after_cleanup is not None:
            await after_cleanup()


async def operator_main(
    *,
    namespaces: Sequence[str],
    scaling: Literal["hpa", "direct"],
    metrics_api_port: int,
    cluster_object_namespace: str,
    tls_cert_file: str | None = None,
    tls_private_key_file: str | None = None,
    metrics_api_auth: Literal["delegated", "none"] = "delegated",
    leader_election: bool = True,
    leader_election_namespace: str | None = None,
    leader_election_lease_duration: float = 15.0,
    leader_election_renew_deadline: float = 10.0,
    leader_election_retry_period: float = 2.0,
    metrics_port: int = 0,
    metrics_host: str = "0.0.0.0",
    dashboard: bool = False,
    history_dir: str | None = None,
    history_tiers: Sequence[Tier] = DEFAULT_TIERS,
    history_prometheus_address: str | None = None,
    webhook_port: int = DEFAULT_WEBHOOK_PORT,
    cluster_name: str = DEFAULT_CLUSTER,
    leader_pod_label: bool = False,
    pricing: Pricing | None = None,
    interceptor_service: str = DEFAULT_INTERCEPTOR_SERVICE,
    interceptor_namespace: str | None = None,
    interceptor_port_name: str = DEFAULT_INTERCEPTOR_PORT_NAME,
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
            tiers=history_tiers,
            prometheus_address=history_prometheus_address,
            announce=log.info,
            pricing=pricing,
        )
    conflicts = ConflictIndex()
    # CloudEvents' source is /{cluster}/{KEDA's namespace}/keda: KEDA's namespace is its cluster object namespace.
    hub = CloudEventHub(
        cluster=cluster_name,
        keda_namespace=cluster_object_namespace,
        metrics=services.metrics.metrics if services is not None and services.metrics is not None else None,
    )
    options = OperatorOptions(
        scaling=scaling,
        cluster_object_namespace=cluster_object_namespace,
        services=services,
        conflicts=conflicts,
        cloudevents=hub,
    )
    # The interceptors' load: one stream per ready endpoint of their admin Service (kube/http_feed.py).
    feed = InterceptorFeed(
        client, interceptor_namespace or default_namespace(), interceptor_service, interceptor_port_name
    )
    options.feed = feed
    controller = ScaledObjectController(client, options)
    jobs = ScaledJobController(client, options)
    http = HTTPScaledObjectController(client, feed, options)
    routes = InterceptorRouteController(client, options, controller)
    sources = CloudEventSourceController(client, hub)
    registry = kopf.OperatorRegistry()
    elector = (
        LeaderElector(
            client,
            namespace=leader_election_namespace or default_namespace(),
            lease_duration=leader_election_lease_duration,
            renew_deadline=leader_election_renew_deadline,
            retry_period=leader_election_retry_period,
        )
        if leader_election
        else None
    )

    labeler = None
    if leader_pod_label and elector is not None:
        pod, pod_namespace = os.environ.get("POD_NAME"), os.environ.get("POD_NAMESPACE")
        if pod and pod_namespace:
            labeler = LeaderPodLabel(client, namespace=pod_namespace, pod=pod)
        else:
            log.warning("--leader-pod-label needs POD_NAME and POD_NAMESPACE (the pod's own): not labelling")

    async def hand_over() -> None:
        # kopf is stopping with the Lease still held: a shutdown (SIGTERM), not a lost Lease. Every loop and
        # handler has stopped, so the Lease goes back now; kopf then waits up to 5 s for leftover tasks (open
        # metrics API connections, say), which no longer delays the next leader.
        if labeler is not None:
            await labeler.unmark()
        if elector is not None and elector.is_leader:
            await elector.resign()

    register_handlers(registry, controller, jobs, http=http, routes=routes, after_cleanup=hand_over)
    register_eventing_handlers(registry, sources)
    register_authentication_events(registry, controller.emit)
    ssl_context = None
    bundle = None
    if tls_cert_file and tls_private_key_file:
        from ebb.kube.certs import load_files

        bundle = load_files(tls_cert_file, tls_private_key_file)
        ssl_context = bundle.ssl_context()
    else:
        log.warning("no --tls-cert-file/--tls-private-key-file: the metrics API serves plain HTTP")
    authenticator, authorizer = None, None
    if metrics_api_auth == "delegated":
        try:
            authenticator, authorizer = await delegated_auth(client)
        except AuthConfigError:
            await client.aclose()
            raise
    else:
        log.warning("--metrics-api-auth=none: whoever reaches the metrics API can read every metric")
    # Only the leader has values to serve: followers report not ready, so the Service (and the APIService
    # behind it) sends the HPA's requests to the leader alone. With the leader's pod labelled, the Service
    # selects that label instead, and every replica is ready (a rolling update can wait for a new pod).
    ready = (lambda: elector.is_leader) if elector is not None and labeler is None else None
    server = MetricsAPIServer(
        controller,
        port=metrics_api_port,
        ssl_context=ssl_context,
        ready=ready,
        authenticator=authenticator,
        authorizer=authorizer,
    )
    try:
        await server.start()
    except BaseException:  # the port is taken, say: nothing else was started yet
        await client.aclose()
        raise
    # The admission webhook: the metrics API's certificate (same Service), never a client certificate asked
    # for (the kube-apiserver calls webhooks without one).
    cluster = KubeCluster(client)
    webhook = None
    if webhook_port:
        if bundle is None:
            log.warning("no --tls-cert-file/--tls-private-key-file: the admission webhook serves plain HTTP")
        webhook = WebhookServer(
            conflicts,
            cluster,
            port=webhook_port,
            ssl_context=bundle.ssl_context() if bundle is not None else None,
            metrics=WebhookMetrics(services.metrics.registry if services and services.metrics else None),
        )
    if services is not None:
        await services.start()
    await hub.start()

    async def operate(stop_flag: asyncio.Event | None = None) -> None:
        if labeler is not None:
            await labeler.mark()
        try:
            await load_conflicts(cluster, conflicts, namespaces)
        except ClusterUnavailable as exc:
            # Not ready: reconciles and the webhook list the namespace instead (admission.check_conflicts).
            log.warning("conflict index not loaded, conflict checks list each namespace: %s", exc)
        await feed.start()
        try:
            await kopf.operator(
                registry=registry,
                clusterwide=not namespaces,
                namespaces=list(namespaces),
                standalone=True,
                stop_flag=stop_flag,
            )
        finally:
            conflicts.clear()  # without the watches it goes stale; the next leader term loads it again
            drop_kopf_signal_handlers()

    async def stop_loops() -> None:
        await controller.close()
        await jobs.close()
        await http.close()
        await feed.stop()

    async def lost() -> None:
        if labeler is not None:
            await labeler.unmark()
        await stop_loops()

    try:
        if webhook is not None:
            await webhook.start()
        if elector is not None:
            # kopf (watches, reconciles, loops) runs only on the Lease holder, as KEDA's manager starts its
            # controllers only after winning; the other replicas wait and take over when the Lease expires.
            log.info("leader election: lease %s/%s as %s", elector.namespace, elector.name, elector.identity)
            await run_as_leader(elector, operate, on_lost=lost)
        else:
            await operate()
    finally:
        await hub.stop()
        await sources.close()
        if services is not None:
            await services.stop()
        await server.stop()
        if webhook is not None:
            await webhook.stop()
        await stop_loops()
        await client.aclose()


def drop_kopf_signal_handlers() -> None:
    """kopf.operator, in the main thread, sets SIGINT/SIGTERM handlers on the loop for its own graceful stop and
    leaves them when it returns: a replica that lost the Lease would then ignore both (and wait for SIGKILL).
    Removing them brings back the default handling a replica has before it first leads."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # loops without signal support (Windows)
            loop.remove_signal_handler(sig)


def run_operator(**kwargs: Any) -> None:
    try:
        asyncio.run(operator_main(**kwargs))
    except AuthConfigError as problem:
        # The apiserver's --authentication-tolerate-lookup-failure=false: without its CAs, refuse to start.
        raise SystemExit(f"ebb operator: metrics API authentication: {problem}") from None
    except ConfigError as problem:
        raise SystemExit(
            f"ebb operator: no Kubernetes configuration ({problem}); in a pod the service account is used, "
            "elsewhere set KUBECONFIG"
        ) from None
    except OSError as problem:  # a port in use, a certificate file missing: said plainly, no traceback
        raise SystemExit(f"ebb operator: {problem}") from None
