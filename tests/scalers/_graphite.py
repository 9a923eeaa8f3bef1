"""A private Graphite on free loopback ports, everything in a temporary folder.

Debian's carbon-cache takes points (plaintext protocol) and writes whisper files; graphite-web's render API
(its WSGI application under the standard library's server) reads them and carbon-cache's unwritten points.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from tests._skips import needs

from ._servers import _wait_listening, free_port

CARBON_CACHE = shutil.which("carbon-cache") or "/usr/bin/carbon-cache"
#: graphite-web is a Django application installed for Debian's own Python.
SYSTEM_PYTHON = "/usr/bin/python3"
GRAPHITE_WEB = Path("/usr/lib/python3/dist-packages/graphite")
ENABLE = needs("Graphite", "apt-get install graphite-carbon graphite-web")


@dataclass(frozen=True)
class Graphite:
    web_port: int
    line_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def send(self, *points: tuple[str, float, float]) -> None:
        """(metric, value, timestamp) over carbon's plaintext protocol."""
        lines = "".join(f"{name} {value} {int(ts)}\n" for name, value, ts in points)
        with socket.create_connection(("127.0.0.1", self.line_port), timeout=5) as sock:
            sock.sendall(lines.encode())

    def render(self, target: str, since: str = "-1min") -> list[dict[str, Any]]:
        url = f"{self.url}/render?from={since}&target={quote_plus(target, safe='')}&format=json"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return list(json.load(resp))

    def wait_for(self, target: str, value: float, since: str = "-1min", within: float = 15.0) -> None:
        """Until the render API's latest non-null point of `target` is `value` (carbon writes in the background)."""
        deadline = time.monotonic() + within
        last: Any = None
        while time.monotonic() < deadline:
            series = self.render(target, since)
            points = [p[0] for p in series[0]["datapoints"] if p[0] is not None] if len(series) == 1 else []
            last = points[-1] if points else series
            if last == value:
                return
            time.sleep(0.1)
        raise AssertionError(f"{target} did not reach {value} within {within}s (last: {last!r})")


def _carbon_conf(root: Path, line_port: int, pickle_port: int, query_port: int) -> Path:
    conf = root / "conf"
    conf.mkdir(parents=True)
    for folder in ("whisper", "log", "lists"):
        (root / folder).mkdir()
    (conf / "storage-schemas.conf").write_text("[all]\npattern = .*\nretentions = 1s:1h\n")
    settings = {
        "STORAGE_DIR": f"{root}/",
        "LOCAL_DATA_DIR": f"{root}/whisper/",
        "WHITELISTS_DIR": f"{root}/lists/",
        "CONF_DIR": f"{conf}/",
        "LOG_DIR": f"{root}/log/",
        "PID_DIR": f"{root}/",
        "ENABLE_LOGROTATION": "False",
        "USER": "",
        "MAX_CACHE_SIZE": "inf",
        "MAX_UPDATES_PER_SECOND": "inf",
        "MAX_CREATES_PER_MINUTE": "inf",
        "LINE_RECEIVER_INTERFACE": "127.0.0.1",
        "LINE_RECEIVER_PORT": str(line_port),
        "ENABLE_UDP_LISTENER": "False",
        "UDP_RECEIVER_PORT": "0",
        "PICKLE_RECEIVER_INTERFACE": "127.0.0.1",
        "PICKLE_RECEIVER_PORT": str(pickle_port),
        "CACHE_QUERY_INTERFACE": "127.0.0.1",
        "CACHE_QUERY_PORT": str(query_port),
        "LOG_LISTENER_CONNECTIONS": "False",
    }
    path = conf / "carbon.conf"
    path.write_text("[cache]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    return path


def _web_settings(root: Path, query_port: int) -> Path:
    """graphite-web's local settings (GRAPHITE_SETTINGS_MODULE), in a folder of their own."""
    folder = root / "webapp"
    folder.mkdir()
    (folder / "ebb_graphite_local.py").write_text(
        f"STORAGE_DIR = {str(root) + '/'!r}\n"
        f"WHISPER_DIR = {str(root / 'whisper') + '/'!r}\n"
        f"LOG_DIR = {str(root / 'log') + '/'!r}\n"
        f"INDEX_FILE = {str(root / 'index')!r}\n"
        f"CARBONLINK_HOSTS = ['127.0.0.1:{query_port}']\n"
        "SECRET_KEY = 'ebb-tests-only'\n"
        f"DATABASES = {{'default': {{'NAME': {str(root / 'graphite.db')!r}, "
        "'ENGINE': 'django.db.backends.sqlite3'}}\n"
    )
    return folder


#: graphite-web's WSGI application served by the standard library, as mod_wsgi or gunicorn would in production.
#: (Django's runserver keeps connections alive without TCP_NODELAY: each poll then waits ~40 ms for a delayed ACK.)
_WSGI_SERVER = """
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from graphite.wsgi import application


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class Handler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


make_server("127.0.0.1", int(sys.argv[1]), application, Server, Handler).serve_forever()
"""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def graphite_server(root: Path) -> Iterator[Graphite]:
    """carbon-cache and graphite-web, stopped afterwards. FileNotFoundError when either is not installed."""
    if not Path(CARBON_CACHE).exists() or not GRAPHITE_WEB.exists():
        raise FileNotFoundError("graphite-carbon or graphite-web")
    line_port, pickle_port, query_port, web_port = (free_port() for _ in range(4))
    conf = _carbon_conf(root, line_port, pickle_port, query_port)
    webapp = _web_settings(root, query_port)
    with ExitStack() as stack:
        carbon = subprocess.Popen(
            [
                CARBON_CACHE,
                f"--config={conf}",
                f"--pidfile={root / 'carbon.pid'}",
                f"--logdir={root / 'log'}",
                "--nodaemon",
                "start",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(_stop, carbon)
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(webapp),
            "GRAPHITE_SETTINGS_MODULE": "ebb_graphite_local",
            "DJANGO_SETTINGS_MODULE": "graphite.settings",
        }
        web = subprocess.Popen(
            [SYSTEM_PYTHON, "-c", _WSGI_SERVER, str(web_port)],
            cwd=webapp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(_stop, web)
        _wait_listening(line_port, carbon, 30.0)
        _wait_listening(query_port, carbon, 30.0)
        _wait_listening(web_port, web, 30.0)
        yield Graphite(web_port=web_port, line_port=line_port)
