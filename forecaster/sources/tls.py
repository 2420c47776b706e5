"""TLS as scaleahead's HTTP clients speak it (to Prometheus, to the server it forwards
to): TLS 1.2 at least, the system's CAs or the given one, a client certificate if any."""

from __future__ import annotations

import ssl
from pathlib import Path


def client_context(
    ca_file: Path | None = None, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """A context that verifies the server against `ca_file` (default: the system's CAs)
    and presents `cert_file` with `key_file` when both are given."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None and key_file is not None:
        context.load_cert_chain(cert_file, key_file)
    return context
