"""The `ebb` command: run, check, metrics, events, status, dashboard, demo, simulate, version."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, cast

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import ebb
from ebb.errors import MASK, EbbError, SpecError, redact
from ebb.observe.api import parse_duration
from ebb.observe.cost import Pricing
from ebb.observe.history import DEFAULT_TIERS_TEXT, TierError, parse_tiers, with_retention
from ebb.observe.services import Services as _Services
from ebb.observe.services import counted_resources
from ebb.runtime.build import object_ref
from ebb.runtime.check import scalers_for
from ebb.runtime.local import LocalRuntime, RuntimeExtension, RuntimeOptions
from ebb.runtime.lock import StateLock, StateLocked
from ebb.runtime.output import BoundedWriter
from ebb.runtime.scaled_object import close_scalers, read_trigger
from ebb.scalers.base import DEFAULT_TIMEOUT, Scaler
from ebb.spec.convert import hpa_name
from ebb.spec.loader import LoadResult, expand_paths, load_files
from ebb.spec.models import (
    AnyCloudEventSource,
    CloudEventSource,
    ClusterCloudEventSource,
    HTTPScaledObject,
    InterceptorRoute,
    KubeObject,
    ProcessGroup,
    ProcessGroupSpec,
    ScaledJob,
    ScaledObject,
    Secret,
    interceptor_route_of,
)
from ebb.targets._child import raise_open_file_limit, use_pidfd_child_watcher
from ebb.web.server import DEFAULT_HOST, DEFAULT_PORT

if TYPE_CHECKING:
    from ebb.observe.history import HistoryStore

app = typer.Typer(
    name="ebb",
    help="Event-driven autoscaling: scale workers from zero to many and back, on Kubernetes or local processes.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,  # locals may hold credentials
)
# soft_wrap: a line is never folded at the terminal's width (or at 80 columns in a pipe), so grep finds it.
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

Files = Annotated[list[Path], typer.Argument(help="Manifest files or directories (multi-document YAML).")]


class Output(StrEnum):
    """What `-o` accepts."""

    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="table (default), json or yaml.", case_sensitive=False)
]
AllowedHosts = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-host",
        help="Another name the web server answers to in the Host header (repeatable; the bound address, "
        "localhost, 127.0.0.1 and [::1] always are).",
    ),
]


def _error(error: SpecError | str) -> None:
    """An error, in the documented form: FILE:LINE: Kind namespace/name: field.path: message."""
    err_console.print(f"[red]{escape(str(error))}[/]")


def _load(files: list[Path]) -> LoadResult:
    # A file meant for kubectl holds the Deployment beside its ScaledObject: other tools' kinds are noted, not
    # errors; a ScaledObject scaling a ProcessGroup that no file defines is.
    loaded = load_files(files, ignore_unknown=True, require_targets=True)
    for error in loaded.errors:
        _error(error)
    for warning in loaded.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(str(warning))}")
    for skipped in loaded.skipped:
        err_console.print(f"[dim]note: skipped {escape(skipped)}: not a kind ebb reads[/]")
    return loaded


def _cell(value: object) -> str:
    return "-" if value is None else " ".join(str(value).split())


def _fit(widths: list[int], floors: list[int], room: int) -> list[int]:
    """Column widths that fit in `room` characters: the widest columns give way first, none below its floor."""
    widths = list(widths)
    while sum(widths) > room:
        shrinkable = [i for i in range(len(widths)) if widths[i] > floors[i]]
        if not shrinkable:
            break
        widths[max(shrinkable, key=lambda i: widths[i])] -= 1
    return widths


def _print_rows(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A table that never folds a word: on a terminal, cells too long for the width end in an ellipsis;
    elsewhere (a pipe, a file) plain aligned columns with nothing cut, so `ebb status | grep mailer` works."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)]
    gap = 2
    if console.is_terminal:
        room = console.width - gap * (len(headers) - 1)
        # Headers stay whole while they can; on a very narrow terminal they give way too.
        floors = [min(width, len(header)) for header, width in zip(headers, widths, strict=True)]
        if sum(floors) > room:
            floors = [min(width, 3) for width in widths]
        widths = _fit(widths, floors, room)

    def fit(cell: str, width: int) -> str:
        return cell if len(cell) <= width else cell[: max(width - 1, 0)] + "…"

    for index, row in enumerate([list(headers), *cells]):
        line = (" " * gap).join(fit(cell, width).ljust(width) for cell, width in zip(row, widths, strict=True))
        if console.is_terminal:
            console.print(escape(line.rstrip()), style="bold" if index == 0 else None, overflow="ignore", crop=False)
        else:
            typer.echo(line.rstrip())


def _print_fields(rows: Sequence[tuple[str, str]]) -> None:
    """Label and value lines under an object in `ebb check`; a long value runs on, never folds."""
    width = max((len(label) for label, _ in rows), default=0)
    for label, value in rows:
        console.print(f"  {label:<{width}}  {escape(value)}")


def _print_data(data: object, output: Output) -> None:
    """`data` as JSON or YAML on stdout."""
    if output is Output.json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        typer.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)


def _scalers_for(
    loaded: LoadResult, obj: ScaledObject | ScaledJob, timeout: float = DEFAULT_TIMEOUT
) -> tuple[list[Scaler] | None, str | None]:
    return scalers_for(loaded, obj, timeout)


#: Prices for the cost figures (the object's `ebb.dev/cost-per-replica-hour` annotation wins over them).
CostOption = Annotated[
    list[str] | None,
    typer.Option(
        "--cost-per-replica-hour",
        metavar="[NAMESPACE=]PRICE",
        help="Price of one replica-hour: PRICE for every object, NAMESPACE=PRICE for one namespace (repeatable). "
        "An object's ebb.dev/cost-per-replica-hour annotation wins.",
    ),
]


def _pricing(specs: list[str] | None) -> Pricing:
    try:
        return Pricing.parse(specs or [])
    except ValueError as exc:
        err_console.print(f"[red]error[/] {escape(str(exc))}")
        raise typer.Exit(2) from None


def _scaled(loaded: LoadResult) -> list[ScaledObject | ScaledJob]:
    return [*loaded.resources.scaled_objects(), *loaded.resources.scaled_jobs()]


def _fmt_seconds(value: float | int | None) -> str:
    return "-" if value is None else f"{value:g}s"


_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:)[^/@\s]+@")
_PASSWORD_FIELD = re.compile(r"(?P<head>\b(?:password|pwd|pass)\s*=\s*)(?:'[^']*'|\"[^\"]*\"|[^\s;]+)", re.I)


def _masked(value: Any, secrets: frozenset[str]) -> Any:
    """`value` with every secret value, URL password and `password=` in a connection string masked."""
    if isinstance(value, dict):
        return {key: _masked(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item, secrets) for item in value]
    if isinstance(value, str):
        text = redact(value, secrets)
        text = _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", text)
        return _PASSWORD_FIELD.sub(lambda m: f"{m['head']}{MASK}", text)
    return value


def _manifest(obj: KubeObject, secrets: frozenset[str], show_secrets: bool) -> dict[str, Any]:
    manifest = obj.to_manifest()
    if show_secrets:
        return manifest
    if isinstance(obj, Secret):
        for key in ("data", "stringData"):
            if isinstance(manifest.get(key), dict):
                manifest[key] = dict.fromkeys(manifest[key], MASK)
    return dict(_masked(manifest, secrets))


@app.command()
def check(
    files: Files,
    output: Annotated[
        Output,
        typer.Option(
            "--output",
            "-o",
            help="table (default), yaml or json: the manifests with defaults filled.",
            case_sensitive=False,
        ),
    ] = Output.table,
    show_secrets: Annotated[
        bool, typer.Option("--show-secrets", help="With -o yaml/json: print Secret values and passwords as written.")
    ] = False,
    each: Annotated[
        bool,
        typer.Option(
            "--each",
            help="Check each file on its own (e.g. a folder of examples holding two forms of one route), "
            "not as one set.",
        ),
    ] = False,
) -> None:
    """Validate manifests and show what would be scaled, on which triggers, with defaults filled in.

    Directories are read with their subdirectories. Secrets are masked. Exits 1 if any manifest has an error,
    whatever the output format.
    """
    if each:
        failed = False
        for path in expand_paths(files):
            console.print(f"[bold]{escape(str(path))}[/]")
            try:
                check(files=[path], output=output, show_secrets=show_secrets, each=False)
            except typer.Exit as done:
                failed = failed or bool(done.exit_code)
        raise typer.Exit(1 if failed else 0)
    loaded = _load(files)
    failed = bool(loaded.errors)
    checked: list[tuple[ScaledObject | ScaledJob, list[Scaler] | None, str | None, EbbError | None]] = []
    for obj in _scaled(loaded):
        try:
            scalers, note = _scalers_for(loaded, obj)
            checked.append((obj, scalers, note, None))
        except EbbError as exc:
            failed = True
            checked.append((obj, None, None, loaded.locate(exc, obj) if isinstance(exc, SpecError) else exc))
    if output is not Output.table:
        secrets = frozenset(value for secret in loaded.of(Secret) for value in secret.decoded().values()) | frozenset(
            value for _, scalers, _, _ in checked for scaler in scalers or () for value in scaler.secrets
        )
        for _, _, _, error in checked:
            if error is not None:
                _error(str(error))
        docs = [_manifest(o, secrets, show_secrets) for o in loaded.objects]
        if output is Output.yaml:
            typer.echo(yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True), nl=False)
        else:
            _print_data(docs, output)
        raise typer.Exit(1 if failed else 0)
    for obj, scalers, note, error in checked:
        if error is not None:
            console.print(f"[red]✗[/] {escape(str(error))}")
            continue
        console.print(f"[green]✓[/] [bold]{escape(str(object_ref(obj)))}[/]")
        rows: list[tuple[str, str]] = []
        spec = obj.spec
        if isinstance(obj, ScaledObject):
            t = obj.spec.scale_target_ref
            rows.append(("target", f"{t.kind} {t.name} ({t.api_version})"))
            rows.append(
                (
                    "replicas",
                    f"min {obj.spec.min_replica_count}, max {obj.spec.max_replica_count}"
                    + (f", idle {obj.spec.idle_replica_count}" if obj.spec.idle_replica_count is not None else ""),
                )
            )
            rows.append(
                (
                    "timing",
                    f"polling {_fmt_seconds(spec.polling_interval)}, "
                    f"cooldown {_fmt_seconds(obj.spec.cooldown_period)}, "
                    f"initial cooldown {_fmt_seconds(obj.spec.initial_cooldown_period)}",
                )
            )
            if obj.spec.fallback is not None:
                fb = obj.spec.fallback
                rows.append(
                    ("fallback", f"{fb.replicas} replicas after {fb.failure_threshold} failures ({fb.behavior})")
                )
            if obj.spec.scaling_modifiers is not None:
                sm = obj.spec.scaling_modifiers
                rows.append(("formula", f"{sm.formula} (target {sm.target}, {sm.metric_type})"))
            rows.append(("hpa", hpa_name(obj)))
        else:
            c = obj.spec.job_container
            rows.append(("job", " ".join([*(c.command or []), *(c.args or [])]) or (c.image or "?")))
            rows.append(
                (
                    "replicas",
                    f"min {obj.spec.min_replica_count}, max {obj.spec.max_replica_count}, "
                    f"strategy {obj.spec.scaling_strategy.strategy}",
                )
            )
            rows.append(("timing", f"polling {_fmt_seconds(spec.polling_interval)}"))
        _print_fields(rows)
        for index, trigger in enumerate(obj.spec.triggers):
            label = f"  triggers[{index}] [cyan]{escape(trigger.type)}[/]" + (
                f" {escape(repr(trigger.name))}" if trigger.name else ""
            )
            if scalers is None:
                console.print(label)
                continue
            scaler = scalers[index]
            params = ", ".join(f"{k}={v}" for k, v in scaler.describe().items())
            try:
                spec_text = (
                    f" metric {scaler.metric_spec().name}, {scaler.metric_spec().metric_type} "
                    f"target {scaler.metric_spec().target:g}"
                )
            except EbbError:
                spec_text = " (metric spec comes from the external scaler)"
                route_name = interceptor_route_of(trigger)
                if route_name is not None:
                    spec_text = f" reads InterceptorRoute {obj.metadata.namespace}/{route_name} (ebb run: in process)"
            activation = scaler.activation_threshold()
            act_text = f", activation {activation:g}" if activation is not None else ""
            console.print(f"{label}{escape(spec_text)}{act_text}\n      [dim]{escape(params)}[/]")
        if note:
            console.print(f"  [dim]{escape(note)}[/]")
    for httpso in loaded.resources.all(HTTPScaledObject):
        from ebb.http.describe import describe_http

        console.print(f"[green]✓[/] [bold]{escape(httpso.ref)}[/]")
        table = Table(show_header=False, box=None, padding=(0, 2))
        for label, value in describe_http(httpso):
            table.add_row(label, escape(value))
        console.print(table)
    for route in loaded.resources.all(InterceptorRoute):
        from ebb.http.describe import describe_route
        from ebb.http.interceptor_route import scaled_objects_for

        console.print(f"[green]✓[/] [bold]{escape(route.ref)}[/]")
        table = Table(show_header=False, box=None, padding=(0, 2))
        for label, value in describe_route(route, scaled_objects_for(loaded.resources, route)):
            table.add_row(label, escape(value))
        console.print(table)
    for pg in loaded.resources.process_groups():
        console.print(
            f"[green]✓[/] [bold]ProcessGroup {escape(pg.metadata.namespace)}/{escape(pg.metadata.name)}[/]: "
            f"{escape(' '.join(pg.spec.argv))} (grace {pg.spec.termination_grace_period_seconds}s)"
        )
        for line in _describe_group_probes(pg.spec):
            console.print(f"  {escape(line)}")
    _check_cloudevent_sources(loaded)
    raise typer.Exit(1 if failed else 0)


def _describe_group_probes(spec: ProcessGroupSpec) -> list[str]:
    """`ebb check`'s lines on a ProcessGroup's ports, readinessProbe and busyProbe (none when it has none)."""
    lines = []
    if spec.ports:
        ports = ", ".join(f"{p.name or 'PORT'}={p.container_port}" for p in spec.ports)
        lines.append(f"ports     {ports} (replica i: port + i)")
    ready = spec.readiness_probe
    if ready is not None:
        how = f"httpGet {ready.http_get.path}" if ready.http_get is not None else "tcpSocket"
        lines.append(
            f"ready     {how} on port {ready.port}, every {ready.period_seconds:g}s, "
            f"timeout {ready.timeout_seconds:g}s, thresholds {ready.success_threshold}/{ready.failure_threshold}"
        )
    busy = spec.busy_probe
    if busy is not None:
        if busy.http_get is not None:
            how = f"httpGet {busy.http_get.path} on port {busy.http_get.port}"
        elif busy.file is not None:
            how = f"file {busy.file}"
        else:
            how = "exitWhenIdle (finish the current item on SIGTERM)"
        lines.append(f"busy      {how}; scale-in drains busy workers up to {spec.effective_max_drain_seconds:g}s")
    return lines


def _loaded_sources(loaded: LoadResult) -> list[AnyCloudEventSource]:
    sources: list[AnyCloudEventSource] = [*loaded.of(CloudEventSource), *loaded.of(ClusterCloudEventSource)]
    return sources


def _check_cloudevent_sources(loaded: LoadResult) -> None:
    """Each CloudEventSource: where it sends and what. What KEDA accepts but ebb cannot send to (Azure Event
    Grid), or a TriggerAuthentication that is not in the files, is a warning: the manifest is valid."""
    from yarl import URL

    from ebb.observe.cloudevents import check_authentication, http_uri

    for source in _loaded_sources(loaded):
        problems: list[str] = []
        uri = None
        try:
            uri = http_uri(source)
        except SpecError as exc:
            problems.append(f"{exc.field}: {exc.message}")
        try:
            check_authentication(source, loaded.resources)
        except SpecError as exc:
            problems.append(f"{exc.field}: {exc.message} (ebb run will not start it)")
        mark = "[yellow]![/]" if problems else "[green]✓[/]"
        console.print(f"{mark} [bold]{escape(source.ref)}[/]")
        rows: list[tuple[str, str]] = []
        subscription = source.spec.event_subscription
        if subscription.included_event_types:
            events = "only " + ", ".join(subscription.included_event_types)
        elif subscription.excluded_event_types:
            events = "all but " + ", ".join(subscription.excluded_event_types)
        else:
            events = "all"
        if uri is not None:
            shown = URL(uri)
            if shown.password:  # credentials in the URL are masked, as every output masks secrets
                shown = shown.with_password("***")
            rows.append(("destination", f"http {shown}"))
        rows.append(("cluster", source.spec.cluster_name or "(the runner's: ebb run --cluster-name)"))
        rows.append(("events", events))
        if source.spec.authentication_ref is not None:
            ref = source.spec.authentication_ref
            rows.append(("auth", f"{ref.kind} {ref.name} (resolved, not sent: KEDA uses it for Azure Event Grid only)"))
        _print_fields(rows)
        for problem in problems:
            console.print(f"  [yellow]{escape(problem)}[/]")


@app.command()
def metrics(
    files: Files,
    timeout: Annotated[float, typer.Option(help="Seconds each trigger may take.")] = DEFAULT_TIMEOUT,
    output: OutputOption = Output.table,
) -> None:
    """Poll every trigger once and print its value, target, activation threshold and whether it is active.

    The first thing to run when scaling does not happen. Exits 1 if a manifest or a trigger fails.
    """
    loaded = _load(files)

    async def poll_all() -> tuple[list[dict[str, Any]], list[str]]:
        rows: list[dict[str, Any]] = []
        errors: list[str] = []
        for obj in _scaled(loaded):
            ref = str(object_ref(obj))
            blank: dict[str, Any] = dict.fromkeys(
                ("trigger", "metric", "value", "target", "metric_type", "activation", "active")
            )
            try:
                scalers, note = _scalers_for(loaded, obj, timeout)
            except EbbError as exc:
                error = str(loaded.locate(exc, obj) if isinstance(exc, SpecError) else exc)
                rows.append({"object": ref, **blank, "error": error, "note": None})
                errors.append(error)
                continue
            if scalers is None:
                rows.append({"object": ref, **blank, "error": None, "note": note})
                continue
            try:
                results = await asyncio.gather(*(read_trigger(s) for s in scalers))
            finally:
                await close_scalers(scalers)
            for scaler, r in zip(scalers, results, strict=True):
                row: dict[str, Any] = {
                    "object": ref,
                    "trigger": f"[{scaler.ctx.trigger_index}] {scaler.ctx.trigger_type}",
                    "metric": r.metric_name,
                    "value": None if r.resource or r.error is not None else r.value,
                    "target": r.target,
                    "metric_type": r.metric_type,
                    "activation": scaler.activation_threshold(),
                    "active": None if r.resource or r.error is not None else r.active,
                    "error": r.error,
                    "note": "measured from running workers under `ebb run`" if r.resource else None,
                }
                if r.error is not None:
                    errors.append(f"{ref}: {row['trigger']}: {r.error}")
                rows.append(row)
        return rows, errors

    rows, errors = asyncio.run(poll_all())
    if output is not Output.table:
        _print_data(rows, output)
    else:

        def value(row: dict[str, Any]) -> str:
            if row["error"] is not None:
                return "error (below)"
            if row["note"] is not None:
                return str(row["note"])
            return "-" if row["value"] is None else f"{row['value']:g}"

        def active(row: dict[str, Any]) -> str:
            if row["error"] is not None:
                return "error"
            return "-" if row["active"] is None else "yes" if row["active"] else "no"

        _print_rows(
            ("OBJECT", "TRIGGER", "METRIC", "VALUE", "TARGET", "ACTIVATION", "ACTIVE"),
            [
                (
                    row["object"],
                    row["trigger"],
                    row["metric"],
                    value(row),
                    None if row["target"] is None else f"{row['target']:g} ({row['metric_type']})",
                    None if row["activation"] is None else f"{row['activation']:g}",
                    active(row),
                )
                for row in rows
            ],
        )
    for error in errors:
        _error(error)
    raise typer.Exit(1 if errors or loaded.errors else 0)


def _console_sink(name: str, line: str) -> None:
    console.print(f"[dim]\\[{escape(name)}][/] {escape(line)}", highlight=False, soft_wrap=True)


#: Beyond the longest grace period, how long a stop may take (loops, scalers, reaping) before ebb kills
#: whatever is left and exits.
STOP_MARGIN = 10.0


def _kill_and_exit(runtime: LocalRuntime, code: int, message: str) -> None:
    """SIGKILL every worker, terminating ones included, and exit at once (works from any thread)."""
    for _ in range(3):  # from a thread, the loop may change a target's worker table under us
        try:
            runtime.kill_all()
            break
        except RuntimeError:
            continue
    err_console.print(message)
    writer = err_console.file
    if isinstance(writer, BoundedWriter):
        writer.drain(0.5)
    os._exit(code)


class _StopWatchdog:
    """After the first signal: if ebb has not exited `limit` seconds later, kill the workers and exit.

    A thread, so that it fires even if the event loop is stuck.
    """

    def __init__(self, runtime: LocalRuntime) -> None:
        self.runtime = runtime
        self.done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, limit: float) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, args=(limit,), name="ebb-stop-watchdog", daemon=True)
            self._thread.start()

    def _watch(self, limit: float) -> None:
        if not self.done.wait(limit):
            _kill_and_exit(self.runtime, 1, f"[red]ebb did not stop within {limit:g}s: killed every worker[/]")


async def _run_until_signalled(
    runtime: LocalRuntime, services: _Services | None = None, watchdog: _StopWatchdog | None = None
) -> None:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    if services is not None:
        await services.start()
    runner = asyncio.create_task(runtime.run())
    signals = 0
    watchdog = watchdog or _StopWatchdog(runtime)

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            err_console.print("[yellow]stopping: workers get their grace period (Ctrl-C again to kill them now)[/]")
            runner.cancel()
            watchdog.start(runtime.max_grace() + STOP_MARGIN)
        else:
            _kill_and_exit(runtime, 130, "[red]killed every worker[/]")

    # SIGHUP (a closed terminal or SSH session) stops gracefully too, instead of killing ebb outright.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    finally:
        if services is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await services.stop()


def _cloudevent_sources(
    loaded: LoadResult, sink: str | None, included: list[str], excluded: list[str]
) -> list[AnyCloudEventSource]:
    """The CloudEventSources of the files whose references resolve, plus the one --cloudevents-sink stands for."""
    from ebb.observe.cloudevents import check_authentication, shortcut_source

    sources: list[AnyCloudEventSource] = []
    for source in _loaded_sources(loaded):
        try:
            check_authentication(source, loaded.resources)
        except SpecError as exc:
            err_console.print(f"[red]✗[/] {escape(str(exc))}")
            continue
        sources.append(source)
    if sink:
        shortcut, errors = shortcut_source(sink, included, excluded)
        for error in errors:
            err_console.print(f"[red]error[/] {escape(str(error))}")
        if shortcut is None:
            raise typer.Exit(2)
        sources.append(shortcut)
    return sources


@app.command()
def run(
    files: Files,
    state: Annotated[
        Path, typer.Option(help="Where to keep state across restarts (cooldowns, replica counts).")
    ] = Path(".ebb/state.json"),
    no_state: Annotated[bool, typer.Option("--no-state", help="Start fresh and keep no state.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print every poll, not only changes.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds each trigger may take per poll.")] = DEFAULT_TIMEOUT,
    metrics_port: Annotated[
        int,
        typer.Option(
            min=0,
            max=65535,
            help="Serve Prometheus metrics on /metrics (and the dashboard, with --dashboard); 0 = off.",
        ),
    ] = DEFAULT_PORT,
    metrics_host: Annotated[
        str, typer.Option(help="Address for --metrics-port (loopback by default; 0.0.0.0 to expose it).")
    ] = DEFAULT_HOST,
    allow_host: AllowedHosts = None,
    dashboard: Annotated[bool, typer.Option("--dashboard", help="Serve the dashboard on / of --metrics-port.")] = False,
    history: Annotated[
        bool,
        typer.Option(help="Record every poll in history.db and events in events.jsonl, next to --state."),
    ] = True,
    history_tiers: Annotated[
        str,
        typer.Option(
            help="History resolution and how long each is kept, finest first: RESOLUTION:KEEP,... (units s, m, h, "
            "d, w); older points roll up into the next tier."
        ),
    ] = DEFAULT_TIERS_TEXT,
    history_retention: Annotated[
        str | None,
        typer.Option(help="Keep no history longer than this (e.g. 12h, 7d); default: the last tier's keep."),
    ] = None,
    cloudevents_sink: Annotated[
        str | None,
        typer.Option(
            help="Shortcut for a CloudEventSource sending KEDA's CloudEvents to this URL (as "
            "destination.http.uri); CloudEventSources in the files work without it."
        ),
    ] = None,
    cloudevents_include: Annotated[
        list[str] | None, typer.Option(help="Only these CloudEvent types (repeatable): keda.scaledobject.failed.v1 ...")
    ] = None,
    cloudevents_exclude: Annotated[
        list[str] | None, typer.Option(help="All CloudEvent types but these (repeatable).")
    ] = None,
    cluster_name: Annotated[
        str, typer.Option(help="The cluster name in CloudEvents' source and subject (unless spec.clusterName).")
    ] = "ebb-local",
    http_host: Annotated[
        str,
        typer.Option(
            help="Address of the HTTP interceptor (started when an HTTPScaledObject or InterceptorRoute is loaded)."
        ),
    ] = "127.0.0.1",
    http_port: Annotated[int, typer.Option(min=0, max=65535, help="Port of the HTTP interceptor.")] = 8080,
    http_max_connections: Annotated[
        int,
        typer.Option(
            min=0,
            help="Connections the HTTP interceptor opens at once to one replica; more requests wait their turn. "
            "0: no limit.",
        ),
    ] = 1024,
    cost_per_replica_hour: CostOption = None,
) -> None:
    """Scale local process groups from the given manifests until Ctrl-C.

    Every ScaledObject whose scaleTargetRef names a ProcessGroup, and every ScaledJob (whose job container's
    command runs as one local job), is polled at its pollingInterval. A broken manifest or a failing trigger
    is reported and never stops the others. Ctrl-C stops every worker gracefully.
    """
    from ebb.observe.console import ConsoleObserver

    loaded = _load(files)
    if not any(
        isinstance(o, (ScaledObject, ScaledJob, ProcessGroup, HTTPScaledObject, InterceptorRoute))
        for o in loaded.objects
    ):
        err_console.print(
            "[red]nothing to run[/]: no valid ScaledObject, ScaledJob, HTTPScaledObject or ProcessGroup in the files"
        )
        raise typer.Exit(1)
    try:
        retention = None if history_retention is None else parse_duration(history_retention)
    except ValueError as exc:
        err_console.print(f"[red]error[/] --history-retention: {escape(str(exc))}")
        raise typer.Exit(2) from None
    try:
        tiers = parse_tiers(history_tiers)
        if retention is not None:
            tiers = with_retention(tiers, retention)
    except TierError as exc:
        flag = "--history-tiers" if retention is None else "--history-tiers/--history-retention"
        err_console.print(f"[red]error[/] {flag}: {escape(str(exc))}")
        raise typer.Exit(2) from None
    if (cloudevents_include or cloudevents_exclude) and not cloudevents_sink:
        err_console.print("[red]error[/] --cloudevents-include/--cloudevents-exclude need --cloudevents-sink")
        raise typer.Exit(2)
    lock = _lock_state_dir(state.parent) if (history or not no_state) else None
    raise_open_file_limit()
    use_pidfd_child_watcher()  # no thread per worker
    writers = _bounded_output()
    try:
        sources = _cloudevent_sources(loaded, cloudevents_sink, cloudevents_include or [], cloudevents_exclude or [])
        services = _Services(
            state_dir=state.parent,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            allowed_hosts=allow_host or (),
            dashboard=dashboard,
            history=history,
            tiers=tiers,
            cloudevent_sources=sources,
            cluster_name=cluster_name,
            announce=lambda text: console.print(f"[dim]{escape(text)}[/]"),
            pricing=_pricing(cost_per_replica_hour),
            # Local targets have no HPA and no kube-state-metrics: ebb exports the HPA series KEDA's dashboard reads.
            hpa_series=True,
        )
        for error in services.cloudevent_errors:
            err_console.print(f"[red]✗[/] {escape(str(error))}")
        counted = counted_resources(loaded.objects)  # KEDA counts TriggerAuthentications ... too
        http_objects = loaded.resources.all(HTTPScaledObject)
        scaled = [*_scaled(loaded), *(obj.scaled_object() for obj in http_objects)]
        observer = services.observers(ConsoleObserver(console, verbose=verbose), scaled, counted)
        options = RuntimeOptions(
            state_path=None if no_state else state, scaler_timeout=timeout, output=_console_sink, history=services
        )
        extensions: list[RuntimeExtension] = []
        interceptor_routes = loaded.resources.all(InterceptorRoute)
        if http_objects or interceptor_routes:
            from ebb.http.local import HTTPFrontend, HTTPOptions

            announce = lambda text: console.print(f"[dim]{escape(text)}[/]")  # noqa: E731
            frontend = HTTPFrontend(
                HTTPOptions(
                    host=http_host,
                    port=http_port,
                    max_connections=http_max_connections or None,
                    announce=announce,
                )
            )
            services.http_routes = frontend.route_infos
            extensions.append(frontend)
        runtime = LocalRuntime(loaded, observer, options, extensions)
        console.print(
            f"[bold]ebb {ebb.__version__}[/]: {len(loaded.of(ScaledObject))} ScaledObject(s), "
            f"{len(loaded.of(ScaledJob))} ScaledJob(s), {len(http_objects)} HTTPScaledObject(s), "
            f"{len(interceptor_routes)} InterceptorRoute(s), "
            f"{len(loaded.of(ProcessGroup))} ProcessGroup(s)"
        )
        from ebb.http.eventloop import run_serving

        run_serving(_run_until_signalled(runtime, services))
    finally:
        _restore_output(writers)
        if lock is not None:
            lock.release()


def _lock_state_dir(directory: Path) -> StateLock:
    """One ebb per state directory; a clear one-line error (not a traceback) when it is held or unusable."""
    lock = StateLock(directory)
    problem: str | None = None
    try:
        lock.acquire()
    except StateLocked as exc:
        err_console.print(f"[red]error[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        problem = exc.strerror or str(exc)
        if directory.exists() and not directory.is_dir():
            problem = "not a directory"
    if problem is None and not os.access(directory, os.W_OK):
        lock.release()
        problem = "not writable"
    if problem is not None:
        err_console.print(
            f"[red]error[/] state directory {escape(str(directory))}: {escape(problem)}; "
            "give a writable --state (or run with --no-state --no-history)",
            soft_wrap=True,
        )
        raise typer.Exit(1)
    return lock


def _bounded_output() -> tuple[BoundedWriter | None, BoundedWriter | None]:
    """Route ebb's stdout and stderr through writers that never block the loop (see runtime/output.py)."""
    out = BoundedWriter.around(sys.stdout, "stdout")
    err = BoundedWriter.around(sys.stderr, "stderr")
    if out is not None:
        console.file = cast(IO[str], out)
    if err is not None:
        err_console.file = cast(IO[str], err)
    return out, err


