"""Tests for promptrec.metrics: AUC/log loss against scikit-learn, UAUC and accuracy by hand."""

import math

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from promptrec.metrics.pointwise import auc_gap_interval, auc_interval, pointwise_metrics, sigmoid, user_auc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_and_logloss_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=200)
    scores = rng.normal(size=200) + labels  # informative but noisy log-odds
    metrics = pointwise_metrics(labels, scores)
    assert metrics["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    probabilities = 1.0 / (1.0 + np.exp(-scores))
    assert metrics["logloss"] == pytest.approx(log_loss(labels, probabilities), abs=1e-12)
    assert metrics["num_examples"] == 200
    assert metrics["positive_rate"] == pytest.approx(labels.mean())


def test_auc_with_ties_equals_sklearn():
    labels = [1, 0, 1, 0, 1, 0]
    scores = [0.5, 0.5, 1.0, -1.0, 0.5, 2.0]
    assert pointwise_metrics(labels, scores)["auc"] == pytest.approx(roc_auc_score(labels, scores))


@pytest.mark.parametrize(
    "labels, scores, expected",
    [
        ([1, 1, 0, 0], [2.0, 1.0, -1.0, -2.0], 1.0),
        ([1, 1, 0, 0], [-2.0, -1.0, 1.0, 2.0], 0.0),
        ([1, 0], [0.3, 0.3], 0.5),
        ([1, 0, 1, 0], [4.0, 3.0, 2.0, 1.0], 0.75),  # 3 of the 4 positive/negative pairs are ordered
    ],
)
def test_auc_hand_cases(labels, scores, expected):
    assert pointwise_metrics(labels, scores)["auc"] == pytest.approx(expected)


def test_logloss_hand_case():
    # Scores are log-odds: 0 -> p = 0.5 for both examples, so log loss = ln 2.
    assert pointwise_metrics([1, 0], [0.0, 0.0])["logloss"] == pytest.approx(math.log(2))


# Users "c" and "d" have one class only: skipped and not counted.
UAUC_TABLE = [
    # (user, label, score)
    ("a", 1, 0.9),
    ("a", 0, 0.1),
    ("a", 0, 0.95),  # a: positive beats 1 of 2 negatives -> 0.5
    ("b", 1, 0.2),
    ("b", 1, 0.8),
    ("b", 0, 0.5),  # b: 1 of 2 positives above the negative -> 0.5
    ("e", 1, 0.7),
    ("e", 0, 0.3),  # e: 1.0
    ("c", 1, 0.4),
    ("c", 1, 0.6),
    ("d", 0, 0.9),
]


def test_user_auc_equals_hand_computation():
    users, labels, scores = zip(*UAUC_TABLE)
    uauc, num_users = user_auc(labels, scores, users)
    assert num_users == 3
    assert uauc == pytest.approx((0.5 + 0.5 + 1.0) / 3)


def test_pointwise_metrics_reports_uauc():
    users, labels, scores = zip(*UAUC_TABLE)
    metrics = pointwise_metrics(labels, scores, user_ids=list(users))
    assert metrics["uauc"] == pytest.approx(2.0 / 3)
    assert metrics["num_users_uauc"] == 3


@pytest.mark.parametrize(
    "user_ids",
    [None, ["a", None, "b", "b"]],
    ids=["no users", "a missing user"],
)
def test_uauc_without_users_is_nan(user_ids):
    metrics = pointwise_metrics([1, 0, 1, 0], [1.0, 0.0, 1.0, 0.0], user_ids=user_ids)
    assert math.isnan(metrics["uauc"])
    assert metrics["num_users_uauc"] == 0


def test_user_auc_with_only_single_class_users_is_nan():
    uauc, num_users = user_auc([1, 1, 0], [0.1, 0.2, 0.3], ["a", "a", "b"])
    assert math.isnan(uauc)
    assert num_users == 0


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0, 0]])
def test_single_class_gives_nan_auc_not_an_exception(labels):
    metrics = pointwise_metrics(labels, [0.5, -0.2, 1.0])
    assert math.isnan(metrics["auc"])
    assert math.isfinite(metrics["logloss"])
    assert metrics["positive_rate"] == float(labels[0])


