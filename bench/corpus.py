"""Judge the forecaster on every trace of a folder, the way users meet it: the default,
a budget sweep and every baseline through two simulated HPAs, in one run.

For each trace (its last 7 days, the lead the rule derives from its step):
- scaleahead at the default budget, at each budget of BUDGETS and at each forecasting
  baseline's own cost (under either HPA), and every baseline (reactive, seasonal naive,
  Holt-Winters, Crane's DSP, MSTL), each replayed once; then, for a baseline no budget
  asked so far dominates, the highest budget that costs no more than it, by bisection
  between the budgets replayed, or up from 0.5 (the least a rule takes) where each costs
  more: "some budget drops no more and costs no more" is asked of that budget. Such a
  searched budget is a point of the curve, not counted in the realised/asked figures;
- each through two HPAs: `own`, the project's simulator (target = capacity = the range's
  p99 demand / 10), and `user`, as users configure theirs (target 0.7 of a pod's
  capacity, pods five times finer: capacity = p99 / 50), Kubernetes defaults otherwise.

It prints per trace and HPA: the default's dropped share (requests beyond Ready capacity)
and cost (pod-minutes over perfect foresight's under the same HPA), the best baseline
(fewest dropped), the baselines no point of scaleahead's curve dominates (drops no more
and costs no more), and each budget realised against the budget asked. One summary line
per HPA: traces with an undominated baseline (goal 0), the worst realised/asked ratio
(goal <= 1.02), and the mean dropped share against the mean of each trace's best
baseline (goal <= 0.5x); and every budget's realised/asked ratio pooled over the traces
(how many above 1.02, their mean, p90 and max). With --against OLD.json (a --json of an
earlier run), each trace's curve against the old one at equal cost: the dropped share
interpolated along this run's curve at each old point's cost, over the old point's, then
their geometric mean over the traces (below 1: fewer requests dropped for the same pods).
Traces run in parallel, one process per core.

Run: python -m bench.corpus [--traces DIR] [--only NAME] [--budgets 1.0,1.1,...]
       [--json NEW.json] [--against OLD.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from forecaster.config import Rule
from forecaster.evaluation import baselines
from forecaster.evaluation.backtest import replay
from forecaster.evaluation.hpa_sim import HPASettings
from forecaster.evaluation.recorded import record
from forecaster.evaluation.scoring import BASELINES, Judge
from forecaster.selector import EVERYTHING
from forecaster.sources.trace import TraceSource, read_trace
from forecaster.times import DAY

TRACES = Path(__file__).resolve().parent.parent.parent / "shared" / "traces"
BUDGETS = (0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2, 1.3, 1.4)
DEFAULT = "default"
HPAS = {
    "own": {"share": 1.0, "pods_at_p99": 10},
    "user": {"share": 0.7, "pods_at_p99": 50},
}
"""Each HPA: the target as a share of a pod's capacity, and how many pods serve the p99."""


@dataclass(frozen=True)
class Point:
    """One method through one HPA: the share of requests beyond Ready capacity and the
    pod-minutes over perfect foresight's under the same HPA."""

    dropped: float
    cost: float

    def dominates(self, other: Point) -> bool:
        """Drops no more and costs no more than `other`."""
        return self.dropped <= other.dropped and self.cost <= other.cost


def _hpa(actual: np.ndarray, lead: int, share: float, pods_at_p99: int) -> HPASettings:
    finite = actual[np.isfinite(actual)]
    capacity = max(float(np.percentile(finite, 99)) / pods_at_p99, 1e-9)
    return HPASettings(target_per_pod=share * capacity, capacity_per_pod=capacity, startup=lead)