def _restore_output(writers: tuple[BoundedWriter | None, BoundedWriter | None]) -> None:
    for writer in writers:
        if writer is not None:
            writer.drain(1.0)  # what a reader can still take; a blocked one is not waited for
    console.file = None  # type: ignore[assignment]
    err_console.file = None  # type: ignore[assignment]


@app.command()
def demo(
    quick: Annotated[bool, typer.Option(help="A shorter run (about 30 s) with smaller bursts.")] = False,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where to put the job database and manifest (default: .ebb/demo, replaced)."),
    ] = None,
    state: Annotated[
        Path, typer.Option(help="Where the demo's history and event log go (what `ebb dashboard` reads).")
    ] = Path(".ebb"),
    live: Annotated[bool, typer.Option(help="Live view (on by default in a terminal).")] = True,
) -> None:
    """Watch real worker processes scale 0 -> N -> 0 on a SQLite job queue; ends by itself.

    Needs nothing but Python. Prints a summary: time from first job to first worker, peak replicas,
    jobs done, replica-seconds used against running the peak all the time.
    """
    from ebb.demo.run import run_demo

    code = run_demo(console, quick=quick, directory=directory, live=live, state_dir=state)
    raise typer.Exit(code)


def _ago(now: float, then: float | None) -> str:
    if then is None:
        return "-"
    seconds = max(0.0, now - then)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


