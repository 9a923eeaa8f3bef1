"""Requests per second and latency of the external-metrics API server for cached values.

`python -m bench.metrics_api [--seconds 10] [--concurrency 16] [--runs 3] [--auth]`

The server (ebb.kube.metrics_api.MetricsAPIServer over HTTPS, TLS from ebb.kube.certs) runs in its own process,
pinned to one core; the load generator (aiohttp, keep-alive connections, like the API aggregator's) runs in
this process on the other core. The provider serves cached values from a dict keyed by (namespace,
ScaledObject), which is what the operator's cached path does (one lookup of the last poll's values).

With --auth the server authenticates and authorizes every request as the operator does behind the API
aggregator (ebb.kube.authn): the load generator presents a front-proxy client certificate (CN
front-proxy-client, signed by the front-proxy CA) with X-Remote-User/X-Remote-Group naming the HPA controller's
service account, and the server asks for a SubjectAccessReview per distinct request (cached 10 s). The reviews
go, through a lightkube client, to a STAND-IN for the kube-apiserver (bench._kube_api_stand_in, a third process
on the load generator's core), which allows them and counts them. Results: bench/results/metrics_api.json, or
metrics_api_auth.json with --auth; the median run (by requests/s) of --runs, with every run listed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench._common import summary, write_result

NAMESPACES = 50
OBJECTS_PER_NAMESPACE = 20
LABEL = "scaledobject.keda.sh/name"
HPA_USER = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
HPA_GROUPS = ("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated")
FRONT_PROXY_CN = "front-proxy-client"
BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _metric(i: int) -> str:
    return f"s0-redis-queue-{i}"


async def serve(port_file: str, front_proxy_ca: str | None, kube_api: str | None) -> None:
    from ebb.kube.authn import AuthenticationConfig, DelegatedAuthenticator, DelegatedAuthorizer
    from ebb.kube.certs import generate
    from ebb.kube.client import client_for_url
    from ebb.kube.metrics_api import MetricsAPIServer
    from ebb.kube.metrics_provider import ExternalMetricValue, MetricDescriptor, MetricNotFound

    class CachedProvider:
        """Cached values of 1,000 ScaledObjects, looked up as the operator looks up its last poll."""

        def __init__(self) -> None:
            self.values = {
                (f"ns-{n}", f"so-{i}"): {_metric(i): float(i % 40)}
                for n in range(NAMESPACES)
                for i in range(OBJECTS_PER_NAMESPACE)
            }

        def list_metrics(self) -> list[MetricDescriptor]:
            return [MetricDescriptor(ns, m, so) for (ns, so), ms in self.values.items() for m in ms]

        async def get_metric(
            self, namespace: str, metric_name: str, selector: Mapping[str, str]
        ) -> list[ExternalMetricValue]:
            values = self.values.get((namespace, selector.get(LABEL, "")))
            if values is None or metric_name not in values:
                raise MetricNotFound(metric_name)
            return [ExternalMetricValue(metric_name, values[metric_name], time.time())]

    authenticator = authorizer = None
    if front_proxy_ca and kube_api:
        from cryptography import x509

        # What kube-system/extension-apiserver-authentication holds on a kubeadm cluster (front proxy only).
        config = AuthenticationConfig(
            requestheader_cas=tuple(x509.load_pem_x509_certificates(Path(front_proxy_ca).read_bytes())),  # noqa: ASYNC240 - at start
            allowed_names=(FRONT_PROXY_CN,),
            username_headers=("X-Remote-User",),
            group_headers=("X-Remote-Group",),
            extra_header_prefixes=("X-Remote-Extra-",),
        )
        client = client_for_url(kube_api)  # the stand-in kube-apiserver
        authenticator = DelegatedAuthenticator(client, config, refresh_interval=0)
        authorizer = DelegatedAuthorizer(client)
    bundle = generate(["localhost", "127.0.0.1"])
    server = MetricsAPIServer(
        CachedProvider(),
        host="127.0.0.1",
        port=0,
        ssl_context=bundle.ssl_context(),
        authenticator=authenticator,
        authorizer=authorizer,
    )
    await server.start()
    Path(port_file).write_text(f"{server.port}\n")  # noqa: ASYNC240 - once, before serving
    await asyncio.Event().wait()


@dataclass
class Credentials:
    """The front proxy's client certificate (PEM files) and the front-proxy CA that signed it."""

    ca_file: str
    cert_file: str
    key_file: str

    @classmethod
    def write(cls, directory: str) -> Credentials:
        from ebb.kube.certs import generate

        # Distinct CA names from the serving certificate's CA: OpenSSL finds a certificate's issuer by name.
        ca = generate(["front-proxy-ca"], common_name="front-proxy")
        client = generate([FRONT_PROXY_CN], ca=ca, client_auth=True)
        paths = cls(*(os.path.join(directory, name) for name in ("front-proxy-ca.crt", "client.crt", "client.key")))
        Path(paths.ca_file).write_bytes(ca.ca_cert)
        Path(paths.cert_file).write_bytes(client.cert)
        fd = os.open(paths.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(client.key)
        return paths


async def load(
    port: int,
    seconds: float,
    concurrency: int,
    warmup: float,
    credentials: Credentials | None = None,
    on_measure: Callable[[], Awaitable[None]] | None = None,
) -> tuple[list[float], int, float]:
    """`concurrency` keep-alive connections asking for random metrics; `on_measure` runs when measuring starts."""
    import aiohttp
    from multidict import CIMultiDict

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's certificate is generated per run
    headers: CIMultiDict[str] = CIMultiDict()
    if credentials is not None:
        # As the API aggregator: its front-proxy certificate, and the user it vouches for in headers.
        ctx.load_cert_chain(credentials.cert_file, credentials.key_file)
        headers.add("X-Remote-User", HPA_USER)
        for group in HPA_GROUPS:
            headers.add("X-Remote-Group", group)
    latencies: list[float] = []
    errors = 0
    rng = random.Random(1)
    base = f"https://127.0.0.1:{port}/apis/external.metrics.k8s.io/v1beta1/namespaces"
    connector = aiohttp.TCPConnector(ssl=ctx, limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        stop_at = time.perf_counter() + warmup + seconds
        measure_from = time.perf_counter() + warmup

        async def worker() -> None:
            nonlocal errors
            while (now := time.perf_counter()) < stop_at:
                n, i = rng.randrange(NAMESPACES), rng.randrange(OBJECTS_PER_NAMESPACE)
                url = f"{base}/ns-{n}/{_metric(i)}"
                t0 = time.perf_counter()
                async with session.get(url, params={"labelSelector": f"{LABEL}=so-{i}"}, headers=headers) as resp:
                    await resp.read()
                    ok = resp.status == 200
                t1 = time.perf_counter()
                if now >= measure_from:
                    latencies.append(t1 - t0)
                    errors += 0 if ok else 1

        async def mark() -> None:
            await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
            if on_measure is not None:
                await on_measure()

        await asyncio.gather(mark(), *(worker() for _ in range(concurrency)))
    return latencies, errors, seconds


def _start(command: list[str], core: int, port_file: str, what: str) -> tuple[subprocess.Popen[bytes], int]:
    """Run `command` pinned to `core`; wait for the port it writes to `port_file`."""
    proc = subprocess.Popen(["taskset", "-c", str(core), sys.executable, *command], cwd=BENCH_DIR)
    deadline = time.monotonic() + 30
    while not (os.path.exists(port_file) and Path(port_file).read_text().strip()):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)
    return proc, int(Path(port_file).read_text())


async def _stand_in_reviews(url: str) -> int:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"{url}/stand-in/stats") as resp:
        stats: dict[str, int] = await resp.json()
    return stats["subjectaccessreviews"]


