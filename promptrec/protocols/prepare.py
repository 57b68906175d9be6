"""`data prepare`: a `Dataset` into a prepared directory under one protocol (tallrec, global-time, next-item,
search)."""

from __future__ import annotations

import json

from promptrec.core.errors import ConfigError
from promptrec.data.dataset import Dataset, load_interactions_table, load_movielens
from promptrec.knowledge.embeddings import GraphEmbedder
from promptrec.knowledge.graph import attach_knowledge
from promptrec.protocols.global_time import build_global_time_examples, global_time_protocol
from promptrec.protocols.next_item import prepare_next_item
from promptrec.protocols.search import prepare_search
from promptrec.protocols.splits import write_prepared
from promptrec.protocols.tallrec import build_tallrec_examples, tallrec_protocol


def _write(dataset: Dataset, out_dir, splits: dict, protocol: dict, knowledge=None) -> dict:
    files, embedder = {}, GraphEmbedder()  # trains only when the budget ranks facts by embedding
    if knowledge is not None:  # a knowledge.KnowledgeSpec: KG facts go into every example as "kg"
        splits, protocol["knowledge"], files = attach_knowledge(dataset, splits, knowledge, embedder)
    manifest_path = write_prepared(splits, out_dir, protocol, files)
    embedder.save(out_dir)  # beside the splits, where `cached_embeddings` finds them
    return json.loads(manifest_path.read_text(encoding="utf-8"))


FRACTIONS = (0.8, 0.1, 0.1)  # train, valid, test: TALLRec's cut, used by the global-time split too


PROTOCOLS = ("tallrec", "global-time", "next-item", "search")


def load_warnings(manifest: dict) -> list[str]:
    """What loading the source repaired (e.g. duplicate rows dropped), one line each, for the CLI to print."""
    return list(manifest.get("load_warnings", []))


def prepare_dataset(
    dataset: Dataset,
    out_dir,
    protocol: str = "tallrec",
    history_len: int = 10,
    like_threshold: float = 3.0,
    max_examples: int = 10000,
    knowledge=None,
    history_pool: int = 0,
) -> dict:
    """Write `dataset` prepared under `protocol` into `out_dir`, replacing a prepared dir there.

    `max_examples` applies to the tallrec protocol only; the others keep every example.
    `history_pool` (tallrec and global-time): choose the history by relevance among that many.
    """
    check_pool_protocol(protocol, history_pool)
    if protocol == "tallrec":
        splits = build_tallrec_examples(dataset, history_len, like_threshold, max_examples, FRACTIONS, history_pool)
        record = tallrec_protocol(dataset, history_len, like_threshold, max_examples, FRACTIONS, history_pool)
        return _write(dataset, out_dir, splits, record, knowledge)
    if protocol == "global-time":
        splits, counts = build_global_time_examples(dataset, history_len, like_threshold, FRACTIONS, history_pool)
        record = global_time_protocol(dataset, history_len, like_threshold, FRACTIONS, counts, history_pool)
        return _write(dataset, out_dir, splits, record, knowledge)
    if protocol == "next-item":  # rank-time candidate examples get the same KG facts (next_item.CandidateExamples)
        return prepare_next_item(dataset, out_dir, history_len, like_threshold, knowledge=knowledge)
    if knowledge is not None:
        raise ConfigError(
            f"--kg works with the tallrec, global-time and next-item protocols, not {protocol!r}; drop --kg"
        )
    if protocol == "search":  # personalised product search (Ai et al. 2017); needs item categories or brand
        return prepare_search(dataset, out_dir, history_len)
    raise ConfigError(f"unknown protocol {protocol!r}; pick one of: {', '.join(PROTOCOLS)}")


def check_pool_protocol(protocol: str, history_pool: int) -> None:
    """A relevance-chosen history needs a protocol with one history per example (not per user)."""
    if history_pool and protocol not in ("tallrec", "global-time"):
        raise ConfigError(f"--history-pool works with the tallrec and global-time protocols, not {protocol!r}; drop it")


def prepare_movielens(
    source_dir,
    out_dir,
    history_len: int = 10,
    max_examples: int = 10000,
    protocol: str = "tallrec",
    knowledge=None,
    history_pool: int = 0,
) -> dict:
    """Build splits from raw MovieLens-100K into `out_dir` under `protocol`; return the manifest."""
    dataset = load_movielens(source_dir)
    return prepare_dataset(dataset, out_dir, protocol, history_len, 3.0, max_examples, knowledge, history_pool)


def prepare_table(
    interactions,
    items,
    users,
    out_dir,
    history_len: int = 10,
    like_threshold: float = 3.0,
    max_examples: int = 10000,
    protocol: str = "tallrec",
    knowledge=None,
    history_pool: int = 0,
) -> dict:
    """Build splits from CSV/TSV/JSONL tables into `out_dir` under `protocol`; return the manifest."""
    dataset = load_interactions_table(interactions, items, users)
    return prepare_dataset(
        dataset, out_dir, protocol, history_len, like_threshold, max_examples, knowledge, history_pool
    )
