"""The closed loop on a real node: three identical workloads receive the same replayed
traffic at real time; a stock HPA scales one on the current rate (reactive), one on the
current rate with more headroom (a lower target: what a user does instead of predicting),
and one on scaleahead's forecast (predictive).

Set-up (all real, harness.node): the project's image built from its Dockerfile and
installed with `kubectl apply -k` (an overlay naming the image and this Prometheus);
three Deployments of harness/workload.py (Ready STARTUP s after they start, CAPACITY
requests/s each, the excess shed with 503, a request counter) behind three Services; a
Prometheus on the node's bridge that scrapes their pods (kubernetes_sd) and holds the
days before the stretch, backfilled, for both; the reactive HPA reads the same query's
current value through a stand-in of prometheus-adapter's custom metrics API
(harness/custom_metrics.py: prometheus-adapter cannot be built here), the predictive one
reads `http_requests_forecast`. Same behaviour (manifests/examples/hpa.yaml); the target
is 0.7 of a pod's capacity, 0.6 for the headroom arm (about 17 % more pods for the same
demand). The two reactive arms are two points of the reactive trade-off between requests
shed and pod-minutes: the predictive arm wins when it sheds fewer than the line between
them at its pod-minutes.

The traffic: a stretch of the bundled NASA-HTTP trace, scaled to PEAK requests/s at its
top, sent to each arm's Ready pods in turn (as its Endpoints would: there is no
kube-proxy); a request with no Ready pod to go to is shed. By default the stretch with the
steepest rise (a ramp and a surge); with --seed N, one drawn at random (any stretch with
no empty minute): traffic nobody picked for a surge.

It prints, per arm: requests, shed (503 from a full pod, or no Ready pod), shed share,
pod-minutes (pods Ready or starting), p99 latency at the load generator; then what
`scaleahead backtest` predicted for the same stretch through its simulated HPA; and
writes a PNG of both arms' Ready capacity against demand, and the figures as JSON.

Run (as root; scripts/test installs what it needs):
    python -m bench.closed_loop [--minutes 30] [--seed N] [--out bench/out/closed_loop]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from forecaster.sources.trace import demo_trace
from harness.custom_metrics import GROUP, CurrentValueAPI
from harness.image import pause_image, project_image
from harness.net import REPO, free_port
from harness.node import Node
from harness.pki import CA
from harness.prometheus import SCRAPE, PrometheusServer, system_tool, write_blocks
from harness.workload import deployment

NS = "bench"
ARMS = ("reactive", "headroom", "predictive")
STARTUP = 55  # seconds from a pod's start to Ready (with the container's own start, under a
# minute: scaleahead should measure a lead of 1m)
CAPACITY = 5.0  # requests/s one Ready pod serves
TARGET = 0.7 * CAPACITY  # the HPAs' AverageValue target
TARGETS = {"reactive": TARGET, "headroom": 0.6 * CAPACITY, "predictive": TARGET}
PEAK = 40.0  # requests/s at the stretch's top
HISTORY_DAYS = 8
SETUP = 300  # seconds from the backfill to the first request (install, pods Ready)
QUERY = 'sum(rate(http_requests_total{{namespace="{namespace}",service="{service}"}}[2m]))'


def stretch(minutes: int, seed: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """(history, stretch, its first minute in the trace) of the bundled trace in
    requests/s, scaled to PEAK. Of the windows of `minutes` after HISTORY_DAYS with no
    empty minute: without a seed, the one whose 5-minute average rises most above its first
    quarter's (a ramp and a surge, not one odd minute); with one, one drawn at random."""
    trace = demo_trace()
    rates = trace.counts / trace.resolution
    known = np.isfinite(rates)
    rates = np.interp(np.arange(rates.size), np.flatnonzero(known), rates[known])
    first = HISTORY_DAYS * 1440
    starts = [s for s in range(first, rates.size - minutes, 5) if rates[s : s + minutes].min() > 0]
    if seed is not None:
        best = int(np.random.default_rng(seed).choice(starts))
    else:
        smooth = np.convolve(rates, np.ones(5) / 5, mode="same")
        quarter = max(1, minutes // 4)
        best = max(
            starts,
            key=lambda s: smooth[s : s + minutes].max() / smooth[s : s + quarter].mean(),
        )
    scale = PEAK / rates[best : best + minutes].max()
    history = rates[best - HISTORY_DAYS * 1440 : best] * scale
    return history, rates[best : best + minutes] * scale, best


def backfill_lines(history: np.ndarray, end: int) -> list[str]:
    """Both arms' history as counters (label pod="history"), ending at `end`."""
    lines = ["# HELP http_requests Requests served.", "# TYPE http_requests counter"]
    sub = 60 // SCRAPE
    start = end - 60 * history.size
    increments = np.repeat(history * 60 / sub, sub)
    cumulative = np.concatenate([[0.0], np.cumsum(increments)])
    stamps = start + SCRAPE * np.arange(cumulative.size)
    for arm in ARMS:
        labels = f'namespace="{NS}",service="{arm}",pod="history"'
        lines.extend(
            f"http_requests_total{{{labels}}} {v:.3f} {t}"
            for t, v in zip(stamps.tolist(), cumulative.tolist(), strict=True)
        )
    return lines


def prometheus_config(targets: Path, path: Path) -> None:
    """Scrape the arms' pods listed in `targets` (Debian's Prometheus has no
    kubernetes_sd: the bench lists the pods itself, as that discovery would)."""
    path.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "10s"},
                "scrape_configs": [
                    {
                        "job_name": "bench",
                        "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "5s"}],
                    }
                ],
            }
        )
    )


