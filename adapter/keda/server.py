"""The KEDA external scaler's gRPC server: its own port, thread and event loop; its TLS
credentials come from the one TLS policy (adapter.security.tls.grpc_credentials)."""

from __future__ import annotations

import asyncio
import logging
import threading

import grpc

from adapter.errors import UsageError
from adapter.keda import externalscaler_pb2_grpc as pb_grpc
from adapter.keda.scaler import ExternalScaler

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 256
"""Connections the gRPC port holds at most (beyond, grpc closes new ones). KEDA's operator
keeps one or a few; unbounded, one client holding thousands of connections, no handshake
needed, took the open files the API's own port needs (`adapter.server.http.FD_RESERVE`
keeps room for these)."""
HANDSHAKE_TIMEOUT_MS = 5000
"""Milliseconds a client has to complete its TLS handshake (grpc's default: 120 s), as on
the API's port."""


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
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_allowed_incoming_connections", MAX_CONNECTIONS),
                ("grpc.server_handshake_timeout_ms", HANDSHAKE_TIMEOUT_MS),
            ]
        )
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
