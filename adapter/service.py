"""Wiring: a source, the forecast cycle, the store, the provider and the app, as one service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from adapter.api import create_app
from adapter.metrics import SeriesCollector
from adapter.provider import ForecastProvider
from forecaster.config import PrometheusConfig, Rule
from forecaster.cycle import ForecastCycle
from forecaster.prometheus import PrometheusClient, PrometheusSource
from forecaster.replay import DEMO_LABELS, TraceSource, demo_trace
from forecaster.source import Source
from forecaster.store import ForecastStore
from forecaster.telemetry import Telemetry

DEMO_RULE = Rule(
    name="http_requests_forecast",
    query="sum by (namespace, service) (rate(http_requests_total{<<.LabelMatchers>>}[1m]))",
)
"""The rule served without a configuration file, over the bundled NASA-HTTP trace."""


@dataclass
class Service:
    """Every long-lived part of a running scaleahead, built from the same inputs."""

    rules: list[Rule]
    source: Source
    store: ForecastStore
    cycle: ForecastCycle
    provider: ForecastProvider
    registry: CollectorRegistry
    telemetry: Telemetry
    app: FastAPI


def build_service(
    rules: list[Rule],
    source_factory: Callable[[Telemetry], Source],
    clock: Callable[[], float],
) -> Service:
    """Assemble the service; `source_factory` gets the telemetry to report queries to."""
    registry = CollectorRegistry()
    telemetry = Telemetry(registry)
    source = source_factory(telemetry)
    store = ForecastStore()
    cycle = ForecastCycle(rules, source, store, telemetry=telemetry)
    provider = ForecastProvider(rules, source, store, clock, telemetry)
    registry.register(SeriesCollector(rules, store, clock))
    app = create_app(provider, registry)
    return Service(rules, source, store, cycle, provider, registry, telemetry, app)


def prometheus_source(config: PrometheusConfig) -> Callable[[Telemetry], Source]:
    """A source factory for the configured Prometheus."""

    def factory(telemetry: Telemetry) -> Source:
        return PrometheusSource(PrometheusClient(config, observer=telemetry.observe_query))

    return factory


def demo_source(_: Telemetry) -> Source:
    """The bundled trace, looped so that any clock time falls inside it."""
    return TraceSource(demo_trace(), DEMO_LABELS, loop=True)
