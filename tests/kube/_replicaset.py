"""A model of the ReplicaSet controller's scale-down choice, for the fake API server (kmock runs no controllers).

Kubernetes (pkg/controller/replicaset `getPodsToDelete`, ranked by `controller.ActivePodsWithRanks`) deletes first:
unscheduled pods, then Pending before Unknown before Running, not ready before ready, then the lower
`controller.kubernetes.io/pod-deletion-cost`, then pods doubled up on a node, then the more recently ready (in
log2 buckets, LogarithmicScaleDown), more restarts, and the newer creation. Here every pod is scheduled, running
and ready on its own node with no restarts, so what is modelled is exactly: **lower deletion cost first, then the
newer pod first** (creation order stands in for readiness time; pods never share a bucket in these runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

COST = "controller.kubernetes.io/pod-deletion-cost"


def deletion_cost(pod: dict[str, Any]) -> int:
    """The pod's deletion cost; 0 when unset or unreadable (the API server refuses non-int32 values anyway)."""
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(COST, "0")
    try:
        return int(raw)
    except ValueError:
        return 0


def pods_to_delete(pods: Sequence[dict[str, Any]], count: int, order: dict[str, int]) -> list[dict[str, Any]]:
    """The `count` pods the ReplicaSet controller removes; `order[name]` is each pod's creation sequence."""
    ranked = sorted(pods, key=lambda p: (deletion_cost(p), -order[p["metadata"]["name"]]))
    return ranked[: max(0, count)]