def judge_trace(path: Path, budgets: tuple[float, ...]) -> dict[str, object]:
    """Every method's point under each HPA on the trace's last 7 days."""
    started = time.perf_counter()
    trace = read_trace(path)
    base = Rule.model_validate(
        {
            "name": "corpus",
            "query": "csv{<<.LabelMatchers>>}",
            "step": trace.resolution,
            "phase": trace.phase,
            "history": "15d",
        }
    )
    end = trace.end
    start = end - 7 * DAY
    source = record(TraceSource(trace, {"trace": path.stem}), base, EVERYTHING, start, end)
    first = replay(base, source, start, end)
    judges = {
        name: Judge(first, _hpa(first.actual, base.lead, spec["share"], spec["pods_at_p99"]))
        for name, spec in HPAS.items()
    }
    # What each method serves (the baselines' do not depend on the HPA), and its point.
    served = {DEFAULT: first.before_floors, "reactive": first.actual}
    some = next(iter(judges.values()))
    for label, forecast in BASELINES:
        paths = forecast(some.y, some.origins, base.horizon_steps, base.step)
        served[label] = baselines.served(first.actual, paths, first.window)

    judged: dict[tuple[str, str], Point] = {}

    def point(hpa: str, label: str) -> Point:
        """What `label` served, through the HPA (simulated once: labels never change)."""
        if (hpa, label) not in judged:
            judge = judges[hpa]
            result = judge.simulate(served[label])
            cost = result.pod_minutes / judge.bound.pod_minutes
            judged[hpa, label] = Point(result.beyond_capacity_share, cost)
        return judged[hpa, label]

    # The sweep, and a budget at each forecasting baseline's own cost under each HPA:
    # "some budget drops no more and costs no more" is asked of that budget first.
    asked = set(budgets)
    for hpa in HPAS:
        for label, _ in BASELINES:
            asked.add(min(max(round(point(hpa, label).cost, 3), LEAST), 10.0))

    def replayed(budget: float, kind: str = "budget") -> str:
        """The label of the budget, replayed the first time it is asked."""
        label = f"{kind} {budget:g}"
        if label not in served:
            rule = base.changed(max_pod_minutes=budget, quantile=None)
            served[label] = replay(rule, source, start, end).before_floors
        return label

    for budget in sorted(asked):
        replayed(budget)

    def searched_cost(hpa: str, budget: float) -> float:
        return point(hpa, replayed(budget, SEARCHED)).cost

    # "Some budget": where no budget asked so far dominates a baseline, the highest budget
    # that costs no more than the baseline, by bisection between the budgets replayed (the
    # cost rises with the budget asked); the baseline is dominated if it drops no more.
    for hpa in HPAS:
        for label, _ in BASELINES:
            theirs = point(hpa, label)
            ours = {float(k.split()[1]): point(hpa, k) for k in served if is_budget(k)}
            if not any(p.dominates(theirs) for p in ours.values()):
                highest_within(
                    functools.partial(searched_cost, hpa),
                    {b: p.cost for b, p in ours.items()},
                    theirs.cost,
                )
    points = {hpa: {label: point(hpa, label) for label in served} for hpa in HPAS}
    return {
        "trace": path.stem,
        "step": base.step,
        "lead": base.lead,
        "models": first.models,
        "budgets": sorted(asked),
        "seconds": time.perf_counter() - started,
        "points": {h: {m: asdict(p) for m, p in got.items()} for h, got in points.items()},
    }


SEARCH_STEPS = 4
"""Bisections between the two budgets replayed whose costs straddle a baseline's."""
LEAST = 0.5
"""The least budget a rule takes (`max_pod_minutes`)."""
SEARCHED = "searched"
"""The label of a budget the search asked: a point of the curve, left out of the budgets'
realised/asked figures (it is asked where the cost crosses a baseline's, not as planned)."""


def highest_within(
    cost: Callable[[float], float], known: dict[float, float], limit: float
) -> float | None:
    """The highest budget (to 4 decimals) whose `cost` is at most `limit`, by bisection
    between the budgets of `known` (budget -> cost) whose costs straddle it, or between
    the least budget a rule takes (LEAST) and the cheapest known where every known one
    costs more; None where LEAST does too."""
    within = [b for b, c in known.items() if c <= limit]
    if not within:
        if min(known) <= LEAST or cost(LEAST) > limit:
            return None
        within = [LEAST]
    lo = max(within)
    above = [b for b, c in known.items() if c > limit and b > lo]
    if not above:
        return lo
    hi = min(above)
    for _ in range(SEARCH_STEPS):
        mid = round((lo + hi) / 2, 4)
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if cost(mid) <= limit else (lo, mid)
    return lo


