"""Helpers shared by the AWS trigger tests: building scalers, reading once, counting descriptors."""

from __future__ import annotations

import uuid
from typing import Any

import psutil

from ebb.scalers import Scaler, TriggerContext, build_scaler


def ctx(trigger_type: str, index: int = 0) -> TriggerContext:
    return TriggerContext(name=f"aws-{uuid.uuid4().hex[:10]}", trigger_index=index, trigger_type=trigger_type)


def scaler(trigger_type: str, metadata: dict[str, str], **kw: Any) -> Scaler:
    return build_scaler(trigger_type, metadata, ctx=kw.pop("ctx", None) or ctx(trigger_type), **kw)


def open_fds() -> int:
    return psutil.Process().num_fds()


def tcp_to(port: int) -> int:
    """TCP connections from this process to `port` on loopback, in any state but closed."""
    return sum(1 for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port)
