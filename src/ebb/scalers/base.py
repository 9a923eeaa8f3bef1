"""The scaler contract: what every trigger type implements, and how its metadata is parsed.

A scaler connects to one system, reads one number and says whether its target should be active.
Parameters are declared once, on a pydantic model, with where each may come from (KEDA's
`order=triggerMetadata;authParams;resolvedEnv` tags): parsing, defaults and errors live there, not in
hand-written `if` chains.
"""

from __future__ import annotations

import asyncio
import math
import re
import types
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo
from pydantic.fields import FieldInfo

from ebb.errors import MASK, ScalerError, SpecError, redact
from ebb.scaling.forecast import Prediction

M = TypeVar("M", bound="ScalerMetadata")
S = TypeVar("S", bound="Scaler")

MetricType = Literal["AverageValue", "Value", "Utilization"]
Source = Literal["triggerMetadata", "authParams", "resolvedEnv"]

#: Lists the EndpointSlices of a Service, (namespace, service name) -> the slices as manifests (operator only).
EndpointSliceLister = Callable[[str, str], Awaitable[list[dict[str, Any]]]]

#: KEDA_HTTP_DEFAULT_TIMEOUT is 3000 ms; every scaler call is bounded by this unless the trigger says otherwise.
DEFAULT_TIMEOUT = 3.0


