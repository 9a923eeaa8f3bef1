"""GJSON paths (github.com/tidwall/gjson v1.19.0, the version KEDA's metrics-api uses) over parsed JSON values.

Written from GJSON's documented syntax (SYNTAX.md) and checked against the behaviour of its Go code: keys and
`*`/`?` wildcards with `\\` escapes, array indexes, `#` (length) and `#.path` (each element's path), queries
`#(...)` / `#(...)#` with `== != < <= > >= % !%`, quoted or bare values, the `~` truthiness forms and nested
queries, `.` vs `|` chaining, the built-in modifiers (`@reverse @this @flatten @join @keys @values @tostr
@fromstr @group @dig @valid @ugly @pretty`), multipaths `[a,b]` / `{a,"x":b}`, literals `!true` `!"s"` `!1`
and JSON lines (`..`).

A comparison follows the type of the value found, as GJSON's does: a string is compared with the query's
text as a string (`#(v>6)` on "7" compares "7" with "6"), a number with the text read as a number.

Values are Python's parsed JSON (dict, list, str, int/float, bool, None); MISSING is "does not exist".
Where GJSON works on raw text (`@tostr`, `@pretty`, duplicate keys), the result is the same value, not the
same bytes: what a metric lookup needs is the value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final[Any] = _Missing()


def exists(value: Any) -> bool:
    return value is not MISSING


# --- small readers ------------------------------------------------------------------------------------


def _trim(text: str) -> str:
    return text.strip("".join(chr(c) for c in range(33)))


def _parse_uint(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def _go_float(text: str) -> float:
    """Go's strconv.ParseFloat, 0 when it fails (as GJSON ignores the error)."""
    lowered = text.lower()
    if lowered in ("inf", "+inf", "infinity", "+infinity", "-inf", "-infinity", "nan"):
        return float(lowered.replace("infinity", "inf"))
    if re.fullmatch(r"[+-]?(\d[\d_]*\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
        try:
            return float(text.replace("_", ""))
        except ValueError:
            return 0.0
    if re.fullmatch(r"[+-]?0[xX][0-9a-fA-F.]+([pP][+-]?\d+)?", text):
        try:
            sign = -1.0 if text.startswith("-") else 1.0
            return sign * float.fromhex(text.lstrip("+-"))
        except ValueError:
            return 0.0
    return 0.0


def _go_parse_bool(text: str) -> bool | None:
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def _match(text: str, pattern: str) -> bool:
    """tidwall/match: `*` any run of characters, `?` any one character."""
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, text, re.DOTALL) is not None


def squash(text: str) -> str:
    """The leading balanced value of `text`, which starts with `[`, `{`, `(` or `"`."""
    i, depth = (0, 0) if text[0] == '"' else (1, 1)
    while i < len(text):
        ch = text[i]
        if ch == '"':
            i += 1
            while i < len(text):
                if text[i] == "\\":
                    i += 2
                    continue
                if text[i] == '"':
                    break
                i += 1
            if depth == 0:
                return text if i >= len(text) else text[: i + 1]
        elif ch in "{[(":
            depth += 1
        elif ch in "}])":
            depth -= 1
            if depth == 0:
                return text[: i + 1]
        i += 1
    return text


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return MISSING


def _is_json(value: Any) -> bool:
    return isinstance(value, dict | list)


# --- path components ----------------------------------------------------------------------------------


def _is_dot_piper(rest: str) -> bool:
    """After a `.`: does a modifier or a multipath start here (then the `.` acts as a `|`)?"""
    if not rest:
        return False
    if rest[0] == "@":
        end = 1
        while end < len(rest) and rest[end] not in ".|:":
            end += 1
        return rest[1:end] in MODIFIERS
    return rest[0] in "[{"


@dataclass
class _ObjectPath:
    part: str = ""
    path: str = ""
    pipe: str = ""
    piped: bool = False
    wild: bool = False
    more: bool = False


