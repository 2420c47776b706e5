"""The fleet run's parts on real traces: inputs, one series' verdict, resuming, the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecaster.fleet import report, run
from forecaster.fleet.inputs import FleetError, SeriesInput, from_folder, from_parquet
from forecaster.fleet.judge import GAINS, NO_GAIN, SHORT, judge_series
from forecaster.sources.trace import Trace
from tests.conftest import shared_trace

CLIENT = "servegen_m_mid_client36_10min.csv"


def _tail(trace: Trace, days: float) -> Trace:
    """The last `days` of a trace."""
    n = int(days * 86400 // trace.resolution)
    start = trace.start + (len(trace.counts) - n) * trace.resolution
    return Trace(start, trace.resolution, trace.counts[-n:].copy())


def test_a_folder_gives_one_series_per_trace_and_refuses_what_it_cannot_read(tmp_path: Path):
    with pytest.raises(FleetError, match="not a folder"):
        from_folder(tmp_path / "missing")
    with pytest.raises(FleetError, match=r"no \.csv or \.csv\.gz traces"):
        from_folder(tmp_path)
    (tmp_path / "a.csv").write_text(
        "timestamp,value\n2024-01-01T00:00:00Z,5\n2024-01-01T00:01:00Z,6\n"
    )
    (tmp_path / "notes.txt").write_text("not a trace")
    (series,) = from_folder(tmp_path)
    assert series.id == "a" and series.trace.resolution == 60
    (tmp_path / "b.csv").write_text("when,value\n")
    with pytest.raises(FleetError, match=r"b\.csv"):
        from_folder(tmp_path)


def test_a_tidy_parquet_file_is_the_same_series_as_its_trace(tmp_path: Path):
    """statsforecast's frame, y in requests per second labelled by the end of each
    interval: read back, the counts, grid and phase are the trace's own."""
    trace = _tail(shared_trace(CLIENT), 3)
    step = trace.resolution
    ends = trace.start + step * (np.arange(len(trace.counts)) + 1)
    frame = pd.DataFrame(
        {"unique_id": "client36", "ds": pd.to_datetime(ends, unit="s"), "y": trace.counts / step}
    ).dropna()
    frame.to_parquet(tmp_path / "fleet.parquet")
    (series,) = from_parquet(tmp_path / "fleet.parquet")
    assert series.id == "client36"
    assert (series.trace.start, series.trace.resolution) == (trace.start, step)
    np.testing.assert_allclose(series.trace.counts, trace.counts, equal_nan=True)
    frame.drop(columns="y").to_parquet(tmp_path / "no_y.parquet")
    with pytest.raises(FleetError, match="no column y"):
        from_parquet(tmp_path / "no_y.parquet")
    (tmp_path / "text.parquet").write_text("unique_id,ds,y\n")
    with pytest.raises(FleetError, match="cannot read as Parquet"):
        from_parquet(tmp_path / "text.parquet")


def test_each_kind_of_series_gets_a_verdict_not_an_error():
    """A real LLM client gains (its rows hold the figures); a day of history is too
    little to judge; a series of zeros gives nothing to gain; one with a six-hour
    recording gap is judged all the same."""
    client = _tail(shared_trace(CLIENT), 5)
    judged = judge_series(SeriesInput("client", client), days=2)
    assert judged["verdict"] == GAINS
    assert judged["scaleahead_dropped"] < judged["reactive_dropped"]
    assert judged["saved_per_extra_pod_minute"] > 0
    assert judged["days"] == 2.0 and judged["budget"] == 1.1
    short = judge_series(SeriesInput("young", _tail(client, 1)), days=2)
    assert short["verdict"] == SHORT and "days observed" in short["sentence"]
    zeros = Trace(client.start, client.resolution, np.zeros(len(client.counts)))
    assert judge_series(SeriesInput("zeros", zeros), days=2)["verdict"] == NO_GAIN
    holed = client.counts.copy()
    holed[-200:-164] = np.nan  # six hours of 10-minute steps missing, inside the judged days
    gap = judge_series(SeriesInput("gap", Trace(client.start, client.resolution, holed)), days=2)
    assert gap["verdict"] in (GAINS, NO_GAIN) and gap["requests"] > 0


def test_a_run_resumes_with_the_series_it_has_not_judged(tmp_path: Path):
    """A results file left by a stopped run (its last line cut short) is kept: only the
    series missing from it are judged, and every series has one row."""
    client = _tail(shared_trace(CLIENT), 4)
    series = [SeriesInput(f"s{i}", client) for i in range(3)]
    kept = {"id": "s0", "verdict": NO_GAIN, "sentence": "judged before the stop"}
    (tmp_path / run.RESULTS).write_text(json.dumps(kept) + '\n{"id": "s1", "verd')
    calls: list[tuple[int, int, int]] = []
    rows = run.run(
        series,
        tmp_path,
        days=2,
        workers=1,
        progress=lambda done, total, judged, _: calls.append((done, total, judged)),
    )
    assert [r["id"] for r in rows] == ["s0", "s1", "s2"]
    assert rows[0] == kept  # not judged again
    assert calls[0] == (1, 3, 0) and calls[-1] == (3, 3, 2)
    assert rows[1] | {"id": "s2"} == rows[2]  # the same trace, the same figures
    lines = (tmp_path / run.RESULTS).read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]  # the cut line is gone
    assert ids[0] == "s0" and sorted(ids) == ["s0", "s1", "s2"]
    with pytest.raises(FleetError, match="same id: s0"):
        run.run([series[0], series[0]], tmp_path)


def test_the_report_ranks_series_by_requests_saved_per_extra_pod_minute(tmp_path: Path):
    rows = [
        {"id": "short", "verdict": SHORT, "sentence": "1.0 days observed"},
        {"id": "some", "verdict": GAINS, "saved_per_extra_pod_minute": 3.0},
        {"id": "none", "verdict": NO_GAIN, "saved_per_extra_pod_minute": None},
        {"id": "free", "verdict": GAINS, "saved_per_extra_pod_minute": None, "requests_saved": 9},
        {"id": "most", "verdict": GAINS, "saved_per_extra_pod_minute": 40.0},
    ]
    assert [r["id"] for r in report.ranked(rows)] == ["free", "most", "some", "none", "short"]
    summary = report.write(tmp_path, rows)
    assert summary["verdicts"] == {GAINS: 3, NO_GAIN: 1, SHORT: 1, "failed": 0}
    page = (tmp_path / "report.html").read_text()
    assert page.index(">free<") < page.index(">most<") < page.index(">short<")
    assert "http" not in page.replace("http-equiv", "")  # nothing to fetch
    lines = (tmp_path / "report.csv").read_text().splitlines()
    assert lines[0].startswith("id,verdict,saved_per_extra_pod_minute")
    assert [line.split(",")[0] for line in lines[1:]] == ["free", "most", "some", "none", "short"]
    assert json.loads((tmp_path / "report.json").read_text())["summary"] == summary
