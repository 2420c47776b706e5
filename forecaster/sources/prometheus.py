"""A small client for Prometheus' HTTP query API: timeouts, retries, auth, chunked ranges."""

from __future__ import annotations

import difflib
import email.utils
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from forecaster import promql
from forecaster.config import PrometheusConfig, Rule
from forecaster.policy import as_rates, is_rate
from forecaster.selector import EVERYTHING, LabelSelector
from forecaster.sources import matrix
from forecaster.sources.base import InstantSample, RangeSeries, SeriesKey, SourceError, series_key
from forecaster.sources.matrix import Points, read_answer
from forecaster.sources.tls import client_context
from forecaster.times import grid_ceil, grid_floor

RETRY_PAUSE_MAX = 5.0
"""Seconds a retry waits at most, whatever the backoff or the server's Retry-After."""


def retry_pause(attempt: int, asked: float | None) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): what the server asked
    for (Retry-After), else an exponential backoff from 0.4 s with jitter (half to all of
    it, so that replicas refused together do not come back together); at most
    RETRY_PAUSE_MAX."""
    if asked is not None:
        return min(asked, RETRY_PAUSE_MAX)
    return random.uniform(0.5, 1.0) * min(0.2 * 2**attempt, RETRY_PAUSE_MAX)


def retry_after(value: str | None) -> float | None:
    """A Retry-After header's seconds (a number of seconds or an HTTP date); None if
    absent or unreadable."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


MAX_POINTS_PER_QUERY = 10_000
"""Points per series per query_range call: under Prometheus' hard limit of 11,000."""

POINTS_PER_RESPONSE = 250_000
"""Points (series x steps) asked for in one query_range call: keeps each answer to about
8 MB of JSON and 50 MB decoded, far from Prometheus' --query.max-samples (50 million by
default), however many series a rule has."""

PARALLEL_CHUNKS = 4
"""query_range calls of one backfill in flight at once: a restart is ready sooner, and
Prometheus (which runs each query on one core) is not flooded."""

QueryObserver = Callable[[str, float, "str | None"], None]
"""Called after each HTTP call with (endpoint, seconds, error kind or None): `timeout`,
`unreachable` (connection failed or broke), `server_error` (5xx), `throttled` (429),
`refused` (Prometheus rejected the query) or `bad_response` (not its JSON)."""

ERROR_KINDS = ("timeout", "unreachable", "server_error", "throttled", "refused", "bad_response")
"""Every error kind a QueryObserver is told."""


class PrometheusError(SourceError):
    """Prometheus could not answer: unreachable, timed out, refused or failed the query."""


def _excerpt(content: bytes, chars: int) -> str:
    return content[: chars * 4].decode(errors="replace")[:chars]


