"""`scaleahead backtest` on real traces through CSV and the bundled trace: outputs, no
peeking, errors as messages, the sweep, defaults at any step, the grid's phase."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adapter.cli import main
from forecaster.config import Rule
from forecaster.evaluation.backtest import replay
from forecaster.evaluation.recorded import record
from forecaster.evaluation.report import CSV_COLUMNS
from forecaster.selector import EVERYTHING
from forecaster.sources.trace import Trace, TraceSource
from forecaster.times import rfc3339
from tests.conftest import TRACES

NASA = TRACES / "nasa_http_1995.csv"


def test_csv_backtest_writes_its_outputs(tmp_path, capsys):
    out, png, js = tmp_path / "steps.csv", tmp_path / "plot.png", tmp_path / "summary.json"
    code = main(
        [
            "backtest",
            "--csv",
            str(NASA),
            "--from",
            "1995-08-30T00:00:00Z",
            "--to",
            "1995-08-31T00:00:00Z",
            "--lead",
            "3m",
            "--output",
            str(out),
            "--plot",
            str(png),
            "--json",
            str(js),
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    for method in ("reactive", "seasonal naive", "holt-winters", "scaleahead", "perfect foresight"):
        assert method in table
    rows = list(csv.reader(out.open()))
    assert rows[0] == CSV_COLUMNS
    assert len(rows) == 1 + 1441  # every minute of the day, both ends included
    assert rows[1][0] == "1995-08-30T00:00:00Z"
    actual, served = float(rows[500][1]), float(rows[500][2])
    assert served >= actual  # the policy floors at the actual
    data = json.loads(js.read_text())
    by = {m["method"]: m for m in data["methods"]}
    assert 0.5 < by["scaleahead"]["coverage"] <= 1.0
    # One plain sentence under the table, with the default against reactive.
    share = by["scaleahead"]["beyond_capacity_share"] / by["reactive"]["beyond_capacity_share"]
    assert data["verdict"].startswith(f"On this traffic the default drops {share:.0%} of what")
    assert data["verdict"] in table
    # A perfect forecast through the same HPA drops fewer requests than any forecast.
    oracle = by["perfect foresight"]["beyond_capacity_share"]
    assert (
        oracle < by["scaleahead"]["beyond_capacity_share"] < by["reactive"]["beyond_capacity_share"]
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_replay_does_not_peek(nasa: Trace):
    rule = Rule(name="b", query="x{<<.LabelMatchers>>}", history="9d")
    start = nasa.start + 20 * 86400
    end = start + 6 * 3600
    cut = start + 3 * 3600
    perturbed = nasa.counts.copy()
    perturbed[(cut - nasa.start) // 60 :] *= 4  # everything from the cut on is different

    def run(counts: np.ndarray):
        src = TraceSource(Trace(nasa.start, 60, counts), {"s": "a"})
        return replay(rule, record(src, rule, EVERYTHING, start, end), start, end)

    a, b = run(nasa.counts), run(perturbed)
    before = a.times < cut
    np.testing.assert_array_equal(a.served[before], b.served[before])
    np.testing.assert_array_equal(a.point[before], b.point[before])
    np.testing.assert_array_equal(a.upper[before], b.upper[before])
    assert not np.array_equal(a.served[~before], b.served[~before])  # the test can fail


def bad(capsys, *args: str) -> str:
    assert main(["backtest", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_errors_are_messages(tmp_path, capsys):
    assert "--from/--to: empty range" in bad(
        capsys, "--csv", str(NASA), "--from", "1995-08-20T00:00:00Z", "--to", "1995-08-10T00:00:00Z"
    )
    rows = NASA.read_text().splitlines()[:200]
    rows[6] = "1995-07-01T04:05:00Z,lots"
    broken = tmp_path / "broken.csv"
    broken.write_text("\n".join(rows) + "\n")
    assert "row 7" in bad(capsys, "--csv", str(broken))
    assert "--from/--to: too little history" in bad(
        capsys, "--csv", str(NASA), "--from", "1995-07-01T04:10:00Z", "--to", "1995-07-02T00:00:00Z"
    )
    # Rates where counts are expected: said before anything else goes wrong.
    rates = tmp_path / "rates.csv"
    rates.write_text(
        "timestamp,value\n"
        + "".join(
            f"{t},{int(v) / 60:.4f}\n"
            for t, v in (r.split(",") for r in NASA.read_text().splitlines()[1:200])
        )
    )
    said = bad(capsys, "--csv", str(rates), "--from", "1995-07-01T04:10:00Z")
    assert "rates.csv: most values have fractions" in said and "multiply them by 60" in said
    assert "fractions" not in bad(capsys, "--csv", str(broken))  # counts: no warning
    assert "--from: expected an RFC 3339 time" in bad(
        capsys, "--csv", str(NASA), "--from", "yesterday"
    )
    assert "lead: expected a multiple of step" in bad(
        capsys, "--csv", str(TRACES / "nab_aws_elb_request_count_5min.csv"), "--lead", "3m"
    )
    missing = bad(capsys, "--csv", str(tmp_path / "none.csv"))
    assert "none.csv" in missing


def test_demo_sweeps_the_quantiles_and_draws_the_tradeoff(tmp_path, capsys):
    """The bundled trace, no ../shared: the curve has a point per quantile whose coverage
    and pod-minutes grow with q, and the table says which baselines it dominates."""
    png, js = tmp_path / "tradeoff.png", tmp_path / "summary.json"
    args = ["backtest", "--demo", "--from", "1995-07-15T00:00:00Z", "--to"]
    args += ["1995-07-16T00:00:00Z", "--quantiles", "0.9,0.5", "--tradeoff", str(png)]
    assert main([*args, "--quantile", "0.9", "--json", str(js)]) == 0
    table = capsys.readouterr().out
    assert "scaleahead q=0.5" in table and "scaleahead q=0.9" in table
    for baseline in ("holt-winters", "crane dsp", "mstl"):
        assert f"{baseline}: dominated by" in table or f"{baseline}: not dominated" in table
    data = json.loads(js.read_text())
    assert data["range"]["from"] == "1995-07-15T00:00:00Z"
    low, high = data["curve"]
    assert low["method"] == "scaleahead q=0.5" and high["method"] == "scaleahead q=0.9"
    assert low["coverage"] < high["coverage"]
    assert low["pod_minutes"] < high["pod_minutes"]
    assert low["beyond_capacity_share"] > high["beyond_capacity_share"]
    by = {m["method"]: m for m in data["methods"]}
    # The default quantile's point is the default replay's.
    assert by["scaleahead"]["pod_minutes"] == high["pod_minutes"]
    assert by["scaleahead"]["pinball"] == high["pinball"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(Path.cwd().glob("*.png"))  # nothing written beside the command


def test_sweep_flags_are_checked(capsys):
    assert "--quantiles: expected numbers" in bad(capsys, "--demo", "--quantiles", "0.5,high")
    assert "--quantiles: 1.5: expected a share from 0.05 to 0.995" in bad(
        capsys, "--demo", "--quantiles", "1.5"
    )
    # The same range as a rule's quantile: a sweep builds its rules as a file's are.
    assert "--quantiles: 0.01: expected a share from 0.05" in bad(
        capsys, "--demo", "--quantiles", "0.01,0.5"
    )
    assert "--tradeoff draws the curve of --quantiles" in bad(
        capsys, "--demo", "--tradeoff", "x.png"
    )
    assert "--demo replaces" in bad(capsys, "--demo", "--csv", str(NASA))


@pytest.mark.parametrize("step", [30, 60, 120, 300])
def test_defaults_outlast_two_missed_points_at_any_step(nasa: Trace, step: int):
    """A rule with only its step set (lead and horizon derived) on NASA re-binned to that
    step (30 s: each minute split in two), with pairs of consecutive points missing
    every 4 hours: a value is served at every grid point, a forecast's at each missed one."""
    minutes = nasa.counts[20 * 1440 : 30 * 1440]
    counts = np.repeat(minutes / 2, 2) if step == 30 else minutes
    per = max(1, step // 60)
    res = 30 if step == 30 else 60 * per
    counts = counts[: len(counts) // per * per].reshape(-1, per).sum(axis=1)
    missing = np.zeros(len(counts), dtype=bool)
    for k in range(len(counts) // 2, len(counts) - 2, 4 * 3600 // res):
        missing[k : k + 2] = True
    trace = Trace(nasa.start + 20 * 86400, res, np.where(missing, np.nan, counts))
    rule = Rule(name="b", query="x{<<.LabelMatchers>>}", step=step, history="4d")
    start = trace.start + len(counts) // 2 * res
    end = start + 86400
    src = TraceSource(trace, {"s": "a"})
    r = replay(rule, record(src, rule, EVERYTHING, start, end), start, end)
    gaps = np.isnan(r.actual)
    assert gaps.sum() >= 10  # five pairs of missed points in the day
    assert np.isfinite(r.served).all()
    assert r.predictive[gaps].all()


def test_the_grid_takes_its_phase_from_the_csv(tmp_path, isp: Trace):
    """The ISP trace with its timestamps moved to 2 min 53 s past each 5 minutes: the grid
    points are the intervals' ends (not the wall clock's round minutes), each actual is
    the interval that just ended, and every value served is the unmoved trace's."""
    day = 86400 // 300
    counts = isp.counts[-4 * 7 * day :]
    served = []
    for phase in (0, 173):
        trace = Trace(isp.end - len(counts) * 300 + phase, 300, counts)
        path = tmp_path / f"isp_{phase}.csv"
        stamps = pd.to_datetime(trace.start + 300 * np.arange(len(counts)), unit="s", utc=True)
        pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"), "value": counts}).to_csv(
            path, index=False
        )
        out = tmp_path / f"steps_{phase}.csv"
        args = ["--csv", str(path), "--from", rfc3339(trace.end - day * 300), "--output", str(out)]
        assert main(["backtest", "--lead", "5m", "--quantile", "0.9", *args]) == 0
        rows = pd.read_csv(out)
        times = pd.to_datetime(rows["timestamp"]).astype("int64") // 10**9
        assert (times % 300 == phase).all()
        ended = counts[(times - 300 - trace.start) // 300] / 300
        assert np.allclose(rows["actual"], ended)
        served.append(rows["served"].to_numpy())
    assert np.allclose(served[0], served[1], rtol=1e-9)


def test_the_budget_is_costed_through_the_hpa_the_flags_describe(tmp_path):
    """An HPA that scales down at once and one that holds its pods 15 minutes cost a
    forecast differently; the backtest costs its budget through the HPA it simulates, so
    that both spend what they were asked (1.1x perfect foresight's pod-minutes under the
    same HPA). Costed through Kubernetes' default 5 minutes whatever the flag, the bundled
    trace's three days spent 1.133x and 1.048x."""
    realised = {}
    for window in ("0s", "15m"):
        out = tmp_path / f"{window}.json"
        args = ["backtest", "--demo", "--from", "1995-07-11T00:00:00Z"]
        args += ["--to", "1995-07-14T00:00:00Z", "--scale-down-stabilization", window]
        assert main([*args, "--json", str(out)]) == 0
        data = json.loads(out.read_text())
        assert data["max_pod_minutes"] == 1.1
        [ours] = [m for m in data["methods"] if m["method"] == "scaleahead"]
        realised[window] = ours["pod_minutes_vs_bound"]
    assert all(abs(r - 1.1) <= 0.03 for r in realised.values()), realised
    assert abs(realised["0s"] - realised["15m"]) < 0.04, realised