@app.command()
def events(
    since: Annotated[str | None, typer.Option(help="Only events newer than this (e.g. 10m, 2h, 7d).")] = None,
    object_name: Annotated[
        str | None, typer.Option("--object", help="Only this object: name, namespace/name or Kind/namespace/name.")
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events until Ctrl-C.")] = False,
    log: Annotated[Path, typer.Option(help="The event log `ebb run` writes.")] = Path(".ebb/events.jsonl"),
    output: OutputOption = Output.table,
) -> None:
    """List scaling events and problems recorded by `ebb run` (newest last); `-o json` is one object per line."""
    import time

    from ebb.observe.events import EventLog, EventRecord

    try:
        start = None if since is None else time.time() - parse_duration(since)
    except ValueError as exc:
        err_console.print(f"[red]error[/] --since: {escape(str(exc))}")
        raise typer.Exit(2) from None
    event_log = EventLog(log)
    if not event_log.files() and not follow:
        err_console.print(f"[yellow]no events yet[/]: {escape(str(log))} does not exist (is `ebb run` recording?)")
        raise typer.Exit(0)

    def row(r: EventRecord) -> str:
        style = "yellow" if r.type == "Warning" else "green"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.time))
        return f"[dim]{stamp}[/] [bold]{escape(r.object)}[/] [{style}]{escape(r.reason)}[/] {escape(r.message)}"

    def as_dict(r: EventRecord) -> dict[str, Any]:
        return {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.time)),
            "object": r.object,
            "type": r.type,
            "reason": r.reason,
            "message": r.message,
        }

    def show(records: list[EventRecord], header: bool) -> None:
        if output is Output.json:
            for r in records:  # one JSON object per line: `-f` can keep appending
                typer.echo(json.dumps(as_dict(r)))
        elif output is Output.yaml:
            if records:
                typer.echo(yaml.safe_dump([as_dict(r) for r in records], sort_keys=False), nl=False)
        elif header:
            _print_rows(
                ("TIME", "OBJECT", "TYPE", "REASON", "MESSAGE"),
                [
                    (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.time)), r.object, r.type, r.reason, r.message)
                    for r in records
                ],
            )
        else:
            for r in records:
                console.print(row(r), highlight=False)

    records = event_log.read(since=start, name=object_name)
    if not follow or records:
        show(records, header=True)
    if not follow:
        return
    try:
        offset = event_log.path.stat().st_size if event_log.path.exists() else 0
        while True:
            time.sleep(1.0)
            new, offset = event_log.tail(offset)
            show([r for r in new if r.matches(object_name)], header=False)
    except KeyboardInterrupt:
        pass


