"""The self-signed serving certificate: issued by a CA of its own, kept while it covers the
serving names with a month to spare, stored in `--cert-dir` and, with `--cert-secret`,
shared by every replica through one Secret whose CA is put into the APIService."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapter.cluster.kube import APISERVICE, Kube, KubeError
from adapter.errors import UsageError
from adapter.security.tls import TLSSettings, subject_alt_names

log = logging.getLogger(__name__)

CERT_FILE, KEY_FILE, CA_FILE, CA_KEY_FILE = "tls.crt", "tls.key", "ca.crt", "ca.key"
"""File names in `--cert-dir`, and keys of the Secret (those of a kubernetes.io/tls one)."""

FILES = (CERT_FILE, KEY_FILE, CA_FILE, CA_KEY_FILE)
"""In the order of CertificateSet's fields."""

LEAF_DAYS, CA_DAYS = 365, 3650
RENEW_BEFORE = dt.timedelta(days=30)
"""A certificate with less left than this is renewed (the CA, and with it the caBundle,
only when the CA itself runs short)."""

SERVICE = "scaleahead"
"""The shipped Service's name (manifests/base/service.yaml)."""

RECHECK_SECONDS = 3600.0
"""How often a replica re-reads the shared Secret (another replica may have renewed it)."""


@dataclass(frozen=True)
class CertificateSet:
    """A serving certificate, its key, and the CA that signed it, all PEM."""

    cert: bytes  # the leaf, then the CA
    key: bytes
    ca: bytes
    ca_key: bytes

    def covers(self, hosts: list[str], now: dt.datetime) -> bool:
        """Whether this set can serve `hosts` for at least RENEW_BEFORE from `now`."""
        try:
            leaf = x509.load_pem_x509_certificates(self.cert)[0]
            ca = x509.load_pem_x509_certificate(self.ca)
            key = serialization.load_pem_private_key(self.key, password=None)
            ca_key = serialization.load_pem_private_key(self.ca_key, password=None)
            leaf.verify_directly_issued_by(ca)
            sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (ValueError, TypeError, InvalidSignature, IndexError, x509.ExtensionNotFound):
            return False
        names = set(sans.get_values_for_type(x509.DNSName)) | {
            str(ip) for ip in sans.get_values_for_type(x509.IPAddress)
        }
        return (
            set(hosts) <= names
            and min(leaf.not_valid_after_utc, ca.not_valid_after_utc) > now + RENEW_BEFORE
            and _public(key) == _public(leaf.public_key())
            and _public(ca_key) == _public(ca.public_key())
        )

    def write(self, cert_dir: Path) -> TLSSettings:
        """Write the files (key before certificate: a reader never sees a certificate
        without its key) and return the serving settings for them."""
        try:
            cert_dir.mkdir(parents=True, exist_ok=True)
            _atomic_write(cert_dir / KEY_FILE, self.key, 0o600)
            _atomic_write(cert_dir / CA_KEY_FILE, self.ca_key, 0o600)
            _atomic_write(cert_dir / CERT_FILE, self.cert, 0o644)
            _atomic_write(cert_dir / CA_FILE, self.ca, 0o644)
        except OSError as err:
            raise UsageError(
                f"--cert-dir {cert_dir}: cannot write the certificate: {err}"
            ) from None
        return TLSSettings(cert_dir / CERT_FILE, cert_dir / KEY_FILE)

    @classmethod
    def read(cls, cert_dir: Path) -> CertificateSet | None:
        """The set in `cert_dir`, or None if a file is missing."""
        try:
            return cls(*((cert_dir / n).read_bytes() for n in FILES))
        except OSError:
            return None

    def as_secret_data(self) -> dict[str, str]:
        values = (self.cert, self.key, self.ca, self.ca_key)
        return {n: base64.b64encode(v).decode() for n, v in zip(FILES, values, strict=True)}

    @classmethod
    def from_secret_data(cls, data: dict[str, str]) -> CertificateSet | None:
        try:
            return cls(*(base64.b64decode(data[n], validate=True) for n in FILES))
        except (KeyError, ValueError):
            return None


