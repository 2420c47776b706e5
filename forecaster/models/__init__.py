"""Forecasting models: the model kinds, the cold-start ladder that offers them, model
choice, calibrated bands, and the engine that keeps every series' fit."""

from forecaster.models.engine import ForecastEngine
from forecaster.models.series_model import SeriesFit, SeriesModel

__all__ = ["ForecastEngine", "SeriesFit", "SeriesModel"]
