"""Ranking metrics of a finished `promptrec rank` output: `evaluate --ranked`.

Reads the ranked file (one user per line) and scores it against the split's held-out items with
`metrics.ranking.ranking_metrics`; targets missing from a list count as misses.
"""

from __future__ import annotations

from pathlib import Path

from promptrec.core.errors import DataError
from promptrec.core.files import read_jsonl, write_json
from promptrec.core.records import provenance
from promptrec.jobs.rank import parts_dir
from promptrec.metrics.ranking import ranking_metrics
from promptrec.protocols.next_item import load_catalog


def read_ranked(path) -> dict[str, list[str]]:
    """user_id -> ranked item ids, from a `rank` output file."""

    path = Path(path)
    if not path.is_file():
        hint = " (an unfinished run: finish it with `promptrec rank ... --resume`)" if parts_dir(path).is_dir() else ""
        raise DataError(f"{path}: no such ranked file{hint}; write one with `promptrec rank`")
    ranked = {}
    for line_no, row in read_jsonl(path, "is this a `promptrec rank` output?"):
        if "user_id" not in row or not isinstance(row.get("items"), list):
            raise DataError(f'{path}:{line_no}: expected {{"user_id": ..., "items": [...]}}; is this a rank output?')
        user, items = str(row["user_id"]), [str(i) for i in row["items"]]
        if user in ranked:
            raise DataError(f"{path}:{line_no}: user {user!r} appears twice; rank again with --overwrite")
        ranked[user] = items
    return ranked


def evaluate_ranked(ranked_path, data_dir, split: str, out_dir) -> dict:
    """Ranking metrics of a ranked file against the split's held-out items; writes metrics.json."""

    catalog = load_catalog(data_dir)
    targets = {user: {ex["item_id"]} for user, ex in catalog.contexts(split).items()}
    ranked = read_ranked(ranked_path)
    unknown = [u for u in ranked if u not in targets]
    if unknown:
        raise DataError(
            f"{ranked_path}: {len(unknown)} users are not in split {split!r} (e.g. {unknown[0]!r}); "
            "pass the --split the candidates were built for"
        )
    metrics = ranking_metrics(ranked, targets) | {"num_split_users_not_ranked": len(targets) - len(ranked)}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "metrics.json", metrics)
    write_json(
        out_dir / "config.json",
        {"kind": "evaluate-ranked", "ranked": str(ranked_path), "data": str(data_dir), "split": split, **provenance()},
    )
    return metrics
