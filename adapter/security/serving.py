"""Serving securely, wired: the serving certificate (given, or self-signed in a directory
and shared through a Secret), the TLS policy, the Kubernetes client, and the guard that
authenticates and authorizes every request, around an app."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from adapter.asgi import ASGIApp
from adapter.cluster.certs import SharedCertificate, self_signed, serving_names
from adapter.cluster.kube import Kube, KubeError, api_client, own_namespace
from adapter.errors import UsageError
from adapter.security.authn import Authenticator
from adapter.security.authz import Authorizer
from adapter.security.guard import Guard
from adapter.security.options import SecureOptions
from adapter.security.tls import (
    ServingTLS,
    TLSPolicy,
    TLSSettings,
    check_certificate,
    parse_cipher_suites,
    parse_min_version,
)


@dataclass
class Secured:
    """What serving securely adds: the guarded app, its TLS context and the settings it
    serves with, the API client, and the parts to start and stop with the service."""

    app: ASGIApp
    context: ssl.SSLContext
    tls: TLSSettings
    kube: Kube
    parts: list[Authenticator | SharedCertificate]


def secure(options: SecureOptions, app: ASGIApp) -> Secured:
    """Put `app` behind authentication and authorization, served over TLS; UsageError
    when the flags cannot be served. Nothing is started yet (see `parts`)."""
    policy = TLSPolicy(
        parse_min_version(options.tls_min_version), parse_cipher_suites(options.tls_cipher_suites)
    )
    given = options.tls_cert_file and options.tls_private_key_file
    if given:
        assert options.tls_cert_file and options.tls_private_key_file
        check_certificate(options.tls_cert_file, options.tls_private_key_file)
    kube = Kube(api_client(options.kubeconfig))
    authenticator = Authenticator(options.authentication, kube)
    parts: list[Authenticator | SharedCertificate] = [authenticator]
    if options.tls_cert_file and options.tls_private_key_file:
        files = TLSSettings(options.tls_cert_file, options.tls_private_key_file, policy)
    else:
        assert options.cert_dir is not None
        if options.cert_secret:
            namespace = own_namespace(options.kubeconfig)
            shared = SharedCertificate(
                kube,
                namespace,
                options.cert_secret,
                options.cert_dir,
                serving_names(kube, namespace),
            )
            try:
                generated = shared.sync()
            except KubeError as err:
                raise UsageError(f"--cert-secret {options.cert_secret}: {err}") from None
            parts.append(shared)
        else:
            generated = self_signed(options.cert_dir, serving_names(kube, None))
        files = TLSSettings(generated.cert_file, generated.key_file, policy)
    authenticator.lookup()  # the CAs the first handshakes need
    tls = ServingTLS(files, authenticator.client_cas_pem)
    guarded = Guard(app, authenticator, Authorizer(options.authorization, kube))
    return Secured(guarded, tls.context, files, kube, parts)
