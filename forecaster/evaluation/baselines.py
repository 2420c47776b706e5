"""Baseline forecasts to compare scaleahead with, on one series of rates on a grid.

Each returns F[i, h-1]: the forecast made at origin index origins[i] (using only values
at indices <= origins[i]) for index origins[i] + h, h = 1..H.
"""

from __future__ import annotations

import warnings

import numpy as np

from forecaster.models.base import ffill
from forecaster.policy import serve, window_peak
from forecaster.times import DAY


def served(actual: np.ndarray, paths: np.ndarray, window: int) -> np.ndarray:
    """The served-value rule applied to a baseline's forecasts from each origin (NaN
    where it has neither a forecast nor an actual)."""
    value = serve(actual, window_peak(paths, window))
    return np.where(np.isfinite(value), value, np.nan)


def reactive(y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """The last actual value, for every step ahead."""
    return np.repeat(y[origins][:, None], horizon, axis=1)


def seasonal_naive(y: np.ndarray, origins: np.ndarray, horizon: int, step: int) -> np.ndarray:
    """The value one day earlier (NaN where that is missing)."""
    p = DAY // step
    back = origins[:, None] + np.arange(1, horizon + 1)[None, :] - p
    out = np.full(back.shape, np.nan)
    ok = back >= 0
    out[ok] = y[back[ok]]
    return out


HW_ALPHAS = np.array([0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9])
HW_GAMMAS = np.array([0.001, 0.01, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7])
"""The smoothing parameters Holt-Winters' fit chooses from (every pair is tried)."""


def hw_smooth(
    y: np.ndarray,
    phase: np.ndarray,
    level: np.ndarray,
    season: np.ndarray,
    alpha: np.ndarray,
    gamma: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Additive Holt-Winters without trend, in statsmodels' form, for K parameter pairs
    at once: for each y_t, e = y_t - l - s[phase_t]; l += alpha e; s[phase_t] += gamma e
    (l_t = alpha (y_t - s_{t-m}) + (1 - alpha) l_{t-1}; s_t = gamma (y_t - l_{t-1}) +
    (1 - gamma) s_{t-m}). `level` (K,) and `season` (K, m) are updated in place; holes
    (NaN) leave them as they are. Returns them and the sum of squared one-step errors."""
    sse = np.zeros(len(alpha))
    rows = np.arange(len(alpha))
    for v, k in zip(y.tolist(), phase.tolist(), strict=True):
        if v != v:
            continue
        e = v - level - season[rows, k]
        sse += e * e
        level += alpha * e
        season[rows, k] += gamma * e
    return level, season, sse


def hw_start(y: np.ndarray, phase: np.ndarray, period: int) -> tuple[float, np.ndarray]:
    """Holt-Winters' initial state from a window of whole periods, in the spirit of
    statsmodels' estimated start: the first period's mean as the level, and as the season
    each phase's mean deviation from its period's mean over the whole window."""
    n = len(y) // period * period
    days = ffill(y[:n]).reshape(-1, period)
    season = np.zeros(period)
    season[phase[:period]] = np.mean(days - days.mean(axis=1, keepdims=True), axis=0)
    return float(days[0].mean()), season


def fit_holt_winters(
    y: np.ndarray, phase: np.ndarray, level0: float, season0: np.ndarray
) -> tuple[float, float]:
    """The (alpha, gamma) of HW_ALPHAS x HW_GAMMAS with the least squared one-step error
    over y from the state (level0, season0), which `hw_start` reads off y."""
    a, g = np.meshgrid(HW_ALPHAS, HW_GAMMAS, indexing="ij")
    alpha, gamma = a.ravel(), g.ravel()
    level = np.full(len(alpha), level0)
    season = np.repeat(season0[None, :], len(alpha), axis=0)
    _, _, sse = hw_smooth(y, phase, level, season, alpha, gamma)
    best = int(np.argmin(sse))
    return float(alpha[best]), float(gamma[best])


def hw_forecasts(
    y: np.ndarray,
    phase: np.ndarray,
    level: float,
    season: np.ndarray,
    alpha: float,
    gamma: float,
    horizon: int,
    skip: int,
) -> np.ndarray:
    """One parameter pair's Holt-Winters (`hw_smooth`'s recursions, in plain Python floats,
    several times faster for one pair) from the state (level, season) over y: row r is
    the forecast for the `horizon` steps after y[skip + r], made once it is absorbed."""
    s = season.tolist()
    p = len(s)
    rows = []
    for t, (v, k) in enumerate(zip(y.tolist(), phase.tolist(), strict=True)):
        if v == v:
            e = v - level - s[k]
            level += alpha * e
            s[k] += gamma * e
        if t >= skip:
            rows.append([level + s[(k + h) % p] for h in range(1, horizon + 1)])
    return np.array(rows, dtype=np.float64).reshape(-1, horizon)


def holt_winters(
    y: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    step: int,
    refit_every: int = 6 * 3600,
    fit_window: int = 3 * DAY,
) -> np.ndarray:
    """Holt-Winters, additive daily season, no trend: refit every 6 hours on the last 3
    days (as the predictive-horizontal-pod-autoscaler project uses statsmodels'); in
    between, the state absorbs each new observation. The fit is a grid search of the
    smoothing parameters on the one-step error (`fit_holt_winters`), the recursions are
    statsmodels' (`hw_smooth`, checked against it in the tests)."""
    p = DAY // step
    refit = refit_every // step
    fit_len = fit_window // step
    out = np.full((len(origins), horizon), np.nan)
    phase = np.arange(len(y)) % p
    i = 0
    while i < len(origins):
        o = int(origins[i])
        lo = max(0, o + 1 - fit_len)
        if o + 1 - lo < 2 * p + 1:
            i += 1
            continue  # not two seasons yet: no forecast (NaN)
        level0, season0 = hw_start(y[lo : o + 1], phase[lo : o + 1], p)
        a, g = fit_holt_winters(y[lo : o + 1], phase[lo : o + 1], level0, season0)
        # The origins until the next refit: the fitted state absorbs each step up to them.
        j = i + int(np.searchsorted(origins[i:], o + refit))
        last = int(origins[j - 1])
        rows = hw_forecasts(
            y[lo : last + 1], phase[lo : last + 1], level0, season0, a, g, horizon, o - lo
        )
        out[i:j] = rows[origins[i:j] - o]
        i = j
    return np.maximum(out, 0.0)


DSP_PERIODS = ((DAY, 3), (7 * DAY, 2))
"""Crane's DSP predictor: the cycles it checks, each with the number of cycles it reads."""
DSP_SHUFFLES = 20
"""Shuffles of the history whose largest spectral amplitude (P99) is the noise threshold
(Crane shuffles 100 times; 20 keep a week's replay under two seconds)."""
DSP_COMPONENTS = 20
"""Frequency components its FFT estimator keeps (the documented maxNumOfSpectrumItems)."""


def dsp_clean(x: np.ndarray) -> np.ndarray:
    """Crane's pre-processing: holes filled linearly between their neighbours, values
    outside the P0.1..P99.9 range replaced by the value before them."""
    ok = np.isfinite(x)
    if not ok.any():
        return np.zeros_like(x)
    idx = np.arange(len(x))
    x = np.interp(idx, idx[ok], x[ok])
    lo, hi = np.percentile(x, [0.1, 99.9])
    bad = (x < lo) | (x > hi)
    keep = np.where(bad, 0, idx)
    np.maximum.accumulate(keep, out=keep)
    return x[keep]


def _circular_acf(x: np.ndarray) -> np.ndarray:
    z = (x - x.mean()) / (x.std() or 1.0)
    f = np.fft.rfft(z)
    return np.fft.irfft(f * np.conj(f), len(z)) / len(z)


def _on_peak(acf: np.ndarray, lag: int, width: int) -> bool:
    """Whether acf has a peak at `lag`: a line fitted to each side rises towards it."""
    left = acf[max(1, lag - width) : lag + 1]
    right = acf[lag : lag + width + 1]
    if len(left) < 3 or len(right) < 3:
        return False
    return bool(
        np.polyfit(np.arange(len(left)), left, 1)[0] > 0
        and np.polyfit(np.arange(len(right)), right, 1)[0] < 0
    )


def dsp_fit(x: np.ndarray, step: int, rng: np.random.Generator) -> np.ndarray | None:
    """One cycle of Crane's DSP forecast from a cleaned history x ending at a grid point,
    or None when x has none of DSP_PERIODS. For each period with enough history: the
    frequencies whose amplitude beats the P99 of shuffled copies' largest one are the
    candidate periods; the period counts if it is one of them and the circular ACF has a
    peak there; of those, the one with the highest ACF is taken. The forecast is the
    inverse FFT of the DSP_COMPONENTS largest components of the last cycles read."""
    best: tuple[float, np.ndarray] | None = None
    for period, cycles in DSP_PERIODS:
        p = period // step
        n = p * cycles
        if len(x) < n:
            continue
        z = x[-n:]
        spectrum = np.fft.rfft(z)  # its amplitudes but the first do not depend on the mean
        noise = [
            np.abs(np.fft.rfft(rng.permutation(z) - z.mean()))[1:].max()
            for _ in range(DSP_SHUFFLES)
        ]
        threshold = float(np.percentile(noise, 99))
        k = cycles  # the frequency of one cycle in n points
        if np.abs(spectrum[k]) <= threshold:
            continue
        acf = _circular_acf(z)
        if not _on_peak(acf, p, max(3, p // 20)):
            continue
        if best is None or acf[p] > best[0]:
            keep = np.argsort(-np.abs(spectrum[1:]))[:DSP_COMPONENTS] + 1
            kept = np.zeros_like(spectrum)
            kept[0], kept[keep] = spectrum[0], spectrum[keep]
            best = float(acf[p]), np.fft.irfft(kept, n)
    return None if best is None else best[1]


def crane_dsp(
    y: np.ndarray, origins: np.ndarray, horizon: int, step: int, refit_every: int = 3600
) -> np.ndarray:
    """gocrane/crane's DSP predictor, written from its documented algorithm (`dsp_fit`),
    re-predicted every hour: the forecast for index o + h is the reconstructed cycle at
    that point, NaN where no cycle is found (the HPA then follows the actual)."""
    rng = np.random.default_rng(0)
    longest = max(period * cycles for period, cycles in DSP_PERIODS) // step
    refit = refit_every // step
    out = np.full((len(origins), horizon), np.nan)
    cycle: np.ndarray | None = None
    fitted_at = None
    for i, o in enumerate(origins):
        if fitted_at is None or o - fitted_at >= refit:
            cycle = dsp_fit(dsp_clean(y[max(0, o + 1 - longest) : o + 1]), step, rng)
            fitted_at = o
        if cycle is not None:
            # The reconstruction repeats with its length; its last point is index fitted_at.
            ahead = o - fitted_at + np.arange(1, horizon + 1)
            out[i] = cycle[(ahead - 1) % len(cycle)]
    return np.maximum(out, 0.0)


MSTL_BUCKET = 3600
"""MSTL reads hourly means: on minutes, one fit with a weekly season takes minutes."""
MSTL_REFIT = 6 * 3600
"""Hours between MSTL's refits, as Holt-Winters' (a fit takes about 0.1 s)."""


def mstl(
    y: np.ndarray, origins: np.ndarray, horizon: int, step: int, history: int = 15 * DAY
) -> np.ndarray:
    """statsforecast's MSTL with daily and weekly seasons (its defaults otherwise), on
    hourly means, as its documentation shows it; refit every 6 hours on up to 15 days,
    forecasting each hour ahead; a step's forecast is its hour's. NaN before two weeks."""
    from statsforecast.models import MSTL

    per = MSTL_BUCKET // step
    out = np.full((len(origins), horizon), np.nan)
    hourly: np.ndarray | None = None
    fitted_at, first = None, 0
    for i, o in enumerate(origins):
        if fitted_at is None or o - fitted_at >= MSTL_REFIT // step:
            stop = (o + 1) // per * per  # whole hours up to o
            start = max(0, stop - history // step) // per * per
            buckets = ffill(y[start:stop]).reshape(-1, per).mean(axis=1)
            fitted_at = o
            hourly = None
            if len(buckets) >= 2 * 168 and np.isfinite(buckets).all():
                h = (MSTL_REFIT + horizon * step) // MSTL_BUCKET + 2
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = MSTL(season_length=[24, 168]).fit(buckets)
                    hourly = np.asarray(model.predict(h=h)["mean"])
                first = stop  # index of the first step forecast
        if hourly is not None:
            ahead = (o + np.arange(1, horizon + 1) - first) // per
            out[i] = hourly[np.clip(ahead, 0, len(hourly) - 1)]
    return np.maximum(out, 0.0)