@pytest.mark.parametrize(
    "labels, scores, expected",
    [
        ([1, 0], [0.1, -0.1], 1.0),
        ([1, 0], [-0.1, 0.1], 0.0),
        ([0], [0.0], 1.0),  # score 0 means p = 0.5, predicted negative
        ([1], [0.0], 0.0),
        ([1, 1, 0, 0], [1e-9, 5.0, 0.0, -3.0], 1.0),
        ([1, 0, 1, 0], [2.0, 2.0, -1.0, -1.0], 0.5),
    ],
)
def test_accuracy_thresholds_at_score_zero(labels, scores, expected):
    assert pointwise_metrics(labels, scores)["accuracy"] == pytest.approx(expected)


@pytest.mark.parametrize(
    "score, expected",
    [(0.0, 0.5), (math.log(3), 0.75), (-math.log(3), 0.25), (700.0, 1.0), (-700.0, 0.0)],
)
def test_sigmoid(score, expected):
    assert sigmoid(np.array([score]))[0] == pytest.approx(expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_auc_interval_equals_percentiles_of_sklearn_on_the_same_resamples(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=120)
    scores = np.round(labels + rng.normal(0, 1.5, size=120), 1)  # rounded: many ties
    draws = np.random.default_rng(7).integers(0, 120, (200, 120))  # the draws auc_interval(seed=7) makes
    aucs = [roc_auc_score(labels[d], scores[d]) for d in draws if 0 < labels[d].sum() < 120]
    expected = np.percentile(aucs, [5, 95])
    assert auc_interval(labels, scores, level=0.9, resamples=200, seed=7) == pytest.approx(tuple(expected), abs=1e-12)


def test_auc_gap_interval_pairs_the_two_scorers_on_the_same_resamples():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, size=120)
    first, second = np.round(labels + rng.normal(0, 1.5, size=(2, 120)), 1)  # rounded: many ties
    draws = np.random.default_rng(7).integers(0, 120, (200, 120))  # the draws of seed=7
    gaps = [
        roc_auc_score(labels[d], first[d]) - roc_auc_score(labels[d], second[d])
        for d in draws
        if 0 < labels[d].sum() < 120
    ]
    gap, low, high = auc_gap_interval(labels, first, second, level=0.9, resamples=200, seed=7)
    assert gap == pytest.approx(roc_auc_score(labels, first) - roc_auc_score(labels, second))
    assert (low, high) == pytest.approx(tuple(np.percentile(gaps, [5, 95])), abs=1e-12)
    assert auc_gap_interval(labels, first, first)[1:] == (0.0, 0.0)  # a scorer against itself: no spread


def test_auc_interval_brackets_the_estimate_is_reproducible_and_shrinks_with_data():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, size=100)
    scores = labels + rng.normal(size=100)
    low, high = auc_interval(labels, scores)
    assert low < roc_auc_score(labels, scores) < high
    assert auc_interval(labels, scores) == (low, high)
    assert auc_interval(labels, scores, seed=1) != (low, high)
    low4, high4 = auc_interval(np.tile(labels, 4), np.tile(scores, 4))
    assert high4 - low4 < 0.7 * (high - low)  # 4x the data: about half the width


def test_auc_interval_edge_cases():
    assert auc_interval([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], resamples=100) == (1.0, 1.0)
    assert all(math.isnan(v) for v in auc_interval([1, 1, 1], [0.1, 0.2, 0.3]))
    metrics = pointwise_metrics([0, 1, 0, 1], [0.1, 0.9, 0.3, 0.2])
    assert len(metrics["auc_ci95"]) == 2 and metrics["auc_ci95"][0] <= metrics["auc"] <= metrics["auc_ci95"][1]
