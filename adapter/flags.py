"""The flags of `scaleahead serve` and `scaleahead backtest`, and how their values are
read into the options each command runs with. Every default shown is read from the
options object it fills, where it is written once."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from adapter.errors import UsageError
from adapter.security.options import AuthenticationSettings, AuthorizationSettings, SecureOptions
from adapter.serve import SECURE_PORT, ServeOptions
from forecaster.config import check_quantile
from forecaster.evaluation.hpa_sim import HPASettings
from forecaster.times import format_duration, parse_duration, parse_rfc3339

if TYPE_CHECKING:
    from forecaster.evaluation.command import BacktestOptions


def _time(flag: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError as err:
        raise UsageError(f"{flag}: {err}") from None


def _seconds(flag: str, text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as err:
        raise UsageError(f"{flag}: {err}") from None


def _share(flag: str, text: str | None) -> float | None:
    """A share given as 0.7 or 70%, above 0 and at most 1."""
    if text is None:
        return None
    body = text.strip()
    try:
        value = float(body[:-1]) / 100 if body.endswith("%") else float(body)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:
        raise UsageError(f"{flag}: expected a utilization such as 70% or 0.7, got {text!r}")
    return value


def _quantiles(flag: str, text: str | None) -> tuple[float, ...]:
    """Comma-separated quantiles, each one a rule could serve at, ascending."""
    if text is None:
        return ()
    out = []
    for part in text.split(","):
        try:
            q = float(part)
        except ValueError:
            raise UsageError(f"{flag}: expected numbers like 0.5,0.9, got {part!r}") from None
        try:
            out.append(check_quantile(q))
        except ValueError as err:
            raise UsageError(f"{flag}: {part.strip()}: {err}") from None
    return tuple(sorted(set(out)))


def _path(text: str | None) -> Path | None:
    return None if text is None else Path(text)


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


_HPA_FLAGS = {
    "min_replicas": "spec.minReplicas",
    "max_replicas": "spec.maxReplicas",
    "tolerance": "the controller's --horizontal-pod-autoscaler-tolerance",
    "sync_period": "the controller's --horizontal-pod-autoscaler-sync-period",
    "scale_down_stabilization": "behavior.scaleDown.stabilizationWindowSeconds",
    "scale_up_pods": "behavior.scaleUp policy: pods added per period",
    "scale_up_percent": "behavior.scaleUp policy: percent added per period",
    "scale_up_period": "behavior.scaleUp policies' periodSeconds",
}
"""The simulated HPA's flags: each an HPASettings field, and what it stands for."""


_HPA_DURATIONS = ("sync_period", "scale_down_stabilization", "scale_up_period")


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
        type=int,
        help="processes that refit the models, beside the one serving (default: the cores "
        "this process may use, from its CPU affinity and cgroup quota; about 150 MiB each)",
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


def backtest_flags(b: argparse.ArgumentParser) -> None:
    b.add_argument("--csv", help="timestamp,value CSV of counts per interval")
    b.add_argument(
        "--demo",
        action="store_true",
        help="replay the bundled trace (two weeks of NASA-HTTP, July 1995) instead",
    )
    b.add_argument("--config", help="configuration file (with --metric and --selector)")
    b.add_argument("--metric", help="the rule (external metric) to replay")
    b.add_argument("--selector", help="label selector picking one series")
    b.add_argument(
        "--from",
        dest="from_",
        help="RFC 3339 start of the scored range "
        "(default: 7 days before --to); earlier data is history",
    )
    b.add_argument("--to", help="RFC 3339 end of the scored range (default: end of data)")
    b.add_argument(
        "--lead",
        help="pod start-up delay (default: the rule's; 3m rounded up to whole steps)",
    )
    b.add_argument(
        "--quantile",
        type=float,
        help="share of lead windows whose peak the served value covers, the same for every "
        "series (default: the rule's)",
    )
    b.add_argument(
        "--max-pod-minutes",
        type=float,
        help="instead of --quantile: the pod-minutes, as a multiple of perfect foresight's, "
        "each series' quantile is chosen to cost (default: the rule's; 1.1 by default)",
    )
    b.add_argument(
        "--quantiles",
        help="comma-separated quantiles (e.g. 0.5,0.7,0.8,0.9,0.95) to replay at too: the "
        "table gains the trade-off curve, and says which baselines it dominates",
    )
    b.add_argument("--tradeoff", help="PNG of the --quantiles curve, with each baseline")
    b.add_argument(
        "--schedules",
        help="YAML with schedules and/or events (as in a rule) to apply; also scored without",
    )
    b.add_argument("--output", help="per-step CSV (columns: see docs/backtest.md)")
    b.add_argument("--plot", help="PNG picture of demand, forecast and capacity")
    b.add_argument("--json", help="summary as JSON")
    g = b.add_argument_group("simulated HPA (Kubernetes defaults)")
    g.add_argument(
        "--capacity-per-pod",
        type=float,
        help="req/s one pod serves (default: the range's p99 demand / 10)",
    )
    g.add_argument(
        "--target-per-pod", type=float, help="AverageValue target (default: the capacity per pod)"
    )
    g.add_argument(
        "--cpu-target",
        help="also score a CPU Resource metric at this utilization (e.g. 70%% or 0.7), "
        "alone and beside scaleahead's value (the layered HPA)",
    )
    for name, what in _HPA_FLAGS.items():
        default = getattr(HPASettings, name)
        flag = "--" + name.replace("_", "-")
        if name in _HPA_DURATIONS:
            g.add_argument(flag, default=format_duration(default), help=what)
        else:
            g.add_argument(flag, type=type(default), default=default, help=what)