def _object_path(path: str) -> _ObjectPath:
    r = _ObjectPath()
    part: list[str] = []
    i = 0
    while i < len(path):
        ch = path[i]
        if ch == "|":
            r.part, r.pipe, r.piped = "".join(part), path[i + 1 :], True
            return r
        if ch == ".":
            r.part = "".join(part)
            if i < len(path) - 1 and _is_dot_piper(path[i + 1 :]):
                r.pipe, r.piped = path[i + 1 :], True
            else:
                r.path, r.more = path[i + 1 :], True
            return r
        if ch in "*?":
            r.wild = True
        if ch == "\\":
            i += 1
            if i < len(path):
                part.append(path[i])
            i += 1
            continue
        part.append(ch)
        i += 1
    r.part = "".join(part)
    return r


@dataclass
class _Query:
    on: bool = False
    all: bool = False
    path: str = ""
    op: str = ""
    value: str = ""


@dataclass
class _ArrayPath:
    part: str = ""
    path: str = ""
    pipe: str = ""
    piped: bool = False
    more: bool = False
    arrch: bool = False
    alogok: bool = False
    alogkey: str = ""
    query: _Query = field(default_factory=_Query)


def _unescape(text: str) -> str:
    try:
        out = json.loads(f'"{text}"')
        return out if isinstance(out, str) else text
    except ValueError:
        return re.sub(r"\\(.)", r"\1", text)


def _parse_query(query: str) -> tuple[str, str, str, int, bool] | None:
    """(path, op, value, index after the closing bracket, value had escapes) of `#(...)`, or None."""
    if len(query) < 2 or query[0] != "#" or query[1] not in "([":
        return None
    i, j, depth, vesc = 2, 0, 1, False
    while i < len(query):
        ch = query[i]
        if depth == 1 and j == 0 and ch in "!=<>%":
            j = i
            i += 1
            continue
        if ch == "\\":
            i += 1
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
            if depth == 0:
                break
        elif ch == '"':
            i += 1
            while i < len(query):
                if query[i] == "\\":
                    vesc = True
                    i += 1
                elif query[i] == '"':
                    break
                i += 1
        i += 1
    if depth > 0:
        return None
    if not j:
        return _trim(query[2:i]), "", "", i + 1, vesc
    path, value = _trim(query[2:j]), _trim(query[j:i])
    size = 1
    if len(value) > 1 and value[:2] in ("!=", "!%", "<=", ">="):
        size = 2
    elif len(value) > 1 and value[:2] == "==":
        value = value[1:]
    return path, value[:size], _trim(value[size:]), i + 1, vesc


def _array_path(path: str) -> _ArrayPath:
    r = _ArrayPath()
    i = 0
    while i < len(path):
        ch = path[i]
        if ch == "|":
            r.part, r.pipe, r.piped = path[:i], path[i + 1 :], True
            return r
        if ch == ".":
            r.part = path[:i]
            if not r.arrch and i < len(path) - 1 and _is_dot_piper(path[i + 1 :]):
                r.pipe, r.piped = path[i + 1 :], True
            else:
                r.path, r.more = path[i + 1 :], True
            return r
        if ch == "#":
            r.arrch = True
            if i == 0 and len(path) > 1:
                if path[1] == ".":
                    r.alogok, r.alogkey, r.path = True, path[2:], path[:1]
                elif path[1] in "[(":
                    parsed = _parse_query(path[i:])
                    if parsed is None:
                        break
                    qpath, op, value, end, vesc = parsed
                    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                        value = value[1:-1]
                        if vesc:
                            value = _unescape(value)
                    r.query = _Query(on=True, path=qpath, op=op, value=value)
                    i = end - 1
                    if i + 1 < len(path) and path[i + 1] == "#":
                        r.query.all = True
        i += 1
    r.part, r.path = path, ""
    return r


def split_possible_pipe(path: str) -> tuple[str, str] | None:
    """`(left, right)` when `path` holds a top-level `|` (outside queries), else None."""
    if "|" not in path:
        return None
    if path[0] == "{":
        squashed = squash(path[1:])
        if len(squashed) < len(path) - 1:
            left = path[: len(squashed) + 1]
            rest = path[len(left) :]
            if rest[0] == "|":
                return left, rest[1:]
        return None
    i = 0
    while i < len(path):
        ch = path[i]
        if ch == "\\":
            i += 1
        elif ch == ".":
            if i == len(path) - 1:
                return None
            if path[i + 1] == "#":
                i += 2
                if i == len(path):
                    return None
                if path[i] in "[(":
                    start, end = path[i], "]" if path[i] == "[" else ")"
                    i += 1
                    depth = 1
                    while i < len(path):
                        if path[i] == "\\":
                            i += 1
                        elif path[i] == start:
                            depth += 1
                        elif path[i] == end:
                            depth -= 1
                            if depth == 0:
                                break
                        elif path[i] == '"':
                            i += 1
                            while i < len(path):
                                if path[i] == "\\":
                                    i += 1
                                elif path[i] == '"':
                                    break
                                i += 1
                        i += 1
        elif ch == "|":
            return path[:i], path[i + 1 :]
        i += 1
    return None


