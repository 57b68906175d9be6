"""Classic baselines on the same prepared split, so every LLM number has a yardstick beside it.

Three families, each at the LLM's few-shot budget (trained on the same K shots, per seed) and on the
whole train split (a ceiling), plus three heuristics that train on nothing:

- `popularity`: the target's like-rate among the pool's ratings (smoothed toward the pool's rate).
- `itemknn`: item-based collaborative filtering; cosine similarity of the target to the items of the
  example's 10-item history, over item vectors of the pool's ratings (+1 liked, -1 not).
- `logreg`: logistic regression on the example's own features (FEATURES, below).
- `logreg_onehot`: logistic regression on one-hot user / item / genre / demographic features and the
  history's liked-genre profile (a linear CTR model; scikit-learn's DictVectorizer + LogisticRegression).

Leak-free: "the pool's ratings" are the (user, item, liked, time) facts that the pool's examples show,
their history entries and their targets, and a score only looks up facts strictly before the scored
example's timestamp, so it never sees its own label or anything later. The heuristics use the
example's own history and its `stats` (computed from ratings before its timestamp). Outputs are
written in the same format as `evaluate`.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from promptrec.baselines.wide import fit_wide
from promptrec.core.errors import DataError
from promptrec.core.records import provenance
from promptrec.metrics.outputs import write_outputs
from promptrec.metrics.pointwise import pointwise_metrics
from promptrec.protocols.features import available_features
from promptrec.protocols.shots import sample_shots

FEATURES = ("history_like_fraction", "history_mean_rating", "item_like_rate", "log_item_ratings", "user_like_rate")


HEURISTICS = {
    "history_like_fraction": "fraction of the 10 shown history items the user liked",
    "item_like_rate": "how often earlier raters liked the target (popularity over the whole dataset)",
    "user_like_rate": "how often the user liked anything before",
}


LEARNED = {
    "popularity": "the target's like-rate among the pool's earlier ratings",
    "itemknn": "cosine similarity of the target to the liked/disliked history items (pool's ratings)",
    "logreg": "logistic regression on FEATURES",
    "logreg_onehot": "logistic regression on one-hot user/item/genre/demographic features",
    "wide": "the hybrid's wide part alone: L2 logistic regression on the default features the shots carry",
}


# Methods whose scores are log-odds; the others are rates or similarities, so log loss and
# accuracy (which read scores as log-odds) would be meaningless for them.
PROBABILISTIC = ("popularity", "logreg", "logreg_onehot", "wide")


POPULARITY_PSEUDO_COUNT = 2.0  # ratings' worth of the pool's like-rate mixed into each item's rate


@dataclass(frozen=True)
class BaselineSpec:
    """One baseline run: a method, its training budget and its seed."""

    method: str  # a key of HEURISTICS or LEARNED
    shots: int | None = None  # K shots; None = the whole pool; ignored by heuristics
    seed: int | None = None  # draws the K shots; None for heuristics and full-pool runs

    @property
    def name(self) -> str:
        if self.method in HEURISTICS:
            return self.method
        return f"{self.method}_full" if self.shots is None else f"{self.method}_{self.shots}shot"

    @property
    def run_name(self) -> str:
        return self.name if self.seed is None else f"{self.name}-seed{self.seed}"


def baseline_specs(shots: list[int], seeds: list[int]) -> list[BaselineSpec]:
    """Heuristics once, each learned method per (K > 0, seed), and each learned method on the full pool."""
    specs = [BaselineSpec(name) for name in HEURISTICS]
    specs += [BaselineSpec(m, k, s) for m in LEARNED for k in sorted(set(shots)) if k > 0 for s in seeds]
    return specs + [BaselineSpec(m) for m in LEARNED]


def check_example(example: dict) -> None:
    if "stats" not in example or "history" not in example:
        raise DataError(
            f"example {example.get('example_id')} lacks 'history'/'stats'; "
            "baselines need a split built by `promptrec data prepare`"
        )


def features(example: dict, prior_rate: float = 0.55) -> list[float]:
    """One row of FEATURES; a missing rate (no earlier ratings) falls back to `prior_rate`."""
    check_example(example)
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


def _check_labels(train: list[dict]) -> list[int]:
    labels = [ex["label"] for ex in train]
    if len(set(labels)) < 2:
        raise DataError(f"the {len(train)} training examples all have label {labels[0]}; draw more shots")
    return labels


def logistic_scores(train: list[dict], test: list[dict]) -> np.ndarray:
    """Log-odds of a standardized logistic regression fitted on `train`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = _check_labels(train)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(feature_matrix(train), labels)
    return model.decision_function(feature_matrix(test))


