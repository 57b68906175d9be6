"""Named numeric features of an example: the leak-free facts it already carries.

One registry serves the logistic-regression baselines and the wide part of the hybrid scorer, so
"logreg on the same shots" and "hybrid" read the very same numbers. Each feature is computed from the
example alone: its shown history (liked flags, ratings) and its `stats` (counts and like-rates from
interactions strictly before the example's time), its `knn` (item-kNN cosines of the target to the
history, by the same rule), and `kg_similarity` where KG embeddings annotated it (from the shown
history too). A feature the example cannot give is None; callers
decide how to fill it (the wide part fills with the shots' mean).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from promptrec.core.errors import ConfigError
from promptrec.protocols.co_ratings import SECTION as SIMILARITY_SECTION


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _number(section: str, name: str) -> Callable[[dict], float | None]:
    """Reads example[section][name] when it is a finite number."""

    def read(example: dict) -> float | None:
        value = (example.get(section) or {}).get(name)
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    return read


def _stat(name: str) -> Callable[[dict], float | None]:
    return _number("stats", name)


def _log_count(name: str) -> Callable[[dict], float | None]:
    read = _stat(name)

    def log_count(example: dict) -> float | None:
        value = read(example)
        return math.log1p(value) if value is not None and value >= 0 else None

    return log_count


def history_like_fraction(example: dict) -> float | None:
    return _mean([float(bool(h.get("liked"))) for h in example.get("history") or []])


def history_mean_rating(example: dict) -> float | None:
    return _mean(
        [float(h["rating"]) for h in example.get("history") or [] if isinstance(h.get("rating"), (int, float))]
    )


ITEM_PRIOR_RATINGS = 10  # pseudo-ratings of the shrunk like-rate's prior (chosen on valid data, below)


def shrunk_item_like_rate(prior_ratings: float) -> Callable[[dict], float | None]:
    """The target's earlier like-rate shrunk toward the user's own: (likes + m u) / (ratings + m).

    Ten earlier ratings say little about an item, so its raw like-rate is noisy exactly where it is
    extreme; here the user's like-rate over all earlier ratings u (the shown history's like-fraction
    where the user has none) counts as m pseudo-ratings. An item nobody rated gets u, so the feature
    is present wherever the user is known.
    """

    item_count, item_rate, user_rate = _stat("item_num_ratings"), _stat("item_like_rate"), _stat("user_like_rate")

    def read(example: dict) -> float | None:
        count, rate, prior = item_count(example), item_rate(example), user_rate(example)
        prior = history_like_fraction(example) if prior is None else prior
        if count is None or count < 0 or prior is None or (count > 0 and rate is None):
            return None
        return ((rate or 0.0) * count + prior_ratings * prior) / (count + prior_ratings)

    return read


def history_length(example: dict) -> float | None:
    history = example.get("history")
    return float(len(history)) if isinstance(history, list) else None


FEATURES: dict[str, Callable[[dict], float | None]] = {
    "history_like_fraction": history_like_fraction,  # liked / shown history items
    "history_mean_rating": history_mean_rating,  # mean stars of the shown history
    "item_like_rate": _stat("item_like_rate"),  # earlier raters' like-rate of the target
    # that like-rate shrunk toward the user's own by ITEM_PRIOR_RATINGS pseudo-ratings
    "item_like_rate_shrunk": shrunk_item_like_rate(ITEM_PRIOR_RATINGS),
    "log_item_ratings": _log_count("item_num_ratings"),  # log(1 + earlier ratings of the target)
    "user_like_rate": _stat("user_like_rate"),  # the user's like-rate over all earlier ratings
    "log_user_ratings": _log_count("user_num_ratings"),  # log(1 + the user's earlier ratings)
    "history_length": history_length,  # items shown (varies in imported or next-item data)
    # cosine of the target's KG embedding to the mean of the liked / disliked history items'; present
    # only on examples annotated by `knowledge.embeddings.annotate_similarities`
    "kg_liked_similarity": _number("kg_similarity", "liked"),
    "kg_disliked_similarity": _number("kg_similarity", "disliked"),
    # item-kNN: mean cosine of the target to the liked / disliked history items over ratings strictly
    # before the example's time (`protocols.co_ratings`); in every prepared example, and in rank-time
    # candidates when something reads them (`jobs.rank.needs_similarity`)
    "knn_liked_similarity": _number(SIMILARITY_SECTION, "liked"),
    "knn_disliked_similarity": _number(SIMILARITY_SECTION, "disliked"),
}


SIMILARITY_FEATURES = ("knn_liked_similarity", "knn_disliked_similarity")  # the ones reading SIMILARITY_SECTION

# The wide part's default features, chosen on validation data (`python eval/select_wide_features.py
# data/ml100k data/ml100k-global data/amazon-magazine`: the wide part alone, 64 shots, mean valid AUC
# over the seeds and the three dirs). The history's like-fraction and mean stars and the target's
# like-rate shrunk toward the user's (m = 10 of 5, 10, 15, 20, 30 pseudo-ratings; the user's own
# like-rate then adds nothing): 0.7400 against 0.7298 for the raw like-rates over 10 seeds (higher on
# each dir: 0.7248 / 0.7410 / 0.7542 vs 0.7097 / 0.7370 / 0.7428). Counts drift with time (a model
# fitted on earlier examples extrapolates on later ones) and the item-kNN similarities did not help
# there (+ both: 0.7112 vs 0.7158 on data/ml100k, 0.7332 vs 0.7368 on data/ml100k-global, 5 seeds).
DEFAULT_FEATURES = ("history_like_fraction", "history_mean_rating", "item_like_rate_shrunk")


def check_feature_names(names: Sequence[str]) -> None:
    unknown = [name for name in names if name not in FEATURES]
    if unknown:
        raise ConfigError(f"unknown feature {unknown[0]!r}; features are: {', '.join(FEATURES)}")


def feature_row(example: dict, names: Sequence[str]) -> list[float | None]:
    return [FEATURES[name](example) for name in names]


MIN_PRESENT = 0.5  # a feature is kept when at least this share of the shots gives it (chosen on valid data)


def available_features(
    examples: Sequence[dict], names: Sequence[str] | None = None, min_present: float = MIN_PRESENT
) -> list[str]:
    """The features (of `names`, default DEFAULT_FEATURES) that enough examples give and that vary.

    A feature is kept when at least `min_present` of the examples give it and its given values are not
    all equal (a constant feature, e.g. every shot shows 10 history items, carries no signal and cannot
    be scaled); the wide part fills the examples that lack it with the shots' mean. Requiring every
    example (min_present=1) dropped the target's like-rate from 2 of 3 README seeds: one shot of 64
    whose item had no earlier rating was enough (`eval/select_wide_features.py` compares the rules).
    """
    names = list(DEFAULT_FEATURES) if names is None else list(names)
    check_feature_names(names)
    kept = []
    for name in names:
        values = [value for value in (FEATURES[name](example) for example in examples) if value is not None]
        if examples and len(values) >= min_present * len(examples) and len(set(values)) > 1:
            kept.append(name)
    return kept
