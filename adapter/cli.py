"""The `scaleahead` command: serve, check-config."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
import time
from pathlib import Path
from urllib.parse import quote

import uvicorn

from adapter.api import GROUP_VERSION
from adapter.service import DEMO_RULE, build_service, demo_source, prometheus_source
from forecaster.config import Config, ConfigError, load_config
from forecaster.prometheus import PrometheusClient, PrometheusError
from forecaster.replay import DEMO_LABELS
from forecaster.scheduler import start_scheduler

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
