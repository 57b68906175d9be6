"""The leave-one-out next-item protocol (LlamaRec, P5, SASRec): what a ranking job ranks against.

Each user's interactions are sorted by time: the last one is the test target, the one before it
the valid target, the rest are training history. A prepared next-item directory holds
- `valid.jsonl` / `test.jsonl`: one positive example per user (its target, the `history_len`
  items before it, the user's profile, leak-free stats), which is the context a ranking job pairs
  with every candidate;
- `train.jsonl`: pointwise few-shot examples: each user's third-to-last item (label 1) and
  `negatives` items the user never touched, drawn by popularity with a recorded seed (label 0),
  all with the history before that item, so `promptrec train` can tune a next-item template;
- `items.jsonl` (the catalogue) and `interactions.jsonl` (every interaction, tagged with the split
  whose target it is), which retrievers fit on and `rank` builds candidate examples from.
Candidate generation lives in `candidates`, scoring in `ranking`.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from promptrec import __version__
from promptrec.core.errors import ConfigError, DataError
from promptrec.core.files import read_jsonl, read_text
from promptrec.data.dataset import Dataset, Interaction
from promptrec.knowledge.embeddings import EmbeddingConfig, GraphEmbedder, cached_embeddings
from promptrec.knowledge.graph import attach_knowledge, load_budget, load_graph, select_facts
from promptrec.protocols.examples import ExamplesByUser
from promptrec.protocols.splits import MANIFEST_NAME, load_split, write_prepared
from promptrec.protocols.tallrec import PriorStats, check_attribute_names, example_record, item_record, source_record

PROTOCOL = "next-item"


ITEMS_FILE = "items.jsonl"


INTERACTIONS_FILE = "interactions.jsonl"


# Keys of a split example that describe its target item; a candidate example replaces them.
ITEM_KEYS = ("item_id", "item", "label", "rating", "example_id", "kg", "knn")


def _user_sequences(interactions: list[Interaction]) -> dict[str, list[Interaction]]:
    """Users in order of first appearance, each with a time-sorted (stable) interaction list."""
    sequences: dict[str, list[Interaction]] = {}
    for interaction in interactions:
        sequences.setdefault(interaction.user_id, []).append(interaction)
    return {user: sorted(seq, key=lambda x: x.timestamp) for user, seq in sequences.items()}


def build_next_item(
    dataset: Dataset, history_len: int = 10, like_threshold: float = 3.0, negatives: int = 1, seed: int = 0
) -> tuple[dict[str, list[dict]], list[dict], dict]:
    """(splits, tagged interactions, counts) of the leave-one-out protocol over `dataset`."""
    if history_len < 1 or negatives < 0:
        raise ConfigError(f"history_len must be >= 1 and negatives >= 0, got {history_len} and {negatives}")
    check_attribute_names(dataset)
    sequences = _user_sequences(dataset.interactions)
    prior = PriorStats(dataset.interactions, like_threshold)
    held_out = {}  # id(interaction) -> split whose target it is
    splits: dict[str, list[dict]] = {"train": [], "valid": [], "test": []}
    skipped = 0
    for user, seq in sequences.items():
        if len(seq) < 3:
            skipped += 1  # too short to hold out two targets and keep a history
            continue
        for split, position in (("test", -1), ("valid", -2), ("train", -3)):
            target = seq[position]
            history = seq[max(0, len(seq) + position - history_len) : len(seq) + position]
            if split != "train":
                held_out[id(target)] = split
            example_id = f"{split}-{user}-{target.item_id}"
            splits[split].append(example_record(dataset, example_id, history, target, like_threshold, prior))
    # Training negatives: popular items the user never interacted with, seeded and recorded.
    splits["train"] = _with_negatives(dataset, splits["train"], sequences, negatives, seed, like_threshold, prior)
    if not splits["test"]:
        most = max((len(seq) for seq in sequences.values()), default=0)
        raise DataError(
            f"dataset {dataset.name!r}: no user has 3 or more interactions (the most any user has is {most}), so "
            "no example could be built; the next-item protocol holds out each user's last two items (test, "
            "valid) and trains on the one before; add data or use --protocol tallrec"
        )
    for example in splits["valid"] + splits["test"]:
        example["label"] = 1  # the item the user did pick next
    tagged = [
        {
            "user_id": x.user_id,
            "item_id": x.item_id,
            "rating": x.rating,
            "timestamp": x.timestamp,
            "split": held_out.get(id(x), "train"),
        }
        for x in dataset.interactions
    ]
    return splits, tagged, {"num_users": len(splits["test"]), "skipped_short_users": skipped}


def _with_negatives(dataset, positives, sequences, negatives, seed, like_threshold, prior) -> list[dict]:
    popularity: dict[str, int] = {}
    for interaction in dataset.interactions:
        popularity[interaction.item_id] = popularity.get(interaction.item_id, 0) + 1
    items = sorted(popularity)
    weights = [popularity[i] for i in items]
    rng = random.Random(seed)
    out = []
    for positive in positives:
        positive["label"] = 1
        out.append(positive)
        seen = {x.item_id for x in sequences[positive["user_id"]]}
        if len(seen) >= len(items):
            continue
        drawn: list[str] = []
        while len(drawn) < min(negatives, len(items) - len(seen)):
            item_id = rng.choices(items, weights)[0]
            if item_id not in seen and item_id not in drawn:
                drawn.append(item_id)
        for item_id in drawn:
            negative = {k: v for k, v in positive.items() if k not in ITEM_KEYS}
            negative.update(
                example_id=f"train-{positive['user_id']}-{item_id}-neg",
                item_id=item_id,
                item=item_record(dataset, item_id),
                label=0,
                rating=None,
                stats=prior.before("item", item_id, positive["timestamp"])
                | prior.before("user", positive["user_id"], positive["timestamp"]),
            )
            out.append(negative)
    return out


def prepare_next_item(
    dataset: Dataset,
    out_dir,
    history_len: int = 10,
    like_threshold: float = 3.0,
    negatives: int = 1,
    seed: int = 0,
    knowledge=None,
) -> dict:
    """Write a next-item prepared directory for `dataset` (KG facts too, given a KnowledgeSpec)."""
    splits, tagged, counts = build_next_item(dataset, history_len, like_threshold, negatives, seed)
    protocol = {
        "name": PROTOCOL,
        "parameters": {
            "history_len": history_len,
            "like_threshold": like_threshold,
            "negatives": negatives,
            "seed": seed,
        },
        "counts": counts,
        **source_record(dataset),
        "promptrec_version": __version__,
    }
    files, embedder = {}, GraphEmbedder()  # trains only when the budget ranks facts by embedding
    if knowledge is not None:
        splits, protocol["knowledge"], files = attach_knowledge(dataset, splits, knowledge, embedder)
    items = [item_record(dataset, item_id) for item_id in sorted(dataset.items)]
    protocol["files"] = {}
    for name, rows in ((ITEMS_FILE, items), (INTERACTIONS_FILE, tagged)):
        files[name] = "".join(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n" for row in rows).encode()
        protocol["files"][name] = {"num_rows": len(rows), "sha256": hashlib.sha256(files[name]).hexdigest()}
    manifest_path = write_prepared(splits, out_dir, protocol, files)  # one atomic write of every file
    embedder.save(out_dir)
    return json.loads(manifest_path.read_text(encoding="utf-8"))


@dataclass
class Catalog:
    """What ranking needs from a next-item directory: items, interactions and a split's contexts."""

    data_dir: Path
    manifest: dict
    items: dict[str, dict]  # item_id -> item record (title, attributes)
    interactions: list[dict]  # {user_id, item_id, rating, timestamp, split}
    like_threshold: float

    def contexts(self, split: str) -> ExamplesByUser:
        """user_id -> that user's `split` target example (context + the true next item), decoded on access."""

        return ExamplesByUser(load_split(self.data_dir, split))

    def fit_interactions(self, split: str) -> list[dict]:
        """Interactions a retriever may learn from when ranking `split`: nothing held out for it or later."""
        allowed = {"test": ("train", "valid"), "valid": ("train",)}.get(split)
        if allowed is None:
            raise ConfigError(f"ranking split must be 'valid' or 'test', got {split!r}")
        return [x for x in self.interactions if x["split"] in allowed]


