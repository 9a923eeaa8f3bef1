"""Suite-wide hooks: one closing line naming the groups of tests that were skipped and how to enable them."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests._skips import NEEDS as _NEEDS


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Generator[None]:
    # Outermost wrapper: runs after the terminal reporter's own summary (-ra), just before the closing counts.
    yield
    groups: dict[str, tuple[str, int]] = {}
    for report in terminalreporter.stats.get("skipped", []):
        match = _NEEDS.search(_reason(report))
        if match:
            command, count = groups.get(match["group"], (match["command"], 0))
            groups[match["group"]] = (command, count + 1)
    if groups:
        parts = [f"{group} ({count} tests; enable: {command})" for group, (command, count) in sorted(groups.items())]
        terminalreporter.write_line("skipped groups: " + "; ".join(parts), yellow=True, bold=True)
