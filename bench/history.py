"""The history's size per object: bytes per tier and in total, for 1 and N triggers, against the old layout.

For each layout (the default tiers `1s:1h,1m:2d,5m:60d`, and the layout before the tiers: every poll for an hour,
then one point a minute for 7 days, written `1s:1h,1m:7d`), each number of triggers and each polling interval,
`--objects` objects are written through the store's own API (`write`, then `maintain` on an injected clock) until
every tier is full: polls at the polling interval for the first tier's span, and two polls per bucket (so that
the roll-ups are real merges, as with any polling faster than the bucket) over the older tiers' spans. The file is
then measured after VACUUM, whole and with one tier's points only; sizes are per object, minus an empty store's.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import write_result
from ebb.observe.history import DEFAULT_TIERS_TEXT, SETTLE, HistoryStore, Tier, parse_tiers
from ebb.runtime.observer import ObjectRef, PollRecord
from ebb.scaling.types import Decision, TriggerResult

OLD_LAYOUT = "1s:1h,1m:7d"


def _poll(ref: ObjectRef, t: float, triggers: int, rng: random.Random) -> PollRecord:
    values = [round(rng.uniform(0, 500), rng.choice((0, 0, 1, 2))) for _ in range(triggers)]
    replicas = rng.randint(0, 12)
    return PollRecord(
        ref=ref,
        time=t,
        triggers=tuple(
            TriggerResult(f"s{i}-redis-orders-{i}", 50.0, value=v, active=v > 0) for i, v in enumerate(values)
        ),
        decision=Decision(replicas, replicas > 0, "ScalerActive"),
        current_replicas=replicas,
        desired_replicas=replicas,
        ready_replicas=replicas,
        lateness=0.0,
        read_seconds=0.001,
    )


def _poll_times(tiers: tuple[Tier, ...], interval: float, now: float) -> list[float]:
    """Every poll time: two per bucket over each older tier's span, then one every `interval` for the first tier."""
    times: list[float] = []
    spans = list(zip(tiers, [0.0, *(t.keep for t in tiers)], strict=False))
    for tier, newer in reversed(spans[1:]):
        t = now - tier.keep
        while t < now - newer:
            times += [t, t + tier.resolution / 2]
            t += tier.resolution
    t = now - tiers[0].keep
    while t <= now:
        times.append(t)
        t += interval
    return times


def _vacuumed_size(path: Path) -> int:
    db = sqlite3.connect(path)
    db.execute("VACUUM")
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    (size,) = db.execute("PRAGMA page_size").fetchone()
    db.close()
    return int(pages) * int(size)


def measure(layout: str, triggers: int, interval: float, objects: int, tmp: Path) -> dict[str, Any]:
    tiers = parse_tiers(layout)
    now = float(int(time.time()) // 3600 * 3600)
    path = tmp / f"h-{triggers}-{interval:g}.db"
    store = HistoryStore(path, tiers=tiers)
    rng = random.Random(7)
    refs = [ObjectRef("ScaledObject", "bench", f"app-{i:03d}") for i in range(objects)]
    times = _poll_times(tiers, interval, now)
    batch: list[PollRecord] = []
    last_maintain = times[0]
    for t in times:
        batch += [_poll(ref, t, triggers, rng) for ref in refs]
        if len(batch) >= 2000 or t - last_maintain >= 3600:
            store.write(batch)
            batch = []
            store.maintain(t)  # as the observer does, on the store's clock: the tiers roll up as they go
            last_maintain = t
    store.write(batch)
    store.maintain(now)
    counts = {float(r): int(n) for r, n in store.query("SELECT resolution, COUNT(*) FROM points GROUP BY 1")}
    store.close()
    empty = tmp / "empty.db"
    HistoryStore(empty).close()
    base = _vacuumed_size(empty)
    total = _vacuumed_size(path) - base
    per_tier = []
    for resolution in sorted(counts):
        only = tmp / "only.db"
        shutil.copy(path, only)
        db = sqlite3.connect(only)
        with db:
            db.execute("DELETE FROM points WHERE resolution != ?", (resolution,))
            db.execute("DELETE FROM objects")
        db.close()
        size = _vacuumed_size(only) - base
        only.unlink()
        tier = next((str(t) for t in tiers if t.resolution == resolution), "raw (last minute)")
        per_tier.append(
            {
                "tier": tier,
                "points_per_object": counts[resolution] // objects,
                "bytes_per_object": round(size / objects),
                "bytes_per_point": round(size / counts[resolution], 1),
            }
        )
    path.unlink()
    return {
        "layout": layout,
        "triggers": triggers,
        "polling_interval_s": interval,
        "span_days": round(tiers[-1].keep / 86400, 2),
        "points_per_object": sum(counts.values()) // objects,
        "bytes_per_object": round(total / objects),
        "tiers": per_tier,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--triggers", default="1,4", help="Comma-separated trigger counts per object.")
    parser.add_argument("--intervals", default="1,30", help="Comma-separated polling intervals (seconds).")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for layout in (DEFAULT_TIERS_TEXT, OLD_LAYOUT):
            for triggers in (int(x) for x in args.triggers.split(",")):
                for interval in (float(x) for x in args.intervals.split(",")):
                    t0 = time.perf_counter()
                    row = measure(layout, triggers, interval, args.objects, tmp)
                    row["seconds_to_build"] = round(time.perf_counter() - t0, 1)
                    rows.append(row)
                    print(
                        f"{layout:<20} {triggers} trigger(s), every {interval:g}s: "
                        f"{row['bytes_per_object'] / 2**20:.2f} MiB per object over {row['span_days']:g} days "
                        f"({row['points_per_object']} points)"
                    )
    path = write_result(
        "history",
        {
            "objects": args.objects,
            "settle_seconds": SETTLE,
            "baseline": f"{OLD_LAYOUT}: the layout before tiers (raw for an hour, one point a minute for 7 days)",
            "results": rows,
        },
    )
    print(f"results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
