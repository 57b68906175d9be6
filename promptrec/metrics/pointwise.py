"""Pointwise metrics: AUC, user-averaged AUC, log loss, accuracy, a bootstrap AUC interval.

Scores are log-odds (`sigmoid` turns them into probabilities); calibration metrics come from
`metrics.calibration`. scikit-learn is imported where it is used, so importing this is cheap.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from promptrec.metrics.calibration import calibration_metrics


def sigmoid(scores: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(scores, dtype=np.float64)))


def user_auc(labels, scores, user_ids) -> tuple[float, int]:
    """Mean per-user AUC over users with both labels (UAUC), and how many users qualified."""
    from sklearn.metrics import roc_auc_score

    groups = defaultdict(list)
    for label, score, user in zip(labels, scores, user_ids):
        groups[user].append((label, score))
    aucs = []
    for pairs in groups.values():
        user_labels = [label for label, _ in pairs]
        if 0 < sum(user_labels) < len(user_labels):
            aucs.append(roc_auc_score(user_labels, [score for _, score in pairs]))
    return (float(np.mean(aucs)) if aucs else float("nan")), len(aucs)


def auc_interval(labels, scores, level: float = 0.95, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of AUC: examples resampled with replacement (seeded, so the
    interval is reproducible); draws left with one class are skipped. (nan, nan) without both classes."""
    labels, scores = np.asarray(labels, dtype=int), np.asarray(scores, dtype=np.float64)
    if not 0 < labels.sum() < len(labels):
        return float("nan"), float("nan")
    return _percentiles(_resampled_aucs(labels, [scores], resamples, seed)[0], level)


def auc_gap_interval(labels, first, second, level: float = 0.95, resamples: int = 1000, seed: int = 0):
    """AUC(first) - AUC(second) and its paired percentile bootstrap interval: both score vectors are
    scored on the same resamples of the examples (the draws `auc_interval` makes with this seed)."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels, dtype=int)
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if not 0 < labels.sum() < len(labels):
        return float("nan"), float("nan"), float("nan")
    a, b = _resampled_aucs(labels, [first, second], resamples, seed)
    gap = roc_auc_score(labels, first) - roc_auc_score(labels, second)
    return (float(gap), *_percentiles(a - b, level))


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _resampled_aucs(labels: np.ndarray, score_sets: list[np.ndarray], resamples: int, seed: int) -> list[np.ndarray]:
    """The AUC of each score vector on the same seeded resamples that keep both classes.

    A resample is a vector of example counts, so resamples are scored a block at a time as weighted
    Mann-Whitney statistics over each score order computed once (ties count one half). Blocks keep
    memory near 2M counts whatever the number of examples; the draws are the same as in one block."""
    n = len(labels)
    sorted_sets = []
    for scores in score_sets:
        order = np.argsort(scores, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(scores[order]) != 0])  # first index of each tie group
        sorted_sets.append((order, starts, labels[order]))
    rng = np.random.default_rng(seed)
    values = [[] for _ in score_sets]
    block = max(1, 2_000_000 // n)
    for first in range(0, resamples, block):
        size = min(block, resamples - first)
        draws = rng.integers(0, n, (size, n)) + n * np.arange(size)[:, None]
        drawn = np.bincount(draws.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)
        for found, (order, starts, sorted_labels) in zip(values, sorted_sets):
            counts = drawn[:, order]
            positives = np.add.reduceat(counts * sorted_labels, starts, axis=1)
            negatives = np.add.reduceat(counts * (1 - sorted_labels), starts, axis=1)
            below = np.cumsum(negatives, axis=1) - negatives
            pairs = positives.sum(axis=1) * negatives.sum(axis=1)  # 0 where a class was not drawn
            wins = (positives * (below + 0.5 * negatives)).sum(axis=1)
            found.append(wins[pairs > 0] / pairs[pairs > 0])
    return [np.concatenate(found) for found in values]


def pointwise_metrics(labels, scores, user_ids=None) -> dict:
    """AUC needs both classes; without them it is NaN (reported, not hidden)."""
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    labels = np.asarray(labels, dtype=int)
    scores = np.asarray(scores, dtype=np.float64)
    both = 0 < labels.sum() < len(labels)
    metrics = {
        "num_examples": int(len(labels)),
        "positive_rate": float(labels.mean()) if len(labels) else float("nan"),
        "auc": float(roc_auc_score(labels, scores)) if both else float("nan"),
        "logloss": float(log_loss(labels, sigmoid(scores), labels=[0, 1])),
        "accuracy": float(accuracy_score(labels, (scores > 0).astype(int))),
    }
    metrics["auc_ci95"] = list(auc_interval(labels, scores))
    if user_ids is not None and all(u is not None for u in user_ids):
        metrics["uauc"], metrics["num_users_uauc"] = user_auc(labels, scores, user_ids)
    else:
        metrics["uauc"], metrics["num_users_uauc"] = float("nan"), 0
    metrics.update(calibration_metrics(labels, sigmoid(scores)))  # brier, ece, mce: see promptrec.calibration
    return metrics