@dataclass(frozen=True)
class TriggerContext:
    """Everything a scaler knows besides its metadata: which object and trigger it serves."""

    kind: str = "ScaledObject"
    namespace: str = "default"
    name: str = "unnamed"
    trigger_index: int = 0
    trigger_type: str = ""
    trigger_name: str | None = None
    metric_type: MetricType = "AverageValue"
    timeout: float = DEFAULT_TIMEOUT
    #: Values that must never appear in messages (filled from secret parameters when parsed).
    secrets: frozenset[str] = field(default_factory=frozenset)
    #: KEDA's AsMetricSource: the trigger only feeds a scalingModifiers formula, so its own target is optional.
    as_metric_source: bool = False
    #: Local ProcessGroup targets only: the running workers' process ids, which cpu and memory triggers measure.
    target_pids: Callable[[], Sequence[int]] | None = field(default=None, compare=False)
    #: Local ProcessGroup targets only (None elsewhere): the group's requests, "cpu" in cores, "memory" in bytes.
    target_requests: Mapping[str, float] | None = field(default=None, compare=False)
    #: In the operator only (None elsewhere): the Kubernetes API's EndpointSlices (metrics-api aggregation).
    endpoint_slices: EndpointSliceLister | None = field(default=None, compare=False)

    @property
    def object_ref(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def trigger_ref(self) -> str:
        label = f"triggers[{self.trigger_index}]"
        detail = self.trigger_type + (f" {self.trigger_name!r}" if self.trigger_name else "")
        return f"{label} ({detail})" if detail else label


@dataclass(frozen=True)
class MetricSpec:
    """The metric a trigger feeds to the HPA math (KEDA's GetMetricSpecForScaling)."""

    name: str
    target: float
    metric_type: MetricType = "AverageValue"
    #: "External" for almost every trigger; "Resource" for cpu and memory (served by metrics-server in k8s).
    source: Literal["External", "Resource"] = "External"
    #: For Resource metrics: "cpu" or "memory", and the container (ContainerResource) if one was named.
    resource_name: str | None = None
    container_name: str | None = None


@dataclass(frozen=True)
class ScalerReading:
    """One poll's result: the metric value and whether this trigger alone would keep the target active."""

    value: float
    active: bool


def param(
    default: Any = ...,
    *,
    name: str | None = None,
    also: tuple[str, ...] = (),
    sources: tuple[Source, ...] = ("triggerMetadata",),
    secret: bool = False,
    description: str | None = None,
    shown_default: str | None = None,
    **constraints: Any,
) -> Any:
    """Declare one scaler parameter.

    `name` is the key users write (KEDA's camelCase); `also` other spellings KEDA reads for it (its
    `name=address;addresses` tags: within each source, the first spelling given wins); `sources` is where it
    may come from, in order; `secret` parameters are masked in every output and refused in plain trigger
    metadata. `shown_default` is how docs/scalers.md shows a default the value alone does not explain.
    """
    extra: dict[str, Any] = {"sources": list(sources), "secret": secret, "also": list(also)}
    if shown_default is not None:
        extra["shown_default"] = shown_default
    return Field(default, alias=name, description=description, json_schema_extra=extra, **constraints)


class ScalerMetadata(BaseModel):
    """Base of every scaler's typed metadata. Unknown keys are ignored, as KEDA does.

    Validators can reach the TriggerContext as `info.context["trigger"]` (e.g. for `as_metric_source`).
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


def require_target_unless_metric_source(value: float | None, info: ValidationInfo) -> float | None:
    """KEDA's AsMetricSource rule: a trigger that only feeds a scalingModifiers formula needs no target."""
    ctx = (info.context or {}).get("trigger")
    if value is None and not (isinstance(ctx, TriggerContext) and ctx.as_metric_source):
        raise ValueError("required (unless the trigger only feeds advanced.scalingModifiers)")
    return value


def _field_key(fname: str, info: FieldInfo) -> str:
    return info.alias or fname


def _field_extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def field_sources(info: FieldInfo) -> tuple[str, ...]:
    return tuple(_field_extra(info).get("sources", ("triggerMetadata",)))


def field_is_secret(info: FieldInfo) -> bool:
    return bool(_field_extra(info).get("secret", False))


def field_names(fname: str, info: FieldInfo) -> tuple[str, ...]:
    """Every spelling of a parameter, the main one first."""
    return (_field_key(fname, info), *_field_extra(info).get("also", ()))


def known_parameters(model: type[ScalerMetadata]) -> frozenset[str]:
    """The metadata keys a scaler reads: every spelling, and `<name>FromEnv` where the environment is a source."""
    keys: set[str] = set()
    for fname, info in model.model_fields.items():
        names = field_names(fname, info)
        if "triggerMetadata" in field_sources(info) or field_is_secret(info):
            keys.update(names)  # secrets are read from metadata only to be refused with a clear message
        if "resolvedEnv" in field_sources(info):
            keys.update(f"{n}FromEnv" for n in names)
    return frozenset(keys)


def auth_only_parameters(model: type[ScalerMetadata]) -> frozenset[str]:
    """Parameters read only from a TriggerAuthentication: written in metadata, they are ignored."""
    keys: set[str] = set()
    for fname, info in model.model_fields.items():
        sources = field_sources(info)
        if "triggerMetadata" not in sources and "resolvedEnv" not in sources and not field_is_secret(info):
            keys.update(field_names(fname, info))
    return frozenset(keys)


#: Go's strconv.ParseBool, which KEDA's typed metadata uses for every boolean parameter.
GO_BOOL_FORMS = ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False")
# KEDA's typed metadata reads numbers with encoding/json: no "+", no leading zeros, no ".5", no NaN or Inf.
_JSON_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def _go_kind(annotation: Any) -> type | None:
    """bool, int or float when the field holds one of those (optionally None), else None."""
    members = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    kinds = [m for m in members if m is not type(None)]
    return kinds[0] if len(kinds) == 1 and kinds[0] in (bool, int, float) else None


def _has_before_validator(model: type[BaseModel], fname: str) -> bool:
    """True when the model parses the field's raw text itself (durations, lists)."""
    decorators = model.__pydantic_decorators__.field_validators.values()
    return any(d.info.mode in ("before", "plain") and fname in d.info.fields for d in decorators)


def go_value(kind: type, text: str) -> bool | int | float:
    """`text` as KEDA's typed metadata reads a Go bool, int64 or float64; ValueError says what was expected."""
    if kind is bool:
        if text not in GO_BOOL_FORMS:
            raise ValueError(f"expected a boolean as Go reads one: {', '.join(GO_BOOL_FORMS)}")
        return text in GO_BOOL_FORMS[:6]
    if kind is int:
        if not _JSON_INT.fullmatch(text) or not -(2**63) <= int(text) < 2**63:
            raise ValueError("expected an integer (digits with an optional leading -, no leading zeros)")
        return int(text)
    if not _JSON_NUMBER.fullmatch(text):
        raise ValueError("expected a finite number as JSON writes one (such as 5, -1.5 or 2e3)")
    return float(text)


def parse_metadata(
    model: type[M],
    ctx: TriggerContext,
    metadata: Mapping[str, str],
    auth_params: Mapping[str, str] | None = None,
    resolved_env: Mapping[str, str] | None = None,
) -> M:
    """Gather each parameter from its sources in order, then validate; errors name the trigger and key.

    `resolvedEnv` means the metadata key `<name>FromEnv` names an environment variable of the target.
    """
    auth_params = auth_params or {}
    resolved_env = resolved_env or {}
    where = f"spec.triggers[{ctx.trigger_index}]"
    data: dict[str, Any] = {}
    given: dict[str, str] = {}  # field name -> the key the value was found under
    for fname, info in model.model_fields.items():
        names = field_names(fname, info)
        sources = field_sources(info)
        for key in names:
            if field_is_secret(info) and "triggerMetadata" not in sources and metadata.get(key, "").strip():
                raise SpecError(
                    ctx.object_ref,
                    f"{where}.metadata.{key}",
                    f"{key} is a secret: give it through a TriggerAuthentication or {key}FromEnv, "
                    "not in plain trigger metadata",
                )
        found = _lookup(names, sources, metadata, auth_params, resolved_env, ctx, where)
        if found is None:
            continue
        key, text = found
        kind = _go_kind(info.annotation)
        if kind is not None and not _has_before_validator(model, fname):
            try:
                data[fname] = go_value(kind, text)
            except ValueError as exc:
                shown = "invalid value" if field_is_secret(info) else f"{exc} (got {text!r})"
                raise SpecError(ctx.object_ref, f"{where}.metadata.{key}", shown) from None
        else:
            data[fname] = text
        given[fname] = key
    try:
        return model.model_validate(data, context={"trigger": ctx})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err.get("loc", ())]
        key = loc[0] if loc else ""
        if key in given:
            key = given[key]
        elif key in model.model_fields:
            key = _field_key(key, model.model_fields[key])
        secret_keys = {_field_key(f, i) for f, i in model.model_fields.items() if field_is_secret(i)}
        # pydantic echoes the bad input in its message: never let that be a secret.
        msg = str(err.get("msg", "invalid value"))
        if err.get("type") == "missing" and key in {_field_key(f, i) for f, i in model.model_fields.items()}:
            info = next(i for f, i in model.model_fields.items() if _field_key(f, i) == key)
            where_from = {
                "triggerMetadata": "the trigger metadata",
                "authParams": "a TriggerAuthentication",
                "resolvedEnv": f"{key}FromEnv",
            }
            places = " or ".join(where_from[s] for s in field_sources(info))
            msg = f"required parameter missing: give {key} in {places}"
        if key in secret_keys and err.get("type") != "missing":
            msg = "invalid value"
        elif "input" in err and key and isinstance(err["input"], str | int | float):
            msg = f"{msg} (got {err['input']!r})"
        path = f"{where}.metadata.{key}" if key else f"{where}.metadata"
        raise SpecError(ctx.object_ref, path, msg) from None