# --- queries ------------------------------------------------------------------------------------------


def _falseish(value: Any) -> bool:
    if value is None or value is False:
        return True
    if isinstance(value, str):
        parsed = _go_parse_bool(value.lower())
        return parsed is False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value == 0
    return False


def _trueish(value: Any) -> bool:
    if value is True:
        return True
    if isinstance(value, str):
        return _go_parse_bool(value.lower()) is True
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0
    return False


def _query_matches(query: _Query, value: Any) -> bool:
    want = query.value
    if want.startswith("~"):
        kind = want[1:]
        ish: bool | None = {
            "*": exists(value),
            "null": value is None or not exists(value),
            "true": _trueish(value),
            "false": _falseish(value) or not exists(value),
        }.get(kind)
        if ish is None:
            return False
        want, value = "true", ish
    if not exists(value):
        return False
    op = query.op
    if not op:
        return True
    if isinstance(value, str):
        string_ops: dict[str, Callable[[str, str], bool]] = {
            "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
            "%": _match, "!%": lambda a, b: not _match(a, b),
        }  # fmt: skip
        return op in string_ops and string_ops[op](value, want)
    if isinstance(value, bool):
        if value:
            return {"=": want == "true", "!=": want != "true", ">": want == "false", ">=": True}.get(op, False)
        return {"=": want == "false", "!=": want != "false", "<": want == "true", "<=": True}.get(op, False)
    if isinstance(value, int | float):
        number, target = float(value), _go_float(want)
        number_ops: dict[str, Callable[[float, float], bool]] = {
            "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
        }  # fmt: skip
        return op in number_ops and number_ops[op](number, target)
    return False


# --- evaluation ---------------------------------------------------------------------------------------


@dataclass
class _Context:
    value: Any = MISSING
    pipe: str | None = None


def _object(ctx: _Context, obj: dict[str, Any], path: str) -> bool:
    rp = _object_path(path)
    if not rp.more and rp.piped:
        ctx.pipe = rp.pipe
    for key, value in obj.items():
        if not (_match(key, rp.part) if rp.wild else key == rp.part):
            continue
        if not rp.more:
            ctx.value = value
            return True
        if isinstance(value, dict) and _object(ctx, value, rp.path):
            return True
        if isinstance(value, list) and _array(ctx, value, rp.path):
            return True
    return False


def _array(ctx: _Context, arr: list[Any], path: str) -> bool:
    rp = _array_path(path)
    if not rp.more and rp.piped:
        ctx.pipe = rp.pipe
    if rp.query.on:
        matches: list[Any] = []
        for element in arr:
            if _is_json(element):
                found = get(element, rp.query.path)
            elif rp.query.path:
                continue
            else:
                found = element
            if not _query_matches(rp.query, found):
                continue
            if rp.more:
                split = split_possible_pipe(rp.path)
                if split is not None:
                    rp.path, ctx.pipe = split
                result = get(element, rp.path)
            else:
                result = element
            if not rp.query.all:
                ctx.value = result
                return True
            if exists(result):
                matches.append(result)
        if not exists(ctx.value) and rp.query.all:
            ctx.value = matches
        return False
    if rp.arrch:
        if rp.part != "#":
            return False
        if rp.alogok:
            key = rp.alogkey
            split = split_possible_pipe(key)
            if split is not None:
                key, ctx.pipe = split
            ctx.value = [v for v in (get(element, key) for element in arr) if exists(v)]
            return True
        ctx.value = len(arr)
        return True
    index = _parse_uint(rp.part)
    if index is None or index >= len(arr):
        return False
    element = arr[index]
    if not rp.more:
        ctx.value = element
        return True
    if isinstance(element, dict):
        return _object(ctx, element, rp.path)
    if isinstance(element, list):
        return _array(ctx, element, rp.path)
    return False


