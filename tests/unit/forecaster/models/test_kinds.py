"""The contract every model kind keeps: rolling-origin paths of the right shape, finite,
from data up to each origin only, and a fit that forecasts what its paths would."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster.models import seasonality as sz
from forecaster.models.base import Model, SeriesContext
from forecaster.models.ladder import candidates_for
from forecaster.models.profile import ProfileAdditive
from forecaster.times import DAY, WEEK
from tests.unit.forecaster.models.conftest import STEP, end_of

H = 10
KINDS = candidates_for(15 * DAY, {DAY: 1.0, WEEK: 1.0}, sub_daily=(3600,))
DAILY_PROFILE = ProfileAdditive(period=DAY, alpha=0.2)


def context(y: np.ndarray) -> SeriesContext:
    ctx = SeriesContext(y.copy(), end_of(y), STEP, H)
    for period in (DAY, WEEK):
        base = ctx.profiles[period, ()] = sz.profile(y, ctx.end, STEP, period)
        ctx.profiles[period, (3600,)] = sz.layered_profile(y, ctx.end, STEP, base, (3600,))
    return ctx


def test_the_ladder_offers_every_kind():
    assert {m.kind for m in KINDS} == {
        "naive",
        "level",
        "snaive",
        "profile-add",
        "profile-mult",
        "hw",
    }


@pytest.mark.parametrize("kind", KINDS, ids=[f"{m.name}-{i}" for i, m in enumerate(KINDS)])
def test_paths_use_only_data_up_to_each_origin(july, kind: Model):
    y = july[: 15 * 1440]
    ctx = context(y)
    origins = np.arange(len(y) - 3 * 1440, len(y) - H, 97)
    paths = kind.paths(ctx, origins)
    assert paths.shape == (len(origins), H) and np.isfinite(paths).all()
    # Change everything after one origin (profiles stay: they are learnt at the refit).
    o = int(origins[len(origins) // 2])
    later = ctx.y.copy()
    later[o + 1 :] *= 5.0
    moved = kind.paths(SeriesContext(later, ctx.end, STEP, H, ctx.profiles), origins)
    keep = origins <= o
    np.testing.assert_array_equal(moved[keep], paths[keep])
    # ...and later origins see it (a seasonal naive only once its lag reaches past o).
    reaches = (
        origins[~keep] + H - kind.period // STEP > o if kind.kind == "snaive" else ~keep[~keep]
    )
    if reaches.any():  # a weekly lag never reaches past o within these three days
        assert not np.array_equal(moved[~keep][reaches], paths[~keep][reaches])


@pytest.mark.parametrize("kind", KINDS, ids=[f"{m.name}-{i}" for i, m in enumerate(KINDS)])
def test_a_fit_forecasts_what_the_last_path_says(july, kind: Model):
    y = july[: 15 * 1440]
    ctx = context(y)
    fitted = kind.fit(ctx)
    steps = kind.history_steps
    recent = y if steps is None else y[-steps:]
    mean = fitted.advance(y, ctx.end, STEP).predict(recent, ctx.end, STEP, H)
    expected = kind.paths(ctx, np.array([len(y) - 1]))[0]
    # Profiles are kept in half precision (within 2**-11 of each value). Holt-Winters' fit
    # smooths through the last three periods, its paths from two periods before the first
    # origin: close, not equal.
    np.testing.assert_allclose(mean, expected, rtol=0.05 if kind.kind == "hw" else 1e-3)


@pytest.mark.parametrize("kind", KINDS, ids=[f"{m.name}-{i}" for i, m in enumerate(KINDS)])
def test_a_fit_brought_over_many_points_at_once_is_the_fit_brought_over_each(july, kind: Model):
    """What the engine relies on under a budget, where it brings a fit from the last point
    forecast to the newest in one go (a restart, a missed cycle, a refit's grid point):
    the same state, to the bit, as one point at a time (a hole among them included)."""
    y = july[: 15 * 1440].copy()
    y[-40] = np.nan
    ctx = context(y[:-90])
    fitted = kind.fit(ctx)
    stepwise = fitted
    for k in range(89, -1, -1):
        seen = y[: len(y) - k]
        stepwise = stepwise.advance(seen, end_of(seen), STEP)
    at_once = fitted.advance(y, end_of(y), STEP)
    recent = y if kind.history_steps is None else y[-kind.history_steps :]
    np.testing.assert_array_equal(
        at_once.predict(recent, end_of(y), STEP, H), stepwise.predict(recent, end_of(y), STEP, H)
    )
    if kind.kind == "hw":  # a state that moves
        assert (
            at_once.predict(recent, end_of(y), STEP, H)[0]
            != fitted.predict(recent, end_of(y), STEP, H)[0]
        )


@pytest.mark.parametrize("top", [3e-3, 1.0, 2.5e5, 4e7])
def test_a_fit_keeps_its_profile_in_half_precision_at_any_magnitude(top: float):
    """A profile costs a fit 2 bytes a phase, and reads back within 2**-11 of each value,
    whether the series runs at a few requests an hour or far above float16's 65,504."""
    phase = np.arange(1440)
    profile = top * (0.02 + (1 + np.sin(2 * np.pi * phase / 1440)) / 2)
    ctx = SeriesContext(profile.copy(), end_of(profile), STEP, 10)
    kind = DAILY_PROFILE
    ctx.profiles[kind.season] = profile
    fitted = kind.fit(ctx)
    assert fitted.profile is not None and fitted.profile.dtype == np.float16
    np.testing.assert_allclose(fitted.seasonal(), profile, rtol=2**-11)


def test_a_flat_zero_profile_is_kept_as_zeros():
    ctx = SeriesContext(np.zeros(1440), 1440 * STEP, STEP, 10)
    kind = DAILY_PROFILE
    ctx.profiles[kind.season] = np.zeros(1440)
    assert np.array_equal(kind.fit(ctx).seasonal(), np.zeros(1440))
