"""The `scaleahead` command: parses flags and dispatches to serve, backtest, check-config."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from adapter import logs
from adapter.errors import UsageError
from forecaster.config import Config, ConfigError, load_config
from forecaster.times import SETTLE, format_duration, parse_duration, parse_rfc3339, rfc3339


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
    """A share given as 0.7 or 70%, strictly between 0 and 1."""
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


def _path(text: str | None) -> Path | None:
    return None if text is None else Path(text)


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def _serve(args: argparse.Namespace) -> None:
    from adapter.auth import AuthenticationSettings, AuthorizationSettings
    from adapter.service import ServeOptions, serve

    serve(
        ServeOptions(
            config=_path(args.config),
            bind_address=args.bind_address,
            port=args.port,
            secure_port=args.secure_port,
            tls_cert_file=_path(args.tls_cert_file),
            tls_private_key_file=_path(args.tls_private_key_file),
            cert_dir=_path(args.cert_dir),
            cert_secret=args.cert_secret,
            tls_min_version=args.tls_min_version,
            tls_cipher_suites=args.tls_cipher_suites,
            kubeconfig=_path(args.kubeconfig),
            keda_scaler_port=args.keda_scaler_port,
            keda_client_ca_file=_path(args.keda_client_ca_file),
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
            log_level=args.log_level,
            verbosity=args.v,
        )
    )


def _quantiles(flag: str, text: str | None) -> tuple[float, ...]:
    """Comma-separated quantiles, each strictly between 0 and 1, ascending."""
    if text is None:
        return ()
    out = []
    for part in text.split(","):
        try:
            q = float(part)
        except ValueError:
            raise UsageError(f"{flag}: expected numbers like 0.5,0.9, got {part!r}") from None
        if not 0 < q < 1:
            raise UsageError(f"{flag}: {part} is not between 0 and 1")
        out.append(q)
    return tuple(sorted(set(out)))


def _backtest(args: argparse.Namespace) -> None:
    from forecaster.evaluation.command import BacktestError, BacktestOptions, run

    options = BacktestOptions(
        lead=_seconds("--lead", args.lead),
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
        hpa={
            "min_replicas": args.min_replicas,
            "max_replicas": args.max_replicas,
            "tolerance": args.tolerance,
            "sync_period": _seconds("--sync-period", args.sync_period),
            "scale_down_stabilization": _seconds(
                "--scale-down-stabilization", args.scale_down_stabilization
            ),
            "scale_up_pods": args.scale_up_pods,
            "scale_up_percent": args.scale_up_percent,
            "scale_up_period": _seconds("--scale-up-period", args.scale_up_period),
        },
    )
    try:
        run(options)
    except BacktestError as err:
        raise UsageError(str(err)) from None
    except ModuleNotFoundError as err:
        raise UsageError(
            f"backtest needs the backtest extra ({err.name} is not installed): "
            "pip install 'scaleahead[backtest]'"
        ) from None


def _check_config(args: argparse.Namespace) -> None:
    config = load_config(args.file)
    print(f"{args.file}: OK, Prometheus at {config.prometheus.url}")
    for r in config.rules:
        derived = " (derived)" if r.horizon_derived else ""
        print(
            f"  rule {r.name}: step {format_duration(r.step)}, lead {format_duration(r.lead)}, "
            f"horizon {format_duration(r.horizon)}{derived}, forecasts fresh for "
            f"{format_duration(r.ttl)}, every {format_duration(r.interval)}, {r.quantile_setting}, "
            f"new series forecast after a {format_duration(r.warmup)} warm-up"
        )
        now = int(time.time())
        for d in [*r.schedules, *r.events]:
            length = d.duration_seconds
            opens = d.openings(now - length + 1, now + 366 * 86400)
            if not opens:
                when = "no window within a year"
            elif opens[0] <= now:
                when = f"open now, until {rfc3339(opens[0] + length)}"
            else:
                when = f"next window {rfc3339(opens[0])} .. {rfc3339(opens[0] + length)}"
            print(f"    {d.name}: {when}")
    if args.prometheus:
        _probe(args.file, config)


def _probe(source: str, config: Config) -> None:
    from forecaster.sources.prometheus import PrometheusClient, PrometheusError, probe_rule

    client = PrometheusClient(config.prometheus)
    at = time.time() - SETTLE
    problems = []
    try:
        for r in config.rules:
            try:
                probe = probe_rule(client, r, at)
            except PrometheusError as err:
                problems.append(f"rule {r.name}: {err}")
                continue
            labels = ", ".join(probe.label_names) or "none"
            print(f"  rule {r.name}: {probe.series} series now (labels: {labels})")
            problems.extend(f"rule {r.name}: {p}" for p in probe.problems)
    finally:
        client.close()
    if problems:
        raise ConfigError("\n".join(f"{source}: {p}" for p in problems))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scaleahead", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="forecast and serve the external metrics API")
    s.add_argument("--config", help="YAML configuration; without it, replay the bundled trace")
    s.add_argument("--bind-address", help="default 127.0.0.1 (plain HTTP) or 0.0.0.0 (TLS)")
    s.add_argument(
        "--port",
        type=int,
        default=8080,
        help="plain HTTP port, without authentication, for local development on loopback "
        "(used when no certificate flag is given)",
    )
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text lines, or one JSON object per line (time, level, logger, msg)",
    )
    s.add_argument("--v", type=int, default=0, help="verbosity; 2 and up logs every request")
    t = s.add_argument_group(
        "secure serving (TLS; every request is authenticated and authorized through the "
        "Kubernetes API)"
    )
    t.add_argument("--secure-port", type=int, default=None, help="TLS port (default 6443)")
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
    t.add_argument("--tls-min-version", default="VersionTLS12", help="VersionTLS12 or VersionTLS13")
    t.add_argument("--tls-cipher-suites", help="comma-separated IANA names for TLS 1.2")
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
    t.add_argument("--authentication-token-webhook-cache-ttl", default="10s")
    t.add_argument(
        "--authorization-always-allow-paths",
        default="/healthz,/livez,/readyz,/openapi/*,/version",
        help="paths served without authentication or authorization",
    )
    t.add_argument("--authorization-webhook-cache-authorized-ttl", default="10s")
    t.add_argument("--authorization-webhook-cache-unauthorized-ttl", default="10s")
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
        help="mutual TLS: serve only KEDA clients with a certificate this CA signed",
    )
    s.set_defaults(func=_serve)

    b = sub.add_parser(
        "backtest",
        help="replay history through the forecaster and a simulated HPA",
        description="Replay a recorded history through the same forecast cycle and "
        "served-value policy as `serve`, score it against baselines, and simulate the HPA.",
    )
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
    b.add_argument("--lead", default="3m", help="pod start-up delay (default 3m)")
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
    g.add_argument("--min-replicas", type=int, default=1)
    g.add_argument("--max-replicas", type=int, default=1000)
    g.add_argument("--tolerance", type=float, default=0.1)
    g.add_argument("--sync-period", default="15s")
    g.add_argument("--scale-down-stabilization", default="5m")
    g.add_argument("--scale-up-pods", type=int, default=4)
    g.add_argument("--scale-up-percent", type=float, default=100.0)
    g.add_argument("--scale-up-period", default="15s")
    b.set_defaults(func=_backtest)

    c = sub.add_parser("check-config", help="validate a configuration file and exit")
    c.add_argument("file")
    c.add_argument(
        "--prometheus",
        action="store_true",
        help="also run each rule's query once against the configured Prometheus and report "
        "its series (none is an error, with similar metric names as a hint)",
    )
    c.set_defaults(func=_check_config)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; 2 for a usage or configuration error, with its message."""
    args = parser().parse_args(argv)
    logs.configure(getattr(args, "log_level", "info"), getattr(args, "log_format", "text"))
    try:
        args.func(args)
    except (ConfigError, UsageError) as err:
        print(f"scaleahead: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
