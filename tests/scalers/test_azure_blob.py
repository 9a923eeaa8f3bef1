"""The azure-blob trigger against a private Azurite blob service (see _azurite.py)."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from azure.storage.blob.aio import ContainerClient
from typer.testing import CliRunner

from ebb.cli import app
from ebb.errors import ScalerError, SpecError
from ebb.scalers import Scaler, TriggerContext, build_scaler
from ebb.scalers.azure_blob import glob_to_regex
from tests.scalers._reads import read_once
from tests.test_cli_metrics import row_of

from ._azurite import ENABLE, KEY, REPO, Azurite, azurite
from ._servers import free_port

FAKE = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0LWtleQ==;EndpointSuffix=core.windows.net"
#: Three blobs at the top, three in virtual folders.
BLOBS = ["a.json", "b.json", "c.txt", "dir/d.json", "dir/sub/e.json", "dirty/f.json"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    try:
        with azurite("blob", tmp_path_factory.mktemp("azurite-blob")) as srv:
            yield srv
    except FileNotFoundError:
        pytest.skip(ENABLE)


def ctx(index: int = 0) -> TriggerContext:
    return TriggerContext(name=f"ab-{uuid.uuid4().hex[:8]}", trigger_index=index, trigger_type="azure-blob")


def scaler(metadata: dict[str, str], auth: dict[str, str] | None = None, **kw: Any) -> Scaler:
    return build_scaler("azure-blob", metadata, ctx=kw.pop("ctx", None) or ctx(), auth_params=auth, **kw)


@pytest.fixture
async def container(server: Azurite) -> AsyncIterator[str]:
    name = f"ebb-{uuid.uuid4().hex[:12]}"
    async with ContainerClient.from_connection_string(server.connection_string(), name) as client:
        await client.create_container()
        for blob in BLOBS:
            await client.upload_blob(blob, b"x")
        yield name
        await client.delete_container()


# --- parsing ---------------------------------------------------------------------------------------


def test_keda_defaults_and_metric_name() -> None:
    s = scaler({"blobContainerName": "in.box"}, {"connection": FAKE}, ctx=ctx(index=1))
    spec = s.metric_spec()
    assert (spec.name, spec.target, spec.metric_type) == ("s1-azure-blob-in-box", 5.0, "AverageValue")
    d = s.describe()
    assert (d["blobCount"], d["activationBlobCount"], d["blobDelimiter"], d["recursive"]) == (5, 0, "/", False)
    assert d["connection"] == "***"
    assert s.activation_threshold() == 0.0


def test_recursive_drops_the_delimiter_and_prefix_gets_it() -> None:
    s = scaler({"blobContainerName": "c", "blobPrefix": "in"}, {"connection": FAKE})
    assert (s.prefix, s.delimiter) == ("in/", "/")  # type: ignore[attr-defined]
    s = scaler({"blobContainerName": "c", "blobPrefix": "in", "recursive": "true"}, {"connection": FAKE})
    assert (s.prefix, s.delimiter) == ("in", "")  # type: ignore[attr-defined]
    assert s.describe()["blobDelimiter"] == ""


BAD: list[tuple[str, dict[str, str], dict[str, str], str]] = [
    ("no container", {}, {"connection": FAKE}, "blobContainerName"),
    ("text blobCount", {"blobContainerName": "c", "blobCount": "AA"}, {"connection": FAKE}, "blobCount"),
    ("zero blobCount", {"blobContainerName": "c", "blobCount": "0"}, {"connection": FAKE}, "blobCount"),
    (
        "text activation",
        {"blobContainerName": "c", "activationBlobCount": "x"},
        {"connection": FAKE},
        "activationBlobCount",
    ),
    ("bad recursive", {"blobContainerName": "c", "recursive": "maybe"}, {"connection": FAKE}, "recursive"),
    ("unclosed class", {"blobContainerName": "c", "globPattern": "[abc"}, {"connection": FAKE}, "globPattern"),
    ("unclosed brace", {"blobContainerName": "c", "globPattern": "{a,b"}, {"connection": FAKE}, "globPattern"),
    ("no connection", {"blobContainerName": "c"}, {}, "connection"),
    ("connection in metadata", {"blobContainerName": "c", "connection": FAKE}, {}, "connection"),
    ("workload identity", {"blobContainerName": "c", "accountName": "acct"}, {}, "accountName"),
    ("bad connection", {"blobContainerName": "c"}, {"connection": "AccountKey=s3cr3t-key"}, "connection"),
]


@pytest.mark.parametrize(("metadata", "auth", "field"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_metadata_names_the_parameter(metadata: dict[str, str], auth: dict[str, str], field: str) -> None:
    with pytest.raises(SpecError) as err:
        scaler(metadata, auth)
    assert err.value.field == f"spec.triggers[0].metadata.{field}"
    assert "s3cr3t-key" not in str(err.value) and "c2VjcmV0LWtleQ" not in str(err.value)


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("*.json", ["a.json", "dir/sub/e.json"], ["c.txt", "a.jsonx"]),
        ("**/*.json", ["dir/d.json"], ["a.json"]),
        ("?.txt", ["c.txt"], ["cc.txt"]),
        ("[ab].json", ["a.json", "b.json"], ["c.json"]),
        ("[!ab].json", ["c.json"], ["a.json"]),
        ("[a-c].txt", ["b.txt"], ["d.txt"]),
        ("{a,c}.*", ["a.json", "c.txt"], ["b.json"]),
        ("dir/{d,sub/*}.json", ["dir/d.json", "dir/sub/e.json"], ["dir/x.json"]),
        (r"\*.json", ["*.json"], ["a.json"]),
        ("a+(b).json", ["a+(b).json"], ["aab.json"]),
    ],
)
def test_glob_is_gobwas_without_separators(pattern: str, matches: list[str], misses: list[str]) -> None:
    regex = glob_to_regex(pattern)
    assert [n for n in matches if regex.fullmatch(n)] == matches
    assert [n for n in misses if regex.fullmatch(n)] == []


# --- against Azurite ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({}, 3),  # the top level only
        ({"blobPrefix": "dir"}, 1),  # dir/d.json: dir/sub/ is a folder
        ({"blobPrefix": "dir", "recursive": "true"}, 3),  # no delimiter: dir/..., dir/sub/..., dirty/...
        ({"recursive": "true"}, 6),
        ({"blobDelimiter": "sub/"}, 5),  # only dir/sub/ is a "folder" now
        ({"globPattern": "*.json"}, 5),
        ({"globPattern": "/dir/*.json"}, 2),
        ({"globPattern": "{a,c}.*"}, 2),
        ({"globPattern": "*.json", "blobPrefix": "dir"}, 2),
    ],
)
async def test_known_values(server: Azurite, container: str, metadata: dict[str, str], expected: int) -> None:
    s = scaler({"blobContainerName": container, **metadata}, {"connection": server.connection_string()})
    assert await read_once(s) == (float(expected), True)


@pytest.mark.parametrize(("activation", "active"), [("2", True), ("3", False), ("9", False)])
async def test_activation_exactly_at_the_threshold(
    server: Azurite, container: str, activation: str, active: bool
) -> None:
    s = scaler(
        {"blobContainerName": container, "activationBlobCount": activation}, {"connection": server.connection_string()}
    )
    assert await read_once(s) == (3.0, active)


async def test_an_empty_match_is_inactive(server: Azurite, container: str) -> None:
    s = scaler({"blobContainerName": container, "blobPrefix": "nothing"}, {"connection": server.connection_string()})
    assert await read_once(s) == (0.0, False)


async def test_more_blobs_than_one_page(server: Azurite) -> None:
    name = f"ebb-{uuid.uuid4().hex[:12]}"
    async with ContainerClient.from_connection_string(server.connection_string(), name) as client:
        await client.create_container()
        try:
            for i in range(30):
                await client.upload_blob(f"b{i}", b"x")
            s = scaler({"blobContainerName": name}, {"connection": server.connection_string()})
            # A small page forces the listing to follow continuation markers.
            s.client_options = lambda: {"max_page_size": 7}  # type: ignore[method-assign]
            assert (await read_once(s))[0] == 30.0
        finally:
            await client.delete_container()


async def test_wrong_key_is_an_error_without_the_key(server: Azurite, container: str) -> None:
    wrong = base64.b64encode(os.urandom(64)).decode()
    s = scaler({"blobContainerName": container}, {"connection": server.connection_string(wrong)})
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    message = str(err.value)
    assert "refused the credentials (AuthorizationFailure)" in message  # Azurite's code for a bad signature
    assert wrong not in message and KEY not in message


async def test_missing_container_says_so(server: Azurite) -> None:
    name = f"ebb-none-{uuid.uuid4().hex[:8]}"
    s = scaler({"blobContainerName": name}, {"connection": server.connection_string()})
    with pytest.raises(ScalerError, match=f"container '{name}' not found .*ContainerNotFound"):
        await read_once(s)


async def test_server_down() -> None:
    port = free_port()
    conn = f"AccountName=devstoreaccount1;AccountKey={KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1"
    s = scaler({"blobContainerName": "c"}, {"connection": conn})
    with pytest.raises(ScalerError) as err:
        await read_once(s)
    assert f"cannot reach Azure Storage at http://127.0.0.1:{port}" in str(err.value)
    assert KEY not in str(err.value)


def _tcp_to(port: int) -> int:
    return sum(1 for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port)


async def test_no_connection_or_fd_leak_over_1000_polls(server: Azurite, container: str) -> None:
    s = scaler({"blobContainerName": container}, {"connection": server.connection_string()})
    await s.get_metric_and_activity()  # the first poll opens the pool; count from there
    process = psutil.Process()
    fds = process.num_fds()
    try:
        for _ in range(1000):
            assert (await s.get_metric_and_activity()).value == 3.0
        assert process.num_fds() <= fds + 1
        assert _tcp_to(server.port) <= 2
    finally:
        await s.close()
    assert process.num_fds() < fds


# --- the example, through the CLI -------------------------------------------------------------------


def test_ebb_metrics_reads_the_example(server: Azurite, tmp_path: Path) -> None:
    text = (REPO / "examples" / "azure-blob.yaml").read_text()
    assert "127.0.0.1:10000" in text
    path = tmp_path / "azure-blob.yaml"
    path.write_text(text.replace("127.0.0.1:10000", f"127.0.0.1:{server.port}"))

    async def fill() -> None:
        async with ContainerClient.from_connection_string(server.connection_string(), "uploads") as client:
            await client.create_container()
            for name in ["incoming/a.csv", "incoming/b.csv", "incoming/old/c.csv", "incoming/d.txt", "e.csv"]:
                await client.upload_blob(name, b"x")

    asyncio.run(fill())
    result = CliRunner().invoke(app, ["metrics", str(path)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    row = row_of(result.output, "[0] azure-blob")
    assert (row["metric"], row["value"], row["target"], row["active"]) == (
        "s0-azure-blob-uploads",
        "3",
        "10 (AverageValue)",
        "yes",
    )
    assert KEY not in result.output
