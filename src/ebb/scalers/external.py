"""The `external` trigger: a scaler that is its own gRPC server, spoken to in KEDA's external scaler protocol.

Any external scaler written for KEDA works unchanged: ebb is the client of `externalscaler.ExternalScaler`
(src/ebb/scalers/_proto/externalscaler.proto). GetMetricSpec is asked once and cached; each poll calls
GetMetrics then IsActive, as KEDA does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Awaitable, Mapping
from typing import Any, ClassVar, TypeVar

import grpc
import grpc.aio

from ebb.errors import ScalerError
from ebb.scalers._proto import externalscaler_pb2 as pb
from ebb.scalers._proto.externalscaler_pb2_grpc import ExternalScalerStub
from ebb.scalers.base import (
    MetricSpec,
    Scaler,
    ScalerMetadata,
    ScalerReading,
    TriggerContext,
    metric_name,
    param,
    parse_metadata,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
S = TypeVar("S", bound="ExternalScaler")

# KEDA dials external scalers with round-robin balancing, so a headless Service spreads calls over its pods.
_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
# gRPC's default reconnect backoff grows to 120 s; an autoscaler must notice a restarted scaler sooner.
_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.max_reconnect_backoff_ms", 30_000),
]


class ExternalMetadata(ScalerMetadata):
    scaler_address: str = param(name="scalerAddress", min_length=1, description="`host:port`")
    enable_tls: bool = param(False, name="enableTLS")
    unsafe_ssl: bool = param(False, name="unsafeSsl")
    ca_cert: str | None = param(None, name="caCert", sources=("authParams",), description="PEM")
    tls_client_cert: str | None = param(
        None,
        name="tlsClientCert",
        sources=("authParams",),
        description=(
            "a client certificate is used only when both are given (as in KEDA, one without the other is ignored)"
        ),
    )
    tls_client_key: str | None = param(
        None,
        name="tlsClientKey",
        sources=("authParams",),
        secret=True,
        description=(
            "a client certificate is used only when both are given (as in KEDA, one without the other is ignored)"
        ),
    )


def forwarded_metadata(metadata: Mapping[str, str], resolved_env: Mapping[str, str] | None) -> dict[str, str]:
    """KEDA's `scalerMetadata`: the trigger metadata as written, each `<x>FromEnv` value replaced by the
    environment value it names (and dropped when that is unset or empty)."""
    resolved_env = resolved_env or {}
    out: dict[str, str] = {}
    for key, value in metadata.items():
        if key.endswith("FromEnv"):
            if resolved_env.get(value):
                out[key] = resolved_env[value]
        else:
            out[key] = value
    return out


def _split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.removeprefix("dns:///").rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"expected host:port, got {address!r}")
    return host.strip("[]"), int(port)


class ExternalScaler(Scaler):
    """Client of one external scaler server; one gRPC channel per trigger, opened on first use."""

    type_name: ClassVar[str] = "external"
    forwards_metadata: ClassVar[bool] = True
    Metadata: ClassVar[type[ScalerMetadata]] = ExternalMetadata

    def __init__(
        self,
        ctx: TriggerContext,
        meta: ScalerMetadata,
        trigger_metadata: Mapping[str, str] | None = None,
        resolved_env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(ctx, meta)
        assert isinstance(meta, ExternalMetadata)
        self.m = meta
        # KEDA (util.NewTLSConfig) loads a client certificate only when both halves are given, and otherwise
        # goes on without one: half a pair is ignored, not refused.
        self.client_pair: tuple[str, str] | None = (
            (meta.tls_client_cert, meta.tls_client_key) if meta.tls_client_cert and meta.tls_client_key else None
        )
        if trigger_metadata is None:
            # Built without the raw trigger metadata: forward what the typed metadata still knows.
            trigger_metadata = {"scalerAddress": meta.scaler_address}
            if meta.enable_tls:
                trigger_metadata["enableTLS"] = "true"
            if meta.unsafe_ssl:
                trigger_metadata["unsafeSsl"] = "true"
        #: Sent with every call, as KEDA sends it: the object's name and namespace and the trigger metadata.
        self.scaled_object_ref = pb.ScaledObjectRef(
            name=ctx.name,
            namespace=ctx.namespace,
            scalerMetadata=forwarded_metadata(trigger_metadata, resolved_env),
        )
        self._channel: grpc.aio.Channel | None = None
        self._stub: ExternalScalerStub | None = None
        self._channel_lock = asyncio.Lock()
        self._closed = False
        self._spec: MetricSpec | None = None
        # The name the server gave, without the `s<i>-` prefix: GetMetrics asks for exactly this.
        self._server_metric_name = ""

    @classmethod
    def from_trigger(
        cls: type[S],
        ctx: TriggerContext,
        metadata: Mapping[str, str],
        auth_params: Mapping[str, str] | None = None,
        resolved_env: Mapping[str, str] | None = None,
    ) -> S:
        """Parse and build, keeping the raw trigger metadata: the server gets it all as `scalerMetadata`."""
        meta = parse_metadata(cls.Metadata, ctx, metadata, auth_params, resolved_env)
        return cls(ctx, meta, trigger_metadata=metadata, resolved_env=resolved_env)

    # -- connection ---------------------------------------------------------------------------------------

    def _uses_tls(self) -> bool:
        m = self.m
        return bool(m.enable_tls or self.client_pair or m.ca_cert)

    async def _open_channel(self) -> grpc.aio.Channel:
        m = self.m
        if not self._uses_tls():
            return grpc.aio.insecure_channel(m.scaler_address, options=_CHANNEL_OPTIONS)
        options = list(_CHANNEL_OPTIONS)
        root = m.ca_cert.encode() if m.ca_cert else None
        if m.unsafe_ssl:
            root, name = await self._pin_server_certificate()
            if name:
                options.append(("grpc.ssl_target_name_override", name))
        credentials = grpc.ssl_channel_credentials(
            root_certificates=root,
            private_key=self.client_pair[1].encode() if self.client_pair else None,
            certificate_chain=self.client_pair[0].encode() if self.client_pair else None,
        )
        return grpc.aio.secure_channel(m.scaler_address, credentials, options=options)

    async def _pin_server_certificate(self) -> tuple[bytes, str | None]:
        """unsafeSsl: trust whatever certificate the server presents now, under whatever name it carries.

        gRPC for Python cannot skip verification as Go's InsecureSkipVerify does; pinning the presented
        certificate is the closest equivalent (it covers self-signed certificates, the usual reason).
        """
        try:
            host, port = _split_host_port(self.m.scaler_address)
        except ValueError as exc:
            raise self.error(f"scalerAddress: {exc}") from None
        blind = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        blind.check_hostname = False
        blind.verify_mode = ssl.CERT_NONE
        blind.set_alpn_protocols(["h2"])
        der = await self._handshake(host, port, blind, binary=True)
        assert isinstance(der, bytes)
        pem = ssl.DER_cert_to_PEM_cert(der)
        # A second handshake trusting only that certificate makes ssl decode its names for us.
        pinned = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        pinned.check_hostname = False
        pinned.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        pinned.load_verify_locations(cadata=pem)
        pinned.set_alpn_protocols(["h2"])
        info = await self._handshake(host, port, pinned, binary=False)
        assert isinstance(info, dict)
        names = [v for k, v in info.get("subjectAltName", ()) if k in ("DNS", "IP Address")]
        names += [v for rdn in info.get("subject", ()) for k, v in rdn if k == "commonName"]
        return pem.encode(), (names[0] if names else None)

    async def _handshake(self, host: str, port: int, context: ssl.SSLContext, binary: bool) -> Any:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=context, server_hostname=host), self.timeout
            )
        except (OSError, TimeoutError) as exc:
            detail = str(exc) or type(exc).__name__
            raise self.error(f"TLS handshake with {self.m.scaler_address} failed: {detail}") from None
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            return ssl_object.getpeercert(binary_form=binary)
        finally:
            # No TLS goodbye: a gRPC server that has started HTTP/2 may never answer one.
            writer.transport.abort()

    async def _get_stub(self) -> ExternalScalerStub:
        if self._stub is None:
            async with self._channel_lock:
                if self._stub is None:
                    self._channel = await self._open_channel()
                    self._stub = ExternalScalerStub(self._channel)  # type: ignore[no-untyped-call]
        return self._stub

    async def _call(self, rpc: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            raise self.error(self._rpc_failure(rpc, exc)) from None

    def _rpc_failure(self, rpc: str, exc: grpc.aio.AioRpcError) -> str:
        return f"{rpc} on {self.m.scaler_address} failed: {exc.code().name}: {exc.details() or 'no details'}"

    async def _bounded(self, work: Awaitable[T]) -> T:
        """Bound by the timeout, and make every failure a ScalerError (for calls made outside `read`)."""
        try:
            return await asyncio.wait_for(work, self.timeout)
        except ScalerError:
            raise
        except TimeoutError:
            raise self.error(f"no answer from {self.m.scaler_address} within {self.timeout:g}s") from None
        except Exception as exc:
            raise self.error(f"{type(exc).__name__}: {exc}") from None

    # -- metric spec --------------------------------------------------------------------------------------

    def _use_spec(self, response: pb.GetMetricSpecResponse) -> MetricSpec:
        if not response.metricSpecs:
            raise self.error("GetMetricSpec returned no metric spec")
        if len(response.metricSpecs) > 1:
            log.warning(
                "%s %s: GetMetricSpec returned %d metric specs; ebb uses the first (%s)",
                self.ctx.object_ref,
                self.ctx.trigger_ref,
                len(response.metricSpecs),
                response.metricSpecs[0].metricName,
            )
        first = response.metricSpecs[0]
        target = first.targetSizeFloat if first.targetSizeFloat > 0 else float(first.targetSize)
        if not first.metricName:
            raise self.error("GetMetricSpec returned a metric spec without metricName")
        if target <= 0:
            raise self.error(
                f"GetMetricSpec gave metric {first.metricName!r} a target of {target:g}; "
                "targetSizeFloat (or targetSize) must be positive"
            )
        self._server_metric_name = first.metricName
        self._spec = MetricSpec(
            name=metric_name(self.ctx, first.metricName), target=target, metric_type=self.ctx.metric_type
        )
        return self._spec

    async def refresh_metric_spec(self) -> MetricSpec:
        """Ask the server for its metric spec (GetMetricSpec) and cache it."""
        stub = await self._get_stub()
        response = await self._call("GetMetricSpec", stub.GetMetricSpec(self.scaled_object_ref, timeout=self.timeout))
        return self._use_spec(response)

    async def prepare(self) -> None:
        """Fetch the metric spec once; until it succeeds, every call tries again."""
        if self._spec is None:
            await self._bounded(self.refresh_metric_spec())

    def metric_spec(self) -> MetricSpec:
        if self._spec is None:
            raise self.error(
                f"the metric spec of external scaler {self.m.scaler_address} is not known yet: "
                "it is asked for (GetMetricSpec) before the first read"
            )
        return self._spec

    # -- reading ------------------------------------------------------------------------------------------

    async def read(self) -> ScalerReading:
        if self._spec is None:
            await self.refresh_metric_spec()
        stub = await self._get_stub()
        request = pb.GetMetricsRequest(scaledObjectRef=self.scaled_object_ref, metricName=self._server_metric_name)
        metrics = await self._call("GetMetrics", stub.GetMetrics(request, timeout=self.timeout))
        if not metrics.metricValues:
            raise self.error(f"GetMetrics returned no value for metric {self._server_metric_name!r}")
        # The HPA adds up every value returned for an external metric; so does ebb.
        value = sum(
            v.metricValueFloat if v.metricValueFloat > 0 else float(v.metricValue) for v in metrics.metricValues
        )
        active = await self._call("IsActive", stub.IsActive(self.scaled_object_ref, timeout=self.timeout))
        return ScalerReading(value=value, active=active.result)

    async def close(self) -> None:
        self._closed = True
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()
