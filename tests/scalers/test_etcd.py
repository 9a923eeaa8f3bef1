"""The etcd trigger against private etcd servers (Debian's etcd-server, see _etcd.py): reads and push."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc.aio
import psutil
import pytest
from aetcd import rpc  # type: ignore[import-untyped]
from typer.testing import CliRunner

from ebb.cli import app
from ebb.errors import ScalerError, SpecError
from ebb.scalers import Scaler, TriggerContext, build_scaler
from tests.scalers._reads import read_once
from tests.test_cli_metrics import row_of

from ._etcd import ENABLE, Etcd, etcd_server
from ._servers import free_port

REPO = Path(__file__).resolve().parents[2]
ROOT_PASSWORD = "r00t-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    try:
        with etcd_server(tmp_path_factory.mktemp("etcd")) as srv:
            yield srv
    except FileNotFoundError:
        pytest.skip(ENABLE)


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    """An etcd with authentication on (user root), whose tokens live 2 seconds."""
    try:
        with etcd_server(tmp_path_factory.mktemp("etcd-auth"), token_ttl=2) as srv:
            asyncio.run(_enable_auth(srv))
            yield srv
    except FileNotFoundError:
        pytest.skip(ENABLE)


async def _enable_auth(srv: Etcd) -> None:
    async with grpc.aio.insecure_channel(srv.endpoint) as channel:
        auth = rpc.AuthStub(channel)
        await auth.RoleAdd(rpc.AuthRoleAddRequest(name="root"))
        await auth.UserAdd(rpc.AuthUserAddRequest(name="root", password=ROOT_PASSWORD))
        await auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user="root", role="root"))
        await auth.AuthEnable(rpc.AuthEnableRequest())


async def put(srv: Etcd, key: str, value: str, password: str | None = None) -> None:
    async with grpc.aio.insecure_channel(srv.endpoint) as channel:
        metadata: tuple[tuple[str, str], ...] = ()
        if password:
            token = await rpc.AuthStub(channel).Authenticate(rpc.AuthenticateRequest(name="root", password=password))
            metadata = (("token", token.token),)
        await rpc.KVStub(channel).Put(rpc.PutRequest(key=key.encode(), value=value.encode()), metadata=metadata)


async def delete(srv: Etcd, key: str) -> None:
    async with grpc.aio.insecure_channel(srv.endpoint) as channel:
        await rpc.KVStub(channel).DeleteRange(rpc.DeleteRangeRequest(key=key.encode()))


@pytest.fixture
async def key(server: Etcd) -> AsyncIterator[str]:
    name = f"/ebb-test/{uuid.uuid4().hex[:10]}"
    yield name
    await delete(server, name)


def ctx(index: int = 0) -> TriggerContext:
    return TriggerContext(name=f"etcd-{uuid.uuid4().hex[:8]}", trigger_index=index, trigger_type="etcd")


def scaler(metadata: dict[str, str], auth: dict[str, str] | None = None, **kw: Any) -> Scaler:
    return build_scaler("etcd", metadata, ctx=kw.pop("ctx", None) or ctx(), auth_params=auth, **kw)


# --- parsing ---------------------------------------------------------------------------------------


def test_keda_defaults_and_metric_name() -> None:
    s = scaler({"endpoints": "127.0.0.1:2379", "watchKey": "/jobs/pending", "value": "2.5"}, ctx=ctx(index=3))
    spec = s.metric_spec()
    assert (spec.name, spec.target, spec.metric_type) == ("s3-etcd--jobs-pending", 2.5, "AverageValue")
    d = s.describe()
    assert (d["activationValue"], d["watchProgressNotifyInterval"], d["tls"]) == (0.0, 600, "disable")
    assert s.supports_push


def test_endpoints_list_and_schemes() -> None:
    s = scaler({"endpoints": "http://a:1, b:2,https://[::1]:3", "watchKey": "k", "value": "1"})
    assert s.endpoints == ["a:1", "b:2", "[::1]:3"]  # type: ignore[attr-defined]
    assert s.credentials is not None  # type: ignore[attr-defined]  # https:// means TLS
    plain = scaler({"endpoints": "a:1", "watchKey": "k", "value": "1"})
    assert plain.credentials is None  # type: ignore[attr-defined]


def test_password_is_masked_and_read_from_auth_or_env() -> None:
    s = scaler(
        {"endpoints": "a:1", "watchKey": "k", "value": "1", "passwordFromEnv": "PW"},
        {"username": "u"},
        resolved_env={"PW": "s3cr3t-pw"},
    )
    assert s.describe()["password"] == "***"


BASE = {"endpoints": "127.0.0.1:2379", "watchKey": "k", "value": "5"}
BAD: list[tuple[str, dict[str, str], dict[str, str], str]] = [
    ("no endpoints", {"watchKey": "k", "value": "5"}, {}, "endpoints"),
    ("endpoint without port", {**BASE, "endpoints": "etcd"}, {}, "endpoints"),
    ("endpoint with a path", {**BASE, "endpoints": "http://etcd:2379/v3"}, {}, "endpoints"),
    ("unknown scheme", {**BASE, "endpoints": "unix://etcd:1"}, {}, "endpoints"),
    ("only commas", {**BASE, "endpoints": " , "}, {}, "endpoints"),
    ("no watchKey", {"endpoints": "a:1", "value": "5"}, {}, "watchKey"),
    ("no value", {"endpoints": "a:1", "watchKey": "k"}, {}, "value"),
    ("text value", {**BASE, "value": "lots"}, {}, "value"),
    ("zero value", {**BASE, "value": "0"}, {}, "value"),
    ("text activation", {**BASE, "activationValue": "x"}, {}, "activationValue"),
    ("zero interval", {**BASE, "watchProgressNotifyInterval": "0"}, {}, "watchProgressNotifyInterval"),
    ("username alone", BASE, {"username": "u"}, "password"),
    ("password alone", BASE, {"password": "s3cr3t-pw"}, "username"),
    ("password in metadata", {**BASE, "password": "s3cr3t-pw"}, {"username": "u"}, "password"),
    ("bad tls", BASE, {"tls": "yes"}, "tls"),
    ("cert without key", BASE, {"tls": "enable", "cert": "PEM"}, "key"),
    ("key without cert", BASE, {"tls": "enable", "key": "s3cr3t-pw"}, "cert"),
]


@pytest.mark.parametrize(("metadata", "auth", "field"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_metadata_names_the_parameter(metadata: dict[str, str], auth: dict[str, str], field: str) -> None:
    with pytest.raises(SpecError) as err:
        scaler(metadata, auth)
    assert err.value.field == f"spec.triggers[0].metadata.{field}"
    assert "s3cr3t-pw" not in str(err.value)


def test_encrypted_key_that_does_not_load_names_the_authentication_ref() -> None:
    with pytest.raises(SpecError) as err:
        scaler(BASE, {"tls": "enable", "cert": "PEM", "key": "not a key", "keyPassword": "s3cr3t-pw"})
    assert err.value.field == "spec.triggers[0].authenticationRef"
    assert "s3cr3t-pw" not in str(err.value)


# --- reading ---------------------------------------------------------------------------------------


async def test_known_value(server: Etcd, key: str) -> None:
    await put(server, key, "12.5")
    s = scaler({"endpoints": server.endpoint, "watchKey": key, "value": "5"})
    assert await read_once(s) == (12.5, True)


@pytest.mark.parametrize(("activation", "active"), [("6.5", True), ("7", False), ("30", False)])
async def test_activation_exactly_at_the_threshold(server: Etcd, key: str, activation: str, active: bool) -> None:
    await put(server, key, "7")
    s = scaler({"endpoints": f"http://{server.endpoint}", "watchKey": key, "value": "2", "activationValue": activation})
    assert await read_once(s) == (7.0, active)


async def test_missing_key_and_text_value_are_errors(server: Etcd, key: str) -> None:
    s = scaler({"endpoints": server.endpoint, "watchKey": key, "value": "5"})
    try:
        with pytest.raises(ScalerError, match=f"watchKey '{key}' does not exist"):
            await s.get_metric_and_activity()
        await put(server, key, "many")
        with pytest.raises(ScalerError, match="is not a number: 'many'"):
            await s.get_metric_and_activity()
        await put(server, key, " 3 ")
        assert (await s.get_metric_and_activity()).value == 3.0
    finally:
        await s.close()


async def test_server_down_names_the_endpoint() -> None:
    down = f"127.0.0.1:{free_port()}"
    s = scaler({"endpoints": down, "watchKey": "k", "value": "5"})
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    assert f"cannot reach etcd: {down}: UNAVAILABLE" in str(err.value)


async def test_a_down_endpoint_is_passed_over(server: Etcd, key: str) -> None:
    await put(server, key, "4")
    s = scaler({"endpoints": f"127.0.0.1:{free_port()},{server.endpoint}", "watchKey": key, "value": "5"})
    try:
        for _ in range(3):
            assert (await s.get_metric_and_activity()).value == 4.0
    finally:
        await s.close()


async def test_authentication(auth_server: Etcd) -> None:
    key = f"/ebb-test/{uuid.uuid4().hex[:10]}"
    await put(auth_server, key, "9", password=ROOT_PASSWORD)
    meta = {"endpoints": auth_server.endpoint, "watchKey": key, "value": "5"}
    s = scaler(meta, {"username": "root", "password": ROOT_PASSWORD})
    try:
        assert (await s.get_metric_and_activity()).value == 9.0
        await asyncio.sleep(3)  # past the token's 2 s: the scaler logs in again by itself
        assert (await s.get_metric_and_activity()).value == 9.0
    finally:
        await s.close()


async def test_wrong_password_is_an_error_without_the_password(auth_server: Etcd) -> None:
    wrong = "Wr0ng-" + uuid.uuid4().hex[:8]
    s = scaler(
        {"endpoints": auth_server.endpoint, "watchKey": "k", "value": "5"}, {"username": "root", "password": wrong}
    )
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    message = str(err.value)
    assert f"etcd at {auth_server.endpoint} refused the login for user 'root'" in message
    assert "authentication failed" in message
    assert wrong not in message and ROOT_PASSWORD not in message


async def test_no_credentials_against_an_authenticating_server(auth_server: Etcd) -> None:
    s = scaler({"endpoints": auth_server.endpoint, "watchKey": "k", "value": "5"})
    with pytest.raises(ScalerError, match="requires a login: give username and password"):
        await read_once(s)


async def test_no_connection_or_fd_leak_over_1000_polls(server: Etcd, key: str) -> None:
    await put(server, key, "3")
    s = scaler({"endpoints": server.endpoint, "watchKey": key, "value": "5"})
    await s.get_metric_and_activity()  # the first poll opens the channel; count from there
    process = psutil.Process()
    fds = process.num_fds()
    try:
        for i in range(1000):
            if i == 500:
                await delete(server, key)  # failing reads keep the channel
            if i == 550:
                await put(server, key, "3")
            try:
                await s.get_metric_and_activity()
            except ScalerError:
                assert 500 <= i < 550
        assert process.num_fds() <= fds + 1
    finally:
        await s.close()
    # gRPC's core closes the socket of a closed channel on its own thread, a moment later.
    for _ in range(50):
        if process.num_fds() < fds:
            break
        await asyncio.sleep(0.05)
    assert process.num_fds() < fds


# --- TLS ------------------------------------------------------------------------------------------

KEY_PASSWORD = "kp-" + uuid.uuid4().hex[:10]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate with an encrypted key."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    d = tmp_path_factory.mktemp("etcd-pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    _openssl(
        "req", "-x509", *ec, "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=ca", cwd=d
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    _openssl("req", *ec, "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    sign = ["x509", "-req", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1"]
    _openssl(*sign, "-in", "srv.csr", "-out", "srv.crt", "-extfile", "san.ext", cwd=d)
    _openssl(
        "req", *ec, "-passout", f"pass:{KEY_PASSWORD}", "-keyout", "cl.key", "-out", "cl.csr", "-subj", "/CN=c", cwd=d
    )
    _openssl(*sign, "-in", "cl.csr", "-out", "cl.crt", "-extfile", "client.ext", cwd=d)
    return {name: d / name for name in ("ca.crt", "srv.crt", "srv.key", "cl.crt", "cl.key")}


async def test_tls_with_a_client_certificate(tmp_path: Path, pki: dict[str, Path]) -> None:
    with etcd_server(tmp_path / "data", tls=pki) as srv:
        tls = {
            "tls": "enable",
            "ca": pki["ca.crt"].read_text(),
            "cert": pki["cl.crt"].read_text(),
            "key": pki["cl.key"].read_text(),
            "keyPassword": KEY_PASSWORD,
        }
        meta = {"endpoints": srv.endpoint, "watchKey": "/ebb-test/tls", "value": "5"}
        s = scaler(meta, tls)
        with pytest.raises(ScalerError, match="does not exist"):  # an answer: TLS and the certificate passed
            await read_once(s)
        no_cert = scaler(meta, {"tls": "enable", "ca": pki["ca.crt"].read_text()})
        with pytest.raises(ScalerError, match="cannot reach etcd"):
            await read_once(no_cert)
        plain = scaler(meta)
        with pytest.raises(ScalerError, match="cannot reach etcd"):
            await read_once(plain)


# --- push ------------------------------------------------------------------------------------------


class Pushes:
    def __init__(self) -> None:
        self.count = 0
        self.event = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self.event.set()

    async def next(self, within: float = 5.0) -> None:
        await asyncio.wait_for(self.event.wait(), within)
        self.event.clear()


async def test_push_when_the_key_rises_above_activation(server: Etcd, key: str) -> None:
    await put(server, key, "0")
    s = scaler({"endpoints": server.endpoint, "watchKey": key, "value": "5", "activationValue": "2"})
    pushes = Pushes()
    task = asyncio.create_task(s.watch(pushes))
    try:
        await asyncio.sleep(0.5)  # the watch is created
        for quiet in ("1", "2", "not a number"):
            await put(server, key, quiet)
        await delete(server, key)
        await asyncio.sleep(0.5)
        assert pushes.count == 0
        await put(server, key, "3")
        await pushes.next()
        assert pushes.count == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await s.close()


async def test_push_rewatches_after_a_restart(tmp_path: Path) -> None:
    key = "/ebb-test/restart"
    with etcd_server(tmp_path / "data") as srv:
        s = scaler({"endpoints": srv.endpoint, "watchKey": key, "value": "5"})
        pushes = Pushes()
        task = asyncio.create_task(s.watch(pushes))
        await asyncio.sleep(0.5)
    try:
        await asyncio.sleep(0.5)
        with etcd_server(tmp_path / "data", ports=srv):
            await pushes.next(within=10)  # the re-watch says something may have changed
            await put(srv, key, "8")
            await pushes.next()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await s.close()


# --- the example, through the CLI -------------------------------------------------------------------


def test_ebb_metrics_reads_the_example(server: Etcd, tmp_path: Path) -> None:
    text = (REPO / "examples" / "etcd.yaml").read_text()
    assert "127.0.0.1:2379" in text
    path = tmp_path / "etcd.yaml"
    path.write_text(text.replace("127.0.0.1:2379", server.endpoint))
    asyncio.run(put(server, "/jobs/pending", "23"))
    try:
        result = CliRunner().invoke(app, ["metrics", str(path)], env={"COLUMNS": "400"})
        assert result.exit_code == 0, result.output
        row = row_of(result.output, "[0] etcd")
        assert (row["metric"], row["value"], row["target"], row["active"]) == (
            "s0-etcd--jobs-pending",
            "23",
            "10 (AverageValue)",
            "yes",
        )
    finally:
        asyncio.run(delete(server, "/jobs/pending"))
