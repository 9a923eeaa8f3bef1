"""Field paths as errors show them: `spec.triggers[0].metadata.listName`, and back."""

from __future__ import annotations

import re
from collections.abc import Iterable

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_path(loc: Iterable[str | int]) -> str:
    """Join a location into a dotted path; list indexes in brackets, keys with dots or slashes quoted.

    ("metadata", "annotations", "a.io/x") -> metadata.annotations["a.io/x"]
    """
    out = ""
    for element in loc:
        if isinstance(element, int):
            out += f"[{element}]"
        elif _PLAIN_KEY.match(element):
            out += f".{element}" if out else element
        else:
            out += '["' + element.replace("\\", "\\\\").replace('"', '\\"') + '"]'
    return out


_ELEMENT = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]')


def parse_path(path: str) -> tuple[str | int, ...]:
    """The inverse of `format_path`, as far as the path is well formed (the rest is dropped)."""
    loc: list[str | int] = []
    position = 0
    while position < len(path):
        match = _ELEMENT.match(path, position)
        if match is None:
            break
        key, index, quoted = match.groups()
        if index is not None:
            loc.append(int(index))
        elif quoted is not None:
            loc.append(re.sub(r"\\(.)", r"\1", quoted))
        else:
            loc.append(key)
        position = match.end()
    return tuple(loc)
