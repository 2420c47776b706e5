"""What a process on this machine holds, read from /proc: its resident memory, its
sockets and the children multiprocessing spawned (for the tests and benchmarks that
measure a server from outside); and stopping one."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path


def rss_kib(pid: int, peak: bool = False) -> float:
    """The process' resident set size in KiB (VmRSS), or with `peak` the highest it has
    been (VmHWM); NaN once it has none (exited)."""
    field = "VmHWM:" if peak else "VmRSS:"
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return float(line.split()[1])
    return float("nan")


def sockets(pid: int) -> int:
    """How many sockets the process holds open (its listening ones included)."""
    found = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            found += os.readlink(fd).startswith("socket:")
    return found


def spawned(pid: int) -> list[int]:
    """The process' children that multiprocessing spawned (`spawn_main`: not its
    resource tracker); none once it has exited."""
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:  # gone
        return out
    for task in tasks:
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline:
                out.append(int(child))
    return out


def stop(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """Ask a process to stop (SIGTERM); kill it if it has not exited within `grace` s."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def alive(pid: int) -> bool:
    """Whether the process exists and has not exited (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
