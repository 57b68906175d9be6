"""Candidate files: which items a ranking job scores for each user, frozen with their protocol.

A candidate file is JSON lines, one user per line: `{"user_id": ..., "candidates": [item ids]}`
and optionally `"query"` (search). Beside it, `<file>.protocol.json` records how it was made
(split, retriever, N, seed, whether the target was forced in, the data checksum, the file's own
sha256) and the retriever's Recall@N: a reranker can never recover a target retrieval missed.
Candidate order is shuffled with a recorded per-user seed (retriever order would leak its confidence).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from promptrec.core.errors import ConfigError, DataError
from promptrec.core.files import file_sha256, read_jsonl, read_text, write_json, write_jsonl
from promptrec.protocols.next_item import Catalog

# search: the purchase + random unseen items, with a query; its own order is lexical (query overlap)
RETRIEVERS = ("popularity", "itemknn", "kg", "search")


def protocol_path(candidates_path) -> Path:
    return Path(str(candidates_path) + ".protocol.json")


@dataclass(frozen=True)
class CandidateConfig:
    # popularity | itemknn (cosine over users, summed over the user's items) | kg (KG embeddings) | search
    retriever: str = "popularity"
    num: int = 20  # candidates per user (LlamaRec reranks 20)
    include_target: bool = False  # force the true item in (sampled-metric protocol); recorded either way
    seed: int = 0  # shuffles each user's candidate order, and draws the user sample
    max_users: int = 0  # 0 = every user of the split; N = a seeded sample of N users (CPU-sized runs)

    def __post_init__(self):
        if self.retriever not in RETRIEVERS:
            raise ConfigError(f"unknown retriever {self.retriever!r}; pick one of: {', '.join(RETRIEVERS)}")
        if self.num < 1 or self.max_users < 0:
            raise ConfigError(f"--num must be >= 1 and --max-users >= 0, got {self.num} and {self.max_users}")


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
        write_jsonl(retriever_ranked_path, ranked)
    write_jsonl(
        out_path, ({k: v for k, v in row.items() if k != "retriever_order"} for row in rows), ensure_ascii=False
    )
    write_json(protocol_path(out_path), record | {"sha256": file_sha256(out_path), "file": out_path.name})


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
    _check_protocol_split(path, split)
    users = catalog.contexts(split)
    rows, seen_users, num_empty = [], set(), 0
    for line_no, row in read_jsonl(path, 'one {"user_id": ..., "candidates": [item ids]} object per line'):
        if "user_id" not in row or not isinstance(row.get("candidates"), list):
            raise DataError(f'{path}:{line_no}: expected {{"user_id": ..., "candidates": [item ids]}}; fix this line')
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


def _check_protocol_split(path: Path, split: str) -> None:
    """Candidates built for one split rank against that split's contexts only (a file without a record is the
    user's own and is trusted): ranking `test` candidates with `valid` contexts would score the wrong targets."""
    record_path = protocol_path(path)
    if not record_path.is_file():
        return
    try:
        record = json.loads(read_text(record_path))
    except json.JSONDecodeError as err:
        raise DataError(
            f"{record_path}:{err.lineno}: invalid JSON ({err.msg}); write the candidates again with "
            "`promptrec candidates`, or delete the record to rank the file as your own"
        ) from None
    built_for = record.get("split") if isinstance(record, dict) else None
    if built_for is not None and built_for != split:
        raise DataError(
            f"{path}: candidates were built for split {built_for!r} ({record_path.name}) but ranking uses split "
            f"{split!r}; pass --split {built_for} or build candidates with --split {split}"
        )