def load_catalog(data_dir) -> Catalog:
    data_dir = Path(data_dir)
    manifest_path = data_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        raise DataError(
            f"{data_dir}: no {MANIFEST_NAME}; prepare it with `promptrec data prepare ... --protocol next-item`"
        )
    manifest = json.loads(read_text(manifest_path))
    if manifest.get("name") != PROTOCOL:
        raise DataError(
            f"{data_dir}: prepared with protocol {manifest.get('name')!r}, ranking needs {PROTOCOL!r}; "
            "prepare it again with `promptrec data prepare ... --protocol next-item`"
        )
    items = {row["item_id"]: row for row in _read_rows(data_dir / ITEMS_FILE)}
    interactions = _read_rows(data_dir / INTERACTIONS_FILE)
    return Catalog(data_dir, manifest, items, interactions, manifest["parameters"]["like_threshold"])


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise DataError(f"{path}: missing; prepare the directory again with `--protocol next-item`")
    return [row for _, row in read_jsonl(path, "prepare the directory again with `--protocol next-item`")]


class CandidateExamples:
    """Builds the example a template renders for (user context, candidate item), stats included."""

    def __init__(self, catalog: Catalog, similarity: bool = True):
        """`similarity=False` skips the item-kNN `knn` section (10 cosines per candidate): for callers whose
        template and wide part read neither (`jobs.rank.needs_similarity`)."""
        self.catalog, self.similarity = catalog, similarity
        self._graph = self._budget = self._embeddings = None
        if "knowledge" in catalog.manifest:  # prepared with --kg: candidates get facts like the splits did
            self._graph, self._budget = load_graph(catalog.data_dir), load_budget(catalog.data_dir)
            if self._budget.rank_by == "embedding":  # the facts-only embeddings `data prepare` cached
                self._embeddings = cached_embeddings(catalog.data_dir, EmbeddingConfig(interactions=False))
        interactions = [
            Interaction(x["user_id"], x["item_id"], x["rating"], None, x["timestamp"]) for x in catalog.interactions
        ]
        self._prior = PriorStats(interactions, catalog.like_threshold)

    def build(self, context: dict, item_id: str, item: dict | None = None) -> dict:
        """`item` replaces the catalogue's record (`serve` takes item records the catalogue may lack)."""
        example = {k: v for k, v in context.items() if k not in ITEM_KEYS}
        example.update(
            example_id=f"{context['user_id']}:{item_id}",
            item_id=item_id,
            item=self.catalog.items[item_id] if item is None else item,
            label=int(item_id == context["item_id"]),
            stats=self._prior.before("item", item_id, context["timestamp"])
            | self._prior.before("user", context["user_id"], context["timestamp"]),
        )
        if self.similarity:
            example["knn"] = self._prior.history_similarity(item_id, context["history"], context["timestamp"])
        if self._graph is not None:
            example["kg"] = select_facts(
                self._graph, item_id, example["history"], self._budget, self._embeddings, context.get("timestamp")
            )
        return example
