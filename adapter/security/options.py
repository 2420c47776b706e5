"""The secure port's settings as the flags give them (kept free of heavy imports, so that
the command line starts fast): its certificate, TLS, Kubernetes credentials, and how
requests are authenticated and authorized. Every default is written here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class AuthenticationSettings:
    """The flags of authentication (--client-ca-file, --requestheader-*, ...)."""

    client_ca_file: Path | None = None
    requestheader_client_ca_file: Path | None = None
    requestheader_allowed_names: tuple[str, ...] = ()
    skip_lookup: bool = False
    token_cache_ttl: float = 10.0


ALWAYS_ALLOW = ("/healthz", "/livez", "/readyz", "/openapi/*", "/version")
"""Paths served to anyone, as the Kubernetes API servers serve them."""


@dataclass(frozen=True)
class AuthorizationSettings:
    """The flags of authorization."""

    always_allow_paths: tuple[str, ...] = ALWAYS_ALLOW
    allowed_ttl: float = 10.0
    denied_ttl: float = 10.0


@dataclass(frozen=True)
class SecureOptions:
    """The secure port's flags: where its certificate comes from, the TLS policy, the
    Kubernetes credentials, and how requests are authenticated and authorized."""

    tls_cert_file: Path | None = None
    tls_private_key_file: Path | None = None
    cert_dir: Path | None = None
    cert_secret: str | None = None
    tls_min_version: str = "VersionTLS12"
    tls_cipher_suites: str | None = None
    kubeconfig: Path | None = None
    authentication: AuthenticationSettings = field(default_factory=AuthenticationSettings)
    authorization: AuthorizationSettings = field(default_factory=AuthorizationSettings)

    @property
    def wanted(self) -> bool:
        """Whether these flags ask for a secure port at all (a certificate is named)."""
        return bool(self.tls_cert_file or self.cert_dir)
