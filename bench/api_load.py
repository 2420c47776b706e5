"""Load on the external metrics endpoint of a real scaleahead, through TLS with the
aggregator's client certificate, against `/healthz` measured the same way in the same run.

Set-up (all real, on loopback): a kube-apiserver v1.28 for TokenReview and
SubjectAccessReview (tests.controlplane), a Prometheus backfilled with 1,000 series (two
days of per-minute counters from the bundled NASA trace, each at its own offset and
scale), and `scaleahead serve` on its secure port pinned to one core (`taskset -c 0`)
with its forecaster process (the cycles, at a lower CPU priority) on the same core. The
load generator is Debian's `wrk`, pinned to the other core; each request names a random
series and carries `X-Remote-User` as the aggregator's does. wrk cannot present a client
certificate, so a 12-line LD_PRELOAD shim (built here with gcc) loads the front-proxy
certificate into its SSL_CTX. Fixed rates are paced with wrk's `delay()` hook over many
connections (closed loop per connection: a stall delays that connection's next request,
so tails under a stall are understated); saturation runs without delay.

The last two columns say what else ran in the window: forecast cycles (one per minute,
in the forecaster process) and full garbage collections (in the serving process).

Run: python -m bench.api_load  [--seconds 20] [--series 1000]
Needs: wrk, gcc, etcd, prometheus/promtool (scripts/test installs all but wrk and gcc:
apt-get install wrk gcc).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from forecaster.sources.trace import demo_trace
from harness.controlplane import ControlPlane
from harness.net import free_port
from harness.proc import rss_kib

REPO = Path(__file__).resolve().parent.parent
METRIC = "bench_requests_forecast"
QUERY = "sum by (namespace, service) (rate(bench_requests_total{<<.LabelMatchers>>}[3m]))"
RATES = (100, 500, 1000, None)  # None: saturation

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
extern int SSL_CTX_use_certificate_chain_file(SSL_CTX *ctx, const char *file);
extern int SSL_CTX_use_PrivateKey_file(SSL_CTX *ctx, const char *file, int type);
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static SSL_CTX *loaded = NULL;
SSL *SSL_new(SSL_CTX *ctx) {
    static SSL *(*real)(SSL_CTX *) = NULL;
    pthread_mutex_lock(&lock);
    if (!real) real = (SSL *(*)(SSL_CTX *))dlsym(RTLD_NEXT, "SSL_new");
    if (loaded != ctx) {
        SSL_CTX_use_certificate_chain_file(ctx, getenv("CLIENT_CERT"));
        SSL_CTX_use_PrivateKey_file(ctx, getenv("CLIENT_KEY"), 1);
        loaded = ctx;
    }
    pthread_mutex_unlock(&lock);
    return real(ctx);
}
"""

LUA = r"""
local n = tonumber(os.getenv("SERIES"))
local delay_ms = tonumber(os.getenv("DELAY_MS"))
local target = os.getenv("TARGET")
local counter = 0
request = function()
  counter = counter + 1
  local path = "/healthz"
  if target == "metric" then
    local i = (counter * 7919 + math.random(0, n - 1)) % n
    path = string.format(
      "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/%s?labelSelector=service%%3Dsvc-%04d",
      os.getenv("METRIC"), i)
  end
  return wrk.format("GET", path, {["X-Remote-User"] = "bench"})
end
if delay_ms > 0 then
  delay = function() return delay_ms end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50":%d,"p99":%d,"p999":%d,"max":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
"""


