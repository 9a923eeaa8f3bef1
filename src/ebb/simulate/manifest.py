"""From a manifest (with `--set` overrides) to the policies the simulator compares."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ebb.errors import EbbError
from ebb.runtime.build import build_scalers
from ebb.scalers import scaler_class
from ebb.scalers.predictkube import PredictKubeScaler
from ebb.scaling.forecast import PREDICTIVE_ANNOTATION, PredictiveSettings, parse_predictive
from ebb.scaling.lifecycle import pause_state
from ebb.scaling.types import ObjectPolicy
from ebb.simulate.engine import (
    CorePolicy,
    Policy,
    Predictor,
    SimTrigger,
    Workload,
    fixed_schedule,
    oracle_policy,
)
from ebb.spec.auth import resolve_env
from ebb.spec.convert import object_policy
from ebb.spec.loader import load_text
from ebb.spec.models import ScaledObject

POLICIES = ("manifest", "keda-default", "predictive", "oracle", "fixed-p99")
IDLE_POLLING_ANNOTATION = "ebb.dev/idle-polling-interval"

#: Trigger types whose metric is the number of items waiting (the simulated backlog).
BACKLOG_TRIGGERS = frozenset(
    {
        "redis",
        "redis-streams",
        "rabbitmq",
        "nats-jetstream",
        "mqtt",
        "postgresql",
        "mysql",
        "sqlite",
        "prometheus",
        "metrics-api",
        "external-push",
    }
)
#: Why the others cannot be simulated.
UNSUPPORTED = {
    "cpu": "it measures the workers' CPU use, which the queue model does not simulate",
    "memory": "it measures the workers' memory use, which the queue model does not simulate",
    "cron": "it scales by the clock, not by the load: replaying a trace tells nothing about it",
    "external": "its metric and target come from the external gRPC server, which a replay cannot ask",
}


class SimulationError(EbbError):
    """A manifest or an option the simulator cannot use; the message names the field."""


@dataclass(frozen=True)
class Setup:
    obj: ScaledObject
    base: CorePolicy
    predictive: PredictiveSettings
    has_predictkube: bool


_TOKEN = re.compile(r"""\.?([^.\[\]]+)|\[(\d+)\]|\[["']([^"']+)["']\]""")


def _path_tokens(path: str) -> list[str | int]:
    tokens: list[str | int] = []
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if m is None or m.end() == pos:
            raise SimulationError(f"--set {path}: cannot read the path at {path[pos:]!r}")
        name, index, quoted = m.groups()
        tokens.append(int(index) if index is not None else (quoted if quoted is not None else name))
        pos = m.end()
    if not tokens:
        raise SimulationError("--set: empty path")
    return tokens


def apply_set(doc: dict[str, Any], assignment: str) -> None:
    """`spec.cooldownPeriod=60`, `spec.triggers[0].metadata.listLength=10`,
    `metadata.annotations["ebb.dev/predictive"]=horizon=5m`: the value is read as YAML."""
    path, sep, raw = assignment.partition("=")
    # an annotation key may itself hold '=': split at the first '=' outside brackets
    if "[" in path and "]" not in path:
        close = assignment.find("]")
        eq = assignment.find("=", close)
        path, sep, raw = assignment[:eq], "=", assignment[eq + 1 :]
    if not sep:
        raise SimulationError(f"--set {assignment}: expected PATH=VALUE")
    tokens = _path_tokens(path.strip())
    try:
        value: Any = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node: Any = doc
    for i, tok in enumerate(tokens[:-1]):
        nxt = tokens[i + 1]
        if isinstance(tok, int):
            if not isinstance(node, list) or tok >= len(node):
                raise SimulationError(f"--set {path}: {tokens[:i]!r} has no item {tok}")
            node = node[tok]
        else:
            if not isinstance(node, dict):
                raise SimulationError(f"--set {path}: {tok!r} is not inside a mapping")
            if tok not in node or node[tok] is None:
                node[tok] = [] if isinstance(nxt, int) else {}
            node = node[tok]
    last = tokens[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise SimulationError(f"--set {path}: no item {last} there")
        node[last] = value
    elif isinstance(node, dict):
        node[last] = str(value) if "annotations" in tokens and isinstance(value, int | float) else value
    else:
        raise SimulationError(f"--set {path}: {last!r} is not inside a mapping")


def load_manifest(path: Path, overrides: Sequence[str], object_name: str | None) -> tuple[ScaledObject, Any]:
    """The ScaledObject to simulate, with `overrides` applied to its document before validation."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SimulationError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise SimulationError(f"{path}: not YAML: {exc}") from None
    candidates = [
        d
        for d in docs
        if isinstance(d, dict)
        and d.get("kind") == "ScaledObject"
        and (object_name is None or (d.get("metadata") or {}).get("name") == object_name)
    ]
    if not candidates:
        which = f" named {object_name!r}" if object_name else ""
        raise SimulationError(f"{path}: no ScaledObject{which} in the manifest")
    if len(candidates) > 1:
        names = ", ".join(str((d.get("metadata") or {}).get("name")) for d in candidates)
        raise SimulationError(f"{path}: {len(candidates)} ScaledObjects ({names}): choose one with --object")
    target = candidates[0]
    for assignment in overrides:
        apply_set(target, assignment)
    loaded = load_text(yaml.safe_dump_all(docs, sort_keys=False), str(path), ignore_unknown=True)
    if loaded.errors:
        raise SimulationError("; ".join(str(e) for e in loaded.errors))
    objects = [o for o in loaded.of(ScaledObject) if o.metadata.name == (target.get("metadata") or {}).get("name")]
    if not objects:
        raise SimulationError(f"{path}: the ScaledObject did not load")
    return objects[0], loaded.resources


