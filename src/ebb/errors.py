"""Typed errors. Each carries the object it concerns and, where it applies, the field path.

The runner and the operator catch these at an object's boundary: one bad object never stops another.
"""

from __future__ import annotations

from collections.abc import Iterable

MASK = "***"


class EbbError(Exception):
    """Base of every error ebb raises on purpose."""


class SpecError(EbbError):
    """A manifest is invalid. `obj` is like "ScaledObject default/worker"; `field` a dotted path."""

    def __init__(self, obj: str, field: str, message: str) -> None:
        self.obj = obj
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.obj}: {self.field}" if self.field else self.obj
        return f"{where}: {self.message}"


class FormulaError(SpecError):
    """A scalingModifiers formula does not parse or refers to unknown triggers."""


class ScalerError(EbbError):
    """A scaler could not produce a number: unreachable server, refused login, no numeric result, timeout.

    Counted toward fallback and reported on its object. The message never contains a secret.
    """

    def __init__(self, obj: str, trigger: str, message: str) -> None:
        self.obj = obj
        self.trigger = trigger
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.obj}: {self.trigger}: {self.message}"


class PushUnavailable(ScalerError):
    """A push source is not set up for push (e.g. Redis with keyspace notifications off); polling still works.

    A hint for the user, not a failure: `key` names what the hint is about (the server), so that it is said
    once per server rather than once per trigger and retry.
    """

    def __init__(self, obj: str, trigger: str, message: str, *, key: str) -> None:
        self.key = key
        super().__init__(obj, trigger, message)


class TargetError(EbbError):
    """The scale target could not be read or changed (process group missing, /scale refused...)."""


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret value in `text` by a mask. Short values are masked too.

    A secret `host:port` (an address from a Secret) is also masked in the forms socket errors quote it in,
    `('host', port)` and the host alone (when it is an IP address or a dotted name)."""
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms.update(_quoted_forms(secret))
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)
    return text


def _quoted_forms(secret: str) -> Iterable[str]:
    yield secret
    host, sep, port = secret.rpartition(":")
    host = host.strip("[]")
    if sep and port.isdigit() and host and "/" not in host:
        yield f"('{host}', {port})"
        if "." in host or ":" in host:
            yield host