def kubectl(node: Node, *args: str, input: str | None = None) -> str:
    return node.kubectl(*args, input=input).stdout


def apply(node: Node, *docs: dict[str, Any]) -> None:
    kubectl(node, "apply", "-f", "-", input=yaml.safe_dump_all(docs))


def workload(arm: str, image: str, replicas: int) -> list[dict[str, Any]]:
    labels = {"app": arm}
    return [
        deployment(arm, NS, image, replicas, STARTUP, CAPACITY, configmap="workload"),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": arm, "namespace": NS},
            "spec": {
                "selector": labels,
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
        },
    ]


def hpa(arm: str) -> dict[str, Any]:
    """The example HPA's behaviour and target type; the metric is the arm's."""
    doc = yaml.safe_load((REPO / "manifests" / "examples" / "hpa.yaml").read_text())
    doc["metadata"] = {"name": arm, "namespace": NS}
    doc["spec"]["scaleTargetRef"]["name"] = arm
    doc["spec"]["minReplicas"], doc["spec"]["maxReplicas"] = 1, 40
    target = {"type": "AverageValue", "averageValue": f"{round(TARGETS[arm] * 1000)}m"}
    if arm == "predictive":
        doc["spec"]["metrics"] = [
            {
                "type": "External",
                "external": {
                    "metric": {
                        "name": "http_requests_forecast",
                        "selector": {"matchLabels": {"service": arm}},
                    },
                    "target": target,
                },
            }
        ]
    else:
        doc["spec"]["metrics"] = [
            {
                "type": "Object",
                "object": {
                    "describedObject": {"apiVersion": "v1", "kind": "Service", "name": arm},
                    "metric": {"name": "http_requests"},
                    "target": target,
                },
            }
        ]
    return doc