def onehot_features(example: dict) -> dict[str, float]:
    """Sparse features: ids, target genres, demographics, and how the history's genres were liked."""
    check_example(example)
    user, item, history = example.get("user", {}), example.get("item", {}), example["history"]
    row = {f"user={example.get('user_id')}": 1.0, f"item={example.get('item_id')}": 1.0}
    row.update({f"genre={g}": 1.0 for g in item.get("genres", [])})
    row.update({f"{key}={user[key]}": 1.0 for key in ("gender", "occupation") if key in user})
    if isinstance(user.get("age"), int):
        row[f"age={user['age'] // 10 * 10}s"] = 1.0
    target_genres = set(item.get("genres", []))
    for entry in history:
        side = "liked" if entry["liked"] else "disliked"
        for genre in entry.get("genres", []):
            row[f"{side}_genre={genre}"] = row.get(f"{side}_genre={genre}", 0.0) + 1.0 / len(history)
        # the one cross term that matters: did the user like history items of the target's genres?
        if target_genres & set(entry.get("genres", [])):
            row[f"{side}_same_genre"] = row.get(f"{side}_same_genre", 0.0) + 1.0 / len(history)
    return row


def onehot_logistic_scores(train: list[dict], test: list[dict]) -> np.ndarray:
    """Log-odds of a logistic regression over `onehot_features` fitted on `train`."""
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    labels = _check_labels(train)
    model = make_pipeline(DictVectorizer(), LogisticRegression(max_iter=2000))
    model.fit([onehot_features(ex) for ex in train], labels)
    return model.decision_function([onehot_features(ex) for ex in test])


def shown_facts(example: dict) -> list[tuple[str, bool, int]]:
    """(item_id, liked, timestamp) of each history entry and of the target."""
    check_example(example)
    try:
        shown = [(h["item_id"], h["liked"], h["timestamp"]) for h in example["history"]]
        return [*shown, (example["item_id"], example["label"], example["timestamp"])]
    except KeyError as error:
        raise DataError(
            f"example {example.get('example_id')} lacks {error} in its target or history; popularity and "
            "item-kNN need a split built by `promptrec data prepare`"
        ) from None


class RatingLog:
    """The (user, item, liked, time) facts a pool of examples shows: history entries and targets.

    A fact shown by many windows counts once. `before` returns an item's facts strictly before a
    time, so a score built from it never sees the scored interaction or anything after it.
    """

    def __init__(self, examples: list[dict]):
        facts: dict[tuple[str, str], tuple[int, float]] = {}
        for ex in examples:
            for item_id, liked, timestamp in shown_facts(ex):
                facts[(ex["user_id"], item_id)] = (timestamp, 1.0 if liked else -1.0)
        by_item: dict[str, list[tuple[int, str, float]]] = defaultdict(list)
        for (user_id, item_id), (timestamp, value) in facts.items():
            by_item[item_id].append((timestamp, user_id, value))
        self._items = {}
        for item_id, rows in by_item.items():
            rows.sort()
            self._items[item_id] = ([t for t, _, _ in rows], [(u, v) for _, u, v in rows])

    def before(self, item_id: str, timestamp: int) -> list[tuple[str, float]]:
        """(user_id, +1 liked / -1 not) for the item's facts strictly before `timestamp`."""
        times, rows = self._items.get(item_id, ([], []))
        return rows[: bisect.bisect_left(times, timestamp)]


def popularity_scores(train: list[dict], test: list[dict]) -> np.ndarray:
    """Log-odds of the target's smoothed like-rate among the pool's earlier ratings of it."""
    log = RatingLog(train)
    prior = float(np.mean([ex["label"] for ex in train]))  # one number: the pool's positive rate
    scores = []
    for ex in test:
        values = [value for _, value in log.before(ex["item_id"], ex["timestamp"])]
        rate = (sum(v > 0 for v in values) + POPULARITY_PSEUDO_COUNT * prior) / (len(values) + POPULARITY_PSEUDO_COUNT)
        rate = min(max(rate, 1e-6), 1 - 1e-6)
        scores.append(np.log(rate / (1 - rate)))
    return np.array(scores, dtype=np.float64)