def run_once(args: argparse.Namespace, workdir: str, credentials: Credentials | None) -> dict[str, Any]:
    """One run: fresh server (and stand-in) processes, a short TLS warm-up, then the measured load."""
    cores = sorted(os.sched_getaffinity(0))
    server_core, client_core = cores[0], cores[-1]
    procs: list[subprocess.Popen[bytes]] = []
    serve_command = ["-m", "bench.metrics_api", "--serve", os.path.join(workdir, "server.port")]
    kube_api = ""
    try:
        if credentials is not None:
            stand_in_port_file = os.path.join(workdir, "stand-in.port")
            command = ["-m", "bench._kube_api_stand_in", stand_in_port_file]
            stand_in, stand_in_port = _start(command, client_core, stand_in_port_file, "the stand-in kube-apiserver")
            procs.append(stand_in)
            kube_api = f"http://127.0.0.1:{stand_in_port}"
            serve_command += ["--front-proxy-ca", credentials.ca_file, "--kube-api", kube_api]
        proc, port = _start(serve_command, server_core, serve_command[3], "the metrics API server")
        procs.append(proc)
        os.sched_setaffinity(0, {client_core})
        server = psutil.Process(proc.pid)
        asyncio.run(load(port, 0.5, 4, 0.0, credentials))  # connect and warm the TLS sessions
        marks: dict[str, Any] = {}

        async def measuring() -> None:
            marks["cpu"] = server.cpu_times()
            marks["at"] = time.perf_counter()
            if kube_api:
                marks["reviews"] = await _stand_in_reviews(kube_api)

        latencies, errors, seconds = asyncio.run(
            load(port, args.seconds, args.concurrency, args.warmup, credentials, measuring)
        )
        cpu1, at1 = server.cpu_times(), time.perf_counter()
        reviews = asyncio.run(_stand_in_reviews(kube_api)) - marks["reviews"] if kube_api else None
    finally:
        os.sched_setaffinity(0, cores)
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(10)
        for name in ("server.port", "stand-in.port"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(workdir, name))
    cpu0 = marks["cpu"]
    server_cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    run: dict[str, Any] = {
        "requests_per_second": round(len(latencies) / seconds),
        "latency_ms": summary([x * 1000 for x in latencies], digits=2),
        "errors": errors,
        # CPU between the start of the measured window and the end of the last request.
        "server_cores_used": round(server_cpu / (at1 - marks["at"]), 2),
    }
    if reviews is not None:
        run["subject_access_reviews"] = reviews
        run["subject_access_reviews_per_second"] = round(reviews / seconds, 1)
    return run


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_api", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3, help="runs (fresh server each); the median one is reported")
    parser.add_argument("--auth", action="store_true", help="front-proxy authentication and SubjectAccessReviews")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--front-proxy-ca", help=argparse.SUPPRESS)
    parser.add_argument("--kube-api", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args.serve, args.front_proxy_ca, args.kube_api))
        return {}
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    with tempfile.TemporaryDirectory(prefix="ebb-bench-metrics-api-") as workdir:
        credentials = Credentials.write(workdir) if args.auth else None
        runs = [run_once(args, workdir, credentials) for _ in range(args.runs)]
    median = sorted(runs, key=lambda run: run["requests_per_second"])[(len(runs) - 1) // 2]
    result: dict[str, object] = {
        **median,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "server_pinned_to_one_core": True,
        "objects": NAMESPACES * OBJECTS_PER_NAMESPACE,
        "tls": True,
        "runs": len(runs),
        "reported_run": "median by requests_per_second",
        "all_runs": [
            {
                "requests_per_second": run["requests_per_second"],
                "p50_ms": run["latency_ms"].get("p50"),
                "p99_ms": run["latency_ms"].get("p99"),
                "server_cores_used": run["server_cores_used"],
                **({"subject_access_reviews": run["subject_access_reviews"]} if args.auth else {}),
            }
            for run in runs
        ],
    }
    if args.auth:
        result["auth"] = {
            "authentication": f"front-proxy client certificate (CN {FRONT_PROXY_CN}) + X-Remote-User/X-Remote-Group",
            "user": HPA_USER,
            "groups": list(HPA_GROUPS),
            "authorization": "SubjectAccessReview per distinct request, allowed answers cached 10 s",
            "kube_apiserver": "STAND-IN (bench._kube_api_stand_in: aiohttp, plain HTTP on loopback, allows the "
            "expected user, on the load generator's core), reached through a lightkube client",
            "distinct_authorization_attribute_sets": NAMESPACES * OBJECTS_PER_NAMESPACE,
        }
    write_result("metrics_api_auth" if args.auth else "metrics_api", result)
    lat = median["latency_ms"]
    spread = ", ".join(f"{run['requests_per_second']:,}" for run in runs)
    reviews = f", {median['subject_access_reviews']} SubjectAccessReviews" if args.auth else ""
    print(
        f"metrics-api{' (delegated auth)' if args.auth else ''}: {median['requests_per_second']:,} req/s, "
        f"p50 {lat['p50']} ms, p99 {lat['p99']} ms, {median['errors']} errors{reviews} "
        f"(median of {len(runs)} runs: {spread} req/s; server on one core, {args.concurrency} keep-alive "
        f"connections, HTTPS)"
    )
    return result


if __name__ == "__main__":
    main()
