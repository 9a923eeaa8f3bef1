"""One worker of `bench.scale_in` on the local runtime: a Celery/RQ-style queue worker as a real process.

It takes jobs from a Redis list with BLMOVE into its own processing list (the reliable-queue pattern), sleeps each
job's length, records the completion and removes the job. Warm shutdown on SIGTERM, as Celery, RQ and Sidekiq do:
an idle worker exits within 0.2 s; a busy one stops taking jobs, finishes its current one, then exits. Killed during a
job (SIGKILL after the grace period), the job stays in its processing list: the benchmark counts it interrupted and
puts it back on the queue. SIGTERM never interrupts the blocking pop (an exception raised there could lose the reply
of a BLMOVE the server already did, leaving a job in the processing list no one works on, the sync cousin of
redis/redis-py#2028): it only sets a flag, the pop times out within 0.2 s, and a job it brought in after the SIGTERM
goes back to the queue untouched, as a warm shutdown does. While it holds a job, the file BUSY_FILE (with {index}
expanded) exists: the busy probe. A heartbeat in Redis every 0.1 s gives the benchmark the worker's lifetime
(replica-seconds).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from types import FrameType

import redis

prefix = os.environ["BENCH_PREFIX"]
index = os.environ.get("EBB_REPLICA_INDEX", "0")
busy_file = os.environ.get("BUSY_FILE", "").replace("{index}", index)
worker = f"local-{os.getpid()}"
client = redis.Redis(host="127.0.0.1", port=6379)
queue, processing = f"{prefix}queue", f"{prefix}proc:{worker}"
holding = False
stopping = False


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    global stopping
    stopping = True


def heartbeat() -> None:
    beat = redis.Redis(host="127.0.0.1", port=6379)
    while True:
        beat.hset(f"{prefix}hb", worker, time.time())
        time.sleep(0.1)


client.hset(f"{prefix}start", worker, time.time())
signal.signal(signal.SIGTERM, on_sigterm)
threading.Thread(target=heartbeat, daemon=True).start()
try:
    while not stopping:
        raw = client.blmove(queue, processing, 0.2, "RIGHT", "LEFT")
        if raw is None:
            continue
        if stopping:  # taken after the SIGTERM: not started, back to the queue's head
            client.lmove(processing, queue, "LEFT", "RIGHT")
            break
        holding = True
        if busy_file:
            open(busy_file, "w").close()
        job = json.loads(raw)
        time.sleep(job["length"])  # a signal handler runs, then the sleep carries on (PEP 475)
        client.hset(f"{prefix}done", job["id"], time.time())
        client.lrem(processing, 1, raw)
        if busy_file:
            os.unlink(busy_file)
        holding = False
finally:
    client.hset(f"{prefix}end", worker, time.time())
