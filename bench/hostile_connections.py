"""Hostile connections against the real TLS server (issue 29, items 1 to 3): what they
cost in memory, whether it comes back, and whether probes and the HPA's metric request
are still answered while they are held, each against the same run without them.

Set-up (on loopback): `scaleahead serve` on its secure port with the demo rule and no
cluster (harness.lone_tls: callers proven by client certificates, the metric path always
allowed, since no API server answers SubjectAccessReviews here). An attacker process
holds ATTACKERS connections at once for --seconds, opening a new one whenever the server
closes one. Its ways:

- silent TCP: connects and never starts the TLS handshake;
- idle TLS: completes the handshake and sends nothing;
- slow head: completes the handshake, then sends a request head a byte every 2 s;
- heavy selector: 40 clients at once asking with `service notin (...6,500 values...)`;
- handshake flood: each attacker completes a TLS handshake and closes, without end;
- request flood: each attacker sends requests 8 at a time on a keep-alive connection,
  reading whatever answers have come, without end (HTTP/1.1 pipelining).

The attacker connects from ATTACKER, another loopback address than the probes' (as
another pod), or with --from 127.0.0.1 from theirs (as a client on the kubelet's node
address): per-address turns cannot tell such a client from the kubelet.
Measured meanwhile, as the kubelet and the aggregator ask: `/healthz` on a new TLS
connection each time, and the metric over one keep-alive connection with a client
certificate, 10 times a second each. "held" is the server's sockets at most; "RSS/conn"
is the growth over the baseline divided by that; "after" is RSS 10 s after the attacker
let go. The memory limit is the one of manifests/base/deployment.yaml.

Run: python -m bench.hostile_connections [--seconds 20] [--attackers 2000] [--ways ...]
    [--from 127.0.0.2] [--open-files N (the server's limit, e.g. 1024)]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from adapter.server.http import enough_descriptors
from harness.lone_tls import METRIC, LoneTLS, lone_tls
from harness.net import REPO, free_port, wait_http
from harness.proc import rss_kib, sockets

WAYS = (
    "silent TCP",
    "idle TLS",
    "slow head",
    "heavy selector",
    "handshake flood",
    "request flood",
)
ATTACKER = "127.0.0.2"
"""The attacker's address: another client than the probes' (127.0.0.1), as another pod."""
HEAVY = (
    "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/http_requests_forecast"
    "?labelSelector=service%20notin%20(" + ",".join(f"svc-{i}" for i in range(6500)) + ")"
)


def rss_mib(pid: int) -> float:
    return rss_kib(pid) / 1024


def memory_limit_mib() -> float:
    text = (REPO / "manifests" / "base" / "deployment.yaml").read_text()
    found = re.search(r"limits: \{memory: (\d+)Mi\}", text)
    return float(found.group(1)) if found else float("nan")


# The attacker, in its own process so that its event loop never slows the measuring one.


def attack(
    way: str,
    port: int,
    tls: LoneTLS,
    count: int,
    stop: threading.Event,
    source: str = ATTACKER,
) -> None:
    """Hold `count` connections of `way` from address `source` until `stop` is set."""
    enough_descriptors(count + 100)
    asyncio.run(_attack(way, port, tls, count, stop, source))


async def _attack(
    way: str, port: int, tls: LoneTLS, count: int, stop: threading.Event, source: str
) -> None:
    context = tls.context(certificate=False)
    if way == "heavy selector":
        certified = tls.context()
        transport = httpx.AsyncHTTPTransport(verify=certified, local_address=source)
        async with httpx.AsyncClient(transport=transport, timeout=30) as client:

            async def ask() -> None:
                while not stop.is_set():
                    try:
                        await client.get(f"https://127.0.0.1:{port}{HEAVY}")
                    except httpx.HTTPError:
                        await asyncio.sleep(0.1)

            await asyncio.gather(*(ask() for _ in range(40)))
        return

    async def handshake() -> None:
        while not stop.is_set():
            try:
                _, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=context, local_addr=(source, 0)
                )
                writer.close()
            except (OSError, ssl.SSLError):
                await asyncio.sleep(0.01)

    async def flood() -> None:
        request = b"GET /apis/external.metrics.k8s.io/v1beta1 HTTP/1.1\r\nHost: x\r\n\r\n"
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=context, local_addr=(source, 0)
                )
                while not stop.is_set():
                    writer.write(request * 8)
                    await writer.drain()
                    if not await reader.read(65536):
                        break
            except (OSError, ssl.SSLError):
                await asyncio.sleep(0.01)

    async def hold() -> None:
        if way == "handshake flood":
            return await handshake()
        if way == "request flood":
            return await flood()
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1",
                    port,
                    ssl=None if way == "silent TCP" else context,
                    local_addr=(source, 0),
                )
            except (OSError, ssl.SSLError):
                await asyncio.sleep(0.2)
                continue
            try:
                if way == "slow head":
                    for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
                        writer.write(bytes([byte]))
                        await writer.drain()
                        if stop.is_set():
                            break
                        await asyncio.sleep(2.0)
                else:
                    while not stop.is_set() and await reader.read(1024):
                        pass
            except (OSError, ssl.SSLError):
                pass
            writer.close()

    async def watch() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.2)

    tasks = [asyncio.ensure_future(hold()) for _ in range(count)]
    await watch()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# The measuring side.


class Probe:
    """Latencies of /healthz (a new connection each) and the metric (keep-alive), 10/s."""

    def __init__(self, port: int, tls: LoneTLS) -> None:
        self.port = port
        self.tls = tls
        self.healthz: list[float] = []
        self.metric: list[float] = []
        self.failed = 0

    def run(self, seconds: float, pid: int) -> tuple[float, int]:
        """Probe for `seconds`; the RSS (MiB) and sockets at most meanwhile."""
        peak_rss, peak_sockets = 0.0, 0
        end = time.monotonic() + seconds
        base = f"https://127.0.0.1:{self.port}"
        with httpx.Client(verify=self.tls.context(), timeout=10) as hpa:
            while time.monotonic() < end:
                tick = time.monotonic()
                for path, client, into in (
                    ("/healthz", None, self.healthz),
                    (METRIC, hpa, self.metric),
                ):
                    started = time.perf_counter()
                    try:
                        if client is None:
                            with httpx.Client(verify=self.tls.context(False), timeout=10) as c:
                                ok = c.get(base + path).status_code == 200
                        else:
                            ok = client.get(base + path).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    into.append((time.perf_counter() - started) * 1000)
                    self.failed += not ok
                peak_rss = max(peak_rss, rss_mib(pid))
                peak_sockets = max(peak_sockets, sockets(pid))
                time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
        return peak_rss, peak_sockets


def quantiles(ms: list[float]) -> str:
    return f"{np.percentile(ms, 50):7.1f} {np.percentile(ms, 99):7.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--attackers", type=int, default=2000)
    parser.add_argument(
        "--from", dest="source", default=ATTACKER, help="the attacker's loopback address"
    )
    parser.add_argument(
        "--ways", default=",".join(WAYS), help="comma-separated, of: " + ", ".join(WAYS)
    )
    parser.add_argument(
        "--open-files", type=int, help="the server's open-files limit (prlimit; default: ours)"
    )
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    port = free_port()
    tls = lone_tls(root, port)
    log = (root / "log").open("wb")
    files = args.open_files
    prlimit = ["prlimit", f"--nofile={files}:{files}"] if files else []
    server = subprocess.Popen(
        [*prlimit, sys.executable, "-m", "adapter.cli", *tls.args],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"https://127.0.0.1:{port}/readyz", timeout=90)
        Probe(port, tls).run(3.0, server.pid)  # warm: TLS, the app, the forecasts
        time.sleep(2.0)
        baseline = rss_mib(server.pid)
        quiet = Probe(port, tls)
        quiet_rss, quiet_sockets = quiet.run(args.seconds, server.pid)
        limit = memory_limit_mib()
        print(
            f"scaleahead serve (TLS, demo rule), {args.attackers} attackers from {args.source}, "
            f"{args.seconds:.0f} s each; memory limit {limit:.0f} MiB"
        )
        print(
            f"{'attack':<16}{'held':>6}{'RSS MiB':>9}{'RSS/conn KiB':>14}{'after':>8}"
            f"{'healthz p50 p99 ms':>20}{'metric p50 p99 ms':>20}{'failed':>8}"
        )
        print(
            f"{'none':<16}{quiet_sockets:>6}{quiet_rss:>9.0f}{'':>14}{'':>8}"
            f"{quantiles(quiet.healthz):>20}{quantiles(quiet.metric):>20}{quiet.failed:>8}"
        )
        spawn = multiprocessing.get_context("spawn")
        for way in args.ways.split(","):
            before = rss_mib(server.pid)
            stop = spawn.Event()
            attacker = spawn.Process(
                target=attack, args=(way, port, tls, args.attackers, stop, args.source), daemon=True
            )
            attacker.start()
            time.sleep(3.0)  # let it open its connections
            probe = Probe(port, tls)
            peak_rss, held = probe.run(args.seconds, server.pid)
            stop.set()
            attacker.join(30)
            if attacker.is_alive():
                attacker.kill()
            time.sleep(10.0)
            after = rss_mib(server.pid)
            per = (peak_rss - before) * 1024 / max(held, 1)
            print(
                f"{way:<16}{held:>6}{peak_rss:>9.0f}{per:>14.0f}{after:>8.0f}"
                f"{quantiles(probe.healthz):>20}{quantiles(probe.metric):>20}"
                f"{probe.failed:>8}",
                flush=True,
            )
        print(f"baseline RSS {baseline:.0f} MiB; 'after' within 10 % of it is the goal")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
