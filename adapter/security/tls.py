"""The one TLS policy of every serving port and client: the versions and cipher suites
offered (`TLSPolicy`, the same for HTTPS and gRPC), the serving certificate checked
against its key at start and at every reload, and reloaded for the next handshake when
its files (or the trusted client CAs) change. Clients (to Prometheus, to the server
metrics are forwarded to) use forecaster.sources.tls.client_context.

gRPC (grpcio) can be given neither a minimum version nor suites through its API: its
floor is TLS 1.2 already, its TLS 1.2 suites are set through GRPC_SSL_CIPHER_SUITES
before grpc starts, and a TLS 1.3 minimum is refused for it rather than not enforced."""

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
from typing import Any

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

GRPC_SUITES_ENV = "GRPC_SSL_CIPHER_SUITES"
"""Where grpc reads its TLS 1.2 cipher suites from, once, when it starts."""


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
class TLSPolicy:
    """What every TLS port and client of scaleahead accepts: TLS `min_version` and up, and
    for TLS 1.2 `cipher_suites` (IANA names; none given: every suite of CIPHER_SUITES,
    all ECDHE with an AEAD cipher)."""

    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    cipher_suites: tuple[str, ...] = ()

    @property
    def openssl_ciphers(self) -> str:
        """The TLS 1.2 suites in OpenSSL's (and grpc's) spelling."""
        return ":".join(CIPHER_SUITES[n] for n in self.cipher_suites or tuple(CIPHER_SUITES))

    def apply(self, context: ssl.SSLContext) -> ssl.SSLContext:
        """`context` restricted to the policy's versions and suites."""
        context.minimum_version = self.min_version
        context.set_ciphers(self.openssl_ciphers)
        return context

    def for_grpc(self) -> None:
        """Make grpc, before it starts, serve this policy; UsageError where it cannot."""
        if self.min_version > ssl.TLSVersion.TLSv1_2:
            raise UsageError(
                "--tls-min-version VersionTLS13: the KEDA scaler's gRPC server cannot be held "
                "to TLS 1.3 (grpcio offers no setting for it, its floor is TLS 1.2); give "
                "VersionTLS12, or serve the KEDA scaler from a separate process"
            )
        os.environ[GRPC_SUITES_ENV] = self.openssl_ciphers


@dataclass(frozen=True)
class TLSSettings:
    """How a secure port serves: its certificate and the policy it serves it with."""

    cert_file: Path
    key_file: Path
    policy: TLSPolicy = TLSPolicy()


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
        ctx = s.policy.apply(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
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


class _GrpcCertificates:
    """The PEM files of a gRPC port's TLS, re-read when one changes (checked at most every
    RELOAD_CHECK_INTERVAL, when a new connection asks) and checked as the HTTPS port's are."""

    def __init__(self, settings: TLSSettings, client_ca_file: Path | None) -> None:
        self.settings, self.client_ca_file = settings, client_ca_file
        self._files = (settings.cert_file, settings.key_file, *filter(None, [client_ca_file]))
        self._stamp = file_stamps(self._files)
        self._checked = time.monotonic()

    def load(self) -> Any:
        import grpc

        check_certificate(self.settings.cert_file, self.settings.key_file)
        ca = self.client_ca_file.read_bytes() if self.client_ca_file else None
        pair = (self.settings.key_file.read_bytes(), self.settings.cert_file.read_bytes())
        return grpc.ssl_server_certificate_configuration([pair], root_certificates=ca)

    def changed(self) -> Any:
        """grpc's fetcher: a new configuration, or None to keep the current one."""
        now = time.monotonic()
        if now - self._checked < RELOAD_CHECK_INTERVAL:
            return None
        self._checked = now
        stamp = file_stamps(self._files)
        if stamp == self._stamp:
            return None
        try:
            config = self.load()
        except (UsageError, OSError) as err:
            log.warning("gRPC TLS: keeping the previous certificate: %s", err)
            return None
        self._stamp = stamp
        log.info("gRPC TLS: certificate or client CA changed; new connections use them")
        return config


def grpc_credentials(settings: TLSSettings, client_ca_file: Path | None) -> Any:
    """grpc server credentials serving `settings` under their policy, following the files
    when they change; with a client CA, only clients presenting a certificate it signed
    get through the handshake. Call before anything else starts grpc."""
    settings.policy.for_grpc()
    import grpc

    files = _GrpcCertificates(settings, client_ca_file)
    return grpc.dynamic_ssl_server_credentials(
        files.load(), files.changed, require_client_authentication=client_ca_file is not None
    )