def wait(what: str, check, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(2)
    raise TimeoutError(f"{what}: not after {timeout}s")


def ready_replicas(node: Node, arm: str) -> int:
    got = json.loads(kubectl(node, "get", "deployment", arm, "-n", NS, "-o", "json"))
    return int(got["status"].get("readyReplicas") or 0)


@dataclass
class Tally:
    """What one arm's load generator saw, per second of the run."""

    seconds: int
    sent: np.ndarray = field(init=False)
    ok: np.ndarray = field(init=False)
    shed: np.ndarray = field(init=False)  # 503 from a full pod
    unrouted: np.ndarray = field(init=False)  # no Ready pod to send it to
    failed: np.ndarray = field(init=False)  # connection error or timeout
    latencies: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("sent", "ok", "shed", "unrouted", "failed"):
            setattr(self, name, np.zeros(self.seconds, dtype=np.int64))


class Pods:
    """Each arm's pods, listed from the API server every 2 s: the Ready ones' addresses
    (what the Service's Endpoints hold, and where the load goes), and every pod with an
    address written as Prometheus' file_sd targets (what kubernetes_sd would find)."""

    def __init__(self, node: Node, targets: Path) -> None:
        self.node, self.targets = node, targets
        self.ready: dict[str, list[str]] = {arm: [] for arm in ARMS}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.refresh()
        self._thread.start()

    def refresh(self) -> None:
        pods = json.loads(kubectl(self.node, "get", "pods", "-n", NS, "-o", "json"))["items"]
        ready: dict[str, list[str]] = {arm: [] for arm in ARMS}
        groups = []
        for pod in pods:
            arm = pod["metadata"].get("labels", {}).get("app")
            ip = pod["status"].get("podIP")
            if arm not in ARMS or not ip:
                continue
            labels = {"namespace": NS, "service": arm, "pod": pod["metadata"]["name"]}
            groups.append({"targets": [f"{ip}:8080"], "labels": labels})
            conditions = pod["status"].get("conditions") or []
            if pod["metadata"].get("deletionTimestamp") is None and any(
                c["type"] == "Ready" and c["status"] == "True" for c in conditions
            ):
                ready[arm].append(ip)
        self.ready = ready
        partial = self.targets.with_suffix(".partial")
        partial.write_text(json.dumps(groups))
        partial.rename(self.targets)

    def _run(self) -> None:
        while not self._stop.wait(2):
            try:
                self.refresh()
            except Exception as err:  # keep the last known pods
                print(f"pods: {err}", file=sys.stderr)

    def stop(self) -> None:
        self._stop.set()


async def drive(demand: np.ndarray, pods: Pods, tallies: dict[str, Tally]) -> None:
    """Send each arm `demand` (requests/s per minute, interpolated per second) at real time."""
    seconds = tallies[ARMS[0]].seconds
    per_second = np.interp(np.arange(seconds) / 60, np.arange(demand.size) + 0.5, demand)
    turn = dict.fromkeys(ARMS, 0)
    owed = dict.fromkeys(ARMS, 0.0)
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=2.0, limits=limits) as client:

        async def one(arm: str, ip: str, second: int) -> None:
            tally = tallies[arm]
            began = time.monotonic()
            try:
                r = await client.get(f"http://{ip}:8080/")
            except httpx.HTTPError:
                tally.failed[second] += 1
                return
            tally.latencies.append(time.monotonic() - began)
            if r.status_code == 200:
                tally.ok[second] += 1
            else:
                tally.shed[second] += 1

        tasks: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        tick = 0.05
        step = 0
        while True:
            now = time.monotonic() - start
            second = int(now)
            if second >= seconds:
                break
            for arm in ARMS:
                owed[arm] += per_second[second] * tick
                while owed[arm] >= 1:
                    owed[arm] -= 1
                    tallies[arm].sent[second] += 1
                    ips = pods.ready[arm]
                    if not ips:
                        tallies[arm].unrouted[second] += 1
                        continue
                    turn[arm] = (turn[arm] + 1) % len(ips)
                    task = asyncio.create_task(one(arm, ips[turn[arm]], second))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            step += 1
            await asyncio.sleep(max(0.0, step * tick - (time.monotonic() - start)))
        await asyncio.gather(*tasks, return_exceptions=True)


