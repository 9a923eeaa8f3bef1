"""The Prometheus text exposition format, read as KEDA's metrics-api scaler reads it (expfmt's TextParser).

Unlike prometheus_client's parser, nothing is renamed: a counter exposed as `requests` (without `_total`) is
found as `requests`, and `requests_total` as `requests_total`. A sample belongs to the family of its own name,
except the `_sum`, `_count` (and `_bucket`) samples of a summary or histogram declared just before, which
belong to that family; only counter, gauge and untyped samples carry a value a selector can pick, as in KEDA.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"\s*({_NAME})\s*(\{{.*\}})?\s*(\S+)(?:\s+(-?[0-9]+))?\s*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)', re.DOTALL)
_TYPES = ("counter", "gauge", "untyped", "summary", "histogram", "gaugehistogram")
_ESCAPES = {"n": "\n", "\\": "\\", '"': '"'}
#: Only these carry the value a selector returns (KEDA reads Untyped, Counter, then Gauge values).
VALUE_TYPES = frozenset({"counter", "gauge", "untyped"})


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float
    #: The type of the family the sample belongs to ("untyped" without a TYPE line).
    family_type: str


def _go_float(text: str) -> float:
    lowered = text.lower()
    if lowered in ("nan", "+inf", "inf", "-inf"):
        return float(lowered)
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
        raise ValueError(f"{text!r} is not a number")
    return float(text)


def _labels(body: str, line: int) -> dict[str, str]:
    inner = body[1:-1]
    out: dict[str, str] = {}
    pos = 0
    while inner[pos:].strip():
        match = _LABEL.match(inner, pos)
        if match is None:
            raise ValueError(f"line {line}: cannot read the labels {body!r}")
        name = match.group(1)
        if name in out:
            raise ValueError(f"line {line}: label {name!r} appears twice")
        out[name] = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), match.group(2))
        pos = match.end()
    return out


def _family_of(name: str, typed: dict[str, str], current: str | None) -> str:
    if current is not None and typed.get(current) in ("summary", "histogram", "gaugehistogram"):
        suffixes = ("_sum", "_count") + (("_bucket",) if typed[current] != "summary" else ())
        for suffix in suffixes:
            if name == current + suffix:
                return current
    return name


def parse(text: str) -> Iterator[Sample]:
    """Every sample of `text`, in order; ValueError names the line that is not in the format."""
    typed: dict[str, str] = {}
    seen: set[str] = set()
    current: str | None = None
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line[1:].split(None, 3)
            if len(parts) >= 2 and parts[0] == "TYPE":
                if len(parts) != 3 or parts[2] not in _TYPES or not re.fullmatch(_NAME, parts[1]):
                    raise ValueError(f"line {number}: malformed TYPE line {line!r}")
                name = parts[1]
                if name in typed:
                    raise ValueError(f"line {number}: second TYPE line for {name!r}")
                if name in seen:
                    raise ValueError(f"line {number}: TYPE line for {name!r} after its samples")
                typed[name] = parts[2]
                current = name
            continue
        match = _SAMPLE.fullmatch(line)
        if match is None:
            raise ValueError(f"line {number}: not a sample: {line[:80]!r}")
        name, body, value_text = match.group(1), match.group(2), match.group(3)
        try:
            value = _go_float(value_text)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
        family = _family_of(name, typed, current)
        seen.add(family)
        current = family
        labels = _labels(body, number) if body else {}
        yield Sample(name, labels, value, typed.get(family, "untyped"))
