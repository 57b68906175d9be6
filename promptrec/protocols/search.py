"""Personalised product search (Ai et al. 2017): queries from category paths, candidate sets, splits.

There is no query log in the Amazon data, so, as in Ai et al.'s HEM evaluation, the query for a
purchase is built from the purchased item's category path: the levels below the store section
(the root, shared by every item), split into lowercase words, duplicates removed ("Magazine
Subscriptions > Cooking, Food & Wine > Recipes & Techniques" -> "cooking food wine recipes
techniques"). Items with no category below the root use their brand; items with neither give no
query, and their purchases are left out (counted in `search_summary`).

Leave-one-out by time: each user's last purchase is the test target, the one before it the valid
target. A candidate set is the target plus items drawn uniformly from those the user never
interacted with, shuffled; every draw uses a per-(seed, split, user) generator, so a set does not
change when other users are added. `prepare_search` writes pointwise splits for `evaluate` and
`train`: valid/test are candidate sets expanded into one example per candidate (label 1 for the
purchase), train is each earlier purchase plus `negatives` sampled items, all with the query.
`query_overlap` is the lexical baseline every search ranker should be read against (the search
retriever's own order). Scoring and ranking metrics live elsewhere (`ranking`).
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from promptrec import __version__
from promptrec.core.errors import ConfigError, DataError
from promptrec.data.dataset import Dataset, Interaction
from promptrec.protocols.next_item import Catalog
from promptrec.protocols.splits import write_prepared
from promptrec.protocols.tallrec import PriorStats, check_attribute_names, example_record, source_record

PROTOCOL = "search"


SPLIT_POSITIONS = {"test": -1, "valid": -2}  # leave-one-out: last purchase tests, the one before validates


# Long fields that search templates never show for past purchases; every candidate example repeats
# the same history, so keeping them would make the splits about four times larger.
HISTORY_DROPPED = ("description", "also_buy", "also_view")


_WORD = re.compile(r"[0-9a-z]+(?:['-][0-9a-z]+)*")


def search_query(item: dict) -> tuple[str, str]:
    """(query, source) for an item record: source is "category", "brand" or "none" (query "")."""
    raw = item.get("categories") or []
    categories = [raw] if isinstance(raw, str) else [c for c in raw if isinstance(c, str)]
    below_root = [c for c in categories if c != categories[0]] if categories else []
    words = dict.fromkeys(w for level in below_root for w in _WORD.findall(level.lower()))
    if words:
        return " ".join(words), "category"
    brand = " ".join(str(item.get("brand") or "").lower().split())
    return (brand, "brand") if brand else ("", "none")


def query_overlap(query: str, item: dict) -> float:
    """The lexical baseline: Jaccard overlap of the query's words with the item's own query words
    (its category path below the root, else its brand). The purchase's own words are the query,
    so this is 1.0 for it and for every candidate from the same leaf category."""
    words, own = set(query.split()), set(search_query(item)[0].split())
    return len(words & own) / len(words | own) if words | own else 0.0


@dataclass(frozen=True)
class _View:
    """What candidate building needs, whatever the source."""

    targets: list[tuple[str, str]]  # (user_id, purchased item id), users in source order
    items: dict[str, dict]  # item id -> record with categories / brand (for the query)
    interacted: dict[str, set[str]]  # user id -> every item id the user ever touched


def build_search_candidates(source, num_candidates: int = 20, seed: int = 0, split: str = "test") -> list[dict]:
    """Candidate-file rows {user_id, query, query_source, target, candidates} for `split`'s purchases.

    `source` is a `Dataset` (all interactions known), a next-item `Catalog` (its items and
    interactions, the split's targets), or a prepared split (a list of examples: the catalogue and
    each user's interactions are then only what the examples show, histories included).
    """
    if num_candidates < 2:
        raise ConfigError(f"num_candidates must be >= 2 (the purchase and at least one other), got {num_candidates}")
    view = _view(source, split)
    catalogue = sorted(view.items)
    rows = []
    for user_id, target in view.targets:
        query, origin = search_query(view.items[target])
        if not query:
            continue
        rng = random.Random(f"{seed}:{split}:{user_id}")
        candidates = [target, *_negatives(catalogue, view.interacted[user_id], num_candidates - 1, rng, user_id)]
        rng.shuffle(candidates)
        rows.append(
            {"user_id": user_id, "query": query, "query_source": origin, "target": target, "candidates": candidates}
        )
    return rows


def search_summary(source, rows: list[dict], split: str = "test") -> dict:
    """Counts for a protocol record: users, rows, users left out for lack of a query, query sources."""
    num_users = len(_view(source, split).targets)
    return {
        "num_users": num_users,
        "num_rows": len(rows),
        "num_users_without_query": num_users - len(rows),
        "query_sources": dict(sorted(Counter(row["query_source"] for row in rows).items())),
    }


def _negatives(catalogue: list[str], interacted: set[str], count: int, rng: random.Random, user_id: str) -> list[str]:
    """`count` distinct items drawn uniformly from those the user never interacted with."""
    available = len(catalogue) - len(interacted & set(catalogue))
    if available < count:
        raise DataError(
            f"user {user_id!r} interacted with {len(catalogue) - available} of {len(catalogue)} items, leaving "
            f"{available} to draw {count} negatives from; lower num_candidates"
        )
    drawn: dict[str, None] = {}
    while len(drawn) < count:  # rejection sampling: uniform over the allowed items, fast when users own few
        item_id = catalogue[rng.randrange(len(catalogue))]
        if item_id not in interacted:
            drawn[item_id] = None
    return list(drawn)


def _view(source, split: str) -> _View:
    if split not in SPLIT_POSITIONS:
        raise ConfigError(f"split must be one of {', '.join(SPLIT_POSITIONS)}, got {split!r}")
    if isinstance(source, Dataset):
        return _dataset_view(source, SPLIT_POSITIONS[split])
    if isinstance(source, list):
        return _split_view(source)

    if isinstance(source, Catalog):
        return _catalog_view(source, split)
    raise ConfigError(f"cannot build search candidates from a {type(source).__name__}; pass a Dataset or Catalog")


def _sequences(interactions: list[Interaction]) -> dict[str, list[Interaction]]:
    """Users in first-appearance order, each with a time-sorted (stable on ties) interaction list."""
    by_user: dict[str, list[Interaction]] = {}
    for x in interactions:
        by_user.setdefault(x.user_id, []).append(x)
    return {user: sorted(seq, key=lambda x: x.timestamp) for user, seq in by_user.items()}


def _dataset_view(dataset: Dataset, position: int) -> _View:
    sequences = _sequences(dataset.interactions)
    targets = [(user, seq[position].item_id) for user, seq in sequences.items() if len(seq) >= -position]
    items = {item_id: {"item_id": item_id, **item.attributes} for item_id, item in dataset.items.items()}
    return _View(targets, items, {user: {x.item_id for x in seq} for user, seq in sequences.items()})


def _catalog_view(catalog, split: str) -> _View:
    interacted: dict[str, set[str]] = {}
    for x in catalog.interactions:
        interacted.setdefault(x["user_id"], set()).add(x["item_id"])
    targets = [(user, example["item_id"]) for user, example in catalog.contexts(split).items()]
    return _View(targets, catalog.items, interacted)


def _split_view(examples: list[dict]) -> _View:
    last: dict[str, dict] = {}
    items: dict[str, dict] = {}
    interacted: dict[str, set[str]] = {}
    for example in examples:
        user = example["user_id"]
        if example.get("label", 1) == 1 and example["timestamp"] >= last.get(user, example)["timestamp"]:
            last[user] = example  # the user's latest purchase in the split (ties: the later example)
        for record in [example["item"], *example.get("history", [])]:
            items.setdefault(record["item_id"], record)
            interacted.setdefault(user, set()).add(record["item_id"])
    return _View([(user, ex["item_id"]) for user, ex in last.items()], items, interacted)


def build_search_examples(
    dataset: Dataset, history_len: int = 10, num_candidates: int = 20, negatives: int = 1, seed: int = 0
) -> tuple[dict[str, list[dict]], dict]:
    """(splits, counts): valid/test candidate sets as pointwise examples, train purchases + negatives."""
    if history_len < 1 or negatives < 1:
        raise ConfigError(f"history_len and negatives must be >= 1, got {history_len} and {negatives}")
    check_attribute_names(dataset)
    sequences = _sequences(dataset.interactions)
    context = _Context(dataset, sequences, history_len)
    splits = {"train": _train_examples(context, negatives, seed)}
    counts = {"train_purchases_without_query": context.skipped}
    for split in ("valid", "test"):
        rows = build_search_candidates(dataset, num_candidates, seed, split)
        if not rows:
            raise DataError(
                f"dataset {dataset.name!r}: no {split} purchase has a query; the search protocol needs items "
                "with a 'categories' list or a 'brand' (Amazon metadata); use another --protocol"
            )
        splits[split] = [ex for row in rows for ex in context.candidate_examples(split, row)]
        counts[split] = search_summary(dataset, rows, split)
    if not splits["train"]:
        raise DataError(
            f"dataset {dataset.name!r}: no user has a purchase with a query before their last two (valid, test), "
            "so the train split would be empty; add data, or items with a 'categories' list or a 'brand'"
        )
    return splits, counts


class _Context:
    """Builds one example: the user's `history_len` purchases before the target, the query, stats."""

    def __init__(self, dataset: Dataset, sequences: dict[str, list[Interaction]], history_len: int):
        self.dataset, self.sequences, self.history_len = dataset, sequences, history_len
        self.prior = PriorStats(dataset.interactions, like_threshold=3.0)
        self.items = {item_id: {"item_id": item_id, **item.attributes} for item_id, item in dataset.items.items()}
        self.skipped = 0

    def example(self, split: str, user_id: str, position: int, item_id: str, query: str) -> dict:
        seq = self.sequences[user_id]
        target = seq[position]
        history = seq[max(0, position - self.history_len) : position]
        label = int(item_id == target.item_id)
        shown = target if label else Interaction(user_id, item_id, None, None, target.timestamp)
        example_id = f"{split}-{user_id}-{target.item_id}-{item_id}"
        example = example_record(self.dataset, example_id, history, shown, 3.0, self.prior)
        past = [{k: v for k, v in record.items() if k not in HISTORY_DROPPED} for record in example["history"]]
        return example | {"label": label, "query": query, "history": past}

    def candidate_examples(self, split: str, row: dict) -> list[dict]:
        position = len(self.sequences[row["user_id"]]) + SPLIT_POSITIONS[split]
        return [self.example(split, row["user_id"], position, item, row["query"]) for item in row["candidates"]]


def _train_examples(context: _Context, negatives: int, seed: int) -> list[dict]:
    """Every purchase before the valid one, each followed by `negatives` never-touched items."""
    catalogue = sorted(context.dataset.items)
    examples = []
    for user_id, seq in context.sequences.items():
        interacted = {x.item_id for x in seq}
        for position in range(len(seq) - 2):
            query, _ = search_query(context.items[seq[position].item_id])
            if not query:
                context.skipped += 1
                continue
            rng = random.Random(f"{seed}:train:{user_id}:{position}")
            for item_id in [seq[position].item_id, *_negatives(catalogue, interacted, negatives, rng, user_id)]:
                examples.append(context.example("train", user_id, position, item_id, query))
    return examples


def prepare_search(
    dataset: Dataset, out_dir, history_len: int = 10, num_candidates: int = 20, negatives: int = 1, seed: int = 0
) -> dict:
    """Write the search protocol's train/valid/test splits and manifest into `out_dir`; return the manifest."""
    splits, counts = build_search_examples(dataset, history_len, num_candidates, negatives, seed)
    protocol = {
        "name": PROTOCOL,
        "parameters": {
            "history_len": history_len,
            "num_candidates": num_candidates,
            "negatives": negatives,
            "seed": seed,
            "query": "category path below the root, lowercase words, duplicates removed; else brand",
        },
        "counts": counts,
        **source_record(dataset),
        "promptrec_version": __version__,
    }
    manifest_path = write_prepared(splits, Path(out_dir), protocol)
    return json.loads(manifest_path.read_text(encoding="utf-8"))