def _public(key: Any) -> bytes:
    """The DER public key of a private or public key."""
    if hasattr(key, "private_bytes"):
        key = key.public_key()
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def issue(
    hosts: list[str], now: dt.datetime, previous: CertificateSet | None = None
) -> CertificateSet:
    """A new certificate for `hosts`, signed by `previous`' CA while that has CA_DAYS / 2
    left (so the caBundle stays the same), else by a new CA."""
    pem = serialization.Encoding.PEM
    ca_key: ec.EllipticCurvePrivateKey | None = None
    ca: x509.Certificate | None = None
    if previous is not None:
        try:
            old_ca = x509.load_pem_x509_certificate(previous.ca)
            old_key = serialization.load_pem_private_key(previous.ca_key, password=None)
            if (
                isinstance(old_key, ec.EllipticCurvePrivateKey)
                and _public(old_key) == _public(old_ca.public_key())
                and old_ca.not_valid_after_utc > now + dt.timedelta(days=CA_DAYS // 2)
            ):
                ca, ca_key = old_ca, old_key
        except (ValueError, TypeError):
            pass
    if ca is None or ca_key is None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, f"scaleahead-ca@{int(now.timestamp())}")]
        )
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(min(now + dt.timedelta(days=LEAF_DAYS), ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(subject_alt_names(hosts), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    private = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    return CertificateSet(
        cert=leaf.public_bytes(pem) + ca.public_bytes(pem),
        key=key.private_bytes(pem, private, none),
        ca=ca.public_bytes(pem),
        ca_key=ca_key.private_bytes(pem, private, none),
    )


def self_signed(cert_dir: Path, hosts: list[str]) -> TLSSettings:
    """The certificate in `cert_dir`, renewed there if it does not cover `hosts` for a
    month more; its CA is `cert_dir/ca.crt`."""
    now = dt.datetime.now(dt.UTC)
    current = CertificateSet.read(cert_dir)
    if current is not None and current.covers(hosts, now):
        return TLSSettings(cert_dir / CERT_FILE, cert_dir / KEY_FILE)
    settings = issue(hosts, now, current).write(cert_dir)
    log.info("wrote a self-signed serving certificate for %s to %s", ", ".join(hosts), cert_dir)
    return settings


class SharedCertificate:
    """One self-signed certificate for every replica, kept in the Secret `name` of
    `namespace` (created by whichever replica comes first; renewed by whichever finds it
    short, with the Secret's resourceVersion so that two never both win), copied into
    `cert_dir` for serving, and its CA put into the APIService that routes to
    `namespace` (never into one that routes elsewhere: that belongs to another adapter)."""

    def __init__(
        self, kube: Kube, namespace: str, name: str, cert_dir: Path, hosts: list[str]
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.cert_dir = cert_dir
        self.hosts = hosts
        self._stop = threading.Event()

    def sync(self) -> TLSSettings:
        """Make the Secret hold a certificate that covers the hosts, write it to the
        directory, and put its CA into the APIService; raise KubeError if the API fails."""
        certs = self._agreed()
        on_disk = CertificateSet.read(self.cert_dir)
        settings = TLSSettings(self.cert_dir / CERT_FILE, self.cert_dir / KEY_FILE)
        if on_disk != certs:
            settings = certs.write(self.cert_dir)
        self.kube.inject_ca_bundle(APISERVICE, self.namespace, certs.ca)
        return settings

    def _agreed(self) -> CertificateSet:
        for _ in range(5):
            found, version = self.kube.read_secret(self.namespace, self.name)
            now = dt.datetime.now(dt.UTC)
            current = CertificateSet.from_secret_data(found) if found is not None else None
            if current is not None and current.covers(self.hosts, now):
                return current
            new = issue(self.hosts, now, current)
            if self.kube.write_secret(self.namespace, self.name, new.as_secret_data(), version):
                log.info(
                    "%s the shared serving certificate %s/%s for %s",
                    "renewed" if found is not None else "created",
                    self.namespace,
                    self.name,
                    ", ".join(self.hosts),
                )
                return new
            # Another replica wrote it first: read theirs.
        raise KubeError(f"Secret {self.namespace}/{self.name} kept changing under us")

    def start(self) -> None:
        """Re-check the Secret every RECHECK_SECONDS in the background."""
        threading.Thread(target=self._loop, name="cert-secret", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(RECHECK_SECONDS):
            try:
                self.sync()
            except KubeError as err:
                log.warning("serving certificate not re-checked: %s", err)


def serving_names(kube: Kube, namespace: str | None) -> list[str]:
    """Names a self-signed serving certificate must carry: loopback, the shipped Service in
    `namespace` (which KEDA dials for the external scaler), and the Service the APIService
    routes to, when it can be read and routes to `namespace`."""
    names = ["localhost", "127.0.0.1"]
    services: list[tuple[str, str]] = [(SERVICE, namespace)] if namespace else []
    try:
        route = kube.apiservice_route(APISERVICE)
    except KubeError as err:
        log.info("APIService %s not readable (%s)", APISERVICE, err)
        route = None
    if route is not None and (namespace is None or route[1] == namespace):
        services.append(route)
    for name, ns in dict.fromkeys(services):
        names += [f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]
    return names
