"""An in-memory provider, in the spirit of custom-metrics-apiserver's pkg/provider/fake:
values set by hand, errors injected per metric, every question recorded. The API and
the KEDA scaler are tested against it; it also serves a demo with no forecaster."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from adapter.errors import NotFound, StatusError
from adapter.provider import Check, MetricValue
from forecaster.selector import LabelSelector


class FakeProvider:
    """Serves `series`: metric name -> [(labels, value)]. A series is in a namespace when
    its `namespace_label` says so (None: in every namespace). `failing` maps a metric to
    the error every question about it raises; `checks` is what readiness answers.
    `asked` records every (namespace, metric, selector) asked. Thread-safe."""

    def __init__(
        self,
        series: Mapping[str, list[tuple[dict[str, str], float]]] | None = None,
        *,
        namespace_label: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.series: dict[str, list[tuple[dict[str, str], float]]] = dict(series or {})
        self.namespace_label = namespace_label
        self.clock = clock
        self.failing: dict[str, StatusError] = {}
        self.checks: list[Check] = []
        self.asked: list[tuple[str, str, LabelSelector]] = []
        self._lock = threading.Lock()

    def set(self, metric: str, labels: dict[str, str], value: float) -> None:
        """Serve `value` for the series of `metric` with these labels (added or replaced)."""
        with self._lock:
            rows = [(lab, v) for lab, v in self.series.get(metric, []) if lab != labels]
            self.series[metric] = [*rows, (dict(labels), value)]

    def metric_names(self) -> list[str]:
        with self._lock:
            return list(self.series)

    def values(self, namespace: str, metric: str, selector: LabelSelector) -> list[MetricValue]:
        with self._lock:
            self.asked.append((namespace, metric, selector))
            error = self.failing.get(metric)
            rows = self.series.get(metric)
        if error is not None:
            raise error
        if rows is None:
            raise NotFound(f'external metric "{metric}" is not served here')
        now = self.clock()
        found = [
            MetricValue(metric, labels, now, value)
            for labels, value in rows
            if selector.matches(labels)
            and (self.namespace_label is None or labels.get(self.namespace_label) == namespace)
        ]
        if not found:
            raise NotFound(
                f'no series of external metric "{metric}" in namespace "{namespace}" '
                f'matches the selector "{selector}"'
            )
        return found

    def readiness(self) -> list[Check]:
        with self._lock:
            return list(self.checks)