class Timeline:
    """Each arm's pods (all, and Ready) every 5 s."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.rows: list[tuple[float, dict[str, tuple[int, int]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.began = time.time()

    def _run(self) -> None:
        while True:
            row = {}
            for arm in ARMS:
                got = json.loads(
                    kubectl(self.node, "get", "deployment", arm, "-n", NS, "-o", "json")
                )
                status = got["status"]
                row[arm] = (int(status.get("replicas") or 0), int(status.get("readyReplicas") or 0))
            self.rows.append((time.time() - self.began, row))
            if self._stop.wait(5):
                return

    def start(self) -> None:
        self.began = time.time()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def pod_minutes(self, arm: str) -> float:
        t = np.array([r[0] for r in self.rows])
        pods = np.array([r[1][arm][0] for r in self.rows])
        return float(np.sum(pods[:-1] * np.diff(t)) / 60)


def backtest_prediction(
    history: np.ndarray, demand: np.ndarray, t0: int, folder: Path, target: float
) -> dict[str, Any]:
    """What `scaleahead backtest` predicts for the same stretch through its simulated HPA:
    the same counts, lead and capacity, and `target`."""
    counts = np.concatenate([history, demand]) * 60
    start = t0 - 60 * history.size
    csv = folder / "trace.csv"
    lines = ["timestamp,value"] + [
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(start + 60 * i))},{c:.3f}"
        for i, c in enumerate(counts)
    ]
    csv.write_text("\n".join(lines) + "\n")
    out = folder / f"backtest-{target}.json"
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    subprocess.run(
        [
            str(Path(sys.executable).parent / "scaleahead"),
            "backtest",
            "--csv",
            str(csv),
            "--from",
            iso(t0),
            "--to",
            iso(t0 + 60 * demand.size),
            "--lead",
            f"{math.ceil(STARTUP / 60)}m",
            "--capacity-per-pod",
            str(CAPACITY),
            "--target-per-pod",
            str(target),
            "--min-replicas",
            "1",
            "--max-replicas",
            "40",
            "--json",
            str(out),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.read_text())


def simulated_row(arm: str, methods: list[dict[str, Any]]) -> dict[str, float]:
    """The backtest's figures for an arm: scaleahead's for the predictive one, the
    reactive baseline's for the others."""
    name = "scaleahead" if arm == "predictive" else "reactive"
    method = next(m for m in methods if m["method"] == name)
    return {"shed_share": method["beyond_capacity_share"], "pod_minutes": method["pod_minutes"]}


def verdict(rows: dict[str, Any]) -> str:
    """The predictive arm against the reactive trade-off: the shed share of the line
    through the two reactive arms (shed share against pod-minutes) at the predictive arm's
    pod-minutes."""
    low, high, ours = rows["reactive"], rows["headroom"], rows["predictive"]
    span = high["pod_minutes"] - low["pod_minutes"]
    if span <= 0:
        return "reactive trade-off: the headroom arm cost no more pods; no line to compare with"
    t = (ours["pod_minutes"] - low["pod_minutes"]) / span
    line = max(0.0, low["shed_share"] + t * (high["shed_share"] - low["shed_share"]))
    where = "between them" if 0 <= t <= 1 else "extrapolated beyond them"
    return (
        f"reactive trade-off at the predictive arm's {ours['pod_minutes']:.1f} pod-minutes "
        f"({where}): {100 * line:.2f}% shed; predictive {100 * ours['shed_share']:.2f}%"
    )


