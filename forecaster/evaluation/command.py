"""The `scaleahead backtest` command: options in; the table, CSV, JSON and plot out."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from pydantic import ValidationError

from forecaster.config import (
    ConfigError,
    Rule,
    describe_validation_error,
    load_config,
    read_yaml,
)
from forecaster.evaluation.backtest import replay
from forecaster.evaluation.hpa_sim import HPASettings
from forecaster.evaluation.recorded import BacktestError, RangeError, RecordedSource, record
from forecaster.evaluation.report import (
    plot,
    plot_tradeoff,
    summary,
    table,
    write_csv,
    write_json,
)
from forecaster.evaluation.scoring import Judge, default_capacity, score, sweep
from forecaster.models.series_model import DEFAULT_STABILIZATION
from forecaster.selector import EVERYTHING, LabelSelector, SelectorError, parse_selector
from forecaster.sources.base import Source, SourceError
from forecaster.sources.prometheus import PrometheusClient, PrometheusSource
from forecaster.sources.trace import (
    DEMO_TRACE,
    Trace,
    TraceError,
    TraceSource,
    demo_trace,
    read_trace,
)
from forecaster.times import DAY


@dataclass(frozen=True)
class BacktestOptions:
    """What to replay and how to score it (the command's flags, parsed)."""

    lead: int | None = None  # seconds; default: the rule's
    csv: Path | None = None
    config: Path | None = None
    metric: str | None = None
    selector: str | None = None
    start: int | None = None  # Unix seconds; default: 7 days before `end`
    end: int | None = None  # Unix seconds; default: the end of the data (or now)
    quantile: float | None = None
    max_pod_minutes: float | None = None  # a budget instead (default: the rule's)
    output: Path | None = None
    plot: Path | None = None
    json: Path | None = None
    capacity_per_pod: float | None = None  # default: the range's p99 demand / 10
    target_per_pod: float | None = None  # default: the capacity per pod
    hpa: dict[str, float] = field(default_factory=dict)  # other HPASettings, by name
    schedules: Path | None = None  # YAML with `schedules` and/or `events`, as in a rule
    cpu_target: float | None = None  # also score HPAs with a CPU metric at this utilization
    demo: bool = False  # replay the bundled trace (no --csv, --config needed)
    quantiles: tuple[float, ...] = ()  # also replay at each: the trade-off curve
    tradeoff: Path | None = None  # PNG of the curve, with each baseline as a point


def _schedules(path: Path) -> dict[str, object]:
    """A --schedules file: a mapping with `schedules` and/or `events`, as in a rule."""
    try:
        data = read_yaml(path)
    except ConfigError as err:
        raise BacktestError(f"--schedules {err}") from None
    if not isinstance(data, dict) or not data or set(data) - {"schedules", "events"}:
        raise BacktestError(
            f"--schedules {path}: expected a mapping with the keys schedules and/or events, "
            "written as in a rule of the configuration"
        )
    return {"schedules": [], "events": [], **data}


def _rule_and_source(options: BacktestOptions) -> tuple[Rule, Source, LabelSelector, int]:
    """The rule to replay, where its history comes from, the selector, and the end."""
    overrides: dict[str, object] = {} if options.lead is None else {"lead": options.lead}
    if options.quantile is not None and options.max_pod_minutes is not None:
        raise BacktestError("give --quantile or --max-pod-minutes, not both")
    if options.quantile is not None:
        overrides |= {"quantile": options.quantile, "max_pod_minutes": None}
    if options.max_pod_minutes is not None:
        overrides |= {"quantile": None, "max_pod_minutes": options.max_pod_minutes}
    if options.schedules is not None:
        overrides |= _schedules(options.schedules)
    source_name = str(options.schedules) if options.schedules is not None else "backtest flags"
    try:
        if options.csv is not None or options.demo:
            if (
                options.config
                or options.metric
                or options.selector
                or (options.csv and options.demo)
            ):
                flag = "--demo" if options.demo else "--csv"
                raise BacktestError(f"{flag} replaces --csv, --config, --metric and --selector")
            trace, name = (
                (demo_trace(), DEMO_TRACE)
                if options.csv is None
                else (read_trace(options.csv), options.csv.name)
            )
            base = {
                "name": "backtest",
                "query": "csv{<<.LabelMatchers>>}",
                "step": trace.resolution,
                "phase": trace.phase,
                "history": "15d",
            }
            warning = rates_warning(trace, name)
            if warning:
                print(warning, file=sys.stderr)
            rule = Rule.model_validate({**base, **overrides})
            source: Source = TraceSource(trace, {"csv": name})
            return rule, source, EVERYTHING, trace.end if options.end is None else options.end
        if not (options.config and options.metric):
            raise BacktestError("give --csv FILE, or --config FILE with --metric NAME")
        config = load_config(options.config)
        found = config.rule(options.metric)
        if found is None:
            raise BacktestError(
                f"--metric {options.metric}: no such rule in {options.config} "
                f"(rules: {', '.join(r.name for r in config.rules)})"
            )
        rule = found.changed(**overrides)
        try:
            selector = parse_selector(options.selector)
        except SelectorError as err:
            raise BacktestError(f"--selector: {err}") from None
        source = PrometheusSource(PrometheusClient(config.prometheus))
        return rule, source, selector, int(time.time()) if options.end is None else options.end
    except ValidationError as err:
        raise BacktestError(describe_validation_error(source_name, err)) from None
    except TraceError as err:
        raise BacktestError(str(err)) from None


def rates_warning(trace: Trace, name: str) -> str | None:
    """A warning when most of a CSV's values have fractions, as rates do: counts of
    requests per interval are whole numbers."""
    values = trace.counts[np.isfinite(trace.counts)]
    if not values.size or np.mean(values != np.round(values)) <= 0.5:
        return None
    return (
        f"warning: {name}: most values have fractions; --csv expects counts per interval "
        f"(requests in each {trace.resolution} s). If these are rates per second, multiply "
        f"them by {trace.resolution}: the capacity and pod-minutes depend on it"
    )


T = TypeVar("T")


def _progress(items: Sequence[T], phase: str) -> Iterable[T]:
    """A progress bar over one phase's items, on stderr when it is a terminal."""
    from tqdm import tqdm

    return tqdm(
        items,
        desc=phase,
        total=len(items),
        file=sys.stderr,
        disable=None,
        mininterval=0.5,
        leave=False,
    )


def run(options: BacktestOptions) -> None:
    """Record, replay, score and report; raise BacktestError (or ConfigError) with a
    message for the user."""
    for flag, wanted in (("--plot", options.plot), ("--tradeoff", options.tradeoff)):
        if wanted is not None and importlib.util.find_spec("matplotlib") is None:
            raise BacktestError(f"{flag} needs matplotlib: pip install 'scaleahead[backtest]'")
    if options.tradeoff is not None and not options.quantiles:
        raise BacktestError("--tradeoff draws the curve of --quantiles: give them too")
    rule, source, selector, end = _rule_and_source(options)
    start = end - 7 * DAY if options.start is None else options.start
    try:
        recorded: RecordedSource = record(source, rule, selector, start, end)
    except SourceError as err:
        raise BacktestError(str(err)) from None
    except RangeError as err:
        raise BacktestError(f"--from/--to: {err}") from None
    started = time.perf_counter()
    # A budget is costed through the HPA the flags describe, as in a cluster through the
    # HPAs that read the series.
    window = int(options.hpa.get("scale_down_stabilization", DEFAULT_STABILIZATION))
    result = replay(rule, recorded, start, end, _progress, stabilization=window)
    seconds = time.perf_counter() - started
    capacity = options.capacity_per_pod or default_capacity(result.actual)
    hpa = HPASettings(
        target_per_pod=options.target_per_pod or capacity,
        capacity_per_pod=capacity,
        startup=rule.lead,
        **options.hpa,  # type: ignore[arg-type]
    )
    scores = score(result, hpa, options.cpu_target, _progress)
    curve = sweep(recorded, start, end, options.quantiles, Judge(result, hpa), _progress)
    data = summary(result, scores, seconds, curve)
    print(table(data))
    if options.output:
        write_csv(options.output, result)
    if options.json:
        write_json(options.json, data)
    if options.plot:
        plot(options.plot, result, scores)
    if options.tradeoff:
        plot_tradeoff(options.tradeoff, data)


__all__ = ["BacktestError", "BacktestOptions", "run"]
