"""Delegated authentication and authorization for the external-metrics API, as every aggregated API server has
them (k8s.io/apiserver's DelegatingAuthenticationOptions and DelegatingAuthorizationOptions, which KEDA's adapter
uses through custom-metrics-apiserver).

Authentication tries, in the generic apiserver's order: (1) a client certificate from the front proxy (signed by
`requestheader-client-ca-file`, CN in `requestheader-allowed-names`), which vouches for the user named in the
X-Remote-* headers; (2) a client certificate signed by `client-ca-file` (user = CN, groups = O); (3) a bearer
token, checked with a TokenReview. Authorization asks the kube-apiserver with a SubjectAccessReview. Both answers
are cached briefly (10 s, the apiserver's defaults). The CAs and header names come from the ConfigMap
kube-system/extension-apiserver-authentication, which the kube-apiserver maintains.

Differences from the generic apiserver: anonymous requests get 401 rather than being authorized as
system:anonymous (the health paths are open to everyone either way), and Python's TLS layer verifies a client
certificate during the handshake, so a certificate from an unknown CA fails the connection instead of falling
through to the bearer token. Client certificates must be signed directly by one of the CAs (no intermediates).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import hmac
import json
import logging
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar
from urllib.parse import unquote

from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from multidict import MultiMapping

from ebb.kube.client import (
    API_ERRORS,
    CONFIG_MAP,
    AsyncClient,
    api_message,
    global_resource,
    is_not_found,
    status_code,
    to_dict,
)

log = logging.getLogger(__name__)

CONFIG_MAP_NAMESPACE: Final = "kube-system"
CONFIG_MAP_NAME: Final = "extension-apiserver-authentication"
CONFIG_MAP_REF: Final = f"ConfigMap {CONFIG_MAP_NAMESPACE}/{CONFIG_MAP_NAME}"
CLIENT_CA_KEY: Final = "client-ca-file"
REQUESTHEADER_CA_KEY: Final = "requestheader-client-ca-file"
ALLOWED_NAMES_KEY: Final = "requestheader-allowed-names"
USERNAME_HEADERS_KEY: Final = "requestheader-username-headers"
UID_HEADERS_KEY: Final = "requestheader-uid-headers"
GROUP_HEADERS_KEY: Final = "requestheader-group-headers"
EXTRA_PREFIXES_KEY: Final = "requestheader-extra-headers-prefix"

#: --authentication-token-webhook-cache-ttl, --authorization-webhook-cache-{authorized,unauthorized}-ttl defaults.
DEFAULT_TOKEN_CACHE_TTL: Final = 10.0
DEFAULT_ALLOW_CACHE_TTL: Final = 10.0
DEFAULT_DENY_CACHE_TTL: Final = 10.0
#: How long a client certificate's signature check is remembered (validity dates are checked on every request).
SIGNATURE_CACHE_TTL: Final = 60.0
#: How often the ConfigMap is read again, so that a rotated CA is picked up.
DEFAULT_REFRESH_INTERVAL: Final = 60.0
#: Time limit of one TokenReview/SubjectAccessReview/ConfigMap read (the apiserver's webhook timeouts).
REVIEW_TIMEOUT: Final = 10.0
#: --authorization-always-allow-paths: the kubelet probes these without credentials.
ALWAYS_ALLOW_PATHS: Final = frozenset({"/healthz", "/readyz", "/livez"})
#: --authorization-always-allow-groups: system:masters is allowed everything by the kube-apiserver anyway.
ALWAYS_ALLOW_GROUPS: Final = frozenset({"system:masters"})
AUTHENTICATED_GROUP: Final = "system:authenticated"
CREDENTIAL_ID_KEY: Final = "authentication.kubernetes.io/credential-id"
_MAX_CACHED: Final = 4096

TOKEN_REVIEW = global_resource("authentication.k8s.io", "v1", "TokenReview", "tokenreviews")
SUBJECT_ACCESS_REVIEW = global_resource("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews")


class AuthConfigError(ValueError):
    """The authentication ConfigMap cannot be read or does not parse."""


class Unauthenticated(Exception):
    """No authenticator accepted the request (401); the message lists why, without secrets."""


class AuthorizationError(Exception):
    """The SubjectAccessReview could not be made (500, as the apiserver answers authorizer errors)."""


# --- configuration ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthenticationConfig:
    """What kube-system/extension-apiserver-authentication says about who may call an aggregated API server."""

    client_cas: tuple[x509.Certificate, ...] = ()
    requestheader_cas: tuple[x509.Certificate, ...] = ()
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ()
    uid_headers: tuple[str, ...] = ()
    group_headers: tuple[str, ...] = ()
    extra_header_prefixes: tuple[str, ...] = ()

    @classmethod
    def from_config_map_data(cls, data: Mapping[str, str]) -> AuthenticationConfig:
        """Parse the ConfigMap's `data`; missing keys mean the feature is off (as in the apiserver)."""
        return cls(
            client_cas=_certificates(data, CLIENT_CA_KEY),
            requestheader_cas=_certificates(data, REQUESTHEADER_CA_KEY),
            allowed_names=_strings(data, ALLOWED_NAMES_KEY),
            username_headers=_headers(data, USERNAME_HEADERS_KEY),
            uid_headers=_headers(data, UID_HEADERS_KEY),
            group_headers=_headers(data, GROUP_HEADERS_KEY),
            extra_header_prefixes=_headers(data, EXTRA_PREFIXES_KEY),
        )

    def ca_bundle(self) -> bytes:
        """Both CAs as one PEM bundle, for the TLS layer (which accepts a certificate signed by either)."""
        certs = dict.fromkeys(self.requestheader_cas + self.client_cas)
        return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)

    def describe(self) -> str:
        names = ", ".join(self.allowed_names) or "any"
        return (
            f"front-proxy CA: {len(self.requestheader_cas)} certificate(s), allowed names: {names}; "
            f"client CA: {len(self.client_cas)} certificate(s)"
        )


