"""Field paths as errors show them: `spec.triggers[0].metadata.listName`."""

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
