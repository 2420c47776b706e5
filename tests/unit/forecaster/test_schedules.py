"""Schedules and events: cron read on a named zone's clocks (across daylight-saving
changes), floors opened `lead` early, the largest floor winning, shown in /metrics, and
their effect in the backtest of a real trace."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from adapter.cli import main
from forecaster.config import ConfigError, Rule, parse_config
from forecaster.evaluation.backtest import replay
from forecaster.evaluation.recorded import record
from forecaster.runtime.current import CurrentValues
from forecaster.runtime.outcomes import Outcomes
from forecaster.runtime.serving import ServingView
from forecaster.runtime.store import ForecastStore
from forecaster.runtime.telemetry import SeriesCollector
from forecaster.schedules import Cron
from forecaster.selector import EVERYTHING
from forecaster.sources.fake import FakeSource
from forecaster.sources.trace import Trace, TraceSource
from tests.conftest import REPO, TRACES, Clock

BERLIN = ZoneInfo("Europe/Berlin")
QUERY = "sum by (namespace, service) (rate(x{<<.LabelMatchers>>}[2m]))"


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def utc(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%a %d %H:%M")


def rule_with(**keys: object) -> Rule:
    return Rule.model_validate({"name": "qps", "query": QUERY, "lead": "3m", **keys})


# --- cron ------------------------------------------------------------------------------


def firings(expr: str, start: str, end: str, zone=UTC) -> list[str]:  # type: ignore[no-untyped-def]
    return [utc(t) for t in Cron.parse(expr).firings(zone, at(start), at(end))]


def test_cron_reads_sunday_as_0_or_7_and_either_day_field():
    week = ("2026-11-22T00:00:00Z", "2026-11-29T00:00:00Z")  # Sunday to Sunday
    for sunday in ("0 9 * * 0", "0 9 * * 7", "0 9 * * sun", "0 9 * * SUN"):
        assert firings(sunday, *week) == ["Sun 22 09:00"], sunday
    assert firings("0 9 * * mon-fri", *week) == [f"{d} 09:00" for d in
        ("Mon 23", "Tue 24", "Wed 25", "Thu 26", "Fri 27")]  # fmt: skip
    # Both day fields restricted: either matches (the 13th, and every Friday).
    assert firings("0 9 13 * 5", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z") == [
        "Fri 06 09:00", "Fri 13 09:00", "Fri 20 09:00", "Fri 27 09:00"]  # fmt: skip
    assert firings("0 9 14 * *", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z") == ["Sat 14 09:00"]
    assert firings("*/20 9-10 * * *", "2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z") == [
        f"Sun 22 {h}:{m}" for h in ("09", "10") for m in ("00", "20", "40")]  # fmt: skip
    assert Cron.parse("@daily").firings(UTC, 0, 3 * 86400) == [0, 86400, 2 * 86400]


def test_cron_follows_the_zones_clocks_through_both_changes():
    # 09:00 in Berlin is 08:00 UTC before the spring change (29 March 2026), 07:00 after.
    assert firings("0 9 * * *", "2026-03-27T00:00:00Z", "2026-03-31T00:00:00Z", BERLIN) == [
        "Fri 27 08:00", "Sat 28 08:00", "Sun 29 07:00", "Mon 30 07:00"]  # fmt: skip
    # 02:30 does not exist on 29 March: it fires when the clocks have jumped (03:30 CEST).
    assert firings("30 2 * * *", "2026-03-28T00:00:00Z", "2026-03-31T00:00:00Z", BERLIN) == [
        "Sat 28 01:30", "Sun 29 01:30", "Mon 30 00:30"]  # fmt: skip
    # 02:30 happens twice on 25 October: it fires once, the first time (CEST).
    assert firings("30 2 * * *", "2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z", BERLIN) == [
        "Sat 24 00:30", "Sun 25 00:30", "Mon 26 01:30"]  # fmt: skip


# --- configuration errors --------------------------------------------------------------


def config_error(**keys: object) -> str:
    data = {"prometheus": {"url": "http://p:9090"}, "rules": [{"name": "qps", "query": QUERY}]}
    data["rules"][0].update(keys)  # type: ignore[index]
    with pytest.raises(ConfigError) as err:
        parse_config(data, "f.yaml")
    return str(err.value)


LOGIN = {"name": "login", "cron": "0 9 * * 1-5", "time_zone": "Europe/Berlin", "duration": "1h"}
SALE = {"name": "sale", "from": "2026-11-27T06:00:00Z", "to": "2026-11-27T09:00:00Z", "floor": 3}


@pytest.mark.parametrize(
    ("schedules", "events", "message"),
    [
        (
            [{**LOGIN, "cron": "0 24 * * *", "floor": 5}],
            [],
            "rules[0].schedules[0].cron: hour: '24' is not a number from 0 to 23",
        ),
        (
            [{**LOGIN, "cron": "0 9 * *", "floor": 5}],
            [],
            "rules[0].schedules[0].cron: expected five fields",
        ),
        (
            [{**LOGIN, "time_zone": "Europe/Berln", "floor": 5}],
            [],
            "rules[0].schedules[0].time_zone: unknown time zone 'Europe/Berln'",
        ),
        (
            [{**LOGIN, "cron": "*/5 * * * *", "duration": "10m", "floor": 5}],
            [],
            "rules[0].schedules[0].duration: 10m is longer than the 5m between two firings",
        ),
        ([LOGIN], [], "rules[0].schedules[0]: give floor"),
        ([{**LOGIN, "floor": 5, "multiplier": 2}], [], "rules[0].schedules[0]: give floor"),
        ([{**LOGIN, "multiplier": 0.5}], [], "schedules[0].multiplier: expected a number above 1"),
        ([{**LOGIN, "floor": 5, "selector": "svc in (a"}], [], "rules[0].schedules[0].selector:"),
        (
            [{**LOGIN, "floor": 5}, {**LOGIN, "floor": 9}],
            [],
            "rules[0].schedules: schedules[1] is named 'login' like schedules[0]",
        ),
        (
            # The same windows, spelled differently, for the same series: which floor?
            [{**LOGIN, "floor": 5}, {**LOGIN, "name": "b", "cron": "0 9 * * mon-fri", "floor": 9}],
            [],
            "rules[0].schedules: schedules[1] ('b') has the same windows and selector as "
            "schedules[0] ('login')",
        ),
        (
            [{**LOGIN, "floor": 5}],
            [{**SALE, "name": "login"}],
            "rules[0].events: events[0] is named 'login' like schedules[0]",
        ),
        (
            [],
            [{**SALE, "from": "2026-11-27T06:00:00"}],
            "rules[0].events[0].from: expected a time with its UTC offset",
        ),
        (
            [],
            [{**SALE, "to": "2026-11-27T05:00:00Z"}],
            "rules[0].events[0].to: 2026-11-27T05:00:00+00:00 is not after from",
        ),
        (
            [],
            [{"form" if k == "from" else k: v for k, v in SALE.items()}],
            "rules[0].events[0].form: unknown key; did you mean 'from'?",
        ),
    ],
)  # fmt: skip
def test_bad_definitions_are_refused_naming_the_key(schedules, events, message):
    assert message in config_error(schedules=schedules, events=events)


def test_overlapping_definitions_of_different_windows_are_allowed():
    # A one-off sale during the daily login wave, for every series and for one: layers.
    rule = rule_with(
        schedules=[{**LOGIN, "floor": 5}, {**LOGIN, "name": "checkout", "floor": 9,
                                           "selector": "service=checkout"}],
        events=[{"name": "sale", "from": "2026-11-27T06:00:00Z", "to": "2026-11-28T00:00:00Z",
                 "multiplier": 2}],
    )  # fmt: skip
    assert rule.calendar is not None and rule.calendar.names == ["login", "checkout", "sale"]
    # A schedule that fires on a DST night an hour "early" is not an overlap (wall clock).
    rule_with(schedules=[{**LOGIN, "cron": "30 1,3 * * *", "duration": "2h", "floor": 1}])


# --- the live path: ServingView and /metrics ---------------------------------------------


B = at("2026-11-27T10:00:00Z")


@pytest.fixture
def layered():
    rule = rule_with(
        events=[
            {"name": "wide", "from": "2026-11-27T10:00:00Z", "to": "2026-11-27T12:00:00Z",
             "floor": 12},
            {"name": "double", "from": "2026-11-27T10:30:00Z", "to": "2026-11-27T10:45:00Z",
             "multiplier": 2},
        ],
        schedules=[{"name": "checkout-only", "cron": "40 10 * * *", "time_zone": "UTC",
                    "duration": "10m", "floor": 30, "selector": "service=checkout"}],
    )  # fmt: skip
    clock = Clock(float(B))
    source = FakeSource()  # current values only: each series' served value is its actual
    for service in ("checkout", "search"):
        source.set_current({"namespace": "shop", "service": service}, 10.0)
    current = CurrentValues([rule], source, clock, 60, 15)
    view = ServingView(ForecastStore(), current, clock)

    def served(t: int) -> dict[str, tuple[float, str | None]]:
        clock.t = float(t)
        current.refresh(rule)
        state = view.rule(rule)
        return {
            s.labels["service"]: (s.served.value, s.served.schedule)
            for s in state.series
            if s.served is not None
        }

    return rule, view, served


def test_floors_open_lead_early_and_the_largest_wins(layered):
    rule, _, served = layered
    lead = rule.lead
    assert lead == 180
    none = {"checkout": (10.0, None), "search": (10.0, None)}
    assert served(B - lead - 1) == none
    # From lead before the window opens: pods added now are Ready when it does.
    assert served(B - lead) == {"checkout": (12.0, "wide"), "search": (12.0, "wide")}
    # "double" (2 x 10) above "wide" (12), from lead before 10:30.
    assert served(B + 30 * 60 - lead - 1)["search"] == (12.0, "wide")
    assert served(B + 30 * 60 - lead)["search"] == (20.0, "double")
    # Three active for checkout, two for search: each series its own largest.
    assert served(B + 40 * 60 - lead) == {
        "checkout": (30.0, "checkout-only"),
        "search": (20.0, "double"),
    }
    assert served(B + 45 * 60 - 1)["search"] == (20.0, "double")
    assert served(B + 45 * 60)["search"] == (12.0, "wide")  # the window closed
    assert served(B + 50 * 60 - 1)["checkout"] == (30.0, "checkout-only")
    assert served(B + 50 * 60)["checkout"] == (12.0, "wide")
    assert served(B + 2 * 3600 - 1) == {"checkout": (12.0, "wide"), "search": (12.0, "wide")}
    assert served(B + 2 * 3600) == none


def test_metrics_show_each_active_schedule_per_series(layered):
    rule, view, served = layered
    served(B + 41 * 60)
    registry = CollectorRegistry()
    registry.register(SeriesCollector([rule], view, {rule.name: Outcomes(rule)}))
    text = generate_latest(registry).decode()
    floors = sorted(
        line for line in text.splitlines() if line.startswith("scaleahead_series_schedule_floor{")
    )
    assert floors == sorted(
        f'scaleahead_series_schedule_floor{{namespace="shop",rule="qps",schedule="{name}",'
        f'service="{svc}"}} {value}'
        for svc, name, value in [
            ("checkout", "wide", 12.0),
            ("checkout", "double", 20.0),
            ("checkout", "checkout-only", 30.0),
            ("search", "wide", 12.0),
            ("search", "double", 20.0),
        ]
    )
    assert 'scaleahead_series_served{namespace="shop",rule="qps",service="checkout"} 30.0' in text
    served(B + 3 * 3600)  # nothing active: no floor samples at all
    text = generate_latest(registry).decode()
    assert "scaleahead_series_schedule_floor{" not in text


# --- replay across a daylight-saving change -----------------------------------------------


def test_replay_across_a_dst_change_opens_the_floor_at_the_same_local_time(nasa: Trace):
    """Real traffic (NASA's, moved to March 2026) replayed through the forecast cycle and
    the policy, with a floor at 09:00-10:00 Berlin time: before the change it opens at
    07:57 UTC, after it at 06:57 UTC."""
    start, end = at("2026-03-27T00:00:00Z"), at("2026-03-31T00:00:00Z")
    moved = Trace(start - 10 * 86400, nasa.resolution, nasa.counts[: 15 * 1440])
    floor = 100.0  # above the trace's every value: served exactly while active
    rule = rule_with(
        history="9d",
        schedules=[{"name": "login", "cron": "0 9 * * *", "time_zone": "Europe/Berlin",
                    "duration": "1h", "floor": floor}],
    )  # fmt: skip
    source = TraceSource(moved, {"service": "nasa"})
    r = replay(rule, record(source, rule, EVERYTHING, start, end), start, end)
    # Independently: 09:00 on Berlin's clocks each day, as zoneinfo converts it.
    opens = [int(datetime(2026, 3, d, 9, tzinfo=BERLIN).timestamp()) for d in range(26, 32)]
    expected = np.zeros(len(r.times), dtype=bool)
    for o in opens:
        expected |= (r.times >= o - rule.lead) & (r.times < o + 3600)
    active = np.isfinite(r.floor)
    np.testing.assert_array_equal(active, expected)
    first = [utc(int(t)) for t in r.times[active & ~np.roll(active, 1)]]
    assert first == ["Fri 27 07:57", "Sat 28 07:57", "Sun 29 06:57", "Mon 30 06:57"]
    assert np.all(r.served[active] == floor)
    np.testing.assert_array_equal(r.served[~active], r.before_floors[~active])
    assert np.all(r.before_floors < floor)
    # The live path (one instant at a time) agrees with the replay's arrays.
    calendar = rule.calendar
    assert calendar is not None
    for i in range(0, len(r.times), 7):
        live = calendar.floors({"service": "nasa"}, int(r.times[i]), rule.lead, r.before_floors[i])
        assert bool(live) == active[i]


# --- the backtest on a shared trace, with and without an event ----------------------------


def test_backtest_with_and_without_a_known_event(tmp_path: Path, capsys):
    """NASA's web server on the day of a Space Shuttle launch (STS-70, 13 July 1995,
    13:41 UTC): traffic 3x a normal weekday's, which no forecast of its history could
    see coming. An event with a floor for the launch day, as a user would have set it."""
    events = tmp_path / "launch.yaml"
    events.write_text(
        "events:\n  - name: sts-70\n    from: 1995-07-13T07:00:00-04:00\n"
        "    to: 1995-07-13T17:00:00-04:00\n    floor: 4\n"
    )
    out, js = tmp_path / "steps.csv", tmp_path / "summary.json"
    args = ["backtest", "--csv", str(TRACES / "nasa_http_1995.csv"), "--from",
            "1995-07-12T04:00:00Z", "--to", "1995-07-14T04:00:00Z", "--schedules", str(events),
            "--cpu-target", "70%", "--output", str(out), "--json", str(js)]  # fmt: skip
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "schedules: sts-70; active" in table
    by = {m["method"]: m for m in json.loads(js.read_text())["methods"]}
    plain, with_event = by["scaleahead"], by["scaleahead + schedules"]
    # The floor buys capacity during the launch: fewer requests beyond it, more pod-minutes.
    assert with_event["beyond_capacity_share"] < plain["beyond_capacity_share"]
    assert with_event["pod_minutes"] > plain["pod_minutes"]
    assert (
        by["reactive + schedules"]["beyond_capacity_share"]
        < by["reactive"]["beyond_capacity_share"]
    )
    # The layered HPA: CPU alone, and CPU beside the forecast.
    assert (
        by["cpu 70% + scaleahead"]["beyond_capacity_share"] < by["cpu 70%"]["beyond_capacity_share"]
    )
    rows = list(csv.DictReader(out.open()))
    opens, closes = at("1995-07-13T11:00:00Z"), at("1995-07-13T21:00:00Z")
    for row in rows:
        t = at(row["timestamp"].replace("Z", "+00:00"))
        inside = opens - 180 <= t < closes
        assert (row["schedule_floor"] != "") == inside, row
        if inside:
            assert float(row["served"]) >= 4.0


def test_backtest_schedules_file_errors_name_the_key(tmp_path: Path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "schedules:\n  - {name: x, cron: '0 9 * * *', time_zone: Mars/Olympus, "
        "duration: 1h, floor: 1}\n"
    )
    code = main(["backtest", "--csv", str(TRACES / "nasa_http_1995.csv"), "--schedules", str(bad)])
    assert code == 2
    assert f"{bad}: schedules[0].time_zone: unknown time zone 'Mars/Olympus'" in (
        capsys.readouterr().err
    )
    bad.write_text("schedule: []\n")
    assert (
        main(["backtest", "--csv", str(TRACES / "nasa_http_1995.csv"), "--schedules", str(bad)])
        == 2
    )
    assert "expected a mapping with the keys schedules and/or events" in capsys.readouterr().err


def test_the_readme_example_is_a_valid_config():
    section = (REPO / "README.md").read_text().split("## Known peaks", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    data = {"prometheus": {"url": "http://prometheus:9090"}, **yaml.safe_load(block)}
    rule = parse_config(data, "README.md").rules[0]
    assert [s.name for s in rule.schedules] == ["login-wave"]
    assert [e.name for e in rule.events] == ["black-friday"]
    assert rule.calendar is not None
    # 09:00 in Berlin on Monday 30 November 2026 is 08:00 UTC; lead 3m before it.
    opens = at("2026-11-30T08:00:00Z")
    checkout = {"namespace": "shop", "service": "checkout"}
    assert rule.calendar.floors(checkout, opens - rule.lead, rule.lead, 50.0)
    assert not rule.calendar.floors(checkout, opens - rule.lead - 1, rule.lead, 50.0)
    assert not rule.calendar.floors({"service": "search"}, opens, rule.lead, 50.0)


def test_check_config_prints_each_definitions_next_window(tmp_path: Path, capsys):
    soon = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    config = tmp_path / "c.yaml"
    config.write_text(
        "prometheus: {url: 'http://p:9090'}\nrules:\n  - name: qps\n"
        f"    query: '{QUERY}'\n"
        "    schedules:\n      - {name: nightly, cron: '@daily', time_zone: Asia/Tokyo, "
        "duration: 1h, floor: 5}\n"
        f"    events:\n      - {{name: later, from: '{soon.isoformat()}', "
        f"to: '{(soon + timedelta(hours=2)).isoformat()}', floor: 5}}\n"
        "      - {name: past, from: 1995-07-13T07:00:00-04:00, to: 1995-07-13T17:00:00-04:00,"
        " floor: 4}\n"
    )
    assert main(["check-config", str(config)]) == 0
    out = capsys.readouterr().out
    # Midnight in Tokyo is 15:00 UTC the day before; the next one after now, or now.
    now = datetime.now(UTC)
    tokyo = now.astimezone(ZoneInfo("Asia/Tokyo"))
    midnight = tokyo.replace(hour=0, minute=0, second=0, microsecond=0)
    if now - midnight.astimezone(UTC) >= timedelta(hours=1):
        midnight = (midnight + timedelta(days=1)).replace(hour=0)
        line = f"nightly: next window {midnight.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    else:
        until = midnight.astimezone(UTC) + timedelta(hours=1)
        line = f"nightly: open now, until {until:%Y-%m-%dT%H:%M:%SZ}"
    assert line in out, out
    later = f"{soon:%Y-%m-%dT%H:%M:%SZ} .. {soon + timedelta(hours=2):%Y-%m-%dT%H:%M:%SZ}"
    assert f"later: next window {later}" in out
    assert "past: no window within a year" in out
