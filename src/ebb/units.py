"""Units users write in manifests: Kubernetes quantities and KEDA's durations. Pure parsing, no dependencies."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

# k8s.io/apimachinery resource.ParseQuantity's forms.
_QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?")
_SUFFIX = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"),
    "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18"),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30),
    "Ti": Decimal(2**40), "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}  # fmt: skip

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_quantity(text: str) -> float:
    """A Kubernetes quantity ("12", "1.5k", "500m", "2Gi", "1e3") as a float; ValueError otherwise."""
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a quantity")
    number, exponent, suffix = match.groups()
    try:
        value = Decimal(number)
        if exponent:
            value = value.scaleb(int(exponent[1:]))
        elif suffix:
            value *= _SUFFIX[suffix]
    except (InvalidOperation, ValueError, OverflowError):
        raise ValueError(f"{text!r} is not a quantity") from None
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{text!r} is out of range")
    return result


def parse_duration(text: str) -> float:
    """Seconds from KEDA's duration parameters: a Go duration (`500ms`, `1m30s`) or whole milliseconds."""
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        return int(text) / 1000.0
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNIT[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(
            f"{text!r} is not a duration: give a number of milliseconds or a duration such as 500ms, 5s, 1m"
        )
    return total
