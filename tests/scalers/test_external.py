"""external and external-push triggers against a real gRPC server that speaks KEDA's external scaler protocol.

The server below is a small external scaler written for the tests (grpc.aio on a free loopback port)
whose answers the tests set; TLS certificates are made with the openssl command.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import pytest

from ebb.errors import ScalerError, SpecError
from ebb.scalers import Scaler, TriggerContext, build_scaler
from ebb.scalers._proto import externalscaler_pb2 as pb
from ebb.scalers._proto.externalscaler_pb2_grpc import (
    ExternalScalerServicer,
    add_ExternalScalerServicer_to_server,
)
from ebb.scalers.external import ExternalScaler
from ebb.scalers.external_push import ExternalPushScaler
from tests.scalers._prometheus_server import Certs, free_port, make_certs

Ctx = grpc.aio.ServicerContext[Any, Any]


class TestExternalScaler(ExternalScalerServicer):
    """An external scaler whose answers are set by the test; it records what it was asked."""

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        self.metric_name = "queue"
        self.target_size = 0
        self.target_size_float = 10.0
        self.specs: int = 1
        self.values: list[tuple[int, float]] = [(0, 7.0)]
        self.active = True
        self.fail_metrics: str | None = None
        self.hang = False
        self.spec_calls = 0
        self.refs: list[pb.ScaledObjectRef] = []
        self.metric_requests: list[str] = []
        self.active_stream: asyncio.Queue[bool] = asyncio.Queue()
        self.spec_stream: asyncio.Queue[float] | None = None
        self.streams_opened = 0

    def _spec(self, target_float: float) -> pb.GetMetricSpecResponse:
        spec = pb.MetricSpec(metricName=self.metric_name, targetSize=self.target_size, targetSizeFloat=target_float)
        return pb.GetMetricSpecResponse(metricSpecs=[spec] * self.specs)

    async def GetMetricSpec(self, request: pb.ScaledObjectRef, context: Ctx) -> object:
        self.spec_calls += 1
        self.refs.append(request)
        return self._spec(self.target_size_float)

    async def GetMetrics(self, request: pb.GetMetricsRequest, context: Ctx) -> object:
        self.refs.append(request.scaledObjectRef)
        self.metric_requests.append(request.metricName)
        if self.hang:
            await asyncio.Event().wait()
        if self.fail_metrics:
            await context.abort(grpc.StatusCode.INTERNAL, self.fail_metrics)
        values = [
            pb.MetricValue(metricName=request.metricName, metricValue=i, metricValueFloat=f) for i, f in self.values
        ]
        return pb.GetMetricsResponse(metricValues=values)

    async def IsActive(self, request: pb.ScaledObjectRef, context: Ctx) -> object:
        self.refs.append(request)
        return pb.IsActiveResponse(result=self.active)

    async def StreamIsActive(self, request: pb.ScaledObjectRef, context: Ctx) -> AsyncIterator[pb.IsActiveResponse]:
        self.streams_opened += 1
        while True:
            yield pb.IsActiveResponse(result=await self.active_stream.get())

    async def StreamMetricSpec(
        self, request: pb.ScaledObjectRef, context: Ctx
    ) -> AsyncIterator[pb.GetMetricSpecResponse]:
        if self.spec_stream is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not implemented")
        assert self.spec_stream is not None
        while True:
            yield self._spec(await self.spec_stream.get())


@dataclass
class ScalerServer:
    servicer: TestExternalScaler
    port: int = 0
    credentials: grpc.ServerCredentials | None = None
    _server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = grpc.aio.server()
        add_ExternalScalerServicer_to_server(self.servicer, self._server)  # type: ignore[no-untyped-call]
        listen = f"127.0.0.1:{self.port}"
        if self.credentials is None:
            self.port = self._server.add_insecure_port(listen)
        else:
            self.port = self._server.add_secure_port(listen, self.credentials)
        await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None


@pytest.fixture
async def server() -> AsyncIterator[ScalerServer]:
    srv = ScalerServer(TestExternalScaler())
    await srv.start()
    yield srv
    await srv.stop()


def ctx(index: int = 0, timeout: float = 3.0, trigger_type: str = "external") -> TriggerContext:
    return TriggerContext(
        namespace="shop", name="orders", trigger_index=index, trigger_type=trigger_type, timeout=timeout
    )


@contextlib.asynccontextmanager
async def scaler(
    address: str,
    trigger_type: str = "external",
    auth_params: Mapping[str, str] | None = None,
    index: int = 0,
    deadline: float = 3.0,
    **metadata: str,
) -> AsyncIterator[Scaler]:
    s = build_scaler(
        trigger_type,
        {"scalerAddress": address, **metadata},
        ctx=ctx(index, deadline, trigger_type),
        auth_params=auth_params,
    )
    try:
        yield s
    finally:
        await s.close()


# -- pull ------------------------------------------------------------------------------------------------


async def test_metric_spec_value_and_activity(server: ScalerServer) -> None:
    async with scaler(server.address, index=1) as s:
        await s.prepare()
        spec = s.metric_spec()
        reading = await s.get_metric_and_activity()
    assert (spec.name, spec.target, spec.metric_type) == ("s1-queue", 10.0, "AverageValue")
    assert (reading.value, reading.active) == (7.0, True)
    # The server is asked for its own name, without ebb's index prefix.
    assert server.servicer.metric_requests == ["queue"]


async def test_is_active_false_is_reported(server: ScalerServer) -> None:
    server.servicer.active = False
    server.servicer.values = [(0, 3.0)]
    async with scaler(server.address) as s:
        reading = await s.get_metric_and_activity()
    assert (reading.value, reading.active) == (3.0, False)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([(0, 2.5)], 2.5),
        ([(9, 0.0)], 9.0),  # the deprecated int field counts when the float one is not positive
        ([(9, 4.5)], 4.5),
        ([(0, 0.0)], 0.0),
        ([(0, 3.0), (4, 0.0)], 7.0),  # several values add up, as the HPA adds them
    ],
)
async def test_metric_value_fields(server: ScalerServer, values: list[tuple[int, float]], expected: float) -> None:
    server.servicer.values = values
    async with scaler(server.address) as s:
        assert (await s.get_metric_and_activity()).value == expected


@pytest.mark.parametrize(("target_int", "target_float", "expected"), [(0, 2.5, 2.5), (12, 0.0, 12.0), (12, 6.0, 6.0)])
async def test_metric_spec_target_fields(
    server: ScalerServer, target_int: int, target_float: float, expected: float
) -> None:
    server.servicer.target_size, server.servicer.target_size_float = target_int, target_float
    async with scaler(server.address) as s:
        await s.prepare()
        assert s.metric_spec().target == expected


async def test_metric_spec_is_fetched_once_and_lazily(server: ScalerServer) -> None:
    async with scaler(server.address) as s:
        with pytest.raises(ScalerError, match="not known yet"):
            s.metric_spec()
        # The first read fetches it when nobody prepared the scaler.
        await s.get_metric_and_activity()
        await s.prepare()
        await s.get_metric_and_activity()
        assert s.metric_spec().name == "s0-queue"
    assert server.servicer.spec_calls == 1


@pytest.mark.parametrize(
    ("specs", "target_float", "reason"),
    [(0, 10.0, "no metric spec"), (1, 0.0, "must be positive")],
)
async def test_unusable_metric_spec_is_an_error(
    server: ScalerServer, specs: int, target_float: float, reason: str
) -> None:
    server.servicer.specs, server.servicer.target_size_float = specs, target_float
    async with scaler(server.address) as s:
        with pytest.raises(ScalerError, match=reason):
            await s.prepare()
        with pytest.raises(ScalerError, match=reason):
            await s.get_metric_and_activity()


async def test_object_and_all_metadata_are_forwarded(server: ScalerServer) -> None:
    metadata = {
        "scalerAddress": server.address,
        "queueName": "jobs",
        "targetLength": "5",
        "passwordFromEnv": "QUEUE_PW",
        "hostFromEnv": "UNSET_VAR",
    }
    s = ExternalScaler.from_trigger(ctx(), metadata, resolved_env={"QUEUE_PW": "pw-from-env"})
    try:
        await s.get_metric_and_activity()
    finally:
        await s.close()
    assert len(server.servicer.refs) == 3  # GetMetricSpec, GetMetrics, IsActive
    for ref in server.servicer.refs:
        assert (ref.name, ref.namespace) == ("orders", "shop")
        # As KEDA: *FromEnv keys carry the resolved value; unresolved ones are dropped.
        assert dict(ref.scalerMetadata) == {
            "scalerAddress": server.address,
            "queueName": "jobs",
            "targetLength": "5",
            "passwordFromEnv": "pw-from-env",
        }


async def test_server_down_is_an_error() -> None:
    address = f"127.0.0.1:{free_port()}"
    async with scaler(address, deadline=2.0) as s:
        with pytest.raises(ScalerError, match="UNAVAILABLE") as err:
            await s.prepare()
        assert "ScaledObject shop/orders" in str(err.value)
        with pytest.raises(ScalerError, match=address):
            await s.get_metric_and_activity()


async def test_a_server_that_does_not_answer_is_an_error_after_the_timeout(server: ScalerServer) -> None:
    server.servicer.hang = True
    async with scaler(server.address, deadline=0.5) as s:
        with pytest.raises(ScalerError):
            await s.get_metric_and_activity()


async def test_get_metrics_failure_is_an_error_with_the_servers_reason(server: ScalerServer) -> None:
    server.servicer.fail_metrics = "backlog store unreachable"
    async with scaler(server.address) as s:
        with pytest.raises(ScalerError, match=r"GetMetrics.*INTERNAL: backlog store unreachable"):
            await s.get_metric_and_activity()


async def test_recovers_when_the_server_comes_back(server: ScalerServer) -> None:
    async with scaler(server.address) as s:
        assert (await s.get_metric_and_activity()).value == 7.0
        await server.stop()
        with pytest.raises(ScalerError):
            await s.get_metric_and_activity()
        server.servicer.values = [(0, 8.0)]
        await server.start()
        for _ in range(100):  # the channel reconnects with gRPC's backoff
            with contextlib.suppress(ScalerError):
                assert (await s.get_metric_and_activity()).value == 8.0
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("no reading after the server restarted")


@pytest.mark.parametrize(
    ("metadata", "auth", "field"),
    [
        ({}, {}, "scalerAddress"),
        ({"scalerAddress": "h:1", "enableTLS": "maybe"}, {}, "enableTLS"),
        ({"scalerAddress": "h:1", "tlsClientKey": "k"}, {}, "tlsClientKey"),
    ],
)
def test_bad_metadata_names_the_field(metadata: dict[str, str], auth: dict[str, str], field: str) -> None:
    with pytest.raises(SpecError) as err:
        build_scaler("external", metadata, auth_params=auth)
    assert field in err.value.field


@pytest.mark.parametrize("auth", [{"tlsClientCert": "x"}, {"tlsClientKey": "k"}])
def test_half_a_client_certificate_is_ignored_as_keda_does(auth: dict[str, str]) -> None:
    s = build_scaler("external", {"scalerAddress": "h:1"}, auth_params=auth)
    assert isinstance(s, ExternalScaler)
    assert s.client_pair is None
    assert not s._uses_tls()  # no enableTLS, no CA: KEDA dials in plain text


# -- push ------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def watching(s: Scaler) -> AsyncIterator[asyncio.Queue[None]]:
    """Run `s.watch` in a task; each notify() puts an item in the yielded queue."""
    assert isinstance(s, ExternalPushScaler)
    s.reconnect_delay = 0.05
    notified: asyncio.Queue[None] = asyncio.Queue()
    task = asyncio.create_task(s.watch(lambda: notified.put_nowait(None)))
    try:
        yield notified
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_push_notifies_on_true_and_ignores_false(server: ScalerServer) -> None:
    async with scaler(server.address, trigger_type="external-push") as s:
        assert s.supports_push
        async with watching(s) as notified:
            server.servicer.active_stream.put_nowait(False)
            server.servicer.active_stream.put_nowait(True)
            await asyncio.wait_for(notified.get(), 5)
            # The false before it was delivered first and did not notify.
            assert notified.empty()
            server.servicer.active_stream.put_nowait(True)
            await asyncio.wait_for(notified.get(), 5)


async def test_push_reconnects_after_the_server_restarts(server: ScalerServer) -> None:
    async with scaler(server.address, trigger_type="external-push") as s, watching(s) as notified:
        server.servicer.active_stream.put_nowait(True)
        await asyncio.wait_for(notified.get(), 5)
        await server.stop()
        restarted = ScalerServer(TestExternalScaler(), port=server.port)
        await restarted.start()
        try:
            restarted.servicer.active_stream.put_nowait(True)
            await asyncio.wait_for(notified.get(), 10)
            assert restarted.servicer.streams_opened == 1
        finally:
            await restarted.stop()


async def test_push_waits_for_a_server_that_is_not_up_yet() -> None:
    port = free_port()
    async with scaler(f"127.0.0.1:{port}", trigger_type="external-push") as s, watching(s) as notified:
        await asyncio.sleep(0.2)  # let the watch fail to connect at least once
        late = ScalerServer(TestExternalScaler(), port=port)
        await late.start()
        try:
            late.servicer.active_stream.put_nowait(True)
            await asyncio.wait_for(notified.get(), 10)
        finally:
            await late.stop()


async def test_push_follows_streamed_metric_specs(server: ScalerServer) -> None:
    server.servicer.spec_stream = asyncio.Queue()
    async with scaler(server.address, trigger_type="external-push") as s:
        await s.prepare()
        assert s.metric_spec().target == 10.0
        async with watching(s):
            server.servicer.spec_stream.put_nowait(25.0)
            for _ in range(100):
                if s.metric_spec().target == 25.0:
                    break
                await asyncio.sleep(0.02)
        assert s.metric_spec().target == 25.0
        assert s.metric_spec().name == "s0-queue"


async def test_push_still_polls_like_external(server: ScalerServer) -> None:
    async with scaler(server.address, trigger_type="external-push") as s:
        reading = await s.get_metric_and_activity()
    assert (reading.value, reading.active) == (7.0, True)


# -- TLS -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    made = make_certs(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("the openssl command is needed to make test certificates")
    return made


@contextlib.asynccontextmanager
async def tls_server(key: bytes, cert: bytes, client_ca: bytes | None = None) -> AsyncIterator[ScalerServer]:
    creds = grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
    srv = ScalerServer(TestExternalScaler(), credentials=creds)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def test_tls_with_the_servers_ca(certs: Certs) -> None:
    async with tls_server(certs.server_key, certs.server_cert) as srv:
        async with scaler(srv.address, auth_params={"caCert": certs.ca.decode()}) as s:
            assert (await s.get_metric_and_activity()).value == 7.0
        # Without the CA (system roots only) the certificate is refused.
        async with scaler(srv.address, enableTLS="true") as s:
            with pytest.raises(ScalerError, match="UNAVAILABLE"):
                await s.get_metric_and_activity()


async def test_tls_client_certificate(certs: Certs) -> None:
    async with tls_server(certs.server_key, certs.server_cert, client_ca=certs.ca) as srv:
        auth = {
            "caCert": certs.ca.decode(),
            "tlsClientCert": certs.client_cert.decode(),
            "tlsClientKey": certs.client_key.decode(),
        }
        async with scaler(srv.address, auth_params=auth) as s:
            assert (await s.get_metric_and_activity()).value == 7.0
        async with scaler(srv.address, auth_params={"caCert": certs.ca.decode()}) as s:
            with pytest.raises(ScalerError) as err:
                await s.get_metric_and_activity()
    assert certs.client_key.decode() not in str(err.value)


async def test_unsafe_ssl_accepts_a_certificate_for_another_name(certs: Certs) -> None:
    async with tls_server(certs.other_key, certs.other_cert) as srv:
        async with scaler(srv.address, enableTLS="true", unsafeSsl="true") as s:
            assert (await s.get_metric_and_activity()).value == 7.0
        async with scaler(srv.address, auth_params={"caCert": certs.other_cert.decode()}) as s:
            with pytest.raises(ScalerError):
                await s.get_metric_and_activity()
