"""Time as scaleahead handles it: durations ("90s", "1h30m"), RFC 3339 and the step grid.

Times are Unix seconds throughout; a grid point is a multiple of the rule's step.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

MINUTE = 60
HOUR = 3600
DAY = 86400
WEEK = 7 * DAY

SETTLE = 10
"""Seconds a sample may take to reach Prometheus after its timestamp (a scrape's timeout
by default). Queries ask about times at least this old, on a fixed grid, so that every
replica reading the same Prometheus gets the same answer whenever it asks."""

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


def parse_duration(text: object) -> int:
    """Return the duration in whole seconds; raise ValueError naming what was expected."""
    if isinstance(text, bool):
        raise ValueError("expected a duration like '30s', '1m' or '8d', got a boolean")
    if isinstance(text, int | float):
        if text < 0 or int(text) != text:
            raise ValueError(f"expected a whole, non-negative number of seconds, got {text!r}")
        return int(text)
    if not isinstance(text, str):
        raise ValueError(f"expected a duration like '30s', '1m' or '8d', got {text!r}")
    s = text.strip()
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f"expected a duration like '30s', '1m' or '8d', got {text!r}")
    if total != int(total):
        raise ValueError(f"expected a whole number of seconds, got {text!r}")
    return int(total)


def format_duration(seconds: int) -> str:
    """Render seconds as the shortest Prometheus duration ("1h30m", "90s" stays "1m30s")."""
    if seconds == 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s"):
        size = int(_UNITS[unit])
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(out)


def rfc3339(timestamp: float) -> str:
    """Unix seconds as the RFC 3339 UTC form Kubernetes writes ("1995-08-25T04:00:00Z")."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> int:
    """RFC 3339 time with a zone ("...Z" or "+02:00") as Unix seconds; ValueError otherwise."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"expected an RFC 3339 time like 1995-08-25T00:00:00Z, got {text!r}"
        ) from None
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; add Z or an offset")
    return int(when.timestamp())


def grid_floor(t: float, step: int, phase: int = 0) -> int:
    """The newest grid point (`phase` past a multiple of `step`) at or before t."""
    return int((t - phase) // step) * step + phase


def grid_ceil(t: float, step: int, phase: int = 0) -> int:
    """The oldest grid point (`phase` past a multiple of `step`) at or after t."""
    return -int(-(t - phase) // step) * step + phase


def first_point(end: int, points: int, step: int) -> int:
    """The oldest of `points` consecutive grid points `step` apart that end at `end`."""
    return end - (points - 1) * step
