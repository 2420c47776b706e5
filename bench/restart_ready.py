"""How long a (re)started replica takes to be ready with 1,000 series, end to end.

A real Prometheus (Debian's, on loopback) holds two days and an hour of one-minute
counters for N series (windows of the NASA-HTTP trace, each scaled differently), ending
half an hour from now. Then:

1. In process, the first cycle's backfill (one query_range over the whole history, in
   chunks of POINTS_PER_RESPONSE points) with the chunks fetched one at a time (the
   baseline) and PARALLEL_CHUNKS at a time (as served), and the whole first cycle
   (backfill and a fit of every series).
2. End to end, a start and a restart without a state directory (the baseline), then a
   start and a restart with `--state-dir` (the restart resumes from the start's
   checkpoint): `scaleahead serve` as a subprocess, from exec to /livez, to /readyz
   answering 200, and to the first metric value served; with the refits in the
   forecaster process (the baseline), in one worker process and in one per usable core
   (`--fit-workers`); once it serves, the resident memory of the serving process, of its
   forecaster process and of the fitting workers (two runs at different --series give
   the cost of a series: the difference over theirs); once the first cycle (and its
   checkpoint) has ended, the forecaster process' resident memory and its peak (VmHWM).

Run: python -m bench.restart_ready [--series 1000] [--fit-workers 0,1,2] [--end-to-end-only]
"""

from __future__ import annotations

import argparse
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from forecaster.config import PrometheusConfig, Rule
from forecaster.runtime.cycle import ForecastCycle
from forecaster.runtime.fitting import usable_cores
from forecaster.runtime.store import ForecastStore
from forecaster.sources import prometheus as prom
from forecaster.sources.prometheus import PrometheusClient, PrometheusSource
from forecaster.sources.trace import read_trace
from forecaster.times import SETTLE, grid_floor
from harness.net import free_port
from harness.proc import rss_kib, spawned
from harness.prometheus import PrometheusServer, system_tool, write_blocks

TRACE = Path(__file__).resolve().parent.parent.parent / "shared" / "traces" / "nasa_http_1995.csv"
STEP = 60
HISTORY = 2 * 86400 + 3600
AHEAD = 1800
QUERY = "sum by (namespace, service) (rate(http_requests_total{<<.LabelMatchers>>}[3m]))"


def backfill(data: Path, n: int, end: int) -> None:
    counts = read_trace(TRACE).counts
    minutes = (HISTORY + AHEAD) // STEP
    rng = np.random.default_rng(7)
    stamps = end + AHEAD - STEP * np.arange(minutes, -1, -1)
    lines = ["# HELP http_requests Requests served.", "# TYPE http_requests counter"]
    for i in range(n):
        while True:
            off = int(rng.integers(0, len(counts) - minutes))
            window = counts[off : off + minutes]
            if np.isfinite(window).all():
                break
        totals = np.concatenate([[0.0], np.cumsum(window * rng.uniform(0.2, 20.0))])
        lines.extend(
            f'http_requests_total{{namespace="default",service="s{i}"}} {v:.1f} {t}'
            for t, v in zip(stamps.tolist(), totals.tolist(), strict=True)
        )
    write_blocks(lines, data)


def in_process(url: str, rule: Rule) -> None:
    end = grid_floor(time.time() - SETTLE, STEP)
    start = end - HISTORY + STEP
    for chunks in (1, prom.PARALLEL_CHUNKS):
        prom.PARALLEL_CHUNKS = chunks
        client = PrometheusClient(PrometheusConfig(url=url, timeout="60s"))
        began = time.perf_counter()
        fetched = PrometheusSource(client).fetch_range(rule, start, end)
        seconds = time.perf_counter() - began
        points = sum(len(s.timestamps) for s in fetched)
        print(
            f"  backfill, {chunks} chunk(s) at a time: {seconds:6.2f} s "
            f"({len(fetched)} series, {points:,} points)"
        )
        client.close()
    client = PrometheusClient(PrometheusConfig(url=url, timeout="60s"))
    cycle = ForecastCycle([rule], PrometheusSource(client), ForecastStore())
    report = cycle.run(rule, time.time())
    print(f"  whole first cycle (backfill + fit of {report.series} series): {report.seconds:.2f} s")
    client.close()


