"""The cache of authentication and authorization decisions."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

CACHE_SIZE = 10_000
"""Entries kept at most; the least recently used go first."""


class TTLCache:
    """A small thread-safe LRU cache whose entries expire: a hit is (True, value), a miss
    or an expired entry (False, None)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._data: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: Any) -> tuple[bool, Any]:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return False, None
            expires, value = hit
            if expires < time.monotonic():
                del self._data[key]
                return False, None
            self._data.move_to_end(key)
            return True, value

    def put(self, key: Any, value: Any, ttl: float) -> None:
        if ttl <= 0:
            return
        with self._lock:
            self._data[key] = (time.monotonic() + ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)
