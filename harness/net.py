"""Where things are, and loopback networking for the real parts."""

from __future__ import annotations

import multiprocessing
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def timed_during(
    flood: Callable[..., None], args: tuple[Any, ...], ask: Callable[[], None], times: int = 40
) -> list[float]:
    """Seconds each of `times` calls of `ask` took, sorted, 0.05 s apart, while
    `flood(*args, stop)` runs in a process of its own (so that its event loop never slows
    the asking one), from 3 s before the first until `stop` is set after the last."""
    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    process = spawn.Process(target=flood, args=(*args, stop), daemon=True)
    process.start()
    took = []
    try:
        time.sleep(3.0)
        for _ in range(times):
            started = time.perf_counter()
            ask()
            took.append(time.perf_counter() - started)
            time.sleep(0.05)
    finally:
        stop.set()
        process.join(10)
    return sorted(took)