def _modifier(value: Any, path: str) -> tuple[str, Any] | None:
    """Run the modifier `path` starts with: (the rest of the path, the result), or None if it is none."""
    name, rest, has_args = path[1:], "", False
    for i in range(1, len(path)):
        if path[i] == ":":
            name, rest = path[1:i], path[i + 1 :]
            has_args = bool(rest)
            break
        if path[i] in "|.":
            name, rest = path[1:i], path[i:]
            break
    fn = MODIFIERS.get(name)
    if fn is None:
        return None
    arg = ""
    if has_args:
        parsed = False
        if rest[0] in '{["':
            candidate = squash(rest)
            if exists(_loads(candidate)):
                arg, rest, parsed = candidate, rest[len(candidate) :], True
        if not parsed:
            i = 0
            while i < len(rest) and rest[i] != "|":
                if rest[i] in '{["(':
                    i += len(squash(rest[i:])) - 1
                i += 1
            arg, rest = rest[:i], rest[i:]
    return rest, fn(value, arg)


def _literal(path: str) -> tuple[str, Any] | None:
    name = path[1:]
    if name and name[0] in '{["+-0123456789':
        if name[0] in '{["':
            raw = squash(name)
        else:
            end = len(name)
            for i, ch in enumerate(name):
                if ch == "|":
                    end = i
                    break
            raw = name[:end]
        lowered = raw.lower()
        value: Any = float(lowered) if lowered in ("+inf", "-inf") else _loads(raw)
        return name[len(raw) :], value
    rest = ""
    for i in range(1, len(path)):
        if path[i] in "|.":
            name, rest = path[1:i], path[i:]
            break
    lowered = name.lower()
    table: dict[str, Any] = {"true": True, "false": False, "null": None, "nan": float("nan"), "inf": float("inf")}
    if lowered in table:
        return rest, table[lowered]
    return None


def _subselectors(path: str) -> tuple[list[tuple[str, str]], str] | None:
    """The `(name, path)` entries of a `[...]` or `{...}` multipath and the path after it."""
    sels: list[tuple[str, str]] = []
    modifier, depth, colon, start, i = 0, 1, 0, 1, 1

    def push(end: int) -> None:
        nonlocal colon, modifier, start
        if colon == 0:
            sels.append(("", path[start:end]))
        else:
            sels.append((path[start:colon], path[colon + 1 : end]))
        colon, modifier, start = 0, 0, end + 1

    while i < len(path):
        ch = path[i]
        if ch == "\\":
            i += 1
        elif ch == "@":
            if modifier == 0 and i > 0 and path[i - 1] in ".|":
                modifier = i
        elif ch == ":":
            if modifier == 0 and colon == 0 and depth == 1:
                colon = i
        elif ch == ",":
            if depth == 1:
                push(i)
        elif ch == '"':
            i += 1
            while i < len(path):
                if path[i] == "\\":
                    i += 1
                elif path[i] == '"':
                    break
                i += 1
        elif ch in "[({":
            depth += 1
        elif ch in "])}":
            depth -= 1
            if depth == 0:
                push(i)
                return sels, path[i + 1 :]
        i += 1
    return None


def _name_of_last(path: str) -> str:
    for i in range(len(path) - 1, -1, -1):
        if path[i] in "|." and not (i > 0 and path[i - 1] == "\\"):
            return path[i + 1 :]
    return path


def _is_simple_name(name: str) -> bool:
    return all(ch >= " " and ch not in "[]{}()#|!" for ch in name)


def _multipath(value: Any, path: str) -> tuple[bool, Any]:
    parsed = _subselectors(path)
    if parsed is None:
        return False, MISSING
    sels, rest = parsed
    if rest and rest[0] not in "|.":
        return False, MISSING
    if path[0] == "[":
        built: Any = [v for v in (get(value, sub) for _, sub in sels) if exists(v)]
    else:
        built = {}
        for name, sub in sels:
            found = get(value, sub)
            if not exists(found):
                continue
            if name:
                decoded = _loads(name) if name[0] == '"' else MISSING
                key = decoded if isinstance(decoded, str) else name
            else:
                last = _name_of_last(sub)
                key = last if _is_simple_name(last) else "_"
            built.setdefault(key, found)
    return True, get(built, rest[1:]) if rest else built


