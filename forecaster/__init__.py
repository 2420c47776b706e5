"""Forecasting half of scaleahead: Prometheus history in, per-series QPS forecasts out.

Knows nothing of HTTP serving or of the Kubernetes API; usable alone as a library.
"""
