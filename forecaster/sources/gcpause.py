"""Automatic garbage collection paused while large answers are decoded.

Decoding a million-point `query_range` answer makes millions of containers, all alive
until the points are read out; with the collector on, CPython traverses them again and
again in full collections (7 of them in one such answer, 0.49 s against 0.19 s paused),
while the decoding thread holds the interpreter lock and requests wait."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_holders = 0
_resume = False


@contextlib.contextmanager
def paused_collection() -> Iterator[None]:
    """Automatic collection off for the block, from any number of threads at once; back on
    when the last block ends, if it was on when the first began."""
    global _holders, _resume
    with _lock:
        if _holders == 0:
            _resume = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _resume:
                gc.enable()
