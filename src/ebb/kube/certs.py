"""TLS for the external-metrics API server: a self-signed CA and a serving certificate for the Service.

The kube-apiserver aggregator reaches the server through its Service and checks the serving certificate
against the APIService's `caBundle`, so the certificate names the Service's DNS names and the CA is kept
(in a Secret, through the `load`/`save` callables the operator passes) so that `caBundle` stays stable
across restarts and renewals. Given cert/key files (cert-manager, a user's own PKI) are loaded as they are.
"""

from __future__ import annotations

import datetime as dt
import inspect
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Keys of the Secret data (the same names cert-manager and kubernetes.io/tls Secrets use).
CA_CERT_KEY = "ca.crt"
CA_KEY_KEY = "ca.key"
CERT_KEY = "tls.crt"
KEY_KEY = "tls.key"

DEFAULT_VALID_DAYS = 365
DEFAULT_CA_VALID_DAYS = 3650
DEFAULT_RENEW_BEFORE = dt.timedelta(days=30)

_T = TypeVar("_T")
SecretData = dict[str, str]
Loader = Callable[[], "SecretData | Awaitable[SecretData | None] | None"]
Saver = Callable[[SecretData], "Awaitable[None] | None"]


_SIGNING_KEYS = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    dsa.DSAPrivateKey,
)


class CertificateError(ValueError):
    """Certificate material does not parse, or the key does not belong to the certificate."""


@dataclass(frozen=True)
class TLSBundle:
    """PEM-encoded serving certificate and key, and the CA that signed it (`ca_key` None when not ours)."""

    cert: bytes
    key: bytes
    ca_cert: bytes
    ca_key: bytes | None = None

    def to_secret_data(self) -> SecretData:
        """The bundle as Secret `stringData` (PEM text); `from_secret_data` reads it back."""
        data = {CA_CERT_KEY: self.ca_cert.decode(), CERT_KEY: self.cert.decode(), KEY_KEY: self.key.decode()}
        if self.ca_key is not None:
            data[CA_KEY_KEY] = self.ca_key.decode()
        return data

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str]) -> TLSBundle:
        """Read what `to_secret_data` wrote (values as text, i.e. a Secret's data already base64-decoded)."""
        missing = [key for key in (CA_CERT_KEY, CERT_KEY, KEY_KEY) if not data.get(key)]
        if missing:
            raise CertificateError(f"TLS secret data lacks {', '.join(missing)}")
        bundle = cls(
            cert=data[CERT_KEY].encode(),
            key=data[KEY_KEY].encode(),
            ca_cert=data[CA_CERT_KEY].encode(),
            ca_key=data[CA_KEY_KEY].encode() if data.get(CA_KEY_KEY) else None,
        )
        bundle.check()
        return bundle

    @property
    def certificate(self) -> x509.Certificate:
        return _load_cert(self.cert, "tls.crt")

    @property
    def not_after(self) -> dt.datetime:
        """When the serving certificate expires (UTC)."""
        return self.certificate.not_valid_after_utc

    @property
    def dns_names(self) -> list[str]:
        """The DNS subject alternative names of the serving certificate."""
        try:
            san = self.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return []
        return san.get_values_for_type(x509.DNSName)

    def check(self) -> None:
        """Raise CertificateError unless the key belongs to the certificate and the CA signed it."""
        cert = self.certificate
        key = _load_key(self.key, "tls.key")
        if _public_bytes(key.public_key()) != _public_bytes(cert.public_key()):
            raise CertificateError("tls.key does not belong to tls.crt")
        ca = _load_cert(self.ca_cert, "ca.crt")
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature) as error:
            raise CertificateError("tls.crt is not signed by ca.crt") from error
        if self.ca_key is not None:
            ca_key = _load_key(self.ca_key, "ca.key")
            if _public_bytes(ca_key.public_key()) != _public_bytes(ca.public_key()):
                raise CertificateError("ca.key does not belong to ca.crt")

    def needs_renewal(
        self, dns_names: Iterable[str], *, now: dt.datetime | None = None, renew_before: dt.timedelta | None = None
    ) -> bool:
        """True when the serving certificate misses one of `dns_names` or expires within `renew_before`."""
        moment = now or dt.datetime.now(dt.UTC)
        margin = DEFAULT_RENEW_BEFORE if renew_before is None else renew_before
        if moment + margin >= self.not_after or moment < self.certificate.not_valid_before_utc:
            return True
        return not set(dns_names) <= set(self.dns_names)

    def ssl_context(self, client_ca: bytes | None = None) -> ssl.SSLContext:
        """A server-side SSLContext (TLS 1.2+) serving this certificate; see `server_ssl_context`."""
        return server_ssl_context(self, client_ca=client_ca)


