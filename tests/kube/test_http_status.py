"""HTTPScaledObject conditions as the add-on's controller sets them (meta.SetStatusCondition on metav1.Condition)."""

from __future__ import annotations

from typing import Any

from ebb.kube.http_operator import _with_condition, ready_condition

T0 = 1_700_000_000.0


def body(conditions: list[dict[str, Any]] | None = None, generation: int | None = 3) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web", "namespace": "ns"}
    if generation is not None:
        meta["generation"] = generation
    return {"metadata": meta, "status": {"conditions": conditions or []}}


def test_a_new_condition_gets_the_time_and_the_generation() -> None:
    (ready,) = _with_condition(body(), ready_condition("True", "Reconciled", "ok"), T0)
    assert ready == {
        "type": "Ready",
        "status": "True",
        "reason": "Reconciled",
        "message": "ok",
        "lastTransitionTime": "2023-11-14T22:13:20Z",
        "observedGeneration": 3,
    }


def test_the_transition_time_moves_only_when_the_status_changes() -> None:
    first = _with_condition(body(), ready_condition("False", "CreateError", "no target"), T0)
    same = _with_condition(body(first), ready_condition("False", "ServiceNotFound", "no service"), T0 + 60)
    assert same[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert same[0]["reason"] == "ServiceNotFound"
    flipped = _with_condition(body(same), ready_condition("True", "Reconciled", "ok"), T0 + 120)
    assert flipped[0]["lastTransitionTime"] == "2023-11-14T22:15:20Z"


def test_other_condition_types_are_kept_and_ready_is_not_duplicated() -> None:
    other = {"type": "Custom", "status": "True"}
    old_ready = {"type": "Ready", "status": "True", "lastTransitionTime": "2023-11-14T22:00:00Z"}
    out = _with_condition(body([old_ready, other]), ready_condition("True", "Reconciled", "ok"), T0)
    assert [c["type"] for c in out] == ["Ready", "Custom"]
    assert out[0]["lastTransitionTime"] == "2023-11-14T22:00:00Z"


def test_no_generation_no_observed_generation() -> None:
    (ready,) = _with_condition(body(generation=None), ready_condition("True", "Reconciled", "ok"), T0)
    assert "observedGeneration" not in ready
