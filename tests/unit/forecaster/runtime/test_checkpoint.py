"""A rule's history and fits saved and taken up again: a resumed cycle serves what one that
never stopped serves, fetches only what is new and refits only what fell due; a
checkpoint of other code or configuration, or a damaged one, is left unread."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from forecaster.config import Rule
from forecaster.models.series_model import SeriesModel
from forecaster.runtime.checkpoint import SAVE_EVERY, CheckpointError, Checkpoints
from forecaster.runtime.cycle import ForecastCycle
from forecaster.runtime.store import ForecastStore
from forecaster.runtime.telemetry import Telemetry
from forecaster.selector import EVERYTHING, LabelSelector
from forecaster.sources.base import RangeSeries
from forecaster.sources.trace import Trace, TraceSource
from forecaster.times import SETTLE

STEP = 60
DAY = 1440
RULE = Rule(name="m", query="x{<<.LabelMatchers>>}", history="9d")


class Traces:
    """Several windows of one trace as series s0, s1, ... (scaled differently)."""

    def __init__(self, trace: Trace, n: int) -> None:
        self.parts = [
            TraceSource(Trace(trace.start, STEP, trace.counts[k * 90 :] * (1 + k)), {"s": f"s{k}"})
            for k in range(n)
        ]

    def fetch_range(
        self, rule: Rule, start: int, end: int, selector: LabelSelector = EVERYTHING
    ) -> list[RangeSeries]:
        return [s for part in self.parts for s in part.fetch_range(rule, start, end, selector)]


@pytest.fixture
def fits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the refits made (SeriesModel.fit, the real one)."""
    made = [0]
    real = SeriesModel.fit

    def counted(self, *args, **kwargs):
        made[0] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SeriesModel, "fit", counted)
    return made


def _served(store: ForecastStore) -> dict:
    snap = store.snapshot(RULE.name)
    assert snap is not None
    return {key: np.concatenate([fc.point, fc.upper]) for key, fc in snap.items()}


def test_a_resumed_cycle_serves_what_one_that_never_stopped_serves(
    nasa: Trace, tmp_path: Path, fits: list[int]
):
    source = Traces(nasa, 3)
    t0 = nasa.start + 10 * DAY * STEP + SETTLE
    store = ForecastStore()
    running = ForecastCycle([RULE], source, store, state_dir=tmp_path)
    saves, fitted = [], []
    first = tmp_path / "first"
    first.mkdir(mode=0o700)
    for k in range(9):  # a cycle a minute; a checkpoint at the first and 5 minutes later
        running.run(RULE, t0 + k * STEP)
        saves.append((tmp_path / "m.checkpoint").stat().st_mtime_ns)
        fitted.append(fits[0])
        if k == 0:
            shutil.copy(tmp_path / "m.checkpoint", first / "m.checkpoint")
    assert len(set(saves)) == 2 and saves[4] != saves[5]
    assert fitted[0] == 3  # the first cycle fits every series
    assert fitted[8] - fitted[0] == 2  # and two of them fall due again by the ninth

    # Resumed from the first checkpoint: only the series whose hourly refit fell due
    # after it are refitted, and only what is new since it is fetched.
    fits[0] = 0
    resumed_store = ForecastStore()
    resumed = ForecastCycle([RULE], source, resumed_store, state_dir=first)
    report = resumed.run(RULE, t0 + 8 * STEP)
    assert fits[0] == 2
    assert report.fetch_start == t0 - SETTLE - STEP  # from the checkpoint's end (re-read)
    assert report.fetched_points == 3 * 10
    a, b = _served(store), _served(resumed_store)
    assert a.keys() == b.keys() and len(a) == 3
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    # Against a cycle that starts afresh: it fits every series again, from the whole
    # history, to the same values (the checkpoint changed when, not what).
    fits[0] = 0
    fresh_store = ForecastStore()
    ForecastCycle([RULE], source, fresh_store).run(RULE, t0 + 8 * STEP)
    assert fits[0] == 3
    for key, values in _served(fresh_store).items():
        np.testing.assert_array_equal(values, a[key])


