"""What a process on this machine holds, read from /proc: its resident memory and its
sockets (for the tests and benchmarks that measure a server from outside)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def rss_kib(pid: int) -> float:
    """The process' resident set size in KiB (VmRSS); NaN once it has none (exited)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1])
    return float("nan")


def sockets(pid: int) -> int:
    """How many sockets the process holds open (its listening ones included)."""
    found = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            found += os.readlink(fd).startswith("socket:")
    return found
