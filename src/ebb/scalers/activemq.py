"""`activemq`: KEDA's ActiveMQ (Classic) scaler. The metric is a queue's QueueSize, read through Jolokia.

As KEDA (pkg/scalers/activemq_scaler.go): GET
`http://<managementEndpoint>/api/jolokia/read/org.apache.activemq:type=Broker,brokerName=<brokerName>,
destinationType=Queue,destinationName=<destinationName>/QueueSize` with HTTP Basic credentials and an `Origin`
header (Jolokia checks it when CORS is restricted). `restAPITemplate` replaces that URL; the management
endpoint, broker and destination are then read from it, and `{{.ManagementEndpoint}}`, `{{.BrokerName}}`,
`{{.DestinationName}}` in it are filled in. Only an HTTP 200 whose Jolokia `status` is 200 counts.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, NoReturn
from urllib.parse import parse_qs, urlsplit

import aiohttp

from ebb.errors import SpecError
from ebb.scalers.base import (
    MetricSpec,
    Scaler,
    ScalerMetadata,
    ScalerReading,
    TriggerContext,
    activity,
    metric_name,
    param,
)
from ebb.scalers.rabbitmq import basic_auth

DEFAULT_REST_API_TEMPLATE = (
    "http://{{.ManagementEndpoint}}/api/jolokia/read/org.apache.activemq:type=Broker,"
    "brokerName={{.BrokerName}},destinationType=Queue,destinationName={{.DestinationName}}/QueueSize"
)
_PLACEHOLDER = re.compile(r"\{\{\s*\.(ManagementEndpoint|BrokerName|DestinationName)\s*\}\}")


class ActiveMQMetadata(ScalerMetadata):
    management_endpoint: str | None = param(
        None,
        name="managementEndpoint",
        description=("`host:port` of the broker's web server (8161 upstream). Not needed with `restAPITemplate`"),
    )
    destination_name: str | None = param(
        None, name="destinationName", description="the queue. Not needed with `restAPITemplate`"
    )
    broker_name: str | None = param(
        None, name="brokerName", description="the broker's `brokerName`. Not needed with `restAPITemplate`"
    )
    # KEDA also reads the password from trigger metadata; ebb refuses it there.
    username: str = param(
        name="username",
        sources=("authParams", "resolvedEnv", "triggerMetadata"),
        min_length=1,
        description="the Jolokia login (upstream: `conf/jetty-realm.properties`)",
    )
    password: str = param(name="password", sources=("authParams", "resolvedEnv"), secret=True, min_length=1)
    cors_header: str | None = param(None, name="corsHeader", description="the `Origin` header sent")
    rest_api_template: str | None = param(
        None,
        name="restAPITemplate",
        description=(
            "a whole URL instead. ebb reads the endpoint from its host, and `brokerName` and "
            "`destinationName` from the MBean name in its path. `{{.ManagementEndpoint}}`, "
            "`{{.BrokerName}}`, `{{.DestinationName}}` are filled in"
        ),
    )
    target_queue_size: int = param(10, name="targetQueueSize", gt=0, description="> 0, messages per replica")
    activation_target_queue_size: int = param(0, name="activationTargetQueueSize")


class ActiveMQScaler(Scaler):
    """Scales on the messages waiting in an ActiveMQ Classic queue; `targetQueueSize` per replica."""

    type_name: ClassVar[str] = "activemq"
    Metadata: ClassVar[type[ScalerMetadata]] = ActiveMQMetadata
    meta: ActiveMQMetadata

    def __init__(self, ctx: TriggerContext, meta: ScalerMetadata) -> None:
        super().__init__(ctx, meta)
        m = self.meta
        if m.rest_api_template:
            template = m.rest_api_template
            endpoint, broker, destination = self._from_template(template)
        else:
            template = DEFAULT_REST_API_TEMPLATE
            for key, given in (
                ("managementEndpoint", m.management_endpoint),
                ("destinationName", m.destination_name),
                ("brokerName", m.broker_name),
            ):
                if not given:
                    self._bad(key, "required (or give restAPITemplate)")
            assert m.management_endpoint and m.broker_name and m.destination_name
            endpoint, broker, destination = m.management_endpoint, m.broker_name, m.destination_name
        self.management_endpoint, self.broker_name, self.destination_name = endpoint, broker, destination
        values = {"ManagementEndpoint": endpoint, "BrokerName": broker, "DestinationName": destination}
        self.url = _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)
        if "{{" in self.url:
            self._bad(
                "restAPITemplate",
                "only {{.ManagementEndpoint}}, {{.BrokerName}} and {{.DestinationName}} can be filled in",
            )
        self.origin = m.cors_header or f"http://{endpoint}"
        self._auth = basic_auth(m.username, m.password)
        self._session: aiohttp.ClientSession | None = None

    def _bad(self, key: str, message: str) -> NoReturn:
        raise SpecError(self.ctx.object_ref, f"spec.triggers[{self.ctx.trigger_index}].metadata.{key}", message)

    def _from_template(self, template: str) -> tuple[str, str, str]:
        """KEDA's reading of restAPITemplate: the URL's host, and the MBean name's brokerName and destinationName."""
        parts = urlsplit(template)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self._bad("restAPITemplate", "expected an http:// or https:// URL")
        # The MBean name: what follows the first ":" of the path, up to the next "/", as key=value pairs.
        mbean = parts.path.split(":", 1)[1].split("/", 1)[0] if ":" in parts.path else ""
        keys = parse_qs(mbean.replace(",", "&"))
        found: dict[str, str] = {}
        for key in ("brokerName", "destinationName"):
            value = keys.get(key, [""])[0]
            if not value:
                self._bad("restAPITemplate", f"the URL names no {key} (…:type=Broker,brokerName=…,destinationName=…)")
            found[key] = value
        return parts.netloc, found["brokerName"], found["destinationName"]

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(
            name=metric_name(self.ctx, f"activemq-{self.destination_name}"),
            target=float(self.meta.target_queue_size),
            metric_type=self.ctx.metric_type,
        )

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(managementEndpoint=self.management_endpoint, brokerName=self.broker_name)
        out["destinationName"] = self.destination_name
        return out

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=2),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return self._session

    async def read(self) -> ScalerReading:
        size = await self._queue_size()
        return ScalerReading(value=float(size), active=activity(size, self.meta.activation_target_queue_size))

    async def _queue_size(self) -> int:
        headers = {"Authorization": self._auth, "Content-Type": "application/json", "Origin": self.origin}
        where = self.management_endpoint
        try:
            async with self._client().get(self.url, headers=headers) as resp:
                if resp.status != 200:
                    hint = ": check username and password" if resp.status in (401, 403) else ""
                    raise self.error(f"Jolokia at {where} answered {resp.status} {resp.reason}{hint}")
                data = await resp.json(content_type=None)
        except aiohttp.ClientConnectionError as exc:
            raise self.error(f"cannot reach Jolokia at {where}: {exc}") from None
        except ValueError:
            raise self.error(f"Jolokia at {where} did not answer with JSON: is it /api/jolokia?") from None
        if not isinstance(data, dict):
            raise self.error(f"Jolokia at {where} answered something other than a JSON object")
        status = data.get("status")
        if status != 200:
            error = str(data.get("error") or "no error text").splitlines()[0][:200]
            raise self.error(f"Jolokia at {where} answered status {status} for {self.destination_name!r}: {error}")
        value = data.get("value")
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(f"Jolokia at {where} answered a QueueSize that is not a whole number: {value!r}")
        return value

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
