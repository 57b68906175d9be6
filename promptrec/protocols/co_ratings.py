"""Item-kNN similarity of a candidate to the user's history, from ratings strictly before a time.

The classic collaborative-filtering signal as two numbers an example can carry: the mean cosine of
the candidate to the liked history items and to the disliked ones. An item is a vector over users
(+1 liked, -1 not), built only from ratings with a timestamp strictly before the example's, so an
example never sees its own rating or anything later (the rule `PriorStats` follows). The hybrid's
wide part reads them as the features `knn_liked_similarity` / `knn_disliked_similarity`.

With +-1 entries an item's squared norm is its number of ratings, so a cosine is the co-rating dot
product over sqrt(n_a * n_b): one pass over the smaller item's earlier raters.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

SECTION = "knn"  # example[SECTION] = {"liked": mean cosine or None, "disliked": ...}


class CoRatings:
    """Per item: its raters' (time, +-1) and its rating times, to answer cosines before a time."""

    def __init__(self, ratings: Iterable[tuple[str, str, int, bool]]):
        """`ratings`: (user_id, item_id, timestamp, liked); a repeated (user, item) keeps the latest."""
        raters: dict[str, dict[str, tuple[int, float]]] = {}
        for user_id, item_id, timestamp, liked in ratings:
            known = raters.setdefault(item_id, {}).get(user_id)
            if known is None or timestamp >= known[0]:
                raters[item_id][user_id] = (timestamp, 1.0 if liked else -1.0)
        self._raters = raters
        self._times = {item_id: sorted(t for t, _ in rows.values()) for item_id, rows in raters.items()}

    def count_before(self, item_id: str, timestamp: int) -> int:
        return bisect.bisect_left(self._times.get(item_id, ()), timestamp)

    def cosine(self, a: str, b: str, timestamp: int) -> float | None:
        """Cosine of items a and b over ratings strictly before `timestamp`; None when either has none."""
        n_a, n_b = self.count_before(a, timestamp), self.count_before(b, timestamp)
        if not n_a or not n_b:
            return None
        small, large = (self._raters[a], self._raters[b]) if n_a <= n_b else (self._raters[b], self._raters[a])
        dot = 0.0
        for user_id, (t_small, v_small) in small.items():
            if t_small < timestamp and (other := large.get(user_id)) is not None and other[0] < timestamp:
                dot += v_small * other[1]
        return dot / math.sqrt(n_a * n_b)

    def history_similarity(self, item_id: str, history: Iterable[tuple[str, bool]], timestamp: int) -> dict:
        """{"liked": mean cosine to the liked history items, "disliked": ...}; None where none is known."""
        cosines: dict[bool, list[float]] = {True: [], False: []}
        for history_id, liked in history:
            if history_id != item_id and (value := self.cosine(item_id, history_id, timestamp)) is not None:
                cosines[bool(liked)].append(value)
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
        keyed = []
        for position, other in enumerate(pool):
            value = self.cosine(item_id, other, timestamp) if other != item_id else None
            keyed.append((value is not None, value if value is not None else 0.0, position))
        return sorted(position for *_, position in sorted(keyed, reverse=True)[:size])
