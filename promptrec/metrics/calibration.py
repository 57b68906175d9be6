"""Calibration of click probabilities p = sigmoid(score): Brier score, ECE/MCE, reliability diagram.

A ranker only needs the order of its scores; a click-through model needs probabilities that mean
what they say. Expected calibration error uses NUM_BINS equal-width bins on [0, 1] (15, as in
Guo et al. 2017, "On Calibration of Modern Neural Networks"): the count-weighted mean of
|observed positive rate - mean predicted probability| over non-empty bins; the maximum
calibration error is the largest such gap. Bin i holds p in [i/B, (i+1)/B); p = 1 falls in the last.
AUC, log loss and the other pointwise metrics live in `metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from promptrec.core.errors import ConfigError

NUM_BINS = 15


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin counts and means; bins with no predictions hold NaN means and count 0."""

    edges: np.ndarray  # (num_bins + 1,) bin boundaries, 0 .. 1
    counts: np.ndarray  # (num_bins,) predictions per bin
    mean_predicted: np.ndarray  # (num_bins,) mean probability in the bin
    observed: np.ndarray  # (num_bins,) fraction of positive labels in the bin


def reliability_bins(labels, probabilities, num_bins: int = NUM_BINS) -> ReliabilityBins:
    labels, probabilities = _check(labels, probabilities, num_bins)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    index = np.minimum((probabilities * num_bins).astype(int), num_bins - 1)  # p = 1.0 -> last bin
    counts = np.bincount(index, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(index, weights=probabilities, minlength=num_bins) / counts
        observed = np.bincount(index, weights=labels, minlength=num_bins) / counts
    return ReliabilityBins(edges, counts, mean_predicted, observed)


def expected_calibration_error(labels, probabilities, num_bins: int = NUM_BINS) -> float:
    bins = reliability_bins(labels, probabilities, num_bins)
    filled = bins.counts > 0
    gaps = np.abs(bins.observed[filled] - bins.mean_predicted[filled])
    return float(np.sum(gaps * bins.counts[filled]) / np.sum(bins.counts))


def max_calibration_error(labels, probabilities, num_bins: int = NUM_BINS) -> float:
    bins = reliability_bins(labels, probabilities, num_bins)
    filled = bins.counts > 0
    return float(np.max(np.abs(bins.observed[filled] - bins.mean_predicted[filled])))


def brier_score(labels, probabilities) -> float:
    """Mean squared error of the probabilities (scikit-learn's brier_score_loss)."""
    from sklearn.metrics import brier_score_loss

    labels, probabilities = _check(labels, probabilities, NUM_BINS)
    return float(brier_score_loss(labels, probabilities, pos_label=1))


def calibration_metrics(labels, probabilities, num_bins: int = NUM_BINS) -> dict:
    """brier, ece, mce and the bin count, for metrics.json; NaN for an empty set."""
    if len(labels) == 0:
        return {"brier": float("nan"), "ece": float("nan"), "mce": float("nan"), "ece_bins": num_bins}
    return {
        "brier": brier_score(labels, probabilities),
        "ece": expected_calibration_error(labels, probabilities, num_bins),
        "mce": max_calibration_error(labels, probabilities, num_bins),
        "ece_bins": num_bins,
    }


def plot_reliability(labels, probabilities, path, num_bins: int = NUM_BINS, title: str = "") -> Path:
    """Write a reliability diagram PNG: observed vs predicted per bin, and a histogram of counts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg here, not at import: no display needed
    from matplotlib.figure import Figure

    bins = reliability_bins(labels, probabilities, num_bins)
    centers = (bins.edges[:-1] + bins.edges[1:]) / 2
    width = 1.0 / num_bins
    figure = Figure(figsize=(5, 6), layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    top.bar(centers, np.nan_to_num(bins.observed), width=width * 0.9, alpha=0.35, label="observed rate per bin")
    filled = bins.counts > 0
    top.plot(bins.mean_predicted[filled], bins.observed[filled], "o-", label="(mean predicted, observed)")
    ece = expected_calibration_error(labels, probabilities, num_bins)
    top.set(ylabel="observed positive rate", xlim=(0, 1), ylim=(0, 1), title=title or f"ECE {ece:.4f}")
    top.legend(loc="upper left", fontsize="small")
    bottom.bar(centers, bins.counts, width=width * 0.9)
    bottom.set(xlabel="predicted probability sigmoid(score)", ylabel="examples")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path


def _check(labels, probabilities, num_bins: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.float64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if labels.shape != probabilities.shape or labels.ndim != 1:
        raise ConfigError(f"labels {labels.shape} and probabilities {probabilities.shape} must be equal-length lists")
    if not np.isin(labels, (0, 1)).all():
        raise ConfigError("labels must be 0 or 1")
    if probabilities.size and (np.isnan(probabilities).any() or probabilities.min() < 0 or probabilities.max() > 1):
        raise ConfigError("probabilities must lie in [0, 1]; pass sigmoid(score), not raw scores")
    if not isinstance(num_bins, int) or num_bins < 1:
        raise ConfigError(f"num_bins must be a positive integer, got {num_bins!r}")
    return labels, probabilities
