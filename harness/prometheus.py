"""A real Prometheus server on loopback with a temporary TSDB, history backfilled with
the real promtool from OpenMetrics samples."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.net import free_port, wait_http

STEP = 60
SCRAPE = 15  # seconds between backfilled counter samples


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
    host: str = "127.0.0.1"  # or a bridge's gateway, for pods

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.data}",
                f"--web.listen-address={self.host}:{self.port}",
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


class MissingTool(RuntimeError):
    """A program the real parts need is not installed."""


def system_tool(name: str) -> str:
    """The path of a program Debian's packages install (prometheus, promtool, etcd)."""
    path = shutil.which(name)
    if path is None:
        raise MissingTool(f"{name} not found: run scripts/test, which installs Debian's packages")
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


def counter_lines(labels: str, counts: np.ndarray, start: int) -> list[str]:
    """OpenMetrics samples of `http_requests_total{labels}` growing by `counts` requests a
    minute from `start`, scraped every SCRAPE seconds (each minute's count spread evenly
    over its scrapes, as a real counter grows)."""
    sub = STEP // SCRAPE
    cumulative = np.concatenate([[0.0], np.cumsum(np.repeat(counts / sub, sub))])
    stamps = start + SCRAPE * np.arange(len(cumulative))
    return [
        f"http_requests_total{{{labels}}} {v:.6f} {t}"
        for t, v in zip(stamps.tolist(), cumulative.tolist(), strict=True)
    ]


def backfilled(
    lines: list[str],
    root: Path,
    end: int,
    series: list[BackfilledSeries] | None = None,
    host: str = "127.0.0.1",
) -> PrometheusServer:
    """A Prometheus (not started) on a free port of `host`, its TSDB under `root` holding
    the OpenMetrics sample `lines` (after their # HELP/# TYPE), backfilled up to `end`."""
    data = root / "data"
    write_blocks(lines, data)
    config = root / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")
    return PrometheusServer(
        system_tool("prometheus"), data, config, free_port(), end, series or [], host=host
    )
