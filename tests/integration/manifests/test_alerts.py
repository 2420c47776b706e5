"""The alerts: every expression checked by promtool and evaluated on synthetic series."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from harness.prometheus import system_tool
from tests.integration.manifests.test_manifests import one, render

TESTS = Path(__file__).with_name("alerts.test.yaml")


def rule_groups() -> dict[str, Any]:
    rule = one(render("monitoring"), "PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


def test_promtool_checks_the_rules(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule_groups()))
    out = subprocess.run(
        [system_tool("promtool"), "check", "rules", str(rules)], capture_output=True, text=True
    )
    print(out.stdout, out.stderr)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 12 rules found" in out.stdout


def test_promtool_evaluates_every_alert_on_synthetic_series(tmp_path):
    groups = rule_groups()
    alerts = {r["alert"] for g in groups["groups"] for r in g["rules"]}
    tested = {
        t["alertname"]
        for case in yaml.safe_load(TESTS.read_text())["tests"]
        for t in case["alert_rule_test"]
    }
    assert tested == alerts, "every alert has a firing case"
    for group in groups["groups"]:
        for r in group["rules"]:
            r["annotations"].pop("description")  # static prose; its templates are checked above
            r["annotations"].pop("runbook_url")  # static; tests/integration/test_release.py
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(groups))
    shutil.copy(TESTS, tmp_path / TESTS.name)
    out = subprocess.run(
        [system_tool("promtool"), "test", "rules", TESTS.name],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    print(out.stdout, out.stderr)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
