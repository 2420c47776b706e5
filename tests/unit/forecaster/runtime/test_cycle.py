"""The forecast cycle on real traces: no peeking, young and old series."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from forecaster.config import Rule
from forecaster.models.calibration import FALLBACK_QUANTILE, per_step_quantile
from forecaster.models.short_history import ShortHistoryForecaster
from forecaster.runtime.cycle import ForecastCycle
from forecaster.runtime.demand import Pin, SeriesDemand
from forecaster.runtime.store import ForecastStore
from forecaster.selector import parse_selector
from forecaster.sources.trace import Trace, TraceSource
from forecaster.times import SETTLE

STEP = 60
DAYS = 1440


def test_no_peeking_through_the_real_cycle(nasa: Trace):
    """Changing what happens after t changes no forecast made at or before t."""
    counts = nasa.counts[: 12 * DAYS].copy()
    rule = Rule(name="m", query="x{<<.LabelMatchers>>}", history="9d")
    t0 = nasa.start + 11 * DAYS * STEP
    perturbed = counts.copy()
    cut = (t0 - nasa.start) // STEP  # minutes starting at or after t0 are the future
    perturbed[cut:] *= 3.0

    def run(c: np.ndarray) -> list[np.ndarray]:
        store = ForecastStore()
        cycle = ForecastCycle([rule], TraceSource(Trace(nasa.start, 60, c), {"s": "a"}), store)
        out = []
        # Cycles 90, 60, 30 minutes before t0 and at t0, then one 10 minutes after it.
        for k in (-90, -60, -30, 0, 10):
            cycle.run(rule, t0 + k * STEP)
            snap = store.snapshot("m")
            assert snap is not None
            [fc] = snap.values()
            out.append(np.concatenate([fc.point, fc.upper]))
        return out

    clean, changed = run(counts), run(perturbed)
    for a, b in zip(clean[:-1], changed[:-1], strict=True):
        np.testing.assert_array_equal(a, b)
    # ...and the cycle does read what is new: 10 minutes past t0, tripled demand shows.
    assert changed[-1][:10].mean() > 1.5 * clean[-1][:10].mean()


def test_young_series_get_statsforecast_and_old_ones_the_engine(nasa: Trace):
    rule = Rule(name="m", query="x{<<.LabelMatchers>>}", history="9d")
    start = nasa.start
    young = Trace(start + 10 * DAYS * STEP, 60, nasa.counts[10 * DAYS : 10 * DAYS + 120])
    old = Trace(start, 60, nasa.counts[: 10 * DAYS + 120])
    now = start + (10 * DAYS + 120) * STEP + SETTLE  # a cycle SETTLE after the newest point
    for trace, expected in (
        (young, {"ets"}),
        (old, {"profile-add/day", "profile-mult/day", "snaive/day", "hw/day"}),
    ):
        store = ForecastStore()
        ForecastCycle([rule], TraceSource(trace, {"s": "a"}), store).run(rule, now)
        snap = store.snapshot("m")
        assert snap is not None
        [fc] = snap.values()
        assert fc.model in expected
    # The young series' band is asked for at the per-step quantile that covers the peak
    # of the lead window (4 steps) with probability q: under the default pod-minutes
    # budget, with no backtest to buy one by, the fallback q.
    store = ForecastStore()
    ForecastCycle([rule], TraceSource(young, {"s": "a"}), store).run(rule, now)
    [fc] = store.snapshot("m").values()  # type: ignore[union-attr]
    y = young.counts / 60
    frame = pd.DataFrame({"unique_id": "a", "ds": np.arange(len(y)) * STEP, "y": y})
    assert rule.quantile is None and fc.quantile == FALLBACK_QUANTILE
    quantile = per_step_quantile(FALLBACK_QUANTILE, rule.lead // rule.step + 1)
    ref = ShortHistoryForecaster().forecast(frame, horizon=10, step=STEP, quantile=quantile)
    np.testing.assert_allclose(fc.upper, ref["upper"], rtol=1e-6)  # history is float32
    # ...which is wider than a band at q itself, as it must be to cover four steps.
    at_q = ShortHistoryForecaster().forecast(
        frame, horizon=10, step=STEP, quantile=FALLBACK_QUANTILE
    )
    assert (fc.upper - at_q["upper"].to_numpy() > 1e-6).all()


def test_a_series_that_fails_every_cycle_logs_its_traceback_once(nasa: Trace, caplog, monkeypatch):
    """A failing series logged a full ERROR traceback every cycle; now once when it starts
    failing (and again only if the error changes), and a line when it recovers."""
    from forecaster.models.engine import ForecastEngine

    rule = Rule(name="m", query="x{<<.LabelMatchers>>}", history="9d")
    trace = Trace(nasa.start, 60, nasa.counts[: 12 * DAYS])
    now = nasa.start + 10 * DAYS * STEP + SETTLE
    store = ForecastStore()
    cycle = ForecastCycle([rule], TraceSource(trace, {"s": "a"}), store)
    real = ForecastEngine.forecast
    error = ["overflow in the model"]

    def failing(self, key, values, end):  # a model bug for as long as `error` says
        if error:
            raise FloatingPointError(error[0])
        return real(self, key, values, end)

    monkeypatch.setattr(ForecastEngine, "forecast", failing)
    caplog.set_level(logging.INFO, logger="forecaster.runtime.cycle")

    def cycles(n: int) -> list[str]:
        caplog.clear()
        for k in range(n):
            cycle.run(rule, now + k * STEP)
        return [
            f"{r.levelname} {r.getMessage()}"
            for r in caplog.records
            if r.levelno >= 20 and "cycle fetched" not in r.getMessage()
        ]

    first = cycles(3)
    assert first == [
        "ERROR rule m {'s': 'a'}: forecasting failed (logged again only if the error changes)"
    ]
    assert caplog.records[0].exc_info is not None
    now += 3 * STEP
    assert cycles(3) == []  # the same error: nothing more
    error[0] = "another error"
    now += 3 * STEP
    changed = cycles(2)
    assert len(changed) == 1 and changed[0].startswith("ERROR")
    error.clear()
    now += 2 * STEP
    assert cycles(2) == ["INFO rule m {'s': 'a'}: forecasting works again"]
    assert store.snapshot("m")


def test_a_budget_is_costed_through_the_scale_down_window_of_the_series_hpa(nasa: Trace):
    """What a forecast's pods cost depends on how long the HPA holds them after the demand
    falls. A series pinned by an HPA whose window is known is fitted as every series is
    where that window is the default (a backtest's flag), and an HPA that scales down at
    once buys another band than one that holds its pods 15 minutes."""
    rule = Rule(name="m", query="x{<<.LabelMatchers>>}", history="9d")
    assert rule.quantile is None  # the default: a budget of pod-minutes
    trace = Trace(nasa.start, 60, nasa.counts[: 10 * DAYS])
    labels = {"namespace": "a", "service": "x"}
    now = nasa.start + 10 * DAYS * STEP + SETTLE

    def upper(pinned: int | None, default: int = 300) -> np.ndarray:
        demand = SeriesDemand([rule])
        if pinned is not None:
            demand.pin("hpa", Pin("m", "a", parse_selector("service=x"), scale_down=pinned))
        store = ForecastStore()
        ForecastCycle(
            [rule], TraceSource(trace, labels), store, demand=demand, stabilization=default
        ).run(rule, now)
        snap = store.snapshot("m")
        assert snap is not None
        [fc] = snap.values()
        return fc.upper

    at_once, held = upper(pinned=0), upper(pinned=900)
    np.testing.assert_array_equal(at_once, upper(pinned=None, default=0))
    np.testing.assert_array_equal(held, upper(pinned=None, default=900))
    assert not np.array_equal(at_once, held)
    assert not np.array_equal(upper(pinned=None), held)
