"""Pointwise metrics over (label, score) pairs: AUC, user-averaged AUC, log loss, accuracy.

AUC and log loss come from scikit-learn. Scores are log-odds; probabilities are sigmoid(score).
Ranking metrics (NDCG, HR, MRR) belong to ranking evaluation, not here.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


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
    if user_ids is not None and all(u is not None for u in user_ids):
        metrics["uauc"], metrics["num_users_uauc"] = user_auc(labels, scores, user_ids)
    else:
        metrics["uauc"], metrics["num_users_uauc"] = float("nan"), 0
    return metrics
