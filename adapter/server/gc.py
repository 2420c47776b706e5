"""Keeping the long-lived objects of a server out of garbage collection: about 200,000
objects, nearly all code of the imported libraries, that every full collection would
otherwise traverse (111 ms each with 1,000 series; bench/gc_objects.py)."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("scaleahead")


def freeze(generation: int, why: str) -> None:
    """Collect `generation` and younger, then move everything alive to the collector's
    permanent generation, which no later collection traverses; log it, saying `why`."""
    started = time.perf_counter()
    gc.collect(generation)
    gc.freeze()
    log.info(
        "froze %d long-lived objects out of garbage collection %s (collected in %.0f ms)",
        gc.get_freeze_count(),
        why,
        (time.perf_counter() - started) * 1000,
    )


class FreezeWhenReady:
    """Once `ready` holds (every rule has forecasts: the models are compiled and warm),
    freezes what the first cycles left alive, after a collection of the young generations
    only: a full one would pause serving (146 ms with the demo) for garbage the next full
    one finds anyway. Watches from a daemon thread; gives up after `timeout` seconds."""

    def __init__(self, ready: Callable[[], bool], timeout: float = 3600.0) -> None:
        self.ready = ready
        self.timeout = timeout
        self._stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._watch, name="gc-freeze", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not self.ready() and time.monotonic() < deadline:
            if self._stop.wait(1.0):
                return
        freeze(1, "once every rule had forecasts")
