"""Forecasts lent between replicas: the wire format read back only for the same rule, the
store holding borrowed forecasts only until a cycle of its own puts, the lending route,
and the borrower's trust in nothing but the replicas' own serving certificate."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from kubernetes import client
from prometheus_client import CollectorRegistry

from adapter.cluster.kube import Kube
from adapter.peers.borrower import pinned_context
from adapter.peers.lender import Lender
from adapter.peers.wire import MEDIA_TYPE, WireError, decode, encode
from adapter.provider.fake import FakeProvider
from adapter.security.tls import TLSSettings
from adapter.server.app import create_app
from forecaster.config import Rule
from forecaster.forecast import SeriesForecast
from forecaster.runtime.store import ForecastStore
from forecaster.sources.base import series_key
from harness.pki import CA

RULE = Rule(name="qps", query="x{<<.LabelMatchers>>}", max_series=3)
ORIGIN = 1_700_000_040
A = {"namespace": "shop", "service": "a"}
B = {"namespace": "shop", "service": "b"}


def forecast(labels: dict[str, str], level: float = 8.0, origin: int = ORIGIN) -> SeriesForecast:
    ds = (origin + 60 * np.arange(1, RULE.horizon_steps + 1)).astype(np.int64)
    upper = np.linspace(level, 2 * level, RULE.horizon_steps)
    return SeriesForecast(
        labels, origin, 5.25, ds, upper / 3, upper, "ets", 0.5, 0.9, 1.05, 120, 300
    )


def snapshot(*labels: dict[str, str], origin: int = ORIGIN) -> dict:
    return {series_key(x): forecast(x, 8.0 + i, origin) for i, x in enumerate(labels)}


def parse(lent: bytes) -> dict:
    """A body as one object: its head, with its lines under "forecasts"."""
    head, *items = (json.loads(line) for line in lent.split(b"\n"))
    return {**head, "forecasts": items}


def body(doc: dict) -> bytes:
    """The body `parse` read `doc` from."""
    head = {k: v for k, v in doc.items() if k != "forecasts"}
    return b"\n".join(json.dumps(x).encode() for x in [head, *doc.get("forecasts", [])])


def test_a_snapshot_reads_back_exactly_as_the_store_held_it():
    lent = snapshot(A, B)
    lent[series_key(B)].point[2] = float("nan")  # lent as held: the policy judges it
    lines = encode(RULE, lent)
    # A line a series, each (de)coded on its own: the event loop waits for one at most.
    assert lines.count(b"\n") == len(lent)
    got = decode(RULE, lines)
    assert got.keys() == lent.keys()
    for key, f in lent.items():
        g = got[key]
        assert g.ds.dtype == np.int64 and np.array_equal(g.ds, f.ds)
        assert np.array_equal(g.point, f.point, equal_nan=True)
        assert np.array_equal(g.upper, f.upper)  # exact: replicas serve the same value
        assert (g.labels, g.origin, g.last_actual, g.model) == (
            f.labels,
            f.origin,
            f.last_actual,
            f.model,
        )
        assert (g.recent_error, g.quantile, g.headroom, g.lead, g.scale_down) == (
            0.5,
            0.9,
            1.05,
            120,
            300,
        )


def _item(**change: object) -> dict:
    doc = parse(encode(RULE, snapshot(A)))
    doc["forecasts"][0].update(change)
    return doc


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ({**parse(encode(RULE, snapshot(A))), "rule": "other"}, "of rule 'other'"),
        (parse(encode(RULE.model_copy(update={"lead": 300}), snapshot(A))), "fingerprint"),
        (parse(encode(RULE, snapshot(A, B, {"s": "c"}, {"s": "d"}))), "max_series"),
        (_item(labels={"service": 3}), "labels"),
        (_item(point=[1.0]), "differ in length"),
        (_item(ds=[float(t) for t in _item()["forecasts"][0]["ds"]]), "integers"),
        (_item(ds=list(reversed(_item()["forecasts"][0]["ds"]))), "not increasing"),
        (_item(upper=[True] * RULE.horizon_steps), "not a list of numbers"),
        (_item(origin="now"), "origin"),
        (_item(lead=1.5), "lead"),
        ({"rule": "qps"}, "fingerprint"),
    ],
    ids=[
        "another rule",
        "same name, other config",
        "beyond max_series",
        "labels",
        "lengths",
        "float ds",
        "ds order",
        "bools",
        "origin",
        "lead",
        "no fingerprint",
    ],
)
def test_anything_but_a_snapshot_of_this_rule_is_refused_naming_why(doc: dict, why: str):
    with pytest.raises(WireError, match=why):
        decode(RULE, body(doc))


def test_a_body_that_is_not_json_is_refused():
    with pytest.raises(WireError, match="not JSON"):
        decode(RULE, b"\xff<html>")


def test_borrowed_forecasts_are_served_only_until_this_replicas_own_catch_up():
    store = ForecastStore()
    assert store.borrow("qps", snapshot(A), "peer-1")
    assert store.lender("qps") == "peer-1" and store.own("qps") is None
    assert store.get("qps", A) is not None  # served as if they were this replica's
    assert store.borrow("qps", snapshot(A, B), "peer-2")  # a newer round replaces them
    assert store.lender("qps") == "peer-2" and len(store.snapshot("qps") or {}) == 2
    mine = snapshot(B)
    store.put("qps", mine)  # as new as the peer's: served from now on
    assert store.lender("qps") is None and store.own("qps") == mine
    assert not store.borrow("qps", snapshot(A, origin=ORIGIN + 60), "peer-1")  # never again
    assert store.snapshot("qps") == mine


def test_a_first_cycle_older_than_the_peers_forecasts_leaves_them_served():
    """A first cycle that took longer than a step (10,000 series) ends with forecasts
    older than the peer's: they would be stale, and the two replicas would differ."""
    store = ForecastStore()
    fresh = snapshot(A, origin=ORIGIN + 300)
    store.borrow("qps", fresh, "peer-1")
    late = snapshot(A)
    store.put("qps", late)
    assert store.own("qps") == late  # what it lends from now on
    assert store.snapshot("qps") == fresh and store.lender("qps") == "peer-1"
    newer = snapshot(A, origin=ORIGIN + 360)
    assert store.borrow("qps", newer, "peer-1")  # still borrowing while its own lag
    assert store.snapshot("qps") == newer
    caught_up = snapshot(A, origin=ORIGIN + 360)
    store.put("qps", caught_up)
    assert store.snapshot("qps") == caught_up and store.lender("qps") is None
    # A round that raced the put finds its own as new, and ends the borrowing.
    assert not store.borrow("qps", newer, "peer-1")
    assert store.snapshot("qps") == caught_up


