"""Prometheus-style durations ("90s", "1m", "1h30m", "8d") as whole seconds."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


def parse_duration(text: str | int | float) -> int:
    """Return the duration in whole seconds; raise ValueError naming what was expected."""
    if isinstance(text, bool):
        raise ValueError("expected a duration like '30s', '1m' or '8d', got a boolean")
    if isinstance(text, int | float):
        if text < 0 or int(text) != text:
            raise ValueError(f"expected a whole, non-negative number of seconds, got {text!r}")
        return int(text)
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
