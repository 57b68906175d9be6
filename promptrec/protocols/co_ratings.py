"""Item-kNN similarity of a candidate to the user's history, from ratings strictly before a time.

The classic collaborative-filtering signal as two numbers an example can carry: the mean cosine of
the candidate to the liked history items and to the disliked ones. An item is a vector over users
(+1 liked, -1 not), built only from ratings with a timestamp strictly before the example's, so an
example never sees its own rating or anything later (the rule `PriorStats` follows). The hybrid's
wide part reads them as the features `knn_liked_similarity` / `knn_disliked_similarity`.

With +-1 entries an item's squared norm is its number of ratings, so a cosine is the co-rating dot
product over sqrt(n_a * n_b). Per example the target's earlier raters are sorted once and all the
history items' earlier raters are matched against them in one vectorised binary search.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

import numpy as np

SECTION = "knn"  # example[SECTION] = {"liked": mean cosine or None, "disliked": ...}


class CoRatings:
    """Per item: its ratings in time order (times; rater indices and +-1 as arrays), for cosines before a time."""

    def __init__(self, ratings: Iterable[tuple[str, str, int, bool]]):
        """`ratings`: (user_id, item_id, timestamp, liked); a repeated (user, item) keeps the latest."""
        latest: dict[str, dict[str, tuple[int, float]]] = {}
        for user_id, item_id, timestamp, liked in ratings:
            known = latest.setdefault(item_id, {}).get(user_id)
            if known is None or timestamp >= known[0]:
                latest[item_id][user_id] = (timestamp, 1.0 if liked else -1.0)
        users: dict[str, int] = {}
        self._times: dict[str, list[int]] = {}
        self._items: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # (rater indices, +-1), in time order
        for item_id, raters in latest.items():
            rows = sorted((t, users.setdefault(user_id, len(users)), value) for user_id, (t, value) in raters.items())
            self._times[item_id] = [t for t, _, _ in rows]  # bisect on a list: faster than numpy for one value
            self._items[item_id] = (
                np.array([u for _, u, _ in rows], dtype=np.int64),
                np.array([v for _, _, v in rows], dtype=np.float64),
            )

    def count_before(self, item_id: str, timestamp: int) -> int:
        return bisect.bisect_left(self._times.get(item_id, ()), timestamp)

    def cosines(self, item_id: str, others: list[str], timestamp: int) -> list[float | None]:
        """Cosine of `item_id` to each of `others` over ratings strictly before `timestamp` (None: unknown).

        One vectorised pass: the target's earlier raters sorted once, every other item's earlier raters
        looked up in them with one binary search, the products summed per item.
        """
        n_target = self.count_before(item_id, timestamp)
        counts = [self.count_before(other, timestamp) for other in others]
        if not n_target or not any(counts):
            return [None] * len(others)
        raters, values = self._items[item_id]
        order = np.argsort(raters[:n_target], kind="stable")
        target_raters, target_values = raters[:n_target][order], values[:n_target][order]
        known = [i for i, count in enumerate(counts) if count]
        their_raters = np.concatenate([self._items[others[i]][0][: counts[i]] for i in known])
        their_values = np.concatenate([self._items[others[i]][1][: counts[i]] for i in known])
        segment = np.repeat(np.arange(len(known)), [counts[i] for i in known])
        at = np.minimum(np.searchsorted(target_raters, their_raters), n_target - 1)
        shared = target_raters[at] == their_raters
        dots = np.bincount(segment, weights=target_values[at] * their_values * shared, minlength=len(known))
        result: list[float | None] = [None] * len(others)
        for slot, i in enumerate(known):
            result[i] = float(dots[slot]) / math.sqrt(n_target * counts[i])
        return result

    def cosine(self, a: str, b: str, timestamp: int) -> float | None:
        """Cosine of items a and b over ratings strictly before `timestamp`; None when either has none."""
        return self.cosines(a, [b], timestamp)[0]

    def history_similarity(self, item_id: str, history: Iterable[tuple[str, bool]], timestamp: int) -> dict:
        """{"liked": mean cosine to the liked history items, "disliked": ...}; None where none is known."""
        history = [(history_id, bool(liked)) for history_id, liked in history if history_id != item_id]
        values = self.cosines(item_id, [history_id for history_id, _ in history], timestamp)
        cosines: dict[bool, list[float]] = {True: [], False: []}
        for (_, liked), value in zip(history, values):
            if value is not None:
                cosines[liked].append(value)
        return {
            "liked": round(sum(cosines[True]) / len(cosines[True]), 6) if cosines[True] else None,
            "disliked": round(sum(cosines[False]) / len(cosines[False]), 6) if cosines[False] else None,
        }

    def most_similar(self, item_id: str, pool: list[str], size: int, timestamp: int) -> list[int]:
        """Positions in `pool` of the `size` items most similar to `item_id` (before `timestamp`), in pool order.

        ReLLa's "semantic user behaviour retrieval" with collaborative similarity: a history chosen for
        its relevance to the candidate instead of its recency. An unknown cosine ranks below every
        known one; ties go to the later (more recent) position.
        """
        if len(pool) <= size:
            return list(range(len(pool)))
        values = self.cosines(item_id, pool, timestamp)
        keyed = []
        for position, (other, value) in enumerate(zip(pool, values)):
            value = value if other != item_id else None
            keyed.append((value is not None, value if value is not None else 0.0, position))
        return sorted(position for *_, position in sorted(keyed, reverse=True)[:size])
