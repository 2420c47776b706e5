"""The flags of `scaleahead serve`, and how their values are read into the options it
runs with (`backtest`'s: adapter.backtest_flags). Every default shown is read from the
options object it fills, where it is written once."""

from __future__ import annotations

import argparse
from pathlib import Path

from adapter.errors import UsageError
from adapter.security.options import AuthenticationSettings, AuthorizationSettings, SecureOptions
from adapter.serve import SECURE_PORT, ServeOptions
from forecaster.times import format_duration, parse_duration


def flag_seconds(flag: str, text: str) -> int:
    """A duration flag's seconds; UsageError naming the flag."""
    try:
        return parse_duration(text)
    except ValueError as err:
        raise UsageError(f"{flag}: {err}") from None


def optional_path(text: str | None) -> Path | None:
    """A path flag's value, if given."""
    return None if text is None else Path(text)


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def serve_flags(s: argparse.ArgumentParser) -> None:
    serve, secure = ServeOptions(), SecureOptions()
    authn, authz = AuthenticationSettings(), AuthorizationSettings()
    s.add_argument("--config", help="YAML configuration; without it, replay the bundled trace")
    s.add_argument("--bind-address", help="default 127.0.0.1 (plain HTTP) or 0.0.0.0 (TLS)")
    s.add_argument(
        "--port",
        type=int,
        default=serve.port,
        help="plain HTTP port, without authentication, for local development on loopback "
        "(used when no certificate flag is given)",
    )
    s.add_argument(
        "--log-level", default=serve.log_level, choices=["debug", "info", "warning", "error"]
    )
    s.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text lines, or one JSON object per line (time, level, logger, msg)",
    )
    s.add_argument(
        "--v", type=int, default=serve.verbosity, help="verbosity; 2 and up logs every request"
    )
    s.add_argument(
        "--fit-workers",
        default="auto",
        help="processes that refit the models beside the serving one, about 150 MiB each, "
        "started once a cycle has refits enough for them (0: the serving process refits "
        "them; default auto: one per usable core, none on one core)",
    )
    s.add_argument(
        "--state-dir",
        help="save each rule's history and fits here every 5 minutes, and take them up "
        "again at start: a restarted process fetches only what is new and refits only "
        "what fell due (created, mode 0700; an emptyDir survives a container's restarts)",
    )
    t = s.add_argument_group(
        "secure serving (TLS; every request is authenticated and authorized through the "
        "Kubernetes API)"
    )
    t.add_argument("--secure-port", type=int, help=f"TLS port (default {SECURE_PORT})")
    t.add_argument("--tls-cert-file", help="serving certificate (PEM), reloaded when it changes")
    t.add_argument("--tls-private-key-file", help="serving key (PEM)")
    t.add_argument(
        "--cert-dir",
        help="without --tls-cert-file: write (or reuse) a self-signed serving certificate "
        "here, with its CA in ca.crt for the APIService's caBundle",
    )
    t.add_argument(
        "--cert-secret",
        help="with --cert-dir: share the self-signed certificate between replicas through "
        "this Secret in scaleahead's namespace (created if missing, renewed a month before "
        "it expires) and put its CA into the APIService's caBundle",
    )
    t.add_argument(
        "--tls-min-version",
        default=secure.tls_min_version,
        help="VersionTLS12 or VersionTLS13 (HTTPS and the KEDA scaler's gRPC alike)",
    )
    t.add_argument(
        "--tls-cipher-suites",
        help="comma-separated IANA names for TLS 1.2 (default: every ECDHE suite with an "
        "AEAD cipher)",
    )
    t.add_argument("--kubeconfig", help="Kubernetes API credentials (default: in-cluster)")
    t.add_argument(
        "--client-ca-file",
        help="CA of client certificates whose CN/O are the user/groups (default: the "
        "API server's, from kube-system/extension-apiserver-authentication)",
    )
    t.add_argument(
        "--requestheader-client-ca-file",
        help="CA of the aggregator's front-proxy certificate (default: from the ConfigMap)",
    )
    t.add_argument(
        "--requestheader-allowed-names",
        help="comma-separated CNs the front-proxy certificate may have (default: the "
        "ConfigMap's; empty there means any)",
    )
    t.add_argument(
        "--authentication-skip-lookup",
        action="store_true",
        help="do not read kube-system/extension-apiserver-authentication",
    )
    t.add_argument(
        "--authentication-token-webhook-cache-ttl",
        default=format_duration(int(authn.token_cache_ttl)),
        help="how long a TokenReview's answer is reused",
    )
    t.add_argument(
        "--authorization-always-allow-paths",
        default=",".join(authz.always_allow_paths),
        help="paths served without authentication or authorization",
    )
    t.add_argument(
        "--authorization-webhook-cache-authorized-ttl",
        default=format_duration(int(authz.allowed_ttl)),
        help="how long a SubjectAccessReview that allowed is reused",
    )
    t.add_argument(
        "--authorization-webhook-cache-unauthorized-ttl",
        default=format_duration(int(authz.denied_ttl)),
        help="how long a SubjectAccessReview that denied is reused",
    )
    k = s.add_argument_group(
        "KEDA external scaler (gRPC, for clusters where KEDA owns the external metrics API)"
    )
    k.add_argument(
        "--keda-scaler-port",
        type=int,
        help="also serve KEDA's external scaler protocol on this port: over TLS with the "
        "serving certificate when serving securely, else plain on loopback",
    )
    k.add_argument(
        "--keda-client-ca-file",
        help="mutual TLS: serve only KEDA clients with a certificate this CA signed "
        "(required with TLS, unless --keda-insecure-any-client)",
    )
    k.add_argument(
        "--keda-insecure-any-client",
        action="store_true",
        help="serve the scaler over TLS to any client, with no client certificate: "
        "whoever reaches the port reads every namespace's forecasts (logged as a warning)",
    )


