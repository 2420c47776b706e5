"""`scaleahead check-config`: a configuration file validated and described (the times each
rule will use, its schedules' next windows), and with `prometheus`, each rule's query run
once against the configured Prometheus."""

from __future__ import annotations

import time
from pathlib import Path

from forecaster.config import Config, ConfigError, load_config
from forecaster.schedules import next_window
from forecaster.sources.prometheus import PrometheusClient, PrometheusError, probe_rule
from forecaster.times import SETTLE, format_duration, rfc3339


def describe(config: Config, now: int) -> list[str]:
    """A line per rule with the times it will use, and one per schedule or event with its
    window open at `now` or its next one."""
    lines = []
    for r in config.rules:
        derived = " (derived)" if r.horizon_derived else ""
        lines.append(
            f"  rule {r.name}: step {format_duration(r.step)}, lead {format_duration(r.lead)}, "
            f"horizon {format_duration(r.horizon)}{derived}, forecasts fresh for "
            f"{format_duration(r.ttl)}, every {format_duration(r.interval)}, "
            f"{r.quantile_setting}, new series forecast after a "
            f"{format_duration(r.warmup)} warm-up; history {format_duration(r.history)} "
            f"({r.history_steps:,} steps) of up to {r.max_series:,} series: at most "
            f"{r.history_bytes / 2**20:,.0f} MiB"
        )
        for d in [*r.schedules, *r.events]:
            window = next_window(d.windows, now)
            if window is None:
                when = "no window within a year"
            elif window[0] <= now:
                when = f"open now, until {rfc3339(window[1])}"
            else:
                when = f"next window {rfc3339(window[0])} .. {rfc3339(window[1])}"
            lines.append(f"    {d.name}: {when}")
    return lines


def probe(source: str, config: Config) -> None:
    """Print a line per rule with the series its query yields now; then ConfigError naming
    every rule that could serve nothing."""
    client = PrometheusClient(config.prometheus)
    at = time.time() - SETTLE
    problems = []
    try:
        for r in config.rules:
            try:
                found = probe_rule(client, r, at)
            except PrometheusError as err:
                problems.append(f"rule {r.name}: {err}")
                continue
            labels = ", ".join(found.label_names) or "none"
            print(f"  rule {r.name}: {found.series} series now (labels: {labels})")
            problems.extend(f"rule {r.name}: {p}" for p in found.problems)
    finally:
        client.close()
    if problems:
        raise ConfigError("\n".join(f"{source}: {p}" for p in problems))


def check_config(path: Path, prometheus: bool) -> None:
    """Print what the file configures (and what its queries find); raise ConfigError."""
    config = load_config(path)
    # With --prometheus, not "OK" before the queries have run: they may still fail.
    verdict = "valid" if prometheus else "OK"
    print(f"{path}: {verdict}, Prometheus at {config.prometheus.url}")
    print("\n".join(describe(config, int(time.time()))))
    if prometheus:
        probe(str(path), config)
        print(f"{path}: OK, every rule's query yields series")
