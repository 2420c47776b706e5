"""Backtest outputs: the per-step CSV (a stable contract), the summary table, JSON, a plot."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from forecaster.evaluation.backtest import Replay
from forecaster.evaluation.scoring import MethodScore, Scores
from forecaster.evaluation.verdict import dominated, verdict
from forecaster.times import rfc3339

CSV_COLUMNS = [
    "timestamp",
    "actual",
    "served",
    "forecast_lead",
    "forecast_lead_upper",
    "schedule_floor",
]
"""Per-step CSV columns; see docs/backtest.md. Add columns only at the end."""


def _num(v: float) -> str:
    return "" if not math.isfinite(v) else f"{v:.6f}"


def write_csv(path: Path, r: Replay) -> None:
    """One row per grid point t: rates in requests per second; empty where unknown."""
    k = r.lead_index
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for i, t in enumerate(r.times):
            w.writerow(
                [
                    rfc3339(int(t)),
                    _num(r.actual[i]),
                    _num(r.served[i]),
                    _num(r.point[i, k]),
                    _num(r.upper[i, k]),
                    _num(r.floor[i]),
                ]
            )


def summary(
    r: Replay, s: Scores, seconds: float, curve: list[MethodScore] | None = None
) -> dict[str, Any]:
    """Everything the table, the JSON and a caller need."""
    swept = [m.summary(s.bound) for m in curve or []]
    methods = [m.summary(s.bound) for m in s.methods]
    if swept:
        for m in methods:
            m["dominated_by"] = dominated(m, swept)
    data = {
        "range": {
            "from": rfc3339(int(r.times[0])),
            "to": rfc3339(int(r.times[-1])),
            "steps": len(r.times),
            "step_seconds": r.rule.step,
        },
        "lead_seconds": r.rule.lead,
        "quantile": r.rule.quantile,
        "max_pod_minutes": r.rule.budget,
        "quantile_setting": r.rule.quantile_setting,
        "quantile_held": _held(r),
        "replay_seconds": round(seconds, 2),
        "predictive_share": float(np.mean(r.predictive)),
        "schedules": {
            "names": r.rule.calendar.names if r.rule.calendar is not None else [],
            "active_share": float(np.mean(np.isfinite(r.floor))),
            "lifted_share": float(np.mean(r.served > r.before_floors)),
        },
        "models": dict(sorted(r.models.items(), key=lambda kv: -kv[1])),
        "hpa": {k: getattr(s.hpa, k) for k in s.hpa.__dataclass_fields__},
        "curve": swept,
        "methods": [
            *methods,
            {
                "method": "perfect foresight",
                "beyond_capacity_share": s.bound.beyond_capacity_share,
                "underprovisioned_share": s.bound.underprovisioned_share,
                "pod_minutes": s.bound.pod_minutes,
                "pod_minutes_vs_bound": 1.0,
            },
        ],
    }
    data["verdict"] = verdict(data)
    return data


def _held(r: Replay) -> dict[str, float] | None:
    """The quantiles scaleahead's fresh forecasts stood for: mean, least and most."""
    q = r.quantile[r.predictive]
    if not q.size:
        return None
    return {"mean": float(q.mean()), "min": float(q.min()), "max": float(q.max())}


def quantile_words(data: dict[str, Any]) -> str:
    """How the replay's quantile was set and, under a budget, what it bought."""
    held = data["quantile_held"]
    if data["max_pod_minutes"] is None or held is None:
        return data["quantile_setting"]
    bought = f"q {held['min']:.2f}..{held['max']:.2f}, mean {held['mean']:.3f}"
    return f"{data['quantile_setting']} (bought {bought})"


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def table(data: dict[str, Any]) -> str:
    """The summary as a fixed-width table for the terminal."""

    def f(v: Any, pct: bool = False, digits: int = 4) -> str:
        if v is None:
            return "-"
        return f"{v * 100:.2f}%" if pct else f"{v:.{digits}f}"

    rng = data["range"]
    hpa = data["hpa"]
    rows = data["methods"][:-1] + data["curve"] + data["methods"][-1:]
    width = max(18, *(len(m["method"]) for m in rows))
    lines = [
        f"backtest {rng['from']} .. {rng['to']} ({rng['steps']} steps of {rng['step_seconds']}s),"
        f" lead {data['lead_seconds']}s, {quantile_words(data)}, replayed in "
        f"{data['replay_seconds']}s",
        f"HPA: target {hpa['target_per_pod']:.4g}/pod, capacity {hpa['capacity_per_pod']:.4g}"
        f"/pod, startup {hpa['startup']}s, replicas {hpa['min_replicas']}..{hpa['max_replicas']},"
        f" tolerance {hpa['tolerance']}, scale-down window {hpa['scale_down_stabilization']}s",
        "",
        f"{'method':{width}s} {'MAE@lead':>9s} {'MASE':>6s} {'MAE(h)':>8s} {'cover':>7s} "
        f"{'pinball':>8s} {'servedMAE':>9s} {'beyond cap':>10s} {'under-prov':>10s} "
        f"{'pod-min':>9s} {'/bound':>7s}",
    ]
    for m in rows:
        lines.append(
            f"{m['method']:{width}s} {f(m.get('mae_lead')):>9s} "
            f"{f(m.get('mase_lead'), digits=3):>6s} "
            f"{f(m.get('mae_horizon')):>8s} {f(m.get('coverage'), pct=True):>7s} "
            f"{f(m.get('pinball')):>8s} "
            f"{f(m.get('served_mae')):>9s} {f(m['beyond_capacity_share'], pct=True):>10s} "
            f"{f(m['underprovisioned_share'], pct=True):>10s} {m['pod_minutes']:9.0f} "
            f"{f(m['pod_minutes_vs_bound'], digits=3):>7s}"
        )
    if data["curve"]:
        lines.append("")
        for m in data["methods"][:-1]:
            if "dominated_by" in m and not m["method"].startswith("scaleahead"):
                by = m["dominated_by"]
                lines.append(f"{m['method']}: " + (f"dominated by {by}" if by else "not dominated"))
    top = ", ".join(
        f"{k} {v / rng['steps'] * 100:.0f}%" for k, v in list(data["models"].items())[:3]
    )
    lines += [
        "",
        f"models: {top}; a fresh forecast was served {data['predictive_share'] * 100:.1f}%"
        " of the time",
    ]
    if data["verdict"]:
        lines += ["", data["verdict"]]
    sched = data["schedules"]
    if sched["names"]:
        lines.append(
            f"schedules: {', '.join(sched['names'])}; active "
            f"{sched['active_share'] * 100:.1f}% of the time, lifting the served value "
            f"{sched['lifted_share'] * 100:.1f}%"
        )
    return "\n".join(lines)


