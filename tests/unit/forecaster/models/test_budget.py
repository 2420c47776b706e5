"""A pod-minutes budget instead of a quantile: what it costs is what the HPA would spend,
and each series is held at the quantile its own backtest says the budget buys."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest

from forecaster.config import QUANTILE_RANGE, Rule
from forecaster.evaluation.backtest import Replay, replay
from forecaster.evaluation.hpa_sim import HPASettings, simulate
from forecaster.evaluation.recorded import record
from forecaster.evaluation.scoring import Judge, default_capacity, score
from forecaster.models import SeriesModel
from forecaster.models.calibration import HEADROOM_LIMIT, pod_time
from forecaster.policy import serve
from forecaster.selector import EVERYTHING
from forecaster.sources.trace import Trace, TraceSource
from tests.conftest import shared_trace
from tests.unit.forecaster.models.conftest import DAYS, STEP, end_of


def test_pod_time_is_what_the_simulated_hpa_spends_with_many_pods(july: np.ndarray):
    """Two days of NASA, served as is and as its 5-minute peak ahead: pod_time (in
    target units, with the 300 s scale-down window held) is the simulated HPA's
    pod-minutes to 1 % when pods are fine-grained and react at once."""
    y = july[3 * DAYS : 5 * DAYS]
    ahead = np.lib.stride_tricks.sliding_window_view(np.append(y, [y[-1]] * 4), 5).max(axis=1)
    target = float(y.mean()) / 2000  # thousands of pods: rounding up is negligible
    hpa = HPASettings(
        target_per_pod=target,
        capacity_per_pod=target,
        tolerance=0.0,
        scale_up_pods=10**9,
        max_replicas=10**9,
    )
    held = 300 / STEP  # the window reaches five steps back
    for served in (y, ahead):
        simulated = simulate(0, STEP, y, served, hpa).pod_minutes
        assert pod_time(served, held) * STEP / 60 / target == pytest.approx(simulated, rel=0.01)
    # Without the hold, the cost of bursty values is understated.
    unheld = pod_time(y, 0) * STEP / 60 / target
    assert unheld < 0.97 * simulate(0, STEP, y, y, hpa).pod_minutes
    # At 10-minute steps the 300 s window holds a drop for half a step, which a hold of
    # whole steps (none, or all of it) misjudges by several percent.
    coarse = y[: len(y) // 10 * 10].reshape(-1, 10).mean(axis=1)
    simulated = simulate(0, 600, coarse, coarse, hpa).pod_minutes
    assert pod_time(coarse, 0.5) * 10 / target == pytest.approx(simulated, rel=0.01)
    for whole in (0, 1):
        assert pod_time(coarse, whole) * 10 / target != pytest.approx(simulated, rel=0.02)


def test_a_larger_budget_buys_a_higher_quantile(july: np.ndarray):
    """Fitted on two weeks of NASA: the quantile grows with the budget, from below the
    usual 0.9 for no extra pod-minutes to what the top band covers for three times them."""
    y = july[: 14 * DAYS]
    bought = []
    for budget in (1.0, 1.05, 1.4, 3.0):
        m = SeriesModel(step=STEP, horizon=10, lead=180, quantile=None, budget=budget)
        fit = m.fit(y, end_of(y))
        assert fit.level > 0
        bought.append(fit.quantile)
    assert bought == sorted(bought)
    assert bought[0] < 0.9 < bought[2]
    assert bought[1] < bought[2]
    assert 0.95 < bought[3] <= QUANTILE_RANGE[1]  # the top band's coverage


def test_fixed_quantile_or_budget_not_both():
    with pytest.raises(ValueError, match="not both"):
        SeriesModel(step=STEP, horizon=10, lead=180, quantile=0.9, budget=1.1)


@dataclass(frozen=True)
class Outcome:
    """A replayed week through the simulated HPA, against perfect foresight's."""

    cost: float  # the HPA's pod-minutes over perfect foresight's
    modelled: float  # the same by `pod_time`, the budget's own measure
    beyond: float  # share of requests beyond Ready capacity
    quantile: float  # mean quantile held


