"""Forecasting half of scaleahead: Prometheus history in, per-series QPS forecasts out.

Knows nothing of HTTP serving or of the Kubernetes API; usable alone as a library. The
packages follow the data flow: `sources` (Prometheus, traces, a fake) → `models` (the
engine and the cold-start ladder) → `runtime` (history, cycle, store, scheduler,
telemetry) → `evaluation` (backtest, baselines, HPA simulator). Below them all, importing
nothing above them: `config`, `times`, `selector`, `promql`, `schedules`, `forecast` and
`policy` (the serving policy every stage calls).

The public names below are imported on first use, so that `import forecaster.config`
does not load the models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "Config": "forecaster.config",
    "ConfigError": "forecaster.config",
    "PrometheusConfig": "forecaster.config",
    "Rule": "forecaster.config",
    "load_config": "forecaster.config",
    "ForecastEngine": "forecaster.models",
    "Served": "forecaster.policy",
    "ServingPolicy": "forecaster.policy",
    "lead_window": "forecaster.policy",
    "serve": "forecaster.policy",
    "ForecastCycle": "forecaster.runtime.cycle",
    "ForecastStore": "forecaster.runtime.store",
    "SeriesForecast": "forecaster.forecast",
    "LabelSelector": "forecaster.selector",
    "SelectorError": "forecaster.selector",
    "parse_selector": "forecaster.selector",
    "FakeSource": "forecaster.sources.fake",
    "InstantSample": "forecaster.sources.base",
    "RangeSeries": "forecaster.sources.base",
    "Source": "forecaster.sources.base",
    "SourceError": "forecaster.sources.base",
    "PrometheusClient": "forecaster.sources.prometheus",
    "PrometheusSource": "forecaster.sources.prometheus",
    "Trace": "forecaster.sources.trace",
    "TraceSource": "forecaster.sources.trace",
    "read_trace": "forecaster.sources.trace",
}

__all__ = [
    "Config",
    "ConfigError",
    "FakeSource",
    "ForecastCycle",
    "ForecastEngine",
    "ForecastStore",
    "InstantSample",
    "LabelSelector",
    "PrometheusClient",
    "PrometheusConfig",
    "PrometheusSource",
    "RangeSeries",
    "Rule",
    "SelectorError",
    "SeriesForecast",
    "Served",
    "ServingPolicy",
    "Source",
    "SourceError",
    "Trace",
    "TraceSource",
    "lead_window",
    "load_config",
    "parse_selector",
    "read_trace",
    "serve",
]

if TYPE_CHECKING:
    from forecaster.config import Config, ConfigError, PrometheusConfig, Rule, load_config
    from forecaster.forecast import SeriesForecast
    from forecaster.models import ForecastEngine
    from forecaster.policy import Served, ServingPolicy, lead_window, serve
    from forecaster.runtime.cycle import ForecastCycle
    from forecaster.runtime.store import ForecastStore
    from forecaster.selector import LabelSelector, SelectorError, parse_selector
    from forecaster.sources.base import InstantSample, RangeSeries, Source, SourceError
    from forecaster.sources.fake import FakeSource
    from forecaster.sources.prometheus import PrometheusClient, PrometheusSource
    from forecaster.sources.trace import Trace, TraceSource, read_trace


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'forecaster' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
