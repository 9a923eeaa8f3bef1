"""What replicas cost: a price per replica-hour, by annotation on the object, per namespace, or for everything.

The annotation travels with the object into the history (so `ebb status` and `ebb dashboard`, which read only the
history file, see it); namespace and global prices are flags of whichever command shows the figures
(`--cost-per-replica-hour 0.04` for everything, `--cost-per-replica-hour shop=0.12` for one namespace, repeatable).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: Price of one replica running for one hour, on a ScaledObject / ScaledJob; wins over the flags.
COST_ANNOTATION = "ebb.dev/cost-per-replica-hour"


def _price(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: expected a price per replica-hour like 0.04, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: a price per replica-hour is a finite number >= 0, got {text!r}")
    return value


def annotated_price(annotations: Mapping[str, str]) -> float | None:
    """The object's own price (its `ebb.dev/cost-per-replica-hour` annotation), None without a valid one."""
    raw = annotations.get(COST_ANNOTATION)
    if raw is None:
        return None
    try:
        return _price(raw, COST_ANNOTATION)
    except ValueError:
        return None


@dataclass(frozen=True)
class Pricing:
    """Prices for the objects that carry no annotation: per namespace, else `default`."""

    default: float | None = None
    namespaces: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, specs: Sequence[str]) -> Pricing:
        """`["0.04", "shop=0.12"]` -> 0.04 everywhere, 0.12 in `shop`; ValueError for a bad one."""
        default: float | None = None
        namespaces: dict[str, float] = {}
        for spec in specs:
            namespace, sep, price = spec.rpartition("=")
            if sep and not namespace:
                raise ValueError(f"--cost-per-replica-hour {spec!r}: expected NAMESPACE=PRICE or PRICE")
            value = _price(price, f"--cost-per-replica-hour {spec!r}")
            if sep:
                namespaces[namespace] = value
            else:
                default = value
        return cls(default, namespaces)

    def price(self, namespace: str, annotated: float | None = None) -> float | None:
        """The annotation's price, else the namespace's, else the default; None when nothing prices it."""
        if annotated is not None:
            return annotated
        return self.namespaces.get(namespace, self.default)

    @property
    def configured(self) -> bool:
        return self.default is not None or bool(self.namespaces)


def cost(replica_seconds: float, price: float | None) -> float | None:
    """Money for `replica_seconds` at `price` per replica-hour."""
    return None if price is None else replica_seconds / 3600.0 * price
