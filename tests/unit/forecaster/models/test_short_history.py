"""Series too young for the seasonal models: statsforecast's ladder, clean output, bands."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecaster.models.base import ABSURD_FACTOR
from forecaster.models.calibration import per_step_quantile
from forecaster.models.short_history import ShortHistoryForecaster
from forecaster.sources.trace import Trace


def frame(values, uid="a", step=60):
    values = np.asarray(values, dtype=float)
    return pd.DataFrame({"unique_id": uid, "ds": np.arange(len(values)) * step, "y": values})


def test_short_history_gets_a_simpler_model_not_an_error(nasa: Trace):
    model = ShortHistoryForecaster()
    y = nasa.counts[:400] / 60
    out = model.forecast(
        pd.concat([frame(y[:3], "short"), frame(y[:1], "one"), frame(y, "long")]),
        horizon=10,
        step=60,
        quantile=0.9,
    )
    by = dict(tuple(out.groupby("unique_id")))
    assert set(by) == {"short", "one", "long"}
    assert by["long"]["model"].iloc[0] == "ets"
    assert by["short"]["model"].iloc[0] == "naive"
    for g in by.values():
        assert len(g) == 10
        assert np.isfinite(g[["mean", "upper"]].to_numpy()).all()
        assert (g["upper"] >= g["mean"]).all() and (g["mean"] >= 0).all()
    assert list(by["one"]["ds"]) == [60 * k for k in range(1, 11)]


def test_gaps_nan_inf_and_negatives_never_reach_the_output(nasa: Trace):
    y = nasa.counts[1000:1400] / 60
    y[50:80] = np.nan
    y[100] = np.inf
    y[101] = -5.0
    y[-3:] = np.nan  # the newest points are missing: forecast from the last observed one
    out = ShortHistoryForecaster().forecast(frame(y), horizon=10, step=60, quantile=0.9)
    assert np.isfinite(out[["mean", "upper"]].to_numpy()).all()
    assert (out[["mean", "upper"]].to_numpy() >= 0).all()
    assert out["ds"].iloc[0] == (len(y) - 3) * 60  # one step after the last observation


def test_forecasts_are_bounded_by_a_multiple_of_the_recent_max():
    y = np.concatenate([np.zeros(200), np.linspace(0, 1000, 100) ** 2 / 1000])
    out = ShortHistoryForecaster().forecast(frame(y), horizon=10, step=60, quantile=0.99)
    assert out["upper"].max() <= ABSURD_FACTOR * y.max()


def test_a_decreasing_series_never_goes_negative():
    y = np.linspace(100, 0.1, 300)
    out = ShortHistoryForecaster().forecast(frame(y), horizon=10, step=60, quantile=0.9)
    assert (out["mean"] >= 0).all()


def test_young_series_bands_cover_the_lead_window_peak(nasa: Trace):
    """200 six-hour NASA histories, forecast in one batch: at the per-step quantile the
    cycle asks for, the served value covers the 4-step peak about q of the time (per-step
    bands at q itself cover it about 70% of the time)."""
    y = nasa.counts / 60
    rng = np.random.default_rng(1)
    origins = rng.choice(np.arange(3 * 1440, 28 * 1440), 200, replace=False)
    history = pd.concat(frame(y[o - 359 : o + 1], str(i)) for i, o in enumerate(origins))
    q, w = 0.9, 4
    out = ShortHistoryForecaster().forecast(
        history, horizon=10, step=60, quantile=per_step_quantile(q, w)
    )
    by = dict(tuple(out.groupby("unique_id")))
    covered = [
        y[o + 1 : o + 1 + w].max() <= max(y[o], by[str(i)]["upper"].to_numpy()[:w].max())
        for i, o in enumerate(origins)
        if np.isfinite(y[o + 1 : o + 1 + w]).all()
    ]
    assert len(covered) > 150
    assert 0.84 <= np.mean(covered) <= 0.96


def test_the_naive_band_widens_over_no_more_steps_than_were_watched():
    """Under MIN_POINTS points the band is the quantile of the step-to-step spread,
    widening as a random walk's for as many steps as there are differences: from one
    difference a walk cannot be told from noise (widening anyway served a newborn steady
    series a fifth above its rate within four steps)."""
    y = [14.3, 15.1, 14.7]
    out = ShortHistoryForecaster().forecast(frame(y), horizon=5, step=60, quantile=0.9)
    spread = np.sqrt(np.mean(np.diff(y) ** 2))
    np.testing.assert_allclose(out["mean"], 14.7)
    widening = np.sqrt([1, 2, 2, 2, 2])
    np.testing.assert_allclose(out["upper"], 14.7 + 1.2815515655 * spread * widening, rtol=1e-6)
    two = ShortHistoryForecaster().forecast(frame([9.0, 10.0]), horizon=3, step=60, quantile=0.9)
    np.testing.assert_allclose(two["upper"], 10.0 + 1.2815515655, rtol=1e-6)  # flat
    one = ShortHistoryForecaster().forecast(frame([9.0]), horizon=3, step=60, quantile=0.9)
    np.testing.assert_allclose(one[["mean", "upper"]].to_numpy(), 9.0)