class PrometheusClient:
    """Queries one Prometheus server; every failure surfaces as PrometheusError."""

    def __init__(
        self,
        config: PrometheusConfig,
        *,
        observer: QueryObserver | None = None,
        transport: httpx.BaseTransport | None = None,
        points_per_response: int = POINTS_PER_RESPONSE,
    ) -> None:
        self._config = config
        self._observer = observer
        self.points_per_response = points_per_response
        auth = None
        if config.basic_auth is not None:
            password = config.basic_auth.password_file.read_text().strip()
            auth = httpx.BasicAuth(config.basic_auth.username, password)
        self._http = httpx.Client(
            base_url=config.url,
            timeout=float(config.timeout),
            auth=auth,
            verify=client_context(config.ca_file),
            transport=transport,
            headers={"User-Agent": "scaleahead"},
        )

    @property
    def url(self) -> str:
        return self._config.url

    def close(self) -> None:
        self._http.close()

    def _headers(self) -> dict[str, str]:
        # Re-read on every call: Kubernetes rotates projected service-account tokens.
        if self._config.bearer_token_file is None:
            return {}
        token = self._config.bearer_token_file.read_text().strip()
        return {"Authorization": f"Bearer {token}"}

    def _call(self, endpoint: str, params: dict[str, Any], method: str = "POST") -> Any:
        attempts = self._config.retries + 1
        last: str = ""
        wait: float | None = None  # what the server asked for (Retry-After), if it did
        for attempt in range(attempts):
            if attempt:
                time.sleep(retry_pause(attempt, wait))
            wait = None
            started = time.perf_counter()
            get = method == "GET"
            try:
                # The body read into our own bytes: an httpx Response is freed only by the
                # cyclic collector (its stream refers back to it), so answers it held
                # would pile up between collections, hundreds of MB in a backfill.
                with self._http.stream(
                    method,
                    endpoint,
                    params=params if get else None,
                    data=None if get else params,
                    headers=self._headers(),
                ) as resp:
                    content = b"".join(resp.iter_bytes())
            except httpx.HTTPError as err:
                timeout = isinstance(err, httpx.TimeoutException)
                self._observe(endpoint, started, "timeout" if timeout else "unreachable")
                what = f"timed out after {self._config.timeout}s" if timeout else str(err)
                last = f"cannot reach {self.url}{endpoint}: {what or type(err).__name__}"
                continue
            if resp.status_code >= 500 or resp.status_code == 429:
                kind = "throttled" if resp.status_code == 429 else "server_error"
                self._observe(endpoint, started, kind)
                wait = retry_after(resp.headers.get("retry-after"))
                last = f"{self.url}{endpoint} answered {resp.status_code}: {_excerpt(content, 300)}"
                continue
            try:
                body = read_answer(content)
            except ValueError:
                self._observe(endpoint, started, "bad_response")
                raise PrometheusError(
                    f"{self.url}{endpoint} answered {resp.status_code} with a body that is "
                    f"not JSON: {_excerpt(content, 200)!r}"
                ) from None
            if resp.status_code != 200 or body.get("status") != "success":
                self._observe(endpoint, started, "refused")
                raise PrometheusError(
                    f"{self.url}{endpoint} refused the query ({resp.status_code}): "
                    f"{body.get('errorType', '')}: {body.get('error', _excerpt(content, 300))}"
                )
            self._observe(endpoint, started, None)
            return body["data"]
        raise PrometheusError(f"{last} (after {attempts} attempts)")

    def _observe(self, endpoint: str, started: float, error: str | None) -> None:
        if self._observer is not None:
            self._observer(endpoint, time.perf_counter() - started, error)

    def check_reachable(self) -> None:
        """Raise PrometheusError unless the server answers a trivial query."""
        self._call("/api/v1/query", {"query": "1"})

    def metric_names(self) -> list[str]:
        """Every metric name Prometheus holds."""
        return [str(name) for name in self._call("/api/v1/label/__name__/values", {}, "GET")]

    def query(self, promql: str, at: float) -> list[InstantSample]:
        """Evaluate an instant vector query at time `at` (Unix seconds)."""
        data = self._call("/api/v1/query", {"query": promql, "time": f"{at:.3f}"})
        if data.get("resultType") != "vector":
            raise PrometheusError(
                f"query must return an instant vector, got {data.get('resultType')}: {promql}"
            )
        return [
            InstantSample(matrix.labels(item["metric"]), matrix.parse_value(item["value"][1]))
            for item in data["result"]
        ]

    def query_range(
        self, promql: str, start: int, end: int, step: int, series: int = 1, phase: int = 0
    ) -> list[RangeSeries]:
        """Evaluate over [start, end] on the grid `phase` past multiples of `step`, in chunks.

        Each chunk holds at most MAX_POINTS_PER_QUERY steps, and at most
        `points_per_response / series` when the query is expected to return `series`
        series. `start` and `end` are rounded to the grid (start up, end down); samples
        that are NaN, infinite or negative are dropped, so a series' grid may have holes.
        """
        start, end = grid_ceil(start, step, phase), grid_floor(end, step, phase)
        chunk = max(1, min(MAX_POINTS_PER_QUERY, self.points_per_response // max(series, 1))) * step
        spans = [(lo, min(end, lo + chunk - step)) for lo in range(start, end + 1, chunk)]

        failed = threading.Event()  # after one chunk failed, no other is asked for

        def fetch(span: tuple[int, int]) -> list[Points]:
            lo, hi = span
            if failed.is_set():
                raise PrometheusError("an earlier chunk of this range failed")
            try:
                data = self._call(
                    "/api/v1/query_range",
                    {"query": promql, "start": str(lo), "end": str(hi), "step": str(step)},
                )
            except PrometheusError:
                failed.set()
                raise
            if data.get("resultType") != "matrix":
                raise PrometheusError(
                    f"query must return a range vector, got {data.get('resultType')}: {promql}"
                )
            return list(data["result"])  # Points, read out in this thread (read_answer)

        slots = (end - start) // step + 1
        grids: dict[SeriesKey, tuple[dict[str, str], np.ndarray]] = {}
        if len(spans) > 1:  # a backfill: bounded parallel, answers placed in time order
            pool = ThreadPoolExecutor(PARALLEL_CHUNKS, thread_name_prefix="backfill")
            try:
                # At most PARALLEL_CHUNKS asked, or answered and not yet placed.
                ahead = deque(pool.submit(fetch, span) for span in spans[:PARALLEL_CHUNKS])
                rest = iter(spans[PARALLEL_CHUNKS:])
                while ahead:
                    answer = ahead.popleft().result()
                    if (span := next(rest, None)) is not None:
                        ahead.append(pool.submit(fetch, span))
                    _place(answer, grids, start, step, slots)
                    del answer
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        else:
            for span in spans:
                _place(fetch(span), grids, start, step, slots)
        out = []
        for labels, values in map(grids.pop, list(grids)):  # each let go as its series is made
            rates = as_rates(values)
            ok = np.flatnonzero(~np.isnan(rates))
            out.append(RangeSeries(labels, start + step * ok.astype(np.int64), rates[ok]))
        return out


def _place(
    answer: list[Points],
    grids: dict[SeriesKey, tuple[dict[str, str], np.ndarray]],
    start: int,
    step: int,
    slots: int,
) -> None:
    """Write an answer's points into each series' grid of `slots` steps from `start`
    (NaN where none came), in the order the series first appear."""
    for labels, ts, vs in answer:
        key = series_key(labels)
        entry = grids.get(key)
        if entry is None:
            entry = grids[key] = (labels, np.full(slots, np.nan))
        idx = (ts - start) // step
        inside = (idx >= 0) & (idx < slots)
        entry[1][idx[inside]] = vs[inside]


@dataclass(frozen=True)
class RuleProbe:
    """What one run of a rule's query found; `problems` are reasons it cannot serve."""

    series: int
    label_names: tuple[str, ...]
    problems: tuple[str, ...]


def probe_rule(client: PrometheusClient, rule: Rule, at: float) -> RuleProbe:
    """Run the rule's query for every series once at `at`; explain an empty result with
    the metric names Prometheus holds that look like the ones the query asks for."""
    samples = client.query(promql.render(rule.query, EVERYTHING), at)
    names = sorted({k for s in samples for k in s.labels})
    problems = []
    if not samples:
        known = set(client.metric_names())
        hints = []
        for metric in promql.check_template(rule.query).metrics:
            if metric in known:
                hints.append(f"{metric} exists, so the query's matchers or functions drop it all")
                continue
            close = difflib.get_close_matches(metric, known, n=3, cutoff=0.6)
            similar = f"; similar names: {', '.join(close)}" if close else ""
            hints.append(f"Prometheus has no metric {metric}{similar}")
        problems.append("the query yields no series (" + "; ".join(hints or ["no metric"]) + ")")
    elif rule.namespace_label and rule.namespace_label not in names:
        problems.append(
            f"its series carry no {rule.namespace_label!r} label (namespace_label), so no "
            f"request could match one: keep it in the query, or set namespace_label: null"
        )
    return RuleProbe(len(samples), tuple(names), tuple(problems))


class PrometheusSource:
    """A Source reading each rule's PromQL from Prometheus, selectors injected as matchers."""

    def __init__(self, client: PrometheusClient) -> None:
        self.client = client
        self._series: dict[str, int] = {}  # query -> series it returned last time

    def describe(self) -> str:
        return f"Prometheus at {self.client.url}"

    def fetch_range(
        self, rule: Rule, start: int, end: int, selector: LabelSelector = EVERYTHING
    ) -> list[RangeSeries]:
        """Chunked by time so that no answer exceeds the client's point budget: the number
        of series is known from the previous fetch, or learnt from the newest step first."""
        query = promql.render(rule.query, selector)
        count = self._series.get(query)
        if count is None and end - start >= 2 * rule.step:
            count = len(self.client.query_range(query, end, end, rule.step, phase=rule.phase))
        found = self.client.query_range(
            query, start, end, rule.step, series=count or 1, phase=rule.phase
        )
        self._series[query] = len(found)
        return found

    def fetch_current(self, rule: Rule, selector: LabelSelector, at: float) -> list[InstantSample]:
        samples = self.client.query(promql.render(rule.query, selector), at)
        return [s for s in samples if is_rate(s.value)]
