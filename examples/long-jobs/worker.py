"""A long-job worker: takes jobs of random length off a Redis list and says over HTTP whether it is busy.

    python3 examples/long-jobs/worker.py                          # work (what the ProcessGroup runs)
    python3 examples/long-jobs/worker.py --enqueue 40 --seed 7    # queue 40 jobs of 5 to 120 s
    python3 examples/long-jobs/worker.py --report                 # jobs started, finished, interrupted

GET http://127.0.0.1:$PORT/busy answers {"inFlight": 0 or 1}: ebb's busyProbe. On SIGTERM the worker takes no
new job, finishes the one in hand, then exits (Celery's and RQ's "warm shutdown"). A job that was started and
never finished was interrupted: `--report` counts them.

On Kubernetes, with the ScaledObject annotation ebb.dev/drain-handshake: "true", the worker reads its pod's
annotations from a Downward API file (PODINFO, default /etc/podinfo/annotations) before each job: while
ebb.dev/draining="true" is there it takes no new job, and /busy adds "draining": true, which tells ebb this pod may
go once "inFlight" is 0. Without the file (ebb run) the worker never drains this way.

REDIS_URL (default redis://127.0.0.1:6379/0) and JOB_LIST (default long-jobs) say where the jobs are; the
job's length is in the job itself, so a run can be replayed from its seed.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import random
import signal
import sys
import threading
import time

import redis

stopping = threading.Event()
in_flight = 0
PODINFO = os.environ.get("PODINFO", "/etc/podinfo/annotations")


def draining() -> bool:
    """ebb asked this pod to drain: its Downward API annotations file says ebb.dev/draining="true"."""
    try:
        with open(PODINFO) as f:
            return any(line.strip() == 'ebb.dev/draining="true"' for line in f)
    except OSError:
        return False


class BusyHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"inFlight": in_flight, "draining": draining()}).encode()
        self.send_response(200 if self.path == "/busy" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per probe would drown the job log


def work(client: redis.Redis, jobs: str) -> None:
    global in_flight
    worker = os.environ.get("EBB_REPLICA_INDEX", "?")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8500"))), BusyHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    print(f"worker {worker} waiting for jobs on {jobs}", flush=True)
    while not stopping.is_set():
        if draining():  # asked to drain: no new job (the annotation may be taken back: check again)
            time.sleep(1)
            continue
        item = client.blpop([jobs], timeout=1)  # wakes every second to notice SIGTERM
        if item is None:
            continue
        in_flight = 1
        job = json.loads(item[1])
        client.hset(f"{jobs}:started", job["id"], worker)
        print(f"worker {worker} started job {job['id']} ({job['seconds']:.0f} s)", flush=True)
        time.sleep(job["seconds"])  # the work; SIGTERM does not cut it short
        client.rpush(f"{jobs}:done", job["id"])
        print(f"worker {worker} finished job {job['id']}", flush=True)
        in_flight = 0
    print(f"worker {worker} stopping", flush=True)


def enqueue(client: redis.Redis, jobs: str, count: int, seed: int, shortest: float, longest: float) -> None:
    rng = random.Random(seed)
    items = [json.dumps({"id": n, "seconds": round(rng.uniform(shortest, longest), 2)}) for n in range(count)]
    client.rpush(jobs, *items)
    print(f"queued {count} jobs of {shortest:g} to {longest:g} s on {jobs}")


def report(client: redis.Redis, jobs: str) -> int:
    started = set(client.hkeys(f"{jobs}:started"))
    done = client.lrange(f"{jobs}:done", 0, -1)
    interrupted = started - set(done)
    print(f"started {len(started)}, finished {len(done)}, in progress or interrupted {len(interrupted)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--enqueue", type=int, metavar="N", help="queue N jobs and exit")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shortest", type=float, default=5.0, help="seconds (default 5)")
    parser.add_argument("--longest", type=float, default=120.0, help="seconds (default 120)")
    parser.add_argument("--report", action="store_true", help="count started, finished and interrupted jobs")
    args = parser.parse_args()
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), decode_responses=True)
    jobs = os.environ.get("JOB_LIST", "long-jobs")
    if args.enqueue is not None:
        enqueue(client, jobs, args.enqueue, args.seed, args.shortest, args.longest)
        return 0
    if args.report:
        return report(client, jobs)
    work(client, jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