@app.command()
def status(
    history_path: Annotated[Path, typer.Option("--history", help="The history `ebb run` writes.")] = Path(
        ".ebb/history.db"
    ),
    output: OutputOption = Output.table,
    show_cost: Annotated[
        bool, typer.Option("--cost", help="Also print replica-hours and cost against the peak and maxReplicaCount.")
    ] = False,
    since: Annotated[
        str | None, typer.Option(help="With --cost: the range, back from now (default: the history, up to 1d).")
    ] = None,
    cost_per_replica_hour: CostOption = None,
) -> None:
    """Each scaled object's last known state, like `kubectl get scaledobject`: replicas, activity, triggers."""
    import time

    from ebb.observe.history import HistoryStore

    if not history_path.exists():
        err_console.print(f"[yellow]no history[/]: {escape(str(history_path))} does not exist (run `ebb run` first)")
        raise typer.Exit(1)
    pricing = _pricing(cost_per_replica_hour)
    store = HistoryStore(history_path, readonly=True)
    try:
        objects = store.objects()
        cost_table = _cost_table(store, pricing, since) if show_cost else None
    finally:
        store.close()
    if output is not Output.table:
        _print_data(objects, output)
        return
    now = time.time()
    rows = []
    for o in objects:
        triggers = ", ".join(
            f"{t.get('name') or t['metric']}="
            + ("error" if t.get("error") else f"{t['value']:g}/{t['target']:g}" if t.get("value") is not None else "-")
            for t in o["triggers"]
        )
        active = "-" if o["active"] is None else ("Paused" if o["paused"] else str(o["active"]))
        rows.append(
            (
                o["namespace"],
                o["name"],
                o["kind"],
                o["target"],
                o["min_replicas"],
                o["max_replicas"],
                o["current"],
                o["desired"],
                o["ready"],
                active,
                triggers or None,
                _ago(now, o["last_scale"]),
                _ago(now, o["time"]),
                o.get("reason"),
            )
        )
    _print_rows(
        (
            "NAMESPACE",
            "NAME",
            "KIND",
            "TARGET",
            "MIN",
            "MAX",
            "CURRENT",
            "DESIRED",
            # Worker processes running now; not KEDA's READY (the ScaledObject's Ready condition).
            "RUNNING",
            "ACTIVE",
            "TRIGGERS",
            "LAST SCALE",
            "LAST POLL",
            "REASON",
        ),
        rows,
    )
    if cost_table is not None:
        console.print(cost_table)


