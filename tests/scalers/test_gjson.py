"""ebb's GJSON against GJSON's own documented examples (tidwall/gjson v1.19.0 SYNTAX.md and README.md).

Each row is a path and the result the documentation gives for it; MISSING where it says <non-existent>.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ebb.scalers._gjson import MISSING, get, parse_json_lines

DOC = json.loads(
    """{
  "name": {"first": "Tom", "last": "Anderson"},
  "age":37,
  "children": ["Sara","Alex","Jack"],
  "fav.movie": "Deer Hunter",
  "friends": [
    {"first": "Dale", "last": "Murphy", "age": 44, "nets": ["ig", "fb", "tw"]},
    {"first": "Roger", "last": "Craig", "age": 68, "nets": ["fb", "tw"]},
    {"first": "Jane", "last": "Murphy", "age": 47, "nets": ["ig", "tw"]}
  ]
}"""
)
DALE = {"first": "Dale", "last": "Murphy", "age": 44, "nets": ["ig", "fb", "tw"]}
ROGER = {"first": "Roger", "last": "Craig", "age": 68, "nets": ["fb", "tw"]}
JANE = {"first": "Jane", "last": "Murphy", "age": 47, "nets": ["ig", "tw"]}

#: SYNTAX.md and README.md, on DOC. (The docs' object examples omit "nets"; the document above has them.)
DOCUMENTED: list[tuple[str, Any]] = [
    # Basic
    ("name.last", "Anderson"),
    ("name.first", "Tom"),
    ("age", 37),
    ("children", ["Sara", "Alex", "Jack"]),
    ("children.0", "Sara"),
    ("children.1", "Alex"),
    ("friends.1", ROGER),
    ("friends.1.first", "Roger"),
    ("friends.1.last", "Craig"),
    # Wildcards, escapes
    ("child*.2", "Jack"),
    ("c?ildren.0", "Sara"),
    (r"fav\.movie", "Deer Hunter"),
    # Arrays
    ("children.#", 3),
    ("friends.#", 3),
    ("friends.#.age", [44, 68, 47]),
    ("friends.#.first", ["Dale", "Roger", "Jane"]),
    # Queries
    ('friends.#(last=="Murphy").first', "Dale"),
    ('friends.#(last=="Murphy")#.first', ["Dale", "Jane"]),
    ("friends.#(age>45)#.last", ["Craig", "Murphy"]),
    ('friends.#(first%"D*").last', "Murphy"),
    ('friends.#(first!%"D*").last', "Craig"),
    ('children.#(!%"*a*")', "Alex"),
    ('children.#(%"*a*")#', ["Sara", "Jack"]),
    ('friends.#(nets.#(=="fb"))#.first', ["Dale", "Roger"]),
    # Dot vs pipe
    ("friends.0.first", "Dale"),
    ("friends|0.first", "Dale"),
    ("friends.0|first", "Dale"),
    ("friends|0|first", "Dale"),
    ("friends|#", 3),
    ('friends.#(last="Murphy")#', [DALE, JANE]),
    ('friends.#(last="Murphy")#.first', ["Dale", "Jane"]),
    ('friends.#(last="Murphy")#|first', MISSING),
    ('friends.#(last="Murphy")#.0', []),
    ('friends.#(last="Murphy")#|0', DALE),
    ('friends.#(last="Murphy")#.#', []),
    ('friends.#(last="Murphy")#|#', 2),
    # Modifiers
    ("children.@reverse", ["Jack", "Alex", "Sara"]),
    ("children.@reverse.0", "Jack"),
    ("children|@reverse", ["Jack", "Alex", "Sara"]),
    ("children|@reverse|0", "Jack"),
    # Multipaths and literals
    (
        '{name.first,age,"the_murphys":friends.#(last="Murphy")#.first}',
        {"first": "Tom", "age": 37, "the_murphys": ["Dale", "Jane"]},
    ),
    (
        '{name.first,age,"company":!"Happysoft","employed":!true}',
        {"first": "Tom", "age": 37, "company": "Happysoft", "employed": True},
    ),
]

VALS = json.loads(
    """{"vals": [
    { "a": 1, "b": "data" }, { "a": 2, "b": true }, { "a": 3, "b": false }, { "a": 4, "b": "0" },
    { "a": 5, "b": 0 }, { "a": 6, "b": "1" }, { "a": 7, "b": 1 }, { "a": 8, "b": "true" },
    { "a": 9, "b": false }, { "a": 10, "b": null }, { "a": 11 }
]}"""
)
#: SYNTAX.md, the `~` (tilde) examples.
TILDE: list[tuple[str, Any]] = [
    ("vals.#(b==~true)#.a", [2, 6, 7, 8]),
    ("vals.#(b==~false)#.a", [3, 4, 5, 9, 10, 11]),
    ("vals.#(b==~null)#.a", [10, 11]),
    ("vals.#(b==~*)#.a", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
    ("vals.#(b!=~*)#.a", [11]),
]

LINES = parse_json_lines(
    '{"name": "Gilbert", "age": 61}\n{"name": "Alexa", "age": 34}\n'
    '{"name": "May", "age": 57}\n{"name": "Deloise", "age": 44}\n'
)
#: README.md, JSON Lines.
JSON_LINES: list[tuple[str, Any]] = [
    ("..#", 4),
    ("..1", {"name": "Alexa", "age": 34}),
    ("..3", {"name": "Deloise", "age": 44}),
    ("..#.name", ["Gilbert", "Alexa", "May", "Deloise"]),
    ('..#(name="May").age', 57),
]

#: The modifiers' own documented examples (gjson.go doc comments of v1.19.0).
MODIFIER_DOCS: list[tuple[Any, str, Any]] = [
    ([1, [2], [3, 4], [5, [6, 7]]], "@flatten", [1, 2, 3, 4, 5, [6, 7]]),
    ([1, [2], [3, 4], [5, [6, 7]]], '@flatten:{"deep":true}', [1, 2, 3, 4, 5, 6, 7]),
    ({"first": "Tom", "last": "Smith"}, "@keys", ["first", "last"]),
    ({"first": "Tom", "last": "Smith"}, "@values", ["Tom", "Smith"]),
    ([{"first": "Tom", "age": 37}, {"age": 41}], "@join", {"first": "Tom", "age": 41}),
    ('{"id":1023,"name":"alert"}', "@fromstr", {"id": 1023, "name": "alert"}),
    ({"id": 1023, "name": "alert"}, "@tostr", '{"id":1023,"name":"alert"}'),
    ({"id": ["123", "456"], "name": ["a", "b"]}, "@group", [{"id": "123", "name": "a"}, {"id": "456", "name": "b"}]),
]


def _same(found: Any, expected: Any) -> bool:
    if expected is MISSING:
        return found is MISSING
    return found is not MISSING and json.dumps(found) == json.dumps(expected)


@pytest.mark.parametrize(("path", "expected"), DOCUMENTED, ids=[p for p, _ in DOCUMENTED])
def test_documented_paths(path: str, expected: Any) -> None:
    assert _same(get(DOC, path), expected)


@pytest.mark.parametrize(("path", "expected"), TILDE, ids=[p for p, _ in TILDE])
def test_documented_tilde_queries(path: str, expected: Any) -> None:
    assert _same(get(VALS, path), expected)


@pytest.mark.parametrize(("path", "expected"), JSON_LINES, ids=[p for p, _ in JSON_LINES])
def test_documented_json_lines(path: str, expected: Any) -> None:
    assert _same(get(LINES, path), expected)


@pytest.mark.parametrize(("doc", "path", "expected"), MODIFIER_DOCS, ids=[p for _, p, _ in MODIFIER_DOCS])
def test_documented_modifiers(doc: Any, path: str, expected: Any) -> None:
    assert _same(get(doc, path), expected)


@pytest.mark.parametrize(
    ("doc", "path", "expected"),
    [
        # The cases: bare query values, modifiers, string-vs-number comparison by the found type.
        ({"a": [{"last": "Murphy", "n": 1}]}, "a.#(last==Murphy).n", 1),
        ({"a": [{"v": "7"}, {"v": 9}, {"v": "10"}]}, "a.#(v>6)#.v", ["7", 9]),  # "10" < "6" as strings
        ({"a": [1, 2]}, "@this", {"a": [1, 2]}),
        ({"a": [1, 2]}, "[a.0,a.1]", [1, 2]),
        ({"a": {"b": 1}}, "a|@keys|0", "b"),
        ({"a": 1}, "", MISSING),
        ({"a": 1}, "b", MISSING),
        ({"a": [1]}, "a.5", MISSING),
        ({"a": [{"b": 1}]}, "a.#(b==2).b", MISSING),
        ({"a": [{"b": 1}]}, "a.#(b==2)#", []),
        ({"a": 1, "ab": 2}, "a?", 2),
        ({"a*": 3}, r"a\*", 3),
        ({"x": {"y": 1}, "xy": {"y": 2}}, "x*.y", 1),  # the first key that matches and resolves
        ({"x": 5, "xy": {"y": 2}}, "x*.y", 2),
    ],
)
def test_edges(doc: Any, path: str, expected: Any) -> None:
    assert _same(get(doc, path), expected)


def test_agreement_figure() -> None:
    """Every documented example agrees (the figure docs/validation.md quotes)."""
    rows = len(DOCUMENTED) + len(TILDE) + len(JSON_LINES) + len(MODIFIER_DOCS)
    agree = sum(_same(get(DOC, p), e) for p, e in DOCUMENTED)
    agree += sum(_same(get(VALS, p), e) for p, e in TILDE)
    agree += sum(_same(get(LINES, p), e) for p, e in JSON_LINES)
    agree += sum(_same(get(d, p), e) for d, p, e in MODIFIER_DOCS)
    assert (agree, rows) == (60, 60)
