"""The TALLRec pointwise protocol: a history window before each target, split 80/10/10 by position.

`build_tallrec_examples` reproduces TALLRec's preprocess_movie.py. The example builders here
(`example_record`, `item_record`, `PriorStats`) are shared by the next-item and search protocols.
Prompt text is not built here; templates render the example dicts.
"""

from __future__ import annotations

import bisect
import itertools

from promptrec import __version__
from promptrec.core.errors import ConfigError, DataError
from promptrec.core.files import file_sha256
from promptrec.data.dataset import Dataset, Interaction
from promptrec.protocols.co_ratings import SECTION as SIMILARITY_SECTION
from promptrec.protocols.co_ratings import CoRatings

# Keys a history entry adds beside an item's attributes; a same-named attribute would be lost.
HISTORY_KEYS = ("item_id", "title", "rating", "liked", "timestamp")


def build_tallrec_examples(
    dataset: Dataset,
    history_len: int = 10,
    like_threshold: float = 3.0,
    max_examples: int = 10000,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    history_pool: int = 0,
) -> dict[str, list[dict]]:
    """Split `dataset` into train/valid/test pointwise examples exactly as TALLRec does.

    Users are taken in order of first appearance; each user's interactions are stably sorted by
    timestamp; every interaction after the first `history_len` becomes a target with the
    `history_len` before it as history. The last `max_examples` are kept and cut by position.
    With `history_pool` > `history_len`, the history is instead the `history_len` of the user's last
    `history_pool` most similar to the target (`select_history`); the examples are the same ones.
    """
    check_history_len(history_len)
    check_history_pool(history_pool, history_len)
    if not isinstance(max_examples, int) or max_examples < 1:
        raise ConfigError(f"max_examples must be a positive integer, got {max_examples!r}; TALLRec uses 10000")
    check_fractions(fractions)
    check_attribute_names(dataset)
    windows = _history_windows(dataset.interactions, history_len, history_pool)[-max_examples:]
    bounds = split_bounds(len(windows), fractions)
    check_not_empty(dataset, history_len, len(windows), bounds)
    prior = PriorStats(dataset.interactions, like_threshold)
    return {
        split: [
            example_record(
                dataset,
                f"{split}-{index:05d}",
                select_history(prior, pool, target, history_len),
                target,
                like_threshold,
                prior,
            )
            for index, (pool, target) in enumerate(windows[start:end])
        ]
        for split, (start, end) in bounds.items()
    }


def split_bounds(count: int, fractions) -> dict[str, tuple[int, int]]:
    """(start, end) positions of train/valid/test when `count` things are cut by `fractions`."""
    train_end = int(count * fractions[0])
    # round(): 0.8 + 0.1 is 0.9000000000000001 in floats; TALLRec writes 0.9
    valid_end = int(count * round(fractions[0] + fractions[1], 12))
    return {"train": (0, train_end), "valid": (train_end, valid_end), "test": (valid_end, count)}


def check_history_len(history_len: int) -> None:
    if not isinstance(history_len, int) or history_len < 1:
        raise ConfigError(f"history_len must be a positive integer, got {history_len!r}; TALLRec uses 10")


def check_history_pool(history_pool, history_len: int) -> None:
    if not isinstance(history_pool, int) or isinstance(history_pool, bool) or history_pool < 0:
        raise ConfigError(f"history_pool must be a non-negative integer, got {history_pool!r}; 0 keeps the last items")
    if 0 < history_pool <= history_len:
        raise ConfigError(
            f"history_pool {history_pool} must exceed history_len {history_len} (it is the pool the history "
            "is chosen from); raise it, or 0 for the last items"
        )


def select_history(prior: PriorStats, pool: list[Interaction], target: Interaction, size: int) -> list[Interaction]:
    """The `size` of `pool` most similar to the target (item-kNN, ratings before its time), in time order.

    A pool of `size` or fewer (every pool when no `history_pool` is set) is the history as it is.
    """
    keep = prior.co_ratings.most_similar(target.item_id, [x.item_id for x in pool], size, target.timestamp)
    return [pool[i] for i in keep]


def check_fractions(fractions) -> None:
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ConfigError(
            f"fractions must be three non-negative numbers summing to 1 (train, valid, test), "
            f"got {tuple(fractions)!r}; TALLRec uses (0.8, 0.1, 0.1)"
        )


def check_not_empty(dataset: Dataset, history_len: int, num_windows: int, bounds: dict) -> None:
    """Refuse splits with no example before anything is written (an empty split fails every later step)."""
    empty = [split for split, (start, end) in bounds.items() if end <= start]
    if not empty:
        return
    counts: dict[str, int] = {}
    for interaction in dataset.interactions:
        counts[interaction.user_id] = counts.get(interaction.user_id, 0) + 1
    longest = max(counts.values(), default=0)
    if num_windows == 0:
        raise DataError(
            f"dataset {dataset.name!r}: no user has more than {history_len} ratings (the most any user has is "
            f"{longest}), so no example could be built; lower --history-len below {max(longest, 1)} or add data"
        )
    raise DataError(
        f"dataset {dataset.name!r}: only {num_windows} examples could be built, so the {' and '.join(empty)} "
        f"split would be empty; lower --history-len (each user's first {history_len} ratings are history only) "
        "or add data"
    )


def source_record(dataset: Dataset) -> dict:
    """The manifest's record of where the data came from, and what loading repaired (if anything)."""
    record = {
        "dataset": dataset.name,
        # file names only: absolute paths would make identical data give different manifests
        "sources": {path.name: file_sha256(path) for path in dataset.source_paths},
    }
    return record | ({"load_warnings": list(dataset.warnings)} if dataset.warnings else {})