def _cost_table(store: HistoryStore, pricing: Pricing, since: str | None) -> Table:
    """`ebb status --cost`: per object, replica-hours used and cost against running at the peak and at max."""
    import time

    from ebb.observe.overview import default_range, fleet_usage

    now = time.time()
    if since is None:
        start, end = default_range(store, now)
    else:
        try:
            start, end = now - parse_duration(since), now
        except ValueError as exc:
            err_console.print(f"[red]error[/] --since: {escape(str(exc))}")
            raise typer.Exit(2) from None
    usage = fleet_usage(store, start, end, pricing=pricing)
    priced = any(u["price_per_replica_hour"] is not None for u in usage["per_object"].values())

    def money(value: float | None) -> str:
        return "-" if value is None or not priced else f"{value:.2f}"

    table = Table(box=None, padding=(0, 1), title=f"cost over the last {_ago(now, start)}", title_justify="left")
    for column in ("OBJECT", "REPLICA-H", "PEAK", "MAX", "SPENT", "AT PEAK", "AT MAX", "AT MAX FOR"):
        table.add_column(column, overflow="fold")
    for key, u in sorted(usage["per_object"].items()):
        table.add_row(
            escape(key),
            f"{u['replica_seconds'] / 3600:.2f}",
            f"{u['peak_replicas']:g}",
            "-" if u["max_replicas"] is None else str(u["max_replicas"]),
            money(u["cost"]),
            money(u["cost_at_peak"]),
            money(u["cost_at_max"]),
            _ago(u["max_hit_seconds"], 0.0) if u["max_hit_seconds"] else "-",
        )
    t = usage["totals"]
    table.add_row(
        "TOTAL",
        f"{t['replica_seconds'] / 3600:.2f}",
        "",
        "",
        money(t["cost"]),
        money(t["cost_at_peak"]),
        money(t["cost_at_max"]),
        f"{t['objects_hitting_max']} object(s)" if t["objects_hitting_max"] else "-",
    )
    return table


