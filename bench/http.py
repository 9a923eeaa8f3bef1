"""`python -m bench.http`: ebb's HTTP interceptor against a direct connection and haproxy, on loopback.

Overhead: one app process (examples/http/app.py, aiohttp), driven by wrk at fixed connections three ways in
one run: directly, through ebb's interceptor (`ebb run`, one process), and through haproxy (Debian, one
thread) configured for the same route. The proxy (ebb's process, all its threads; haproxy) is pinned to one
CPU with taskset: the req/s at N connections is the one-core figure. Reported: req/s, p50 and p99 (wrk's
--latency) at N connections (throughput), at 1 connection, and paced at about 1,000 req/s (wrk with a Lua
`delay()` per connection: 10 connections, each sending a request 10 ms after the previous answer), where the
added latency is ebb's p50/p99 minus the direct ones.

Candidates (`--baseline-src DIR`, a checkout of the aiohttp-based interceptor, e.g. `git worktree add
/tmp/ebb-main <commit>`): the same wrk run at N connections through aiohttp on asyncio (DIR), aiohttp on uvloop
(DIR, uvloop installed as the policy), and this tree's Protocols + httptools on asyncio (EBB_EVENT_LOOP=asyncio)
and on uvloop (the default), each pinned to one CPU.

Cold start: trials of one request sent to a route at zero replicas (in-process runtime and interceptor,
scaledownPeriod 0 so the app returns to zero between trials). The worker's own start (process spawned ->
listening, which the app prints) is subtracted from the request's total time: what remains is ebb's part
(push wake-up, decision, spawn, readiness probe, forwarding).

Held: N concurrent requests sent while the route is at zero and the app takes 3 s to start; all must be
served. Peak RSS of the `ebb run` process is sampled every 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench._common import summary, write_result

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "http" / "app.py"
HOST = "bench.local"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _manifest(app_port: int, *, min_replicas: int, cooldown: int, polling: float, env: str = "") -> str:
    return textwrap.dedent(f"""\
        apiVersion: ebb.dev/v1alpha1
        kind: ProcessGroup
        metadata: {{name: app}}
        spec:
          command: [{sys.executable!r}, {str(APP)!r}]
          terminationGracePeriodSeconds: 10
          env: [{env}]
        ---
        apiVersion: http.keda.sh/v1alpha1
        kind: HTTPScaledObject
        metadata:
          name: app
          annotations: {{"ebb.dev/polling-interval": "{polling}"}}
        spec:
          hosts: [{HOST}]
          scaleTargetRef: {{name: app, kind: ProcessGroup, service: app, port: {app_port}}}
          replicas: {{min: {min_replicas}, max: 1}}
          scaledownPeriod: {cooldown}
        """)


#: Starts ebb's CLI from a source tree of choice, optionally with uvloop as asyncio's policy (for a tree whose
#: `ebb run` does not choose its loop itself).
_LAUNCH = (
    "import sys; sys.argv[0] = 'ebb'\n"
    "if sys.argv[1] == 'uvloop':\n"
    "    import asyncio, uvloop\n"
    "    asyncio.set_child_watcher = lambda watcher: None  # uvloop reaps children itself\n"
    "    uvloop.install()\n"
    "    import ebb.targets._child as child  # before uvloop support: it asserted asyncio's transport class\n"
    "    child._LineProtocol.connection_made = lambda self, transport: setattr(self, 'transport', transport)\n"
    "del sys.argv[1]\n"
    "from ebb.cli import main; main()\n"
)


@contextlib.contextmanager
def _ebb_run(
    manifest: str, http_port: int, *, src: Path | None = None, policy: str = "", env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "app.yaml"
        path.write_text(manifest)
        args = [sys.executable, "-c", _LAUNCH, policy or "-", "run", str(path), "--no-state", "--no-history"]
        args += ["--metrics-port", "0", "--http-port", str(http_port)]
        environ = {**os.environ, **(env or {}), "PYTHONPATH": str((src or ROOT) / "src")}
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp, env=environ)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_http(url: str, within: float = 60.0, host: str = HOST) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, headers={"Host": host})
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {within}s")


# --- overhead ------------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


#: Paced load for wrk: each connection waits this long (ms) after an answer before its next request.
_PACED_LUA = "function delay()\n  return 10\nend\n"
PACED_CONNECTIONS = 10


def _wrk(url: str, connections: int, seconds: float, script: Path | None = None) -> dict[str, float]:
    extra = ["-s", str(script)] if script is not None else []
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-H", f"Host: {HOST}", *extra, url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    percentiles = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.MULTILINE))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": round(rps, 1),
        "p50_ms": round(_ms(percentiles["50"]), 3),
        "p99_ms": round(_ms(percentiles["99"]), 3),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",  # type: ignore[dict-item]
    }


def _haproxy(listen: int, app_port: int, tmp: Path, cpu: int) -> subprocess.Popen[bytes]:
    config = tmp / "haproxy.cfg"
    config.write_text(
        textwrap.dedent(f"""\
        global
          maxconn 4000
          nbthread 1
        defaults
          mode http
          timeout connect 5s
          timeout client 60s
          timeout server 60s
          option http-keep-alive
        frontend fe
          bind 127.0.0.1:{listen}
          acl bench hdr(host) -i {HOST}
          use_backend app if bench
        backend app
          server app0 127.0.0.1:{app_port}
        """)
    )
    return subprocess.Popen(
        ["taskset", "-c", str(cpu), "haproxy", "-f", str(config), "-db"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _pin(pid: int, cpu: int) -> None:
    """Pin a running process (every thread of it, not its children) to one CPU."""
    subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], check=True, capture_output=True)


def _ratios(runs: dict[str, Any]) -> None:
    for name in ("ebb", "haproxy"):
        runs[f"{name}_vs_direct"] = {
            "rps_ratio": round(runs[name]["rps"] / runs["direct"]["rps"], 3),
            "added_p50_ms": round(runs[name]["p50_ms"] - runs["direct"]["p50_ms"], 3),
            "added_p99_ms": round(runs[name]["p99_ms"] - runs["direct"]["p99_ms"], 3),
        }


def overhead(seconds: float, connections: int, cpu: int) -> dict[str, Any]:
    if shutil.which("wrk") is None or shutil.which("haproxy") is None or shutil.which("taskset") is None:
        raise SystemExit("bench.http needs wrk, haproxy and taskset (Debian: apt-get install wrk haproxy util-linux)")
    app_port, ebb_port, haproxy_port = _free_port(), _free_port(), _free_port()
    result: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        _ebb_run(_manifest(app_port, min_replicas=1, cooldown=300, polling=15), ebb_port) as ebb,
    ):
        haproxy = _haproxy(haproxy_port, app_port, Path(tmp), cpu)
        paced = Path(tmp) / "paced.lua"
        paced.write_text(_PACED_LUA)
        try:
            time.sleep(0.5)
            if haproxy.poll() is not None:
                assert haproxy.stderr is not None
                raise SystemExit(f"haproxy did not start: {haproxy.stderr.read().decode(errors='replace')}")
            urls = {
                "direct": f"http://127.0.0.1:{app_port}/",
                "ebb": f"http://127.0.0.1:{ebb_port}/",
                "haproxy": f"http://127.0.0.1:{haproxy_port}/",
            }
            for url in urls.values():
                _wait_http(url)
            _pin(ebb.pid, cpu)  # after the app started: the app itself is not pinned
            settings = [
                (f"c{connections}", connections, None),
                ("c1", 1, None),
                ("paced", PACED_CONNECTIONS, paced),
            ]
            for label, conns, script in settings:
                runs: dict[str, Any] = {}
                for name, url in urls.items():
                    _wrk(url, conns, 1, script)  # warm-up: keep-alive connections, the app's first requests
                    runs[name] = _wrk(url, conns, seconds, script)
                    print(f"  {label} {name:8s} {runs[name]}", flush=True)
                _ratios(runs)
                result[label] = runs
        finally:
            haproxy.terminate()
            haproxy.wait(10)
    return result


def candidates(baseline: Path, seconds: float, connections: int, cpu: int) -> dict[str, Any]:
    """The same wrk run through each candidate transport, each pinned to one CPU, against one app process."""
    app_port = _free_port()
    manifest = _manifest(app_port, min_replicas=1, cooldown=300, polling=15)
    setups: list[tuple[str, Path, str, dict[str, str]]] = [
        ("aiohttp+asyncio", baseline, "-", {}),
        ("aiohttp+uvloop", baseline, "uvloop", {}),
        ("protocols+httptools+asyncio", ROOT, "-", {"EBB_EVENT_LOOP": "asyncio"}),
        ("protocols+httptools+uvloop", ROOT, "-", {}),
    ]
    out: dict[str, Any] = {}
    for name, src, policy, env in setups:
        port = _free_port()
        with _ebb_run(manifest, port, src=src, policy=policy, env=env) as proc:
            url = f"http://127.0.0.1:{port}/"
            _wait_http(url)
            _pin(proc.pid, cpu)
            _wrk(url, connections, 1)
            out[name] = _wrk(url, connections, seconds)
            print(f"  candidate {name:28s} {out[name]}", flush=True)
        time.sleep(1.0)  # the app's port is free again before the next `ebb run` starts it
    return out


# --- cold start ----------------------------------------------------------------------------------------


async def _cold_start(trials: int) -> dict[str, Any]:
    from ebb.http.local import HTTPFrontend, HTTPOptions
    from ebb.runtime.local import LocalRuntime, RuntimeOptions
    from ebb.runtime.observer import Observer
    from ebb.spec.loader import load_text

    listening: list[float] = []

    def output(name: str, line: str) -> None:
        if line.startswith("listening "):
            listening.append(float(line.split()[1]))

    loaded = load_text(_manifest(_free_port(), min_replicas=0, cooldown=0, polling=0.05))
    frontend = HTTPFrontend(HTTPOptions(port=0))
    runtime = LocalRuntime(loaded, Observer(), RuntimeOptions(state_path=None, output=output), [frontend])
    task = asyncio.create_task(runtime.run())
    totals: list[float] = []
    overheads: list[float] = []
    worker: list[float] = []
    try:
        while frontend.interceptor is None or frontend.interceptor._listener is None:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        group = runtime.targets[("default", "app")]
        url = f"http://127.0.0.1:{frontend.interceptor.bound_port}/"
        async with aiohttp.ClientSession() as session:
            for _ in range(trials):
                while group.status() or frontend.pools[0].replicas:  # noqa: ASYNC110 - back at zero
                    await asyncio.sleep(0.02)
                listening.clear()
                started = time.time()
                async with session.get(url, headers={"Host": HOST}) as response:
                    await response.read()
                    assert response.status == 200, response.status
                done = time.time()
                spawned = group.status()[0].started_at
                assert spawned is not None and listening
                own = listening[0] - spawned
                totals.append(done - started)
                worker.append(own)
                overheads.append(done - started - own)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    ms = [v * 1000 for v in overheads]
    return {
        "trials": trials,
        "p50_overhead_ms": round(sorted(ms)[len(ms) // 2], 2),
        "p99_overhead_ms": round(sorted(ms)[max(0, int(len(ms) * 0.99 + 0.5) - 1)], 2),
        "overhead_ms": summary(ms, 2),
        "total_ms": summary([v * 1000 for v in totals], 1),
        "worker_start_ms": summary([v * 1000 for v in worker], 1),
    }


# --- held requests -------------------------------------------------------------------------------------


async def _held(count: int) -> dict[str, Any]:
    app_port, ebb_port = _free_port(), _free_port()
    manifest = _manifest(app_port, min_replicas=0, cooldown=300, polling=15, env="{name: APP_START_DELAY, value: '3'}")
    with _ebb_run(manifest, ebb_port) as proc:
        url = f"http://127.0.0.1:{ebb_port}/"
        deadline = time.monotonic() + 60
        while True:  # the interceptor listens (a 404 for another host: nothing is started)
            try:
                with socket.create_connection(("127.0.0.1", ebb_port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        ebb = psutil.Process(proc.pid)
        peak = 0
        stop = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                with contextlib.suppress(psutil.Error):
                    peak = max(peak, ebb.memory_info().rss)
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        baseline = ebb.memory_info().rss
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=120)
        started = time.monotonic()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            errors: dict[str, int] = {}
            answers: dict[str, int] = {}  # the body of each answer that is not a 200: what went wrong, in ebb's words

            async def one() -> int:
                try:
                    async with session.get(url, headers={"Host": HOST}) as response:
                        body = await response.read()
                        if response.status != 200:
                            why = f"{response.status}: {body.decode(errors='replace').strip()}"[:200]
                            answers[why] = answers.get(why, 0) + 1
                        return response.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    why = f"{type(exc).__name__}: {exc}"[:120]
                    errors[why] = errors.get(why, 0) + 1
                    return 0

            statuses = await asyncio.gather(*(one() for _ in range(count)))
        elapsed = time.monotonic() - started
        stop.set()
        await sampler
    return {
        "requests": count,
        "served": sum(1 for s in statuses if s == 200),
        "failed": sum(1 for s in statuses if s != 200),
        "errors": errors,
        "answers": answers,
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "somaxconn": _somaxconn(),
        "peak_rss_mib": round(peak / 2**20, 1),
        "rss_before_mib": round(baseline / 2**20, 1),
        "seconds": round(elapsed, 2),
    }


def _somaxconn() -> int | None:
    """The kernel's cap on a listening socket's backlog (the interceptor asks for 65,535)."""
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.http")
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk run length per target and setting")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections for the throughput run")
    parser.add_argument("--trials", type=int, default=200, help="cold-start trials")
    parser.add_argument("--held", type=int, default=10_000, help="requests held during one cold start")
    parser.add_argument("--cpu", type=int, default=0, help="the CPU the proxy under test is pinned to")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="a checkout of the aiohttp-based interceptor: adds a table of candidate transports",
    )
    args = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children (ebb run) inherit it
    print("bench.http: overhead (wrk: direct, ebb, haproxy)", flush=True)
    results: dict[str, Any] = {"load_average": [round(x, 2) for x in os.getloadavg()]}
    over = overhead(args.seconds, args.connections, args.cpu)
    results["overhead"] = over[f"c{args.connections}"]
    results["overhead_c1"] = over["c1"]
    results["overhead_paced"] = over["paced"]
    results["overhead_connections"] = args.connections
    results["proxy_cpu"] = args.cpu
    if args.baseline_src is not None:
        print("bench.http: candidates (wrk through each transport, one CPU)", flush=True)
        results["candidates"] = candidates(args.baseline_src.resolve(), args.seconds, args.connections, args.cpu)
    from ebb.http.eventloop import run_serving

    print(f"bench.http: cold start ({args.trials} trials)", flush=True)
    results["cold_start"] = run_serving(_cold_start(args.trials))
    print(f"  {results['cold_start']}", flush=True)
    print(f"bench.http: {args.held} requests held during one cold start", flush=True)
    results["held"] = run_serving(_held(args.held))
    print(f"  {results['held']}", flush=True)
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    previous = ROOT / "bench" / "results" / "http.json"
    with contextlib.suppress(OSError, ValueError):
        kept = json.loads(previous.read_text()).get("no_loss")  # bench.http_replay's part, run on its own
        if kept is not None:
            results["no_loss"] = kept
    path = write_result("http", results)
    print(f"bench.http: wrote {path.relative_to(ROOT)}", flush=True)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
