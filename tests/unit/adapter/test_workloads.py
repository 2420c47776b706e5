"""A workload's lead measured from its pods' creation-to-Ready times, and an HPA's metric
selector read as ours, without a cluster (tests/integration/adapter/test_workloads.py
runs the same against a real kube-apiserver)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adapter.cluster.workloads import (
    measured_lead,
    metric_selector,
    scale_down_window,
    startup_seconds,
)
from forecaster.config import Rule
from tests.conftest import RULE_QUERY

RULE = "http_requests_forecast"


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_lead_is_a_high_percentile_of_recent_start_ups_within_bounds():
    rule = Rule(name=RULE, query=RULE_QUERY, lead="2m")
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def pod(created: int, ready: int | None) -> dict:
        status = {}
        if ready is not None:
            when = iso(now + timedelta(seconds=ready))
            status = {
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": when}]
            }
        return {
            "metadata": {"creationTimestamp": iso(now + timedelta(seconds=created))},
            "status": status,
        }

    pods = [pod(0, 200), pod(10, 240), pod(20, 270), pod(30, 290), pod(40, None), pod(50, 140)]
    assert sorted(startup_seconds(pods)) == [90, 200, 230, 250, 260]
    assert measured_lead(rule, pods) == 300  # p90 = 256 s, whole steps up
    assert measured_lead(rule, pods[:2]) is None  # too few to tell
    slow = [pod(0, 3000)] * 5
    assert measured_lead(rule, slow) == rule.lead_bounds[1] == 360  # what the horizon covers
    fast = [pod(0, 5)] * 5
    assert measured_lead(rule, fast) == rule.lead_bounds[0] == 60  # one step at least
    bounded = Rule(name=RULE, query=RULE_QUERY, lead="2m", lead_min="3m", lead_max="4m")
    assert measured_lead(bounded, fast) == 180 and measured_lead(bounded, slow) == 240
    assert (
        str(
            metric_selector(
                {
                    "matchLabels": {"a": "b"},
                    "matchExpressions": [
                        {"key": "c", "operator": "NotIn", "values": ["x", "y"]},
                        {"key": "d", "operator": "DoesNotExist"},
                    ],
                }
            )
        )
        == "a=b,c notin (x,y),!d"
    )


def test_the_scale_down_window_is_the_hpas_own_where_it_says():
    window = {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 600}}}
    assert scale_down_window(window) == 600
    assert scale_down_window({"behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}}) == 0
    # Unset: the controller's default applies (the engine's).
    assert scale_down_window({}) is None
    assert scale_down_window({"behavior": None}) is None
    assert scale_down_window({"behavior": {"scaleUp": {"stabilizationWindowSeconds": 0}}}) is None
    assert scale_down_window({"behavior": {"scaleDown": {"selectPolicy": "Min"}}}) is None
    assert (
        scale_down_window({"behavior": {"scaleDown": {"stabilizationWindowSeconds": -1}}}) is None
    )