def test_a_checkpoint_of_another_configuration_is_left_unread(
    nasa: Trace, tmp_path: Path, fits: list[int], caplog: pytest.LogCaptureFixture
):
    source = Traces(nasa, 2)
    t0 = nasa.start + 10 * DAY * STEP + SETTLE
    ForecastCycle([RULE], source, ForecastStore(), state_dir=tmp_path).run(RULE, t0)
    fits[0] = 0
    other = Rule(name="m", query=RULE.query, history="9d", quantile=0.8)
    caplog.set_level(logging.INFO)
    report = ForecastCycle([other], source, ForecastStore(), state_dir=tmp_path).run(other, t0)
    assert fits[0] == 2  # both fitted afresh, from the whole history
    assert report.fetched_points > 2 * 8 * DAY
    assert "written by another version or configuration" in caplog.text


def test_a_damaged_checkpoint_is_logged_counted_and_the_rule_starts_afresh(
    nasa: Trace, tmp_path: Path, fits: list[int], caplog: pytest.LogCaptureFixture
):
    source = Traces(nasa, 2)
    t0 = nasa.start + 10 * DAY * STEP + SETTLE
    ForecastCycle([RULE], source, ForecastStore(), state_dir=tmp_path).run(RULE, t0)
    path = tmp_path / "m.checkpoint"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # cut short mid-write
    fits[0] = 0
    registry = CollectorRegistry()
    telemetry = Telemetry(registry, [RULE.name])
    store = ForecastStore()
    cycle = ForecastCycle([RULE], source, store, telemetry=telemetry, state_dir=tmp_path)
    cycle.run(RULE, t0 + STEP)
    assert "cannot be read" in caplog.text and str(path) in caplog.text
    failures = "scaleahead_checkpoint_failures_total"
    assert registry.get_sample_value(failures, {"rule": "m", "op": "load"}) == 1.0
    assert fits[0] == 2 and len(_served(store)) == 2
    # ...and the next save replaces it with a whole one.
    assert Checkpoints(tmp_path, cycle.checkpoints.stabilization).load(RULE) is not None  # type: ignore[union-attr]


def test_a_save_that_fails_is_logged_and_counted_and_the_forecasts_still_stored(
    nasa: Trace, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    (tmp_path / "m.partial").mkdir()  # where the save writes first: cannot be opened
    registry = CollectorRegistry()
    store = ForecastStore()
    cycle = ForecastCycle(
        [RULE],
        Traces(nasa, 1),
        store,
        telemetry=Telemetry(registry, [RULE.name]),
        state_dir=tmp_path,
    )
    cycle.run(RULE, nasa.start + 10 * DAY * STEP + SETTLE)
    assert len(_served(store)) == 1
    assert "could not write checkpoint" in caplog.text
    failures = "scaleahead_checkpoint_failures_total"
    assert registry.get_sample_value(failures, {"rule": "m", "op": "save"}) == 1.0
    assert not (tmp_path / "m.checkpoint").exists()


def test_saves_come_every_save_every_seconds_of_grid(nasa: Trace, tmp_path: Path):
    cycle = ForecastCycle([RULE], Traces(nasa, 1), ForecastStore(), state_dir=tmp_path)
    t0 = nasa.start + 10 * DAY * STEP + SETTLE
    checkpoints = cycle.checkpoints
    assert checkpoints is not None
    written = []
    for k in range(2 * SAVE_EVERY // STEP + 1):
        cycle.run(RULE, t0 + k * STEP)
        written.append((tmp_path / "m.checkpoint").stat().st_mtime_ns)
    assert [i for i in range(1, len(written)) if written[i] != written[i - 1]] == [5, 10]


@pytest.mark.parametrize("mode", [0o777, 0o720])
def test_a_state_dir_others_may_write_to_is_refused(tmp_path: Path, mode: int):
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(mode)
    with pytest.raises(CheckpointError, match="writable by no one else"):
        Checkpoints(state, 300)
    created = tmp_path / "new" / "state"
    Checkpoints(created, 300)
    assert created.stat().st_mode & 0o777 == 0o700


def test_a_checkpoint_others_may_write_to_is_left_unread(
    nasa: Trace, tmp_path: Path, fits: list[int], caplog: pytest.LogCaptureFixture
):
    source = Traces(nasa, 1)
    t0 = nasa.start + 10 * DAY * STEP + SETTLE
    ForecastCycle([RULE], source, ForecastStore(), state_dir=tmp_path).run(RULE, t0)
    (tmp_path / "m.checkpoint").chmod(0o622)  # what another user could have rewritten
    fits[0] = 0
    ForecastCycle([RULE], source, ForecastStore(), state_dir=tmp_path).run(RULE, t0 + STEP)
    assert fits[0] == 1
    assert "not owned by this user or writable by others" in caplog.text