def _baselines() -> list[str]:
    return ["reactive", *(label for label, _ in BASELINES)]


def forecasting(points: dict[str, dict[str, float]]) -> list[str]:
    """The baselines that forecast: not reactive, nor one that served what reactive serves
    (MSTL with too little history). scaleahead never serves less than the actual (DESIGN.md:
    a forecast may scale up early, never hold below today's demand), so reactive scaling
    is the one point no budget can reach below; it is shown, not counted."""
    reactive = points["reactive"]
    return [b for b in _baselines()[1:] if points[b] != reactive]


def is_budget(label: str) -> bool:
    """Whether `label` is a budget replayed, searched ones included."""
    return label.split()[0] in ("budget", SEARCHED)


def scaleaheads(points: dict[str, dict[str, float]]) -> list[dict[str, float]]:
    """scaleahead's points: the default and every budget, searched ones included."""
    return [p for label, p in points.items() if label == DEFAULT or is_budget(label)]


def undominated(points: dict[str, dict[str, float]]) -> list[str]:
    """The forecasting baselines no point of scaleahead's (the default and every budget)
    dominates: none drops no more and costs no more."""
    ours = [Point(**p) for p in scaleaheads(points)]
    return [
        b for b in forecasting(points) if not any(p.dominates(Point(**points[b])) for p in ours)
    ]


def best_baseline(points: dict[str, dict[str, float]]) -> str:
    return min(_baselines(), key=lambda b: (points[b]["dropped"], points[b]["cost"]))


def _fmt(point: dict[str, float]) -> str:
    return f"{point['dropped']:.2%}/{point['cost']:.3f}"


def realised(points: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each budget's cost over the budget asked (the default's: 1.1), where it can be met:
    at or above what reactive scaling costs, the least any budget can spend."""
    floor = points["reactive"]["cost"]
    asked = {DEFAULT: 1.1} | {k: float(k.split()[1]) for k in points if k.startswith("budget")}
    return {k: points[k]["cost"] / x for k, x in asked.items() if x >= floor}


def curve(points: dict[str, dict[str, float]]) -> np.ndarray:
    """scaleahead's points (the default and every budget) as (cost, dropped), by cost."""
    return np.array(sorted((p["cost"], p["dropped"]) for p in scaleaheads(points)))


def at_equal_cost(old: dict[str, dict[str, float]], new: dict[str, dict[str, float]]) -> float:
    """The new curve's dropped share at each old point's cost (within the new curve's
    costs) over the old point's, averaged; NaN where no old point can be compared."""
    a, b = curve(old), curve(new)
    ok = (a[:, 0] >= b[0, 0]) & (a[:, 0] <= b[-1, 0]) & (a[:, 1] > 0)
    if not ok.any():
        return float("nan")
    return float(np.mean(np.interp(a[ok, 0], b[:, 0], b[:, 1]) / a[ok, 1]))


def against(results: list[dict[str, object]], old: list[dict[str, object]]) -> str:
    """Each trace's curve against an earlier run's at equal cost, per HPA."""
    before = {str(r["trace"]): r for r in old}
    lines = ["\n== dropped at equal cost, this run over the earlier one (below 1: better)"]
    for hpa in HPAS:
        ratios = {}
        for r in results:
            if str(r["trace"]) in before:
                x = at_equal_cost(
                    before[str(r["trace"])]["points"][hpa],  # type: ignore[index]
                    r["points"][hpa],  # type: ignore[index]
                )
                if np.isfinite(x) and x > 0:
                    ratios[str(r["trace"])] = x
        each = " ".join(f"{t}:{x:.3f}" for t, x in ratios.items())
        geo = float(np.exp(np.mean(np.log(list(ratios.values()))))) if ratios else float("nan")
        lines.append(f"{hpa}: geometric mean {geo:.3f} over {len(ratios)} traces; {each}")
    return "\n".join(lines)