def plot(path: Path, demand: np.ndarray, timeline: Timeline, tallies: dict[str, Tally]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    top.stairs(demand, np.arange(demand.size + 1), color="black", label="demand (requests/s)")
    t = np.array([r[0] for r in timeline.rows]) / 60
    for arm, color in zip(ARMS, ("tab:red", "tab:orange", "tab:blue"), strict=True):
        ready = np.array([r[1][arm][1] for r in timeline.rows]) * CAPACITY
        pods = np.array([r[1][arm][0] for r in timeline.rows]) * CAPACITY
        top.step(t, ready, where="post", color=color, label=f"{arm}: Ready capacity")
        top.step(
            t,
            pods,
            where="post",
            color=color,
            alpha=0.3,
            linestyle="--",
            label=f"{arm}: all pods' capacity",
        )
        tally = tallies[arm]
        lost = (tally.shed + tally.unrouted + tally.failed).astype(float)
        bottom.plot(np.arange(lost.size) / 60, lost, color=color, label=f"{arm}: shed per second")
    top.set_ylabel("requests/s")
    top.legend(loc="upper left", fontsize=8)
    bottom.set_ylabel("requests shed /s")
    bottom.set_xlabel("minutes since the first request")
    bottom.legend(loc="upper left", fontsize=8)
    fig.suptitle("closed loop on a real node: reactive HPAs vs HPA on scaleahead's forecast")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=int, default=30)
    ap.add_argument("--seed", type=int, help="a stretch drawn at random (default: the surge)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "closed_loop")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    history, demand, offset = stretch(args.minutes, args.seed)
    root = Path(tempfile.mkdtemp(prefix="closed-loop-"))
    kubectl_bin = str(Path(sys.executable).parent / "kubectl")
    pause, image = pause_image(), project_image()
    node = Node(root / "node", kubectl_bin)
    prometheus: PrometheusServer | None = None
    metrics_api: CurrentValueAPI | None = None
    try:
        node.start(pause)
        node.import_image(*image)
        gateway = node.bridge.gateway
        # History up to the first request, SETUP seconds from now.
        t0 = (int(time.time()) + SETUP) // 60 * 60 + 60
        data = root / "prometheus" / "data"
        data.parent.mkdir()
        write_blocks(backfill_lines(history, t0), data)
        config = root / "prometheus" / "prometheus.yml"
        targets = root / "prometheus" / "targets.json"
        pods = Pods(node, targets)
        pods.refresh()
        prometheus_config(targets, config)
        prometheus = PrometheusServer(
            system_tool("prometheus"), data, config, free_port(), t0, host=gateway
        )
        prometheus.start()
        # scaleahead, as a user installs it.
        overlay = root / "overlay"
        overlay.mkdir()
        base = yaml.safe_load((REPO / "manifests" / "base" / "config.yaml").read_text())
        base["prometheus"]["url"] = prometheus.url
        (overlay / "config.yaml").write_text(yaml.safe_dump(base))
        name, tag = image[0].rsplit(":", 1)
        (overlay / "kustomization.yaml").write_text(
            yaml.safe_dump(
                {
                    "resources": [os.path.relpath(REPO / "manifests" / "base", overlay)],
                    "images": [
                        {"name": "ghcr.io/scaleahead/scaleahead", "newName": name, "newTag": tag}
                    ],
                    "configMapGenerator": [
                        {
                            "name": "scaleahead-config",
                            "namespace": "scaleahead",
                            "behavior": "replace",
                            "files": ["config.yaml"],
                        }
                    ],
                }
            )
        )
        kubectl(node, "apply", "-k", str(overlay))
        # The reactive arm's metric: the same query's current value (prometheus-adapter's job).
        kubectl(node, "create", "namespace", NS)
        ca = CA("custom-metrics-ca", root / "pki")
        serving = ca.issue(
            "custom-metrics",
            "custom-metrics",
            hosts=(gateway, f"custom-metrics.{NS}.svc"),
            server=True,
        )
        port = free_port()
        metrics_api = CurrentValueAPI(
            prometheus.url, "http_requests", QUERY, serving.cert, serving.key
        )
        metrics_api.start(gateway, port)
        apply(
            node,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "custom-metrics", "namespace": NS},
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]},
            },
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": "custom-metrics", "namespace": NS},
                "subsets": [
                    {"addresses": [{"ip": gateway}], "ports": [{"name": "https", "port": port}]}
                ],
            },
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": f"v1beta2.{GROUP}"},
                "spec": {
                    "group": GROUP,
                    "version": "v1beta2",
                    "groupPriorityMinimum": 100,
                    "versionPriority": 200,
                    "service": {"name": "custom-metrics", "namespace": NS, "port": 443},
                    "caBundle": base64.b64encode(ca.pem()).decode(),
                },
            },
        )
        kubectl(
            node,
            "create",
            "configmap",
            "workload",
            "-n",
            NS,
            f"--from-file=workload.py={REPO / 'harness' / 'workload.py'}",
        )
        first = {arm: max(1, math.ceil(demand[0] / TARGETS[arm])) for arm in ARMS}
        for arm in ARMS:
            apply(node, *workload(arm, image[0], first[arm]))
        pods.start()
        wait(
            "the workloads Ready",
            lambda: all(ready_replicas(node, a) == first[a] for a in ARMS),
        )
        wait(
            "scaleahead Ready",
            lambda: "2/2" in kubectl(node, "get", "deployment", "scaleahead", "-n", "scaleahead"),
        )
        for arm in ARMS:
            apply(node, hpa(arm))
        print(
            f"set up; first request at {time.strftime('%H:%M:%S', time.gmtime(t0))} UTC "
            f"({t0 - time.time():.0f}s from now); pods: {first}",
            flush=True,
        )
        if t0 < time.time():
            raise RuntimeError(f"set-up took longer than SETUP ({SETUP}s): raise it")
        time.sleep(t0 - time.time())
        seconds = 60 * demand.size
        tallies = {arm: Tally(seconds) for arm in ARMS}
        timeline = Timeline(node)
        timeline.start()
        asyncio.run(drive(demand, pods, tallies))
        timeline.stop()
        pods.stop()
        hpas = kubectl(node, "get", "hpa", "-n", NS)
        predicted = {
            target: backtest_prediction(history, demand, t0, root, target)
            for target in sorted(set(TARGETS.values()), reverse=True)
        }
    except BaseException:
        print(f"failed; every component's log is kept under {root}", file=sys.stderr)
        raise
    finally:
        if metrics_api is not None:
            metrics_api.stop()
        if prometheus is not None:
            prometheus.stop()
        node.stop()
        shutil.rmtree(root / "node" / "containerd", ignore_errors=True)
    shutil.rmtree(root)  # kept, with every component's log, only when the run failed
    picked = "the steepest rise" if args.seed is None else f"drawn with seed {args.seed}"
    report: dict[str, Any] = {"stretch": {"minute": offset, "picked": picked}}
    print(
        f"\n{args.minutes} minutes of NASA-HTTP at real time ({picked}: minutes {offset}-"
        f"{offset + args.minutes} of the trace), peak {PEAK:.0f} requests/s; pods: "
        f"{CAPACITY:.0f} requests/s each, Ready {STARTUP}s after start; HPA targets/pod: "
        + ", ".join(f"{arm} {TARGETS[arm]:g}" for arm in ARMS)
    )
    print(
        f"{'arm':<11} {'requests':>9} {'shed':>7} {'no pod':>7} {'failed':>7} {'shed %':>7} "
        f"{'pod-min':>8} {'p99 ms':>7}"
    )
    for arm in ARMS:
        tally = tallies[arm]
        sent = int(tally.sent.sum())
        lost = int(tally.shed.sum() + tally.unrouted.sum() + tally.failed.sum())
        p99 = float(np.percentile(tally.latencies, 99) * 1000) if tally.latencies else float("nan")
        row = {
            "requests": sent,
            "shed_503": int(tally.shed.sum()),
            "no_ready_pod": int(tally.unrouted.sum()),
            "failed": int(tally.failed.sum()),
            "shed_share": lost / sent,
            "pod_minutes": timeline.pod_minutes(arm),
            "p99_ms": p99,
        }
        report[arm] = row
        print(
            f"{arm:<11} {sent:>9} {row['shed_503']:>7} {row['no_ready_pod']:>7} {row['failed']:>7} "
            f"{100 * row['shed_share']:>6.2f}% {row['pod_minutes']:>8.1f} {p99:>7.1f}"
        )
    print(verdict(report))
    report["backtest"] = {
        arm: simulated_row(arm, predicted[TARGETS[arm]]["methods"]) for arm in ARMS
    }
    lead = predicted[TARGET]["lead_seconds"]
    print(
        f"\nscaleahead backtest of the same minutes (its simulated HPA, lead {lead}s, the "
        "same targets and capacity):"
    )
    print(f"{'arm':<11} {'shed %':>7} {'pod-min':>8}")
    for arm, row in report["backtest"].items():
        print(f"{arm:<11} {100 * row['shed_share']:>6.2f}% {row['pod_minutes']:>8.1f}")
    print(verdict(report["backtest"]))
    print("\n" + hpas)
    plot(args.out / "closed_loop.png", demand, timeline, tallies)
    report["timeline"] = timeline.rows
    (args.out / "closed_loop.json").write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {args.out / 'closed_loop.png'} and closed_loop.json")


if __name__ == "__main__":
    main()
