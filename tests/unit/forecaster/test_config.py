"""Configuration errors name the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import promql_parser
import pytest
from pydantic import ValidationError

from forecaster.config import ConfigError, Rule, load_config, parse_config
from forecaster.promql import check_template, render
from forecaster.selector import EVERYTHING, parse_selector

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
        (
            "  timeout: 5s\n",
            "  timeout: 5s\n  tiemout: 5s\n",
            "prometheus.tiemout: unknown key; did you mean 'timeout'?",
        ),
        (
            "    quantile: 0.9\n",
            "    quantile: 0.9\n    qunatile: 0.8\n",
            "rules[0].qunatile: unknown key; did you mean 'quantile'?",
        ),
        ("rules:\n", "rulez:\n", "rulez: unknown key; did you mean 'rules'?"),
        (
            "  timeout: 5s\n",
            "  timeout: 5s\n  colour: blue\n",
            "prometheus.colour: unknown key; expected one of: basic_auth, bearer_token_file",
        ),
        ("    step: 1m\n", "    step: one minute\n", "rules[0].step: expected a duration"),
        ("    step: 1m\n", "    step:\n", "rules[0].step: expected a duration like '30s'"),
        (
            "    quantile: 0.9\n",
            "    quantile: 1.5\n",
            "rules[0].quantile: expected a share from 0.05 to 0.995",
        ),
        ("    quantile: 0.9\n", "    quantile: high\n", "rules[0].quantile: expected a number"),
        (
            "    quantile: 0.9\n",
            "    quantile: 0.9\n    max_pod_minutes: 1.2\n",
            "rules[0].quantile: give either quantile (the same q for every series) or "
            "max_pod_minutes",
        ),
        (
            "    quantile: 0.9\n",
            "    max_pod_minutes: 0.4\n",
            "rules[0].max_pod_minutes: expected how many times perfect foresight's pod-minutes",
        ),
        (
            "  timeout: 5s\n",
            "  timeout: 5s\n  retries: 20\n",
            "retries: expected at most 10, got 20",
        ),
        (
            "  timeout: 5s\n",
            "  timeout: 5s\n  retries: two\n",
            "expected a whole number, got 'two'",
        ),
        (
            "  url: http://prometheus.monitoring:9090\n",
            "  url: prometheus:9090\n",
            "prometheus.url: expected an http:// or https:// URL",
        ),
        ("{<<.LabelMatchers>>}", "{}", "rules[0].query: expected <<.LabelMatchers>> inside the"),
        # PromQL is parsed at load, placeholders and all.
        (
            "[2m]))",
            "[2m])",
            "rules[0].query: the query is not valid PromQL: unclosed left parenthesis",
        ),
        ("rate(", "rat(", "rules[0].query: the query is not valid PromQL: unknown function"),
        (
            "rate(http_requests_total{<<.LabelMatchers>>}[2m])",
            "rate(<<.Series>>{<<.LabelMatchers>>}[2m])",
            "<<.Series>> is a prometheus-adapter placeholder scaleahead does not fill: write the "
            "metric name itself",
        ),
        (
            "sum by (namespace, service)",
            "sum by (<<.GroupBy>>)",
            "<<.GroupBy>> is a prometheus-adapter placeholder scaleahead does not fill: write "
            "the labels each series keeps",
        ),
        (
            "http_requests_total{<<.LabelMatchers>>}[2m]",
            "http_requests_total[2m]",
            "query: expected <<.LabelMatchers>> inside the braces",
        ),
        (
            "(rate(http_requests_total{<<.LabelMatchers>>}[2m]))",
            "(rate(http_requests_total[2m])) <<.LabelMatchers>>",
            "<<.LabelMatchers>> must stand inside a selector's braces",
        ),
        (
            "http_requests_total{<<.LabelMatchers>>}",
            "{<<.LabelMatchers>>}",
            "with an empty selector the query (sum by (namespace, service) (rate({}[2m]))) is "
            "not valid PromQL: vector selector must contain at least one non-empty matcher",
        ),
        (
            "sum by (namespace, service) (rate(http_requests_total{<<.LabelMatchers>>}[2m]))",
            "http_requests_total{<<.LabelMatchers>>}[2m]",
            "the query must yield an instant vector, not a matrix (wrap the range in rate(...))",
        ),
        (
            "sum by (namespace, service)",
            "sum by (service)",
            "rules[0].query: its outermost aggregation drops the 'namespace' label",
        ),
        ("    lead: 3m\n", "    lead: 90s\n", "lead: expected a multiple of step"),
        ("    horizon: 10m\n", "    horizon: 3m\n", "horizon: must cover lead + one step"),
        # The forecast TTL that results must outlast a late cycle.
        (
            "    lead: 3m\n",
            "    lead: 9m\n",
            "rules[0].horizon: with lead 9m and step 1m, a 10m forecast is fresh for 0s "
            "(horizon - lead - step); it must stay fresh until the cycle after next (2m10s",
        ),
        (
            "    interval: 1m\n",
            "    interval: 5m\n",
            "rules[0].horizon: with lead 3m and step 1m, a 10m forecast is fresh for 6m "
            "(horizon - lead - step); it must stay fresh until the cycle after next (10m10s: "
            "two refreshes of 5m plus the 10s a sample settles), or a slow or failed cycle "
            "drops every series to reactive scaling. Make horizon at least 15m",
        ),
        (
            "    interval: 1m\n",
            "    interval: 1m\n    forecast_ttl: 8m\n",
            "forecast_ttl: at most horizon - lead - step (6m)",
        ),
        # A measured lead must stay within what the forecasts cover.
        (
            "    interval: 1m\n",
            "    interval: 1m\n    lead_max: 8m\n",
            "rules[0].lead_max: a 10m horizon covers leads up to 6m50s with forecasts fresh for "
            "2m10s; make horizon at least 12m (or leave it out: it is then derived)",
        ),
        (
            "    interval: 1m\n",
            "    interval: 1m\n    lead_min: 5m\n    lead_max: 4m\n",
            "rules[0].lead_min: 5m is above lead_max (4m)",
        ),
        (
            "    interval: 1m\n",
            "    interval: 1m\n    drop_after: 30s\n",
            "rules[0].drop_after: expected at least one refresh (1m), got 30s",
        ),
        (
            "    interval: 1m\n",
            "    interval: 1m\n    max_series: 0\n",
            "rules[0].max_series: expected",
        ),
        (
            "    interval: 1m\n",
            "    interval: 1m\n    forecast_ttl: 1m\n",
            "rules[0].forecast_ttl: 1m is too short: it must stay fresh until the cycle after next",
        ),
        (
            "  timeout: 5s\n",
            "  timeout: 5s\n  ca_file: /nonexistent/ca.crt\n",
            "prometheus.ca_file: no such file: /nonexistent/ca.crt",
        ),
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
            "current.max_age: expected at least two intervals plus the 10s",
        ),
        # Duplicate keys: YAML would silently keep the last one.
        (
            "  timeout: 5s\n",
            "  timeout: 5s\n  timeout: 30s\n",
            "line 4: key 'timeout' appears twice in one mapping (first at line 3)",
        ),
        ("prometheus:\n", "prometheus: [\n", "not valid YAML at line"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, old, new, expected):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ")
    assert expected in str(err.value)


def test_the_quantile_is_bought_by_a_budget_unless_the_rule_fixes_it(tmp_path):
    fixed = load_config(write(tmp_path, GOOD)).rules[0]
    assert (fixed.quantile, fixed.budget) == (0.9, None)
    default = load_config(write(tmp_path, GOOD.replace("    quantile: 0.9\n", ""))).rules[0]
    assert (default.quantile, default.budget) == (None, 1.1)
    budget = GOOD.replace("quantile: 0.9", "max_pod_minutes: 1.25")
    assert load_config(write(tmp_path, budget)).rules[0].budget == 1.25
    # Any quantile a band can be calibrated at: below the median too (the cheap end of
    # the trade-off), not above the top calibration level.
    low = load_config(write(tmp_path, GOOD.replace("quantile: 0.9", "quantile: 0.3")))
    assert low.rules[0].quantile == 0.3
    with pytest.raises(ConfigError, match=r"rules\[0\]\.quantile: expected a share from 0\.05"):
        load_config(write(tmp_path, GOOD.replace("quantile: 0.9", "quantile: 0.999")))


def test_a_changed_rule_is_validated_as_a_file_would_be(tmp_path):
    rule = load_config(write(tmp_path, GOOD.replace("    horizon: 10m\n", ""))).rules[0]
    assert rule.horizon_derived
    longer = rule.changed(lead=480)  # the horizon is derived again, for the new lead
    assert longer.horizon_derived and longer.horizon > rule.horizon and longer.lead == 480
    assert rule.changed(quantile=0.2).quantile == 0.2
    with pytest.raises(ValidationError, match="quantile"):
        rule.changed(quantile=1.5)


def test_duplicate_rule_names(tmp_path):
    rule = GOOD.split("rules:\n")[1]
    with pytest.raises(ConfigError, match=r"rules: .*appears twice"):
        load_config(write(tmp_path, GOOD + rule))


def test_derived_horizon_outlasts_two_missed_cycles_at_any_step(tmp_path):
    five = GOOD.replace("    horizon: 10m\n", "").replace("step: 1m", "step: 5m")
    rule = load_config(write(tmp_path, five.replace("lead: 3m", "lead: 5m"))).rules[0]
    assert rule.horizon_derived and rule.horizon == 30 * 60  # 5m lead + 5m step + 20m
    assert rule.ttl >= 3 * 300 + 10  # two missed 5-minute points and the settle
    one = load_config(write(tmp_path, GOOD.replace("    horizon: 10m\n", ""))).rules[0]
    assert one.horizon == 600 and not load_config(write(tmp_path, GOOD)).rules[0].horizon_derived


def test_a_ratio_of_two_metrics_takes_the_selector_in_each():
    query = (
        'sum by (namespace) (rate(a_total{code!~"5..",<<.LabelMatchers>>}[2m])) / '
        "sum by (namespace) (rate(b_total{<<.LabelMatchers>>, job='x'}[2m]))"
    )
    assert check_template(query).metrics == ("a_total", "b_total")
    everything = render(query, EVERYTHING)
    assert everything.count("{") == 2 and ",," not in everything
    promql_parser.parse(everything)
    one = render(query, parse_selector("service=web"))
    assert one.count('service="web"') == 2
    promql_parser.parse(one)


@pytest.mark.parametrize(
    "url",
    [
        "http://user:s3cret@prometheus",
        "http://prometheus?access_token=s3cret",  # the query: echoed on /readyz and in logs
        "http://prometheus/api/prom?token=s3cret&x=1",
        "http://prometheus/#s3cret",
    ],
)
def test_credentials_in_the_prometheus_url_are_refused_and_never_echoed(tmp_path, url):
    path = write(tmp_path, GOOD.replace("http://prometheus", url, 1))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "prometheus.url: expected no credentials, query or fragment" in str(err.value)
    assert "s3cret" not in str(err.value)


def test_a_config_file_that_is_not_utf8_is_an_error_naming_the_file_and_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(GOOD.encode() + "# café\n".encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    line = GOOD.count("\n") + 1
    assert str(err.value) == (
        f"{path}: not UTF-8 text: byte 0xe9 at line {line} (YAML files are UTF-8)"
    )


@pytest.mark.parametrize(
    ("forward", "expected"),
    [
        ({"url": "http://adapter:443"}, "forward.url: expected an https:// URL"),
        ({"url": "https://u:p@adapter"}, "forward.url: expected https://host[:port] only"),
        ({"url": "https://adapter"}, "forward: give client_cert_file and client_key_file"),
        (
            {"url": "https://adapter", "client_cert_file": "/etc/hostname"},
            "forward: client_cert_file and client_key_file go together",
        ),
        (
            {"url": "https://adapter", "bearer_token_file": "/no/such/token"},
            "forward.bearer_token_file: no such file: /no/such/token",
        ),
        (
            {"url": "https://adapter", "bearer_token_file": "/etc/hostname", "timeot": "1s"},
            "forward.timeot: unknown key; did you mean 'timeout'?",
        ),
    ],
)
def test_forward_errors_name_the_key(forward, expected):
    data = {
        "prometheus": {"url": "http://prometheus:9090"},
        "rules": [{"name": "a", "query": "sum by (namespace) (rate(x{<<.LabelMatchers>>}[1m]))"}],
        "forward": forward,
    }
    with pytest.raises(ConfigError) as err:
        parse_config(data, "c.yaml")
    assert f"c.yaml: {expected}" in str(err.value)


@pytest.mark.parametrize(
    ("key", "line", "shown"),
    [
        ("prometheus.timeout", "  timeout: 5s\n", "  timeout: 10000\n"),
        ("rules[0].step", "    step: 1m\n", "    step: 60\n"),
        ("rules[0].history", "    history: 8d\n", "    history: 691200.0\n"),
    ],
)
def test_a_duration_written_without_its_unit_is_refused_saying_what_it_would_be(
    tmp_path, key, line, shown
):
    """`timeout: 10000` was read as 10,000 seconds and `step: 60` as 60 s, silently."""
    assert line in GOOD
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD.replace(line, shown)))
    value = shown.split(": ")[1].strip()
    seconds = int(float(value))
    assert f"{key}: {value} has no unit: write it with one, e.g. '{seconds}s' (that is " in str(
        err.value
    )
    # From code, whole seconds stay what they are (Rule.changed re-validates its own dump).
    rule = Rule(name="m", query="x{<<.LabelMatchers>>}", step=60, history=8 * 86400)
    assert rule.changed(quantile=0.9).step == 60