def write_config(root: Path, url: str, rule: Rule) -> Path:
    config = root / "scaleahead.yaml"
    config.write_text(
        f"prometheus:\n  url: {url}\n  timeout: 60s\n"
        f"rules:\n  - name: {rule.name}\n    query: '{rule.query}'\n    history: {HISTORY}s\n"
        f"    max_series: {rule.max_series}\n"
    )
    return config


def end_to_end(root: Path, url: str, rule: Rule, workers: int) -> None:
    config = write_config(root, url, rule)
    exe = Path(sys.executable).parent / "scaleahead"
    state = root / f"state-{workers}"
    checkpoint = state / f"{rule.name}.checkpoint"
    runs = [("start", None), ("restart", None), ("start", state), ("restart", state)]
    for k, (name, state_dir) in enumerate(runs):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = (root / f"serve-{workers}-{k}.log").open("wb")
        began = time.perf_counter()
        proc = subprocess.Popen(
            [
                *(str(exe), "serve", "--config", str(config), "--port", str(port)),
                f"--fit-workers={workers}",
                *([f"--state-dir={state_dir}"] if state_dir else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        marks: dict[str, float] = {}
        path = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/default/{rule.name}"
        while "value" not in marks and time.perf_counter() - began < 600:
            try:
                if "live" not in marks and httpx.get(f"{base}/livez").status_code == 200:
                    marks["live"] = time.perf_counter() - began
                if "ready" not in marks and httpx.get(f"{base}/readyz").status_code == 200:
                    marks["ready"] = time.perf_counter() - began
                if "ready" in marks:
                    r = httpx.get(f"{base}{path}", params={"labelSelector": "service=s0"})
                    if r.status_code == 200:
                        marks["value"] = time.perf_counter() - began
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        serving, forecaster, fitting = memory(proc.pid)
        while state_dir and name == "start" and not checkpoint.exists():
            time.sleep(0.05)  # the first cycle's checkpoint, written after its forecasts
        time.sleep(1.0)  # past the cycle's end, where its freed heap is trimmed
        [pid] = spawned(proc.pid)
        peak, now = rss_kib(pid, peak=True) / 1024, rss_kib(pid) / 1024
        proc.terminate()
        proc.wait(30)
        if state_dir:
            name += f", --state-dir ({checkpoint.stat().st_size / 2**20:.0f} MiB)"
        print(
            f"  --fit-workers {workers}, {name}: live {marks.get('live', float('nan')):.2f} s, "
            f"ready {marks.get('ready', float('nan')):.2f} s, "
            f"first value {marks.get('value', float('nan')):.2f} s; RSS MiB at the first "
            f"value: serving {serving:.0f}, forecaster {forecaster:.0f}, {len(fitting)} "
            f"fitting workers {sum(fitting):.0f}; forecaster at its peak {peak:.0f}, "
            f"once its first cycle (and checkpoint) ended {now:.0f}"
        )


def beside_a_peer(root: Path, url: str, rule: Rule, workers: int) -> None:
    from harness.aggregation import endpoint_slice, peer_rbac, registration
    from harness.controlplane import ControlPlane
    from harness.node import Bridge
    from harness.pki import CA

    bridge = Bridge.claim()  # the peer's address: EndpointSlices refuse loopback
    plane = ControlPlane(root / f"k8s-{workers}", str(Path(sys.executable).parent / "kubectl"))
    plane.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = free_port(), free_port()
        plane.apply(registration(ports[0]))
        plane.apply(peer_rbac())
        token = plane.kubectl("create", "token", "scaleahead", "-n", "scaleahead").stdout.strip()
        kubeconfig = plane.kubeconfig("scaleahead-sa", token=token)
        config = write_config(root, url, rule)
        ca = CA("serving-ca", root / f"pki-{workers}")
        shared = ca.issue("shared", "scaleahead", hosts=("127.0.0.1", bridge.gateway), server=True)
        hosts = (bridge.gateway, "127.0.0.1")
        for k, name in enumerate(("the peer, afresh", "a new replica")):
            began = time.perf_counter()
            log = (root / f"peer-{workers}-{k}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [
                        *(str(Path(sys.executable).parent / "scaleahead"), "serve"),
                        *(f"--config={config}", f"--kubeconfig={kubeconfig}"),
                        *(f"--tls-cert-file={shared.cert}", f"--tls-private-key-file={shared.key}"),
                        *(f"--bind-address={hosts[k]}", f"--secure-port={ports[k]}"),
                        f"--fit-workers={workers}",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            base = f"https://{hosts[k]}:{ports[k]}"
            ready = until(base, ca.cert, began, lambda text: True)
            own = until(base, ca.cert, began, lambda text: "borrowed" not in text)
            print(
                f"  --fit-workers {workers}, {name}: ready {ready:.2f} s, "
                f"serving forecasts of its own {own:.2f} s"
            )
            if k == 0:
                plane.apply(endpoint_slice(bridge.gateway, ports[0], "peer"))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
        plane.stop()
        bridge.release()


def until(base: str, ca: Path, began: float, done: Callable[[str], bool]) -> float:
    """Seconds from `began` until /readyz?verbose answers 200 with text `done` accepts."""
    context = ssl.create_default_context(cafile=str(ca))
    while time.perf_counter() - began < 900:
        try:
            r = httpx.get(f"{base}/readyz?verbose", verify=context, timeout=5)
            if r.status_code == 200 and done(r.text):
                return time.perf_counter() - began
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return float("nan")


def memory(pid: int) -> tuple[float, float, list[float]]:
    """Resident MiB of `scaleahead serve` (pid), of its forecaster process, and of each of
    the latter's fitting workers."""
    [forecaster] = spawned(pid)
    return (
        rss_kib(pid) / 1024,
        rss_kib(forecaster) / 1024,
        [rss_kib(w) / 1024 for w in spawned(forecaster)],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument(
        "--fit-workers",
        default=None,
        help="comma-separated worker counts to serve with (default: 0, 1 and one a core)",
    )
    parser.add_argument("--end-to-end-only", action="store_true", help="skip the in-process rows")
    parser.add_argument(
        "--peer", action="store_true", help="only a new replica beside a Ready peer (TLS)"
    )
    args = parser.parse_args()
    counts = (
        sorted({0, 1, usable_cores()})
        if args.fit_workers is None
        else [int(n) for n in args.fit_workers.split(",")]
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        end = grid_floor(time.time(), STEP)
        began = time.perf_counter()
        backfill(root / "data", args.series, end)
        print(f"backfilled {args.series} series in {time.perf_counter() - began:.0f} s")
        config = root / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 15s\n")
        server = PrometheusServer(
            system_tool("prometheus"), root / "data", config, free_port(), end + AHEAD
        )
        server.start()
        try:
            rule = Rule(
                name="http_requests_forecast",
                query=QUERY,
                history=f"{HISTORY}s",
                max_series=max(args.series, Rule.model_fields["max_series"].default),
            )
            if args.peer:
                print("a new replica beside a Ready peer (scaleahead serve over TLS):")
                for workers in counts:
                    beside_a_peer(root, server.url, rule, workers)
                return
            if not args.end_to_end_only:
                print("in process:")
                in_process(server.url, rule)
            print("end to end (scaleahead serve):")
            for workers in counts:
                end_to_end(root, server.url, rule, workers)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
