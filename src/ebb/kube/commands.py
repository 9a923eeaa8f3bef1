"""CLI commands for Kubernetes (`ebb operator`), registered on the main app by ebb.cli."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Annotated

import typer

from ebb.observe.history import DEFAULT_TIERS_TEXT, TierError, parse_tiers


class Scaling(StrEnum):
    hpa = "hpa"
    direct = "direct"


class MetricsAPIAuth(StrEnum):
    delegated = "delegated"
    none = "none"


#: Libraries whose INFO lines (one per HTTP request, one per kopf handler run) would drown ebb's own.
CHATTY_LOGGERS = ("httpx", "httpx2", "httpcore", "kopf", "aiohttp.access")


def configure_logging(level: str) -> None:
    """ebb's lines at `level`; the HTTP clients' and kopf's at WARNING unless `level` is DEBUG."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level.upper())
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def register(app: typer.Typer) -> None:
    """Add the Kubernetes commands to `app`."""

    @app.command()
    def operator(
        namespace: Annotated[
            list[str] | None,
            typer.Option("--namespace", "-n", help="Watch this namespace (repeatable). Default: all namespaces."),
        ] = None,
        scaling: Annotated[
            Scaling, typer.Option(help="hpa: an HPA per ScaledObject (KEDA's way); direct: ebb sets replicas itself.")
        ] = Scaling.hpa,
        metrics_api_port: Annotated[int, typer.Option(help="Port of the external.metrics.k8s.io server.")] = 6443,
        log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
        cluster_object_namespace: Annotated[
            str, typer.Option(help="Namespace of the Secrets/ConfigMaps ClusterTriggerAuthentications read.")
        ] = "ebb",
        tls_cert_file: Annotated[str | None, typer.Option(help="Metrics API serving certificate (PEM).")] = None,
        tls_private_key_file: Annotated[str | None, typer.Option(help="Its private key (PEM).")] = None,
        metrics_api_auth: Annotated[
            MetricsAPIAuth,
            typer.Option(
                help="delegated: authenticate and authorize metrics API callers through the kube-apiserver "
                "(TokenReview, SubjectAccessReview, kube-system/extension-apiserver-authentication), as any "
                "aggregated API server; none: serve everyone who reaches it."
            ),
        ] = MetricsAPIAuth.delegated,
        leader_election: Annotated[
            bool,
            typer.Option(
                "--leader-election/--no-leader-election",
                help="Hold a Lease so that only one replica scales (the others stand by).",
            ),
        ] = True,
        leader_election_namespace: Annotated[
            str | None,
            typer.Option(help="Namespace of the Lease. Default: POD_NAMESPACE, else the service account's."),
        ] = None,
        metrics_port: Annotated[
            int, typer.Option(help="Serve Prometheus /metrics (and the history API) on this port; 0 turns it off.")
        ] = 8080,
        metrics_host: Annotated[str, typer.Option(help="Address for --metrics-port.")] = "0.0.0.0",
        dashboard: Annotated[bool, typer.Option(help="Serve the dashboard on --metrics-port too.")] = False,
        history_dir: Annotated[
            str | None,
            typer.Option(help="Keep history and the event log here (a volume); without it history is in memory."),
        ] = None,
        history_tiers: Annotated[
            str,
            typer.Option(
                help="History resolution and how long each is kept, finest first: RESOLUTION:KEEP,... (units s, m, "
                "h, d, w), as `ebb run`."
            ),
        ] = DEFAULT_TIERS_TEXT,
        history_prometheus_address: Annotated[
            str | None,
            typer.Option(
                help="Read each object's history back from this Prometheus (what ebb exported to it) when the "
                "object is first seen, so a restarted or failed-over replica keeps it, e.g. http://prometheus:9090."
            ),
        ] = None,
        webhook_port: Annotated[
            int,
            typer.Option(
                help="Serve KEDA's validating admission webhook (HTTPS, the metrics API's certificate) on this "
                "port; 0 turns it off."
            ),
        ] = 9443,
        cluster_name: Annotated[
            str,
            typer.Option(
                help="The cluster name in CloudEvents' source and subject, unless a CloudEventSource sets "
                "spec.clusterName (KEDA's --k8sClusterName)."
            ),
        ] = "kubernetes-default",
        leader_pod_label: Annotated[
            bool,
            typer.Option(
                help="While leading, label the own pod (POD_NAME in POD_NAMESPACE) ebb.dev/leader=true, for a "
                "Service that selects the leader; every replica then reports ready (the Helm chart sets it)."
            ),
        ] = False,
        cost_per_replica_hour: Annotated[
            list[str] | None,
            typer.Option(
                "--cost-per-replica-hour",
                metavar="[NAMESPACE=]PRICE",
                help="Price of one replica-hour on the dashboard: PRICE for every object, NAMESPACE=PRICE for one "
                "namespace (repeatable). An object's ebb.dev/cost-per-replica-hour annotation wins.",
            ),
        ] = None,
        interceptor_service: Annotated[
            str,
            typer.Option(
                help="The `ebb interceptor` admin Service: the operator follows a stream from each of its ready "
                "endpoints for the load of HTTPScaledObjects and InterceptorRoutes."
            ),
        ] = "ebb-interceptor-admin",
        interceptor_namespace: Annotated[
            str | None, typer.Option(help="Its namespace. Default: POD_NAMESPACE, else the service account's.")
        ] = None,
        interceptor_port_name: Annotated[str, typer.Option(help="The name of its admin port.")] = "admin",
    ) -> None:
        """Run the Kubernetes operator: ScaledObjects, their HPAs and the external metrics API."""
        from ebb.kube.runner import run_operator
        from ebb.observe.cost import Pricing

        try:
            pricing = Pricing.parse(cost_per_replica_hour or [])
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--cost-per-replica-hour") from None
        try:
            tiers = parse_tiers(history_tiers)
        except TierError as exc:
            raise typer.BadParameter(str(exc), param_hint="--history-tiers") from None
        address = history_prometheus_address
        if address is not None and not address.startswith(("http://", "https://")):
            raise typer.BadParameter(
                f"expected an http:// or https:// URL, got {address!r}", param_hint="--history-prometheus-address"
            )

        configure_logging(log_level)
        run_operator(
            namespaces=namespace or [],
            scaling=scaling.value,
            metrics_api_port=metrics_api_port,
            cluster_object_namespace=cluster_object_namespace,
            tls_cert_file=tls_cert_file,
            tls_private_key_file=tls_private_key_file,
            metrics_api_auth=metrics_api_auth.value,
            leader_election=leader_election,
            leader_election_namespace=leader_election_namespace,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            dashboard=dashboard,
            history_dir=history_dir,
            history_tiers=tiers,
            history_prometheus_address=address,
            webhook_port=webhook_port,
            cluster_name=cluster_name,
            leader_pod_label=leader_pod_label,
            pricing=pricing,
            interceptor_service=interceptor_service,
            interceptor_namespace=interceptor_namespace,
            interceptor_port_name=interceptor_port_name,
        )

    @app.command()
    def interceptor(
        namespace: Annotated[
            list[str] | None,
            typer.Option(
                "--namespace",
                "-n",
                help="Route this namespace's HTTPScaledObjects and InterceptorRoutes (repeatable). Default: all.",
            ),
        ] = None,
        host: Annotated[str, typer.Option(help="Address of the proxy.")] = "0.0.0.0",
        port: Annotated[int, typer.Option(help="Port of the proxy.")] = 8080,
        admin_host: Annotated[str, typer.Option(help="Address of the admin server (counts for the operator).")] = (
            "0.0.0.0"
        ),
        admin_port: Annotated[int, typer.Option(help="Port of the admin server.")] = 9090,
        max_held: Annotated[
            int, typer.Option(help="Requests held per route while it has no ready endpoint; more get a 503.")
        ] = 10_000,
        max_connections: Annotated[
            int,
            typer.Option(
                help="Connections open at once to one endpoint; more requests wait their turn for one. 0: no limit."
            ),
        ] = 1024,
        condition_wait: Annotated[
            float,
            typer.Option(help="Seconds a request waits for a ready endpoint when its route does not say."),
        ] = 30.0,
        response_header_timeout: Annotated[
            float, typer.Option(help="Seconds to wait for response headers when the route does not say.")
        ] = 300.0,
        drain_grace: Annotated[
            float, typer.Option(help="On SIGTERM, seconds that requests in flight get to finish.")
        ] = 30.0,
        log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    ) -> None:
        """Run the HTTP interceptor on Kubernetes: routes from HTTPScaledObjects and InterceptorRoutes, endpoints from
        EndpointSlices."""

        from lightkube.core.exceptions import ConfigError

        from ebb.kube.http_interceptor import InterceptorOptions, interceptor_main

        for name, value in (("--port", port), ("--admin-port", admin_port)):
            if not 0 <= value < 65536:
                raise typer.BadParameter(f"expected 0..65535, got {value}", param_hint=name)
        for name, seconds in (
            ("--condition-wait", condition_wait),
            ("--response-header-timeout", response_header_timeout),
        ):
            if not seconds > 0:
                raise typer.BadParameter(f"expected seconds > 0, got {seconds}", param_hint=name)
        if max_held < 1:
            raise typer.BadParameter(f"expected 1 or more, got {max_held}", param_hint="--max-held")
        if max_connections < 0:
            raise typer.BadParameter(
                f"expected 0 (no limit) or more, got {max_connections}", param_hint="--max-connections"
            )
        configure_logging(log_level)
        options = InterceptorOptions(
            host=host,
            port=port,
            admin_host=admin_host,
            admin_port=admin_port,
            namespaces=namespace or [],
            max_held=max_held,
            max_connections=max_connections or None,
            condition_wait=condition_wait,
            response_header=response_header_timeout,
            drain_grace=drain_grace,
        )
        try:
            from ebb.http.eventloop import run_serving

            run_serving(interceptor_main(options))
        except ConfigError as problem:
            raise SystemExit(
                f"ebb interceptor: no Kubernetes configuration ({problem}); in a pod the service account is used, "
                "elsewhere set KUBECONFIG"
            ) from None
        except OSError as problem:
            raise SystemExit(f"ebb interceptor: {problem}") from None
