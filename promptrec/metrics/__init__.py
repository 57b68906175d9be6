"""Metrics: pointwise, calibration, ranking, experiment summaries and their plots."""
