"""`ebb simulate`, registered on the main app by ebb.cli."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ebb.errors import EbbError
from ebb.simulate import POLICIES, Options, Report, policies_arg, simulate
from ebb.simulate.plot import write_plot

COLUMNS = (
    ("replica_seconds", "replica-s"),
    ("peak_replicas", "peak"),
    ("scaling_actions", "actions"),
    ("items", "items"),
    ("cold_starts", "cold starts"),
    ("items_waiting_at_zero", "waited at 0"),
    ("wait_p50_s", "wait p50"),
    ("wait_p95_s", "wait p95"),
    ("wait_p99_s", "wait p99"),
    ("wait_max_s", "wait max"),
    ("backlog_over_target_fraction", "over target"),
)


class Format(StrEnum):
    counts = "counts"
    arrivals = "arrivals"
    history = "history"


class Gaps(StrEnum):
    error = "error"
    zero = "zero"
    previous = "previous"


class Output(StrEnum):
    table = "table"
    json = "json"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def render_table(report: Report, console: Console) -> None:
    trace = report.trace
    days = float(trace["duration_s"]) / 86400
    console.print(
        f"[bold]{escape(str(trace['file']))}[/]: {trace['items']:,} items over {days:.1f} "
        f"days (scale {report.settings['scale']:g}, service rate {report.settings['service_rate']:g}/s per "
        f"replica, start-up {report.settings['startup_delay']:g} s, seed {report.settings['seed']})"
    )
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("policy")
    for _, title in COLUMNS:
        table.add_column(title, justify="right")
    for r in report.results:
        row = r.to_json()
        table.add_row(r.name, *(_cell(row[key]) for key, _ in COLUMNS))
    console.print(table)
    console.print("waits in seconds; over target: share of time the backlog exceeded target x ready replicas")


def register(app: typer.Typer) -> None:
    """Add `ebb simulate` to `app`."""

    @app.command("simulate")
    def simulate_cmd(
        manifest: Annotated[Path, typer.Argument(help="The manifest with the ScaledObject to replay.")],
        trace: Annotated[Path, typer.Option("--trace", help="The workload trace (CSV, or history.db).")],
        fmt: Annotated[
            Format,
            typer.Option(
                "--format",
                help="counts: timestamp,value per interval; arrivals: one row per item; "
                "history: an `ebb run` history.db.",
            ),
        ] = Format.counts,
        scale: Annotated[float, typer.Option(help="Multiply the arrival rate.")] = 1.0,
        service_rate: Annotated[float, typer.Option(help="Items per second per ready replica.")] = 1.0,
        startup_delay: Annotated[float, typer.Option(help="Seconds from a replica's start until it is ready.")] = 30.0,
        seed: Annotated[int, typer.Option(help="Seed of the arrival times drawn within each interval.")] = 0,
        set_: Annotated[
            list[str] | None,
            typer.Option("--set", help="Override a manifest field, e.g. spec.cooldownPeriod=60 (repeatable)."),
        ] = None,
        policies: Annotated[
            str | None, typer.Option(help=f"Comma-separated, from: {', '.join(POLICIES)} (default: all).")
        ] = None,
        gaps: Annotated[
            Gaps,
            typer.Option(help="Missing intervals in a counts trace: error, or fill with zero or the previous value."),
        ] = Gaps.error,
        object_name: Annotated[
            str | None, typer.Option("--object", help="The ScaledObject's name, when the manifest has several.")
        ] = None,
        output: Annotated[Output, typer.Option("--output", "-o", help="table or json.")] = Output.table,
        plot: Annotated[
            Path | None, typer.Option(help="Write load, replicas per policy and forecast to FILE (.html or .png).")
        ] = None,
    ) -> None:
        """Replay a workload trace through the real decision core and compare scaling policies.

        Arrivals feed a simulated queue drained by simulated replicas (--service-rate items/s each, ready
        --startup-delay s after they start), on a virtual clock: weeks of load in seconds, the same result
        for the same --seed.
        """
        console = Console(highlight=False)
        if not console.is_terminal:  # a pipe or a file: the whole table, not one cut to 80 columns
            console = Console(highlight=False, width=200)
        err = Console(stderr=True, highlight=False)
        opts = Options(
            trace=trace,
            format=fmt.value,
            scale=scale,
            service_rate=service_rate,
            startup_delay=startup_delay,
            seed=seed,
            overrides=tuple(set_ or ()),
            policies=policies_arg(policies),
            gaps=gaps.value,
            object_name=object_name,
        )
        try:
            if plot is not None and plot.suffix.lower() not in (".html", ".htm", ".png"):
                raise EbbError(f"--plot {plot}: expected a .html or .png file name")
            report = simulate(manifest, opts)
            if plot is not None:
                write_plot(report, plot)
        except EbbError as exc:
            err.print(f"[red]error[/] {escape(str(exc))}")
            raise typer.Exit(2) from None
        if output == Output.json:
            print(json.dumps(report.to_json(), indent=2))
        else:
            render_table(report, console)
        if plot is not None:
            err.print(f"plot written to {escape(str(plot))}")
