"""Replicas lending each other forecasts: a replica whose own cycles of a rule have not
caught up yet serves a Ready peer's forecasts of it, fetched over the serving port."""
