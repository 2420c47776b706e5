"""Configuration errors name the file, the key and what was expected."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from forecaster.config import ConfigError, load_config
from tests.conftest import clean_env, scaleahead_cmd

GOOD = """\
prometheus:
  url: http://prometheus.monitoring:9090
  timeout: 5s
rules:
  - name: http_requests_forecast
    query: 'sum by (namespace, service) (rate(http_requests_total{<<.LabelMatchers>>}[2m]))'
    step: 1m
    history: 8d
    horizon: 10m
    lead: 3m
    quantile: 0.9
    interval: 1m
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scaleahead.yaml"
    path.write_text(text)
    return path


def test_good_config_loads_with_units(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    rule = config.rules[0]
    assert (rule.step, rule.history, rule.horizon, rule.lead) == (60, 8 * 86400, 600, 180)
    assert rule.ttl == 600 - 180 - 60
    assert config.prometheus.timeout == 5


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("  timeout: 5s\n", "  timeout: 5s\n  tiemout: 5s\n", "prometheus.tiemout: unknown key"),
        ("    step: 1m\n", "    step: one minute\n", "rules[0].step: expected a duration"),
        ("    quantile: 0.9\n", "    quantile: 1.5\n", "rules[0].quantile: Input should be less"),
        ("    quantile: 0.9\n", "    quantile: high\n", "rules[0].quantile"),
        (
            "  url: http://prometheus.monitoring:9090\n",
            "  url: prometheus:9090\n",
            "prometheus.url: expected an http:// or https:// URL",
        ),
        ("{<<.LabelMatchers>>}", "{}", "rules[0].query: expected exactly one <<.LabelMatchers>>"),
        ("    lead: 3m\n", "    lead: 90s\n", "lead: expected a multiple of step"),
        ("    horizon: 10m\n", "    horizon: 3m\n", "horizon: must cover lead + one step"),
        (
            "    interval: 1m\n",
            "    interval: 1m\n    forecast_ttl: 8m\n",
            "forecast_ttl: at most horizon - lead - step (6m)",
        ),
        (
            "  timeout: 5s\n",
            "  timeout: 5s\n  ca_file: /nonexistent/ca.crt\n",
            "prometheus.ca_file: no such file: /nonexistent/ca.crt",
        ),
        ("rules:\n", "rulez:\n", "rulez: unknown key"),
        # The HPA lowercases external metric names: an upper-case rule could never be asked.
        (
            "name: http_requests_forecast",
            "name: HTTP_Requests",
            "rules[0].name: 'HTTP_Requests' has upper-case letters",
        ),
        ("interval: 1m\n", "interval: 1m\ncurrent: {interval: 30s, max_age: 40s}\n", "max_age"),
        # Values are read 10s after their time, so 2 intervals alone would leave them stale.
        (
            "interval: 1m\n",
            "interval: 1m\ncurrent: {interval: 15s, max_age: 30s}\n",
            "current: max_age: expected at least two intervals plus the 10s",
        ),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, old, new, expected):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ")
    assert expected in str(err.value)


def test_duplicate_rule_names(tmp_path):
    rule = GOOD.split("rules:\n")[1]
    with pytest.raises(ConfigError, match=r"rules: .*appears twice"):
        load_config(write(tmp_path, GOOD + rule))


def test_not_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "prometheus: [unclosed\n"))


def test_check_config_command(tmp_path):
    good = write(tmp_path, GOOD)
    ok = subprocess.run(
        [*scaleahead_cmd(), "check-config", str(good)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert ok.returncode == 0 and "OK (1 rule(s): http_requests_forecast" in ok.stdout
    bad = write(tmp_path, GOOD.replace("    step: 1m\n", "    step: 1 m\n"))
    got = subprocess.run(
        [*scaleahead_cmd(), "check-config", str(bad)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert got.returncode == 2
    assert f"{bad}: rules[0].step: expected a duration" in got.stderr


def test_credentials_in_the_prometheus_url_are_refused_and_never_echoed(tmp_path):
    path = write(tmp_path, GOOD.replace("http://prometheus", "http://user:s3cret@prometheus"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "prometheus.url: credentials do not belong in the URL" in str(err.value)
    assert "s3cret" not in str(err.value)
