"""`python -m bench.http_replay`: no request lost while a route scales 0 -> N -> 0 under a real trace.

Replays `../shared/traces/azure_llm_code.csv` (one hour of real request arrivals to an LLM inference service,
8,818 requests; Azure Public Dataset, Microsoft, CC-BY 4.0), time-compressed by `--compression` (default 20:
the hour in 3 minutes), against one `ebb run` (its interceptor in front of two ProcessGroups of
examples/http/app.py), side by side in the same run:

- autoscaled: an InterceptorRoute and its ScaledObject (minReplicaCount 0, cooldownPeriod and the HPA's
  scale-down stabilization both `--scaledown` compressed seconds, a concurrency target), so the route goes to
  zero in the trace's quiet spells and comes back on the next request;
- fixed pool: an HTTPScaledObject with replicas.min = max, sized for the trace's peak concurrency (computed
  from the whole schedule before the run: the baseline a user would provision by hand).

Every arrival is sent to both routes at its compressed time (never earlier); a request is GET /sleep?s=<its
generated tokens x --token-ms, compressed>. A request fails when it gets anything but a 200 or no answer.
Replica-seconds integrate the live app processes of each group (sampled every 50 ms, terminating ones
included, as a pod costs until it is gone); a cold start is a change of the autoscaled group from 0 to 1 or
more processes. Results go under `no_loss` in bench/results/http.json (other keys there are kept).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench._common import RESULTS, machine, summary

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "http" / "app.py"
TRACE = Path(os.environ.get("EBB_TRACES", ROOT.parent / "shared" / "traces")) / "azure_llm_code.csv"
AUTO_HOST = "auto.replay"
FIXED_HOST = "fixed.replay"


@dataclass(frozen=True)
class Arrival:
    offset: float  # seconds since the first request, real (uncompressed) time
    generated_tokens: int


def load_trace(path: Path = TRACE, minutes: float | None = None) -> list[Arrival]:
    """The trace's arrivals, offsets from its first request; only the first `minutes` if given."""
    stamps: list[tuple[float, int]] = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            # Seven fractional digits: Python's fromisoformat takes at most six.
            stamp = datetime.fromisoformat(row["TIMESTAMP"][:26]).timestamp()
            stamps.append((stamp, int(row["GeneratedTokens"])))
    stamps.sort()
    first = stamps[0][0]
    arrivals = [Arrival(stamp - first, tokens) for stamp, tokens in stamps]
    if minutes is not None:
        arrivals = [a for a in arrivals if a.offset < minutes * 60]
    return arrivals


def service_seconds(arrival: Arrival, token_ms: float, compression: float) -> float:
    return arrival.generated_tokens * token_ms / 1000 / compression


def peak_concurrency(arrivals: Sequence[Arrival], token_ms: float, compression: float) -> int:
    """Most requests in service at once if each were served the moment it arrived (compressed time)."""
    events: list[tuple[float, int]] = []
    for arrival in arrivals:
        start = arrival.offset / compression
        events.append((start, 1))
        events.append((start + service_seconds(arrival, token_ms, compression), -1))
    events.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    peak = current = 0
    for _, change in events:
        current += change
        peak = max(peak, current)
    return peak


def _free_port_block(count: int) -> int:
    for _ in range(200):
        # Below the ephemeral range (32768+), which a benchmark that just ran may have filled with TIME_WAIT.
        base = random.randrange(20000, 32000 - count)
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free block of ports")


