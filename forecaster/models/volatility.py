"""How much a series has been moving lately: the scale of a band that follows volatility."""

from __future__ import annotations

import numpy as np

from forecaster.models.base import ewma, ffill

VOLATILITY_HALFLIFE = 3600
"""Seconds over which a band that follows volatility forgets a move: surges come in
clusters that last minutes to an hour."""
VOLATILITY_MEMORY = 10
"""Half-lives of history the volatility now is read from (the rest weighs 2**-10)."""
VOLATILITY_RANGE = (0.25, 4.0)
"""The most such a band narrows and widens against its calibration's median."""


def volatility_now(y: np.ndarray, step: int) -> float:
    """The series' volatility at its last value (`volatility`), read from its last
    VOLATILITY_MEMORY half-lives only (to a part in a thousand)."""
    return float(volatility(y[-(VOLATILITY_MEMORY * VOLATILITY_HALFLIFE // step + 1) :], step)[-1])


def volatility(y: np.ndarray, step: int) -> np.ndarray:
    """How much the series has been moving at each index, from the values up to it: the
    exponentially weighted mean of its absolute step-to-step changes, with a half-life
    of VOLATILITY_HALFLIFE (holes carry the last value)."""
    x = ffill(np.asarray(y, dtype=np.float64))
    if len(x) == 0:
        return x
    moves = np.abs(np.diff(x, prepend=x[0]))
    return ewma(moves, 1.0 - 0.5 ** (step / VOLATILITY_HALFLIFE))