def _lookup(
    names: tuple[str, ...],
    sources: tuple[str, ...],
    metadata: Mapping[str, str],
    auth_params: Mapping[str, str],
    resolved_env: Mapping[str, str],
    ctx: TriggerContext,
    where: str,
) -> tuple[str, str] | None:
    """(key, value) of the first non-blank value, KEDA's order: each source in turn, each spelling within it.

    Values are trimmed, as KEDA's typed metadata trims them.
    """
    for source in sources:
        for key in names:
            if source == "triggerMetadata":
                value = metadata.get(key, "").strip()
            elif source == "authParams":
                value = auth_params.get(key, "").strip()
            else:
                env_name = metadata.get(f"{key}FromEnv", "")
                if not env_name:
                    continue
                if env_name not in resolved_env:
                    raise SpecError(
                        ctx.object_ref,
                        f"{where}.metadata.{key}FromEnv",
                        f"environment variable {env_name!r} is not set on the scale target",
                    )
                value, key = resolved_env[env_name].strip(), f"{key}FromEnv"
            if value:
                return key, value
    return None


def secret_values(meta: ScalerMetadata) -> frozenset[str]:
    """The values of every secret parameter of `meta` (for redaction)."""
    out: set[str] = set()
    for fname, info in type(meta).model_fields.items():
        if field_is_secret(info):
            value = getattr(meta, fname)
            if value not in (None, ""):
                out.add(str(value))
    return frozenset(out)


def describe_metadata(meta: ScalerMetadata) -> dict[str, Any]:
    """Resolved parameters under the names users write, secrets masked (for `ebb check` and `ebb metrics`)."""
    out: dict[str, Any] = {}
    for fname, info in type(meta).model_fields.items():
        value = getattr(meta, fname)
        if value is None:
            continue
        if field_is_secret(info) and value != "":
            value = MASK
        elif isinstance(value, BaseModel):
            value = value.model_dump()
        out[_field_key(fname, info)] = value
    return out


_METRIC_NAME_CHARS = re.compile(r"[/.:%()]")


def normalize_metric_name(name: str) -> str:
    """KEDA's GenerateMetricNameWithIndex normalisation: `/ . : % ( )` become `-`."""
    return _METRIC_NAME_CHARS.sub("-", name)


def metric_name(ctx: TriggerContext, suffix: str) -> str:
    """`s{index}-{suffix}`, normalised, as KEDA names external metrics."""
    return normalize_metric_name(f"s{ctx.trigger_index}-{suffix}")


