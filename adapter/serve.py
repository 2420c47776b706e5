"""`scaleahead serve`: the flags checked, the service built and secured, its parts started,
the API served until SIGTERM, and everything stopped in reverse.

The options and their checks import nothing heavy, so that the command line starts in a
fraction of a second; what serving needs is imported by `serve`."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from adapter.errors import UsageError
from adapter.security.options import SecureOptions

if TYPE_CHECKING:
    from adapter.service import Service

log = logging.getLogger("scaleahead")

PORT = 8080
"""The plain HTTP port (local development, loopback only)."""
SECURE_PORT = 6443
"""The TLS port, unless --secure-port says otherwise."""


@dataclass(frozen=True)
class ServeOptions:
    """The `serve` command's flags, parsed; the flags' defaults are these."""

    config: Path | None = None
    bind_address: str | None = None  # default: loopback for plain HTTP, every address for TLS
    port: int = PORT
    secure_port: int | None = None  # default SECURE_PORT; given without a certificate: refused
    secure: SecureOptions = field(default_factory=SecureOptions)
    keda_scaler_port: int | None = None
    keda_client_ca_file: Path | None = None
    keda_insecure_any_client: bool = False
    log_level: str = "info"
    verbosity: int = 0  # 2 and up logs every request
    fit_workers: int | None = None  # refitting processes; 0: the serving one; None: one a core
    state_dir: Path | None = None  # where each rule's history and fits are saved for a restart


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


def listener(options: ServeOptions) -> tuple[str, int, bool]:
    """(address, port, tls) from the serving flags, or UsageError."""
    s = options.secure
    cert, key = s.tls_cert_file, s.tls_private_key_file
    if s.cert_secret and not s.cert_dir:
        raise UsageError("--cert-secret needs --cert-dir, where the certificate is written")
    if s.cert_secret and cert:
        raise UsageError("--cert-secret and --tls-cert-file exclude each other")
    if bool(cert) != bool(key):
        raise UsageError("--tls-cert-file and --tls-private-key-file must be given together")
    for flag, path in (
        ("--tls-cert-file", cert),
        ("--tls-private-key-file", key),
        ("--keda-client-ca-file", options.keda_client_ca_file),
    ):
        if path and not Path(path).is_file():
            raise UsageError(f"{flag}: no such file: {path}")
    if options.keda_client_ca_file and options.keda_scaler_port is None:
        raise UsageError("--keda-client-ca-file needs --keda-scaler-port")
    if options.keda_insecure_any_client and options.keda_client_ca_file:
        raise UsageError("--keda-insecure-any-client and --keda-client-ca-file exclude each other")
    if s.wanted:
        port = options.secure_port or SECURE_PORT
        if options.keda_scaler_port is not None and options.keda_scaler_port == port:
            raise UsageError("--keda-scaler-port must differ from the secure port")
        if options.keda_scaler_port is not None and not (
            options.keda_client_ca_file or options.keda_insecure_any_client
        ):
            raise UsageError(
                "--keda-scaler-port over TLS needs --keda-client-ca-file, the CA that signs "
                "the certificate KEDA presents (its TriggerAuthentication's tlsClientCert), so "
                "that no other client reads every namespace's forecasts; "
                "--keda-insecure-any-client serves any client instead"
            )
        return options.bind_address or "0.0.0.0", port, True
    for flag, given in (
        ("--keda-client-ca-file", options.keda_client_ca_file),
        ("--keda-insecure-any-client", options.keda_insecure_any_client),
    ):
        if given:
            raise UsageError(
                f"{flag} needs TLS: give --tls-cert-file and --tls-private-key-file (or --cert-dir)"
            )
    if options.keda_scaler_port is not None and options.keda_scaler_port == options.port:
        raise UsageError("--keda-scaler-port must differ from --port")
    if options.secure_port is not None:
        raise UsageError(
            "--secure-port needs a certificate: --tls-cert-file and --tls-private-key-file, "
            "or --cert-dir for a self-signed one"
        )
    address = options.bind_address or "127.0.0.1"
    if not _is_loopback(address):
        raise UsageError(
            f"--bind-address {address}: plain HTTP is for local development and is only "
            "served on loopback; give --tls-cert-file and --tls-private-key-file (or "
            "--cert-dir) to serve on other addresses"
        )
    return address, options.port, False


def banner(metrics: list[str], url: str, demo: bool, tls: bool) -> str:
    """What `serve` prints when it starts: where, what, and a request to try."""
    from adapter.server.app import GROUP_VERSION
    from forecaster.sources.trace import DEMO_LABELS

    selector = "service=nasa-http" if demo else "service=<name>"
    path = f"/apis/{GROUP_VERSION}/namespaces/default/{metrics[0]}?labelSelector={quote(selector)}"
    try_it = (
        f"kubectl get --raw '{path}'   (through the API server, once registered)"
        if tls
        else f"curl -s '{url}{path}'"
    )
    lines = [
        f"scaleahead serving the external metrics API at {url}",
        f"  metrics served: {', '.join(metrics)}",
        f"  try: {try_it}",
    ]
    if demo:
        lines.insert(
            1,
            "  source: bundled NASA-HTTP trace (July 1995), replayed as live "
            f"traffic of {DEMO_LABELS} (no --config given)",
        )
    return "\n".join(lines)


def _service(options: ServeOptions) -> Service:
    from adapter.service import DEMO_RULE, build_service, demo_source, prometheus_source
    from forecaster.config import load_config
    from forecaster.runtime.fitting import default_workers

    workers = default_workers() if options.fit_workers is None else options.fit_workers
    if options.config is None:
        return build_service(
            [DEMO_RULE],
            demo_source,
            time.time,
            fit_workers=workers,
            forecaster_process=True,
            state_dir=options.state_dir,
        )
    config = load_config(options.config)
    return build_service(
        config.rules,
        prometheus_source(config.prometheus),
        time.time,
        config.current,
        config.forward,
        workers,
        forecaster_process=True,
        state_dir=options.state_dir,
    )


def serve(options: ServeOptions) -> None:
    """Run the service until interrupted; raise UsageError or ConfigError before serving."""
    from adapter.access import AccessLog, access_log
    from adapter.asgi import ASGIApp
    from adapter.metrics import RequestMetrics
    from adapter.security.serving import secure
    from adapter.security.tls import grpc_credentials
    from adapter.server import http
    from adapter.server.gc import FreezeWhenReady, freeze

    address, port, tls = listener(options)
    if options.state_dir is not None:
        from forecaster.runtime.checkpoint import CheckpointError, own_directory

        try:
            own_directory(options.state_dir)
        except CheckpointError as err:
            raise UsageError(f"--state-dir: {err}") from err
    service = _service(options)
    app: ASGIApp = service.app
    secured = None
    if tls:
        # Imported here: the Kubernetes client costs start-up that plain HTTP has no use for.
        from adapter.cluster.workloads import WorkloadWatch
        from adapter.peers.borrower import Borrower

        secured = secure(options.secure, app)
        app = secured.app
        service.parts += secured.parts
        service.parts.append(
            WorkloadWatch(secured.kube, service.rules, service.demand, time.time, service.soon)
        )
        service.parts.append(
            Borrower(secured.kube, service.rules, service.store, secured.tls, service.registry)
        )
    if options.keda_scaler_port is not None:
        # Imported here: gRPC costs about 10 MiB and 40 ms of start-up that a server
        # without the KEDA scaler has no use for.
        from adapter.keda.scaler import ExternalScaler
        from adapter.keda.server import ScalerServer

        credentials = (
            None if secured is None else grpc_credentials(secured.tls, options.keda_client_ca_file)
        )
        if secured is not None and options.keda_insecure_any_client:
            log.warning(
                "the KEDA scaler on port %d serves ANY TLS client, with no client certificate "
                "(--keda-insecure-any-client): whoever reaches it reads every namespace's "
                "forecasts; give --keda-client-ca-file instead",
                options.keda_scaler_port,
            )
        scaler = ExternalScaler(service.provider, service.metrics)
        service.parts.append(ScalerServer(scaler, address, options.keda_scaler_port, credentials))
    app = AccessLog(app)  # outside the guard: it names the user the guard authenticated
    service.parts.append(FreezeWhenReady(lambda: all(c.ok for c in service.provider.readiness())))
    access_log.setLevel(logging.INFO if options.verbosity >= 2 else logging.WARNING)

    scheme = "https" if tls else "http"
    host = f"[{address}]" if ":" in address else address
    url = f"{scheme}://{host}:{port}"
    log.info(
        "history kept in memory: at most %.0f MiB (%s)",
        sum(r.history_bytes for r in service.rules) / 2**20,
        "; ".join(
            f"{r.name}: {r.max_series:,} series x {r.history_steps:,} steps" for r in service.rules
        ),
    )

    def listening() -> None:
        """Once the port is open (not before: a port taken is an error, not a banner)."""
        print(banner([r.name for r in service.rules], url, options.config is None, tls), flush=True)
        if not tls:
            log.warning(
                "serving PLAIN HTTP WITHOUT AUTHENTICATION on %s:%d: local development only",
                address,
                port,
            )

    freeze(2, "before the port opens")
    context = None if secured is None else secured.context
    try:
        service.start()
        http.run(
            RequestMetrics(app, service.metrics),
            address,
            port,
            context,
            options.log_level,
            listening=listening,
        )
    finally:
        log.info("stopping: the API is closed; background work in flight is abandoned")
        service.stop()
    leave(ABANDON_WITHIN)


ABANDON_WITHIN = 3.0
"""Seconds the background threads get to end after `serve` stops: a cycle gives up at its
next series, but a call to Prometheus in flight ends only at its timeout."""


def leave(within: float) -> None:
    """Wait up to `within` seconds for the background threads; if one is still busy, exit
    the process at once (status 0), since Python would wait for it at exit: Kubernetes
    kills a pod 30 s after SIGTERM, and work in flight is abandoned anyway."""
    deadline = time.monotonic() + within
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    busy = [t.name for t in threading.enumerate() if t is not main and not t.daemon]
    if busy:
        log.info("exiting without waiting for %s", ", ".join(busy))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
