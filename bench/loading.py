"""Loading manifests: time to read N ScaledObjects, each with the ProcessGroup it scales, from one file.

What `ebb check` and `ebb run` do first: parse the YAML, validate every document, index the objects and refuse
conflicts (the same object twice, two ScaledObjects on one target, one HPA name twice) and missing targets. The
file is generated once per size; each size is loaded `--repeat` times in this process and the fastest run is
kept. The figure is the process's CPU time (on a shared machine, wall time mostly measures the neighbours; it is
recorded too). Linear loading keeps the time per object flat as N grows.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import write_result
from ebb.spec.loader import load_files

SIZES = (1_000, 2_000, 5_000)

DOCUMENT = """\
apiVersion: ebb.dev/v1alpha1
kind: ProcessGroup
metadata:
  name: worker-{i}
spec:
  command: ["python3", "worker.py"]
  env:
    - {{name: QUEUE, value: queue-{i}}}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: worker-{i}
  labels: {{team: bench}}
spec:
  scaleTargetRef:
    apiVersion: ebb.dev/v1alpha1
    kind: ProcessGroup
    name: worker-{i}
  pollingInterval: 15
  cooldownPeriod: 120
  maxReplicaCount: 10
  triggers:
    - type: redis
      metadata:
        address: 127.0.0.1:6379
        listName: queue-{i}
        listLength: "20"
"""


def manifest(n: int) -> str:
    return "---\n".join(DOCUMENT.format(i=i) for i in range(n))


def measure(n: int, repeat: int, directory: Path) -> dict[str, Any]:
    path = directory / f"objects-{n}.yaml"
    path.write_text(manifest(n))
    runs: list[tuple[float, float]] = []
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        result = load_files([path], ignore_unknown=True, require_targets=True)
        runs.append((time.process_time() - cpu, time.perf_counter() - wall))
        if result.errors or len(result.objects) != 2 * n:
            raise RuntimeError(f"{n} objects: {len(result.objects)} loaded, errors {result.errors[:3]}")
    best_cpu, best_wall = min(runs)
    return {
        "scaled_objects": n,
        "documents": 2 * n,
        "bytes": path.stat().st_size,
        "cpu_seconds": round(best_cpu, 3),
        "wall_seconds": round(best_wall, 3),
        "runs_cpu_wall": [[round(c, 3), round(w, 3)] for c, w in runs],
        "us_per_scaled_object": round(best_cpu / n * 1e6),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.loading")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ebb-bench-loading-") as tmp:
        sizes = [measure(n, args.repeat, Path(tmp)) for n in args.sizes]
    smallest, largest = sizes[0], sizes[-1]
    growth = round(
        (largest["cpu_seconds"] / smallest["cpu_seconds"]) / (largest["scaled_objects"] / smallest["scaled_objects"]), 2
    )
    figures = {"sizes": sizes, "time_growth_over_linear": growth}
    write_result("loading", {"method": __doc__.strip() if __doc__ else "", **figures})
    each = [f"{s['scaled_objects']:,} in {s['cpu_seconds']:g}s ({s['us_per_scaled_object']} µs each)" for s in sizes]
    print(f"loading (CPU time): {', '.join(each)}; time grows {growth}x as fast as N (1.0 = linear)")
    return figures


if __name__ == "__main__":
    main()
