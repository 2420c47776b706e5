"""The `scaleahead` command: parses flags and dispatches to serve, backtest, whatif,
check-config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adapter import backtest_flags, flags, logs, whatif_flags
from adapter.errors import UsageError
from forecaster.config import ConfigError


class ShowDefaults(argparse.HelpFormatter):
    """Help that states each flag's default where it has one and does not say it yet."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


def _serve(args: argparse.Namespace) -> None:
    from adapter.serve import serve

    serve(flags.serve_options(args))


def _backtest(args: argparse.Namespace) -> None:
    from forecaster.evaluation.command import BacktestError, run

    try:
        run(backtest_flags.backtest_options(args))
    except BacktestError as err:
        raise UsageError(str(err)) from None
    except ModuleNotFoundError as err:
        raise UsageError(
            f"backtest needs the backtest extra ({err.name} is not installed): "
            "pip install 'scaleahead[backtest]'"
        ) from None


def _check_config(args: argparse.Namespace) -> None:
    from adapter.check_config import check_config

    check_config(Path(args.file), args.prometheus)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scaleahead")
    except PackageNotFoundError:  # run from a tree that is not installed
        return "unknown (not installed)"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scaleahead", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"scaleahead {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    formatter = ShowDefaults

    s = sub.add_parser(
        "serve", help="forecast and serve the external metrics API", formatter_class=formatter
    )
    flags.serve_flags(s)
    s.set_defaults(func=_serve)

    b = sub.add_parser(
        "backtest",
        help="replay history through the forecaster and a simulated HPA",
        description="Replay a recorded history through the same forecast cycle and "
        "serving policy as `serve`, score it against baselines, and simulate the HPA.",
        formatter_class=formatter,
    )
    backtest_flags.backtest_flags(b)
    b.set_defaults(func=_backtest)

    w = sub.add_parser(
        "whatif",
        help="what predictive scaling would do for every series of a fleet",
        description="Replay the last days of every series through the backtest (the same "
        "cycle, engine and serving policy as `serve`), on a Dask cluster, and rank them by "
        "requests saved per extra pod-minute against reactive scaling.",
        formatter_class=formatter,
    )
    whatif_flags.whatif_flags(w)
    w.set_defaults(func=whatif_flags.run_whatif)

    c = sub.add_parser("check-config", help="validate a configuration file and exit")
    c.add_argument("file")
    c.add_argument(
        "--prometheus",
        action="store_true",
        help="also run each rule's query once against the configured Prometheus and report "
        "its series (none is an error, with similar metric names as a hint)",
    )
    c.set_defaults(func=_check_config)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; 2 for a usage or configuration error, with its message."""
    args = parser().parse_args(argv)
    logs.configure(getattr(args, "log_level", "info"), getattr(args, "log_format", "text"))
    try:
        args.func(args)
    except (ConfigError, UsageError) as err:
        print(f"scaleahead: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
