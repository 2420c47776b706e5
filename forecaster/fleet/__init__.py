"""`scaleahead whatif`: what predictive scaling would do for every series of a fleet,
each replayed through the backtest, spread over a Dask cluster (an embedded one by
default), and reported as CSV, JSON and one self-contained HTML page."""