def test_a_replica_lends_only_forecasts_of_its_own():
    store = ForecastStore()
    lender = Lender([RULE], store)
    assert lender.body("qps") is None
    store.borrow("qps", snapshot(A), "peer-1")
    assert lender.body("qps") is None  # borrowed forecasts are not lent on
    store.put("qps", snapshot(A, B))
    first = lender.body("qps")
    assert first is not None and len(decode(RULE, first)) == 2
    assert lender.body("qps") is first  # encoded once per cycle
    store.put("qps", snapshot(A))
    again = lender.body("qps")
    assert again is not None and len(decode(RULE, again)) == 1
    with pytest.raises(KeyError):
        lender.body("other")


def test_the_lending_route_answers_statuses_and_the_snapshot():
    store = ForecastStore()
    app = create_app(FakeProvider(), CollectorRegistry(), lender=Lender([RULE], store))
    client = TestClient(app, raise_server_exceptions=False)
    missing = client.get("/forecasts/other")
    assert missing.status_code == 404 and missing.json()["kind"] == "Status"
    early = client.get("/forecasts/qps")
    assert early.status_code == 503 and "first forecast cycle" in early.json()["message"]
    store.put("qps", snapshot(A))
    lent = client.get("/forecasts/qps")
    assert lent.status_code == 200 and lent.headers["content-type"] == MEDIA_TYPE
    assert decode(RULE, lent.content).keys() == {series_key(A)}
    bare = TestClient(create_app(FakeProvider(), CollectorRegistry()))
    assert bare.get("/forecasts/qps").status_code == 404  # without a lender: nothing lent


@contextmanager
def tls_server(cert: Path, key: Path) -> Iterator[int]:
    """A loopback TLS server presenting `cert` that completes handshakes, then closes."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


def handshake(context: ssl.SSLContext, port: int, name: str = "127.0.0.1") -> None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=name),
    ):
        pass


def test_a_peer_is_trusted_only_with_this_replicas_own_certificate(tmp_path: Path):
    ca = CA("serving-ca", tmp_path)
    mine = ca.issue("mine", "scaleahead", hosts=("scaleahead.scaleahead.svc",), server=True)
    other = ca.issue("other", "other", hosts=("other.default.svc",), server=True)
    # The certificate file as cert-manager writes it: the leaf, then its issuer.
    chained = tmp_path / "chained.crt"
    chained.write_bytes(mine.cert.read_bytes() + ca.pem())
    pinned = pinned_context(TLSSettings(chained, mine.key))
    with tls_server(mine.cert, mine.key) as port:
        handshake(pinned, port)  # the shared certificate: trusted
    with tls_server(other.cert, other.key) as port:
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(pinned, port)  # same CA, another certificate
        # (which the CA itself trusts)
        handshake(ssl.create_default_context(cafile=str(ca.cert)), port, "other.default.svc")


def test_the_token_presented_to_peers_is_the_clients_own_as_one_header():
    pod = client.Configuration()
    pod.api_key["BearerToken"] = "bearer eyJhbGciOi.x.y\n"  # as load_incluster_config sets it
    assert Kube(client.ApiClient(pod)).bearer() == "Bearer eyJhbGciOi.x.y"
    assert Kube(client.ApiClient(client.Configuration())).bearer() is None  # certificates
