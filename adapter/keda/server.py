"""The KEDA external scaler's gRPC server: its own port, thread and event loop, and its TLS
credentials, following the certificate files as the HTTPS port does."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import grpc

from adapter.errors import UsageError
from adapter.keda import externalscaler_pb2_grpc as pb_grpc
from adapter.keda.scaler import ExternalScaler
from adapter.tls import RELOAD_CHECK_INTERVAL, file_stamps

log = logging.getLogger(__name__)


class ScalerServer:
    """Serves `scaler` on address:port, with TLS when `credentials` are given."""

    def __init__(
        self,
        scaler: ExternalScaler,
        address: str,
        port: int,
        credentials: grpc.ServerCredentials | None,
    ) -> None:
        self.scaler = scaler
        self.address = address
        self.port = port
        self.credentials = credentials
        self._loop = asyncio.new_event_loop()
        self._server: grpc.aio.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind and start serving; the bound port, or UsageError if it cannot be bound."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._start())
            except BaseException as err:  # reported to start()'s caller
                failure.append(err)
                started.set()
                return
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="keda-scaler", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise UsageError(
                f"--keda-scaler-port {self.port}: cannot serve on {self.address}: {failure[0]}"
            )
        return self.port

    async def _start(self) -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        pb_grpc.add_ExternalScalerServicer_to_server(self.scaler, server)
        target = (
            f"[{self.address}]:{self.port}"
            if ":" in self.address
            else (f"{self.address}:{self.port}")
        )
        if self.credentials is None:
            bound = server.add_insecure_port(target)
        else:
            bound = server.add_secure_port(target, self.credentials)
        if not bound:
            raise OSError("the port is in use or the address is not this host's")
        self.port = bound
        await server.start()
        self._server = server
        log.info(
            "KEDA external scaler serving gRPC%s on %s",
            "" if self.credentials is None else " over TLS",
            target,
        )

    def stop(self, grace: float = 5.0) -> None:
        """Stop serving: calls in flight get `grace` seconds, open streams end."""
        if self._server is None or self._thread is None:
            return
        server = self._server
        asyncio.run_coroutine_threadsafe(server.stop(grace), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=grace + 5)
        self._server = None


class _CertificateFiles:
    """The PEM files of the scaler's TLS, re-read when one changes (checked at most every
    RELOAD_CHECK_INTERVAL, when a new connection asks), as the HTTPS port's are."""

    def __init__(self, cert_file: Path, key_file: Path, client_ca_file: Path | None) -> None:
        self.cert_file, self.key_file, self.client_ca_file = cert_file, key_file, client_ca_file
        self._files = (cert_file, key_file, *([client_ca_file] if client_ca_file else []))
        self._stamp = file_stamps(self._files)
        self._checked = time.monotonic()

    def load(self) -> grpc.ServerCertificateConfiguration:
        ca = self.client_ca_file.read_bytes() if self.client_ca_file else None
        pair = (self.key_file.read_bytes(), self.cert_file.read_bytes())
        return grpc.ssl_server_certificate_configuration([pair], root_certificates=ca)

    def changed(self) -> grpc.ServerCertificateConfiguration | None:
        """grpc's fetcher: a new configuration, or None to keep the current one."""
        now = time.monotonic()
        if now - self._checked < RELOAD_CHECK_INTERVAL:
            return None
        self._checked = now
        stamp = file_stamps(self._files)
        if stamp == self._stamp:
            return None
        try:
            config = self.load()
        except OSError as err:
            log.warning("KEDA scaler TLS: keeping the previous certificate: %s", err)
            return None
        self._stamp = stamp
        log.info("KEDA scaler TLS: certificate or client CA changed; new connections use them")
        return config


def server_credentials(
    cert_file: Path, key_file: Path, client_ca_file: Path | None
) -> grpc.ServerCredentials:
    """TLS credentials from PEM files, followed when they change; with a client CA, only
    clients presenting a certificate it signed get through the handshake."""
    files = _CertificateFiles(cert_file, key_file, client_ca_file)
    return grpc.dynamic_ssl_server_credentials(
        files.load(), files.changed, require_client_authentication=client_ca_file is not None
    )