def manifest(
    auto_port: int, fixed_port: int, *, max_replicas: int, fixed: int, scaledown: int, polling: float, target: int
) -> str:
    def group(name: str) -> str:
        # The name as an (ignored) argument: how the sampler tells the two groups' processes apart.
        return textwrap.dedent(f"""\
            apiVersion: ebb.dev/v1alpha1
            kind: ProcessGroup
            metadata: {{name: {name}}}
            spec:
              command: [{sys.executable!r}, {str(APP)!r}, replay-{name}]
              terminationGracePeriodSeconds: 30
            """)

    def route(name: str, host: str, port: int, low: int, high: int) -> str:
        return textwrap.dedent(f"""\
            apiVersion: http.keda.sh/v1alpha1
            kind: HTTPScaledObject
            metadata:
              name: {name}
              annotations: {{"ebb.dev/polling-interval": "{polling}"}}
            spec:
              hosts: [{host}]
              scaleTargetRef: {{name: {name}, kind: ProcessGroup, service: {name}, port: {port}}}
              replicas: {{min: {low}, max: {high}}}
              scaledownPeriod: {scaledown}
              scalingMetric: {{concurrency: {{targetValue: {target}}}}}
              timeouts: {{conditionWait: 60s}}
            """)

    # The autoscaled route in the InterceptorRoute form: its own ScaledObject can compress the HPA's scale-down
    # stabilization too (the HTTPScaledObject form leaves it at the HPA's 300 s, longer than the whole replay).
    autoscaled = textwrap.dedent(f"""\
        apiVersion: http.keda.sh/v1beta1
        kind: InterceptorRoute
        metadata: {{name: auto}}
        spec:
          target: {{service: auto, port: {auto_port}}}
          rules: [{{hosts: [{AUTO_HOST}]}}]
          scalingMetric: {{concurrency: {{targetValue: {target}}}}}
          timeouts: {{readiness: 60s}}
        ---
        apiVersion: keda.sh/v1alpha1
        kind: ScaledObject
        metadata: {{name: auto}}
        spec:
          scaleTargetRef: {{apiVersion: ebb.dev/v1alpha1, kind: ProcessGroup, name: auto}}
          minReplicaCount: 0
          maxReplicaCount: {max_replicas}
          pollingInterval: {max(1, round(polling))}
          cooldownPeriod: {scaledown}
          advanced:
            horizontalPodAutoscalerConfig:
              behavior:
                scaleDown: {{stabilizationWindowSeconds: {scaledown}}}
          triggers:
            - type: external-push
              metadata: {{scalerAddress: "keda-add-ons-http-external-scaler.keda:9090", interceptorRoute: auto}}
        """)
    return "---\n".join(
        [group("auto"), group("fixed"), autoscaled, route("fixed", FIXED_HOST, fixed_port, fixed, fixed)]
    )


def _ebb() -> str:
    beside = Path(sys.executable).parent / "ebb"
    return str(beside) if beside.exists() else "ebb"


