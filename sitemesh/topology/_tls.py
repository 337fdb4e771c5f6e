"""TLS for the bus: certificate file sets, and a development CA (``sitemesh certs``).

Production points :class:`TlsFiles` at the organisation's certificates; development
generates a throw-away CA with :func:`generate_dev_pki`: ECDSA P-256 keys, a CA,
one server certificate per server (SAN ``127.0.0.1``, ``localhost`` and any extra
hosts, EKU serverAuth) and client certificates (EKU clientAuth) for the processes
that connect to it and for each site's leaf link (RFC 5280 profiles). Private keys
are written with mode 0600 and never logged.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import BaseModel, ConfigDict

from ..errors import ConfigError

DEV_HOSTS: Final[tuple[str, ...]] = ("127.0.0.1", "localhost")
"""Subject alternative names of development server certificates."""

TLS_TIMEOUT_S: Final = 2
"""Seconds nats-server allows for a TLS handshake (its ``tls.timeout``)."""


class TlsFiles(BaseModel):
    """A certificate, its private key and the CA bundle that verifies peers.

    The same shape serves a server listener (``tls {}`` block of nats-server) and
    a client (nats-py ``tls=`` context, a leaf remote's ``tls {}``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ca_file: Path
    """PEM bundle of the CA(s) that sign peers' certificates."""
    cert_file: Path
    """PEM certificate (chain) presented to the peer."""
    key_file: Path
    """PEM private key of :attr:`cert_file` (keep it mode 0600)."""

    def check(self, key: str, *, sep: str = ".") -> TlsFiles:
        """Fail early if a file is missing or unreadable.

        Args:
            key: the settings key these files came from, named in the error as
                ``<key><sep><field>`` (``nats.tls_ca_file`` is
                ``SITEMESH_NATS_TLS_CA_FILE``).
            sep: joins ``key`` and the field name.

        Returns:
            ``self``.

        Raises:
            ConfigError: ``<key>.<field>`` names the missing or unreadable file.
        """
        for field in ("ca_file", "cert_file", "key_file"):
            path: Path = getattr(self, field)
            if not path.is_file() or not os.access(path, os.R_OK):
                raise ConfigError(f"{key}{sep}{field}", f"no readable file at {path}")
        return self

    def server_block(self, *, verify: bool) -> dict[str, object]:
        """The nats-server ``tls {}`` block of a listener.

        Args:
            verify: require and verify client certificates (mutual TLS).
        """
        return {
            "cert_file": self.cert_file,
            "key_file": self.key_file,
            "ca_file": self.ca_file,
            "verify": verify,
            "timeout": TLS_TIMEOUT_S,
        }

    def remote_block(self) -> dict[str, object]:
        """The ``tls {}`` block of a leaf remote (client side of the leaf link)."""
        return {
            "cert_file": self.cert_file,
            "key_file": self.key_file,
            "ca_file": self.ca_file,
            "timeout": TLS_TIMEOUT_S,
        }

    def client_context(self) -> ssl.SSLContext:
        """An ``ssl.SSLContext`` for nats-py: verifies the server, presents our cert.

        Raises:
            ConfigError: a file is missing or not a valid PEM of its kind.
        """
        self.check("nats.tls", sep="_")
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        except ssl.SSLError as exc:  # the message names no key material
            raise ConfigError("nats.tls_cert_file", f"cannot load certificate/key: {exc}") from exc
        return ctx


@dataclass(frozen=True, slots=True)
class DevPki:
    """A generated development PKI under :attr:`directory`.

    Layout: ``ca.pem``/``ca-key.pem``, ``<name>.pem``/``<name>-key.pem`` per
    certificate (keys mode 0600).
    """

    directory: Path

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM)."""
        return self.directory / "ca.pem"

    def files(self, name: str) -> TlsFiles:
        """The files of certificate ``name`` (e.g. ``"server-hub"``, ``"client-eu1"``)."""
        return TlsFiles(
            ca_file=self.ca_file,
            cert_file=self.directory / f"{name}.pem",
            key_file=self.directory / f"{name}-key.pem",
        )


def valid_for_s(cert_file: Path) -> float | None:
    """Seconds until the PEM certificate ``cert_file`` expires (negative: expired).

    Returns:
        ``None`` when the file is missing or not a PEM certificate.
    """
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    except (OSError, ValueError):
        return None
    return (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds()


def _write(path: Path, data: bytes, *, secret: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o600 if secret else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(mode)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
    if not (cert_path.is_file() and key_path.is_file()):
        return None
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError("certs.ca", f"{key_path} is not an EC private key")
    return cert, key


def _issue(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    common_name: str,
    *,
    days: int,
    hosts: Sequence[str] = (),
    usage: x509.ObjectIdentifier | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer, signer = (subject, key) if ca is None else (ca[0].subject, ca[1])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca is None, path_length=None), critical=True)
    )
    if ca is None:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        assert usage is not None
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if hosts:
        builder = builder.add_extension(_san(hosts), critical=False)
    return builder.sign(signer, hashes.SHA256()), key


def generate_dev_pki(
    directory: Path,
    *,
    servers: Sequence[str],
    clients: Sequence[str],
    hosts: Sequence[str] = DEV_HOSTS,
    days: int = 30,
    ca_name: str = "sitemesh development CA",
) -> DevPki:
    """Generate (or extend) a development PKI: a CA, server and client certificates.

    An existing CA in ``directory`` is reused, so adding a site keeps the other
    certificates valid; every requested leaf certificate is (re)issued.

    Args:
        directory: where the PEM files go (created; keys mode 0600).
        servers: server certificate names, e.g. ``["server-hub", "server-eu1"]``;
            each gets the SANs ``hosts`` and EKU serverAuth.
        clients: client certificate names, e.g. ``["client-eu1", "leaf-eu1"]``;
            EKU clientAuth.
        hosts: SANs of server certificates (IP addresses or DNS names).
        days: validity in days.
        ca_name: the CA's common name (tests make a second, foreign CA).

    Returns:
        The PKI; :meth:`DevPki.files` gives each certificate's :class:`TlsFiles`.
    """
    directory = Path(directory)
    ca = _load_ca(directory)
    if ca is None:
        ca = _issue(None, ca_name, days=max(days, 365))
        _write(directory / "ca.pem", ca[0].public_bytes(serialization.Encoding.PEM), secret=False)
        _write(directory / "ca-key.pem", _key_pem(ca[1]), secret=True)
    for names, usage, sans in (
        (servers, ExtendedKeyUsageOID.SERVER_AUTH, hosts),
        (clients, ExtendedKeyUsageOID.CLIENT_AUTH, ()),
    ):
        for name in names:
            cert, key = _issue(ca, name, days=days, hosts=sans, usage=usage)
            _write(
                directory / f"{name}.pem",
                cert.public_bytes(serialization.Encoding.PEM),
                secret=False,
            )
            _write(directory / f"{name}-key.pem", _key_pem(key), secret=True)
    return DevPki(directory)