def backfill(root: Path, series: int) -> tuple[Path, int]:
    """A Prometheus TSDB with `series` counters of two days of per-minute data: enough
    history for every series to be past its cold start (young series are refitted with
    statsforecast every cycle, which is a different load)."""
    trace = demo_trace()
    counts = np.nan_to_num(trace.counts, nan=0.0)
    n = 2 * 1440
    end = (int(time.time()) // 60) * 60 + 600
    start = end - n * 60
    rng = np.random.default_rng(7)
    lines = ["# HELP bench_requests Requests served.", "# TYPE bench_requests counter"]
    for i in range(series):
        offset = int(rng.integers(0, len(counts) - n))
        scale = float(rng.uniform(0.2, 5.0))
        cumulative = np.concatenate([[0.0], np.cumsum(counts[offset : offset + n] * scale)])
        label = f'namespace="default",service="svc-{i:04d}"'
        stamps = start + 60 * np.arange(n + 1)
        lines.extend(
            f"bench_requests_total{{{label}}} {v:.3f} {t}"
            for t, v in zip(stamps.tolist(), cumulative.tolist(), strict=True)
        )
    lines.append("# EOF")
    om = root / "backfill.om"
    om.write_text("\n".join(lines) + "\n")
    data = root / "prometheus"
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q", str(om), str(data)],
        check=True,
        capture_output=True,
    )
    om.unlink()
    return data, end


def rss_mib(pid: int) -> float:
    return rss_kib(pid) / 1024


