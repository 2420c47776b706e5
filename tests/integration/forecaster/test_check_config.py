"""`scaleahead check-config` as users run it: a good file described, a bad one refused
naming the key, and each rule's query run against a real Prometheus."""

from __future__ import annotations

import subprocess

from forecaster.config import load_config
from tests.conftest import RULE_QUERY, clean_env, scaleahead_cmd
from tests.unit.forecaster.test_config import GOOD, write


def check_config(*args: str) -> subprocess.CompletedProcess[str]:
    """`scaleahead check-config ARGS` as a user runs it."""
    return subprocess.run(
        [*scaleahead_cmd(), "check-config", *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )


def test_check_config_command(tmp_path):
    good = write(tmp_path, GOOD)
    ok = check_config(str(good))
    assert ok.returncode == 0
    assert ok.stdout.splitlines()[1] == (
        "  rule http_requests_forecast: step 1m, lead 3m, horizon 10m, forecasts fresh for 6m, "
        "every 1m, q 0.9, new series forecast after a 2m warm-up; history 8d (11,520 steps) "
        "of up to 1,000 series: at most 44 MiB"
    )
    for text, expected in [
        (GOOD.replace("    step: 1m\n", "    step: 1 m\n"), "rules[0].step: expected a duration"),
        # It passed, and serving then tried to allocate more than 12 GB.
        (
            GOOD.replace("history: 8d", "history: 100000d"),
            "rules[0].history: at most 50,000 steps (34d17h20m at a 1m step)",
        ),
        # A raw traceback and exit 1.
        (GOOD + "# caf\xe9\n", "not UTF-8 text: byte 0xe9 at line 13"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_bytes(text.encode("latin-1"))
        got = check_config(str(bad))
        assert got.returncode == 2, got.stderr
        assert f"{bad}: {expected}" in got.stderr
        assert "Traceback" not in got.stderr


def test_check_config_against_prometheus_counts_series_and_explains_none(tmp_path, prometheus):
    rule = "  - name: {name}\n    query: '{query}'\n"
    text = f"prometheus:\n  url: {prometheus.url}\n  timeout: 5s\nrules:\n" + "".join(
        rule.format(name=name, query=query)
        for name, query in [
            ("good", RULE_QUERY),
            ("typo", RULE_QUERY.replace("http_requests_total", "http_request_total")),
            ("filtered", RULE_QUERY.replace("{<<", '{service="nope",<<')),
            (
                "no_namespace",
                "sum by (service) (rate(http_requests_total{<<.LabelMatchers>>}[1m])) * 1",
            ),
        ]
    )
    path = write(tmp_path, text)
    assert load_config(path)  # every rule is well-formed; only Prometheus can tell
    got = check_config("--prometheus", str(path))
    assert got.returncode == 2, got
    assert "rule good: 3 series now (labels: namespace, service)" in got.stdout
    assert "rule typo: 0 series now" in got.stdout
    # Not "OK" before the queries ran (it said "OK, Prometheus at ..." and then failed).
    assert got.stdout.splitlines()[0] == f"{path}: valid, Prometheus at {prometheus.url}"
    assert "OK" not in got.stdout
    # Only the good rule: valid, queried, and then OK.
    only_good = write(tmp_path, text[: text.index("  - name: typo")])
    ok = check_config("--prometheus", str(only_good))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[-1] == f"{only_good}: OK, every rule's query yields series"
    errors = got.stderr.splitlines()
    assert errors == [
        f"scaleahead: {path}: rule typo: the query yields no series (Prometheus has no metric "
        "http_request_total; similar names: http_requests_total)",
        f"{path}: rule filtered: the query yields no series (http_requests_total exists, so "
        "the query's matchers or functions drop it all)",
        f"{path}: rule no_namespace: its series carry no 'namespace' label (namespace_label), "
        "so no request could match one: keep it in the query, or set namespace_label: null",
    ]
    # Prometheus unreachable: an error naming it, not a traceback.
    down = write(tmp_path, text.replace(prometheus.url, "http://127.0.0.1:1"))
    got = check_config("--prometheus", str(down))
    assert got.returncode == 2
    assert "rule good: cannot reach http://127.0.0.1:1/api/v1/query" in got.stderr
