"""Replicas lending each other forecasts: a replica whose first cycle of a rule has not
ended yet serves a Ready peer's forecasts of it, fetched over the serving port."""
