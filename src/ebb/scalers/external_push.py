"""The `external-push` trigger: an `external` scaler that also tells of new work through StreamIsActive.

As in KEDA, only `result: true` matters: it wakes the object at once; deactivation is left to polling.
A server that implements the optional StreamMetricSpec can also change its metric targets while running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import ClassVar

import grpc
import grpc.aio

from ebb.errors import ScalerError, redact
from ebb.scalers.external import ExternalScaler

log = logging.getLogger(__name__)


class ExternalPushScaler(ExternalScaler):
    type_name: ClassVar[str] = "external-push"
    supports_push: ClassVar[bool] = True

    #: Wait before reopening a closed stream, doubled after each failure up to `max_reconnect_delay`
    #: (KEDA: 2 s to 1 min). Reset once a stream has delivered something or ended cleanly.
    reconnect_delay: float = 2.0
    max_reconnect_delay: float = 60.0

    async def watch(self, notify: Callable[[], None]) -> None:
        """Keep StreamIsActive open until cancelled, calling `notify()` on every `result: true`."""
        specs = asyncio.create_task(self._follow_metric_specs(), name=f"{self.ctx.object_ref} metric specs")
        try:
            await self._follow_activity(notify)
        finally:
            specs.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await specs

    async def _follow_activity(self, notify: Callable[[], None]) -> None:
        delay = self.reconnect_delay
        while not self._closed:
            delivered = False
            try:
                stub = await self._get_stub()
                # wait_for_ready: while the server is down the call waits for it instead of failing in a loop.
                call = stub.StreamIsActive(self.scaled_object_ref, wait_for_ready=True)
                try:
                    async for response in call:
                        delivered = True
                        if response.result:
                            notify()
                finally:
                    call.cancel()
                delivered = True  # a clean end of stream: reopen after the initial delay
            except grpc.aio.AioRpcError as exc:
                self._log_stream_error("StreamIsActive", exc)
            except ScalerError as exc:
                log.warning("%s", exc)
            if delivered:
                delay = self.reconnect_delay
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_reconnect_delay)

    async def _follow_metric_specs(self) -> None:
        delay = self.reconnect_delay
        while not self._closed:
            try:
                stub = await self._get_stub()
                call = stub.StreamMetricSpec(self.scaled_object_ref, wait_for_ready=True)
                try:
                    async for response in call:
                        delay = self.reconnect_delay
                        try:
                            self._use_spec(response)
                        except ScalerError as exc:
                            log.warning("%s (streamed spec ignored)", exc)
                finally:
                    call.cancel()
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    return  # optional RPC: the spec stays what GetMetricSpec said
                self._log_stream_error("StreamMetricSpec", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_reconnect_delay)

    def _log_stream_error(self, rpc: str, exc: grpc.aio.AioRpcError) -> None:
        if self._closed:
            return
        log.warning(
            "%s: %s: %s",
            self.ctx.object_ref,
            self.ctx.trigger_ref,
            redact(self._rpc_failure(rpc, exc), self.secrets),
        )
