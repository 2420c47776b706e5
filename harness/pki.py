"""Test certificates: certificate authorities and the certificates they sign, as PEM files."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapter.security.tls import subject_alt_names

_KEY = serialization.Encoding.PEM


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(_KEY, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


@dataclass(frozen=True)
class Pair:
    """A certificate and its key, on disk."""

    cert: Path
    key: Path


@dataclass
class CA:
    """A self-signed certificate authority that signs leaf certificates into `dir`."""

    name: str
    dir: Path

    def __post_init__(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(_name(self.name))
            .issuer_name(_name(self.name))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
            .sign(self._key, hashes.SHA256())
        )
        self.cert = self.dir / f"{self.name}.crt"
        self.key = self.dir / f"{self.name}.key"
        self.cert.write_bytes(self._cert.public_bytes(_KEY))
        _write_key(self._key, self.key)

    def pem(self) -> bytes:
        return self.cert.read_bytes()

    def issue(
        self,
        file_stem: str,
        cn: str,
        *,
        orgs: tuple[str, ...] = (),
        hosts: tuple[str, ...] = (),
        client: bool = True,
        server: bool = False,
        valid: dt.timedelta = dt.timedelta(days=7),
        not_before: dt.datetime | None = None,
    ) -> Pair:
        """Sign a leaf certificate for `cn` (client and/or server) and write it with its key."""
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        usages = []
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, orgs))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + valid)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if hosts:
            builder = builder.add_extension(subject_alt_names(hosts), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        pair = Pair(self.dir / f"{file_stem}.crt", self.dir / f"{file_stem}.key")
        pair.cert.write_bytes(cert.public_bytes(_KEY))
        _write_key(key, pair.key)
        return pair


def service_account_keys(dir: Path) -> Pair:
    """The key pair the API server signs and verifies service-account tokens with."""
    key = ec.generate_private_key(ec.SECP256R1())
    pair = Pair(dir / "sa.pub", dir / "sa.key")
    pair.cert.write_bytes(
        key.public_key().public_bytes(_KEY, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    _write_key(key, pair.key)
    return pair
