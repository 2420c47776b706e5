"""The Prometheus client against the real server: chunked ranges, auth, TLS, failures."""

from __future__ import annotations

import contextlib
import gc
import json
import socket
import subprocess
import threading
import time
import tracemalloc
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from forecaster.config import BasicAuth, PrometheusConfig, Rule
from forecaster.selector import parse_selector
from forecaster.sources.base import RangeSeries
from forecaster.sources.prometheus import (
    MAX_POINTS_PER_QUERY,
    PARALLEL_CHUNKS,
    PrometheusClient,
    PrometheusError,
    PrometheusSource,
)
from harness.net import free_port, wait_http
from harness.pki import CA
from harness.prometheus import PrometheusServer
from tests.conftest import RULE_QUERY, STEP

QUERY = 'sum by (service) (rate(http_requests_total{namespace="default",service="checkout"}[1m]))'


def test_long_range_is_chunked_and_exact(prometheus: PrometheusServer):
    n = 12_960  # 9 days of minutes: over Prometheus' 11,000-point limit for one call
    end = prometheus.end
    start = end - (n - 1) * STEP
    refused = httpx.post(
        f"{prometheus.url}/api/v1/query_range",
        data={"query": QUERY, "start": start, "end": end, "step": STEP},
    )
    assert refused.status_code == 400 and "11,000" in refused.text  # why we chunk

    calls: list[str] = []
    client = PrometheusClient(
        PrometheusConfig(url=prometheus.url), observer=lambda ep, s, ok: calls.append(ep)
    )
    [series] = client.query_range(QUERY, start + 17, end + 59, STEP)  # unaligned on purpose
    assert len(calls) == -(-n // MAX_POINTS_PER_QUERY)
    # Aligned to the step, no duplicate or missing point at the chunk borders.
    assert series.timestamps[0] == start + STEP  # start rounded up to the grid
    assert series.timestamps[-1] == end
    assert (np.diff(series.timestamps) == STEP).all()
    # The first minute's rate needs the sample before it, so it starts one later.
    expected = prometheus.series_by(namespace="default", service="checkout").rates(end, n - 1)
    np.testing.assert_allclose(series.values, expected, rtol=1e-12)


def test_a_backfill_leaves_no_answer_behind_for_the_collector(prometheus: PrometheusServer):
    """An httpx Response is freed only by the cyclic collector (its stream refers back to
    it): a client that left each body on its Response piled every answer of a backfill
    up between two collections (hundreds of MB at 10,000 series). With the collector
    off, what a 4-chunk range leaves allocated is its series' arrays, not its answers."""
    query = RULE_QUERY.replace("<<.LabelMatchers>>", "")
    end = prometheus.end
    start = end - (MAX_POINTS_PER_QUERY - 1) * STEP
    whole = httpx.post(
        f"{prometheus.url}/api/v1/query_range",
        data={"query": query, "start": start, "end": end, "step": STEP},
    ).content
    client = PrometheusClient(
        PrometheusConfig(url=prometheus.url), points_per_response=3 * MAX_POINTS_PER_QUERY // 4
    )
    client.query_range(query, end, end, STEP)  # the connection and the client's own objects
    gc.disable()
    tracemalloc.start()
    try:
        got = client.query_range(query, start, end, STEP, series=3)
        left = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        gc.enable()
        client.close()
    arrays = sum(s.timestamps.nbytes + s.values.nbytes for s in got)
    print(f"left {left >> 10} KiB: arrays {arrays >> 10}, answers {len(whole) >> 10}")
    assert len(got) == 3
    assert left - arrays < 0.25 * len(whole)


def test_a_backfill_holds_only_the_answers_in_flight_decoded(prometheus: PrometheusServer):
    """A decoded answer cost about 200 bytes a point in Python objects, its arrays 16:
    holding every chunk's answer until the last arrived took a 10,000-series backfill to
    8 GB. Chunked 20 ways with PARALLEL_CHUNKS in flight, the range's peak of traced
    memory is well under that of the same range fetched as one answer (each answer is
    read one series at a time, and it is never decoded whole)."""
    query = RULE_QUERY.replace("<<.LabelMatchers>>", "")
    end = prometheus.end
    start = end - (MAX_POINTS_PER_QUERY - 1) * STEP

    def peak(points_per_response: int) -> tuple[int, list[RangeSeries]]:
        client = PrometheusClient(
            PrometheusConfig(url=prometheus.url), points_per_response=points_per_response
        )
        tracemalloc.start()
        try:
            got = client.query_range(query, start, end, STEP, series=3)
            return tracemalloc.get_traced_memory()[1], got
        finally:
            tracemalloc.stop()
            client.close()

    whole, one = peak(3 * MAX_POINTS_PER_QUERY)  # one call
    chunked, many = peak(3 * MAX_POINTS_PER_QUERY // 20)  # 20 calls of 500 steps
    print(f"peak traced: one answer {whole / 2**20:.1f} MiB, 20 chunks {chunked / 2**20:.1f} MiB")
    assert len(one) == len(many) == 3
    for a, b in zip(one, many, strict=True):  # the same series, in the same order
        assert a.labels == b.labels
        np.testing.assert_array_equal(a.timestamps, b.timestamps)
        np.testing.assert_array_equal(a.values, b.values)
    assert chunked < 0.5 * whole


def test_refused_query_is_named(prometheus: PrometheusServer):
    kinds: list[str | None] = []
    client = PrometheusClient(
        PrometheusConfig(url=prometheus.url), observer=lambda ep, s, kind: kinds.append(kind)
    )
    with pytest.raises(PrometheusError, match=r"refused the query.*bad_data"):
        client.query("rate(http_requests_total[1m]", prometheus.end)
    assert kinds == ["refused"]


def test_unreachable_is_named_after_retries():
    url = f"http://127.0.0.1:{free_port()}"
    calls: list[str | None] = []
    client = PrometheusClient(
        PrometheusConfig(url=url, retries=2), observer=lambda ep, s, kind: calls.append(kind)
    )
    with pytest.raises(PrometheusError, match=f"cannot reach {url}.*after 3 attempts"):
        client.check_reachable()
    assert calls == ["unreachable"] * 3


@contextlib.contextmanager
def hung_server() -> Iterator[str]:
    """A server that accepts connections and never answers (a Prometheus stopped with
    SIGSTOP looks like this: the kernel completes the handshake)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_hung_prometheus_times_out_within_the_configured_bound():
    kinds: list[str | None] = []
    with hung_server() as url:
        client = PrometheusClient(
            PrometheusConfig(url=url, timeout=1, retries=1),
            observer=lambda ep, s, kind: kinds.append(kind),
        )
        started = time.monotonic()
        with pytest.raises(PrometheusError, match=r"timed out after 1s \(after 2 attempts"):
            client.query("up", time.time())
        took = time.monotonic() - started
    assert kinds == ["timeout", "timeout"]
    assert took < 2 * 1 + 1.5  # two attempts of 1 s and the pause between them


def test_a_backfill_stops_asking_after_its_first_failed_chunk():
    with hung_server() as url:
        calls: list[str | None] = []
        client = PrometheusClient(
            PrometheusConfig(url=url, timeout=1, retries=0),
            observer=lambda ep, s, kind: calls.append(kind),
            points_per_response=10,  # 10-step chunks: 100 of them for 1000 steps
        )
        started = time.monotonic()
        with pytest.raises(PrometheusError, match="timed out"):
            client.query_range("up", 0, 60 * 1000, 60)
        took = time.monotonic() - started
    # The chunks in flight time out together; none of the 96 others is asked for.
    assert len(calls) == PARALLEL_CHUNKS
    assert took < 2.5


def test_bearer_token_is_reread_from_its_file(tmp_path):
    # Prometheus itself does not check bearer tokens (a proxy in front of it does), so
    # this test records what the client sends.
    token = tmp_path / "token"
    token.write_text("first\n")
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(
            200, json={"status": "success", "data": {"resultType": "vector", "result": []}}
        )

    client = PrometheusClient(
        PrometheusConfig(url="http://prometheus:9090", bearer_token_file=token),
        transport=httpx.MockTransport(handler),
    )
    client.query("up", 0)
    token.write_text("rotated")
    client.query("up", 0)
    assert seen == ["Bearer first", "Bearer rotated"]


@pytest.fixture(scope="module")
def secured_prometheus(prometheus: PrometheusServer, tmp_path_factory):
    """A second real Prometheus on the same data, behind TLS and basic auth."""
    root: Path = tmp_path_factory.mktemp("secured")
    authority = CA("prometheus-ca", root)
    pair = authority.issue(
        "prometheus", "prometheus", hosts=("127.0.0.1", "localhost"), server=True
    )
    ca, cert, key = authority.cert, pair.cert, pair.key
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # bcrypt via glibc; deprecated, still in 3.11 and 3.12

        hashed = crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH))
    web = root / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
        f"basic_auth_users:\n  scaleahead: '{hashed}'\n"
    )
    # A snapshot copy: two servers must not share one TSDB directory.
    data = root / "data"
    subprocess.run(["cp", "-r", str(prometheus.data), str(data)], check=True)
    (data / "lock").unlink(missing_ok=True)
    port = free_port()
    proc = subprocess.Popen(
        [
            prometheus.binary,
            f"--config.file={prometheus.config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.config.file={web}",
            "--storage.tsdb.retention.time=60d",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_http(f"https://127.0.0.1:{port}/-/ready", ok=(200, 401), timeout=60)
    password = root / "password"
    password.write_text("s3cret\n")
    yield f"https://127.0.0.1:{port}", ca, password
    proc.terminate()
    proc.wait(timeout=30)


def test_basic_auth_and_ca_file_against_real_tls(secured_prometheus, prometheus):
    url, ca, password = secured_prometheus
    good = PrometheusClient(
        PrometheusConfig(
            url=url, ca_file=ca, basic_auth=BasicAuth(username="scaleahead", password_file=password)
        )
    )
    [sample] = good.query(QUERY, prometheus.end - 60)
    assert sample.value == pytest.approx(
        prometheus.series_by(namespace="default", service="checkout").rate_at(prometheus.end - 60)
    )
    no_auth = PrometheusClient(PrometheusConfig(url=url, ca_file=ca, retries=0))
    with pytest.raises(PrometheusError, match="401"):
        no_auth.query(QUERY, prometheus.end)
    no_ca = PrometheusClient(
        PrometheusConfig(
            url=url, retries=0, basic_auth=BasicAuth(username="scaleahead", password_file=password)
        )
    )
    with pytest.raises(PrometheusError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
        no_ca.query(QUERY, prometheus.end)


def test_many_series_are_fetched_in_bounded_answers(prometheus: PrometheusServer):
    """With a point budget per answer, a long backfill of 3 series takes more, smaller
    chunks, and gives exactly what one big fetch gives."""
    rule = Rule(name="r", query=RULE_QUERY, history="9d")
    end = prometheus.end - 3600
    start = end - 9 * 86400 + STEP
    calls: list[str] = []
    small = PrometheusSource(
        PrometheusClient(
            PrometheusConfig(url=prometheus.url),
            observer=lambda ep, s, ok: calls.append(ep),
            points_per_response=3 * 1000,
        )
    )
    got = small.fetch_range(rule, start, end)
    steps = (end - start) // STEP + 1
    assert len(calls) == 1 + -(-steps // 1000)  # a one-step probe, then 1,000 steps a chunk
    reference = PrometheusSource(PrometheusClient(PrometheusConfig(url=prometheus.url)))
    want = {tuple(sorted(s.labels.items())): s for s in reference.fetch_range(rule, start, end)}
    assert len(got) == len(want) == 3
    for s in got:
        w = want[tuple(sorted(s.labels.items()))]
        np.testing.assert_array_equal(s.timestamps, w.timestamps)
        np.testing.assert_array_equal(s.values, w.values)
    calls.clear()
    small.fetch_range(rule, start, end)  # the series count is now known: no probe
    assert len(calls) == -(-steps // 1000)


def test_a_rule_with_a_phase_is_evaluated_on_its_own_grid(prometheus: PrometheusServer):
    """Prometheus evaluates a range query at start + k * step: a rule whose grid lies
    20 s past each minute gets its points there, each the rate over the minute ending
    then, between the wall clock's neighbours."""
    source = PrometheusSource(PrometheusClient(PrometheusConfig(url=prometheus.url)))
    aligned = Rule(name="r", query=RULE_QUERY, history="1d")
    phased = aligned.model_copy(update={"phase": 20})
    end = prometheus.end - 3600
    start = end - 86400
    one = parse_selector("namespace=default,service=checkout")
    [got] = source.fetch_range(phased, start, end, one)
    [ref] = source.fetch_range(aligned, start, end, one)
    assert (got.timestamps % STEP == 20).all() and (np.diff(got.timestamps) == STEP).all()
    assert got.timestamps[-1] == end - STEP + 20  # the newest at or before `end`
    assert not np.allclose(got.values[:100], ref.values[:100])  # other windows, other rates


def test_a_throttling_proxy_is_retried_when_it_says_and_backoff_has_jitter():
    """A rate-limiting proxy in front of Prometheus answers 429 with Retry-After: the
    retry waits that long (it used a fixed 0.4 s, the same for every replica)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from forecaster.sources.prometheus import RETRY_PAUSE_MAX, retry_after, retry_pause

    arrivals: list[float] = []

    class Throttling(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            arrivals.append(time.monotonic())
            self.rfile.read(int(self.headers.get("content-length", 0)))
            if len(arrivals) == 1:
                body = b"slow down"
                self.send_response(429)
                self.send_header("Retry-After", "2")
            else:
                body = json.dumps(
                    {
                        "status": "success",
                        "data": {
                            "resultType": "vector",
                            "result": [{"metric": {"job": "a"}, "value": [1.0, "3"]}],
                        },
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Throttling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = PrometheusClient(
            PrometheusConfig(url=f"http://127.0.0.1:{server.server_port}", retries=2)
        )
        [sample] = client.query("up", time.time())
    finally:
        server.shutdown()
        server.server_close()
    assert sample.value == 3.0
    assert len(arrivals) == 2 and 1.9 <= arrivals[1] - arrivals[0] < 3.0
    # Retry-After as an HTTP date, capped; none: a backoff with jitter.
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after("soon") is None and retry_after(None) is None
    assert retry_pause(1, 3600.0) == RETRY_PAUSE_MAX
    pauses = {retry_pause(2, None) for _ in range(50)}
    assert len(pauses) > 40 and all(0.4 <= p <= 0.8 for p in pauses)