def _triggers(so: ScaledObject, loaded_resources: Any) -> tuple[list[SimTrigger], list[PredictKubeScaler], bool]:
    for index, trigger in enumerate(so.spec.triggers):
        why = UNSUPPORTED.get(trigger.type)
        if why is not None:
            raise SimulationError(f"{so.ref}: spec.triggers[{index}]: cannot simulate a {trigger.type} trigger: {why}")
        if trigger.type not in BACKLOG_TRIGGERS and trigger.type != "predictkube":
            try:
                scaler_class(trigger.type)
            except KeyError:
                raise SimulationError(
                    f"{so.ref}: spec.triggers[{index}]: unknown trigger type {trigger.type!r}"
                ) from None
            raise SimulationError(
                f"{so.ref}: spec.triggers[{index}]: cannot simulate a {trigger.type} trigger: the simulator "
                f"knows what queue triggers ({', '.join(sorted(BACKLOG_TRIGGERS))}) and predictkube read"
            )
    env: dict[str, str] = {}
    group = loaded_resources.scale_target(so)
    if group is not None:
        env = dict(resolve_env(group, loaded_resources))
    scalers = build_scalers(so, loaded_resources, env)
    out: list[SimTrigger] = []
    predictkube: list[PredictKubeScaler] = []
    push = False
    for scaler in scalers:
        if isinstance(scaler, PredictKubeScaler):
            predictkube.append(scaler)
            continue
        spec = scaler.metric_spec()
        reads = "backlog"
        if scaler.type_name == "rabbitmq" and getattr(scaler.meta, "mode", None) == "MessageRate":
            reads = "rate"
        push = push or scaler.supports_push
        out.append(
            SimTrigger(
                metric_name=spec.name,
                target=spec.target,
                activation=scaler.activation_threshold() or 0.0,
                reads=reads,
                metric_type=spec.metric_type,
                trigger_name=scaler.ctx.trigger_name,
            )
        )
    return out, predictkube, push


