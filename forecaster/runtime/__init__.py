"""The running forecaster: per-rule history, the scheduled cycle, the forecast store and
the metrics it exports."""
