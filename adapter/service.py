"""The composition root: a source, the forecast cycle, the store, the provider and the app
built as one service, whose long-lived parts start from one list and stop in reverse."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, GCCollector, ProcessCollector

from adapter.forward import Forwarder
from adapter.metrics import ServerMetrics
from adapter.provider import Check
from adapter.provider.forecast import ForecastProvider
from adapter.server.app import create_app
from forecaster.config import CurrentConfig, ForwardConfig, PrometheusConfig, Rule
from forecaster.runtime.current import CurrentValues
from forecaster.runtime.cycle import ForecastCycle
from forecaster.runtime.demand import SeriesDemand
from forecaster.runtime.fitting import FitPool
from forecaster.runtime.scheduler import Jobs
from forecaster.runtime.serving import ServingView
from forecaster.runtime.store import ForecastStore
from forecaster.runtime.telemetry import SeriesCollector, Telemetry
from forecaster.sources.base import Source
from forecaster.sources.prometheus import PrometheusClient, PrometheusSource
from forecaster.sources.trace import DEMO_LABELS, TraceSource, demo_trace

log = logging.getLogger("scaleahead")

DEMO_RULE = Rule(
    name="http_requests_forecast",
    query="sum by (namespace, service) (rate(http_requests_total{<<.LabelMatchers>>}[1m]))",
)
"""The rule served without a configuration file, over the bundled NASA-HTTP trace."""


class Part(Protocol):
    """A long-lived part of the service: started once, stopped once."""

    def start(self) -> object: ...

    def stop(self) -> object: ...


@dataclass
class Service:
    """Every long-lived part of a running scaleahead, built from the same inputs. `parts`
    start in their order and stop in the reverse one; the background jobs come first."""

    rules: list[Rule]
    source: Source
    store: ForecastStore
    current: CurrentValues
    current_config: CurrentConfig
    cycle: ForecastCycle
    provider: ForecastProvider
    registry: CollectorRegistry
    telemetry: Telemetry
    metrics: ServerMetrics
    demand: SeriesDemand
    jobs: Jobs
    app: FastAPI
    clock: Callable[[], float]
    parts: list[Part] = field(default_factory=list)

    def start(self) -> None:
        """Start every part, in order."""
        for part in self.parts:
            part.start()

    def stop(self) -> None:
        """Stop every part, the last started first; work in flight is abandoned. A part
        that fails to stop is logged and the others still stop."""
        for part in reversed(self.parts):
            try:
                part.stop()
            except Exception:
                log.exception("stopping %s failed", type(part).__name__)


def build_service(
    rules: list[Rule],
    source_factory: Callable[[Telemetry], Source],
    clock: Callable[[], float],
    current_config: CurrentConfig | None = None,
    forward: ForwardConfig | None = None,
    fit_workers: int = 0,
) -> Service:
    """Assemble the service; `source_factory` gets the telemetry to report queries to;
    `forward` names the server that answers the external metrics no rule serves; the
    refits run in `fit_workers` processes (0: in this one)."""
    current_config = current_config or CurrentConfig()
    registry = CollectorRegistry()
    GCCollector(registry=registry)  # python_gc_*: full collections pause serving
    ProcessCollector(registry=registry)  # process_*: CPU, RSS, open files
    telemetry = Telemetry(registry, [r.name for r in rules])
    metrics = ServerMetrics(registry)
    source = source_factory(telemetry)
    store = ForecastStore()
    current = CurrentValues(rules, source, clock, current_config.max_age, current_config.interval)
    view = ServingView(store, current, clock)
    demand = SeriesDemand(rules)
    pool = FitPool(fit_workers, telemetry.fit_worker_restarts.inc) if fit_workers else None
    cycle = ForecastCycle(
        rules,
        source,
        store,
        telemetry=telemetry,
        demand=demand,
        prepare_many=pool.prepare_many if pool else None,
    )
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
        metrics,
        demand,
        jobs,
        app,
        clock,
        parts=[pool, jobs] if pool else [jobs],
    )


def prometheus_source(config: PrometheusConfig) -> Callable[[Telemetry], Source]:
    """A source factory for the configured Prometheus."""

    def factory(telemetry: Telemetry) -> Source:
        return PrometheusSource(PrometheusClient(config, observer=telemetry.observe_query))

    return factory


def demo_source(_: Telemetry) -> Source:
    """The bundled trace, looped so that any clock time falls inside it."""
    return TraceSource(demo_trace(), DEMO_LABELS, loop=True)
