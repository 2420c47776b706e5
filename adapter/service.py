"""The running server: a source, the forecast cycle, the store, the provider and the app
wired as one service, and `scaleahead serve` on top of it."""

from __future__ import annotations

import gc
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, GCCollector, ProcessCollector

from adapter import http
from adapter.api import GROUP_VERSION, create_app
from adapter.auth import (
    ASGIApp,
    AuthenticationSettings,
    Authenticator,
    AuthorizationSettings,
    Authorizer,
    Guard,
    access_log,
)
from adapter.certs import SharedCertificate, self_signed
from adapter.errors import UsageError
from adapter.forward import Forwarder
from adapter.instrument import RequestMetrics
from adapter.kube import Kube, KubeError, api_client, own_namespace, serving_names
from adapter.provider import Check, ForecastProvider
from adapter.tls import (
    ServingTLS,
    TLSSettings,
    check_certificate,
    parse_cipher_suites,
    parse_min_version,
)
from adapter.workloads import WorkloadWatch
from forecaster.config import CurrentConfig, ForwardConfig, PrometheusConfig, Rule, load_config
from forecaster.runtime.current import CurrentValues
from forecaster.runtime.cycle import ForecastCycle
from forecaster.runtime.demand import SeriesDemand
from forecaster.runtime.scheduler import Jobs
from forecaster.runtime.serving import ServingView
from forecaster.runtime.store import ForecastStore
from forecaster.runtime.telemetry import SeriesCollector, Telemetry
from forecaster.sources.base import Source
from forecaster.sources.prometheus import PrometheusClient, PrometheusSource
from forecaster.sources.trace import DEMO_LABELS, TraceSource, demo_trace

if TYPE_CHECKING:
    from adapter.keda.server import ScalerServer

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
    current: CurrentValues
    current_config: CurrentConfig
    cycle: ForecastCycle
    provider: ForecastProvider
    registry: CollectorRegistry
    telemetry: Telemetry
    demand: SeriesDemand
    jobs: Jobs
    app: FastAPI
    clock: Callable[[], float]

    def start(self) -> None:
        """Start the background jobs: forecast cycles and current-value refreshes."""
        self.jobs.start()

    def stop(self) -> None:
        """Stop the background jobs; work in flight is abandoned."""
        self.jobs.stop()
        self.current.close()


def build_service(
    rules: list[Rule],
    source_factory: Callable[[Telemetry], Source],
    clock: Callable[[], float],
    current_config: CurrentConfig | None = None,
    forward: ForwardConfig | None = None,
) -> Service:
    """Assemble the service; `source_factory` gets the telemetry to report queries to;
    `forward` names the server that answers the external metrics no rule serves."""
    current_config = current_config or CurrentConfig()
    registry = CollectorRegistry()
    GCCollector(registry=registry)  # python_gc_*: full collections pause serving
    ProcessCollector(registry=registry)  # process_*: CPU, RSS, open files
    telemetry = Telemetry(registry, [r.name for r in rules])
    source = source_factory(telemetry)
    store = ForecastStore()
    current = CurrentValues(rules, source, clock, current_config.max_age, current_config.interval)
    view = ServingView(store, current, clock)
    demand = SeriesDemand(rules)
    cycle = ForecastCycle(rules, source, store, telemetry=telemetry, demand=demand)
    provider = ForecastProvider(rules, view, telemetry, demand)
    registry.register(SeriesCollector(rules, view, cycle.outcomes))
    jobs = Jobs(cycle, current, clock)

    def liveness() -> list[Check]:
        return [Check(stall.job, False, stall.message) for stall in jobs.stalls()]

    app = create_app(provider, registry, liveness, Forwarder(forward) if forward else None)
    return Service(
        rules,
        source,
        store,
        current,
        current_config,
        cycle,
        provider,
        registry,
        telemetry,
        demand,
        jobs,
        app,
        clock,
    )


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
    cert_dir: Path | None = None
    cert_secret: str | None = None
    tls_min_version: str = "VersionTLS12"
    tls_cipher_suites: str | None = None
    kubeconfig: Path | None = None
    keda_scaler_port: int | None = None
    keda_client_ca_file: Path | None = None
    authentication: AuthenticationSettings = field(default_factory=AuthenticationSettings)
    authorization: AuthorizationSettings = field(default_factory=AuthorizationSettings)
    log_level: str = "info"
    verbosity: int = 0


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        pass
    try:  # the shorthand spellings inet_aton accepts, such as 127.1
        return ipaddress.IPv4Address(socket.inet_aton(address)).is_loopback
    except OSError:
        return False