def serve_options(args: argparse.Namespace) -> ServeOptions:
    """The `serve` flags as options; UsageError naming a flag that cannot be read."""
    return ServeOptions(
        config=optional_path(args.config),
        bind_address=args.bind_address,
        port=args.port,
        secure_port=args.secure_port,
        secure=SecureOptions(
            tls_cert_file=optional_path(args.tls_cert_file),
            tls_private_key_file=optional_path(args.tls_private_key_file),
            cert_dir=optional_path(args.cert_dir),
            cert_secret=args.cert_secret,
            tls_min_version=args.tls_min_version,
            tls_cipher_suites=args.tls_cipher_suites,
            kubeconfig=optional_path(args.kubeconfig),
            authentication=AuthenticationSettings(
                client_ca_file=optional_path(args.client_ca_file),
                requestheader_client_ca_file=optional_path(args.requestheader_client_ca_file),
                requestheader_allowed_names=_names(args.requestheader_allowed_names),
                skip_lookup=args.authentication_skip_lookup,
                token_cache_ttl=flag_seconds(
                    "--authentication-token-webhook-cache-ttl",
                    args.authentication_token_webhook_cache_ttl,
                ),
            ),
            authorization=AuthorizationSettings(
                always_allow_paths=_names(args.authorization_always_allow_paths),
                allowed_ttl=flag_seconds(
                    "--authorization-webhook-cache-authorized-ttl",
                    args.authorization_webhook_cache_authorized_ttl,
                ),
                denied_ttl=flag_seconds(
                    "--authorization-webhook-cache-unauthorized-ttl",
                    args.authorization_webhook_cache_unauthorized_ttl,
                ),
            ),
        ),
        keda_scaler_port=args.keda_scaler_port,
        keda_client_ca_file=optional_path(args.keda_client_ca_file),
        keda_insecure_any_client=args.keda_insecure_any_client,
        log_level=args.log_level,
        verbosity=args.v,
        fit_workers=_fit_workers(args.fit_workers),
        state_dir=optional_path(args.state_dir),
    )


def _fit_workers(value: str) -> int | None:
    """None for auto, else the number of processes given."""
    if value == "auto":
        return None
    try:
        workers = int(value)
    except ValueError:
        workers = -1
    if workers < 0:
        raise UsageError(f"--fit-workers: auto, or a number of processes 0 or more, got {value!r}")
    return workers