def _certificates(data: Mapping[str, str], key: str) -> tuple[x509.Certificate, ...]:
    text = data.get(key) or ""
    if not text.strip():
        return ()
    try:
        return tuple(x509.load_pem_x509_certificates(text.encode()))
    except ValueError:
        raise AuthConfigError(f"{CONFIG_MAP_REF}: {key} is not a PEM certificate bundle") from None


def _strings(data: Mapping[str, str], key: str) -> tuple[str, ...]:
    text = data.get(key) or ""
    if not text:
        return ()
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise AuthConfigError(f"{CONFIG_MAP_REF}: {key} must be a JSON list of strings, got {text[:80]!r}")
    return tuple(value)


def _headers(data: Mapping[str, str], key: str) -> tuple[str, ...]:
    headers = tuple(header.strip() for header in _strings(data, key))
    if any(not header for header in headers):
        raise AuthConfigError(f"{CONFIG_MAP_REF}: {key} lists an empty header name")
    return headers


async def load_authentication_config(client: AsyncClient) -> AuthenticationConfig | None:
    """Read and parse the ConfigMap; None when it does not exist (a cluster without a front proxy), as the
    apiserver ignores a missing one. Any other failure raises AuthConfigError."""
    try:
        async with asyncio.timeout(REVIEW_TIMEOUT):
            manifest = to_dict(await client.get(CONFIG_MAP, CONFIG_MAP_NAME, namespace=CONFIG_MAP_NAMESPACE))
    except API_ERRORS as problem:
        if is_not_found(problem):
            return None
        hint = ""
        if status_code(problem) == 403:
            hint = (
                f"; bind the Role {CONFIG_MAP_NAMESPACE}/extension-apiserver-authentication-reader to the "
                "operator's service account (the Helm chart does)"
            )
        raise AuthConfigError(f"cannot read {CONFIG_MAP_REF}: {api_message(problem)}{hint}") from None
    except TimeoutError:
        raise AuthConfigError(f"cannot read {CONFIG_MAP_REF}: no answer in {REVIEW_TIMEOUT:g}s") from None
    except Exception as problem:
        # httpx transport errors and the like: their text is a URL at most, but the type says enough.
        raise AuthConfigError(f"cannot read {CONFIG_MAP_REF}: {type(problem).__name__}") from None
    return AuthenticationConfig.from_config_map_data(manifest.get("data") or {})


