"""Giving freed memory back to the operating system after a burst of connections: their
objects hold each other in cycles that only a full garbage collection frees, and the C
library keeps freed memory for reuse unless told to return it."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
import resource
import time
from collections.abc import Callable

log = logging.getLogger("scaleahead")


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


def give_back(why: str) -> None:
    """Collect every generation, then return the free memory of the C heap to the OS
    (glibc's malloc_trim(0); nothing more where the C library has none); log it."""
    started = time.perf_counter()
    before = _rss_mib()
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    log.info(
        "gave memory back after %s: RSS %.0f -> %.0f MiB in %.0f ms",
        why,
        before,
        _rss_mib(),
        (time.perf_counter() - started) * 1000,
    )


def _rss_mib() -> float:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return float("nan")
