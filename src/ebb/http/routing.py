"""Which HTTPScaledObject a request belongs to, by the HTTP add-on's rules (pkg/routing).

Hosts: an exact host first, then `*.suffix` wildcards from the most specific, then routes without hosts (or
with `*`). Within a host, the longest matching path prefix wins, prefixes matching whole segments (`/api`
matches `/api` and `/api/x`, not `/apix`). Among routes on the same host and prefix, the ones whose
`headers` all match the request are candidates: more headers first, then more headers with a value, then the
oldest object, then by namespace and name. A header without a value matches any value of that header.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

CATCH_ALL = "*"


@dataclass(frozen=True)
class HeaderMatch:
    name: str
    value: str | None = None


@dataclass(frozen=True)
class RouteRule(Generic[T]):
    """One object's matching rules; `route` is what a match returns."""

    route: T
    hosts: tuple[str, ...] = ()
    path_prefixes: tuple[str, ...] = ()
    headers: tuple[HeaderMatch, ...] = ()
    #: Creation time, namespace and name: the add-on's tie-break between otherwise equal rules.
    order: tuple[float, str, str] = (0.0, "", "")


def strip_port(host: str) -> str:
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def _segments(path: str) -> tuple[str, ...]:
    trimmed = path.strip("/")
    return tuple(trimmed.split("/")) if trimmed else ()


def _headers_match(wanted: Sequence[HeaderMatch], headers: Mapping[str, Sequence[str]]) -> bool:
    for match in wanted:
        values = headers.get(match.name.lower(), ())
        if match.value is None and not values:
            return False
        if match.value is not None and match.value not in values:
            return False
    return True


@dataclass
class _Entry(Generic[T]):
    prefix: tuple[str, ...]
    rule: RouteRule[T]


@dataclass
class RoutingTable(Generic[T]):
    """Built once from the rules; `route` is a pure lookup."""

    rules: Iterable[RouteRule[T]] = ()
    _by_host: dict[str, list[_Entry[T]]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for rule in self.rules:
            hosts = rule.hosts or (CATCH_ALL,)
            prefixes = rule.path_prefixes or ("",)
            for raw_host in hosts:
                host = strip_port(raw_host).lower()
                host = CATCH_ALL if host in ("", CATCH_ALL) else host
                for prefix in prefixes:
                    self._by_host.setdefault(host, []).append(_Entry(_segments(prefix), rule))
        for entries in self._by_host.values():
            # Stable sorts, least significant key first; the add-on orders namespace and name descending.
            entries.sort(key=lambda e: e.rule.order[2], reverse=True)
            entries.sort(key=lambda e: e.rule.order[1], reverse=True)
            entries.sort(
                key=lambda e: (
                    -len(e.prefix),
                    -len(e.rule.headers),
                    -sum(1 for h in e.rule.headers if h.value is not None),
                    e.rule.order[0],
                )
            )

    def _in_host(self, host: str, path: tuple[str, ...], headers: Mapping[str, Sequence[str]]) -> T | None:
        entries = self._by_host.get(host)
        if not entries:
            return None
        longest: int | None = None
        for entry in entries:
            n = len(entry.prefix)
            if longest is not None and n < longest:
                # Only the longest matching prefix counts (the add-on's radix LongestPrefix).
                return None
            if path[:n] != entry.prefix:
                continue
            longest = n
            if _headers_match(entry.rule.headers, headers):
                return entry.rule.route
        return None

    def route(self, host: str, path: str, headers: Mapping[str, Sequence[str]]) -> T | None:
        """The route for a request; `headers` maps lower-case names to every value sent."""
        hostname = strip_port(host).lower()
        segments = _segments(path)
        found = self._in_host(hostname, segments, headers)
        if found is not None:
            return found
        labels = hostname.split(".")
        for i in range(1, len(labels)):
            found = self._in_host("*." + ".".join(labels[i:]), segments, headers)
            if found is not None:
                return found
        return self._in_host(CATCH_ALL, segments, headers)