def get(value: Any, path: str) -> Any:
    """The value at GJSON `path` in `value`, or MISSING."""
    if len(path) > 1:
        if path[0] in "@!":
            done = _modifier(value, path) if path[0] == "@" else _literal(path)
            if done is not None:
                rest, result = done
                if rest and rest[0] in "|.":
                    return get(result, rest[1:])
                return result
        if path[0] in "[{":
            ok, result = _multipath(value, path)
            if ok:
                return result
    ctx = _Context()
    if path.startswith("..") and isinstance(value, JsonLines):
        _array(ctx, list(value), path[2:])
    elif isinstance(value, dict):
        _object(ctx, value, path)
    elif isinstance(value, list):
        _array(ctx, value, path)
    if ctx.pipe is not None:
        return get(ctx.value, ctx.pipe)
    return ctx.value


class JsonLines(list[Any]):
    """A JSON Lines document: the values of its lines, which a `..` path reads as one array."""


def parse_json_lines(text: str) -> JsonLines:
    decoder = json.JSONDecoder()
    out = JsonLines()
    i = 0
    while True:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        if i >= len(text):
            return out
        item, i = decoder.raw_decode(text, i)
        out.append(item)


# --- modifiers ----------------------------------------------------------------------------------------


def _arg_flag(arg: str, name: str) -> bool:
    options = _loads(arg) if arg else MISSING
    if not isinstance(options, dict):
        return False
    flag = options.get(name)
    return _trueish(flag) if flag is not None else False


def _reverse(value: Any, _arg: str) -> Any:
    if isinstance(value, list):
        return value[::-1]
    if isinstance(value, dict):
        return dict(reversed(list(value.items())))
    return value


def _flatten(value: Any, arg: str) -> Any:
    if not isinstance(value, list):
        return value
    deep = _arg_flag(arg, "deep")
    out: list[Any] = []
    for item in value:
        if isinstance(item, list):
            out.extend(_flatten(item, arg) if deep else item)
        else:
            out.append(item)
    return out


def _join(value: Any, arg: str) -> Any:
    if not isinstance(value, list):
        return value
    preserve = _arg_flag(arg, "preserve")
    out: dict[str, Any] = {}
    for item in value:
        if isinstance(item, dict):
            for key, member in item.items():
                if preserve:
                    out.setdefault(key, member)  # duplicates kept: a lookup finds the first
                else:
                    out[key] = member
    return out


def _keys(value: Any, _arg: str) -> Any:
    if not exists(value):
        return []
    if isinstance(value, dict):
        return list(value)
    if isinstance(value, list):
        return [None] * len(value)
    return [None]


def _values(value: Any, _arg: str) -> Any:
    if not exists(value):
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return [value]


def _tostr(value: Any, _arg: str) -> Any:
    return "" if not exists(value) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _fromstr(value: Any, _arg: str) -> Any:
    if isinstance(value, str):
        return _loads(value)
    return value


def _group(value: Any, _arg: str) -> Any:
    if not isinstance(value, dict):
        return MISSING
    rows: list[dict[str, Any]] = []
    for key, column in value.items():
        if isinstance(column, list):
            for index, item in enumerate(column):
                if index == len(rows):
                    rows.append({})
                rows[index].setdefault(key, item)
    return rows


def _dig(value: Any, arg: str) -> Any:
    found: list[Any] = []

    def walk(node: Any) -> None:
        hit = get(node, arg)
        if exists(hit):
            found.append(hit)
        if isinstance(node, dict):
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    if exists(value):
        walk(value)
    return found


def _same(value: Any, _arg: str) -> Any:
    return value


MODIFIERS: Final[dict[str, Callable[[Any, str], Any]]] = {
    "pretty": _same,
    "ugly": _same,
    "reverse": _reverse,
    "this": _same,
    "flatten": _flatten,
    "join": _join,
    "valid": _same,
    "keys": _keys,
    "values": _values,
    "tostr": _tostr,
    "fromstr": _fromstr,
    "group": _group,
    "dig": _dig,
}


def check_path(path: str) -> None:
    """GJSON reads any text as a path (what it cannot resolve simply does not exist); only an empty one is refused."""
    if not path:
        raise ValueError("the path is empty")
