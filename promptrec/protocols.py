"""Evaluation protocols: turn a `Dataset` into pointwise examples, and read/write prepared splits.

The TALLRec protocol (`build_tallrec_examples`) reproduces TALLRec's preprocess_movie.py: a
10-item history before each target, the last 10,000 windows, an 80/10/10 split by position.
Prepared splits are JSON-lines files plus a manifest.json that records the protocol, source
checksums and split checksums, so a run can name exactly the data it saw. TALLRec's published
Alpaca-style JSON files can be read too (`load_alpaca`). Prompt text is not built here; templates
render the example dicts.
"""

import bisect
import hashlib
import itertools
import json
from pathlib import Path

from promptrec import __version__
from promptrec.data import Dataset, Interaction, load_interactions_table, load_movielens, read_text
from promptrec.errors import ConfigError, DataError

SPLITS = ("train", "valid", "test")
MANIFEST_NAME = "manifest.json"
ALPACA_KEYS = ("instruction", "input", "output")
ALPACA_LABELS = {"yes": 1, "no": 0}
# Keys a history entry adds beside an item's attributes; a same-named attribute would be lost.
HISTORY_KEYS = ("item_id", "title", "rating", "liked", "timestamp")


# ---------------------------------------------------------------- building examples


def build_tallrec_examples(
    dataset: Dataset,
    history_len: int = 10,
    like_threshold: float = 3.0,
    max_examples: int = 10000,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> dict[str, list[dict]]:
    """Split `dataset` into train/valid/test pointwise examples exactly as TALLRec does.

    Users are taken in order of first appearance; each user's interactions are stably sorted by
    timestamp; every interaction after the first `history_len` becomes a target with the
    `history_len` before it as history. The last `max_examples` are kept and cut by position.
    """
    _check_parameters(history_len, max_examples, fractions)
    _check_attribute_names(dataset)
    windows = _history_windows(dataset.interactions, history_len)[-max_examples:]
    train_end = int(len(windows) * fractions[0])
    # round(): 0.8 + 0.1 is 0.9000000000000001 in floats; TALLRec writes 0.9
    valid_end = int(len(windows) * round(fractions[0] + fractions[1], 12))
    bounds = {"train": (0, train_end), "valid": (train_end, valid_end), "test": (valid_end, None)}
    prior = PriorStats(dataset.interactions, like_threshold)
    return {
        split: [
            _example(dataset, f"{split}-{index:05d}", history, target, like_threshold, prior)
            for index, (history, target) in enumerate(windows[start:end])
        ]
        for split, (start, end) in bounds.items()
    }


def _check_parameters(history_len: int, max_examples: int, fractions) -> None:
    if not isinstance(history_len, int) or history_len < 1:
        raise ConfigError(f"history_len must be a positive integer, got {history_len!r}; TALLRec uses 10")
    if not isinstance(max_examples, int) or max_examples < 1:
        raise ConfigError(f"max_examples must be a positive integer, got {max_examples!r}; TALLRec uses 10000")
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ConfigError(
            f"fractions must be three non-negative numbers summing to 1 (train, valid, test), "
            f"got {tuple(fractions)!r}; TALLRec uses (0.8, 0.1, 0.1)"
        )


def _check_attribute_names(dataset: Dataset) -> None:
    for item in dataset.items.values():
        clash = sorted(set(item.attributes) & set(HISTORY_KEYS))
        if clash:
            raise DataError(
                f"item {item.item_id!r}: attribute {clash[0]!r} clashes with a history field "
                f"({', '.join(HISTORY_KEYS)}); rename that column in the item table"
            )


def _history_windows(interactions: list[Interaction], history_len: int):
    """(history, target) pairs, users in first-appearance order, each user's in time order."""
    by_user: dict[str, list[Interaction]] = {}  # dicts keep insertion = first-appearance order
    for interaction in interactions:
        by_user.setdefault(interaction.user_id, []).append(interaction)
    windows = []
    for user_interactions in by_user.values():
        ordered = sorted(user_interactions, key=lambda x: x.timestamp)  # stable: ties keep file order
        for i in range(history_len, len(ordered)):
            windows.append((ordered[i - history_len : i], ordered[i]))
    return windows


def _liked(interaction: Interaction, like_threshold: float) -> bool:
    if interaction.rating is not None:
        return interaction.rating > like_threshold
    return interaction.label == 1


class PriorStats:
    """Leak-free popularity facts: counts and like-rates from interactions strictly before a time.

    Templates may state them plainly ("viewers liked this movie 72% of the time"); only ratings
    with an earlier timestamp count, so no example sees its own label or the future.
    """

    def __init__(self, interactions: list[Interaction], like_threshold: float):
        self._by_key: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
        grouped: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for x in interactions:
            liked = int(_liked(x, like_threshold))
            grouped.setdefault(("item", x.item_id), []).append((x.timestamp, liked))
            grouped.setdefault(("user", x.user_id), []).append((x.timestamp, liked))
        for key, events in grouped.items():
            events.sort()
            times = [t for t, _ in events]
            cumulative = list(itertools.accumulate((liked for _, liked in events), initial=0))
            self._by_key[key] = (times, cumulative)

    def before(self, kind: str, key: str, timestamp: int) -> dict:
        times, cumulative = self._by_key.get((kind, key), ([], [0]))
        count = bisect.bisect_left(times, timestamp)
        rate = round(cumulative[count] / count, 4) if count else None
        return {f"{kind}_num_ratings": count, f"{kind}_like_rate": rate}


def _example(dataset: Dataset, example_id: str, history, target, like_threshold, prior: PriorStats) -> dict:
    user = dataset.users.get(target.user_id)
    if user is None:
        raise DataError(f"user {target.user_id!r} has interactions but no user record; add it to the user table")
    return {
        "example_id": example_id,
        "user_id": target.user_id,
        "item_id": target.item_id,
        "label": int(_liked(target, like_threshold)),
        "rating": target.rating,
        "timestamp": target.timestamp,
        "user": {"user_id": user.user_id, **user.attributes},
        "item": _item_record(dataset, target.item_id),
        "stats": prior.before("item", target.item_id, target.timestamp)
        | prior.before("user", target.user_id, target.timestamp),
        "history": [
            {
                **_item_record(dataset, past.item_id),
                "rating": past.rating,
                "liked": _liked(past, like_threshold),
                "timestamp": past.timestamp,
            }
            for past in history
        ],
    }


def _item_record(dataset: Dataset, item_id: str) -> dict:
    item = dataset.items[item_id]
    return {"item_id": item.item_id, "title": item.title, **item.attributes}


# ---------------------------------------------------------------- writing prepared splits


def write_prepared(splits: dict[str, list[dict]], out_dir, protocol: dict, files: dict | None = None) -> Path:
    """Write `<split>.jsonl` files and manifest.json into `out_dir`; return the manifest's path.

    `files` ({name: bytes}) are written beside them, e.g. knowledge.tsv (its record is in `protocol`).

    The same splits and protocol always give byte-identical files. A directory holding files
    but no manifest.json is refused, so a typo cannot overwrite unrelated data.
    """
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir)
    for name, data in (files or {}).items():
        (out_dir / name).write_bytes(data)
    split_records = {}
    for split, examples in splits.items():
        data = "".join(json.dumps(e, sort_keys=True, ensure_ascii=False) + "\n" for e in examples)
        data = data.encode("utf-8")
        (out_dir / f"{split}.jsonl").write_bytes(data)
        labels = [e["label"] for e in examples]
        split_records[split] = {
            "file": f"{split}.jsonl",
            "num_examples": len(examples),
            "positive_rate": round(sum(labels) / len(labels), 6) if labels else None,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    manifest = {**protocol, "splits": split_records}
    manifest_path = out_dir / MANIFEST_NAME
    manifest_path.write_text(json.dumps(manifest, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    return manifest_path


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a directory; pick an empty directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).is_file():
        raise DataError(
            f"{out_dir}: not empty and holds no {MANIFEST_NAME}, so it is not a prepared-data "
            "directory; pick an empty directory"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.jsonl"):  # splits of a previous preparation, possibly other names
        old.unlink()


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tallrec_protocol(dataset: Dataset, history_len, like_threshold, max_examples, fractions) -> dict:
    """The manifest's protocol record: everything needed to rebuild the splits."""
    return {
        "name": "tallrec",
        "parameters": {
            "history_len": history_len,
            "like_threshold": like_threshold,
            "max_examples": max_examples,
            "fractions": list(fractions),
        },
        "dataset": dataset.name,
        # file names only: absolute paths would make identical data give different manifests
        "sources": {path.name: file_sha256(path) for path in dataset.source_paths},
        "promptrec_version": __version__,
    }


def _prepare(dataset: Dataset, out_dir, history_len, like_threshold, max_examples, knowledge=None) -> dict:
    fractions = (0.8, 0.1, 0.1)
    splits = build_tallrec_examples(dataset, history_len, like_threshold, max_examples, fractions)
    protocol = tallrec_protocol(dataset, history_len, like_threshold, max_examples, fractions)
    files = {}
    if knowledge is not None:  # a knowledge.KnowledgeSpec: KG facts go into every example as "kg"
        from promptrec.knowledge import attach_knowledge

        splits, protocol["knowledge"], files = attach_knowledge(dataset, splits, knowledge)
    manifest_path = write_prepared(splits, out_dir, protocol, files)
    return json.loads(manifest_path.read_text(encoding="utf-8"))


PROTOCOLS = ("tallrec", "next-item", "search")


def prepare_dataset(
    dataset: Dataset,
    out_dir,
    protocol: str = "tallrec",
    history_len: int = 10,
    like_threshold: float = 3.0,
    max_examples: int = 10000,
    knowledge=None,
) -> dict:
    """Write `dataset` prepared under `protocol` (pointwise TALLRec or leave-one-out next-item)."""
    if protocol == "tallrec":
        return _prepare(dataset, out_dir, history_len, like_threshold, max_examples, knowledge)
    if protocol == "next-item":  # rank-time candidate examples get the same KG facts (next_item.CandidateExamples)
        from promptrec.next_item import prepare_next_item

        return prepare_next_item(dataset, out_dir, history_len, like_threshold, knowledge=knowledge)
    if knowledge is not None:
        raise ConfigError(f"--kg works with the tallrec and next-item protocols, not {protocol!r}; drop --kg")
    if protocol == "search":  # personalised product search (Ai et al. 2017); needs item categories or brand
        from promptrec.search import prepare_search

        return prepare_search(dataset, out_dir, history_len)
    raise ConfigError(f"unknown protocol {protocol!r}; pick one of: {', '.join(PROTOCOLS)}")


def prepare_movielens(
    source_dir, out_dir, history_len: int = 10, max_examples: int = 10000, protocol: str = "tallrec", knowledge=None
) -> dict:
    """Build splits from raw MovieLens-100K into `out_dir` under `protocol`; return the manifest."""
    dataset = load_movielens(source_dir)
    return prepare_dataset(dataset, out_dir, protocol, history_len, 3.0, max_examples, knowledge)


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
) -> dict:
    """Build splits from CSV/TSV/JSONL tables into `out_dir` under `protocol`; return the manifest."""
    dataset = load_interactions_table(interactions, items, users)
    return prepare_dataset(dataset, out_dir, protocol, history_len, like_threshold, max_examples, knowledge)


# ---------------------------------------------------------------- reading splits


def split_path(path, split: str = "test") -> Path:
    """The file holding `split`: `path` itself if it is a file, else `<split>.jsonl` or `.json`."""
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"{path}: no such file or directory; pass a prepared directory, a .jsonl split file or an Alpaca .json file"
        )
    if path.is_file():
        if path.suffix not in (".jsonl", ".json"):
            raise DataError(f"{path}: expected a .jsonl split file or an Alpaca .json file")
        return path
    for suffix in (".jsonl", ".json"):
        if (path / f"{split}{suffix}").is_file():
            return path / f"{split}{suffix}"
    available = sorted({p.stem for p in path.iterdir() if p.suffix in (".jsonl", ".json") and p.name != MANIFEST_NAME})
    raise DataError(
        f"{path}: no split {split!r} ({split}.jsonl or {split}.json); "
        f"available splits: {', '.join(available) or 'none'}; pick one of them"
    )


def load_split(path, split: str = "test") -> list[dict]:
    """Examples of `split` from a prepared dir, an Alpaca dir, or one .jsonl / Alpaca .json file."""
    file = split_path(path, split)
    examples = load_alpaca(file) if file.suffix == ".json" else _load_jsonl(file)
    if not examples:
        raise DataError(f"{file}: split {split!r} has no examples; prepare the data again")
    return examples


def _load_jsonl(path: Path) -> list[dict]:
    examples = []
    for line_no, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            example = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{line_no}: invalid JSON ({err.msg}); prepare the data again") from None
        missing = [k for k in ("example_id", "label") if not isinstance(example, dict) or k not in example]
        if missing:
            raise DataError(
                f"{path}:{line_no}: not a prepared example (no {missing[0]!r}); "
                "write splits with `promptrec data prepare`"
            )
        examples.append(example)
    return examples


def load_alpaca(path) -> list[dict]:
    """Read a TALLRec/Alpaca instruction file: a JSON list of {instruction, input, output}."""
    path = Path(path)
    try:
        records = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: invalid JSON ({err.msg}); fix the file") from None
    if not isinstance(records, list):
        raise DataError(
            f"{path}: expected a JSON list of {{instruction, input, output}} records, got {type(records).__name__}"
        )
    return [_alpaca_example(path, index, record) for index, record in enumerate(records)]


def _alpaca_example(path: Path, index: int, record) -> dict:
    for key in ALPACA_KEYS:
        if not isinstance(record, dict) or key not in record:
            raise DataError(f"{path}: record {index} has no {key!r} key; every record needs {ALPACA_KEYS}")
    answer = str(record["output"]).strip().lower().removesuffix(".")
    if answer not in ALPACA_LABELS:
        raise DataError(f"{path}: record {index} has output {record['output']!r}; expected 'Yes.' or 'No.'")
    return {
        "example_id": f"{path.stem}-{index:05d}",
        **{key: record[key] for key in ALPACA_KEYS},
        "label": ALPACA_LABELS[answer],
    }


def dataset_checksum(path, split: str = "test") -> str:
    """sha256 of the bytes of the file holding `split` (for run records)."""
    return file_sha256(split_path(path, split))
