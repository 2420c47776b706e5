"""One unauthenticated client with a new bearer token on every request, against a real
kube-apiserver v1.28: each unknown token costs a TokenReview, so the client must not be
able to spend the serving process on them, nor the API server's patience, while probes
and the callers that are who they say are answered as before."""

from __future__ import annotations

import asyncio
import multiprocessing
import secrets
import ssl
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from adapter.security.authn import NEW_TOKEN_BURST_PER_ADDRESS, NEW_TOKEN_RATE_PER_ADDRESS
from harness.controlplane import ControlPlane
from harness.net import free_port
from harness.prometheus import PrometheusServer
from tests.integration.adapter.test_secure import CHECKOUT, serving_securely

CONNECTIONS = 64
SECONDS = 16.0


def _flood(port: int, ca: str, seconds: float, out: multiprocessing.Queue) -> None:
    """Ask for the metric over CONNECTIONS keep-alive connections, each time with a token
    never seen before, for `seconds`; put the statuses counted."""

    async def one(context: ssl.SSLContext, statuses: Counter[int], until: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        try:
            while time.monotonic() < until:
                token = secrets.token_urlsafe(32)
                writer.write(
                    f"GET {CHECKOUT} HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Bearer {token}\r\n\r\n".encode()
                )
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                statuses[int(head.split()[1])] += 1
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError):
            statuses[0] += 1  # closed by the server
        finally:
            writer.close()

    async def main() -> Counter[int]:
        context = ssl.create_default_context(cafile=ca)
        context.check_hostname = False
        statuses: Counter[int] = Counter()
        until = time.monotonic() + seconds
        await asyncio.gather(*(one(context, statuses, until) for _ in range(CONNECTIONS)))
        return statuses

    out.put(dict(asyncio.run(main())))


@pytest.fixture(scope="module")
def served(
    control_plane: ControlPlane, prometheus: PrometheusServer, tmp_path_factory
) -> Iterator[tuple[ControlPlane, int, Path, subprocess.Popen[bytes], Path]]:
    root = tmp_path_factory.mktemp("flood")
    port = free_port()
    with serving_securely(control_plane, prometheus, root, port) as proc:
        yield control_plane, port, root / "certs" / "ca.crt", proc, root / "scaleahead.log"


def test_a_client_with_a_new_token_each_request_gets_429_beyond_a_rate_of_reviews(served):
    """The flood's tokens are reviewed at NEW_TOKEN_RATE_PER_ADDRESS a second at most (its
    first burst answered 401), the rest refused with 429 and Retry-After; meanwhile probes
    on new connections and callers the aggregator vouches for (each a new
    SubjectAccessReview) are answered promptly, a token that authenticated before the
    flood still does once its cached answer has expired, and a new token from another
    address is still reviewed (before the per-address budget: 429, the flood having
    spent every review)."""
    plane, port, ca, proc, log = served
    url = f"https://127.0.0.1:{port}"
    probe = ssl.create_default_context(cafile=str(ca))
    aggregator = ssl.create_default_context(cafile=str(ca))
    proxy = plane.front_proxy_client
    aggregator.load_cert_chain(proxy.cert, proxy.key)
    token = plane.kubectl("create", "token", "scaleahead", "-n", "scaleahead").stdout.strip()
    bearer = {"Authorization": f"Bearer {token}"}
    with httpx.Client(verify=probe, timeout=10) as client:
        first = client.get(f"{url}{CHECKOUT}", headers=bearer)
        assert first.status_code in (200, 403), first.text  # authenticated: now known
    known_at = time.monotonic()
    queue: multiprocessing.Queue = multiprocessing.Queue()
    attacker = multiprocessing.get_context("fork").Process(
        target=_flood, args=(port, str(ca), SECONDS, queue)
    )
    attacker.start()
    time.sleep(2.0)  # the flood under way
    probes, callers = [], []
    i = 0
    while time.monotonic() - known_at < 12.0:  # past the token's cached answer (10 s)
        i += 1
        start = time.monotonic()
        with httpx.Client(verify=probe, timeout=10) as client:  # a new connection, as kubelet
            assert client.get(f"{url}/healthz").status_code == 200
        probes.append(time.monotonic() - start)
        start = time.monotonic()
        with httpx.Client(verify=aggregator, timeout=10) as client:
            r = client.get(
                f"{url}{CHECKOUT}",
                headers={"X-Remote-User": f"caller-{i}", "X-Remote-Group": "system:masters"},
            )
        assert r.status_code == 200, r.text
        callers.append(time.monotonic() - start)
        time.sleep(0.2)
    with httpx.Client(verify=probe, timeout=10) as client:
        again = client.get(f"{url}{CHECKOUT}", headers=bearer)
        assert again.status_code == first.status_code, again.text  # reviewed, not refused
        fresh = client.get(f"{url}{CHECKOUT}", headers={"Authorization": "Bearer never-seen"})
    assert fresh.status_code == 429
    elsewhere = httpx.HTTPTransport(verify=probe, local_address="127.0.0.2")
    with httpx.Client(transport=elsewhere, timeout=10) as client:
        other = client.get(f"{url}{CHECKOUT}", headers={"Authorization": "Bearer new-there"})
    assert other.status_code == 401, other.text  # reviewed, and not a token
    assert fresh.headers["retry-after"] == "1"
    status = fresh.json()
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 429, "TooManyRequests")
    attacker.join(30)
    statuses = queue.get(timeout=10)
    print(f"flood: {statuses}; probes max {max(probes):.3f} s; callers max {max(callers):.3f} s")
    assert proc.poll() is None
    assert set(statuses) == {401, 429}, statuses
    assert statuses[429] > 10 * statuses[401]
    assert statuses[401] <= NEW_TOKEN_BURST_PER_ADDRESS + NEW_TOKEN_RATE_PER_ADDRESS * (SECONDS + 1)
    assert max(probes) < 1.0, probes
    assert max(callers) < 2.0, callers
    assert "with bearer tokens not seen lately" in log.read_text()