def serve_options(args: argparse.Namespace) -> ServeOptions:
    """The `serve` flags as options; UsageError naming a flag that cannot be read."""
    return ServeOptions(
        config=_path(args.config),
        bind_address=args.bind_address,
        port=args.port,
        secure_port=args.secure_port,
        secure=SecureOptions(
            tls_cert_file=_path(args.tls_cert_file),
            tls_private_key_file=_path(args.tls_private_key_file),
            cert_dir=_path(args.cert_dir),
            cert_secret=args.cert_secret,
            tls_min_version=args.tls_min_version,
            tls_cipher_suites=args.tls_cipher_suites,
            kubeconfig=_path(args.kubeconfig),
            authentication=AuthenticationSettings(
                client_ca_file=_path(args.client_ca_file),
                requestheader_client_ca_file=_path(args.requestheader_client_ca_file),
                requestheader_allowed_names=_names(args.requestheader_allowed_names),
                skip_lookup=args.authentication_skip_lookup,
                token_cache_ttl=_seconds(
                    "--authentication-token-webhook-cache-ttl",
                    args.authentication_token_webhook_cache_ttl,
                ),
            ),
            authorization=AuthorizationSettings(
                always_allow_paths=_names(args.authorization_always_allow_paths),
                allowed_ttl=_seconds(
                    "--authorization-webhook-cache-authorized-ttl",
                    args.authorization_webhook_cache_authorized_ttl,
                ),
                denied_ttl=_seconds(
                    "--authorization-webhook-cache-unauthorized-ttl",
                    args.authorization_webhook_cache_unauthorized_ttl,
                ),
            ),
        ),
        keda_scaler_port=args.keda_scaler_port,
        keda_client_ca_file=_path(args.keda_client_ca_file),
        keda_insecure_any_client=args.keda_insecure_any_client,
        log_level=args.log_level,
        verbosity=args.v,
        fit_workers=_fit_workers(args.fit_workers),
    )


def _fit_workers(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise UsageError(f"--fit-workers: at least 1 process, got {value}")
    return value


def backtest_options(args: argparse.Namespace) -> BacktestOptions:
    """The `backtest` flags as options; UsageError naming a flag that cannot be read."""
    from forecaster.evaluation.command import BacktestOptions

    hpa = {name: getattr(args, name) for name in _HPA_FLAGS}
    for name in _HPA_DURATIONS:
        hpa[name] = _seconds("--" + name.replace("_", "-"), hpa[name])
    return BacktestOptions(
        lead=None if args.lead is None else _seconds("--lead", args.lead),
        csv=_path(args.csv),
        demo=args.demo,
        quantiles=_quantiles("--quantiles", args.quantiles),
        tradeoff=_path(args.tradeoff),
        config=_path(args.config),
        metric=args.metric,
        selector=args.selector,
        start=_time("--from", args.from_),
        end=_time("--to", args.to),
        quantile=args.quantile,
        max_pod_minutes=args.max_pod_minutes,
        output=_path(args.output),
        plot=_path(args.plot),
        json=_path(args.json),
        capacity_per_pod=args.capacity_per_pod,
        target_per_pod=args.target_per_pod,
        schedules=_path(args.schedules),
        cpu_target=_share("--cpu-target", args.cpu_target),
        hpa=hpa,
    )
