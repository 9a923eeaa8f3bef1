"""CLI commands for Kubernetes (`ebb operator`), registered on the main app by ebb.cli."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the Kubernetes commands to `app`."""
