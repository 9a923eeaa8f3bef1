"""Human-readable lines for `ebb run`: scaling events, problems, and (optionally) every poll."""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape

from ebb.runtime.observer import ObjectRef, Observer, PollRecord
from ebb.scaling.types import ScalingEvent


def _clock(now: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(now))


class ConsoleObserver(Observer):
    """Prints events and problems; with `verbose`, one line per poll too. Repeated problems print once."""

    def __init__(self, console: Console, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self._last_problem: dict[ObjectRef, str] = {}
        self._hinted: set[str] = set()

    def event(self, ref: ObjectRef, event: ScalingEvent, now: float) -> None:
        style = "yellow" if event.type == "Warning" else "green"
        self.console.print(
            f"[dim]{_clock(now)}[/] [bold]{escape(str(ref))}[/] [{style}]{event.reason}[/] {escape(event.message)}",
            highlight=False,
        )

    def problem(self, ref: ObjectRef, message: str, now: float) -> None:
        if self._last_problem.get(ref) == message:
            return
        self._last_problem[ref] = message
        # A message that names its object already ("app.yaml:8: ScaledObject default/x: field: ...") is printed
        # as it is, so the object is named once.
        who = "" if str(ref) in message else f"[bold]{escape(str(ref))}[/] "
        self.console.print(f"[dim]{_clock(now)}[/] {who}[red]error[/] {escape(message)}", highlight=False)

    def hint(self, ref: ObjectRef, key: str, message: str, now: float) -> None:
        if key in self._hinted:
            return
        self._hinted.add(key)
        self.console.print(f"[dim]{_clock(now)}[/] [yellow]hint[/] {escape(message)}", highlight=False)

    def poll(self, record: PollRecord) -> None:
        if record.ref in self._last_problem and record.decision is not None:
            self._last_problem.pop(record.ref, None)
        if not self.verbose:
            return
        metrics = ", ".join(
            f"{t.metric_name}={t.value:g}/{t.target:g}" if t.value is not None else f"{t.metric_name}=error"
            for t in record.triggers
        )
        self.console.print(
            f"[dim]{_clock(record.time)} {escape(str(record.ref))} replicas {record.current_replicas}"
            f"->{record.desired_replicas} (running {record.ready_replicas}) {escape(metrics)}[/]",
            highlight=False,
        )