def item_knn_scores(train: list[dict], test: list[dict]) -> np.ndarray:
    """Item-based CF: sum_i sim(target, h_i) * s_i / sum_i |sim(target, h_i)| over the 10 history items.

    s_i is +1 if the user liked history item h_i, else -1; sim is the cosine of two items' vectors
    over users (entries +1 liked / -1 not) from the pool's ratings before the example's time.
    0 when the target shares no rater with the history (nothing known).
    """
    from sklearn.metrics.pairwise import cosine_similarity

    log = RatingLog(train)
    scores = np.zeros(len(test), dtype=np.float64)
    for row, ex in enumerate(test):
        items = [ex["item_id"]] + [h["item_id"] for h in ex["history"]]
        columns = [dict(log.before(item_id, ex["timestamp"])) for item_id in items]
        users = sorted(set().union(*columns))
        if not users or not ex["history"]:
            continue
        index = {user_id: i for i, user_id in enumerate(users)}
        vectors = np.zeros((len(items), len(users)))  # (1 + history, raters)
        for j, column in enumerate(columns):
            for user_id, value in column.items():
                vectors[j, index[user_id]] = value
        sims = cosine_similarity(vectors[:1], vectors[1:])[0]  # (history,)
        signals = np.array([1.0 if h["liked"] else -1.0 for h in ex["history"]])
        weight = np.abs(sims).sum()
        scores[row] = float(sims @ signals / weight) if weight > 0 else 0.0
    return scores


def wide_scores(train: list[dict], test: list[dict]) -> np.ndarray:
    """The wide part of a hybrid adapter trained on `train`, alone: the same fit, the same features."""
    labels = _check_labels(train)
    names = available_features(train)
    if not names:
        raise DataError(f"the {len(train)} training examples carry no usable feature; the wide baseline needs one")
    return fit_wide(train, labels, names, l2=1.0).logits(test)


LEARNERS = {
    "popularity": popularity_scores,
    "itemknn": item_knn_scores,
    "logreg": logistic_scores,
    "logreg_onehot": onehot_logistic_scores,
    "wide": wide_scores,
}


def score_baseline(spec: BaselineSpec, train_pool: list[dict], test: list[dict], balanced: bool = False) -> np.ndarray:
    """Scores of `test` under `spec`: heuristics read a feature, learners fit on K shots or the pool."""

    if spec.method in HEURISTICS:
        return feature_matrix(test)[:, FEATURES.index(spec.method)]
    if spec.method not in LEARNERS:
        raise DataError(f"unknown baseline {spec.method!r}; use one of {', '.join([*HEURISTICS, *LEARNERS])}")
    train = train_pool if spec.shots is None else sample_shots(train_pool, spec.shots, spec.seed, balanced)
    return LEARNERS[spec.method](train, test)


def baseline_metrics(spec: BaselineSpec, test: list[dict], scores: np.ndarray) -> dict:
    metrics = pointwise_metrics([ex["label"] for ex in test], scores, [ex.get("user_id") for ex in test])
    if spec.method not in PROBABILISTIC:  # rates and similarities, not log-odds: no probability to judge
        for key in ("logloss", "accuracy", "brier", "ece", "mce"):
            metrics[key] = float("nan")
    return metrics


def trained_on(spec: BaselineSpec, train_pool: list[dict]) -> int:
    """How many training examples the run learned from (0 for heuristics)."""
    if spec.method in HEURISTICS:
        return 0
    return len(train_pool) if spec.shots is None else spec.shots


def write_baseline(spec: BaselineSpec, test, scores, metrics: dict, run_dir: Path, num_trained: int) -> None:
    record = {
        "kind": "baseline",
        "baseline": spec.name,
        "method": spec.method,
        "seed": spec.seed,
        "shots": num_trained,
        "features": list(FEATURES),
        **provenance(),
    }
    write_outputs(run_dir, test, scores, metrics, record)


def run_baselines(
    train_pool: list[dict], test: list[dict], shots: int, seeds: list[int], out_dir: Path, balanced: bool = False
) -> dict[str, list[dict]]:
    """Every heuristic once, every learned method per seed on K shots and once on the full pool."""
    results: dict[str, list[dict]] = {}
    for spec in baseline_specs([shots], seeds):
        scores = score_baseline(spec, train_pool, test, balanced)
        metrics = baseline_metrics(spec, test, scores)
        write_baseline(spec, test, scores, metrics, out_dir / spec.run_name, trained_on(spec, train_pool))
        results.setdefault(spec.name, []).append(metrics)
    return results
