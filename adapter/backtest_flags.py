"""The flags of `scaleahead backtest`, and how their values are read into the options
it runs with. Every default shown is read from the options object it fills."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from adapter.errors import UsageError
from adapter.flags import flag_seconds, optional_path
from forecaster.config import check_quantile
from forecaster.evaluation.hpa_sim import HPASettings
from forecaster.times import format_duration, parse_rfc3339

if TYPE_CHECKING:
    from forecaster.evaluation.command import BacktestOptions


def _time(flag: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError as err:
        raise UsageError(f"{flag}: {err}") from None


def _share(flag: str, text: str | None) -> float | None:
    """A share given as 0.7 or 70%, above 0 and at most 1."""
    if text is None:
        return None
    body = text.strip()
    try:
        value = float(body[:-1]) / 100 if body.endswith("%") else float(body)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:
        raise UsageError(f"{flag}: expected a utilization such as 70% or 0.7, got {text!r}")
    return value


def _quantiles(flag: str, text: str | None) -> tuple[float, ...]:
    """Comma-separated quantiles, each one a rule could serve at, ascending."""
    if text is None:
        return ()
    out = []
    for part in text.split(","):
        try:
            q = float(part)
        except ValueError:
            raise UsageError(f"{flag}: expected numbers like 0.5,0.9, got {part!r}") from None
        try:
            out.append(check_quantile(q))
        except ValueError as err:
            raise UsageError(f"{flag}: {part.strip()}: {err}") from None
    return tuple(sorted(set(out)))


_HPA_FLAGS = {
    "min_replicas": "spec.minReplicas",
    "max_replicas": "spec.maxReplicas",
    "tolerance": "the controller's --horizontal-pod-autoscaler-tolerance",
    "sync_period": "the controller's --horizontal-pod-autoscaler-sync-period",
    "scale_down_stabilization": (
        "behavior.scaleDown.stabilizationWindowSeconds (a budget is costed through it)"
    ),
    "scale_up_pods": "behavior.scaleUp policy: pods added per period",
    "scale_up_percent": "behavior.scaleUp policy: percent added per period",
    "scale_up_period": "behavior.scaleUp policies' periodSeconds",
}
"""The simulated HPA's flags: each an HPASettings field, and what it stands for."""


_HPA_DURATIONS = ("sync_period", "scale_down_stabilization", "scale_up_period")


def backtest_flags(b: argparse.ArgumentParser) -> None:
    b.add_argument("--csv", help="timestamp,value CSV of counts per interval")
    b.add_argument(
        "--demo",
        action="store_true",
        help="replay the bundled trace (two weeks of NASA-HTTP, July 1995) instead",
    )
    b.add_argument("--config", help="configuration file (with --metric and --selector)")
    b.add_argument("--metric", help="the rule (external metric) to replay")
    b.add_argument("--selector", help="label selector picking one series")
    b.add_argument(
        "--from",
        dest="from_",
        help="RFC 3339 start of the scored range "
        "(default: 7 days before --to); earlier data is history",
    )
    b.add_argument("--to", help="RFC 3339 end of the scored range (default: end of data)")
    b.add_argument(
        "--lead",
        help="pod start-up delay (default: the rule's; 3m rounded up to whole steps)",
    )
    b.add_argument(
        "--quantile",
        type=float,
        help="share of lead windows whose peak the served value covers, the same for every "
        "series (default: the rule's)",
    )
    b.add_argument(
        "--max-pod-minutes",
        type=float,
        help="instead of --quantile: the pod-minutes, as a multiple of perfect foresight's, "
        "each series' quantile is chosen to cost (default: the rule's; 1.1 by default)",
    )
    b.add_argument(
        "--quantiles",
        help="comma-separated quantiles (e.g. 0.5,0.7,0.8,0.9,0.95) to replay at too: the "
        "table gains the trade-off curve, and says which baselines it dominates",
    )
    b.add_argument("--tradeoff", help="PNG of the --quantiles curve, with each baseline")
    b.add_argument(
        "--schedules",
        help="YAML with schedules and/or events (as in a rule) to apply; also scored without",
    )
    b.add_argument("--output", help="per-step CSV (columns: see docs/backtest.md)")
    b.add_argument("--plot", help="PNG picture of demand, forecast and capacity")
    b.add_argument("--json", help="summary as JSON")
    g = b.add_argument_group("simulated HPA (Kubernetes defaults)")
    g.add_argument(
        "--capacity-per-pod",
        type=float,
        help="req/s one pod serves (default: the range's p99 demand / 10)",
    )
    g.add_argument(
        "--target-per-pod", type=float, help="AverageValue target (default: the capacity per pod)"
    )
    g.add_argument(
        "--cpu-target",
        help="also score a CPU Resource metric at this utilization (e.g. 70%% or 0.7), "
        "alone and beside scaleahead's value (the layered HPA)",
    )
    for name, what in _HPA_FLAGS.items():
        default = getattr(HPASettings, name)
        flag = "--" + name.replace("_", "-")
        if name in _HPA_DURATIONS:
            g.add_argument(flag, default=format_duration(default), help=what)
        else:
            g.add_argument(flag, type=type(default), default=default, help=what)


def backtest_options(args: argparse.Namespace) -> BacktestOptions:
    """The `backtest` flags as options; UsageError naming a flag that cannot be read."""
    from forecaster.evaluation.command import BacktestOptions

    hpa = {name: getattr(args, name) for name in _HPA_FLAGS}
    for name in _HPA_DURATIONS:
        hpa[name] = flag_seconds("--" + name.replace("_", "-"), hpa[name])
    return BacktestOptions(
        lead=None if args.lead is None else flag_seconds("--lead", args.lead),
        csv=optional_path(args.csv),
        demo=args.demo,
        quantiles=_quantiles("--quantiles", args.quantiles),
        tradeoff=optional_path(args.tradeoff),
        config=optional_path(args.config),
        metric=args.metric,
        selector=args.selector,
        start=_time("--from", args.from_),
        end=_time("--to", args.to),
        quantile=args.quantile,
        max_pod_minutes=args.max_pod_minutes,
        output=optional_path(args.output),
        plot=optional_path(args.plot),
        json=optional_path(args.json),
        capacity_per_pod=args.capacity_per_pod,
        target_per_pod=args.target_per_pod,
        schedules=optional_path(args.schedules),
        cpu_target=_share("--cpu-target", args.cpu_target),
        hpa=hpa,
    )
