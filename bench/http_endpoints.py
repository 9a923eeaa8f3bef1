"""`python -m bench.http_endpoints`: what one EndpointSlice event costs `ebb interceptor`, by number of routes.

Each route is an HTTPScaledObject with its own Service and one EndpointSlice of two endpoints. An event flips
one endpoint of one slice between ready and not ready (a pod starting or going), and is timed from the watch
event to every pool being current, two ways side by side in one run:

- **old**: what every EndpointSlice event did before: index every slice by its Service again, rebuild every
  route and the routing table, update every pool (`index_slices()` + `rebuild()`: today's full rebuild, which a
  route, Service or ConfigMap change or a relisting still runs; the code before also built a ScaledObject per
  route on each rebuild, so it was slower than this);
- **new**: `slice_event()`: the slice's Service's index entry, then only that Service's pools.

In process, no API server: the informers' state is filled directly, the handlers called as a watch calls them.
"""

from __future__ import annotations

import argparse
import copy
import gc
import time
from collections.abc import Callable
from typing import Any

from bench._common import summary, write_result
from ebb.kube.client import client_for_url
from ebb.kube.http_interceptor import InterceptorOptions, KubeRoutes

NS = "bench"
SIZES = (10, 100, 1000)


def _objects(n: int) -> tuple[dict[Any, Any], dict[Any, Any], dict[Any, Any]]:
    routes, services, slices = {}, {}, {}
    for i in range(n):
        name = f"web-{i}"
        routes[(NS, name)] = {
            "apiVersion": "http.keda.sh/v1alpha1",
            "kind": "HTTPScaledObject",
            "metadata": {"name": name, "namespace": NS, "resourceVersion": "1"},
            "spec": {"hosts": [f"{name}.bench"], "scaleTargetRef": {"name": name, "service": name, "port": 80}},
        }
        services[(NS, name)] = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"ports": [{"name": "http", "port": 80}]},
        }
        slices[(NS, f"{name}-abcde")] = {
            "metadata": {
                "name": f"{name}-abcde",
                "namespace": NS,
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": [f"10.{i // 250}.{i % 250}.{k}"], "conditions": {"ready": True}} for k in (1, 2)
            ],
        }
    return routes, services, slices


def _time(n: int, events: int, old: bool) -> list[float]:
    routes = KubeRoutes(client_for_url("http://127.0.0.1:9"), InterceptorOptions())  # informers never started
    hsos, services, slices = _objects(n)
    routes.informers["HTTPScaledObjects"][0].objects = hsos
    routes.informers["Services"][0].objects = services
    held = routes.informers["EndpointSlices"][0].objects
    held.update(slices)
    routes.rebuild()
    routes.index_slices()
    routes.rebuild()
    keys = list(slices)
    handle: Callable[[Any, dict[str, Any]], None]
    if old:

        def handle(key: Any, body: dict[str, Any]) -> None:
            routes.index_slices()
            routes.rebuild()

    else:
        handle = routes.slice_event
    samples: list[float] = []
    gc.disable()
    try:
        for i in range(events):
            key = keys[(i * 7919) % n]
            body = copy.deepcopy(held[key])  # a watch event carries a new object
            endpoint = body["endpoints"][1]
            endpoint["conditions"]["ready"] = not endpoint["conditions"]["ready"]
            held[key] = body
            start = time.perf_counter_ns()
            handle(key, body)
            samples.append((time.perf_counter_ns() - start) / 1000)
            pool = routes.routes[(NS, key[1].removesuffix("-abcde"))].pool
            assert pool is not None and pool.ready_count() == (2 if endpoint["conditions"]["ready"] else 1)
    finally:
        gc.enable()
    return samples


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.http_endpoints")
    parser.add_argument("--events", type=int, default=2000, help="events per size and way (old: at most 200 000 / n)")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {}
    for n in SIZES:
        old = _time(n, max(20, min(args.events, 200_000 // n)), old=True)
        new = _time(n, args.events, old=False)
        figures[str(n)] = {"old_us": summary(old, 1), "new_us": summary(new, 1)}
    write_result("http_endpoints", {"method": __doc__.strip() if __doc__ else "", "routes": figures})
    line = "; ".join(f"{n} routes p50 {f['old_us']['p50']:,} -> {f['new_us']['p50']:,} us" for n, f in figures.items())
    print(f"http_endpoints: one EndpointSlice event, old -> new: {line}")
    return figures


if __name__ == "__main__":
    main()
