"""The trade-off through the simulated HPA on every shared trace, and on variants of them
no model was tuned on, with every baseline scored in the same run.

For each trace: `scaleahead backtest` over its last 7 days at the default settings (each
series' q bought by a budget of 1.1x perfect foresight's pod-minutes) and at each of
QUANTILES (requests beyond Ready capacity against pod-minutes, coverage of the
lead window's peak, pinball loss), beside reactive scaling and the forecasting baselines,
then the goals of issue 12 checked against that run: each baseline dominated by some q;
the default's requests beyond capacity against the best baseline's and its pod-minutes
against perfect foresight's; coverage within 3 points of q; pinball loss (at the q the
default stood for at each step, the baselines' too) and MAE at the lead against the best
baseline's.

Variants (written to a temporary directory, never into the repository): NASA with an
hourly burst shaped from the ELB trace's real spikes; NASA re-binned to 5 minutes with
intervals starting 2 minutes past.

Run: python -m bench.tradeoff [--only NAME] [--quantiles 0.2,0.5,...]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from forecaster.evaluation.command import BacktestOptions, run
from forecaster.evaluation.variants import resampled, spike_shape, with_burst
from forecaster.models.seasonality import centred_mean
from forecaster.sources.trace import Trace, read_trace
from forecaster.times import parse_rfc3339

TRACES = Path(__file__).resolve().parent.parent.parent / "shared" / "traces"
QUANTILES = (
    *(round(0.2 + 0.025 * i, 3) for i in range(12)),  # 0.2 .. 0.475: where baselines sit
    *(0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 0.95),
)
"""The q sweep: finest under 0.5, where the baselines' points lie on the curve."""
BASELINES = ("reactive", "seasonal naive", "holt-winters", "crane dsp", "mstl")
CLAIRVOYANT_SPANS = (900, 1800, 3600)
"""Half-widths (seconds) of the centred means that put the median's MAE goal in scale."""


def clairvoyant_mae(trace: Trace, scored: dict, half_width: int) -> float:
    """MAE over the scored range of a centred mean of the rates over +-half_width seconds:
    a smoothing that knows the future around each step, so no forecast of the average
    demand does much better; what it leaves is noise about that average."""
    y = trace.counts / trace.resolution
    mean = centred_mean(y, 2 * max(1, half_width // trace.resolution) + 1)
    first = (parse_rfc3339(scored["from"]) - trace.start) // trace.resolution
    last = (parse_rfc3339(scored["to"]) - trace.start) // trace.resolution
    sl = slice(max(first, 0), last)
    return float(np.nanmean(np.abs(mean[sl] - y[sl])))


def write(trace: Trace, path: Path) -> Path:
    """A trace as the CSV `scaleahead backtest --csv` reads (counts per interval)."""
    lines = ["timestamp,value"]
    for i, c in enumerate(trace.counts):
        if c == c:
            stamp = time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(trace.start + i * trace.resolution)
            )
            lines.append(f"{stamp},{c:g}")
    path.write_text("\n".join(lines) + "\n")
    return path


def cases(tmp: Path) -> dict[str, Path]:
    out = {p.stem: p for p in sorted(TRACES.glob("*.csv"))}
    nasa = read_trace(TRACES / "nasa_http_1995.csv")
    shape = spike_shape(read_trace(TRACES / "nab_aws_elb_request_count_5min.csv"))
    out["nasa + hourly burst (ELB spike shape)"] = write(
        with_burst(nasa, shape, 300), tmp / "nasa_burst.csv"
    )
    out["nasa at 5 min, phase +2 min"] = write(resampled(nasa, 300, 120), tmp / "nasa_5m.csv")
    return out


def check(data: dict, trace: Trace) -> list[str]:
    """The issue's goals on one run's summary of `trace`."""
    by = {m["method"]: m for m in data["methods"]}
    curve = data["curve"]
    default = by["scaleahead"]
    base = [by[b] for b in BASELINES if b in by]
    lines = []
    for b in base:
        lines.append(f"  {b['method']}: dominated by {b.get('dominated_by') or 'nothing'}")
    best = min(b["beyond_capacity_share"] for b in base)
    ratio = default["beyond_capacity_share"] / best if best else float("inf")
    lines.append(
        f"  default: beyond capacity {ratio:.2f}x the best baseline's (goal <= 0.5), "
        f"pod-minutes {default['pod_minutes_vs_bound']:.3f}x perfect foresight's (goal <= 1.10)"
    )
    for m in curve:
        q = float(m["method"].split("=")[1])
        if q in (0.8, 0.9, 0.95) and m["coverage"] is not None:
            lines.append(
                f"  q={q:g}: coverage {m['coverage'] * 100:.1f}% ({(m['coverage'] - q) * 100:+.1f}"
                " pts)"
            )
    held = data["quantile_held"]
    if held is not None and default["coverage"] is not None:
        lines.append(
            f"  default: q held {held['min']:.3f}..{held['max']:.3f} (mean {held['mean']:.3f}), "
            f"coverage {default['coverage'] * 100:.1f}% "
            f"({(default['coverage'] - held['mean']) * 100:+.1f} pts of the mean q)"
        )
    best_pinball = min(b["pinball"] for b in base if b["pinball"] is not None)
    lines.append(
        f"  pinball at the default's q: {default['pinball']:.4f} against the best "
        f"baseline's {best_pinball:.4f} ({default['pinball'] / best_pinball:.2f}x)"
    )
    maes = [b["mae_lead"] for b in base if b["mae_lead"] is not None]
    if maes and default["mae_lead"] is not None:
        lines.append(
            f"  median MAE at the lead: {default['mae_lead']:.4f}, "
            f"{default['mae_lead'] / min(maes):.3f}x the best baseline's (goal <= 0.85)"
        )
        floors = [clairvoyant_mae(trace, data["range"], w) / min(maes) for w in CLAIRVOYANT_SPANS]
        lines.append(
            "  a clairvoyant centred mean over "
            + ", ".join(
                f"+-{w // 60} min: {f:.3f}x" for w, f in zip(CLAIRVOYANT_SPANS, floors, strict=True)
            )
            + " the best baseline's MAE"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", help="substring of the case names to run")
    ap.add_argument("--quantiles", default=",".join(f"{q:g}" for q in QUANTILES))
    args = ap.parse_args()
    quantiles = tuple(float(q) for q in args.quantiles.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in cases(Path(tmp)).items():
            if args.only and args.only not in name:
                continue
            trace = read_trace(path)
            lead = 180 if trace.resolution == 60 else trace.resolution
            summary = Path(tmp) / "summary.json"
            printed = io.StringIO()
            started = time.perf_counter()
            with contextlib.redirect_stdout(printed):
                run(BacktestOptions(lead=lead, csv=path, quantiles=quantiles, json=summary))
            seconds = time.perf_counter() - started
            print(f"\n=== {name} ({seconds:.0f} s)\n{printed.getvalue()}")
            print("\n".join(check(json.loads(summary.read_text()), trace)))


if __name__ == "__main__":
    main()
