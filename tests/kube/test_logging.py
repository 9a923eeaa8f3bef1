"""What `ebb operator` logs: seen on a real cluster, the log said 127.0.0.1 while sockets bound 0.0.0.0, and HTTP
client and kopf INFO lines were three quarters of it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from aiohttp import web

from ebb.kube.commands import CHATTY_LOGGERS, configure_logging
from ebb.web.server import serve


@pytest.fixture
def restore_levels() -> Iterator[None]:
    names = ("", *CHATTY_LOGGERS)
    saved = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("restore_levels")
def test_http_client_and_kopf_info_lines_are_quiet_unless_debugging() -> None:
    configure_logging("INFO")
    assert logging.getLogger("ebb.operator").isEnabledFor(logging.INFO)
    for name in ("httpx2", "kopf.objects", "kopf._core.engines.activities"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    configure_logging("DEBUG")
    assert logging.getLogger("httpx2").isEnabledFor(logging.DEBUG)


async def test_startup_line_says_what_the_socket_is_bound_to(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ebb.web.server")
    server = await serve(web.Application(), "0.0.0.0", 0)
    try:
        assert f"ebb listening on http://0.0.0.0:{server.port}" in caplog.messages
        assert server.url == f"http://127.0.0.1:{server.port}"  # where a client on this machine connects
    finally:
        await server.stop()
