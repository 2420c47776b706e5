"""The `scaleahead` command: serve, check-config."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import uvicorn
from pydantic import ValidationError

from adapter.api import GROUP_VERSION
from adapter.service import DEMO_RULE, build_service, demo_source, prometheus_source
from forecaster.config import Config, ConfigError, Rule, describe_validation_error, load_config
from forecaster.durations import parse_duration
from forecaster.prometheus import PrometheusClient, PrometheusError, PrometheusSource
from forecaster.replay import DEMO_LABELS
from forecaster.scheduler import start_scheduler
from forecaster.selector import EVERYTHING, SelectorError, parse_selector
from forecaster.source import Source

log = logging.getLogger("scaleahead")


class UsageError(Exception):
    """Flags that cannot be served with; the message names the flag."""


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _listener(args: argparse.Namespace) -> tuple[str, int, bool]:
    """(address, port, tls) from the serving flags, or UsageError."""
    cert, key = args.tls_cert_file, args.tls_private_key_file
    if bool(cert) != bool(key):
        raise UsageError("--tls-cert-file and --tls-private-key-file must be given together")
    for flag, path in (("--tls-cert-file", cert), ("--tls-private-key-file", key)):
        if path and not Path(path).is_file():
            raise UsageError(f"{flag}: no such file: {path}")
    if cert:
        return args.bind_address or "0.0.0.0", args.secure_port or 6443, True
    if args.secure_port is not None:
        raise UsageError("--secure-port needs --tls-cert-file and --tls-private-key-file")
    address = args.bind_address or "127.0.0.1"
    if not _is_loopback(address):
        raise UsageError(
            f"--bind-address {address}: plain HTTP is for local development and is only "
            "served on loopback; give --tls-cert-file and --tls-private-key-file to serve "
            "on other addresses"
        )
    return address, args.port, False


def _banner(rules_names: list[str], url: str, demo: bool, tls: bool) -> str:
    metric = rules_names[0]
    selector = "service=nasa-http" if demo else "service=<name>"
    curl_flags = "-sk " if tls else "-s "
    path = f"/apis/{GROUP_VERSION}/namespaces/default/{metric}?labelSelector={quote(selector)}"
    lines = [
        f"scaleahead serving the external metrics API at {url}",
        f"  metrics served: {', '.join(rules_names)}",
        f"  try: curl {curl_flags}'{url}{path}'",
    ]
    if demo:
        lines.insert(
            1,
            "  source: bundled NASA-HTTP trace (July 1995), replayed as live "
            f"traffic of {DEMO_LABELS} (no --config given)",
        )
    return "\n".join(lines)


def serve(args: argparse.Namespace) -> int:
    address, port, tls = _listener(args)
    config: Config | None = load_config(args.config) if args.config else None
    if config is not None:
        client = PrometheusClient(config.prometheus)
        try:
            client.check_reachable()
        except PrometheusError as err:
            raise ConfigError(f"{args.config}: prometheus.url: {err}") from None
        finally:
            client.close()
        rules = config.rules
        service = build_service(rules, prometheus_source(config.prometheus), time.time)
    else:
        rules = [DEMO_RULE]
        service = build_service(rules, demo_source, time.time)

    scheme = "https" if tls else "http"
    host = f"[{address}]" if ":" in address else address
    print(
        _banner([r.name for r in rules], f"{scheme}://{host}:{port}", config is None, tls),
        flush=True,
    )
    if not tls:
        log.warning(
            "serving PLAIN HTTP WITHOUT AUTHENTICATION on %s:%d: local development only",
            address,
            port,
        )
    scheduler = start_scheduler(service.cycle, time.time)
    try:
        uvicorn.Server(
            uvicorn.Config(
                service.app,
                host=address,
                port=port,
                ssl_certfile=args.tls_cert_file,
                ssl_keyfile=args.tls_private_key_file,
                log_level=args.log_level,
                access_log=False,
                timeout_graceful_shutdown=5,
            )
        ).run()
    finally:
        scheduler.shutdown(wait=False)
    return 0


def _time(flag: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{flag}: expected an RFC 3339 time like 1995-08-25T00:00:00Z, got {text!r}"
        ) from None
    if when.tzinfo is None:
        raise UsageError(f"{flag}: {text!r} has no time zone; add Z or an offset")
    return int(when.timestamp())


def _seconds(flag: str, text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as err:
        raise UsageError(f"{flag}: {err}") from None


def backtest(args: argparse.Namespace) -> int:
    from forecaster.backtest import BacktestError, default_capacity, record, replay, score
    from forecaster.hpa import HPASettings
    from forecaster.replay import TraceError, TraceSource, read_trace
    from forecaster.report import plot, summary, table, write_csv, write_json

    lead = _seconds("--lead", args.lead)
    start, end = _time("--from", args.from_), _time("--to", args.to)
    overrides: dict[str, object] = {"lead": lead}
    if args.quantile is not None:
        overrides["quantile"] = args.quantile
    try:
        if args.csv:
            if args.config or args.metric or args.selector:
                raise UsageError("--csv replaces --config, --metric and --selector")
            trace = read_trace(Path(args.csv))
            base = {
                "name": "backtest",
                "query": "csv{<<.LabelMatchers>>}",
                "step": trace.resolution,
                "history": "15d",
            }
            rule = Rule.model_validate({**base, **overrides})
            source: Source = TraceSource(trace, {"csv": Path(args.csv).name})
            selector = EVERYTHING
            end = trace.end if end is None else end
        else:
            if not (args.config and args.metric):
                raise UsageError("give --csv FILE, or --config FILE with --metric NAME")
            config = load_config(args.config)
            found = config.rule(args.metric)
            if found is None:
                raise UsageError(
                    f"--metric {args.metric}: no such rule in {args.config} "
                    f"(rules: {', '.join(r.name for r in config.rules)})"
                )
            rule = Rule.model_validate({**found.model_dump(), **overrides})
            source = PrometheusSource(PrometheusClient(config.prometheus))
            try:
                selector = parse_selector(args.selector)
            except SelectorError as err:
                raise UsageError(f"--selector: {err}") from None
            end = int(time.time()) if end is None else end
    except ValidationError as err:
        raise UsageError(describe_validation_error("backtest flags", err)) from None
    except TraceError as err:
        raise UsageError(str(err)) from None
    start = end - 7 * 86400 if start is None else start
    try:
        recorded = record(source, rule, selector, start, end)
    except (BacktestError, PrometheusError) as err:
        raise UsageError(str(err)) from None

    from tqdm import tqdm

    def progress(steps: Iterable[int]) -> Iterable[int]:
        return tqdm(
            steps,
            desc="replay",
            unit="step",
            file=sys.stderr,
            disable=None,
            mininterval=0.5,
            leave=False,
        )

    started = time.perf_counter()
    result = replay(rule, recorded, start, end, progress)
    seconds = time.perf_counter() - started
    capacity = args.capacity_per_pod or default_capacity(result.actual)
    hpa = HPASettings(
        target_per_pod=args.target_per_pod or capacity,
        capacity_per_pod=capacity,
        startup=lead,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        tolerance=args.tolerance,
        sync_period=_seconds("--sync-period", args.sync_period),
        scale_down_stabilization=_seconds(
            "--scale-down-stabilization", args.scale_down_stabilization
        ),
        scale_up_pods=args.scale_up_pods,
        scale_up_percent=args.scale_up_percent,
        scale_up_period=_seconds("--scale-up-period", args.scale_up_period),
    )
    scores = score(result, hpa)
    data = summary(result, scores, seconds)
    print(table(data))
    if args.output:
        write_csv(Path(args.output), result)
    if args.json:
        write_json(Path(args.json), data)
    if args.plot:
        plot(Path(args.plot), result, scores)
    return 0


def check_config(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    names = ", ".join(r.name for r in config.rules)
    print(
        f"{args.file}: OK ({len(config.rules)} rule(s): {names}; Prometheus at "
        f"{config.prometheus.url})"
    )
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scaleahead", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="forecast and serve the external metrics API")
    s.add_argument("--config", help="YAML configuration; without it, replay the bundled trace")
    s.add_argument("--bind-address", help="default 127.0.0.1 (plain HTTP) or 0.0.0.0 (TLS)")
    s.add_argument("--port", type=int, default=8080, help="plain HTTP port (loopback only)")
    s.add_argument("--secure-port", type=int, default=None, help="TLS port (default 6443)")
    s.add_argument("--tls-cert-file", help="serving certificate (PEM); enables TLS")
    s.add_argument("--tls-private-key-file", help="serving key (PEM)")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.set_defaults(func=serve)

    b = sub.add_parser(
        "backtest",
        help="replay history through the forecaster and a simulated HPA",
        description="Replay a recorded history through the same forecast cycle and "
        "served-value policy as `serve`, score it against baselines, and simulate the HPA.",
    )
    b.add_argument("--csv", help="timestamp,value CSV of counts per interval")
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
        help="share of lead windows whose peak the served value covers (default: the rule's)",
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
    g.add_argument("--min-replicas", type=int, default=1)
    g.add_argument("--max-replicas", type=int, default=1000)
    g.add_argument("--tolerance", type=float, default=0.1)
    g.add_argument("--sync-period", default="15s")
    g.add_argument("--scale-down-stabilization", default="5m")
    g.add_argument("--scale-up-pods", type=int, default=4)
    g.add_argument("--scale-up-percent", type=float, default=100.0)
    g.add_argument("--scale-up-period", default="15s")
    b.set_defaults(func=backtest)

    c = sub.add_parser("check-config", help="validate a configuration file and exit")
    c.add_argument("file")
    c.set_defaults(func=check_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    level = getattr(args, "log_level", "info").upper()
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # apscheduler logs every job run at INFO; our cycle logs its own summary.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    try:
        return int(args.func(args))
    except (ConfigError, UsageError) as err:
        print(f"scaleahead: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