def setup(so: ScaledObject, resources: Any) -> Setup:
    try:
        triggers, predictkube, push = _triggers(so, resources)
    except SimulationError:
        raise
    except EbbError as exc:
        raise SimulationError(str(exc)) from None
    annotations = so.metadata.annotations
    try:
        pause = pause_state(annotations, so.ref)
    except EbbError as exc:
        raise SimulationError(str(exc)) from None
    idle_raw = annotations.get(IDLE_POLLING_ANNOTATION)
    idle: float | None = None
    if idle_raw is not None:
        try:
            idle = float(idle_raw)
        except ValueError:
            idle = -1.0
        if not idle > 0:
            raise SimulationError(
                f"{so.ref}: metadata.annotations[{IDLE_POLLING_ANNOTATION}]: expected seconds > 0, got {idle_raw!r}"
            )
    settings = PredictiveSettings()
    raw = annotations.get(PREDICTIVE_ANNOTATION)
    if raw is not None:
        try:
            settings = parse_predictive(raw)
        except ValueError as exc:
            raise SimulationError(f"{so.ref}: metadata.annotations[{PREDICTIVE_ANNOTATION}]: {exc}") from None
    if predictkube:
        m = predictkube[0].m
        settings = dataclasses.replace(
            settings,
            horizon=m.predict_horizon,
            threshold=m.threshold,
            activation=m.activation_threshold,
            # as the predictkube scaler under `ebb run`: no release of the cooldown, no blend with arrivals
            hold="cooldown",
            recent=0.0,
        )
    policy = dataclasses.replace(object_policy(so, now=0.0), created_at=0.0)
    base = CorePolicy("manifest", policy, tuple(triggers), push=push, idle_polling_interval=idle, pause=pause)
    return Setup(so, base, settings, bool(predictkube))


def predictor(settings: PredictiveSettings, service_rate: float, startup_delay: float) -> Predictor:
    """Prediction sized by the service rate unless the manifest said otherwise (predictkube's threshold).

    Activation: the target wakes ahead of work when the point forecast rate r gives a chance of at least
    `settings.probability` of an item within the start-up delay D (Poisson: 1 - exp(-r x D)), i.e. when
    r >= -ln(1 - probability) / D. With Poisson arrivals at rate r, each cold start avoided by keeping a
    replica warm costs 1/r replica-seconds however long it is kept, so warming pays where the rate is high;
    the default probability is where cost met saving on the benchmark traces (docs/performance.md).
    """
    threshold = settings.threshold if settings.threshold else service_rate
    activation = settings.activation
    if activation is None:
        activation = -math.log(1.0 - settings.probability) / max(startup_delay, 1.0)
    return Predictor(settings, threshold=threshold, activation=activation)


def build_policies(
    st: Setup, names: Sequence[str], workload: Workload, service_rate: float, startup_delay: float
) -> list[Policy]:
    base = st.base
    pol: ObjectPolicy = base.policy
    target = base.triggers[0].target if base.triggers else 1.0
    pred = predictor(st.predictive, service_rate, startup_delay)
    manifest_predictor = (
        pred if (st.has_predictkube or (PREDICTIVE_ANNOTATION in st.obj.metadata.annotations)) else None
    )
    out: list[Policy] = []
    for name in names:
        if name == "manifest":
            out.append(dataclasses.replace(base, predictor=manifest_predictor))
        elif name == "keda-default":
            out.append(
                dataclasses.replace(
                    base,
                    name=name,
                    policy=dataclasses.replace(pol, polling_interval=30.0, cooldown_period=300.0),
                    push=False,
                    idle_polling_interval=None,
                    predictor=manifest_predictor if st.has_predictkube else None,
                )
            )
        elif name == "predictive":
            on = dataclasses.replace(pred, settings=dataclasses.replace(pred.settings, mode="on"))
            out.append(dataclasses.replace(base, name=name, predictor=on))
        elif name == "oracle":
            out.append(oracle_policy(pol.polling_interval, pol.max_replicas, target))
        elif name == "fixed-p99":
            out.append(fixed_schedule(workload, service_rate, pol.max_replicas, target))
        else:
            raise SimulationError(f"--policies: unknown policy {name!r} (expected some of {', '.join(POLICIES)})")
    return out