def _last_week(trace: Trace, **quantile: float) -> Replay:
    """The last week of a trace replayed at its own step and phase."""
    rule = Rule(
        name="b",
        query="x{<<.LabelMatchers>>}",
        step=trace.resolution,
        phase=trace.phase,
        history="15d",
        **quantile,
    )
    end = trace.end
    start = end - 7 * 86400
    return replay(
        rule, record(TraceSource(trace, {"s": "a"}), rule, EVERYTHING, start, end), start, end
    )


def _hpa(r: Replay) -> HPASettings:
    """The simulated HPA of `scaleahead backtest`: a pod serves a tenth of the p99 demand
    and is Ready after the lead."""
    capacity = default_capacity(r.actual)
    return HPASettings(capacity, capacity, startup=r.rule.lead)


def _through_the_hpa(trace: Trace, **quantile: float) -> Outcome:
    """The last week of a trace replayed and judged through the simulated HPA."""
    r = _last_week(trace, **quantile)
    judge = Judge(r, _hpa(r))
    hpa = judge.method("scaleahead", r.before_floors).hpa
    held = 300 / r.rule.step
    perfect = serve(r.actual, judge.window_max)
    ok = np.isfinite(perfect) & np.isfinite(r.before_floors)
    return Outcome(
        hpa.pod_minutes / judge.bound.pod_minutes,
        pod_time(r.before_floors[ok], held) / pod_time(perfect[ok], held),
        hpa.beyond_capacity_share,
        float(r.quantile.mean()),
    )


def test_the_budget_holds_through_the_simulated_hpa_on_traces_it_never_saw():
    """On bursty ELB traffic, q = 0.9 costs 1.4x perfect foresight's pod-minutes; the
    default budget of 1.1x holds each series to about that, at a lower quantile. On the
    smooth ISP backbone, the same budget buys the top quantile and headroom on it: it
    drops a small fraction of what q = 0.9 drops (the band alone dropped two thirds)."""
    elb = shared_trace("nab_aws_elb_request_count_5min.csv")
    fixed = _through_the_hpa(elb, quantile=0.9)
    budget = _through_the_hpa(elb)
    assert fixed.cost > 1.3
    assert 1.0 < budget.cost < 1.15 and budget.quantile < 0.85
    assert fixed.beyond < budget.beyond  # fewer pods, more dropped: the budget's side
    isp = shared_trace("isp_uk_academic_backbone_5min.csv")
    fixed = _through_the_hpa(isp, quantile=0.9)
    budget = _through_the_hpa(isp)
    assert budget.quantile > 0.95 and budget.cost < 1.1
    assert budget.beyond < 0.25 * fixed.beyond


def test_on_bursty_traffic_the_default_drops_half_what_the_best_baseline_drops():
    """ELB's last week through the simulated HPA, every baseline scored beside: at its
    default budget scaleahead drops at most half the requests the best baseline drops,
    within 1.1x perfect foresight's pod-minutes. Which band shape to spend the budget on
    is decided by the demand its affordable values leave uncovered; keeping the shape
    that covers the most peaks instead dropped 0.51x."""
    r = _last_week(shared_trace("nab_aws_elb_request_count_5min.csv"))
    scores = score(r, _hpa(r))
    by = {m.name: m.hpa for m in scores.methods}
    ours = by.pop("scaleahead")
    best = min(hpa.beyond_capacity_share for hpa in by.values())
    assert set(by) == {"reactive", "seasonal naive", "holt-winters", "crane dsp", "mstl"}
    assert ours.beyond_capacity_share <= 0.5 * best
    assert ours.pod_minutes <= 1.1 * scores.bound.pod_minutes


def test_the_budget_is_kept_out_of_sample_on_a_week_of_nasa():
    """A week of NASA at 1-minute steps, each series' level fixed by its refit's costing:
    what it spends, by the budget's own measure and through the HPA, stays within the
    1.1x it was bought for (holding coverage online instead spent 1.12x and 1.11x)."""
    outcome = _through_the_hpa(shared_trace("nasa_http_1995.csv"), max_pod_minutes=1.1)
    assert outcome.modelled < 1.105
    assert outcome.cost < 1.1
    assert 0.75 < outcome.quantile < 0.9


