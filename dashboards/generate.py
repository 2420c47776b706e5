"""Builds the scaleahead Grafana dashboard with Grafana's foundation SDK, whose types
check every field; `python dashboards/generate.py` rewrites dashboards/scaleahead.json.

Every query filters by the variables `rule` and `namespace` (and Grafana's ad hoc
filters, for any other series label). Series samples come from every replica; they
agree, so `max without (instance, pod)` shows each series once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.builders.common import StackingConfig, VizLegendOptions
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.common import (
    GraphDrawStyle,
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
)

OUT = Path(__file__).with_name("scaleahead.json")
UID = "scaleahead"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")

Panel = timeseries.Panel | stat.Panel

SERIES = 'rule="$rule", namespace=~"$namespace"'
"""The series filter every per-series query carries."""
ONE_COPY = "max without (instance, pod)"
"""Each series once, though every replica exports it."""


def per_second(metric: str, by: str, selector: str = "") -> str:
    """The per-second rate of a counter, summed by `by`."""
    matchers = f"{{{selector}}}" if selector else ""
    return f"sum by ({by}) (rate({metric}{matchers}[$__rate_interval]))"


def ratio(numerator: str, denominator: str, aggregate: str, window: str = "$window") -> str:
    """increase(numerator) / increase(denominator) over `window`, both aggregated."""
    return " / ".join(
        f"{aggregate} (increase({metric}{{{SERIES}}}[{window}]))"
        for metric in (numerator, denominator)
    )


def at_lead_ago(metric: str) -> str:
    """A per-series forecast gauge as it was lead + step ago, when it forecast now."""
    return f"{ONE_COPY} ({metric}{{{SERIES}}} offset ${{lead_step}}s)"


def query(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .expr(expr)
        .legend_format(legend)
        .ref_id(ref)
        .range()
        .datasource(DATASOURCE)
    )


def graph(
    title: str, description: str, unit: str, *queries: prometheus.Dataquery
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(8)
        .span(12)
        .legend(
            VizLegendOptions()
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    for q in queries:
        panel = panel.with_target(q)
    return panel


def series_panels() -> list[Panel]:
    actual = f"{ONE_COPY} (scaleahead_series_actual{{{SERIES}}})"
    return [
        graph(
            "Served value against actual",
            "What the HPA is served (the larger of the actual and the forecast's upper "
            "quantile over the lead window, raised to any active schedule's floor), the "
            "actual, the forecast's upper band at lead, and the floor of each schedule or "
            "event while it is active (from lead before its window opens). The served "
            "value should run ahead of the actual.",
            "reqps",
            query(
                f"{ONE_COPY} (scaleahead_series_served{{{SERIES}}})",
                "served {{namespace}} {{service}}",
            ),
            query(actual, "actual {{namespace}} {{service}}", "B"),
            query(
                f"{ONE_COPY} (scaleahead_series_forecast_upper_lead_window{{{SERIES}}})",
                "upper band over the lead window {{namespace}} {{service}}",
                "C",
            ),
            query(
                f"{ONE_COPY} (scaleahead_series_schedule_floor{{{SERIES}}})",
                "floor of {{schedule}} {{namespace}} {{service}}",
                "D",
            ),
        )
        .override_by_regexp(
            "^served.*",
            [model.DynamicConfigValue(id_val="custom.lineWidth", value=2)],
        )
        .override_by_regexp(
            "^floor of.*",
            [
                model.DynamicConfigValue(
                    id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
                )
            ],
        ),
        graph(
            "Forecast made lead + step ago against actual",
            "The point forecast and the upper band that were made for this moment, shifted "
            "by the rule's lead + step, against what happened. The band is the per-step "
            "quantile: the served value takes its maximum over the lead window.",
            "reqps",
            query(actual, "actual {{namespace}} {{service}}"),
            query(
                at_lead_ago("scaleahead_series_forecast_at_lead"),
                "forecast {{namespace}} {{service}}",
                "B",
            ),
            query(
                at_lead_ago("scaleahead_series_forecast_upper_at_lead"),
                "upper band {{namespace}} {{service}}",
                "C",
            ),
        ),
        graph(
            "Forecast error: realised against expected",
            "Mean absolute error of the point forecast at lead over the last $window, "
            "measured against what happened, beside the error the model's own backtest "
            "expected at its last refit.",
            "reqps",
            query(
                ratio(
                    "scaleahead_series_forecast_abs_error_sum",
                    "scaleahead_series_forecast_abs_error_count",
                    "sum without (instance, pod)",
                ),
                "realised {{namespace}} {{service}}",
            ),
            query(
                f"{ONE_COPY} (scaleahead_series_backtest_error{{{SERIES}}})",
                "expected by the backtest {{namespace}} {{service}}",
                "B",
            ),
        ),
        graph(
            "Peak coverage against the quantile",
            "Share of lead windows over the last $window whose realised peak the served "
            "value covered (what the quantile promises), per rule, against the quantile. "
            "Far below the line: the band is too narrow for this traffic.",
            "percentunit",
            query(
                ratio(
                    "scaleahead_series_lead_windows_covered_total",
                    "scaleahead_series_lead_windows_total",
                    "sum by (rule)",
                ),
                "covered {{rule}}",
            ),
            query(
                'avg by (rule) (scaleahead_series_quantile{rule="$rule"})',
                "mean quantile {{rule}}",
                "B",
            ),
        )
        .min(0)
        .max(1),
    ]


def state_panels() -> list[Panel]:
    return [
        graph(
            "Series by fallback reason",
            "How many series are served from a forecast, and how many reactively (the "
            "actual alone) or not at all, by why no forecast could be used.",
            "short",
            query(
                "label_replace(count by (reason) ("
                f"{ONE_COPY} (scaleahead_series_fallback{{{SERIES}}})"
                '), "reason", "forecast served", "reason", "")',
                "{{reason}}",
            ),
        )
        .draw_style(GraphDrawStyle.BARS)
        .stacking(StackingConfig().mode(StackingMode.NORMAL)),
        stat.Panel()
        .title("Lead, step and TTL in use")
        .description(
            "How far ahead the served value looks (lead), the step, and the oldest a "
            "forecast may be and still be served from (TTL)."
        )
        .unit("s")
        .datasource(DATASOURCE)
        .height(8)
        .span(6)
        .with_target(query('max by (rule) (scaleahead_rule_lead_seconds{rule="$rule"})', "lead"))
        .with_target(
            query('max by (rule) (scaleahead_rule_step_seconds{rule="$rule"})', "step", "B")
        )
        .with_target(
            query('max by (rule) (scaleahead_rule_forecast_ttl_seconds{rule="$rule"})', "TTL", "C")
        ),
        graph(
            "Models in use",
            "How many series each model forecasts (chosen per series by a rolling-origin "
            "backtest at each refit).",
            "short",
            query(
                f"count by (model) ({ONE_COPY} (scaleahead_series_model_info{{{SERIES}}}))",
                "{{model}}",
            ),
        )
        .span(6)
        .stacking(StackingConfig().mode(StackingMode.NORMAL)),
        graph(
            "Forecast age against the TTL",
            "Seconds between now and the newest data behind each series' forecast; past "
            "the TTL the series falls back to its actual.",
            "s",
            query(
                f"{ONE_COPY} (scaleahead_series_forecast_age_seconds{{{SERIES}}})",
                "{{namespace}} {{service}}",
            ),
            query('max by (rule) (scaleahead_rule_forecast_ttl_seconds{rule="$rule"})', "TTL", "B"),
        ),
        graph(
            "HPA replicas beside the served value",
            "Desired and current replicas of the HPAs whose External metric is this rule "
            "(kube-state-metrics), beside the sum of the values served in their namespace.",
            "short",
            query(
                'kube_horizontalpodautoscaler_status_desired_replicas{namespace=~"$namespace"}'
                " and on (namespace, horizontalpodautoscaler)"
                ' kube_horizontalpodautoscaler_spec_target_metric{metric_name="$rule"}',
                "desired {{namespace}}/{{horizontalpodautoscaler}}",
            ),
            query(
                'kube_horizontalpodautoscaler_status_current_replicas{namespace=~"$namespace"}'
                " and on (namespace, horizontalpodautoscaler)"
                ' kube_horizontalpodautoscaler_spec_target_metric{metric_name="$rule"}',
                "current {{namespace}}/{{horizontalpodautoscaler}}",
                "B",
            ),
            query(
                f"sum by (namespace) ({ONE_COPY} (scaleahead_series_served{{{SERIES}}}))",
                "served in {{namespace}}",
                "C",
            ),
        ).override_by_regexp(
            "^served.*",
            [
                model.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
                model.DynamicConfigValue(id_val="unit", value="reqps"),
            ],
        ),
    ]


def service_panels() -> list[Panel]:
    rule = 'rule="$rule"'
    return [
        graph(
            "Cycle duration",
            "Wall time of one forecast cycle (fetch, fit, store), per replica: the 99th "
            "percentile and the mean.",
            "s",
            query(
                "histogram_quantile(0.99, sum by (instance, le) "
                f"(rate(scaleahead_cycle_duration_seconds_bucket{{{rule}}}[$__rate_interval])))",
                "p99 {{instance}}",
            ),
            query(
                per_second("scaleahead_cycle_duration_seconds_sum", "instance", rule)
                + " / "
                + per_second("scaleahead_cycle_duration_seconds_count", "instance", rule),
                "mean {{instance}}",
                "B",
            ),
        ),
        graph(
            "Since the last successful cycle",
            "Seconds since each replica last finished a cycle of the rule; past the TTL "
            "its series fall back to their actuals.",
            "s",
            query(
                f"time() - scaleahead_cycle_last_success_timestamp_seconds{{{rule}}}",
                "{{instance}}",
            ),
            query('max by (rule) (scaleahead_rule_forecast_ttl_seconds{rule="$rule"})', "TTL", "B"),
        ),
        graph(
            "Cycle and fit failures",
            "Cycles that stored no forecast, and series whose forecast failed, per second.",
            "ops",
            query(
                per_second("scaleahead_cycle_failures_total", "instance", rule),
                "cycles {{instance}}",
            ),
            query(
                per_second("scaleahead_fit_failures_total", "instance", rule),
                "fits {{instance}}",
                "B",
            ),
            query(
                per_second("scaleahead_fallback_total", "instance, reason", rule),
                "fallback answers {{reason}} {{instance}}",
                "C",
            ),
        ),
        graph(
            "Series forecast",
            "Series forecast by the last cycle of the rule, per replica.",
            "short",
            query(f"scaleahead_cycle_series{{{rule}}}", "{{instance}}"),
        ),
        graph(
            "Prometheus query latency",
            "Latency of scaleahead's calls to Prometheus: 99th percentile per endpoint.",
            "s",
            query(
                "histogram_quantile(0.99, sum by (endpoint, le) "
                "(rate(scaleahead_prometheus_query_duration_seconds_bucket[$__rate_interval])))",
                "p99 {{endpoint}}",
            ),
        ),
        graph(
            "Prometheus query errors",
            "Failed calls to Prometheus per second by kind (timeout, unreachable, "
            "server_error, throttled, refused, bad_response; every retried attempt counts), "
            "against all calls.",
            "ops",
            query(
                per_second("scaleahead_prometheus_query_errors_total", "endpoint, kind"),
                "{{kind}} {{endpoint}}",
            ),
            query(
                per_second("scaleahead_prometheus_query_duration_seconds_count", "endpoint"),
                "calls {{endpoint}}",
                "B",
            ),
        ),
        graph(
            "API requests by route and code",
            "Requests answered per second, including those refused by authentication, "
            "authorization or validation.",
            "reqps",
            query(
                per_second("scaleahead_api_requests_total", "route, code"),
                "{{route}} {{code}}",
            ),
        ),
        graph(
            "API latency",
            "99th percentile time from a request's arrival to its last byte, per route.",
            "s",
            query(
                "histogram_quantile(0.99, sum by (route, le) "
                "(rate(scaleahead_api_request_duration_seconds_bucket[$__rate_interval])))",
                "p99 {{route}}",
            ),
        ),
    ]


def variables() -> list[Builder[model.VariableModel]]:
    return [
        db.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        db.QueryVariable("rule")
        .label("Rule")
        .description("The rule, named as the external metric it serves.")
        .datasource(DATASOURCE)
        .query("label_values(scaleahead_rule_lead_seconds, rule)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC),
        db.QueryVariable("namespace")
        .label("Namespace")
        .description("The namespace label of the rule's series.")
        .datasource(DATASOURCE)
        .query('label_values(scaleahead_series_served{rule="$rule"}, namespace)')
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*"),
        db.AdHocVariable("filters")
        .label("Series labels")
        .description("Any other label of the rule's series (service, route, ...).")
        .datasource(DATASOURCE),
        db.QueryVariable("lead_step")
        .label("Lead + step (s)")
        .description("The rule's lead plus one step, for offsetting forecasts onto their time.")
        .datasource(DATASOURCE)
        .query(
            'query_result(max(scaleahead_rule_lead_seconds{rule="$rule"})'
            ' + max(scaleahead_rule_step_seconds{rule="$rule"}))'
        )
        .regex(r"/^\S* (\d+) \d+$/")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .hide(model.VariableHide.HIDE_VARIABLE),
        db.CustomVariable("window")
        .label("Judged over")
        .description("The window realised coverage and error are averaged over.")
        .values("1h,6h,1d,7d")
        .current(model.VariableOption(text="1h", value="1h", selected=True)),
    ]


def build() -> db.Dashboard:
    """The dashboard, built."""
    board = (
        db.Dashboard("scaleahead")
        .uid(UID)
        .description(
            "Whether to trust the forecast: served value, forecast and band against what "
            "happened, realised error and peak coverage, fallbacks, the HPA, and the "
            "service's own health."
        )
        .tags(["scaleahead", "autoscaling", "kubernetes"])
        .editable()
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .variables(variables())
    )
    sections = (
        ("Forecast against what happened", series_panels()),
        ("Serving state and the HPA", state_panels()),
        ("The service", service_panels()),
    )
    next_id = 1
    for title, panels in sections:
        board = board.with_row(db.Row(title).id(next_id))
        next_id += 1
        for panel in panels:
            board = board.with_panel(panel.id(next_id))
            next_id += 1
    return board


def render() -> str:
    """The dashboard as the JSON Grafana imports (sorted keys, two-space indent)."""
    return JSONEncoder(sort_keys=True, indent=2).encode(build().build()) + "\n"


def main() -> int:
    OUT.write_text(render())
    print(f"wrote {OUT} ({len(json.loads(OUT.read_text())['panels'])} panels and rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