def _bins(x: np.ndarray, size: int, how: str) -> np.ndarray:
    n = len(x) // size * size
    chunks = x[:n].reshape(-1, size)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if how == "max":
            return np.nanmax(chunks, axis=1)
        if how == "min":
            return np.nanmin(chunks, axis=1)
        return np.nanmean(chunks, axis=1)


def plot(path: Path, r: Replay, s: Scores) -> None:
    """Demand, the forecast band at the lead, and the Ready capacity of the reactive and
    the predictive HPA (binned to about a thousand points: demand at its peak, capacity
    at its lowest within each bin); below, the requests beyond capacity, cumulative."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    k = r.lead_index
    size = max(1, len(r.times) // 1000)
    when = _bins((r.times - r.rule.step).astype(np.float64), size, "min").astype("datetime64[s]")
    by = {m.name: m.hpa for m in s.methods}
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(15, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    # The forecast made at t for the step starting at t + lead, drawn at that step.
    lead = k  # steps
    point = np.concatenate([np.full(lead, np.nan), r.point[: len(r.times) - lead, k]])
    upper = np.concatenate([np.full(lead, np.nan), r.upper[: len(r.times) - lead, k]])
    top.fill_between(
        when,
        _bins(point, size, "mean"),
        _bins(upper, size, "mean"),
        color="tab:orange",
        alpha=0.35,
        lw=0,
        label="forecast at the lead: median .. upper band",
    )
    top.plot(
        when, _bins(r.actual, size, "max"), color="black", lw=0.7, label="demand (peak per bin)"
    )
    per_step = len(by["reactive"].times) // len(r.times)
    for name, color, label in (
        ("reactive", "tab:red", "reactive HPA"),
        ("scaleahead", "tab:blue", "predictive HPA (scaleahead)"),
    ):
        ready = by[name].ready.reshape(-1, per_step).min(axis=1) * s.hpa.capacity_per_pod
        top.plot(
            when,
            _bins(ready.astype(np.float64), size, "min"),
            color=color,
            lw=1.1,
            label=f"Ready capacity, {label} (lowest per bin)",
        )
    top.set_ylabel("requests per second")
    top.legend(loc="upper left", fontsize=8, ncol=2)
    top.grid(alpha=0.3)
    for name, color in (
        ("reactive", "tab:red"),
        ("holt-winters", "tab:green"),
        ("scaleahead", "tab:blue"),
    ):
        h = by[name]
        demand = np.repeat(np.where(np.isfinite(r.actual), r.actual, 0.0), per_step)
        lost = np.maximum(0.0, demand - h.ready * s.hpa.capacity_per_pod) * s.hpa.sync_period
        label = f"{name}: {h.beyond_capacity_share * 100:.2f}% of requests"
        bottom.plot(
            h.times.astype("datetime64[s]"), np.cumsum(lost), color=color, lw=1.2, label=label
        )
    bottom.set_ylabel("requests beyond\nReady capacity")
    bottom.legend(loc="upper left", fontsize=8)
    bottom.grid(alpha=0.3)
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %b\n%H:%M"))
    fig.suptitle(
        f"scaleahead backtest: pod start-up {r.rule.lead // 60} min, "
        f"{r.rule.quantile_setting}, "
        f"bins of {size * r.rule.step // 60} min",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_tradeoff(path: Path, data: dict[str, Any]) -> None:
    """Requests beyond Ready capacity against pod-minutes (over perfect foresight's): the
    curve of the quantiles swept, each labelled, and every other method as a point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    curve = data["curve"]
    xs = [m["pod_minutes_vs_bound"] for m in curve]
    ys = [m["beyond_capacity_share"] * 100 for m in curve]
    ax.plot(xs, ys, "o-", color="tab:blue", label="scaleahead, by quantile")
    for m, x, y in zip(curve, xs, ys, strict=True):
        ax.annotate(m["method"].split()[-1], (x, y), textcoords="offset points", xytext=(5, 4))
    markers = iter("sD^vPX<>")
    for m in data["methods"]:
        if m["pod_minutes_vs_bound"] is None:
            continue
        default = m["method"] == "scaleahead"
        ax.plot(
            m["pod_minutes_vs_bound"],
            m["beyond_capacity_share"] * 100,
            "*" if default else next(markers, "o"),
            ms=16 if default else 8,
            color="tab:blue" if default else None,
            markeredgecolor="black" if default else None,
            zorder=3 if default else 2,
            label="scaleahead, the default" if default else m["method"],
        )
    ax.set_xlabel("pod-minutes / perfect foresight's")
    ax.set_ylabel("requests beyond Ready capacity (%)")
    rng = data["range"]
    ax.set_title(
        f"trade-off, {rng['from']} .. {rng['to']}, lead {data['lead_seconds']}s", fontsize=10
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
