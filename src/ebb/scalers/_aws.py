"""Shared by the AWS triggers: KEDA's AWS credential parameters, one aiobotocore client per scaler, error text.

KEDA (pkg/scalers/aws/aws_common.go) takes credentials in this order:

- a TriggerAuthentication with `podIdentity.provider: aws` (or the older `aws-eks`): the workload's own IAM
  role (IRSA), optionally assuming `roleArn` / `awsRoleArn`;
- `identityOwner: operator`: the KEDA operator's own credentials (its service account's role, or the AWS
  default chain);
- otherwise (`identityOwner: pod`, the default): `awsRoleArn` from the TriggerAuthentication, assumed with the
  operator's credentials; else static keys, `awsAccessKeyID` + `awsSecretAccessKey` (+ `awsSessionToken`).

Only static keys can work without a cloud. A podIdentity TriggerAuthentication is refused where credentials
are resolved (ebb.spec.auth); `identityOwner: operator` and `awsRoleArn` are refused here, naming the field.

`awsEndpoint` points the client at another server speaking the AWS protocols (moto, LocalStack, a VPC
endpoint). Every call is bounded by the trigger's timeout and not retried: the next poll is the retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, NoReturn, cast
from urllib.parse import urlsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import field_validator

from ebb.errors import SpecError
from ebb.scalers.base import (
    Scaler,
    ScalerMetadata,
    ScalerReading,
    TriggerContext,
    param,
)

#: What botocore accepts as a region name (it refuses anything else when the client is made).
_REGION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?")
_XML_FIELD = re.compile(r"<(Code|Message)>(.*?)</\1>", re.DOTALL)
_CLOSE_TIMEOUT = 1.0
#: Connections kept per scaler: one call at a time, plus one being replaced.
_POOL_SIZE = 2


class AwsMetadata(ScalerMetadata):
    """The parameters every AWS trigger takes: region, endpoint and credentials."""

    aws_region: str = param(
        name="awsRegion",
        sources=("triggerMetadata", "authParams"),
        description="e.g. eu-west-1",
    )
    aws_endpoint: str | None = param(
        None, name="awsEndpoint", description="another server speaking the AWS protocols (moto, LocalStack)"
    )
    identity_owner: Literal["pod", "operator"] = param(
        "pod", name="identityOwner", description="`operator`: the operator's own AWS identity (not locally)"
    )
    aws_access_key_id: str | None = param(
        None, name="awsAccessKeyID", sources=("authParams", "triggerMetadata", "resolvedEnv")
    )
    aws_secret_access_key: str | None = param(
        None, name="awsSecretAccessKey", sources=("authParams", "resolvedEnv"), secret=True
    )
    aws_session_token: str | None = param(None, name="awsSessionToken", sources=("authParams",), secret=True)
    aws_role_arn: str | None = param(
        None, name="awsRoleArn", sources=("authParams",), description="role to assume (not locally)"
    )

    @field_validator("aws_region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not _REGION.fullmatch(value):
            raise ValueError("not an AWS region name (letters, digits and dashes, e.g. eu-west-1)")
        return value

    @field_validator("aws_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value


def client_error_text(exc: ClientError) -> str:
    """`Operation: Code: Message` from an AWS error answer, never the request (which holds the signature)."""
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", ""))
    if message.lstrip().startswith("<"):
        # An XML error body where the protocol expected JSON (moto does this for signature errors).
        found = dict(_XML_FIELD.findall(message))
        code, message = found.get("Code", code), found.get("Message", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    text = f"{exc.operation_name}: {code or 'error'}"
    if message:
        text += f": {message}"
    if status and str(status) != code:
        text += f" (HTTP {status})"
    return text


@functools.cache
def _session() -> AioSession:
    # One botocore session for the process: it caches the service models that every client loads.
    return get_session()


class AwsScaler(Scaler):
    """One aiobotocore client per scaler (two for DynamoDB Streams), made on the first read, closed by `close()`."""

    #: botocore's service name: "sqs", "kinesis", "dynamodb", "dynamodbstreams", "cloudwatch".
    service: ClassVar[str]

    def __init__(self, ctx: TriggerContext, meta: ScalerMetadata) -> None:
        super().__init__(ctx, meta)
        self.aws = cast(AwsMetadata, meta)
        self._check_credentials()
        self._lock = asyncio.Lock()
        self._stack: contextlib.AsyncExitStack | None = None
        self._clients: dict[str, Any] = {}

    @classmethod
    def from_trigger(
        cls,
        ctx: TriggerContext,
        metadata: Mapping[str, str],
        auth_params: Mapping[str, str] | None = None,
        resolved_env: Mapping[str, str] | None = None,
    ) -> AwsScaler:
        # KEDA also reads the key id under the spelling `awsAccessKeyId` from a TriggerAuthentication.
        auth = dict(auth_params or {})
        if not auth.get("awsAccessKeyID") and auth.get("awsAccessKeyId"):
            auth["awsAccessKeyID"] = auth["awsAccessKeyId"]
        return super().from_trigger(ctx, metadata, auth, resolved_env)

    def bad(self, key: str, message: str) -> NoReturn:
        raise SpecError(self.ctx.object_ref, f"spec.triggers[{self.ctx.trigger_index}].metadata.{key}", message)

    def _check_credentials(self) -> None:
        m = self.aws
        if m.identity_owner == "operator":
            self.bad(
                "identityOwner",
                "identityOwner: operator means the operator's own AWS identity (its service account's IAM role "
                "or the AWS default credential chain), which ebb does not use; give awsAccessKeyID and "
                "awsSecretAccessKey through a TriggerAuthentication",
            )
        if m.aws_role_arn:
            self.bad(
                "awsRoleArn",
                "awsRoleArn asks to assume an IAM role through AWS STS with the operator's identity, which ebb "
                "does not do; give awsAccessKeyID and awsSecretAccessKey (and awsSessionToken for temporary "
                "credentials) through a TriggerAuthentication",
            )
        if not m.aws_access_key_id:
            self.bad(
                "awsAccessKeyID",
                "no AWS credentials: give awsAccessKeyID and awsSecretAccessKey through a TriggerAuthentication "
                "(or awsAccessKeyIDFromEnv and awsSecretAccessKeyFromEnv)",
            )
        if not m.aws_secret_access_key:
            self.bad(
                "awsSecretAccessKey",
                "awsAccessKeyID is given without awsSecretAccessKey (give it through a TriggerAuthentication "
                "or awsSecretAccessKeyFromEnv)",
            )

    @property
    def endpoint(self) -> str:
        """Where calls go: `awsEndpoint`, or AWS's own endpoint for the region."""
        return self.aws.aws_endpoint or f"AWS {self.service} in {self.aws.aws_region}"

    async def client(self) -> Any:
        """The scaler's client for its service, made on first use. Typed by each subclass (types-aiobotocore)."""
        return await self.client_for(self.service)

    async def client_for(self, service: str) -> Any:
        """A client for `service` with this trigger's region, endpoint and credentials, kept until `close()`."""
        async with self._lock:
            if service not in self._clients:
                m = self.aws
                config = AioConfig(
                    connect_timeout=self.timeout,
                    read_timeout=self.timeout,
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    max_pool_connections=_POOL_SIZE,
                    # Only awsEndpoint redirects calls, never AWS_ENDPOINT_URL* in ebb's own environment.
                    ignore_configured_endpoint_urls=True,
                )
                if self._stack is None:
                    self._stack = contextlib.AsyncExitStack()
                self._clients[service] = await self._stack.enter_async_context(
                    _session().create_client(
                        service,  # type: ignore[call-overload]  # any service name; typed per subclass
                        region_name=m.aws_region,
                        endpoint_url=m.aws_endpoint,
                        aws_access_key_id=m.aws_access_key_id,
                        aws_secret_access_key=m.aws_secret_access_key,
                        aws_session_token=m.aws_session_token,
                        config=config,
                    )
                )
            return self._clients[service]

    async def read(self) -> ScalerReading:
        client = await self.client()
        try:
            value = await self.query(client)
        except ClientError as exc:
            raise self.error(client_error_text(exc)) from None
        except BotoCoreError as exc:
            # Connection refused, DNS, TLS, timeouts: botocore names the endpoint URL in its message.
            raise self.error(f"cannot reach {self.endpoint}: {exc}") from None
        return ScalerReading(value, value > self.activation())

    @abstractmethod
    async def query(self, client: Any) -> float:
        """One call (or a few) to the service; the metric value."""

    @abstractmethod
    def activation(self) -> float:
        """The activation threshold: active iff the value is strictly greater (KEDA's rule for all five)."""

    async def close(self) -> None:
        stack, self._stack, self._clients = self._stack, None, {}
        if stack is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stack.aclose(), _CLOSE_TIMEOUT)