def listener(o: ServeOptions) -> tuple[str, int, bool]:
    """(address, port, tls) from the serving flags, or UsageError."""
    cert, key = o.tls_cert_file, o.tls_private_key_file
    if o.cert_secret and not o.cert_dir:
        raise UsageError("--cert-secret needs --cert-dir, where the certificate is written")
    if o.cert_secret and cert:
        raise UsageError("--cert-secret and --tls-cert-file exclude each other")
    if bool(cert) != bool(key):
        raise UsageError("--tls-cert-file and --tls-private-key-file must be given together")
    for flag, path in (
        ("--tls-cert-file", cert),
        ("--tls-private-key-file", key),
        ("--keda-client-ca-file", o.keda_client_ca_file),
    ):
        if path and not Path(path).is_file():
            raise UsageError(f"{flag}: no such file: {path}")
    if o.keda_client_ca_file and o.keda_scaler_port is None:
        raise UsageError("--keda-client-ca-file needs --keda-scaler-port")
    if cert or o.cert_dir:
        if o.keda_scaler_port is not None and o.keda_scaler_port == (o.secure_port or 6443):
            raise UsageError("--keda-scaler-port must differ from the secure port")
        return o.bind_address or "0.0.0.0", o.secure_port or 6443, True
    if o.keda_client_ca_file:
        raise UsageError(
            "--keda-client-ca-file needs TLS: give --tls-cert-file and --tls-private-key-file "
            "(or --cert-dir)"
        )
    if o.keda_scaler_port is not None and o.keda_scaler_port == o.port:
        raise UsageError("--keda-scaler-port must differ from --port")
    if o.secure_port is not None:
        raise UsageError(
            "--secure-port needs a certificate: --tls-cert-file and --tls-private-key-file, "
            "or --cert-dir for a self-signed one"
        )
    address = o.bind_address or "127.0.0.1"
    if not _is_loopback(address):
        raise UsageError(
            f"--bind-address {address}: plain HTTP is for local development and is only "
            "served on loopback; give --tls-cert-file and --tls-private-key-file (or "
            "--cert-dir) to serve on other addresses"
        )
    return address, o.port, False


def _banner(rules_names: list[str], url: str, demo: bool, tls: bool) -> str:
    metric = rules_names[0]
    selector = "service=nasa-http" if demo else "service=<name>"
    path = f"/apis/{GROUP_VERSION}/namespaces/default/{metric}?labelSelector={quote(selector)}"
    try_it = (
        f"kubectl get --raw '{path}'   (through the API server, once registered)"
        if tls
        else f"curl -s '{url}{path}'"
    )
    lines = [
        f"scaleahead serving the external metrics API at {url}",
        f"  metrics served: {', '.join(rules_names)}",
        f"  try: {try_it}",
    ]
    if demo:
        lines.insert(
            1,
            "  source: bundled NASA-HTTP trace (July 1995), replayed as live "
            f"traffic of {DEMO_LABELS} (no --config given)",
        )
    return "\n".join(lines)


@dataclass
class _Secured:
    """What serving securely adds: the guarded app, its TLS context and the files it serves
    with, the authenticator, the shared certificate's background check, the API client."""

    app: ASGIApp
    context: ssl.SSLContext
    cert_file: Path
    key_file: Path
    authenticator: Authenticator
    shared: SharedCertificate | None
    kube: Kube


