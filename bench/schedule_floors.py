"""What schedules and events cost the serving path: the time to compute what every series
of a rule serves now (`ServingView.rule`, as a /metrics scrape or an HPA's request for
all series does), for a rule without any (the baseline, measured in the same run) and
with 1, 3 and 10 definitions, over a day of instants so that windows open and close.

Run: python -m bench.schedule_floors [--series 1000]
"""

from __future__ import annotations

import argparse
import time

from forecaster.config import Rule
from forecaster.runtime.current import CurrentValues
from forecaster.runtime.serving import ServingView
from forecaster.runtime.store import ForecastStore
from forecaster.sources.fake import FakeSource

QUERY = "sum by (namespace, service) (rate(x{<<.LabelMatchers>>}[2m]))"
START = 1_795_000_000  # 2026-11-18


def actuals(n: int) -> FakeSource:
    """Current values for `n` series (the served value is then each one's actual)."""
    source = FakeSource("actuals")
    for i in range(n):
        source.set_current({"namespace": "shop", "service": f"svc-{i}"}, 10.0 + i % 7)
    return source


def definitions(n: int) -> dict[str, list[dict[str, object]]]:
    """`n` schedules and events of the kinds users write, some for one series only."""
    kinds: list[tuple[str, dict[str, object]]] = [
        ("schedules", {"cron": "0 9 * * mon-fri", "time_zone": "Europe/Berlin",
                       "duration": "1h", "floor": 40}),
        ("schedules", {"cron": "*/15 * * * *", "time_zone": "UTC", "duration": "5m",
                       "multiplier": 1.5}),
        ("events", {"from": "2026-11-18T06:00:00Z", "to": "2026-11-19T00:00:00Z",
                    "floor": 12, "selector": "service=svc-1"}),
    ]  # fmt: skip
    out: dict[str, list[dict[str, object]]] = {"schedules": [], "events": []}
    for i in range(n):
        kind, body = kinds[i % len(kinds)]
        body = {**body, "name": f"d{i}"}
        if kind == "schedules":
            body["cron"] = f"{i % 60} " + str(body["cron"]).split(" ", 1)[1]
        else:
            body["from"] = f"2026-11-18T{i % 24:02d}:00:00Z"
        out[kind].append(body)
    return out


def measure(rule: Rule, series: int, instants: int) -> float:
    """Seconds per ServingView.rule over `instants` instants a day apart / instants."""
    clock = [float(START)]
    current = CurrentValues([rule], actuals(series), lambda: clock[0], 10**9, 15)
    current.refresh(rule)
    view = ServingView(ForecastStore(), current, lambda: clock[0])
    view.rule(rule)  # the index and the windows' cache
    started = time.perf_counter()
    for k in range(instants):
        state = view.rule(rule, now=START + k * 86400 / instants)
        assert len(state.series) == series
    return (time.perf_counter() - started) / instants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--instants", type=int, default=96)
    args = parser.parse_args()
    print(f"{args.series} series, {args.instants} instants over a day")
    print(f"{'definitions':>11s} {'ms per view':>12s} {'us per series':>14s} {'vs none':>8s}")
    base = None
    for n in (0, 1, 3, 10):
        keys = {"name": "qps", "query": QUERY, **definitions(n)}
        seconds = measure(Rule.model_validate(keys), args.series, args.instants)
        base = base or seconds
        print(
            f"{n:>11d} {seconds * 1e3:>12.2f} {seconds / args.series * 1e6:>14.2f} "
            f"{seconds / base:>7.2f}x"
        )


if __name__ == "__main__":
    main()
