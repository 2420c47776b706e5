"""Serving half of scaleahead: the Kubernetes external metrics API over a metrics provider."""
