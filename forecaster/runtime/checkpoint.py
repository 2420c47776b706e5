"""Each rule's history and fits, saved to a directory every SAVE_EVERY seconds and read
back at start, so that a restarted forecaster (a crash, an OOM kill, a failed liveness
probe: the pod and its emptyDir stay) fetches only what is new and refits only the
series whose refit fell due meanwhile, instead of the whole history and every series.

What it restores is what the process would hold had it never stopped (a series' state is
a function of its history and the grid point alone: see forecaster.models.engine), so a
resumed replica serves the values its peers serve. A checkpoint is read back only by the
code and configuration that wrote it: its header holds a fingerprint of the forecaster's
source, the numeric libraries' versions and the rule, and a file with another is left
unread (the rule starts afresh, as with no checkpoint). The files are pickles: they are
read only from a directory this process created, owns and alone may write to.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import pickle
import stat
import sys
import time
from collections.abc import Hashable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import forecaster
from forecaster.config import Rule

if TYPE_CHECKING:
    from forecaster.models.engine import SeriesState
    from forecaster.runtime.history import HistoryBook
    from forecaster.runtime.telemetry import Telemetry

log = logging.getLogger(__name__)

SAVE_EVERY = 300
"""Seconds of grid between two saves of a rule: a restart refits the series whose hourly
refit fell due since the last save (a twelfth of them on average), and a save of 1,000
series of 15 days writes about 100 MB."""
MAGIC = b"scaleahead-checkpoint 1 "
"""The start of a checkpoint's header line; the fingerprint follows it."""
LIBRARIES = ("numpy", "scipy", "pandas", "statsforecast", "numba")
"""The libraries whose version is part of the fingerprint: their objects are pickled."""