# --- users --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserInfo:
    """Who made a request, as authenticator.Response's user.Info; `method` says which authenticator decided."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    method: str = ""


def _with_authenticated_group(user: UserInfo) -> UserInfo:
    # The apiserver's AuthenticatedGroupAdder: every authenticated user is in system:authenticated.
    if user.name == "system:anonymous" or {AUTHENTICATED_GROUP, "system:unauthenticated"} & set(user.groups):
        return user
    return UserInfo(user.name, user.uid, (*user.groups, AUTHENTICATED_GROUP), user.extra, user.method)


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _certificate_problem(
    cert: x509.Certificate,
    cas: Sequence[x509.Certificate],
    now: dt.datetime,
    ca_name: str,
    signed: Callable[[], bool] | None = None,
) -> str | None:
    """Why `cert` is not a valid client certificate directly signed by one of `cas`, or None when it is.
    `signed` answers the signature part (a cache of `_signed_by`)."""
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return "is outside its validity period"
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    if usages is not None and not {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & set(
        usages
    ):
        return "is not valid for client authentication"
    if not (signed() if signed is not None else _signed_by(cert, cas, now)):
        return f"is not signed by the {ca_name}"
    return None


def _signed_by(cert: x509.Certificate, cas: Sequence[x509.Certificate], now: dt.datetime) -> bool:
    """Whether one of `cas`, valid now, signed `cert` directly."""
    for ca in cas:
        if not ca.not_valid_before_utc <= now <= ca.not_valid_after_utc:
            continue
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def peer_certificate(request: web.Request) -> x509.Certificate | None:
    """The client certificate of the request's TLS connection (verified by the TLS layer), if any."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return _parse_certificate(der) if der else None


@functools.lru_cache(maxsize=256)
def _parse_certificate(der: bytes) -> x509.Certificate:
    # A keep-alive connection presents the same certificate on every request: parse it once.
    return x509.load_der_x509_certificate(der)


# --- authentication -----------------------------------------------------------------------------------


_K = TypeVar("_K")
_V = TypeVar("_V")


