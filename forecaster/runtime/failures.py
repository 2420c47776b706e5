"""Failures logged once per change of state: the traceback when something starts failing
(or fails with another error), a line when it recovers, nothing while it fails alike."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable


class Failures:
    """The error each key last failed with, logged to `log` on each change."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._why: dict[Hashable, str] = {}

    def failed(self, key: Hashable, err: BaseException, what: str) -> None:
        """`key` failed with `err` (call from its except block): the traceback, unless it
        failed with the same error last time."""
        why = f"{type(err).__name__}: {err}"
        if self._why.get(key) != why:
            self.log.error("%s failed (logged again only if the error changes)", what, exc_info=err)
        self._why[key] = why

    def succeeded(self, key: Hashable, what: str) -> None:
        """`key` worked: a line if it had been failing."""
        if self._why.pop(key, None) is not None:
            self.log.info("%s works again", what)

    def keep(self, keys: Iterable[Hashable]) -> None:
        """Forget every key but these (gone: a return is news again)."""
        kept = set(keys)
        for key in [k for k in self._why if k not in kept]:
            del self._why[key]