def wrk(
    url: str, target: str, rate: int | None, seconds: int, env: dict[str, str], lua: Path
) -> dict[str, float]:
    connections = 50 if rate is None else max(10, rate // 10)
    delay = 0 if rate is None else int(connections * 1000 / rate)
    run_env = env | {"TARGET": target, "DELAY_MS": str(delay)}
    out = subprocess.run(
        [
            "taskset", "-c", "1", "wrk", "-t2", f"-c{connections}", f"-d{seconds}s",
            "--timeout", "5s", "-s", str(lua), url,
        ],
        env=run_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout  # fmt: skip
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    r = json.loads(line.removeprefix("RESULT "))
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return {
        "rps": r["requests"] / (r["duration_us"] / 1e6),
        "p50": r["p50"] / 1000,
        "p99": r["p99"] / 1000,
        "p999": r["p999"] / 1000,
        "max": r["max"] / 1000,
        "errors": errors,
        "requests": r["requests"],
    }


def counters(url: str, ca: Path, cert: Path, key: Path) -> dict[str, float]:
    """Cycles run and full (generation 2) collections so far, from the server's /metrics."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(cert, key)
    text = httpx.get(
        f"{url}/metrics", verify=context, headers={"X-Remote-User": "bench"}, timeout=10
    ).text
    out = {"cycles": 0.0, "gen2": 0.0}
    for line in text.splitlines():
        if line.startswith("scaleahead_cycle_duration_seconds_count"):
            out["cycles"] += float(line.split()[-1])
        elif line.startswith('python_gc_collections_total{generation="2"}'):
            out["gen2"] = float(line.split()[-1])
    return out


HEADER = (
    f"\n{'target':8s} {'rate':>6s} {'achieved':>9s} {'p50 ms':>7s} {'p99 ms':>7s} "
    f"{'p99.9 ms':>8s} {'max ms':>7s} {'errors':>7s} {'RSS MiB':>8s} "
    f"{'cycles':>6s} {'gen2 gc':>7s}"
)
STORM_RATE = 500
"""Requests a second while the first cycle fits every series (the issue's refit storm)."""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--series", type=int, default=1000)
    args = ap.parse_args()
    for tool in ("wrk", "gcc", "taskset", "promtool", "prometheus"):
        if shutil.which(tool) is None:
            sys.exit(f"api_load: {tool} not found (apt-get install wrk gcc; scripts/test)")
    kubectl = str(Path(sys.executable).parent / "kubectl")
    root = Path(tempfile.mkdtemp(prefix="scaleahead-load-"))
    shim = root / "wrkcert.so"
    (root / "wrkcert.c").write_text(SHIM)
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(root / "wrkcert.c"), "-ldl"],
        check=True,
    )
    lua = root / "load.lua"
    lua.write_text(LUA)

    print(f"backfilling {args.series} series into Prometheus ...", flush=True)
    data, _ = backfill(root, args.series)
    prom_port = free_port()
    (root / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\n")
    prometheus = subprocess.Popen(
        [
            "taskset", "-c", "1", "prometheus", f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{prom_port}",
            "--storage.tsdb.retention.time=30d", "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    plane = ControlPlane(root / "k8s", kubectl)
    plane.start()
    server = None
    try:
        port = free_port()
        from harness.aggregation import registration, wait_ready

        plane.apply(registration(port))
        plane.apply(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n"
            "metadata: {name: bench-metrics}\n"
            "rules: [{nonResourceURLs: [/metrics], verbs: [get]}]\n---\n"
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n"
            "metadata: {name: bench-metrics}\n"
            "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, "
            "name: bench-metrics}\n"
            "subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bench}]\n"
        )
        plane.apply(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n"
            "metadata: {name: bench, namespace: default}\n"
            "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, "
            "name: external-metrics-reader}\n"
            "subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bench}]\n"
        )
        token = plane.kubectl("create", "token", "scaleahead", "-n", "scaleahead").stdout.strip()
        config = root / "config.yaml"
        config.write_text(
            f"prometheus:\n  url: http://127.0.0.1:{prom_port}\n"
            f"rules:\n  - name: {METRIC}\n    query: '{QUERY}'\n    history: 3d\n"
        )
        log = root / "scaleahead.log"
        exe = str(Path(sys.executable).parent / "scaleahead")
        server = subprocess.Popen(
            [
                "taskset", "-c", "0", exe, "serve", "--config", str(config),
                "--bind-address", "127.0.0.1", "--secure-port", str(port),
                "--cert-dir", str(root / "certs"),
                "--kubeconfig", str(plane.kubeconfig("sa", token=token)),
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        ca = root / "certs" / "ca.crt"
        started = time.monotonic()
        base = f"https://127.0.0.1:{port}"
        wait_ready(base, ca, server, log, "/livez", timeout=900)
        env = dict(os.environ) | {
            "LD_PRELOAD": str(shim),
            "CLIENT_CERT": str(plane.front_proxy_client.cert),
            "CLIENT_KEY": str(plane.front_proxy_client.key),
            "SERIES": str(args.series),
            "METRIC": METRIC,
        }
        proxy = plane.front_proxy_client
        live = time.monotonic() - started
        print(f"live {live:.0f}s after start; its first cycle fits every series")
        # Warm up: the SubjectAccessReview for (bench, list, default) gets cached.
        wrk(base, "metric", 50, 2, env, lua)
        print(HEADER)

        def row(target: str, rate: int | None, seconds: int, mark: str = "") -> None:
            before = counters(base, ca, proxy.cert, proxy.key)
            r = wrk(base, target, rate, seconds, env, lua)
            after = counters(base, ca, proxy.cert, proxy.key)
            print(
                f"{target + mark:8s} {rate or 'sat':>6} {r['rps']:9.0f} {r['p50']:7.2f} "
                f"{r['p99']:7.2f} {r['p999']:8.2f} {r['max']:7.1f} "
                f"{int(r['errors']):7d} {rss_mib(server.pid):8.0f} "
                f"{after['cycles'] - before['cycles']:6.0f} "
                f"{after['gen2'] - before['gen2']:7.0f}",
                flush=True,
            )

        # During the first cycle: the fit of every series, in the serving process (one
        # core, so no fitting worker). A row whose cycles column is not 0 outlasted it.
        storm = max(args.seconds // 2, 3)
        for target in ("healthz", "metric"):
            row(target, STORM_RATE, storm, "*")
        wait_ready(base, ca, server, log, timeout=900)
        print(f"ready {time.monotonic() - started:.0f}s after start; serving {args.series} series")
        rss_before = rss_mib(server.pid)
        print(HEADER)
        for rate in RATES:
            for target in ("healthz", "metric"):
                row(target, rate, args.seconds)
        print(
            f"\n* during the first cycle (the fit of every series), {storm} s each\n"
            f"RSS before the runs {rss_before:.0f} MiB, after {rss_mib(server.pid):.0f} MiB"
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(20)
        plane.stop()
        prometheus.terminate()
        prometheus.wait(20)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
