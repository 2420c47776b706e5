"""The flags of `scaleahead whatif`, and the run they start."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from adapter.errors import UsageError
from forecaster.selector import SelectorError, parse_selector


def whatif_flags(p: argparse.ArgumentParser) -> None:
    """Add the whatif flags to its subcommand's parser."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="read every series of the rule --metric from this configuration's Prometheus "
        "(or Thanos, Mimir, VictoriaMetrics), judged under that rule",
    )
    source.add_argument(
        "--traces",
        type=Path,
        metavar="DIR",
        help="a folder of traces, one series per .csv or .csv.gz file (backtest --csv's "
        "format: timestamp,value with counts per interval)",
    )
    source.add_argument(
        "--parquet",
        type=Path,
        metavar="FILE",
        help="a Parquet file of tidy series: unique_id, ds (datetimes or Unix seconds), "
        "y (requests per second)",
    )
    p.add_argument("--metric", metavar="NAME", help="with --config: the rule whose series to judge")
    p.add_argument(
        "--selector",
        metavar="LABELS",
        help="with --config: only the series these labels pick, e.g. 'namespace=shop'",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("whatif"),
        metavar="DIR",
        help="where results.jsonl (kept as each series finishes: a rerun resumes) and "
        "report.html, report.csv and report.json go",
    )
    p.add_argument("--days", type=int, default=7, help="days judged at the end of each series")
    p.add_argument(
        "--max-pod-minutes",
        type=float,
        metavar="RATIO",
        help="the budget to judge at (default: the rule default, 1.1)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a Dask scheduler to run on, e.g. tcp://dask-scheduler:8786 (its workers need "
        "scaleahead installed); default: an embedded cluster, one worker per core",
    )
    p.add_argument("--workers", type=int, help="workers of the embedded cluster")


def run_whatif(args: argparse.Namespace) -> None:
    """Read the series, judge them on Dask, write the report; UsageError on bad input."""
    from forecaster.fleet import inputs, report, run

    if args.days < 2:
        raise UsageError(f"--days: at least 2, got {args.days}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers: at least 1, got {args.workers}")
    if args.max_pod_minutes is not None and not 0.5 <= args.max_pod_minutes <= 10:
        raise UsageError(f"--max-pod-minutes: between 0.5 and 10, got {args.max_pod_minutes}")
    if (args.config is None) != (args.metric is None):
        raise UsageError("--config and --metric go together")
    if args.selector is not None and args.config is None:
        raise UsageError("--selector picks series of --config's rule: give --config too")
    rule = None
    try:
        if args.config is not None:
            try:
                selector = parse_selector(args.selector)
            except SelectorError as err:
                raise UsageError(f"--selector: {err}") from None
            rule, series = inputs.from_prometheus(
                args.config, args.metric, selector, args.days, int(time.time())
            )
        elif args.traces is not None:
            series = inputs.from_folder(args.traces)
        else:
            series = inputs.from_parquet(args.parquet)
        rows = run.run(
            series,
            args.out,
            days=args.days,
            budget=args.max_pod_minutes,
            rule=rule,
            scheduler=args.scheduler,
            workers=args.workers,
            progress=run.print_progress,
        )
    except inputs.FleetError as err:
        raise UsageError(str(err)) from None
    summary = report.write(args.out, rows)
    v = summary["verdicts"]
    print(
        f"{summary['series']} series: {v['gains']} gain, {v['no gain']} no gain, "
        f"{v['not enough history']} not enough history, {v['failed']} failed; "
        f"report: {args.out / 'report.html'}"
    )
