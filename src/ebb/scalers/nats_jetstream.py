"""NATS JetStream trigger: a consumer's lag, read from the server's monitoring endpoint as KEDA does.

Each poll GETs `/jsz?acc=<account>&consumers=true&config=true` from `natsServerMonitoringEndpoint` and
finds the account (by id or name), the stream and the consumer. The lag is `num_pending` (messages the
consumer has not been sent yet) plus `num_ack_pending` (sent, not yet acknowledged), KEDA's formula.

Left out, unlike KEDA: in a JetStream *cluster* KEDA, when `meta_cluster.cluster_size > 1`, walks the
servers (`/varz` connect URLs) to find the consumer's leader and asks it, since only the leader's
figures are current. ebb asks only the endpoint given: point it at a server that holds the consumer
(ideally its leader), or the lag may be stale. KEDA keeps the last stream seen when a poll does not find
it; ebb reports the missing stream or consumer as an error instead.

Push (ebb only): with `natsServerAddress` (the *client* port, `nats://host:4222`), `watch()` subscribes
with plain core NATS to the stream's subjects, read from the stream's configuration. A core
subscription receives a copy of each message and consumes nothing; each message triggers `notify()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, ClassVar, NoReturn, cast
from urllib.parse import quote, urlsplit

import aiohttp
from pydantic import field_validator

from ebb.errors import MASK, SpecError, redact
from ebb.scalers.base import (
    MetricSpec,
    Scaler,
    ScalerMetadata,
    ScalerReading,
    TriggerContext,
    metric_name,
    param,
)

log = logging.getLogger(__name__)

#: Pause between attempts when the push subscription cannot be set up (server down, stream missing).
WATCH_RETRY_MAX = 10.0


class NatsJetStreamMetadata(ScalerMetadata):
    nats_server_monitoring_endpoint: str = param(
        name="natsServerMonitoringEndpoint",
        sources=("authParams", "triggerMetadata"),
        min_length=1,
        description="`host:port` of the monitoring port, with no scheme or path",
    )
    account: str | None = param(
        None,
        name="account",
        sources=("authParams", "triggerMetadata"),
        description="one is required (`$G` on a server without accounts)",
    )
    account_id: str | None = param(
        None,
        name="accountID",
        sources=("authParams", "triggerMetadata"),
        description="one is required (`$G` on a server without accounts)",
    )
    stream: str = param(name="stream", min_length=1)
    consumer: str = param(name="consumer", min_length=1)
    lag_threshold: int = param(10, name="lagThreshold", gt=0, description="> 0")
    activation_lag_threshold: int = param(0, name="activationLagThreshold")
    use_https: bool = param(False, name="useHttps")
    nats_server_address: str | None = param(
        None,
        name="natsServerAddress",
        sources=("triggerMetadata", "authParams"),
        description="ebb only: `nats://host:4222`, the client port, for push",
    )

    @field_validator("nats_server_monitoring_endpoint")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if "://" in value or "/" in value:
            raise ValueError("expected host:port of the monitoring port, without scheme or path (set useHttps)")
        return value

    @field_validator("nats_server_address")
    @classmethod
    def _nats_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("nats", "tls"):
            raise ValueError("expected nats://host:port (or tls://host:port): the server's client port")
        return value


def _mask_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return url.replace(parts.netloc, f"{MASK}@{parts.netloc.rsplit('@', 1)[1]}", 1)


class NatsJetStreamScaler(Scaler):
    type_name: ClassVar[str] = "nats-jetstream"
    Metadata: ClassVar[type[ScalerMetadata]] = NatsJetStreamMetadata
    supports_push: ClassVar[bool] = True

    def __init__(self, ctx: TriggerContext, meta: ScalerMetadata) -> None:
        super().__init__(ctx, meta)
        self.m = cast(NatsJetStreamMetadata, meta)
        if not self.m.account and not self.m.account_id:
            self._bad(
                "account",
                'give account (the NATS account name, "$G" on a server without accounts) or accountID',
            )
        self.account_id = self.m.account_id or self.m.account or ""
        scheme = "https" if self.m.use_https else "http"
        acc = quote(self.account_id, safe="")
        self.url = f"{scheme}://{self.m.nats_server_monitoring_endpoint}/jsz?acc={acc}&consumers=true&config=true"
        # Credentials in the client URL (nats://user:pass@host) must stay out of messages.
        address = urlsplit(self.m.nats_server_address or "")
        self.secrets = self.secrets | frozenset(s for s in (address.password, address.username) if s)
        self._session: aiohttp.ClientSession | None = None

    def _bad(self, key: str, message: str) -> NoReturn:
        where = f"spec.triggers[{self.ctx.trigger_index}].metadata.{key}"
        raise SpecError(self.ctx.object_ref, where, message)

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(
            name=metric_name(self.ctx, f"nats-jetstream-{self.m.stream}"),
            target=float(self.m.lag_threshold),
            metric_type=self.ctx.metric_type,
        )

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self.m.nats_server_address:
            out["natsServerAddress"] = _mask_userinfo(self.m.nats_server_address)
        return out

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=2), timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
        return self._session

    async def read(self) -> ScalerReading:
        async with self._http().get(self.url) as resp:
            if resp.status != 200:
                body = (await resp.text())[:300]
                raise self.error(f"monitoring endpoint answered {resp.status} {resp.reason} for {self.url}: {body}")
            data = await resp.json(content_type=None)
        lag = self._lag(data if isinstance(data, dict) else {})
        return ScalerReading(float(lag), lag > self.m.activation_lag_threshold)

    def _lag(self, data: dict[str, Any]) -> int:
        accounts = [
            a
            for a in data.get("account_details") or []
            if a.get("id") == self.account_id or (self.m.account and a.get("name") == self.m.account)
        ]
        if not accounts:
            raise self.error(f"account {self.account_id!r} has no JetStream data at {self.url}")
        streams = [s for a in accounts for s in a.get("stream_detail") or [] if s.get("name") == self.m.stream]
        if not streams:
            raise self.error(f"stream {self.m.stream!r} not found in account {self.account_id!r}")
        for stream in streams:
            for consumer in stream.get("consumer_detail") or []:
                if consumer.get("name") == self.m.consumer:
                    return int(consumer.get("num_pending", 0)) + int(consumer.get("num_ack_pending", 0))
        raise self.error(f"consumer {self.m.consumer!r} not found in stream {self.m.stream!r}")

    async def watch(self, notify: Callable[[], None]) -> None:
        """Notify on every message published to the stream's subjects, reconnecting until cancelled."""
        if not self.m.nats_server_address:
            raise self.error(
                "push needs natsServerAddress (nats://host:port, the server's client port): "
                "the monitoring endpoint cannot deliver messages"
            )
        import nats  # loaded only when push is used
        import nats.errors
        import nats.js.errors

        async def quiet(exc: Exception) -> None:
            log.debug("%s: nats: %s", self.ctx.object_ref, redact(str(exc), self.secrets))

        async def on_message(_msg: Any) -> None:
            notify()

        pause = 0.5
        while True:
            # max_reconnect_attempts=-1: nats-py keeps (re)connecting by itself, subscriptions included.
            nc = await nats.connect(
                self.m.nats_server_address,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                connect_timeout=max(1, int(self.timeout)),
                error_cb=quiet,
                name=f"ebb-{self.ctx.namespace}-{self.ctx.name}",
            )
            try:
                info = await nc.jetstream().stream_info(self.m.stream)
                subjects = list(info.config.subjects or [])
                if not subjects:
                    raise self.error(
                        f"stream {self.m.stream!r} has no subjects of its own (a mirror or sourced stream): "
                        "nothing to watch; polling still works"
                    )
                for subject in subjects:
                    await nc.subscribe(subject, cb=on_message)
                pause = 0.5
                await asyncio.Future()  # until cancelled; the client reconnects on its own meanwhile
            except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
                log.warning(
                    "%s: push for stream %r not set up, retrying in %gs: %s",
                    self.ctx.object_ref,
                    self.m.stream,
                    pause,
                    redact(str(exc) or type(exc).__name__, self.secrets),
                )
            finally:
                with contextlib.suppress(Exception):
                    await nc.close()
            await asyncio.sleep(pause)
            pause = min(pause * 2, WATCH_RETRY_MAX)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
