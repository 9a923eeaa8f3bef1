"""The add-on's routing rules: host, wildcard host, catch-all; longest whole-segment prefix; headers."""

from __future__ import annotations

import pytest

from ebb.http.routing import HeaderMatch, RouteRule, RoutingTable, strip_port

RULES = [
    RouteRule("shop", hosts=("shop.local",)),
    RouteRule("shop-api", hosts=("shop.local",), path_prefixes=("/api",)),
    RouteRule("shop-api-v2", hosts=("shop.local",), path_prefixes=("/api/v2/",)),
    RouteRule("shop-api-beta", hosts=("shop.local",), path_prefixes=("/api",), headers=(HeaderMatch("x-beta", "1"),)),
    RouteRule("shop-api-any-canary", hosts=("shop.local",), path_prefixes=("/api",), headers=(HeaderMatch("canary"),)),
    RouteRule("wild", hosts=("*.example.com",)),
    RouteRule("deep-wild", hosts=("*.eu.example.com",)),
    RouteRule("fallback", hosts=(), path_prefixes=("/health",)),
    RouteRule("star", hosts=("*",), path_prefixes=("/status",)),
]
TABLE = RoutingTable(RULES)


@pytest.mark.parametrize(
    ("host", "path", "headers", "expected"),
    [
        ("shop.local", "/", {}, "shop"),
        ("shop.local:8080", "/cart", {}, "shop"),
        ("SHOP.local", "/", {}, "shop"),
        ("shop.local", "/api", {}, "shop-api"),
        ("shop.local", "/api/", {}, "shop-api"),
        ("shop.local", "/api/items", {}, "shop-api"),
        ("shop.local", "/apix", {}, "shop"),
        ("shop.local", "/api/v2", {}, "shop-api-v2"),
        ("shop.local", "/api/v2/x", {"x-beta": ["1"]}, "shop-api-v2"),
        ("shop.local", "/api/x", {"x-beta": ["1"]}, "shop-api-beta"),
        ("shop.local", "/api/x", {"x-beta": ["2"]}, "shop-api"),
        ("shop.local", "/api/x", {"canary": ["anything"]}, "shop-api-any-canary"),
        ("a.example.com", "/", {}, "wild"),
        ("a.eu.example.com", "/", {}, "deep-wild"),
        ("example.com", "/", {}, None),
        ("other.local", "/health/live", {}, "fallback"),
        ("other.local", "/status", {}, "star"),
        ("other.local", "/", {}, None),
    ],
)
def test_route(host: str, path: str, headers: dict[str, list[str]], expected: str | None) -> None:
    assert TABLE.route(host, path, headers) == expected


def test_ties_go_to_the_oldest_object() -> None:
    table = RoutingTable(
        [
            RouteRule("new", hosts=("a",), order=(200.0, "default", "new")),
            RouteRule("old", hosts=("a",), order=(100.0, "default", "old")),
        ]
    )
    assert table.route("a", "/", {}) == "old"


def test_more_headers_win_over_fewer() -> None:
    table = RoutingTable(
        [
            RouteRule("one", hosts=("a",), headers=(HeaderMatch("x", "1"),)),
            RouteRule("two", hosts=("a",), headers=(HeaderMatch("x", "1"), HeaderMatch("y"))),
        ]
    )
    assert table.route("a", "/", {"x": ["1"], "y": ["z"]}) == "two"
    assert table.route("a", "/", {"x": ["1"]}) == "one"


@pytest.mark.parametrize(
    ("raw", "host"), [("a.local:80", "a.local"), ("a.local", "a.local"), ("[::1]:8080", "::1"), ("::1", "::1")]
)
def test_strip_port(raw: str, host: str) -> None:
    assert strip_port(raw) == host
