"""Shared by the model tests: 16 days of real NASA traffic, a model, a grid end."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster.models import SeriesModel
from forecaster.sources.trace import Trace

STEP = 60
DAYS = 1440  # steps in a day


@pytest.fixture(scope="module")
def july(nasa: Trace) -> np.ndarray:
    """16 complete days of NASA-HTTP in July 1995, as requests per second."""
    y = nasa.counts[2 * DAYS : 18 * DAYS] / 60
    assert np.isfinite(y).all()
    return y


def model(quantile: float = 0.9) -> SeriesModel:
    return SeriesModel(step=STEP, horizon=10, lead=180, quantile=quantile)


def end_of(y: np.ndarray, start: int = 1_000_000 * STEP) -> int:
    """A grid end aligned so that phases are those of the trace's own clock."""
    return start + (len(y) - 1) * STEP