def check_attribute_names(dataset: Dataset) -> None:
    for item in dataset.items.values():
        clash = sorted(set(item.attributes) & set(HISTORY_KEYS))
        if clash:
            raise DataError(
                f"item {item.item_id!r}: attribute {clash[0]!r} clashes with a history field "
                f"({', '.join(HISTORY_KEYS)}); rename that column in the item table"
            )


def _history_windows(interactions: list[Interaction], history_len: int, history_pool: int = 0):
    """(history, target) pairs, users in first-appearance order, each user's in time order.

    The history is the `history_len` before the target, or with a `history_pool` the up to
    `history_pool` before it (the targets are the same either way: a full `history_len` first).
    """
    by_user: dict[str, list[Interaction]] = {}  # dicts keep insertion = first-appearance order
    for interaction in interactions:
        by_user.setdefault(interaction.user_id, []).append(interaction)
    windows = []
    for user_interactions in by_user.values():
        ordered = sorted(user_interactions, key=lambda x: x.timestamp)  # stable: ties keep file order
        for i in range(history_len, len(ordered)):
            windows.append((ordered[max(0, i - max(history_len, history_pool)) : i], ordered[i]))
    return windows


def is_liked(interaction: Interaction, like_threshold: float) -> bool:
    if interaction.rating is not None:
        return interaction.rating > like_threshold
    return interaction.label == 1


class PriorStats:
    """Leak-free popularity facts: counts and like-rates from interactions strictly before a time.

    Templates may state them plainly ("viewers liked this movie 72% of the time"); only ratings
    with an earlier timestamp count, so no example sees its own label or the future. The same rule
    gives the item-kNN similarity of a target to the history (`co_ratings`).
    """

    def __init__(self, interactions: list[Interaction], like_threshold: float):
        ratings = ((x.user_id, x.item_id, x.timestamp, is_liked(x, like_threshold)) for x in interactions)
        self.co_ratings = CoRatings(ratings)
        self._by_key: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
        grouped: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for x in interactions:
            liked = int(is_liked(x, like_threshold))
            grouped.setdefault(("item", x.item_id), []).append((x.timestamp, liked))
            grouped.setdefault(("user", x.user_id), []).append((x.timestamp, liked))
        for key, events in grouped.items():
            events.sort()
            times = [t for t, _ in events]
            cumulative = list(itertools.accumulate((liked for _, liked in events), initial=0))
            self._by_key[key] = (times, cumulative)

    def before(self, kind: str, key: str, timestamp: int) -> dict:
        times, cumulative = self._by_key.get((kind, key), ([], [0]))
        count = bisect.bisect_left(times, timestamp)
        rate = round(cumulative[count] / count, 4) if count else None
        return {f"{kind}_num_ratings": count, f"{kind}_like_rate": rate}

    def history_similarity(self, item_id: str, history: list[dict], timestamp: int) -> dict:
        """The example's `knn` section: mean item-kNN cosine of the target to its liked / disliked history."""
        pairs = [(str(h["item_id"]), bool(h.get("liked"))) for h in history if isinstance(h, dict) and "item_id" in h]
        return self.co_ratings.history_similarity(item_id, pairs, timestamp)


def example_record(dataset: Dataset, example_id: str, history, target, like_threshold, prior: PriorStats) -> dict:
    user = dataset.users.get(target.user_id)
    if user is None:
        raise DataError(f"user {target.user_id!r} has interactions but no user record; add it to the user table")
    shown = [
        {
            **item_record(dataset, past.item_id),
            "rating": past.rating,
            "liked": is_liked(past, like_threshold),
            "timestamp": past.timestamp,
        }
        for past in history
    ]
    return {
        "example_id": example_id,
        "user_id": target.user_id,
        "item_id": target.item_id,
        "label": int(is_liked(target, like_threshold)),
        "rating": target.rating,
        "timestamp": target.timestamp,
        "user": {"user_id": user.user_id, **user.attributes},
        "item": item_record(dataset, target.item_id),
        "stats": prior.before("item", target.item_id, target.timestamp)
        | prior.before("user", target.user_id, target.timestamp),
        "history": shown,
        SIMILARITY_SECTION: prior.history_similarity(target.item_id, shown, target.timestamp),
    }


def item_record(dataset: Dataset, item_id: str) -> dict:
    item = dataset.items[item_id]
    return {"item_id": item.item_id, "title": item.title, **item.attributes}


def tallrec_protocol(dataset: Dataset, history_len, like_threshold, max_examples, fractions, history_pool=0) -> dict:
    """The manifest's protocol record: everything needed to rebuild the splits."""
    parameters = {
        "history_len": history_len,
        "like_threshold": like_threshold,
        "max_examples": max_examples,
        "fractions": list(fractions),
    }
    return protocol_record("tallrec", dataset, parameters | pool_parameter(history_pool))


def pool_parameter(history_pool: int) -> dict:
    """The manifest's record of a relevance-chosen history; none for the last items (manifests unchanged)."""
    return {"history_pool": history_pool, "history_by": "item-knn similarity to the target"} if history_pool else {}


def protocol_record(name: str, dataset: Dataset, parameters: dict) -> dict:
    """A protocol's manifest record: its name and parameters, the dataset and its source checksums."""
    return {
        "name": name,
        "parameters": parameters,
        **source_record(dataset),
        "promptrec_version": __version__,
    }