@contextlib.contextmanager
def ebb_run(text: str, http_port: int) -> Iterator[subprocess.Popen[bytes]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "replay.yaml"
        path.write_text(text)
        log = (Path(tmp) / "ebb.log").open("wb")
        args = [_ebb(), "run", str(path), "--no-state", "--no-history", "--metrics-port", "0"]
        args += ["--http-port", str(http_port)]
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def _live(proc: psutil.Process) -> dict[str, int]:
    """Live app processes of each group under `ebb run` (a worker may be a shell's child: look recursively)."""
    counts = {"auto": 0, "fixed": 0}
    try:
        children = proc.children(recursive=True)
    except psutil.Error:
        return counts
    for child in children:
        try:
            cmdline = child.cmdline()
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        for name in counts:
            if f"replay-{name}" in cmdline:
                counts[name] += 1
    return counts


class Sampler:
    """Integrates each group's live processes over time and counts the autoscaled group's 0 -> N changes."""

    def __init__(self, pid: int, period: float = 0.05) -> None:
        self.proc = psutil.Process(pid)
        self.period = period
        self.replica_seconds = {"auto": 0.0, "fixed": 0.0}
        self.cold_starts = 0
        self.max_auto = 0
        self._last_auto = 0
        self.running = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        previous = loop.time()
        counts = _live(self.proc)
        self._last_auto = counts["auto"]
        self.running = True
        while self.running:
            await asyncio.sleep(self.period)
            now = loop.time()
            for name, n in counts.items():
                self.replica_seconds[name] += n * (now - previous)
            previous = now
            counts = await asyncio.to_thread(_live, self.proc)
            if self._last_auto == 0 and counts["auto"] > 0:
                self.cold_starts += 1
            self._last_auto = counts["auto"]
            self.max_auto = max(self.max_auto, counts["auto"])


async def _wait(predicate: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"bench.http_replay: {what} not reached within {within:g}s")


async def _replay(
    base_url: str, arrivals: Sequence[Arrival], compression: float, token_ms: float
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {
        host: {"sent": 0, "failed": 0, "latencies": [], "errors": {}} for host in (AUTO_HOST, FIXED_HOST)
    }

    async def one(session: aiohttp.ClientSession, host: str, seconds: float) -> None:
        record = results[host]
        record["sent"] += 1
        started = time.monotonic()
        try:
            async with session.get(f"{base_url}/sleep?s={seconds:.4f}", headers={"Host": host}) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = type(exc).__name__  # type: ignore[assignment]
        if status != 200:
            record["failed"] += 1
            record["errors"][str(status)] = record["errors"].get(str(status), 0) + 1
        else:
            record["latencies"].append(time.monotonic() - started)

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.5
        tasks: list[asyncio.Task[None]] = []
        for arrival in arrivals:
            due = start + arrival.offset / compression
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            seconds = service_seconds(arrival, token_ms, compression)
            for host in (AUTO_HOST, FIXED_HOST):
                tasks.append(asyncio.create_task(one(session, host, seconds)))
        await asyncio.gather(*tasks)
    return results


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    arrivals = load_trace(TRACE, args.minutes)
    compression = float(args.compression)
    peak = peak_concurrency(arrivals, args.token_ms, compression)
    fixed = max(1, math.ceil(peak / args.target))
    auto_port = _free_port_block(args.max_replicas)
    fixed_port = _free_port_block(fixed)
    http_port = _free_port_block(1)
    text = manifest(
        auto_port,
        fixed_port,
        max_replicas=args.max_replicas,
        fixed=fixed,
        scaledown=args.scaledown,
        polling=args.polling,
        target=args.target,
    )
    with ebb_run(text, http_port) as proc:
        sampler = Sampler(proc.pid)
        await _wait(lambda: _live(sampler.proc)["fixed"] == fixed, 120, f"{fixed} fixed replicas")
        await asyncio.sleep(2.0)  # let the fixed replicas import and listen before the first arrival
        sampling = asyncio.create_task(sampler.run())
        started = time.monotonic()
        outcome = await _replay(f"http://127.0.0.1:{http_port}", arrivals, compression, args.token_ms)
        elapsed = time.monotonic() - started
        sampler.running = False
        await sampling
    auto, fixed_result = outcome[AUTO_HOST], outcome[FIXED_HOST]
    return {
        "trace": f"{TRACE.name} (Azure Public Dataset, Microsoft, CC-BY 4.0)",
        "compression": compression,
        "trace_seconds": round(arrivals[-1].offset, 1),
        "replay_seconds": round(elapsed, 1),
        "requests": auto["sent"],
        "failed": auto["failed"],
        "errors": auto["errors"],
        "cold_starts": sampler.cold_starts,
        "replica_seconds": round(sampler.replica_seconds["auto"], 1),
        "fixed_pool_replicas": fixed,
        "fixed_pool_replica_seconds": round(sampler.replica_seconds["fixed"], 1),
        "fixed_pool_failed": fixed_result["failed"],
        "max_replicas_seen": sampler.max_auto,
        "latency_s": {"autoscaled": summary(auto["latencies"]), "fixed_pool": summary(fixed_result["latencies"])},
        "settings": {
            "scaledown_period_s": args.scaledown,
            "polling_interval_s": args.polling,
            "concurrency_target": args.target,
            "max_replicas": args.max_replicas,
            "service_ms_per_generated_token_real_time": args.token_ms,
            "peak_concurrency": peak,
        },
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.http_replay")
    p.add_argument("--compression", type=float, default=20.0, help="trace seconds per replay second")
    p.add_argument("--minutes", type=float, default=None, help="replay only the trace's first minutes")
    p.add_argument("--scaledown", type=int, default=2, help="scaledownPeriod of the autoscaled route (s)")
    p.add_argument("--polling", type=float, default=1.0, help="pollingInterval of the autoscaled ScaledObject (s)")
    p.add_argument("--target", type=int, default=8, help="concurrency target per replica")
    p.add_argument("--max-replicas", type=int, default=8, help="replicas.max of the autoscaled route")
    p.add_argument("--token-ms", type=float, default=20.0, help="service time per generated token, real time")
    return p


def run_no_loss(args: argparse.Namespace | Sequence[str] | None = None) -> dict[str, Any]:
    """The no-loss replay, for `python -m bench.http` (its own argparse namespace is fine: missing options
    take this benchmark's defaults)."""
    defaults = parser().parse_args([])
    if args is None or isinstance(args, argparse.Namespace):
        given = vars(args) if args is not None else {}
        merged = argparse.Namespace(**{k: given.get(k, v) for k, v in vars(defaults).items()})
    else:
        merged = parser().parse_args(list(args))
    return asyncio.run(_run(merged))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    print(f"bench.http_replay: {TRACE.name} compressed x{args.compression:g}", flush=True)
    result = run_no_loss(args)
    print(json.dumps({k: v for k, v in result.items() if k != "latency_s"}, indent=2), flush=True)
    path = RESULTS / "http.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"benchmark": "http"}
    data["no_loss"] = {**result, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "machine": machine(), "load_average": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"bench.http_replay: wrote {path.relative_to(ROOT)} (no_loss)", flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
