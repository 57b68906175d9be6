"""Classic baselines on the same prepared split, so every LLM number has a yardstick beside it.

Scores use only what an example already carries (its 10-item history and its leak-free `stats`),
so no baseline sees a rating at or after the example's timestamp. The learned baseline is
scikit-learn's logistic regression, trained on the same K shots as the LLM or on the whole train
split (a ceiling). Outputs are written in the same format as `evaluate`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from promptrec.errors import DataError
from promptrec.evaluation import write_outputs
from promptrec.metrics import pointwise_metrics
from promptrec.records import provenance

FEATURES = ("history_like_fraction", "history_mean_rating", "item_like_rate", "log_item_ratings", "user_like_rate")
HEURISTICS = {
    "history_like_fraction": "fraction of the 10 shown history items the user liked",
    "item_like_rate": "how often earlier raters liked the target (popularity)",
    "user_like_rate": "how often the user liked anything before",
}


def features(example: dict, prior_rate: float = 0.55) -> list[float]:
    """One row of FEATURES; a missing rate (no earlier ratings) falls back to `prior_rate`."""
    if "stats" not in example or "history" not in example:
        raise DataError(
            f"example {example.get('example_id')} lacks 'history'/'stats'; "
            "baselines need a split built by `promptrec data prepare`"
        )
    stats, history = example["stats"], example["history"]
    ratings = [h["rating"] for h in history if h.get("rating") is not None]
    return [
        float(np.mean([h["liked"] for h in history])) if history else prior_rate,
        float(np.mean(ratings)) if ratings else 3.0,
        stats["item_like_rate"] if stats["item_like_rate"] is not None else prior_rate,
        float(np.log1p(stats["item_num_ratings"])),
        stats["user_like_rate"] if stats["user_like_rate"] is not None else prior_rate,
    ]


def feature_matrix(examples: list[dict]) -> np.ndarray:
    return np.array([features(ex) for ex in examples], dtype=np.float64)


def logistic_scores(train: list[dict], test: list[dict]) -> np.ndarray:
    """Log-odds of a standardized logistic regression fitted on `train`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = [ex["label"] for ex in train]
    if len(set(labels)) < 2:
        raise DataError(f"the {len(train)} training examples all have label {labels[0]}; draw more shots")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(feature_matrix(train), labels)
    return model.decision_function(feature_matrix(test))


def run_baselines(
    train_pool: list[dict], test: list[dict], shots: int, seeds: list[int], out_dir: Path, balanced: bool = False
) -> dict[str, list[dict]]:
    """Every heuristic once, logistic regression per seed on K shots and once on the full pool."""
    from promptrec.training import sample_shots

    matrix = feature_matrix(test)
    results: dict[str, list[dict]] = {}
    # (name, seed, training examples used, scores); heuristics train on nothing.
    runs = [(name, None, 0, matrix[:, FEATURES.index(name)]) for name in HEURISTICS]
    runs += [
        (f"logreg_{shots}shot", seed, shots, logistic_scores(sample_shots(train_pool, shots, seed, balanced), test))
        for seed in seeds
    ]
    runs.append(("logreg_full", None, len(train_pool), logistic_scores(train_pool, test)))
    for name, seed, trained_on, scores in runs:
        metrics = pointwise_metrics([ex["label"] for ex in test], scores, [ex.get("user_id") for ex in test])
        if name in HEURISTICS:  # rates, not log-odds: probability metrics would be meaningless
            metrics["logloss"] = metrics["accuracy"] = float("nan")
        run_dir = out_dir / (name if seed is None else f"{name}-seed{seed}")
        write_outputs(
            run_dir,
            test,
            scores,
            metrics,
            {
                "kind": "baseline",
                "baseline": name,
                "seed": seed,
                "shots": trained_on,
                "features": list(FEATURES),
                **provenance(),
            },
        )
        results.setdefault(name, []).append(metrics)
    return results
