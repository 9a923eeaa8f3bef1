"""What the `azure-queue` and `azure-blob` triggers share: credentials, endpoints, the client, errors.

Parameters follow KEDA's (pkg/scalers/azure/azure_storage.go, azure_cloud_environment.go): a storage
`connection` string, or `accountName` for Azure workload identity; `cloud` and `endpointSuffix` pick the
endpoint a workload identity would use. Workload identity needs Kubernetes' federated service-account
token and Microsoft Entra ID, so ebb refuses it (naming the parameter) instead of failing at the first poll.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Literal, NoReturn, TypeVar
from urllib.parse import urlsplit

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from ebb.errors import SpecError
from ebb.scalers.base import Scaler, ScalerMetadata, TriggerContext, param

T = TypeVar("T")
Service = Literal["queue", "blob"]

#: KEDA's cloud environments (cloud_config.go) and their storage endpoint suffix.
CLOUD_STORAGE_SUFFIXES = {
    "AZURECLOUD": "core.windows.net",
    "AZUREPUBLICCLOUD": "core.windows.net",
    "AZUREUSGOVERNMENT": "core.usgovcloudapi.net",
    "AZUREUSGOVERNMENTCLOUD": "core.usgovcloudapi.net",
    "AZURECHINACLOUD": "core.chinacloudapi.cn",
    "AZUREGERMANCLOUD": "core.cloudapi.de",
}
PRIVATE_CLOUD = "private"

#: Azurite's well-known development account (documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"

_ACCOUNT_KEY = "accountkey"
#: Error codes of a key or token the service does not accept.
_AUTH_CODES = frozenset({"AuthenticationFailed", "AuthorizationFailure", "InvalidAuthenticationInfo"})
_SAS = "sharedaccesssignature"


class AzureStorageMetadata(ScalerMetadata):
    """Connection parameters of the Azure Storage triggers."""

    # KEDA also reads `connection` from trigger metadata; ebb refuses it there: it holds the account key.
    connection: str | None = param(
        None,
        name="connection",
        sources=("authParams", "resolvedEnv"),
        secret=True,
        description="A storage connection string (below)",
    )
    account_name: str | None = param(
        None, name="accountName", description="Azure workload identity only: refused (below)"
    )
    cloud: str | None = param(
        None,
        name="cloud",
        description="also `AzureUSGovernmentCloud`, `AzureChinaCloud`, `AzureGermanCloud`, `Private`",
    )
    endpoint_suffix: str | None = param(
        None, name="endpointSuffix", description="required with `cloud: Private`, e.g. `queue.core.example.net`"
    )


def parse_connection_string(text: str) -> dict[str, str]:
    """`Key=Value;...` into lower-cased keys; ValueError (never echoing a value) when it is not that shape."""
    settings: dict[str, str] = {}
    for index, part in enumerate(p.strip() for p in text.split(";")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"part {index + 1} of the connection string is not Key=Value")
        settings[key.strip().lower()] = value.strip()
    if not settings:
        raise ValueError("the connection string is empty")
    return settings


def check_connection_string(settings: dict[str, str], service: Service) -> None:
    """The checks the Azure SDKs make when they build a client, with messages that hold no value."""
    if settings.get("usedevelopmentstorage", "").lower() == "true":
        return
    has_key = bool(settings.get("accountname") and settings.get(_ACCOUNT_KEY))
    if not has_key and not settings.get(_SAS):
        raise ValueError("the connection string has neither AccountName and AccountKey nor SharedAccessSignature")
    if not settings.get(f"{service}endpoint") and not settings.get("accountname"):
        raise ValueError(
            f"the connection string has neither {service.capitalize()}Endpoint nor AccountName to build it from"
        )


def storage_endpoint_suffix(meta: AzureStorageMetadata, service: Service) -> tuple[str | None, str]:
    """KEDA's ParseAzureStorageEndpointSuffix: `<service>.<cloud's suffix>`, or `endpointSuffix` for Private.

    Returns (error, suffix); the error names what is wrong with `cloud` or `endpointSuffix`.
    """
    cloud = (meta.cloud or "").strip()
    if not cloud:
        return None, f"{service}.{CLOUD_STORAGE_SUFFIXES['AZUREPUBLICCLOUD']}"
    if cloud.lower() == PRIVATE_CLOUD:
        if not meta.endpoint_suffix:
            return "endpointSuffix must be given for cloud Private", ""
        return None, meta.endpoint_suffix
    suffix = CLOUD_STORAGE_SUFFIXES.get(cloud.upper())
    if suffix is None:
        known = "AzurePublicCloud, AzureUSGovernmentCloud, AzureChinaCloud, AzureGermanCloud, Private"
        return f"unknown cloud {cloud!r}: expected one of {known}", ""
    return None, f"{service}.{suffix}"


class AzureStorageScaler(Scaler):
    """An Azure Storage trigger: one lazily made SDK client per scaler, errors that name the endpoint."""

    service: ClassVar[Service]
    meta: AzureStorageMetadata

    def __init__(self, ctx: TriggerContext, meta: ScalerMetadata) -> None:
        super().__init__(ctx, meta)
        assert isinstance(meta, AzureStorageMetadata)
        problem, self.endpoint_suffix = storage_endpoint_suffix(meta, self.service)
        if problem:
            self.bad("endpointSuffix" if "endpointSuffix" in problem else "cloud", problem)
        if not meta.connection:
            if meta.account_name:
                self.bad(
                    "accountName",
                    "accountName without a connection string is KEDA's Azure workload identity (a "
                    "TriggerAuthentication with podIdentity provider azure-workload), which ebb does not "
                    "support: give a storage connection string as `connection` in a TriggerAuthentication "
                    "or through connectionFromEnv",
                )
            self.bad(
                "connection",
                "required: a storage connection string, from a TriggerAuthentication (parameter "
                "`connection`) or connectionFromEnv",
            )
        try:
            settings = parse_connection_string(meta.connection)
            check_connection_string(settings, self.service)
        except ValueError as exc:
            self.bad("connection", str(exc))
        # The key and the SAS token are what matter; mask them even where they appear alone.
        self.secrets = self.secrets | frozenset(v for k, v in settings.items() if k in (_ACCOUNT_KEY, _SAS) and v)
        self._client: Any = None

    def bad(self, key: str, message: str) -> NoReturn:
        raise SpecError(self.ctx.object_ref, f"spec.triggers[{self.ctx.trigger_index}].metadata.{key}", message)

    def client_options(self) -> dict[str, Any]:
        """SDK options: bounded by the trigger's timeout, and no retries (the next poll is the retry)."""
        return {
            "connection_timeout": self.timeout,
            "read_timeout": self.timeout,
            "retry_total": 0,
            # azure-core logs every request at INFO; a poll every few seconds is no news.
            "http_logging_level": logging.DEBUG,
        }

    def make_client(self) -> Any:
        """The SDK's aio client for this trigger (no I/O)."""
        raise NotImplementedError

    def client(self) -> Any:
        if self._client is None:
            self._client = self.make_client()
        return self._client

    @property
    def endpoint(self) -> str:
        """The service URL without any query (a SAS token travels in the query)."""
        parts = urlsplit(str(self.client().url))
        return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")

    async def call(self, what: Callable[[Any], Awaitable[T]], missing: str) -> T:
        """One exchange with the service; failures become messages that name the endpoint and hold no secret."""
        client = self.client()
        try:
            return await what(client)
        except HttpResponseError as exc:
            code = _code(exc)
            # Listing blobs reports a refused key as a plain HttpResponseError; reading a queue as
            # ClientAuthenticationError.
            if isinstance(exc, ClientAuthenticationError) or code in _AUTH_CODES:
                raise self.error(
                    f"Azure Storage at {self.endpoint} refused the credentials ({code}): check AccountKey or "
                    "SharedAccessSignature in the connection string"
                ) from None
            if isinstance(exc, ResourceNotFoundError) or exc.status_code == 404:
                raise self.error(f"{missing} not found at {self.endpoint} ({code})") from None
            raise self.error(
                f"Azure Storage at {self.endpoint} answered {exc.status_code} {code}: {_first_line(exc)}"
            ) from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise self.error(f"cannot reach Azure Storage at {self.endpoint}: {_first_line(exc)}") from None

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def _code(exc: HttpResponseError) -> str:
    code = getattr(exc, "error_code", None)
    # The storage SDKs give an enum (StorageErrorCode.QUEUE_NOT_FOUND); the service's own word is its value.
    return str(getattr(code, "value", code) or exc.reason or exc.status_code)


_SPACE = re.compile(r"\s+")


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    return _SPACE.sub(" ", text[0])[:300] if text else type(exc).__name__
