"""The global time split: one timeline for all users, cut 80/10/10 by position.

The TALLRec protocol cuts each user's windows by position, so a training example of one user can
come after a test example of another; here every train example precedes every valid example,
which precedes every test example (the "global temporal split" of Meng et al., RecSys 2020).
Examples are built by the TALLRec protocol's `example_record` and `PriorStats`, so they have the
same shape and the same leak-free stats.
"""

from __future__ import annotations

import bisect

from promptrec.core.errors import DataError
from promptrec.data.dataset import Dataset, Interaction
from promptrec.protocols.tallrec import (
    PriorStats,
    check_attribute_names,
    check_fractions,
    check_history_len,
    check_history_pool,
    example_record,
    pool_parameter,
    protocol_record,
    select_history,
    split_bounds,
)

PROTOCOL = "global-time"


def build_global_time_examples(
    dataset: Dataset,
    history_len: int = 10,
    like_threshold: float = 3.0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    history_pool: int = 0,
) -> tuple[dict[str, list[dict]], dict]:
    """(splits, counts): every user's ratings on one timeline, cut into train/valid/test.

    All interactions are stably sorted by timestamp and cut by position (the cut is over
    interactions, so where it falls in time does not depend on `history_len`). An interaction
    becomes an example only if its user has the full `history_len` interactions strictly before
    its timestamp, as TALLRec requires a full window; its history is the last `history_len` of
    them, oldest first. Same-second interactions of one user are never each other's history, so
    no history holds anything at or after its example's time, and `stats` count only earlier
    interactions. Each split's examples are in time order. With `history_pool`, the history is the
    `history_len` most similar to the target among the user's last `history_pool` (`select_history`).
    """
    check_history_len(history_len)
    check_history_pool(history_pool, history_len)
    check_fractions(fractions)
    check_attribute_names(dataset)
    timeline = sorted(dataset.interactions, key=lambda x: x.timestamp)  # stable: ties keep file order
    earlier = _UserTimelines(timeline)
    prior = PriorStats(dataset.interactions, like_threshold)
    splits: dict[str, list[dict]] = {}
    counts: dict[str, dict] = {}
    for split, (start, end) in split_bounds(len(timeline), fractions).items():
        examples = []
        for target in timeline[start:end]:
            pool = earlier.last_before(target, max(history_len, history_pool))
            if len(pool) >= history_len:
                example_id = f"{split}-{len(examples):05d}"
                history = select_history(prior, pool, target, history_len)
                examples.append(example_record(dataset, example_id, history, target, like_threshold, prior))
        splits[split] = examples
        counts[split] = {
            "num_interactions": end - start,
            "num_without_full_history": end - start - len(examples),
            "first_timestamp": timeline[start].timestamp if end > start else None,
            "last_timestamp": timeline[end - 1].timestamp if end > start else None,
        }
    empty = [split for split, examples in splits.items() if not examples]
    if empty:  # refused before anything is written, as the other protocols do
        raise DataError(
            f"dataset {dataset.name!r}: the {' and '.join(empty)} split would hold no example (an example needs "
            f"{history_len} earlier ratings of its user); lower --history-len or add data"
        )
    return splits, counts


class _UserTimelines:
    """Each user's interactions in time order, to find the ones strictly before a given one."""

    def __init__(self, timeline: list[Interaction]):
        self._events: dict[str, list[Interaction]] = {}
        for interaction in timeline:
            self._events.setdefault(interaction.user_id, []).append(interaction)
        self._times = {user: [x.timestamp for x in events] for user, events in self._events.items()}

    def last_before(self, target: Interaction, size: int) -> list[Interaction]:
        """The user's last `size` interactions strictly before `target`'s time, oldest first."""
        count = bisect.bisect_left(self._times[target.user_id], target.timestamp)
        return self._events[target.user_id][max(0, count - size) : count]


def global_time_protocol(dataset: Dataset, history_len, like_threshold, fractions, counts, history_pool=0) -> dict:
    """The manifest's protocol record, with each split's interaction counts and time span."""
    parameters = {"history_len": history_len, "like_threshold": like_threshold, "fractions": list(fractions)}
    parameters |= pool_parameter(history_pool)
    return protocol_record(PROTOCOL, dataset, parameters) | {"counts": counts}
