"""Ranking metrics of ranked lists against held-out targets: NDCG, HR and Recall at K, and MRR."""

from __future__ import annotations

import numpy as np

RANKING_KS = (1, 5, 10, 20)


def ranking_metrics(ranked: dict[str, list[str]], relevant: dict[str, set[str]], ks=RANKING_KS) -> dict:
    """NDCG@K, HR@K, Recall@K and MRR averaged over the users of `ranked` (binary relevance).

    A relevant item missing from a user's list counts as a miss at every K (true metrics: a
    reranker is charged for what its retriever missed). NDCG uses the log2(rank + 1) discount and
    the ideal DCG of min(K, #relevant) hits, as scikit-learn's `ndcg_score` does.
    """
    users = [u for u in ranked if relevant.get(u)]
    metrics: dict[str, float] = {"num_users": len(users)}
    if not users:
        return metrics
    per_user = {f"{name}@{k}": [] for k in ks for name in ("ndcg", "hr", "recall")} | {"mrr": []}
    for user in users:
        items, targets = ranked[user], relevant[user]
        hits = [rank for rank, item in enumerate(items, 1) if item in targets]  # 1-based ranks
        for k in ks:
            top = [r for r in hits if r <= k]
            ideal = sum(1 / np.log2(r + 1) for r in range(1, min(k, len(targets)) + 1))
            per_user[f"ndcg@{k}"].append(sum(1 / np.log2(r + 1) for r in top) / ideal)
            per_user[f"hr@{k}"].append(float(bool(top)))
            per_user[f"recall@{k}"].append(len(top) / len(targets))
        per_user["mrr"].append(1 / hits[0] if hits else 0.0)
    metrics.update({name: float(np.mean(values)) for name, values in per_user.items()})
    metrics["num_users_target_in_list"] = sum(any(i in relevant[u] for i in ranked[u]) for u in users)
    return metrics
