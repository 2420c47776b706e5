"""Until this replica's own cycles of a rule have caught up (its first has ended, with
forecasts as new as its peer's), it serves the forecasts of that rule a Ready peer
serves: fetched from the peer's serving port every BORROW_EVERY seconds, so that both
serve the same value for the same series at the same instant, and a new pod (a rollout,
a drained node) is ready in seconds instead of after its backfill and first fits.

A peer is trusted only if it presents this replica's own serving certificate (the one
the replicas share): the certificate is the only trust anchor, so no other certificate,
not even one from the same CA, passes the handshake, and this replica's service account
token is sent only after it. The peer authorizes the request by SubjectAccessReview
(non-resource path /forecasts/<rule>), as any other."""

from __future__ import annotations

import logging
import socket
import ssl
import threading

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client import CollectorRegistry, Counter

from adapter.cluster.kube import APISERVICE, Endpoint, Kube, KubeError
from adapter.peers.wire import MEDIA_TYPE, WireError, decode
from adapter.security.tls import TLSSettings
from forecaster.config import Rule
from forecaster.forecast import SeriesForecast
from forecaster.runtime.store import ForecastStore
from forecaster.sources.base import SeriesKey

log = logging.getLogger(__name__)

BORROW_EVERY = 10.0
"""Seconds between two rounds of borrowing (a peer's cycle replaces its forecasts once a
step, a minute at the shortest)."""
TIMEOUT = httpx.Timeout(10.0, connect=2.0)
PORT_NAME = "https"
"""The Service port (the Deployment's container port) the peers serve on."""


class PeerError(Exception):
    """A peer could not lend a rule's forecasts."""


def pinned_context(tls: TLSSettings) -> ssl.SSLContext:
    """A client context under the serving TLS policy that trusts exactly the first
    certificate of the serving certificate file (the one the replicas share), and
    nothing that chains to its issuer."""
    leaf = x509.load_pem_x509_certificates(tls.cert_file.read_bytes())[0]
    context = tls.policy.apply(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    context.check_hostname = False  # a peer is dialled by its pod address
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a leaf as the trust anchor
    context.load_verify_locations(cadata=leaf.public_bytes(Encoding.DER))
    return context


class Borrower:
    """Borrows each rule's forecasts from a Ready peer until this replica's own have
    caught up; then it ends. A part of the service (start, stop)."""

    def __init__(
        self,
        kube: Kube,
        rules: list[Rule],
        store: ForecastStore,
        tls: TLSSettings,
        registry: CollectorRegistry,
        pod: str | None = None,
        every: float = BORROW_EVERY,
    ) -> None:
        self.kube = kube
        self.rules = rules
        self.store = store
        self.tls = tls
        self.pod = pod if pod is not None else socket.gethostname()
        self.every = every
        self.borrows = Counter(
            "scaleahead_peer_borrows",
            "Fetches of a peer replica's forecasts of a rule, before this replica's own "
            "had caught up, by outcome (ok, failed).",
            ["rule", "outcome"],
            registry=registry,
        )
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="borrower", daemon=True)
        self._told: set[tuple[str, str]] = set()  # (rule, why) already logged

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def pending(self) -> list[Rule]:
        """The rules this replica has no forecasts of its own of, or serves a peer's of
        (its own are older: a first cycle longer than a step)."""
        return [
            r
            for r in self.rules
            if self.store.own(r.name) is None or self.store.lender(r.name) is not None
        ]

    def round(self) -> bool:
        """One round: every pending rule borrowed from the first peer that lends it;
        whether any rule is still pending (False: borrowing is over)."""
        pending = self.pending()
        if not pending:
            log.info("every rule has forecasts of its own: no more borrowing")
            return False
        route = self.kube.apiservice_route(APISERVICE)
        if route is None:
            log.info("APIService %s routes to no Service: no peers to borrow from", APISERVICE)
            return False
        service, namespace = route
        peers = [
            p for p in self.kube.ready_endpoints(namespace, service, PORT_NAME) if p.pod != self.pod
        ]
        if not peers:
            self._tell("", "no Ready peer replica: each rule waits for its own first cycle")
        for rule in pending:
            self._borrow(rule, peers)
        return True

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                if not self.round():
                    return
            except KubeError as err:
                self._tell("", f"cannot list the peer replicas: {err}")
            except Exception:
                log.exception("borrowing from peer replicas failed")
            self._stopped.wait(self.every)

    def _borrow(self, rule: Rule, peers: list[Endpoint]) -> None:
        for peer in peers:
            name = peer.pod or peer.address
            try:
                forecasts = self.fetch(rule, peer)
            except PeerError as err:
                self.borrows.labels(rule.name, "failed").inc()
                self._tell(rule.name, f"peer {name} lends no forecasts of rule {rule.name}: {err}")
                continue
            if self.store.borrow(rule.name, forecasts, name):
                self.borrows.labels(rule.name, "ok").inc()
                if (rule.name, "ok") not in self._told:
                    self._told.add((rule.name, "ok"))
                    log.info(
                        "rule %s: serving %d forecasts borrowed from peer %s until this "
                        "replica's own cycles of it catch up",
                        rule.name,
                        len(forecasts),
                        name,
                        extra={"rule": rule.name},
                    )
            return

    def fetch(self, rule: Rule, peer: Endpoint) -> dict[SeriesKey, SeriesForecast]:
        """The forecasts `peer` lends of `rule`; PeerError naming why not."""
        try:
            context = pinned_context(self.tls)
        except (OSError, ValueError, ssl.SSLError) as err:
            why = f"cannot read the serving certificate {self.tls.cert_file}: {err}"
            raise PeerError(why) from None
        bearer = self.kube.bearer()
        if bearer is None:
            raise PeerError("this replica has no service account token to present")
        host = f"[{peer.address}]" if ":" in peer.address else peer.address
        url = f"https://{host}:{peer.port}/forecasts/{rule.name}"
        try:
            with httpx.Client(verify=context, timeout=TIMEOUT, trust_env=False) as client:
                answer = client.get(url, headers={"Authorization": bearer})
        except httpx.HTTPError as err:
            raise PeerError(f"{type(err).__name__}: {err}") from None
        if answer.status_code != 200:
            raise PeerError(f"{answer.status_code}: {_message(answer)}")
        kind = answer.headers.get("content-type", "").split(";")[0].strip()
        if kind != MEDIA_TYPE:
            raise PeerError(f"answered {kind or 'no content type'}, not {MEDIA_TYPE}")
        try:
            return decode(rule, answer.content)
        except WireError as err:
            raise PeerError(str(err)) from None

    def _tell(self, rule: str, why: str) -> None:
        """Log `why` once at INFO, then at DEBUG: a peer of another version says the same
        every round."""
        level = logging.DEBUG if (rule, why) in self._told else logging.INFO
        self._told.add((rule, why))
        log.log(level, why)


def _message(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("message", answer.text[:200]))
    except ValueError:
        return answer.text[:200]
