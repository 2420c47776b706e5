"""Where things are, and loopback networking for the real parts."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
TRACES = REPO.parent / "shared" / "traces"


def free_port() -> int:
    """A TCP port free on loopback now."""
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
