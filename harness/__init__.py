"""Real parts for the tests and the benchmarks, started on this machine and stopped by
PID: a Prometheus server with backfilled history, a Kubernetes control plane, the
certificates they need, and the steps that register scaleahead with the aggregator.

Not part of the package users install; tests/ and bench/ both import it."""