@functools.cache
def _code() -> str:
    """A digest of the forecaster's source and the versions it runs on."""
    h = hashlib.sha256(sys.version.encode())
    for name in LIBRARIES:
        try:
            h.update(f"{name} {version(name)}\n".encode())
        except PackageNotFoundError:
            h.update(f"{name} none\n".encode())
    root = Path(forecaster.__file__).parent
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def fingerprint(rule: Rule, stabilization: int) -> str:
    """What a checkpoint of `rule` must have been written under to be read back: this
    source and these libraries, the same rule and scale-down default."""
    h = hashlib.sha256(_code().encode())
    h.update(rule.model_dump_json().encode())
    h.update(f"\n{stabilization}".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Saved:
    """A rule's state as a checkpoint holds it."""

    book: HistoryBook
    series: dict[Hashable, SeriesState]
    written: float  # wall time of the save


@dataclass(frozen=True)
class _Header:
    """What follows a checkpoint's fingerprint: the book's grid, then `count` records
    (key, labels, values, state or None), each pickled on its own so that neither a save
    nor a load ever holds more than one series' copy."""

    written: float
    step: int
    window: int
    phase: int
    end: int
    count: int


class CheckpointError(Exception):
    """The checkpoint directory cannot be used (said at start, naming it and why)."""


def _private(info: os.stat_result) -> bool:
    """Whether a file or directory is this user's and no one else may write to it."""
    return info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def own_directory(directory: Path) -> None:
    """Create `directory` (mode 0700) if missing; CheckpointError if it cannot be, or if
    another user owns it or others may write to it."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.stat()
    except OSError as err:
        raise CheckpointError(f"{directory}: {err.strerror or err}") from err
    if not _private(info):
        raise CheckpointError(
            f"{directory} must be owned by this user (uid {os.geteuid()}) and writable by "
            f"no one else, since what it holds is loaded as code is; it is owned by uid "
            f"{info.st_uid}, mode {stat.filemode(info.st_mode)} (name a directory that "
            "does not exist yet inside a volume: scaleahead creates it)"
        )


class Checkpoints:
    """Saves and loads every rule's checkpoint in `directory`, created (mode 0700) if
    missing. A save that fails is logged and counted, never raised: the cycle's
    forecasts are already stored."""

    def __init__(
        self, directory: Path, stabilization: int, telemetry: Telemetry | None = None
    ) -> None:
        self.directory = directory
        self.stabilization = stabilization
        self.telemetry = telemetry
        self._saved: dict[str, int] = {}  # rule -> grid end of its last save
        own_directory(directory)

    def path(self, rule: Rule) -> Path:
        return self.directory / f"{rule.name}.checkpoint"

    def _header_line(self, rule: Rule) -> bytes:
        """The line a checkpoint of `rule` starts with: MAGIC and the fingerprint."""
        return MAGIC + fingerprint(rule, self.stabilization).encode() + b"\n"

    def load(self, rule: Rule) -> Saved | None:
        """The rule's checkpoint, or None where there is none or it cannot be used (logged)."""
        path = self.path(rule)
        try:
            with path.open("rb") as f:
                if not _private(os.fstat(f.fileno())):
                    self._refused(rule, path, "not owned by this user or writable by others")
                    return None
                if f.readline() != self._header_line(rule):
                    log.info(
                        "rule %s: checkpoint %s was written by another version or "
                        "configuration; fitting every series afresh",
                        rule.name,
                        path,
                        extra={"rule": rule.name},
                    )
                    return None
                saved = _read(f)
        except FileNotFoundError:
            return None
        except Exception as err:  # truncated, corrupt: start afresh
            self._refused(rule, path, f"{type(err).__name__}: {err}")
            return None
        if saved.book.end is not None:
            self._saved[rule.name] = saved.book.end
        if self.telemetry:
            self.telemetry.checkpoint_restored.labels(rule.name).set(len(saved.series))
        return saved

    def _refused(self, rule: Rule, path: Path, why: str) -> None:
        message = "checkpoint %s cannot be read (%s); fitting every series afresh"
        self._failed(rule, "load", message, path, why)

    def _failed(self, rule: Rule, op: str, message: str, *args: object) -> None:
        """Log (a warning for a load, an error for a save) and count a failed `op`."""
        level = logging.WARNING if op == "load" else logging.ERROR
        log.log(level, "rule %s: " + message, rule.name, *args, extra={"rule": rule.name})
        if self.telemetry:
            self.telemetry.checkpoint_failures.labels(rule.name, op).inc()

    def save(self, rule: Rule, book: HistoryBook, series: dict[Hashable, SeriesState]) -> bool:
        """Write the rule's checkpoint if SAVE_EVERY seconds of grid passed since its last
        one (atomically: a crash mid-write leaves the previous one); whether it wrote."""
        end = book.end
        if end is None or end - self._saved.get(rule.name, end - SAVE_EVERY) < SAVE_EVERY:
            return False
        path = self.path(rule)
        partial = path.with_suffix(".partial")
        began = time.perf_counter()
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(self._header_line(rule))
                _write(f, book, end, series)
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, path)
        except Exception as err:
            self._failed(
                rule,
                "save",
                "could not write checkpoint %s: %s (a restart will fit every series afresh)",
                path,
                err,
            )
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            return False
        self._saved[rule.name] = end
        if self.telemetry:
            self.telemetry.checkpoint_seconds.labels(rule.name).observe(time.perf_counter() - began)
            self.telemetry.checkpoint_end.labels(rule.name).set(end)
        return True


def _write(f: BinaryIO, book: HistoryBook, end: int, series: dict[Hashable, SeriesState]) -> None:
    entries = list(book.entries())
    header = _Header(time.time(), book.step, book.window, book.phase, end, len(entries))
    pickle.dump(header, f, protocol=5)
    for key, labels, values in entries:
        pickle.dump((key, labels, values, series.get(key)), f, protocol=5)


def _read(f: BinaryIO) -> Saved:
    from forecaster.runtime.history import HistoryBook

    header = pickle.load(f)
    if not isinstance(header, _Header):
        raise ValueError(f"a {type(header).__name__} where its header belongs")
    book = HistoryBook(header.step, header.window, header.phase, header.end)
    series = {}
    for _ in range(header.count):
        key, labels, values, state = pickle.load(f)
        book.put(key, labels, values)
        if state is not None:
            series[key] = state
    return Saved(book, series, header.written)
