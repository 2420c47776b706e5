"""The per-rule history grid."""

from __future__ import annotations

import numpy as np

from forecaster.runtime.history import HistoryBook, without_warmup
from forecaster.sources.base import RangeSeries


def test_history_book_advances_and_keeps_holes():
    book = HistoryBook(step=60, window=600)  # 10 slots
    labels = {"s": "a"}
    ts = np.arange(60, 601, 60, dtype=np.int64)
    book.advance(600, [RangeSeries(labels, ts, ts / 60.0)])
    assert book.fetch_start(900) == 540  # re-read the newest known steps, then what is new
    book.advance(900, [RangeSeries(labels, np.array([840, 900]), np.array([14.0, 15.0]))])
    [key] = book.series_keys()
    y = book.frame([key], ["a"])["y"].to_numpy()
    # Grid 360 .. 900: the old values moved left, 660..780 were never fetched (holes).
    np.testing.assert_array_equal(y, [6, 7, 8, 9, 10, np.nan, np.nan, np.nan, 14, 15])
    seen = book.observed(key)
    assert (seen.last, seen.last_value) == (900, 15.0)
    assert seen.first == 360  # the oldest sample still inside the window
    book.advance(900 + 600, [])  # nothing for a whole window: the series is forgotten
    assert len(book) == 0


def test_the_warm_up_after_every_start_is_left_out():
    nan = np.nan
    y = np.array([5, 6, nan, nan, 1, 3, 5, 5, nan, 2, 5, 5], dtype=float)
    out = without_warmup(y, 2)
    # Observed from the first slot: no start visible there. After each hole, the two
    # points whose rate window was still filling go; the rest stays as it was.
    expected = np.array([5, 6, nan, nan, nan, nan, 5, 5, nan, nan, nan, 5])
    np.testing.assert_array_equal(out, expected)
    assert without_warmup(y, 0) is y
    np.testing.assert_array_equal(y[4], 1)  # the input is not changed
