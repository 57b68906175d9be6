"""Candidate sets: which items a ranking job scores for each user, frozen in a file with its protocol.

A candidate file is JSON lines, one user per line: `{"user_id": ..., "candidates": [item ids]}`
and optionally `"query"` (search). Beside it, `<file>.protocol.json` records how it was made
(split, retriever, N, seed, whether the target was forced in, the data checksum, the file's own
sha256) and the retriever's Recall@N: a reranker can never recover a target retrieval missed.

Retrievers fit only on interactions that are not held out for the ranked split (see
`next_item.Catalog.fit_interactions`) and never propose an item the user already has. Candidate
order is shuffled with a recorded per-user seed: retriever order would leak its confidence into
the position of each candidate (LlamaRec's prompts did).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from promptrec import __version__
from promptrec.data import read_text
from promptrec.errors import ConfigError, DataError
from promptrec.next_item import Catalog
from promptrec.protocols import file_sha256

# search: the purchase + random unseen items, with a query; its own order is lexical (query overlap)
RETRIEVERS = ("popularity", "itemknn", "search")


def protocol_path(candidates_path) -> Path:
    return Path(str(candidates_path) + ".protocol.json")


@dataclass(frozen=True)
class CandidateConfig:
    retriever: str = "popularity"  # popularity | itemknn (cosine over users, summed over the user's items)
    num: int = 20  # candidates per user (LlamaRec reranks 20)
    include_target: bool = False  # force the true item in (sampled-metric protocol); recorded either way
    seed: int = 0  # shuffles each user's candidate order, and draws the user sample
    max_users: int = 0  # 0 = every user of the split; N = a seeded sample of N users (CPU-sized runs)

    def __post_init__(self):
        if self.retriever not in RETRIEVERS:
            raise ConfigError(f"unknown retriever {self.retriever!r}; pick one of: {', '.join(RETRIEVERS)}")
        if self.num < 1 or self.max_users < 0:
            raise ConfigError(f"--num must be >= 1 and --max-users >= 0, got {self.num} and {self.max_users}")


class Retriever:
    """Scores every catalogue item for a user from co-occurrence counts of the fit interactions."""

    def __init__(self, interactions: list[dict], item_ids: list[str], kind: str):
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
        if kind == "itemknn":
            from sklearn.metrics.pairwise import cosine_similarity

            self.similarity = cosine_similarity(matrix.T, dense_output=False).tocsr()  # (items, items)
            self.similarity.setdiag(0)

    def top(self, user_id: str, num: int) -> list[str]:
        seen = [self.index[i] for i in self.seen.get(user_id, ()) if i in self.index]
        if self.similarity is not None and seen:
            scores = np.asarray(self.similarity[seen].sum(axis=0)).ravel()
        else:
            scores = np.zeros(len(self.item_ids))
        # Ties (and users with no history) fall back to popularity, then to item id order.
        order = np.lexsort((np.arange(len(self.item_ids)), -self.popularity, -scores))
        seen_set = set(seen)
        return [self.item_ids[i] for i in order if i not in seen_set][:num]


def build_candidates(catalog: Catalog, split: str, config: CandidateConfig) -> tuple[list[dict], dict]:
    """(rows, protocol record) for every user of `split`, with the retriever's Recall@N."""
    contexts = catalog.contexts(split)
    if config.max_users and config.max_users < len(contexts):
        keep = set(random.Random(config.seed).sample(sorted(contexts), config.max_users))
        contexts = {user: context for user, context in contexts.items() if user in keep}
    if config.retriever == "search":
        return _search_candidates(catalog, split, config, contexts)
    retriever = Retriever(catalog.fit_interactions(split), sorted(catalog.items), config.retriever)
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
    from promptrec.search import build_search_candidates, query_overlap

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


def write_candidates(rows: list[dict], record: dict, out_path, retriever_ranked_path=None) -> None:
    """The candidate file (+ protocol record); optionally the retriever's own order as a ranked file.

    The ranked file has `rank`'s output shape, so `evaluate --ranked` scores the retriever alone
    (the baseline a reranker must beat). The candidate file itself never keeps that order.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if retriever_ranked_path is not None:
        if any("retriever_order" not in row for row in rows):
            raise ConfigError("these candidate rows carry no retriever order; drop --retriever-ranked")
        ranked = [{"user_id": row["user_id"], "items": row["retriever_order"]} for row in rows]
        Path(retriever_ranked_path).write_text("".join(json.dumps(r) + "\n" for r in ranked), encoding="utf-8")
    rows = [{k: v for k, v in row.items() if k != "retriever_order"} for row in rows]
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    tmp.replace(out_path)
    record = record | {"sha256": file_sha256(out_path), "file": out_path.name}
    protocol_path(out_path).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@dataclass
class CandidateFile:
    rows: list[dict]  # {user_id, candidates, query?}, file order
    sha256: str
    num_empty: int  # users skipped because their candidate list was empty


def load_candidates(path, catalog: Catalog, split: str) -> CandidateFile:
    """Read and check a candidate file (ours or the user's own) against the catalogue and split."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such candidate file; write one with `promptrec candidates`")
    users = catalog.contexts(split)
    rows, seen_users, num_empty = [], set(), 0
    for line_no, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        row = _parse_row(path, line_no, line)
        user, items = str(row["user_id"]), [str(i) for i in row["candidates"]]
        where = f"{path}:{line_no}"
        if user not in users:
            raise DataError(f"{where}: unknown user {user!r} (not in split {split!r}); fix the file or the --split")
        if user in seen_users:
            raise DataError(f"{where}: user {user!r} appears twice; give each user one line")
        seen_users.add(user)
        unknown = [i for i in items if i not in catalog.items]
        if unknown:
            raise DataError(
                f"{where}: {len(unknown)} unknown item id(s), e.g. {unknown[0]!r}; use ids from items.jsonl"
            )
        if len(set(items)) != len(items):
            duplicate = next(i for i in items if items.count(i) > 1)
            raise DataError(f"{where}: item {duplicate!r} is listed twice for user {user!r}; list each candidate once")
        if not items:
            num_empty += 1
            continue
        rows.append({"user_id": user, "candidates": items} | ({"query": row["query"]} if "query" in row else {}))
    if not rows:
        raise DataError(f"{path}: no user has any candidates; write candidates with `promptrec candidates`")
    return CandidateFile(rows, file_sha256(path), num_empty)


def _parse_row(path: Path, line_no: int, line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{line_no}: invalid JSON ({err.msg}); one JSON object per line") from None
    if not isinstance(row, dict) or "user_id" not in row or not isinstance(row.get("candidates"), list):
        raise DataError(f'{path}:{line_no}: expected {{"user_id": ..., "candidates": [item ids]}}; fix this line')
    return row