class Scaler(ABC):
    """One trigger of one object. Holds its own pooled connection; `close()` releases it.

    Subclasses set `type_name` (the trigger `type`) and `Metadata`, and implement `metric_spec` and
    `read`. They never need to catch errors for reporting: `get_metric_and_activity` bounds each call
    by the timeout and turns any failure into a ScalerError without secrets.
    """

    type_name: ClassVar[str]
    Metadata: ClassVar[type[ScalerMetadata]]
    #: True for scalers that can tell of new work without being polled (see `watch`).
    supports_push: ClassVar[bool] = False
    #: Only cpu and memory take metricType Utilization; external metrics never do (KEDA's GetMetricTargetType).
    supports_utilization: ClassVar[bool] = False
    #: Metadata keys read outside `Metadata` (deprecated spellings a scaler still honours).
    extra_parameters: ClassVar[frozenset[str]] = frozenset()
    #: True for scalers that pass every metadata key on (external): no key is unknown to them.
    forwards_metadata: ClassVar[bool] = False

    @classmethod
    def parameter_names(cls) -> frozenset[str] | None:
        """Every metadata key this trigger type reads; None when it reads them all."""
        if cls.forwards_metadata:
            return None
        return known_parameters(cls.Metadata) | cls.extra_parameters

    def __init__(self, ctx: TriggerContext, meta: ScalerMetadata) -> None:
        self.ctx = ctx
        self.meta = meta
        self.secrets = ctx.secrets | secret_values(meta)

    @classmethod
    def from_trigger(
        cls: type[S],
        ctx: TriggerContext,
        metadata: Mapping[str, str],
        auth_params: Mapping[str, str] | None = None,
        resolved_env: Mapping[str, str] | None = None,
    ) -> S:
        """Parse the trigger's parameters and build the scaler (not connected yet).

        Override only when a scaler needs more than its parsed model (external forwards raw metadata).
        """
        meta = parse_metadata(cls.Metadata, ctx, metadata, auth_params, resolved_env)
        return cls(ctx, meta)

    @abstractmethod
    def metric_spec(self) -> MetricSpec:
        """The metric name, target and type this trigger contributes."""

    @abstractmethod
    async def read(self) -> ScalerReading:
        """Query the source once. May raise anything; the caller bounds and converts it."""

    async def prepare(self) -> None:  # noqa: B027 - optional hook
        """Fetch what `metric_spec` needs from the source (external scalers ask their server).

        Called before every read; implementations cache, so only the first call does work.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook, most scalers override
        """Release connections. Called when the object goes away or ebb stops."""

    async def watch(self, notify: Callable[[], None]) -> None:
        """Run until cancelled, calling `notify()` as soon as the source signals new work.

        Only for `supports_push` scalers. A push only speeds up activation: the loop then polls at once.
        """
        raise NotImplementedError(f"{self.type_name} cannot push")

    @property
    def timeout(self) -> float:
        return self.ctx.timeout

    def error(self, message: str) -> ScalerError:
        return ScalerError(self.ctx.object_ref, self.ctx.trigger_ref, redact(message, self.secrets))

    async def get_metric_and_activity(self) -> ScalerReading:
        """`read()` bounded by the timeout; every failure becomes a ScalerError naming object and trigger."""
        try:
            async with asyncio.timeout(self.timeout):  # no extra task per read, unlike wait_for
                reading = await self.read()
        except ScalerError as exc:
            raise self.error(exc.message) from None
        except TimeoutError:
            raise self.error(f"no answer within {self.timeout:g}s") from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any library's failure is this trigger's failure, never the loop's
            detail = str(exc) or type(exc).__name__
            raise self.error(f"{type(exc).__name__}: {detail}") from None
        if not math.isfinite(reading.value):
            raise self.error(f"the source returned a value that is not a number: {reading.value!r}")
        return reading

    def describe(self) -> dict[str, Any]:
        """Resolved parameters, secrets masked."""
        return describe_metadata(self.meta)

    def prediction(self) -> Prediction | None:
        """What a forecasting scaler (predictkube, ebb.dev/predictive) last forecast; None for the others."""
        return None

    def releases(self) -> bool:
        """True when a forecasting scaler, acting, forecasts no work ahead: its object may scale to zero
        without waiting out cooldownPeriod once nothing waits (PredictiveSettings.hold="forecast")."""
        return False

    def activation_threshold(self) -> float | None:
        """The `activation<X>` parameter's value, by KEDA's naming convention; None if the trigger has none."""
        for fname, info in type(self.meta).model_fields.items():
            if _field_key(fname, info).startswith("activation"):
                value = getattr(self.meta, fname)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    return float(value)
        return None


def activity(value: float, activation: float) -> bool:
    """KEDA's rule for almost every scaler: active iff the value is strictly above the activation threshold."""
    return value > activation


AsyncCloser = Callable[[], Awaitable[None]]
