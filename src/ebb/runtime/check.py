"""What `ebb check` decides about one object beyond its fields: every trigger built, the formula compiled.

`scalers_for` is the path `ebb check` and `ebb metrics` take; `verdict` runs the same path over a whole text and
returns every finding (the table in docs/validation.md is generated through it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import yaml

from ebb.errors import EbbError, SpecError
from ebb.runtime.build import build_scalers
from ebb.scalers import available_types
from ebb.scalers.base import DEFAULT_TIMEOUT, Scaler
from ebb.scaling.modifiers import compile_formula
from ebb.spec.auth import resolve_env, resolve_triggers_auth
from ebb.spec.keda_rules import Rule, manifests
from ebb.spec.loader import LoadResult, load_text
from ebb.spec.models import ScaledJob, ScaledObject


def target_env(loaded: LoadResult, obj: ScaledObject | ScaledJob) -> tuple[dict[str, str], frozenset[str]]:
    """The environment `*FromEnv` parameters resolve from: the ProcessGroup's, or the job container's."""
    if isinstance(obj, ScaledJob):
        env = resolve_env(obj, loaded.resources)
        return dict(env), env.secret_values
    group = loaded.resources.scale_target(obj)
    if group is None:
        return {}, frozenset()
    env = resolve_env(group, loaded.resources)
    return dict(env), env.secret_values


def scalers_for(
    loaded: LoadResult, obj: ScaledObject | ScaledJob, timeout: float = DEFAULT_TIMEOUT
) -> tuple[list[Scaler] | None, str | None]:
    """(scalers, None), or (None, a note why they can't be built here); raises SpecError for real errors.

    Credentials of objects meant for a cluster may live in Secrets and pod environments that only the
    cluster has: for those, what cannot be resolved here is a note, not an error. So is a KEDA trigger type
    ebb lacks (KEDA can run it); for a local object it is an error, as it is for `ebb run`.
    """
    cluster = obj.cluster_bound
    unknown = frozenset(t.type for t in obj.spec.triggers) - set(available_types())
    if unknown and not cluster:
        index = next(i for i, t in enumerate(obj.spec.triggers) if t.type in unknown)
        raise SpecError(
            obj.ref,
            f"spec.triggers[{index}].type",
            f"{obj.spec.triggers[index].type!r} is a KEDA trigger type that ebb does not implement yet, so "
            "`ebb run` cannot scale on it",
        )
    try:  # resolution: Secrets, ConfigMaps, the target's environment
        values, secrets = target_env(loaded, obj)
        resolve_triggers_auth(obj, loaded.resources, values)  # only to tell resolution from validation
    except SpecError as exc:
        if not cluster:
            raise
        return None, f"credentials resolve in the cluster, not here ({exc.field}: {exc.message})"
    try:  # validation: every trigger's parameters, and the formula over them
        scalers = build_scalers(obj, loaded.resources, values, env_secrets=secrets, timeout=timeout, skip_types=unknown)
        modifiers = obj.spec.scaling_modifiers if isinstance(obj, ScaledObject) else None
        if modifiers is not None and modifiers.formula is not None:
            names = [t.name for t in obj.spec.triggers if t.name]
            compile_formula(modifiers.formula, names, obj.ref)
        if unknown:
            return None, (
                f"KEDA trigger type(s) ebb does not implement yet: {', '.join(sorted(unknown))}. KEDA can scale "
                "on them; `ebb operator` and `ebb run` cannot. The other triggers were checked"
            )
        return scalers, None
    except SpecError as exc:
        if cluster and exc.field.endswith("FromEnv"):
            return None, f"{exc.field} resolves from the target's environment in the cluster"
        if cluster and exc.field.endswith(".aggregateFromKubeServiceEndpoints") and "Kubernetes API" in exc.message:
            return None, f"{exc.field}: the Service's endpoints are found in the cluster (ebb operator)"
        raise


@dataclass(frozen=True)
class Finding:
    severity: Literal["error", "warning", "note"]
    obj: str
    field: str
    message: str


def verdict(text: str, source: str = "<manifest>") -> list[Finding]:
    """Everything `ebb check` says about `text`: errors, warnings and notes, in order."""
    loaded = load_text(text, source)
    found = [Finding("error", e.obj, e.field, e.message) for e in loaded.errors]
    found += [Finding("warning", w.obj, w.field, w.message) for w in loaded.warnings]
    objects: list[ScaledObject | ScaledJob] = [*loaded.resources.scaled_objects(), *loaded.resources.scaled_jobs()]
    for obj in objects:
        try:
            _, note = scalers_for(loaded, obj)
        except SpecError as exc:
            found.append(Finding("error", exc.obj, exc.field, exc.message))
            continue
        except EbbError as exc:
            found.append(Finding("error", obj.ref, "", str(exc)))
            continue
        if note:
            found.append(Finding("note", obj.ref, "", note))
    return found


def rule_findings(rule: Rule, edits: dict[str, Any]) -> list[Finding]:
    """What `ebb check` says about one case of an audited KEDA rule (see ebb.spec.keda_rules)."""
    text = yaml.safe_dump_all(manifests(rule, edits), sort_keys=False)
    return verdict(text, f"{rule.id}.yaml")