def service_dns_names(service: str, namespace: str, cluster_domain: str = "cluster.local") -> list[str]:
    """The names a Service answers to inside the cluster; the aggregator dials `<service>.<namespace>.svc`."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{cluster_domain}",
    ]


def generate(
    dns_names: Sequence[str],
    *,
    ca: TLSBundle | None = None,
    now: dt.datetime | None = None,
    valid_days: int = DEFAULT_VALID_DAYS,
    ca_valid_days: int = DEFAULT_CA_VALID_DAYS,
    common_name: str = "ebb-metrics-apiserver",
    client_auth: bool = False,
) -> TLSBundle:
    """A serving certificate for `dns_names` (IP addresses allowed), signed by `ca`'s CA or by a new one.

    Reusing the CA (when `ca.ca_key` is known) keeps the APIService's caBundle valid across renewals.
    `client_auth` also allows the certificate to authenticate a client (for tests of client-certificate checks).
    """
    if not dns_names:
        raise ValueError("at least one DNS name is needed")
    moment = now or dt.datetime.now(dt.UTC)
    if ca is not None and ca.ca_key is not None:
        ca_cert_pem, ca_key_pem = ca.ca_cert, ca.ca_key
        ca_cert = _load_cert(ca_cert_pem, "ca.crt")
        ca_key: CertificateIssuerPrivateKeyTypes = _load_key(ca_key_pem, "ca.key")
    else:
        new_ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name}-ca")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(new_ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(moment - dt.timedelta(minutes=5))
            .not_valid_after(moment + dt.timedelta(days=ca_valid_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(new_ca_key.public_key()), critical=False)
            .sign(new_ca_key, hashes.SHA256())
        )
        ca_key = new_ca_key
        ca_cert_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
        ca_key_pem = _private_bytes(new_ca_key)

    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for name in dns_names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    usages = [ExtendedKeyUsageOID.SERVER_AUTH]
    if client_auth:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    not_after = min(moment + dt.timedelta(days=valid_days), ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        # The key identifier lets a verifier tell apart CAs that share a name (two generated ones, say).
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return TLSBundle(
        cert=cert.public_bytes(serialization.Encoding.PEM),
        key=_private_bytes(key),
        ca_cert=ca_cert_pem,
        ca_key=ca_key_pem,
    )


def load_files(cert_file: str | Path, key_file: str | Path, ca_file: str | Path | None = None) -> TLSBundle:
    """A bundle from PEM files (e.g. a mounted cert-manager Secret). Without `ca_file`, the first
    certificate after the leaf in `cert_file` is taken as the CA, else the leaf itself."""
    chain = Path(cert_file).read_bytes()
    key = Path(key_file).read_bytes()
    if ca_file is not None:
        ca_cert = Path(ca_file).read_bytes()
    else:
        certs = x509.load_pem_x509_certificates(chain)
        ca_cert = certs[-1].public_bytes(serialization.Encoding.PEM)
    bundle = TLSBundle(cert=chain, key=key, ca_cert=ca_cert)
    cert = bundle.certificate
    if _public_bytes(_load_key(key, str(key_file)).public_key()) != _public_bytes(cert.public_key()):
        raise CertificateError(f"{key_file} does not belong to {cert_file}")
    return bundle


async def ensure(
    dns_names: Sequence[str],
    load: Loader,
    save: Saver,
    *,
    now: dt.datetime | None = None,
    valid_days: int = DEFAULT_VALID_DAYS,
    renew_before: dt.timedelta | None = None,
) -> TLSBundle:
    """The stored bundle if it is valid for `dns_names` and not close to expiry; else a new serving
    certificate (from the stored CA when there is one), which is saved before it is returned.

    `load` returns the stored Secret data (PEM text by key) or None; `save` stores new data. Either may be
    a plain function or a coroutine function, so the operator can back them with the Kubernetes API.
    """
    stored = await _maybe_await(load())
    existing: TLSBundle | None = None
    if stored:
        try:
            existing = TLSBundle.from_secret_data(stored)
        except (CertificateError, ValueError):
            existing = None
    if existing is not None and not existing.needs_renewal(dns_names, now=now, renew_before=renew_before):
        return existing
    reuse_ca = existing if existing is not None and _ca_usable(existing, now, valid_days) else None
    bundle = generate(dns_names, ca=reuse_ca, now=now, valid_days=valid_days)
    await _maybe_await(save(bundle.to_secret_data()))
    return bundle


def server_ssl_context(bundle: TLSBundle, client_ca: bytes | None = None) -> ssl.SSLContext:
    """A server SSLContext (TLS 1.2 minimum, as KEDA's default) presenting `bundle`.

    With `client_ca` (the `requestheader-client-ca-file` of kube-system/extension-apiserver-authentication),
    clients must present a certificate it signed: only the aggregator can then call the API.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # load_cert_chain only reads files: write the PEM into a private directory for the moment it takes.
    with tempfile.TemporaryDirectory(prefix="ebb-tls-") as directory:
        cert_path = os.path.join(directory, "tls.crt")
        key_path = os.path.join(directory, "tls.key")
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(bundle.key)
        Path(cert_path).write_bytes(bundle.cert)
        context.load_cert_chain(cert_path, key_path)
    if client_ca is not None:
        context.load_verify_locations(cadata=client_ca.decode())
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def client_ssl_context(ca_cert: bytes) -> ssl.SSLContext:
    """A client SSLContext trusting only `ca_cert` (what the aggregator does with the APIService caBundle)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_cert.decode())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


# --- helpers ------------------------------------------------------------------------------------------


async def _maybe_await(value: _T | Awaitable[_T]) -> _T:
    if inspect.isawaitable(value):
        return await value
    return value


def _ca_usable(bundle: TLSBundle, now: dt.datetime | None, valid_days: int) -> bool:
    if bundle.ca_key is None:
        return False
    moment = now or dt.datetime.now(dt.UTC)
    # A CA about to expire would cut the new certificate short: start over with a new CA instead.
    return _load_cert(bundle.ca_cert, "ca.crt").not_valid_after_utc > moment + dt.timedelta(days=valid_days)


def _load_cert(pem: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as error:
        raise CertificateError(f"{what} is not a PEM certificate") from error


def _load_key(pem: bytes, what: str) -> CertificateIssuerPrivateKeyTypes:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise CertificateError(f"{what} is not an unencrypted PEM private key") from error
    if not isinstance(key, _SIGNING_KEYS):
        raise CertificateError(f"{what} is a key type that cannot sign certificates")
    return key


def _private_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _public_bytes(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
