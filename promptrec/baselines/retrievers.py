"""Retrievers that propose each user's candidates: popularity, item-kNN, KG embeddings, product search.

`kg` scores items by the cosine of their knowledge-graph embedding (`knowledge.embeddings`, trained
once with PyKEEN on the dir's knowledge.tsv plus the train split's likes, and cached there) to the
mean of the user's liked items (all of the user's items when none is liked).

They fit only on interactions that are not held out for the ranked split (see
`protocols.next_item.Catalog.fit_interactions`) and never propose an item the user already has.
The candidate file they produce, and its protocol record, are `protocols.candidates`'.
"""

from __future__ import annotations

import random

import numpy as np

from promptrec import __version__
from promptrec.knowledge.embeddings import EmbeddingConfig, Embeddings, cached_embeddings, item_label
from promptrec.protocols.candidates import CandidateConfig
from promptrec.protocols.next_item import Catalog
from promptrec.protocols.search import build_search_candidates, query_overlap


class Retriever:
    """Scores every catalogue item for a user: co-occurrence counts of the fit interactions (itemknn),
    KG-embedding similarity to the user's liked items (`embeddings` given, kg), or popularity alone."""

    def __init__(self, interactions: list[dict], item_ids: list[str], kind: str, embeddings=None, like_threshold=3.0):
        from scipy.sparse import csr_matrix

        self.item_ids = item_ids
        self.index = {item: i for i, item in enumerate(item_ids)}
        users = sorted({x["user_id"] for x in interactions})
        user_index = {user: i for i, user in enumerate(users)}
        pairs = {(user_index[x["user_id"]], self.index[x["item_id"]]) for x in interactions}
        rows, cols = zip(*sorted(pairs)) if pairs else ((), ())
        matrix = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(users), len(item_ids)))
        self.popularity = np.asarray(matrix.sum(axis=0)).ravel()  # (items,)
        self.seen = {user: set() for user in users}
        for x in interactions:
            self.seen[x["user_id"]].add(x["item_id"])
        self.similarity = None
        self.kg = None if embeddings is None else KGScores(interactions, item_ids, embeddings, like_threshold)
        if kind == "itemknn":
            from sklearn.metrics.pairwise import cosine_similarity

            self.similarity = cosine_similarity(matrix.T, dense_output=False).tocsr()  # (items, items)
            self.similarity.setdiag(0)

    def top(self, user_id: str, num: int) -> list[str]:
        seen = [self.index[i] for i in self.seen.get(user_id, ()) if i in self.index]
        if self.similarity is not None and seen:
            scores = np.asarray(self.similarity[seen].sum(axis=0)).ravel()
        elif self.kg is not None and seen:
            scores = self.kg.scores(user_id)
        else:
            scores = np.zeros(len(self.item_ids))
        # Ties (and users with no history) fall back to popularity, then to item id order.
        order = np.lexsort((np.arange(len(self.item_ids)), -self.popularity, -scores))
        seen_set = set(seen)
        return [self.item_ids[i] for i in order if i not in seen_set][:num]


class KGScores:
    """Cosine of each item's KG embedding to the profile of the user's liked items (`Embeddings.profile`)."""

    def __init__(self, interactions: list[dict], item_ids: list[str], embeddings: Embeddings, threshold: float = 3.0):
        self.embeddings = embeddings
        rows = [embeddings.index.get(item_label(item)) for item in item_ids]
        dim = embeddings.unit.shape[1]
        # (items, dim): unit vectors; zero rows for items the graph does not know (they score 0)
        self.unit = np.stack([embeddings.unit[row] if row is not None else np.zeros(dim) for row in rows])
        self.liked: dict[str, list[str]] = {}
        self.seen: dict[str, list[str]] = {}
        for x in interactions:
            self.seen.setdefault(x["user_id"], []).append(x["item_id"])
            if x.get("rating") is None or x["rating"] > threshold:
                self.liked.setdefault(x["user_id"], []).append(x["item_id"])

    def scores(self, user_id: str) -> np.ndarray:
        profile = self.embeddings.profile(self.liked.get(user_id) or self.seen.get(user_id, []))  # (dim,) or None
        return self.unit @ profile if profile is not None else np.zeros(len(self.unit))  # (items,)


def build_candidates(catalog: Catalog, split: str, config: CandidateConfig) -> tuple[list[dict], dict]:
    """(rows, protocol record) for every user of `split`, with the retriever's Recall@N."""
    contexts = catalog.contexts(split)
    if config.max_users and config.max_users < len(contexts):
        keep = set(random.Random(config.seed).sample(sorted(contexts), config.max_users))
        contexts = {user: contexts[user] for user in contexts if user in keep}  # decodes only the kept users
    if config.retriever == "search":
        return _search_candidates(catalog, split, config, contexts)
    embeddings = None
    if config.retriever == "kg":  # the train split's likes only: before every valid and test target
        embeddings = cached_embeddings(catalog.data_dir, EmbeddingConfig(interactions=True))
    interactions = catalog.fit_interactions(split)
    retriever = Retriever(interactions, sorted(catalog.items), config.retriever, embeddings, catalog.like_threshold)
    rows, hits = [], 0
    for user_id, context in contexts.items():
        items = retriever.top(user_id, config.num)
        target = context["item_id"]
        hits += target in items
        if config.include_target and target not in items:
            items = items[: config.num - 1] + [target]
        ranked = list(items)
        random.Random(f"{config.seed}:{user_id}").shuffle(items)
        rows.append({"user_id": user_id, "candidates": items, "retriever_order": ranked})
    return rows, _record(catalog, split, config, rows, hits)


def _search_candidates(catalog: Catalog, split: str, config: CandidateConfig, contexts: dict):
    """Personalised product search (Ai et al. 2017): query from the purchase's category path."""

    rows = []
    for row in build_search_candidates(catalog, config.num, config.seed, split):
        if row["user_id"] in contexts:
            query, items = row["query"], row["candidates"]
            # Its own order (for --retriever-ranked): lexical, by query overlap; ties keep the shuffled order.
            ranked = sorted(items, key=lambda item: -query_overlap(query, catalog.items[item]))
            rows.append({"user_id": row["user_id"], "query": query, "candidates": items, "retriever_order": ranked})
    record = _record(catalog, split, config, rows, len(rows))
    return rows, record | {"num_users_without_query": len(contexts) - len(rows)}


def _record(catalog: Catalog, split: str, config: CandidateConfig, rows: list[dict], hits: int) -> dict:
    return {
        "split": split,
        "retriever": config.retriever,
        "num": config.num,
        "include_target": config.include_target,
        "seed": config.seed,
        "max_users": config.max_users,
        "num_users": len(rows),
        f"recall_at_{config.num}": hits / len(rows) if rows else float("nan"),
        "data": {"dir": str(catalog.data_dir), "split_sha256": catalog.manifest["splits"][split]["sha256"]},
        "promptrec_version": __version__,
    }