def _secure(o: ServeOptions, app: ASGIApp) -> _Secured:
    """Put the app behind authentication and authorization, served over TLS."""
    min_version = parse_min_version(o.tls_min_version)
    ciphers = parse_cipher_suites(o.tls_cipher_suites)
    if o.tls_cert_file and o.tls_private_key_file:
        check_certificate(o.tls_cert_file, o.tls_private_key_file)
    kube = Kube(api_client(o.kubeconfig))
    authenticator = Authenticator(o.authentication, kube)
    shared = None
    if o.tls_cert_file and o.tls_private_key_file:
        cert, key = o.tls_cert_file, o.tls_private_key_file
    else:
        assert o.cert_dir is not None
        if o.cert_secret:
            namespace = own_namespace(o.kubeconfig)
            shared = SharedCertificate(
                kube, namespace, o.cert_secret, o.cert_dir, serving_names(kube, namespace)
            )
            try:
                generated = shared.sync()
            except KubeError as err:
                raise UsageError(f"--cert-secret {o.cert_secret}: {err}") from None
            shared.start()
        else:
            generated = self_signed(o.cert_dir, serving_names(kube, None))
        cert, key = generated.cert_file, generated.key_file
    authenticator.start()
    tls = ServingTLS(TLSSettings(cert, key, min_version, ciphers), authenticator.client_cas_pem)
    guarded = Guard(app, authenticator, Authorizer(o.authorization, kube))
    return _Secured(guarded, tls.context, cert, key, authenticator, shared, kube)


def _freeze(generation: int) -> None:
    """Collect `generation` and younger, then move everything alive to the collector's
    permanent generation, which no later collection traverses."""
    started = time.perf_counter()
    gc.collect(generation)
    gc.freeze()
    log.info(
        "froze %d long-lived objects out of garbage collection (collected in %.0f ms)",
        gc.get_freeze_count(),
        (time.perf_counter() - started) * 1000,
    )


def _freeze_when_ready(provider: ForecastProvider, timeout: float = 3600.0) -> None:
    """Once every rule has forecasts (the models are compiled and warm), freeze what the
    first cycles left alive, after a collection of the young generations only: a full one
    would pause serving (146 ms with the demo) for garbage the next full one finds anyway."""
    deadline = time.monotonic() + timeout
    while not all(c.ok for c in provider.readiness()) and time.monotonic() < deadline:
        time.sleep(1.0)
    _freeze(1)


def serve(o: ServeOptions) -> None:
    """Run the service until interrupted; raise UsageError or ConfigError before serving."""
    address, port, tls = listener(o)
    if o.config is not None:
        config = load_config(o.config)
        rules = config.rules
        service = build_service(
            rules, prometheus_source(config.prometheus), time.time, config.current, config.forward
        )
    else:
        rules = [DEMO_RULE]
        service = build_service(rules, demo_source, time.time)
    app: ASGIApp = service.app
    secured = None
    workloads = None
    scaler: ScalerServer | None = None
    if tls:
        secured = _secure(o, app)
        app = secured.app
        workloads = WorkloadWatch(secured.kube, rules, service.demand, time.time, service.jobs.soon)
    if o.keda_scaler_port is not None:
        # Imported here: gRPC costs about 10 MiB and 40 ms of start-up that a server
        # without the KEDA scaler has no use for.
        from adapter.keda.scaler import ExternalScaler
        from adapter.keda.server import ScalerServer, server_credentials

        credentials = (
            server_credentials(secured.cert_file, secured.key_file, o.keda_client_ca_file)
            if secured is not None
            else None
        )
        scaler = ScalerServer(
            ExternalScaler(service.provider, service.telemetry),
            address,
            o.keda_scaler_port,
            credentials,
        )
    app = RequestMetrics(app, service.telemetry)
    access_log.setLevel(logging.INFO if o.verbosity >= 2 else logging.WARNING)

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
    # About 200,000 objects, nearly all code of the imported libraries, that every full
    # collection would otherwise traverse (111 ms each with 1,000 series; bench/gc_objects.py):
    # frozen after one full collection, before the port opens.
    _freeze(2)
    service.start()
    if workloads is not None:
        workloads.start()
    if scaler is not None:
        scaler.start()
    threading.Thread(
        target=_freeze_when_ready, args=(service.provider,), name="gc-freeze", daemon=True
    ).start()
    try:
        http.run(app, address, port, secured.context if secured else None, o.log_level)
    finally:
        log.info("stopping: the API is closed; background work in flight is abandoned")
        if scaler is not None:
            scaler.stop()
        service.stop()
        if workloads is not None:
            workloads.stop()
        if secured is not None:
            secured.authenticator.stop()
            if secured.shared is not None:
                secured.shared.stop()
