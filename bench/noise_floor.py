"""How low the served-value MAE of bench/forecast_accuracy.py can go: a clairvoyant bound.

The "oracle" knows the future: at each origin t it is given the centred moving average of
the real series over ±k steps around every step of the lead window, and serves
max(actual(t), max of that average over the window + c * sqrt(it)), with the offset c
picked afterwards as the one that minimises the MAE over the scored range. It cannot know
the noise around that average, which is the point: what it leaves is error no forecast of
the average demand can remove. Its MAE is printed as a ratio to the best baseline's
(reactive, seasonal naive, Holt-Winters, measured here), the ratio the accuracy goal is
stated in. The average spans 2k + 1 steps; one over few steps already contains the very
values scored, so only the wider ones are a fair bound.

Run: python -m bench.noise_floor
"""

from __future__ import annotations

import numpy as np

from bench.forecast_accuracy import BASELINES, TRACES, Scoring, Series, load, scoring
from forecaster.policy import serve

HALF_WIDTHS = (1, 2, 3, 5, 7, 15)


def oracle_mae(s: Series, sc: Scoring, half: int) -> float:
    """MAE of the clairvoyant served value with a ±half-step centred average."""
    y, origins, target = s.y, sc.origins, sc.target
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    smooth = np.convolve(np.nan_to_num(y), kernel, mode="same")
    base = smooth[origins[:, None] + np.arange(1, sc.window + 1)[None, :]].max(axis=1)
    scale = np.sqrt(np.maximum(base, 1e-9))
    spread = 3 * float(np.median(np.abs(target - base) / scale))
    return min(
        float(np.mean(np.abs(serve(y[origins], base + c * scale) - target)))
        for c in np.linspace(-spread, spread, 121)
    )


def main() -> None:
    print("\nclairvoyant served-value MAE / the best baseline's (same origins, same target)\n")
    header = f"{'trace':40s} {'step':>5s} " + " ".join(f"{f'±{k} steps':>10s}" for k in HALF_WIDTHS)
    print(header)
    print("-" * len(header))
    for path in sorted(TRACES.glob("*.csv")):
        s = load(path)
        sc = scoring(s)
        best = min(
            float(np.mean(np.abs(fn(s, sc.origins, sc.window) - sc.target))) for _, fn in BASELINES
        )
        ratios = [oracle_mae(s, sc, k) / best for k in HALF_WIDTHS]
        print(f"{s.name:40s} {s.step:5d} " + " ".join(f"{r:10.3f}" for r in ratios))


if __name__ == "__main__":
    main()
