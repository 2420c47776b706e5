"""`scaleahead backtest` through a real Prometheus: the same numbers as through CSV, and
its errors as messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapter.cli import main
from harness.prometheus import PrometheusServer
from tests.conftest import RULE_QUERY


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def bad(capsys, *args: str) -> str:
    assert main(["backtest", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def write_config(path: Path, url: str) -> Path:
    path.write_text(
        f"prometheus:\n  url: {url}\nrules:\n  - name: http_requests_forecast\n"
        f"    query: '{RULE_QUERY}'\n"
    )
    return path


def test_prometheus_and_csv_give_the_same_numbers(tmp_path, capsys, prometheus: PrometheusServer):
    series = prometheus.series_by(namespace="default", service="checkout")
    # The same trace slice as a CSV: one row per minute, stamped with its start.
    trace_csv = tmp_path / "checkout.csv"
    with trace_csv.open("w") as f:
        f.write("timestamp,value\n")
        for i, c in enumerate(series.counts):
            f.write(f"{iso(series.start + 60 * i)},{int(c)}\n")
    config = write_config(tmp_path / "c.yaml", prometheus.url)
    to = prometheus.end - 2 * 3600
    frm = to - 6 * 3600
    results = {}
    for name, source in (
        (
            "prometheus",
            [
                "--config",
                str(config),
                "--metric",
                "http_requests_forecast",
                "--selector",
                "namespace=default,service=checkout",
            ],
        ),
        ("csv", ["--csv", str(trace_csv)]),
    ):
        out = tmp_path / f"{name}.json"
        code = main(
            [
                "backtest",
                *source,
                "--from",
                iso(frm),
                "--to",
                iso(to),
                "--lead",
                "3m",
                "--json",
                str(out),
            ]
        )
        assert code == 0, capsys.readouterr().err
        results[name] = json.loads(out.read_text())
    # Within rounding: Prometheus computes rate() itself (last-ulp differences), which
    # statsmodels' optimiser for the Holt-Winters baseline can carry to ~1e-7.
    for a, b in zip(results["prometheus"]["methods"], results["csv"]["methods"], strict=True):
        assert a["method"] == b["method"]
        for key, value in a.items():
            if isinstance(value, float):
                assert value == pytest.approx(b[key], rel=1e-6, abs=1e-12), (a["method"], key)
    assert results["prometheus"]["range"] == results["csv"]["range"]


def test_prometheus_errors(tmp_path, capsys, prometheus: PrometheusServer):
    config = write_config(tmp_path / "c.yaml", prometheus.url)
    base = ["--config", str(config), "--metric", "http_requests_forecast"]
    to = prometheus.end - 3600
    long_ago = iso(prometheus.end - 30 * 86400)
    assert "--from/--to: the data starts at" in bad(
        capsys,
        *base,
        "--selector",
        "service=checkout,namespace=default",
        "--from",
        long_ago,
        "--to",
        iso(to),
    )
    assert "matches 2 series" in bad(
        capsys, *base, "--selector", "service=checkout", "--from", iso(to - 3600), "--to", iso(to)
    )
    assert "no data for selector" in bad(
        capsys, *base, "--selector", "service=nothing", "--from", iso(to - 3600), "--to", iso(to)
    )
    assert "--metric nope: no such rule" in bad(capsys, "--config", str(config), "--metric", "nope")
