"""A fleet run on Dask distributed: one task per series, on an embedded local cluster
(one single-threaded worker process per usable core) or on an existing scheduler; each
row appended to `results.jsonl` as its task finishes, so that a run stopped part-way
resumes with the series it has not judged.

Dask reschedules the tasks of a worker that is lost; rows are kept by series id, so a
series judged twice (its first worker died after finishing) is written once."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forecaster.config import Rule
from forecaster.fleet.inputs import FleetError, SeriesInput
from forecaster.fleet.judge import judge_series

if TYPE_CHECKING:
    from distributed import Client

RESULTS = "results.jsonl"
THREAD_LIMITS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
"""Each worker is one process with one thread: the workers are the parallelism."""

Progress = Callable[[int, int, int, float], None]
"""Told (series done, series in all, judged by this run, seconds it has run) after each
row: a resumed run's rate is its own."""


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    """The rows of a results file by series id (a last line cut short by a stop is
    ignored; a later row for an id replaces an earlier one)."""
    rows: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "id" in row:
            rows[str(row["id"])] = row
    return rows


@contextmanager
def client(scheduler: str | None, workers: int | None) -> Iterator[Client]:
    """A Dask client of the scheduler at `scheduler`, or of an embedded local cluster of
    `workers` single-threaded processes (default: one per usable core)."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ModuleNotFoundError:
        raise FleetError("whatif needs Dask: pip install 'scaleahead[fleet]'") from None
    if scheduler is not None:
        try:
            with Client(scheduler, timeout="10s") as c:
                yield c
        except OSError as err:
            raise FleetError(f"--scheduler {scheduler}: cannot connect: {err}") from None
        return
    from forecaster.runtime.fitting import usable_cores

    logging.getLogger("distributed").setLevel(logging.WARNING)  # its own, not the run's

    for name in THREAD_LIMITS:
        os.environ.setdefault(name, "1")
    # The workers' statistical profiler samples every thread's stack every 10 ms, under
    # the GIL of the process doing the work; nobody reads it here (no dashboard).
    with (
        dask.config.set({"distributed.worker.profile.enabled": False}),
        LocalCluster(
            n_workers=workers or usable_cores(),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def run(
    series: list[SeriesInput],
    out: Path,
    *,
    days: int = 7,
    budget: float | None = None,
    rule: Rule | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: Progress = lambda done, total, judged, seconds: None,
) -> list[dict[str, Any]]:
    """Judge every series not yet in `out`/results.jsonl (under `rule`, default: the
    defaults at each series' step) and append its row there as it finishes; every
    series' row, in the order of `series`."""
    ids = [s.id for s in series]
    twice = sorted(i for i, n in Counter(ids).items() if n > 1)
    if twice:
        raise FleetError("two series have the same id: " + ", ".join(twice))
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS
    rows = read_results(path)
    _drop_cut_line(path)
    todo = [s for s in series if s.id not in rows]
    if not todo:
        progress(len(series), len(series), 0, 0.0)
    else:
        from distributed import as_completed

        with client(scheduler, workers) as c, path.open("a") as results:
            started = time.monotonic()
            progress(len(series) - len(todo), len(series), 0, 0.0)
            futures = c.map(
                judge_series,
                todo,
                days=days,
                budget=budget,
                rule=rule,
                key=[f"whatif-{s.id}" for s in todo],
            )
            for judged, future in enumerate(as_completed(futures), start=1):
                row = future.result()
                if row["id"] not in rows:
                    rows[row["id"]] = row
                    results.write(json.dumps(row) + "\n")
                    results.flush()
                progress(len(rows), len(series), judged, time.monotonic() - started)
    return [rows[i] for i in ids]


def _drop_cut_line(path: Path) -> None:
    """Remove a last line cut short by a stop, so that the next row starts a line."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def print_progress(done: int, total: int, judged: int, seconds: float) -> None:
    """Series done, series per minute and time left, on one line of stderr."""
    rate = judged / seconds * 60 if seconds > 0 else 0.0
    left = (total - done) / rate * 60 if rate > 0 else float("nan")
    eta = f"{left / 60:.1f} min left" if left == left else "time left unknown"
    end = "\n" if done == total else ""
    print(f"\r{done}/{total} series, {rate:.1f} a minute, {eta}   ", end=end, file=sys.stderr)
