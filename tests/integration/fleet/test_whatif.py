"""`scaleahead whatif` as users run it: the command, a real Dask scheduler and two real
worker processes on loopback (one killed mid-run), and the report in a real headless
Chromium."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from forecaster.fleet import run
from forecaster.fleet.inputs import from_folder
from tests.conftest import scaleahead_cmd, venv_tool

TRACES = Path(__file__).resolve().parents[3].parent / "shared" / "traces"
LLM_CLIENTS = ("client15", "client36", "client60", "client66", "client73", "client101")
DAYS = 3


def _whatif(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`scaleahead whatif` with these arguments, run to its end."""
    return subprocess.run(
        [*scaleahead_cmd(), "whatif", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of six real LLM-serving clients, each cut to its last six days (a real
    fleet's series are as young as that), and one day-old series."""
    folder = tmp_path_factory.mktemp("fleet")
    for name in LLM_CLIENTS:
        (source,) = TRACES.glob(f"servegen_m_mid_{name}_10min.csv")
        lines = source.read_text().splitlines()
        (folder / f"{name}.csv").write_text("\n".join(lines[:1] + lines[-6 * 144 :]) + "\n")
    young = (folder / "client15.csv").read_text().splitlines()
    (folder / "young.csv").write_text("\n".join(young[:1] + young[-144:]) + "\n")
    return folder


@pytest.fixture(scope="module")
def embedded(fleet: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The embedded run's rows (a local cluster of two workers), by series id."""
    rows = run.run(from_folder(fleet), tmp_path_factory.mktemp("embedded"), days=DAYS, workers=2)
    return {row["id"]: row for row in rows}


def _started(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A real `dask scheduler` on loopback and two `dask worker` processes of one thread
    each (no nanny: a killed worker stays dead); its address and the workers."""
    dask = venv_tool("dask")
    file = tmp_path / "scheduler.json"
    procs = [
        _started(
            [
                dask,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(file),
            ],
            tmp_path / "scheduler.log",
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        workers = [
            _started(
                [
                    dask,
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                    "--name",
                    f"w{i}",
                ],
                tmp_path / f"worker{i}.log",
            )
            for i in range(2)
        ]
        procs += workers
        yield address, workers
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def test_a_worker_killed_mid_run_loses_nothing_and_the_report_is_the_embedded_runs(
    fleet: Path,
    embedded: dict[str, dict],
    dask_cluster: tuple[str, list[subprocess.Popen[bytes]]],
    tmp_path: Path,
):
    """The command on an existing scheduler: once the first series is judged, one of the
    two workers is killed; its series are judged by the other, every series has one row,
    and each row is the embedded run's (the same replay, wherever it ran)."""
    address, workers = dask_cluster
    out = tmp_path / "report"
    command = [
        *scaleahead_cmd(),
        "whatif",
        "--traces",
        str(fleet),
        "--out",
        str(out),
        "--days",
        str(DAYS),
        "--scheduler",
        address,
    ]
    whatif = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results = out / run.RESULTS
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and whatif.poll() is None:
        if results.exists() and results.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    done_at_kill = results.read_text().count("\n")
    assert done_at_kill < len(embedded), "the run ended before a worker could be killed"
    os.killpg(workers[0].pid, signal.SIGKILL)
    stdout, stderr = whatif.communicate(timeout=300)
    assert whatif.returncode == 0, stderr.decode()
    assert f"{len(embedded)} series:" in stdout.decode()
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(embedded)  # each once: none lost or doubled
    for row in rows:
        assert row == embedded[row["id"]]
    assert embedded["young"]["verdict"] == "not enough history"
    report = json.loads((out / "report.json").read_text())
    assert [r["id"] for r in report["series"]][:1] != ["young"]
    assert report["summary"]["verdicts"]["not enough history"] == 1


def test_the_report_opens_in_a_browser_sorts_and_shows_every_series(
    fleet: Path, embedded: dict[str, dict], tmp_path: Path
):
    """The HTML report in Debian's Chromium, headless, offline: no console error, every
    series a row, and a click on a heading sorts the table by it (twice: reversed)."""
    from playwright.sync_api import sync_playwright

    from forecaster.fleet import report

    report.write(tmp_path, list(embedded.values()))
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "request",
            lambda r: errors.append(f"fetched {r.url}") if not r.url.startswith("file:") else None,
        )
        page.goto((tmp_path / "report.html").as_uri())
        ids = page.locator("#series tbody tr td:first-child").all_inner_texts()
        assert sorted(ids) == sorted(embedded)
        page.click("th[data-col='0']")
        assert page.locator("#series tbody tr td:first-child").all_inner_texts() == sorted(ids)
        page.click("th[data-col='0']")
        assert page.locator("#series tbody tr td:first-child").all_inner_texts() == sorted(
            ids, reverse=True
        )
        page.click("th[data-col='4']")  # scaleahead: dropped, ascending; blanks last
        shown = page.locator("#series tbody tr td:nth-child(5)").all_inner_texts()
        values = [float(v.rstrip("%")) for v in shown if v]
        assert values == sorted(values) and shown[-1] == ""
        # A series' view: its row opens a chart of demand and both HPAs' Ready capacity,
        # whose readout follows the pointer; a second click closes it.
        page.click("#series tbody tr:first-child td:first-child")
        chart = page.locator("svg.view")
        assert chart.count() == 1 and chart.locator("path").count() == 3
        box = chart.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        readout = chart.locator(".readout").text_content() or ""
        assert readout.startswith("20") and "demand" in readout and "scaleahead" in readout
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        page.click("#series tbody tr:first-child td:first-child")
        assert page.locator("svg.view").count() == 0
        browser.close()
    assert errors == []
    assert (tmp_path / "report.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--traces", "{missing}"], "not a folder"),
        (["--traces", "{fleet}", "--days", "1"], "--days: at least 2"),
        (["--parquet", "{fleet}/client15.csv"], "cannot read as Parquet"),
        (["--traces", "{fleet}", "--scheduler", "tcp://127.0.0.1:9"], "cannot connect"),
    ],
)
def test_bad_input_is_refused_by_name_with_exit_2(
    fleet: Path, tmp_path: Path, flags: list[str], said: str
):
    args = [f.format(missing=tmp_path / "missing", fleet=fleet) for f in flags]
    done = _whatif(*args, "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert said in done.stderr and "Traceback" not in done.stderr
    assert (
        not (tmp_path / "out" / run.RESULTS).exists()
        or not (tmp_path / "out" / run.RESULTS).read_text()
    )


def test_every_series_of_a_rule_read_from_a_real_prometheus_is_judged(fleet: Path, tmp_path: Path):
    """50 series backfilled into a real Prometheus as a gauge of requests per second at
    10-minute steps (the six LLM clients at several scales, the last one a day old):
    `whatif --config --metric` reads every series the rule's query gives, in chunked
    range queries, and judges each; a series' row is the one its own CSV gets."""
    from forecaster.fleet.inputs import from_prometheus
    from forecaster.fleet.judge import judge_series
    from forecaster.selector import EVERYTHING
    from harness.prometheus import backfilled

    step, now = 600, int(time.time())
    end = now // step * step
    lines = ["# HELP llm_requests Requests a second.", "# TYPE llm_requests gauge"]
    traces = {s.id: s.trace for s in from_folder(fleet)}
    ids = []
    for k in range(50):
        name = LLM_CLIENTS[k % len(LLM_CLIENTS)] if k < 49 else "young"
        counts = traces[name].counts * (1 + k // len(LLM_CLIENTS))
        stamps = end - step * np.arange(len(counts))[::-1]
        ids.append(f"client={name},copy={k}")
        lines += [
            f'llm_requests{{client="{name}",copy="{k}"}} {c / step!r} {t}'
            for c, t in zip(counts.tolist(), stamps.tolist(), strict=True)
            if c == c
        ]
    server = backfilled(lines, tmp_path, end)
    server.start()
    try:
        config = tmp_path / "scaleahead.yaml"
        config.write_text(
            f"prometheus:\n  url: {server.url}\n  timeout: 60s\n"
            "rules:\n  - name: llm_requests_forecast\n"
            "    query: 'llm_requests{<<.LabelMatchers>>}'\n    step: 10m\n    history: 15d\n"
        )
        # A rule that is not there, and a selection of nothing, each refused by name.
        for flags, said in (
            (["--metric", "nope"], "--metric nope: no such rule"),
            (["--metric", "llm_requests_forecast", "--selector", "copy=999"], "no series match"),
        ):
            refused = _whatif("--config", str(config), *flags, "--out", str(tmp_path / "refused"))
            assert refused.returncode == 2 and said in refused.stderr, refused.stderr
        rule, read = from_prometheus(config, "llm_requests_forecast", EVERYTHING, DAYS, now)
        (one,) = [s for s in read if s.id == "client=client36,copy=1"]
        counts = traces["client36"].counts  # the file's series, moved to end now
        assert one.trace.start == end - step * len(counts)
        np.testing.assert_allclose(one.trace.counts, counts, rtol=1e-14)
        out = tmp_path / "report"
        done = _whatif(
            "--config",
            str(config),
            "--metric",
            "llm_requests_forecast",
            "--days",
            str(DAYS),
            "--out",
            str(out),
            timeout=600,
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    rows = {r["id"]: r for r in json.loads((out / "report.json").read_text())["series"]}
    assert sorted(rows) == sorted(ids)
    assert rows["client=young,copy=49"]["verdict"] == "not enough history"
    assert all(r["verdict"] in ("gains", "no gain") for i, r in rows.items() if "young" not in i)
    # Judged on Dask in the command, as in this process, under the rule it was read by.
    assert rows[one.id] == judge_series(one, DAYS, rule=rule)


def test_the_embedded_workers_do_not_sample_their_own_stacks():
    """The embedded workers run with Dask's statistical profiler off: it samples every
    thread's stack each 10 ms under the GIL of the process judging series (about 5 % of
    the run in bench.fleet), for a dashboard that is not there."""
    import dask

    with run.client(None, 1) as c:
        c.wait_for_workers(1)
        enabled = c.run(lambda: dask.config.get("distributed.worker.profile.enabled"))
    assert list(enabled.values()) == [False]
    assert dask.config.get("distributed.worker.profile.enabled") is True  # not this process's