@app.command()
def dashboard(
    history_path: Annotated[Path, typer.Option("--history", help="The history `ebb run` writes.")] = Path(
        ".ebb/history.db"
    ),
    host: Annotated[str, typer.Option(help="Address to serve on (loopback by default).")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to serve on (0: any free port).")] = DEFAULT_PORT,
    allow_host: AllowedHosts = None,
    cost_per_replica_hour: CostOption = None,
) -> None:
    """Serve the dashboard for a history file, standalone (while or after `ebb run` records it)."""
    from ebb.observe.history import HistoryStore
    from ebb.web.server import build_app, serve

    if not history_path.exists():
        err_console.print(f"[red]error[/] {escape(str(history_path))} does not exist (run `ebb run` first)")
        raise typer.Exit(1)
    pricing = _pricing(cost_per_replica_hour)

    async def main() -> int:
        store = HistoryStore(history_path, readonly=True)
        try:
            app = build_app(history=store, dashboard=True, pricing=pricing)
            served = await serve(app, host, port, hosts=allow_host or ())
        except OSError as exc:
            store.close()
            _error(f"cannot serve the dashboard on {host}:{port}: {exc.strerror or exc}")
            return 1
        console.print(f"dashboard on {served.bound_url}/ (Ctrl-C to stop)")
        if not served.loopback:
            err_console.print(
                f"[yellow]warning:[/] {escape(host)} is not a loopback address: anyone who can reach this machine "
                "on that port sees the dashboard"
            )
        try:
            await asyncio.Event().wait()
        finally:
            await served.stop()
            store.close()
        return 0

    code = 0
    with contextlib.suppress(KeyboardInterrupt):
        code = asyncio.run(main())
    raise typer.Exit(code)


@app.command()
def version() -> None:
    """Print ebb's version."""
    console.print(f"ebb {ebb.__version__}")


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    try:
        return app(args=argv)
    except SpecError as exc:  # a last resort: commands handle their own errors
        err_console.print(f"[red]error[/] {escape(str(exc))}")
        sys.exit(1)


def _register_subcommands() -> None:
    from ebb.kube.commands import register as register_kube
    from ebb.simulate.command import register as register_simulate

    register_kube(app)
    register_simulate(app)


_register_subcommands()


if __name__ == "__main__":
    main()