def report(results: list[dict[str, object]], budgets: tuple[float, ...]) -> str:
    lines = []
    for hpa in HPAS:
        lines.append(f"\n== HPA {hpa}: {HPAS[hpa]}")
        lines.append(
            f"{'trace':32s} {'default':>15s} {'best baseline':>29s}  {'worst real/asked':>22s}"
            "  undominated baselines"
        )
        worst: tuple[float, str] = (0.0, "")
        pooled: list[float] = []
        undominated_traces = 0
        ours, theirs = [], []
        for r in results:
            points = r["points"][hpa]  # type: ignore[index]
            d = points[DEFAULT]
            best = best_baseline(points)
            left = undominated(points)
            undominated_traces += bool(left)
            ratios = realised(points)
            pooled += ratios.values()
            key = max(ratios, key=lambda k: ratios[k])
            worst = max(worst, (ratios[key], f"{r['trace']} {key}"))
            ours.append(d["dropped"])
            theirs.append(points[best]["dropped"])
            lines.append(
                f"{r['trace']:32s} {_fmt(d):>15s} {best:>14s} {_fmt(points[best]):>14s}  "
                f"{key:>14s} {ratios[key]:.3f}  {', '.join(left) or '-'}"
            )
        for r in results:
            points = r["points"][hpa]  # type: ignore[index]
            curve = " ".join(f"{x:g}:{_fmt(points[f'budget {x:g}'])}" for x in budgets)
            base = " ".join(f"{b}:{_fmt(points[b])}" for b in _baselines())
            lines.append(f"  {r['trace']}: {curve} | {base}")
        mean_ours, mean_theirs = float(np.mean(ours)), float(np.mean(theirs))
        lines.append(
            f"SUMMARY {hpa}: {undominated_traces} of {len(results)} traces with an undominated "
            f"forecasting baseline (goal 0); worst realised/asked budget {worst[0]:.3f}, "
            f"{worst[1]} (goal <= 1.02); mean dropped {mean_ours:.2%} against the best "
            f"baselines' {mean_theirs:.2%} "
            f"({mean_ours / mean_theirs if mean_theirs else float('nan'):.2f}x, goal <= 0.5x)"
        )
        spread = np.array(pooled)
        lines.append(
            f"BUDGETS {hpa}: {int((spread > 1.02).sum())} of {len(spread)} realised above 1.02x "
            f"what they asked; realised/asked mean {spread.mean():.3f}, "
            f"p90 {np.percentile(spread, 90):.3f}, max {spread.max():.3f}"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--traces", type=Path, default=TRACES)
    ap.add_argument("--only", help="substring of the trace file names to run")
    ap.add_argument("--budgets", default=",".join(f"{b:g}" for b in BUDGETS))
    ap.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--json", type=Path, help="write every point here")
    ap.add_argument("--against", type=Path, help="an earlier --json: compare the curves")
    args = ap.parse_args()
    budgets = tuple(float(b) for b in args.budgets.split(","))
    paths = sorted(args.traces.glob("*.csv"), key=lambda p: -p.stat().st_size)  # longest first
    paths = [p for p in paths if not args.only or args.only in p.name]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(judge_trace, paths, [budgets] * len(paths)))
    results.sort(key=lambda r: str(r["trace"]))
    print(report(results, budgets))
    seconds = {str(r["trace"]): round(float(r["seconds"]), 1) for r in results}  # type: ignore[arg-type]
    print(
        f"\n{len(results)} traces in {time.perf_counter() - started:.0f} s on {args.jobs} "
        f"processes; per trace: {seconds}"
    )
    if args.against:
        print(against(results, json.loads(args.against.read_text())))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
