"""Skip reasons that the closing line of the suite (tests/conftest.py) counts by group."""

from __future__ import annotations

import re

# A skip reason of the form "needs GROUP (enable: COMMAND)" is counted under GROUP.
NEEDS = re.compile(r"needs (?P<group>[^(]+?) \(enable: (?P<command>[^)]+)\)")


def needs(group: str, command: str) -> str:
    """The skip reason for a test that needs GROUP, which COMMAND enables."""
    return f"needs {group} (enable: {command})"
