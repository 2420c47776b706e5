"""Shared by every test: clocks, real traces, and how to run the scaleahead command.
Light on purpose: the fixtures that start real parts (Prometheus, the control plane)
live in tests/integration/conftest.py, and every test under tests/integration is
marked `integration` (`pytest -m "not integration"` runs the unit tests alone)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from forecaster.sources.trace import Trace, read_trace
from harness.net import REPO, TRACES

__all__ = ["REPO", "TRACES"]

STEP = 60
RULE_QUERY = "sum by (namespace, service) (rate(http_requests_total{<<.LabelMatchers>>}[1m]))"
INTEGRATION = Path(__file__).resolve().parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


class Clock:
    """A settable clock for code that takes one: `clock.t` is the time it tells."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def parse_quantity(text: str) -> float:
    """A quantity the API served ("1234m", "12") as a number."""
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def shared_trace(name: str) -> Trace:
    path = TRACES / name
    if not path.is_file():
        pytest.fail(f"missing real trace {path}: the shared traces must sit beside the repo")
    return read_trace(path)


@pytest.fixture(scope="session")
def nasa() -> Trace:
    return shared_trace("nasa_http_1995.csv")


@pytest.fixture(scope="session")
def isp() -> Trace:
    return shared_trace("isp_uk_academic_backbone_5min.csv")


def venv_tool(name: str) -> str:
    """A command the test extras install into this environment (else on PATH)."""
    candidate = Path(sys.executable).parent / name
    path = str(candidate) if candidate.exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install the test extras (scripts/test does)")
    return path


def scaleahead_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "scaleahead"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "adapter.cli"]


def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("KUBECONFIG", None)
    return env