class _ReviewCache(Generic[_K, _V]):
    """The kube-apiserver's answers to reviews, each kept for its TTL (at most _MAX_CACHED, oldest out first).
    Concurrent asks for one key share one review (the apiserver's singleflight); a failed review is not kept."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._answers: dict[_K, tuple[float, _V]] = {}
        self._inflight: dict[_K, asyncio.Future[_V]] = {}

    async def get(self, key: _K, review: Callable[[], Awaitable[_V]], ttl: Callable[[_V], float]) -> _V:
        cached = self._answers.get(key)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._review(key, review, ttl))
            self._inflight[key] = pending

            def settled(task: asyncio.Future[_V]) -> None:
                self._inflight.pop(key, None)
                if not task.cancelled():
                    task.exception()  # retrieved here too, in case every waiting request went away

            pending.add_done_callback(settled)
        return await asyncio.shield(pending)

    async def _review(self, key: _K, review: Callable[[], Awaitable[_V]], ttl: Callable[[_V], float]) -> _V:
        answer = await review()
        now = self._clock()
        if len(self._answers) >= _MAX_CACHED:
            for stale in [k for k, (expiry, _) in self._answers.items() if expiry <= now]:
                del self._answers[stale]
        while len(self._answers) >= _MAX_CACHED:
            del self._answers[next(iter(self._answers))]
        self._answers[key] = (now + ttl(answer), answer)
        return answer


class _NotAccepted(Exception):
    """One authenticator refused the credentials it understood; the next one is tried."""


class DelegatedAuthenticator:
    """Front-proxy certificate, client certificate, then bearer token (TokenReview), as the generic apiserver.

    `update` swaps the configuration (a rotated CA); `attach` makes a server SSLContext ask for client
    certificates and trust the configured CAs; `start`/`stop` run `refresh` every `refresh_interval` seconds.
    """

    def __init__(
        self,
        client: AsyncClient,
        config: AuthenticationConfig | None = None,
        *,
        token_cache_ttl: float = DEFAULT_TOKEN_CACHE_TTL,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._client = client
        self._config = config or AuthenticationConfig()
        self.token_cache_ttl = token_cache_ttl
        self.refresh_interval = refresh_interval
        self._clock = clock
        self._wall_clock = wall_clock
        self._contexts: list[ssl.SSLContext] = []
        # Tokens are cached under a keyed hash: the cache never holds a token, and its keys reveal nothing.
        self._hash_key = secrets.token_bytes(32)
        self._tokens: _ReviewCache[bytes, UserInfo | None] = _ReviewCache(clock)
        #: Signature checks already made ((certificate, CA role) -> (until, signed)): the TLS handshake verified
        #: the certificate once per connection, the checks here would otherwise redo it on every request.
        self._signatures: dict[tuple[x509.Certificate, str], tuple[float, bool]] = {}
        self._refresher: asyncio.Task[None] | None = None

    @property
    def config(self) -> AuthenticationConfig:
        return self._config

    def update(self, config: AuthenticationConfig) -> None:
        """Use `config` from now on (and trust its CAs in the attached SSL contexts)."""
        if config == self._config:
            return
        self._config = config
        self._signatures.clear()
        for context in self._contexts:
            self._trust(context)
        log.info("metrics API authentication: loaded %s (%s)", CONFIG_MAP_REF, config.describe())

    def attach(self, context: ssl.SSLContext) -> None:
        """Make `context` (a server context) request client certificates and accept those the CAs signed.

        Clients without a certificate still connect (CERT_OPTIONAL), for bearer tokens. OpenSSL only ever adds
        CAs to a context, so after a rotation the old CA still passes the handshake; the authenticator checks
        each certificate against the current CAs, so that only the current ones authenticate anybody.
        """
        if context not in self._contexts:
            self._contexts.append(context)
        self._trust(context)

    def _trust(self, context: ssl.SSLContext) -> None:
        bundle = self._config.ca_bundle()
        if bundle:
            context.load_verify_locations(cadata=bundle.decode())
            context.verify_mode = ssl.CERT_OPTIONAL

    async def refresh(self) -> None:
        """Read the ConfigMap again; keep the current configuration when that fails."""
        try:
            config = await load_authentication_config(self._client)
        except AuthConfigError as problem:
            log.warning("metrics API authentication: %s; keeping the configuration loaded before", problem)
            return
        if config is None:
            log.warning(
                "metrics API authentication: %s not found; keeping the configuration loaded before", CONFIG_MAP_REF
            )
            return
        self.update(config)

    async def start(self) -> None:
        if self._refresher is None and self.refresh_interval > 0:
            self._refresher = asyncio.create_task(self._refresh_forever(), name="ebb-authn-refresh")

    async def stop(self) -> None:
        refresher, self._refresher = self._refresher, None
        if refresher is not None:
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            await self.refresh()

    async def authenticate(self, request: web.Request) -> UserInfo:
        """The request's user; Unauthenticated when no method accepts it."""
        return await self.authenticate_credentials(peer_certificate(request), request.headers)

    async def authenticate_credentials(
        self, certificate: x509.Certificate | None, headers: MultiMapping[str]
    ) -> UserInfo:
        """As `authenticate`, from the (TLS-verified) peer certificate and the request headers."""
        # As the apiserver's union authenticator: a refusal is remembered and the next authenticator tried.
        refusals: list[str] = []
        steps: tuple[Callable[[], Awaitable[UserInfo | None]], ...] = (
            lambda: self._front_proxy(certificate, headers),
            lambda: self._client_certificate(certificate),
            lambda: self._bearer_token(headers),
        )
        for step in steps:
            try:
                user = await step()
            except _NotAccepted as refusal:
                refusals.append(str(refusal))
                continue
            if user is not None:
                return _with_authenticated_group(user)
        raise Unauthenticated("; ".join(refusals) or "no credentials")

    async def _front_proxy(self, certificate: x509.Certificate | None, headers: MultiMapping[str]) -> UserInfo | None:
        config = self._config
        if certificate is None or not config.requestheader_cas:
            return None
        problem = self._certificate_problem(certificate, config.requestheader_cas, "front-proxy CA")
        if problem is not None:
            raise _NotAccepted(f"front-proxy check: client certificate {problem}")
        common_name = _common_name(certificate)
        if config.allowed_names and common_name not in config.allowed_names:
            raise _NotAccepted(f"front-proxy check: certificate CN {common_name!r} is not in {ALLOWED_NAMES_KEY}")
        name = next((value for header in config.username_headers if (value := headers.get(header, ""))), "")
        if not name:
            return None
        uid = next((value for header in config.uid_headers if (value := headers.get(header, ""))), "")
        groups = tuple(value for header in config.group_headers for value in headers.getall(header, []) if value)
        extra: dict[str, tuple[str, ...]] = {}
        for prefix in config.extra_header_prefixes:
            for header, value in headers.items():
                if len(header) >= len(prefix) and header[: len(prefix)].lower() == prefix.lower():
                    key = unquote(header[len(prefix) :].lower())
                    extra[key] = (*extra.get(key, ()), value)
        return UserInfo(name, uid, groups, extra, method="front-proxy")

    def _certificate_problem(
        self, certificate: x509.Certificate, cas: Sequence[x509.Certificate], ca_name: str
    ) -> str | None:
        now = self._wall_clock()

        def signed() -> bool:
            key = (certificate, ca_name)
            moment = self._clock()
            cached = self._signatures.get(key)
            if cached is not None and cached[0] > moment:
                return cached[1]
            answer = _signed_by(certificate, cas, now)
            if len(self._signatures) >= _MAX_CACHED:
                self._signatures.clear()
            # Re-checked now and then all the same, for a CA that expires meanwhile.
            self._signatures[key] = (moment + SIGNATURE_CACHE_TTL, answer)
            return answer

        return _certificate_problem(certificate, cas, now, ca_name, signed)

    async def _client_certificate(self, certificate: x509.Certificate | None) -> UserInfo | None:
        config = self._config
        if certificate is None or not config.client_cas:
            return None
        problem = self._certificate_problem(certificate, config.client_cas, "client CA")
        if problem is not None:
            raise _NotAccepted(f"client certificate check: client certificate {problem}")
        common_name = _common_name(certificate)
        if not common_name:
            return None
        groups = tuple(str(a.value) for a in certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
        fingerprint = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
        return UserInfo(
            common_name, groups=groups, extra={CREDENTIAL_ID_KEY: (f"X509SHA256={fingerprint}",)}, method="x509"
        )

    async def _bearer_token(self, headers: MultiMapping[str]) -> UserInfo | None:
        authorization = str(headers.get("Authorization", "")).strip()
        if not authorization:
            return None
        parts = authorization.split(" ", 2)
        if len(parts) < 2 or parts[0].lower() != "bearer":
            return None
        token = parts[1]
        if not token:
            raise _NotAccepted("invalid bearer token")
        user = await self._review_cached(token)
        if user is None:
            raise _NotAccepted("invalid bearer token")
        return user

    async def _review_cached(self, token: str) -> UserInfo | None:
        # Both answers are cached for the TTL (cache.New(..., CacheTTL, CacheTTL)); failed calls are not.
        key = hmac.new(self._hash_key, token.encode(), hashlib.sha256).digest()
        return await self._tokens.get(key, lambda: self._token_review(token), lambda _: self.token_cache_ttl)

    async def _token_review(self, token: str) -> UserInfo | None:
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        answer = await _create_review(self._client, TOKEN_REVIEW, review, _NotAccepted)
        status = answer.get("status") or {}
        if not status.get("authenticated"):
            return None
        user = status.get("user") or {}
        return UserInfo(
            name=str(user.get("username") or ""),
            uid=str(user.get("uid") or ""),
            groups=tuple(str(group) for group in user.get("groups") or ()),
            extra={str(k): tuple(str(v) for v in values or ()) for k, values in (user.get("extra") or {}).items()},
            method="token",
        )


async def _create_review(
    client: AsyncClient, resource: Any, body: dict[str, Any], failure: type[Exception]
) -> dict[str, Any]:
    """POST a TokenReview/SubjectAccessReview; `failure` carries a secret-free reason when the call fails."""
    kind = body["kind"]
    try:
        async with asyncio.timeout(REVIEW_TIMEOUT):
            return to_dict(await client.create(resource(body)))
    except API_ERRORS as problem:
        # The API server's own Status message (RBAC denials and such) never echoes the review's spec.
        reason = f"{kind} failed: HTTP {status_code(problem)}: {api_message(problem)}"
    except TimeoutError:
        reason = f"{kind} failed: no answer in {REVIEW_TIMEOUT:g}s"
    except Exception as problem:
        # Transport errors: name the type only, their text is never needed and may carry anything.
        reason = f"{kind} failed: {type(problem).__name__}"
    log.warning("metrics API: %s", reason)
    raise failure(reason) from None


# --- authorization ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestAttributes:
    """What a request does, as the apiserver's RequestInfo parses it (the authorizer's attributes)."""

    verb: str
    path: str
    resource_request: bool = False
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


_API_PREFIXES = frozenset({"api", "apis"})
_GROUPLESS_PREFIXES = frozenset({"api"})
_SPECIAL_VERBS = frozenset({"proxy", "watch"})
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def request_attributes(method: str, path: str, query: Mapping[str, str]) -> RequestAttributes:
    """Parse a request as k8s.io/apiserver's RequestInfoFactory: `/apis/{group}/{version}/namespaces/{ns}/{resource}`
    is a resource request (GET without a name is `list`, or `watch` with ?watch); shorter paths, and any path
    outside /api and /apis, are non-resource requests with the lower-cased method as verb."""
    plain = RequestAttributes(verb=method.lower(), path=path)
    parts = path.strip("/").split("/") if path.strip("/") else []
    if len(parts) < 3 or parts[0] not in _API_PREFIXES:
        return plain
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix not in _GROUPLESS_PREFIXES:
        if len(parts) < 3:
            return plain
        group, parts = parts[0], parts[1:]
    version, parts = parts[0], parts[1:]
    verb_in_path = parts[0] in _SPECIAL_VERBS
    if verb_in_path:
        verb, parts = parts[0], parts[1:]
    else:
        verb = _METHOD_VERBS.get(method.upper(), "")
    namespace = ""
    if parts and parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
            parts = parts[2:]
    resource = parts[0] if parts else ""
    name = parts[1] if len(parts) >= 2 else ""
    subresource = parts[2] if len(parts) >= 3 and verb != "proxy" else ""
    if not name and verb == "get":
        watch = query.get("watch")
        verb = "watch" if watch is not None and watch.lower() not in ("false", "0") else "list"
        name = _name_from_field_selector(query.get("fieldSelector", ""))
    if not name and verb == "delete":
        verb = "deletecollection"
    return RequestAttributes(verb, path, True, group, version, namespace, resource, subresource, name)


def _name_from_field_selector(selector: str) -> str:
    for requirement in selector.split(","):
        field_name, operator, value = requirement.partition("==") if "==" in requirement else requirement.partition("=")
        if operator and not field_name.endswith("!") and field_name.strip() == "metadata.name":
            value = value.strip()
            if value not in ("", ".", "..") and "/" not in value and "%" not in value:
                return value
    return ""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


class DelegatedAuthorizer:
    """SubjectAccessReviews with the apiserver's allow/deny caches; system:masters is always allowed."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        allow_cache_ttl: float = DEFAULT_ALLOW_CACHE_TTL,
        deny_cache_ttl: float = DEFAULT_DENY_CACHE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.allow_cache_ttl = allow_cache_ttl
        self.deny_cache_ttl = deny_cache_ttl
        self._clock = clock
        self._decisions: _ReviewCache[str, Decision] = _ReviewCache(clock)

    async def authorize(self, user: UserInfo, attributes: RequestAttributes) -> Decision:
        """Allowed or not; AuthorizationError when the SubjectAccessReview cannot be made."""
        if ALWAYS_ALLOW_GROUPS & set(user.groups):
            return Decision(True, "always allowed group")
        spec = subject_access_review_spec(user, attributes)
        key = json.dumps(spec, sort_keys=True, separators=(",", ":"))
        return await self._decisions.get(
            key,
            lambda: self._access_review(spec),
            lambda decision: self.allow_cache_ttl if decision.allowed else self.deny_cache_ttl,
        )

    async def _access_review(self, spec: dict[str, Any]) -> Decision:
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        answer = await _create_review(self._client, SUBJECT_ACCESS_REVIEW, review, AuthorizationError)
        status = answer.get("status") or {}
        # Denied and "no opinion" both forbid; both are cached for the deny TTL.
        return Decision(bool(status.get("allowed")) and not status.get("denied"), str(status.get("reason") or ""))


def subject_access_review_spec(user: UserInfo, attributes: RequestAttributes) -> dict[str, Any]:
    """The SubjectAccessReview spec the apiserver's webhook authorizer sends for this user and request."""
    spec: dict[str, Any] = {"user": user.name, "groups": list(user.groups)}
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = {key: list(values) for key, values in user.extra.items()}
    if attributes.resource_request:
        resource = {
            "namespace": attributes.namespace,
            "verb": attributes.verb,
            "group": attributes.api_group,
            "version": attributes.api_version,
            "resource": attributes.resource,
            "subresource": attributes.subresource,
            "name": attributes.name,
        }
        spec["resourceAttributes"] = {key: value for key, value in resource.items() if value}
    else:
        spec["nonResourceAttributes"] = {"path": attributes.path, "verb": attributes.verb}
    return spec


def forbidden(user: UserInfo, attributes: RequestAttributes, reason: str) -> tuple[str, dict[str, str]]:
    """The message and details of the apiserver's 403 Status for this request."""

    def quote(text: str) -> str:
        return json.dumps(text, ensure_ascii=False)

    if not attributes.resource_request:
        what = f"User {quote(user.name)} cannot {attributes.verb} path {quote(attributes.path)}"
    else:
        resource = attributes.resource + (f"/{attributes.subresource}" if attributes.subresource else "")
        where = f"in the namespace {quote(attributes.namespace)}" if attributes.namespace else "at the cluster scope"
        what = (
            f"User {quote(user.name)} cannot {attributes.verb} resource {quote(resource)} "
            f"in API group {quote(attributes.api_group)} {where}"
        )
    if reason:
        what = f"{what}: {reason}"
    group, resource = attributes.api_group, attributes.resource
    qualified = f"{resource}.{group}" if group else resource
    if not qualified:
        message = f"forbidden: {what}"
    elif not attributes.name:
        message = f"{qualified} is forbidden: {what}"
    else:
        message = f"{qualified} {quote(attributes.name)} is forbidden: {what}"
    message = message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    details = {key: value for key, value in (("name", attributes.name), ("group", group), ("kind", resource)) if value}
    return message, details


# --- wiring -------------------------------------------------------------------------------------------


async def delegated_auth(
    client: AsyncClient, *, refresh_interval: float = DEFAULT_REFRESH_INTERVAL
) -> tuple[DelegatedAuthenticator, DelegatedAuthorizer]:
    """Authenticator and authorizer for the operator, with the ConfigMap read once now.

    As the apiserver (--authentication-tolerate-lookup-failure=false): a ConfigMap that cannot be read raises
    AuthConfigError; one that does not exist leaves bearer tokens as the only way in.
    """
    config = await load_authentication_config(client)
    if config is None:
        log.warning(
            "metrics API authentication: %s not found: client certificates (the API aggregator's included) are "
            "not accepted, only bearer tokens; it is read again every %gs",
            CONFIG_MAP_REF,
            refresh_interval,
        )
    else:
        log.info("metrics API authentication: loaded %s (%s)", CONFIG_MAP_REF, config.describe())
    authenticator = DelegatedAuthenticator(client, config, refresh_interval=refresh_interval)
    return authenticator, DelegatedAuthorizer(client)
