"""What a model kind is, the series it is fitted on, and the clean-up every forecast gets.

A model kind is a small frozen object in statsforecast's spirit: `fit` learns what it
keeps between refits, and the `Fitted` it returns forecasts the mean ahead. `paths` gives
the rolling-origin forecasts from many origins at once, by which candidates are chosen
and their bands calibrated. Adding a kind is one such class plus one line of
`forecaster.models.ladder`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from scipy.signal import lfilter

from forecaster.models import seasonality as sz
from forecaster.times import DAY, WEEK, format_duration

LEVEL_WINDOW = 2000
"""Steps of history a level-type forecast reads (enough for alpha >= 0.005)."""

Season = tuple[int, tuple[int, ...]]
"""A profile's cycles: its period and the shorter cycles layered on it (seconds)."""

ABSURD_FACTOR = 10.0
"""No forecast exceeds this multiple of the series' recent maximum."""


@dataclass
class SeriesContext:
    """One series prepared for a model: values on the grid (NaN: hole or masked outage)
    ending at grid point `end`, the horizon in steps, and the profiles of its periods."""

    y: np.ndarray
    end: int
    step: int
    horizon: int
    profiles: dict[Season, np.ndarray] = field(default_factory=dict)

    def profile_at(self, season: Season, n_future: int) -> np.ndarray:
        """The season's profile at every index of y plus n_future steps ahead."""
        p = season[0] // self.step
        ph = sz.phases(self.end + n_future * self.step, len(self.y) + n_future, self.step, p)
        return self.profiles[season][ph]

    def future(self, origins: np.ndarray) -> np.ndarray:
        """Indices origins[i] + h for h = 1..horizon, one row per origin."""
        return origins[:, None] + np.arange(1, self.horizon + 1)[None, :]


class Model(ABC):
    """A model kind with its parameters; `period` is 0 for non-seasonal kinds."""

    kind: ClassVar[str]
    history_steps: ClassVar[int | None] = LEVEL_WINDOW
    """Newest steps a forecast reads (None: all of the history)."""
    period: int
    """Seconds of the season the kind follows; 0 for none."""
    layers: tuple[int, ...] = ()
    """Shorter cycles (seconds, each dividing `period`) layered on the period's profile."""

    @property
    def season(self) -> Season:
        """The profile this kind reads."""
        return self.period, self.layers

    @property
    def name(self) -> str:
        """Kind and cycles, e.g. "profile-add/day" or "profile-add/week+1h" (what /metrics
        and backtests show)."""
        if not self.period:
            return self.kind
        cycles = [{DAY: "day", WEEK: "week"}.get(self.period, format_duration(self.period))]
        return f"{self.kind}/" + "+".join(cycles + [format_duration(c) for c in self.layers])

    @abstractmethod
    def paths(self, ctx: SeriesContext, origins: np.ndarray) -> np.ndarray:
        """Mean forecasts F[i, h-1], h = 1..horizon, made at each origin index from the
        values up to it only."""

    def fit(self, ctx: SeriesContext) -> Fitted:
        """What this model keeps between refits: by default the profile it reads."""
        return Fitted(self, *half(ctx.profiles[self.season])) if self.period else Fitted(self)


def half(profile: np.ndarray) -> tuple[np.ndarray, float]:
    """A profile as a fit keeps it: in half precision, in units of its largest magnitude
    (each value within 2**-11 of itself, or of the largest under 2**-14 of it: a profile
    is a median of noisy days, good to a few percent), and that unit."""
    top = float(np.nanmax(np.abs(profile))) if profile.size else 0.0
    unit = top if np.isfinite(top) and top > 0.0 else 1.0
    return (profile / unit).astype(np.float16), unit


@dataclass(frozen=True)
class Fitted:
    """A fitted model: forecasts the mean from the newest history, keeps its own state."""

    model: Model
    profile: np.ndarray | None = None  # half precision, in units of `unit` (`half`)
    unit: float = 1.0

    def seasonal(self) -> np.ndarray:
        """The profile the model reads, in the series' units."""
        assert self.profile is not None
        return self.profile.astype(np.float64) * self.unit

    def advance(self, y: np.ndarray, end: int, step: int) -> Fitted:
        """This fit brought up to history y ending at `end` (stateless kinds: itself)."""
        return self

    def predict(self, y: np.ndarray, end: int, step: int, horizon: int) -> np.ndarray:
        """The mean for the `horizon` steps after `end`, from history y ending at `end`."""
        ctx = SeriesContext(y, end, step, horizon)
        if self.model.period:
            ctx.profiles[self.model.season] = self.seasonal()
        return self.model.paths(ctx, np.array([len(y) - 1]))[0]


def ffill(x: np.ndarray) -> np.ndarray:
    """Forward-fill NaNs (leading NaNs take the first finite value; all NaN: zeros)."""
    ok = np.isfinite(x)
    if ok.all() or not ok.any():
        return x if ok.any() else np.zeros_like(x)
    idx = np.where(ok, np.arange(len(x)), 0)
    np.maximum.accumulate(idx, out=idx)
    out = x[idx]
    first = int(np.argmax(ok))
    out[:first] = x[first]
    return out


def ewma(x: np.ndarray, alpha: float) -> np.ndarray:
    """Exponentially weighted mean at every index; holes carry the last value."""
    x = ffill(x)
    out, _ = lfilter([alpha], [1.0, alpha - 1.0], x, zi=[(1.0 - alpha) * x[0]])
    return np.asarray(out)


def clip_mean(
    mean: np.ndarray, last: np.ndarray | float, recent_max: np.ndarray | float
) -> np.ndarray:
    """The point forecast made safe to serve: NaN becomes the last observation, and values
    are clipped to [0, ABSURD_FACTOR x the recent maximum]."""
    cap = ABSURD_FACTOR * np.asarray(recent_max)
    return np.clip(np.where(np.isfinite(mean), mean, last), 0.0, cap)


def clip_band(band: np.ndarray, mean: np.ndarray, recent_max: np.ndarray | float) -> np.ndarray:
    """A quantile of the band (the upper band, the median) made safe to serve: never
    negative, never NaN (the clipped mean instead), and at most ABSURD_FACTOR x the recent
    maximum unless the mean itself is higher. It may lie below the mean: a quantile under
    0.5 is served as calibrated."""
    cap = ABSURD_FACTOR * np.asarray(recent_max)
    return np.clip(np.where(np.isfinite(band), band, mean), 0.0, np.maximum(cap, mean))
