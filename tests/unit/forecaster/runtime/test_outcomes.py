from __future__ import annotations

import numpy as np

from forecaster.config import Rule
from forecaster.runtime.cycle import ForecastCycle
from forecaster.runtime.demand import Pin, SeriesDemand
from forecaster.runtime.store import ForecastStore
from forecaster.selector import EVERYTHING
from forecaster.sources.trace import Trace, TraceSource
from forecaster.times import SETTLE

STEP = 60
DAYS = 1440


def test_tallies_match_an_independent_count_over_real_cycles(nasa: Trace):
    """Three hours of minute cycles on NASA: each cycle's served value (from the store)
    against the trace's own peak over the lead window that followed."""
    rule = Rule(name="m", query="x{<<.LabelMatchers>>}", history="9d")
    trace = Trace(nasa.start, STEP, nasa.counts[: 11 * DAYS])
    store = ForecastStore()
    cycle = ForecastCycle([rule], TraceSource(trace, {"s": "a"}), store)
    t0 = nasa.start + 10 * DAYS * STEP + 9 * 60 * STEP  # 09:00 on day 10, traffic rising
    rate = trace.counts / STEP  # the value of minute i is labelled start + (i + 1) * STEP
    window = rule.lead // STEP + 1
    windows = covered = 0
    abs_error = 0.0
    cycles = 180
    for k in range(cycles):
        end = t0 + k * STEP
        cycle.run(rule, end + SETTLE)
        [fc] = store.snapshot("m").values()  # type: ignore[union-attr]
        served = max(fc.last_actual, float(fc.upper[:window].max()))
        last = (end - trace.start) // STEP - 1 + window  # index of the window's last step
        if k * STEP + window * STEP <= (cycles - 1) * STEP:  # realised before the last cycle
            windows += 1
            covered += int(rate[last - window + 1 : last + 1].max() <= served)
            abs_error += abs(float(fc.point[window - 1]) - rate[last])
    [tally] = cycle.outcomes["m"].tallies()
    print(f"judged {tally.windows} windows, covered {tally.covered}")
    assert tally.labels == {"s": "a"}
    assert (tally.windows, tally.covered) == (windows, covered)
    assert tally.windows == cycles - window
    assert np.isclose(tally.abs_error, abs_error, rtol=1e-5)  # the book holds float32
    assert 0.7 * windows < covered < windows  # the band's promise is 90%, and it is a band


def test_windows_with_a_hole_or_without_a_cycle_are_not_judged(nasa: Trace):
    rule = Rule(name="m", query="x{<<.LabelMatchers>>}", history="9d")
    counts = nasa.counts[: 11 * DAYS].copy()
    t0 = nasa.start + 10 * DAYS * STEP
    hole = (t0 - nasa.start) // STEP + 2  # a missing minute inside the first lead window
    counts[hole] = np.nan
    cycle = ForecastCycle(
        [rule], TraceSource(Trace(nasa.start, STEP, counts), {"s": "a"}), ForecastStore()
    )
    for k in (0, 10, 11, 30):  # cycles 1 to 9 and 12 to 29 did not run
        cycle.run(rule, t0 + k * STEP + SETTLE)
    [tally] = cycle.outcomes["m"].tallies()
    # The cycle at 0 covers a window with the hole; 10 and 11 were judged by the one at 30;
    # the one at 30 waits for its window.
    assert tally.windows == 2


def test_a_measured_lead_is_judged_over_the_window_it_was_served_for(nasa: Trace):
    """A workload whose pods take 6 minutes to start (an HPA pins its series with that
    lead): each served value covers the steps labelled (t, t + 6 min + step], 7 of them,
    and is judged over exactly those, counted here from the timestamps alone."""
    rule = Rule(name="m", query="x{<<.LabelMatchers>>}", history="9d", lead_max="6m")
    labels = {"namespace": "shop", "service": "a"}
    trace = Trace(nasa.start, STEP, nasa.counts[: 11 * DAYS])
    demand = SeriesDemand([rule])
    demand.pin("hpa", Pin("m", "shop", EVERYTHING, lead=360, owner="HPA shop/a"))
    store = ForecastStore()
    cycle = ForecastCycle([rule], TraceSource(trace, labels), store, demand=demand)
    t0 = nasa.start + 10 * DAYS * STEP + 9 * 60 * STEP  # 09:00 on day 10, traffic rising
    rate = trace.counts / STEP
    windows = covered = 0
    cycles = 60
    for k in range(cycles):
        end = t0 + k * STEP
        cycle.run(rule, end + SETTLE + 1)  # a second late: the demand sees it as asked
        [fc] = store.snapshot("m").values()  # type: ignore[union-attr]
        assert fc.lead == 360
        ahead = (fc.ds > end) & (fc.ds <= end + 360 + STEP)  # the steps served for
        served = max(fc.last_actual, float(fc.upper[ahead].max()))
        labelled = fc.ds[ahead]
        if labelled[-1] <= t0 + (cycles - 1) * STEP:  # realised by the last cycle
            windows += 1
            realised = rate[(labelled - trace.start) // STEP - 1]
            covered += int(realised.max() <= served)
    [tally] = cycle.outcomes["m"].tallies()
    assert tally.windows == windows == cycles - 7  # 4 with the rule's 3-minute lead
    assert tally.covered == covered
