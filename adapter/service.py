"""The running server: a source, the forecast cycle, the store, the provider and the app
wired as one service, and `scaleahead serve` on top of it."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from adapter.api import GROUP_VERSION, create_app
from adapter.errors import UsageError
from adapter.provider import ForecastProvider
from forecaster.config import ConfigError, PrometheusConfig, Rule, load_config
from forecaster.runtime.cycle import ForecastCycle
from forecaster.runtime.scheduler import start_scheduler
from forecaster.runtime.store import ForecastStore
from forecaster.runtime.telemetry import SeriesCollector, Telemetry
from forecaster.sources.base import Source
from forecaster.sources.prometheus import PrometheusClient, PrometheusError, PrometheusSource
from forecaster.sources.trace import DEMO_LABELS, TraceSource, demo_trace

log = logging.getLogger("scaleahead")

DEMO_RULE = Rule(
    name="http_requests_forecast",
    query="sum by (namespace, service) (rate(http_requests_total{<<.LabelMatchers>>}[1m]))",
)
"""The rule served without a configuration file, over the bundled NASA-HTTP trace."""


@dataclass
class Service:
    """Every long-lived part of a running scaleahead, built from the same inputs."""

    rules: list[Rule]
    source: Source
    store: ForecastStore
    cycle: ForecastCycle
    provider: ForecastProvider
    registry: CollectorRegistry
    telemetry: Telemetry
    app: FastAPI


def build_service(
    rules: list[Rule],
    source_factory: Callable[[Telemetry], Source],
    clock: Callable[[], float],
) -> Service:
    """Assemble the service; `source_factory` gets the telemetry to report queries to."""
    registry = CollectorRegistry()
    telemetry = Telemetry(registry)
    source = source_factory(telemetry)
    store = ForecastStore()
    cycle = ForecastCycle(rules, source, store, telemetry=telemetry)
    provider = ForecastProvider(rules, source, store, clock, telemetry)
    registry.register(SeriesCollector(rules, store, clock))
    app = create_app(provider, registry)
    return Service(rules, source, store, cycle, provider, registry, telemetry, app)


def prometheus_source(config: PrometheusConfig) -> Callable[[Telemetry], Source]:
    """A source factory for the configured Prometheus."""

    def factory(telemetry: Telemetry) -> Source:
        return PrometheusSource(PrometheusClient(config, observer=telemetry.observe_query))

    return factory


def demo_source(_: Telemetry) -> Source:
    """The bundled trace, looped so that any clock time falls inside it."""
    return TraceSource(demo_trace(), DEMO_LABELS, loop=True)


@dataclass(frozen=True)
class ServeOptions:
    """The `serve` command's flags, parsed."""

    config: Path | None = None
    bind_address: str | None = None
    port: int = 8080
    secure_port: int | None = None
    tls_cert_file: Path | None = None
    tls_private_key_file: Path | None = None
    log_level: str = "info"


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def listener(o: ServeOptions) -> tuple[str, int, bool]:
    """(address, port, tls) from the serving flags, or UsageError."""
    cert, key = o.tls_cert_file, o.tls_private_key_file
    if bool(cert) != bool(key):
        raise UsageError("--tls-cert-file and --tls-private-key-file must be given together")
    for flag, path in (("--tls-cert-file", cert), ("--tls-private-key-file", key)):
        if path and not Path(path).is_file():
            raise UsageError(f"{flag}: no such file: {path}")
    if cert:
        return o.bind_address or "0.0.0.0", o.secure_port or 6443, True
    if o.secure_port is not None:
        raise UsageError("--secure-port needs --tls-cert-file and --tls-private-key-file")
    address = o.bind_address or "127.0.0.1"
    if not _is_loopback(address):
        raise UsageError(
            f"--bind-address {address}: plain HTTP is for local development and is only "
            "served on loopback; give --tls-cert-file and --tls-private-key-file to serve "
            "on other addresses"
        )
    return address, o.port, False


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


def serve(o: ServeOptions) -> None:
    """Run the service until interrupted; raise UsageError or ConfigError before serving."""
    address, port, tls = listener(o)
    if o.config is not None:
        config = load_config(o.config)
        client = PrometheusClient(config.prometheus)
        try:
            client.check_reachable()
        except PrometheusError as err:
            raise ConfigError(f"{o.config}: prometheus.url: {err}") from None
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
        _banner([r.name for r in rules], f"{scheme}://{host}:{port}", o.config is None, tls),
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
                ssl_certfile=o.tls_cert_file,
                ssl_keyfile=o.tls_private_key_file,
                log_level=o.log_level,
                access_log=False,
                timeout_graceful_shutdown=5,
            )
        ).run()
    finally:
        scheduler.shutdown(wait=False)