def test_leftover_budget_buys_headroom_up_to_the_hpa_tolerance(july: np.ndarray):
    """On two weeks of NASA, a budget of three times perfect foresight's affords more
    than the top band: the remainder raises it, by at most the HPA's tolerance. A budget
    that the band exhausts, and a fixed quantile, leave it as is."""
    y = july[: 14 * DAYS]
    fits = {
        budget: SeriesModel(step=STEP, horizon=10, lead=180, quantile=None, budget=budget).fit(
            y, end_of(y)
        )
        for budget in (1.05, 3.0)
    }
    assert 1.0 < fits[3.0].headroom <= HEADROOM_LIMIT
    assert fits[1.05].headroom == pytest.approx(1.0, abs=0.01)
    assert (
        SeriesModel(step=STEP, horizon=10, lead=180, quantile=0.99).fit(y, end_of(y)).headroom
        == 1.0
    )
    # The headroom is in what is served: the upper band is raised by it.
    model = SeriesModel(step=STEP, horizon=10, lead=180, quantile=None, budget=3.0)
    _, upper, _ = model.forecast(fits[3.0], y, end_of(y))
    _, plain, _ = model.forecast(replace(fits[3.0], headroom=1.0), y, end_of(y))
    np.testing.assert_allclose(upper, plain * fits[3.0].headroom)


def test_a_budget_below_what_the_median_costs_buys_a_quantile_under_it():
    """On ELB, a budget of 0.8x perfect foresight's pod-minutes is kept: each series is
    held under the median where the median costs more (held at the median, as before,
    it cost about 0.86x), and the budget reaches where Crane's DSP sits, dropping fewer
    requests for fewer pod-minutes than it."""
    elb = shared_trace("nab_aws_elb_request_count_5min.csv")
    r = _last_week(elb, max_pod_minutes=0.8)
    scores = score(r, _hpa(r))
    by = {m.name: m.hpa for m in scores.methods}
    ours, crane = by["scaleahead"], by["crane dsp"]
    assert r.quantile.mean() < 0.5
    assert ours.pod_minutes / scores.bound.pod_minutes < 0.83
    assert ours.pod_minutes < crane.pod_minutes
    assert ours.beyond_capacity_share < crane.beyond_capacity_share


def test_a_budget_under_what_every_level_costs_lowers_the_band_down_to_reactive(
    july: np.ndarray,
):
    """Where even the lowest band level costs more than the budget, the band is lowered
    towards the actual instead of served at that level anyway: on NASA, a budget of half
    perfect foresight's (less than the actual alone costs) serves the actual alone. On
    LLM client 15, whose lowest level cost about 1.01x whatever was asked under it, a
    budget of 0.85x now costs under 0.95x through the simulated HPA, between what reactive
    scaling costs and what was asked."""
    y = july[: 14 * DAYS]
    model = SeriesModel(step=STEP, horizon=10, lead=180, quantile=None, budget=0.5)
    fit = model.fit(y, end_of(y))
    assert fit.headroom == 0.0
    _, upper, _ = model.forecast(fit, y, end_of(y))
    assert (upper == 0.0).all()  # served: max(actual, 0), the actual
    r = _last_week(shared_trace("servegen_m_mid_client15_10min.csv"), max_pod_minutes=0.85)
    judge = Judge(r, _hpa(r))
    cost = {
        name: judge.method(name, values).hpa.pod_minutes / judge.bound.pod_minutes
        for name, values in (("scaleahead", r.before_floors), ("reactive", r.actual))
    }
    assert cost["reactive"] <= cost["scaleahead"] < 0.95


