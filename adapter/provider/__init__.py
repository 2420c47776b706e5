"""What the API asks of whatever computes the values, as kubernetes-sigs/
custom-metrics-apiserver separates its provider interface from the API plumbing: the
interface here, scaleahead's provider in `forecast`, an in-memory one in `fake`.

The API layer asks a provider; it never builds PromQL nor reads forecasts itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from forecaster.selector import LabelSelector


@dataclass(frozen=True)
class MetricValue:
    """One item of an ExternalMetricValueList."""

    metric: str
    labels: dict[str, str]
    timestamp: float
    value: float


@dataclass(frozen=True)
class Check:
    """One line of /readyz or /livez: a named check, whether it passed, and why. A
    `degraded` check passes (it does not make the process unready or dead) but says
    that what it watches is unhealthy."""

    name: str
    ok: bool
    detail: str = ""
    degraded: bool = False


class ExternalMetricsProvider(Protocol):
    """What the external metrics API needs from whatever computes the values. Every
    method is called on the server's event loop: answer from memory, never block."""

    def metric_names(self) -> list[str]:
        """Every external metric served."""
        ...

    def values(self, namespace: str, metric: str, selector: LabelSelector) -> list[MetricValue]:
        """One value per matching series; raise NotFound or Unavailable, never return []."""
        ...

    def readiness(self) -> list[Check]:
        """One check per thing the provider serves; ready when all pass. A check fails
        only while this process cannot answer yet; a data source's outage is a
        `degraded` check, since readiness must not follow it (an aggregated APIService
        with no ready endpoint breaks discovery cluster-wide)."""
        ...
