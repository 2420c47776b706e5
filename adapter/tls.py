"""The serving certificate and the client CAs: loaded and checked at start, reloaded for
the next handshake when their files (or the trusted client CAs) change."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from adapter.errors import UsageError

log = logging.getLogger(__name__)

TLS_VERSIONS = {
    "VersionTLS12": ssl.TLSVersion.TLSv1_2,
    "VersionTLS13": ssl.TLSVersion.TLSv1_3,
}
"""--tls-min-version values (Kubernetes' names). TLS 1.0 and 1.1 are not offered."""

CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
"""--tls-cipher-suites values (IANA names, as Kubernetes takes them) for TLS 1.2.
TLS 1.3 suites are not configurable, as in Go."""

RELOAD_CHECK_INTERVAL = 1.0
"""At most this often (seconds) a handshake checks whether the files changed."""


def parse_min_version(text: str) -> ssl.TLSVersion:
    try:
        return TLS_VERSIONS[text]
    except KeyError:
        raise UsageError(
            f"--tls-min-version {text}: expected one of {', '.join(TLS_VERSIONS)}"
        ) from None


def parse_cipher_suites(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in CIPHER_SUITES]
    if unknown:
        raise UsageError(
            f"--tls-cipher-suites: unknown or insecure suite(s) {', '.join(unknown)}; "
            f"supported: {', '.join(CIPHER_SUITES)}"
        )
    return names


def file_stamps(paths: tuple[Path, ...]) -> tuple[tuple[int, int, int], ...]:
    """What changes when a file is rewritten or replaced: (mtime, size, inode), zeros if gone."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append((0, 0, 0))
    return tuple(out)


def check_certificate(cert_file: Path, key_file: Path) -> x509.Certificate:
    """The serving certificate, or UsageError naming the file that cannot be used."""
    for flag, path in (("--tls-cert-file", cert_file), ("--tls-private-key-file", key_file)):
        if not path.is_file():
            raise UsageError(f"{flag}: no such file: {path}")
    try:
        certs = x509.load_pem_x509_certificates(cert_file.read_bytes())
    except ValueError as err:
        raise UsageError(f"--tls-cert-file {cert_file}: not a PEM certificate ({err})") from None
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (ValueError, TypeError) as err:
        raise UsageError(
            f"--tls-private-key-file {key_file}: not an unencrypted PEM private key ({err})"
        ) from None
    leaf = certs[0]
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    leaf_public = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public != leaf_public:
        raise UsageError(
            f"--tls-private-key-file {key_file}: not the key of the certificate in {cert_file}"
        )
    if leaf.not_valid_after_utc < dt.datetime.now(dt.UTC):
        raise UsageError(
            f"--tls-cert-file {cert_file}: expired on {leaf.not_valid_after_utc.isoformat()}"
        )
    return leaf


@dataclass(frozen=True)
class TLSSettings:
    """How the secure port serves: its certificate and what it accepts."""

    cert_file: Path
    key_file: Path
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    cipher_suites: tuple[str, ...] = ()


class ServingTLS:
    """An SSLContext for the server whose certificate and trusted client CAs follow their
    sources: each handshake (checking at most once a second) uses the newest good ones.

    Client certificates are requested but optional; one that does not chain to a trusted
    client CA fails the handshake (Python's ssl cannot defer that check to the request).
    """

    def __init__(self, settings: TLSSettings, client_cas: Callable[[], bytes]) -> None:
        """`settings` name files that check_certificate accepted."""
        self.settings = settings
        self.client_cas = client_cas
        self._files = (settings.cert_file, settings.key_file)
        self._stamp = file_stamps(self._files)
        self._cas = client_cas()
        self._checked = time.monotonic()
        # The context the server listens with; each handshake switches to the newest.
        self.context = self._current = self._build(self._cas)
        self.context.sni_callback = self._on_client_hello

    def _build(self, cas: bytes) -> ssl.SSLContext:
        s = self.settings
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = s.min_version
        if s.cipher_suites:
            ctx.set_ciphers(":".join(CIPHER_SUITES[n] for n in s.cipher_suites))
        ctx.load_cert_chain(s.cert_file, s.key_file)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        if cas.strip():
            ctx.load_verify_locations(cadata=cas.decode())
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def _on_client_hello(
        self, sock: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        now = time.monotonic()
        if now - self._checked >= RELOAD_CHECK_INTERVAL:
            self._checked = now
            self._reload_if_changed()
        sock.context = self._current

    def _reload_if_changed(self) -> None:
        stamp, cas = file_stamps(self._files), self.client_cas()
        if stamp == self._stamp and cas == self._cas:
            return
        try:
            if stamp != self._stamp:
                check_certificate(self.settings.cert_file, self.settings.key_file)
            context = self._build(cas)
        except (UsageError, ssl.SSLError, OSError, ValueError) as err:
            log.warning("keeping the previous TLS configuration: %s", err)
            return
        self._current, self._stamp, self._cas = context, stamp, cas
        log.info("TLS: serving certificate or client CAs changed; new handshakes use them")


def subject_alt_names(hosts: list[str] | tuple[str, ...]) -> x509.SubjectAlternativeName:
    """IP addresses as IP SANs, everything else as DNS names."""
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(sans)
