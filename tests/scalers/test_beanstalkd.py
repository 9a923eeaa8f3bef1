"""The beanstalkd trigger against a private beanstalkd (Debian's package, see _beanstalkd.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from typer.testing import CliRunner

from ebb.cli import app
from ebb.errors import ScalerError, SpecError
from ebb.scalers import Scaler, TriggerContext, build_scaler
from tests.scalers._reads import read_once
from tests.test_cli_metrics import row_of

from ._beanstalkd import ENABLE, Beanstalk, beanstalkd_server
from ._servers import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    try:
        with beanstalkd_server() as port:
            yield port
    except FileNotFoundError:
        pytest.skip(ENABLE)


@pytest.fixture
def client(server: int) -> Iterator[Beanstalk]:
    c = Beanstalk(server)
    yield c
    c.close()


@pytest.fixture
def tube(client: Beanstalk) -> str:
    name = f"ebb-{uuid.uuid4().hex[:10]}"
    client.use(name)
    return name


def ctx(index: int = 0) -> TriggerContext:
    return TriggerContext(name=f"bs-{uuid.uuid4().hex[:8]}", trigger_index=index, trigger_type="beanstalkd")


def scaler(metadata: dict[str, str], **kw: Any) -> Scaler:
    return build_scaler("beanstalkd", metadata, ctx=kw.pop("ctx", None) or ctx(), **kw)


# --- parsing ---------------------------------------------------------------------------------------


def test_keda_defaults_and_metric_name() -> None:
    s = scaler({"server": "beanstalkd:11300", "tube": "mail/out", "value": "2.5"}, ctx=ctx(index=1))
    spec = s.metric_spec()
    # KEDA: s{index}-beanstalkd-{url.QueryEscape(tube)}, then / . : % ( ) become dashes.
    assert (spec.name, spec.target, spec.metric_type) == ("s1-beanstalkd-mail-2Fout", 2.5, "AverageValue")
    d = s.describe()
    assert (d["activationValue"], d["includeDelayed"]) == (0.0, False)
    assert s.timeout == 3.0  # the global timeout unless `timeout` is given


@pytest.mark.parametrize(("raw", "seconds"), [("1000", 1.0), ("250ms", 0.25), ("5s", 5.0)])
def test_timeout_takes_milliseconds_or_a_duration(raw: str, seconds: float) -> None:
    s = scaler({"server": "h:1", "tube": "t", "value": "1", "timeout": raw})
    assert s.timeout == pytest.approx(seconds)


def test_ipv6_server() -> None:
    s = scaler({"server": "[::1]:11300", "tube": "t", "value": "1"})
    assert s.address == "[::1]:11300"  # type: ignore[attr-defined]


BASE = {"server": "127.0.0.1:11300", "tube": "jobs", "value": "5"}
BAD: list[tuple[str, dict[str, str], str]] = [
    ("no server", {"tube": "t", "value": "1"}, "server"),
    ("server without port", {**BASE, "server": "beanstalkd"}, "server"),
    ("port out of range", {**BASE, "server": "h:70000"}, "server"),
    ("no tube", {"server": "h:1", "value": "1"}, "tube"),
    ("tube with a space", {**BASE, "tube": "my jobs"}, "tube"),
    ("tube starting with -", {**BASE, "tube": "-jobs"}, "tube"),
    ("tube too long", {**BASE, "tube": "t" * 201}, "tube"),
    ("no value", {"server": "h:1", "tube": "t"}, "value"),
    ("zero value", {**BASE, "value": "0"}, "value"),
    ("text value", {**BASE, "value": "x"}, "value"),
    ("text activation", {**BASE, "activationValue": "x"}, "activationValue"),
    ("bad includeDelayed", {**BASE, "includeDelayed": "sometimes"}, "includeDelayed"),
    ("negative timeout", {**BASE, "timeout": "-1"}, "timeout"),
    ("bad timeout", {**BASE, "timeout": "soon"}, "timeout"),
]


@pytest.mark.parametrize(("metadata", "field"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_metadata_names_the_parameter(metadata: dict[str, str], field: str) -> None:
    with pytest.raises(SpecError) as err:
        scaler(metadata)
    assert err.value.field == f"spec.triggers[0].metadata.{field}"


# --- against beanstalkd ----------------------------------------------------------------------------


async def test_known_value_counts_ready_and_reserved_not_buried(server: int, client: Beanstalk, tube: str) -> None:
    client.put(12)
    client.reserve(tube)  # reserved: counted
    buried = client.reserve(tube)
    assert client.command(f"bury {buried} 100") == "BURIED"  # buried: not counted
    client.put(4, delay=600)  # delayed: not counted by default
    s = scaler({"server": f"127.0.0.1:{server}", "tube": tube, "value": "5"})
    assert await read_once(s) == (11.0, True)
    with_delayed = scaler({"server": f"127.0.0.1:{server}", "tube": tube, "value": "5", "includeDelayed": "true"})
    assert await read_once(with_delayed) == (15.0, True)


async def test_missing_tube_counts_zero(server: int) -> None:
    s = scaler({"server": f"127.0.0.1:{server}", "tube": f"ebb-none-{uuid.uuid4().hex[:8]}", "value": "5"})
    assert await read_once(s) == (0.0, False)


@pytest.mark.parametrize(("activation", "active"), [("6", True), ("7", False), ("10", False)])
async def test_activation_exactly_at_the_threshold(
    server: int, client: Beanstalk, tube: str, activation: str, active: bool
) -> None:
    client.put(7)
    s = scaler({"server": f"127.0.0.1:{server}", "tube": tube, "value": "5", "activationValue": activation})
    assert await read_once(s) == (7.0, active)


async def test_server_down() -> None:
    port = free_port()
    s = scaler({"server": f"127.0.0.1:{port}", "tube": "t", "value": "5"})
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    assert f"cannot reach beanstalkd at 127.0.0.1:{port}" in str(err.value)
    assert err.value.obj.startswith("ScaledObject default/bs-") and "beanstalkd" in err.value.trigger


async def test_reconnects_after_a_restart(server: int) -> None:
    """Its own server on another port (the module's `server` fixture only skips this test where beanstalkd is
    not installed, as for the others)."""
    port = free_port()
    with beanstalkd_server(port):
        s = scaler({"server": f"127.0.0.1:{port}", "tube": "default", "value": "5"})
        assert (await s.get_metric_and_activity()).value == 0.0
    try:
        with pytest.raises(ScalerError):
            await s.get_metric_and_activity()
        with beanstalkd_server(port):
            c = Beanstalk(port)
            c.put(2)
            assert (await s.get_metric_and_activity()).value == 2.0
            c.close()
    finally:
        await s.close()


async def test_a_server_that_is_not_beanstalkd() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    async with srv:
        s = scaler({"server": f"127.0.0.1:{port}", "tube": "t", "value": "5"})
        with pytest.raises(ScalerError, match=r"answered 'HTTP/1\.1 400 Bad Request' to stats-tube"):
            await read_once(s)


async def test_no_connection_or_fd_leak_over_1000_polls(server: int, client: Beanstalk, tube: str) -> None:
    client.put(3)
    s = scaler({"server": f"127.0.0.1:{server}", "tube": tube, "value": "5"})
    await s.get_metric_and_activity()  # the first poll connects; count from there
    process = psutil.Process()
    fds = process.num_fds()
    try:
        for _ in range(1000):
            assert (await s.get_metric_and_activity()).value == 3.0
        assert process.num_fds() == fds
        answer = client.command("stats")
        assert answer.startswith("OK")
    finally:
        await s.close()
    assert process.num_fds() == fds - 1


async def test_a_timed_out_read_drops_the_connection() -> None:
    # A server that accepts and never answers: the read times out, and the next read opens a new connection.
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    async with srv:
        s = scaler({"server": f"127.0.0.1:{port}", "tube": "t", "value": "5", "timeout": "200ms"})
        try:
            for _ in range(2):
                with pytest.raises(ScalerError, match=r"no answer within 0\.2s"):
                    await s.get_metric_and_activity()
            assert len(accepted) == 2
        finally:
            await s.close()
            for w in accepted:
                w.close()


# --- the example, through the CLI -------------------------------------------------------------------


def test_ebb_metrics_reads_the_example(server: int, tmp_path: Path) -> None:
    text = (REPO / "examples" / "beanstalkd.yaml").read_text()
    assert "127.0.0.1:11300" in text
    path = tmp_path / "beanstalkd.yaml"
    path.write_text(text.replace("127.0.0.1:11300", f"127.0.0.1:{server}"))
    c = Beanstalk(server)
    c.use("emails")
    c.put(9)
    try:
        result = CliRunner().invoke(app, ["metrics", str(path)], env={"COLUMNS": "400"})
        assert result.exit_code == 0, result.output
        row = row_of(result.output, "[0] beanstalkd")
        assert (row["metric"], row["value"], row["target"], row["active"]) == (
            "s0-beanstalkd-emails",
            "9",
            "4 (AverageValue)",
            "yes",
        )
    finally:
        c.command("watch emails")
        for _ in range(9):
            job = c.command("reserve-with-timeout 0").split()[1]
            c.command(f"delete {job}")
        c.close()
