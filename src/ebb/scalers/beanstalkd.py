"""`beanstalkd`: KEDA's beanstalkd scaler. The metric is a tube's ready and reserved jobs.

As KEDA (pkg/scalers/beanstalkd_scaler.go): `stats-tube` gives `current-jobs-ready` + `current-jobs-reserved`,
plus `current-jobs-delayed` with `includeDelayed`; buried jobs are not counted; a tube that does not exist
(beanstalkd drops a tube nobody uses and that holds no job) counts 0.

The protocol is a line of text each way, so ebb speaks it itself over one asyncio connection per scaler
(the Python clients are synchronous or unmaintained). A request that fails or is interrupted drops the
connection, so that a late answer is never read as the next one's.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any, ClassVar, NoReturn
from urllib.parse import quote_plus

from pydantic import field_validator

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
from ebb.units import parse_duration

#: beanstalkd's tube names: up to 200 bytes of letters, digits and `-+/;.$_()`, not starting with `-`.
_TUBE = re.compile(r"[A-Za-z0-9+/;.$_()][A-Za-z0-9\-+/;.$_()]{0,199}")
_COUNTED = ("current-jobs-ready", "current-jobs-reserved", "current-jobs-delayed")
#: A stats answer is a few hundred bytes; more is not beanstalkd.
_MAX_STATS_BYTES = 65536


class BeanstalkdMetadata(ScalerMetadata):
    server: str = param(name="server", min_length=1, description="`host:port` (beanstalkd's port is 11300)")
    tube: str = param(
        name="tube",
        min_length=1,
        description=("a beanstalkd tube name: up to 200 of `A-Z a-z 0-9 - + / ; . $ _ ( )`, not starting with `-`"),
    )
    value: float = param(name="value", gt=0, allow_inf_nan=False, description="> 0, jobs per replica")
    activation_value: float = param(0.0, name="activationValue", allow_inf_nan=False)
    include_delayed: bool = param(False, name="includeDelayed")
    timeout: float | None = param(
        None, name="timeout", ge=0, description="ms, or a Go duration (`500ms`, `2s`). Bounds each poll"
    )

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


class BeanstalkdScaler(Scaler):
    """Scales on the jobs waiting in (and being worked on from) a beanstalkd tube; `value` per replica."""

    type_name: ClassVar[str] = "beanstalkd"
    Metadata: ClassVar[type[ScalerMetadata]] = BeanstalkdMetadata
    meta: BeanstalkdMetadata

    def __init__(self, ctx: TriggerContext, meta: ScalerMetadata) -> None:
        super().__init__(ctx, meta)
        self.host, self.port = self._parse_server(self.meta.server)
        if not _TUBE.fullmatch(self.meta.tube):
            self._bad(
                "tube",
                f"{self.meta.tube!r} is not a beanstalkd tube name: up to 200 letters, digits and -+/;.$_() "
                "(not starting with -)",
            )
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    def _bad(self, key: str, message: str) -> NoReturn:
        raise SpecError(self.ctx.object_ref, f"spec.triggers[{self.ctx.trigger_index}].metadata.{key}", message)

    def _parse_server(self, server: str) -> tuple[str, int]:
        text = server.strip()
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port_text = text.rpartition(":")
        if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            self._bad("server", f"expected host:port (beanstalkd listens on 11300 by default), got {server!r}")
        return host, int(port_text)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def timeout(self) -> float:
        return self.meta.timeout or self.ctx.timeout

    def metric_spec(self) -> MetricSpec:
        return MetricSpec(
            name=metric_name(self.ctx, f"beanstalkd-{quote_plus(self.meta.tube, safe='')}"),
            target=self.meta.value,
            metric_type=self.ctx.metric_type,
        )

    async def read(self) -> ScalerReading:
        stats = await self.tube_stats()
        jobs = stats["current-jobs-ready"] + stats["current-jobs-reserved"]
        if self.meta.include_delayed:
            jobs += stats["current-jobs-delayed"]
        return ScalerReading(value=float(jobs), active=activity(jobs, self.meta.activation_value))

    async def tube_stats(self) -> dict[str, int]:
        """The tube's job counts (zeros for a tube that does not exist)."""
        async with self._lock:
            try:
                return await self._stats_tube()
            except OSError as exc:
                await self._drop()
                detail = exc.strerror or str(exc) or type(exc).__name__
                raise self.error(f"cannot reach beanstalkd at {self.address}: {detail}") from None
            except asyncio.IncompleteReadError:
                await self._drop()
                raise self.error(f"beanstalkd at {self.address} closed the connection") from None
            except BaseException:
                await self._drop()
                raise

    async def _stats_tube(self) -> dict[str, int]:
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(f"stats-tube {self.meta.tube}\r\n".encode())
        await self._writer.drain()
        line = (await self._reader.readuntil(b"\r\n")).decode("ascii", "replace").strip()
        if line == "NOT_FOUND":
            return dict.fromkeys(_COUNTED, 0)
        word, _, size = line.partition(" ")
        if word != "OK" or not size.isdigit() or int(size) > _MAX_STATS_BYTES:
            await self._drop()
            raise self.error(f"beanstalkd at {self.address} answered {line[:80]!r} to stats-tube")
        body = (await self._reader.readexactly(int(size) + 2))[:-2].decode("utf-8", "replace")
        return self._counts(body)

    def _counts(self, body: str) -> dict[str, int]:
        # A small YAML mapping, one `key: value` a line.
        values: dict[str, str] = {}
        for line in body.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                values[key.strip()] = value.strip()
        try:
            return {key: int(values[key]) for key in _COUNTED}
        except (KeyError, ValueError):
            raise self.error(f"beanstalkd at {self.address} sent tube stats without {', '.join(_COUNTED)}") from None

    async def _drop(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def close(self) -> None:
        async with self._lock:
            await self._drop()
