"""Where history and current values come from: the Source protocol (`base`), Prometheus
(`prometheus`, with `promql` building its queries) and recorded traces (`trace`)."""
