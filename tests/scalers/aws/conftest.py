"""One moto server for the AWS trigger tests: `moto_server` from the venv, on a free loopback port.

The server runs in moto's IAM mode (`INITIAL_NO_AUTH_ACTION_COUNT`): the fixture's first three calls create
a user, its policy and its access key without credentials; every call after that must be signed with a key
that moto issued, so a wrong secret is refused as AWS would refuse it. Tests skip, saying so, only when the
server cannot start at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests._skips import needs

from .._servers import _wait_listening, free_port

MOTO_SERVER = Path(sys.executable).with_name("moto_server")
REGION = "eu-west-1"
ENABLE = "uv sync --extra dev"
_ADMIN = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@dataclass
class Moto:
    """A running moto server, the access key it issued, and plain boto3 clients to set up test data."""

    port: int
    access_key_id: str = ""
    secret_access_key: str = ""
    _clients: dict[str, Any] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def auth(self) -> dict[str, str]:
        """authParams as a TriggerAuthentication would give them."""
        return {"awsAccessKeyID": self.access_key_id, "awsSecretAccessKey": self.secret_access_key}

    def metadata(self, **extra: str) -> dict[str, str]:
        """Trigger metadata pointing at this server, plus `extra`."""
        return {"awsRegion": REGION, "awsEndpoint": self.endpoint, **extra}

    def client(self, service: str) -> Any:
        """A boto3 client for test setup: independent of the aiobotocore client under test."""
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service,  # type: ignore[call-overload]
                region_name=REGION,
                endpoint_url=self.endpoint,
                aws_access_key_id=self.access_key_id or "setup",
                aws_secret_access_key=self.secret_access_key or "setup",
                config=Config(retries={"total_max_attempts": 1}),
            )
        return self._clients[service]


def uid(prefix: str = "ebb-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def moto() -> Iterator[Moto]:
    if not MOTO_SERVER.exists():
        pytest.skip(needs("moto server", ENABLE))
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    proc = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        try:
            _wait_listening(port, proc, timeout=30.0)
        except RuntimeError as exc:
            pytest.skip(needs("moto server", ENABLE) + f": {exc}")
        server = Moto(port)
        iam = server.client("iam")
        iam.create_user(UserName="ebb-tests")
        iam.put_user_policy(UserName="ebb-tests", PolicyName="all", PolicyDocument=json.dumps(_ADMIN))
        key = iam.create_access_key(UserName="ebb-tests")["AccessKey"]
        yield Moto(port, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