@pytest.mark.parametrize(
    ("trace", "simple"),
    [
        ("servegen_m_mid_client15_10min.csv", "seasonal naive"),  # an on/off batch client
        ("servegen_m_mid_10min.csv", "seasonal naive"),  # an LLM endpoint's total
    ],
)
def test_a_simple_method_never_dominates_the_default_on_llm_serving(trace: str, simple: str):
    """LLM serving at 10-minute steps with two weeks of history: yesterday's shape is
    hard to beat, and the model with the least point error is not the one whose band
    leaves the least demand uncovered. Chosen by that outcome at the budget, the default
    is not dominated by seasonal naive on the last week, a window no fit saw (chosen by
    point error, client 15 dropped 4.24% at 1.080x against its 3.31% at 1.036x)."""
    r = _last_week(shared_trace(trace))
    scores = score(r, _hpa(r))
    by = {m.name: m.hpa for m in scores.methods}
    ours, theirs = by["scaleahead"], by[simple]
    dominated = (
        theirs.beyond_capacity_share <= ours.beyond_capacity_share
        and theirs.pod_minutes <= ours.pod_minutes
    )
    assert not dominated
    assert ours.beyond_capacity_share < theirs.beyond_capacity_share


def test_the_median_stays_the_least_error_models_where_the_outcome_chose_the_band():
    """On the ISP backbone's last week the budget often spends itself best on seasonal
    naive's band, whose median errs more than the profile's: the point forecast (the
    dashboards' median) stays the model with the least point error, and errs less than
    every baseline at the lead (with seasonal naive's median it erred 1.39x Holt-Winters')."""
    r = _last_week(shared_trace("isp_uk_academic_backbone_5min.csv"))
    assert any(name.startswith("snaive") for name in r.models)  # the outcome's choice
    scores = score(r, _hpa(r))
    errors = {m.name: m.mae_lead for m in scores.methods if m.mae_lead is not None}
    ours = errors.pop("scaleahead")
    assert ours < min(errors.values())


def test_a_budget_holds_on_each_day_of_the_calibration_not_only_on_their_sum():
    """Two days of one actual: perfect foresight costs the first day as much (its peaks
    are the actual), the second half as much again (a surge). A band that serves 100 + z
    everywhere may spend 1.1x on each day: z up to 10, not the 37.5 the two days' sum
    allows, which would spend 1.375x on the calm day (as the next, calm, day would)."""
    from forecaster.models.band import LEVELS, Band
    from forecaster.models.calibration import Backtest, Budget

    n = 2 * 288
    actual = np.full(n, 100.0)
    peak = np.where(np.arange(n) < n // 2, 100.0, 150.0)
    bt = Backtest(np.full((n, 1), 100.0), actual, peak, 1, np.ones(n))
    band = Band(np.linspace(0.0, 100.0, len(LEVELS))[:, None], 1.0, 0.0)
    budget = Budget(bt, 1.1, hold=1.0)
    values = budget.afforded(band)
    halves = (slice(0, n // 2), slice(n // 2, n))
    spent = [pod_time(values[h], 1.0) / pod_time(serve(actual, peak)[h], 1.0) for h in halves]
    assert max(spent) <= 1.1
    assert spent[0] > 1.1 - 100 / len(LEVELS) / 100  # the highest level that holds: z ~ 10
    assert values.max() == pytest.approx(110.0, abs=100 / len(LEVELS))


def test_on_five_minute_social_streams_the_budget_is_kept_and_no_simple_method_wins():
    """The five tweet-volume streams' last weeks (5-minute steps, bursts that come with
    the news), a window no fit saw: at the default budget of 1.1x perfect foresight's
    pod-minutes they spend 1.1x on average and none more than 1.13x (calibrated on
    in-sample profiles and the two days' sum, 1.102x on average and 1.146x on one), and
    no simple method drops fewer requests at no more pod-minutes than the default."""
    costs = []
    for name in ("aapl", "fb", "goog", "ibm", "ko"):
        r = _last_week(shared_trace(f"nab_tweets_{name}_5min.csv"))
        scores = score(r, _hpa(r))
        by = {m.name: m.hpa for m in scores.methods}
        ours = by.pop("scaleahead")
        for method, theirs in by.items():
            assert not (
                theirs.beyond_capacity_share <= ours.beyond_capacity_share
                and theirs.pod_minutes <= ours.pod_minutes
            ), (name, method)
        costs.append(ours.pod_minutes / scores.bound.pod_minutes)
    assert np.mean(costs) <= 1.1, costs
    assert max(costs) <= 1.13, costs
