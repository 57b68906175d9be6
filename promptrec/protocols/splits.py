"""Prepared splits on disk: `<split>.jsonl` files plus manifest.json, written and read here only.

The manifest records the protocol, source checksums and split checksums, so a run can name exactly
the data it saw. TALLRec's published Alpaca-style JSON files can be read too (`load_alpaca`), and so can a
user's own `datasets` data (`protocols.external`). Splits load as `protocols.examples.Examples`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from promptrec.core.errors import ConfigError, DataError
from promptrec.core.files import atomic_dir, known_file_sha256, read_text, refuse_overwrite
from promptrec.protocols.examples import Examples, examples_from_jsonl
from promptrec.protocols.external import external_checksum, is_external, load_external

SPLITS = ("train", "valid", "test")


MANIFEST_NAME = "manifest.json"


ALPACA_KEYS = ("instruction", "input", "output")


ALPACA_LABELS = {"yes": 1, "no": 0}


def write_prepared(splits: dict[str, list[dict]], out_dir, protocol: dict, files: dict | None = None) -> Path:
    """Write `<split>.jsonl` files and manifest.json into `out_dir`; return the manifest's path.

    `files` ({name: bytes}) are written beside them, e.g. knowledge.tsv (its record is in `protocol`).

    The same splits and protocol always give byte-identical files. Everything is written into a
    temporary sibling that replaces `out_dir` at the end (`atomic_dir`), so a crash never leaves a
    half-written prepared dir and a replaced one keeps no stale files. A directory holding files
    but no manifest.json is refused, so a typo cannot overwrite unrelated data.
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    with atomic_dir(out_dir) as tmp_dir:
        for name, data in (files or {}).items():
            (tmp_dir / name).write_bytes(data)
        split_records = {split: _write_split(tmp_dir, split, examples) for split, examples in splits.items()}
        manifest = {**protocol, "splits": split_records}
        (tmp_dir / MANIFEST_NAME).write_text(json.dumps(manifest, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    return out_dir / MANIFEST_NAME


def _write_split(out_dir: Path, split: str, examples: list[dict]) -> dict:
    data = "".join(json.dumps(e, sort_keys=True, ensure_ascii=False) + "\n" for e in examples).encode("utf-8")
    (out_dir / f"{split}.jsonl").write_bytes(data)
    labels = [e["label"] for e in examples]
    return {
        "file": f"{split}.jsonl",
        "num_examples": len(examples),
        "positive_rate": round(sum(labels) / len(labels), 6) if labels else None,
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def check_out_dir(out_dir: Path, overwrite: bool = True) -> None:
    """The overwrite rule for prepared dirs: only an empty or prepared dir may be written, and a
    prepared one (it holds manifest.json) only with `overwrite`. The CLI checks it before loading
    any data; `write_prepared` checks it again and always replaces."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a directory; pick an empty directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).is_file():
        raise DataError(
            f"{out_dir}: not empty and holds no {MANIFEST_NAME}, so it is not a prepared-data "
            "directory; pick an empty directory"
        )
    refuse_overwrite(out_dir, MANIFEST_NAME, overwrite, what="prepared data")


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


def load_split(path, split: str = "test", columns: dict[str, str] | None = None) -> Examples:
    """Examples of `split` from a prepared dir, an Alpaca dir, one .jsonl / Alpaca .json file, or a user's
    `datasets` data (a save_to_disk dir or `hub:owner/name`, with `columns` mapping its column names)."""
    if is_external(path):
        return load_external(path, split, columns)
    if columns:
        raise ConfigError(
            f"--columns maps the columns of a saved `datasets` dir or a hub: dataset; {path} is neither, drop --columns"
        )
    file = split_path(path, split)
    examples = (
        Examples.from_dicts(load_alpaca(file), str(file)) if file.suffix == ".json" else examples_from_jsonl(file)
    )
    if not examples:
        raise DataError(f"{file}: split {split!r} has no examples; prepare the data again")
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
            raise DataError(f"{path}: record {index} (0-based) has no {key!r} key; every record needs {ALPACA_KEYS}")
    answer = str(record["output"]).strip().lower().removesuffix(".")
    if answer not in ALPACA_LABELS:
        raise DataError(f"{path}: record {index} (0-based) has output {record['output']!r}; expected 'Yes.' or 'No.'")
    return {
        "example_id": f"{path.stem}-{index:05d}",
        **{key: record[key] for key in ALPACA_KEYS},
        "label": ALPACA_LABELS[answer],
    }


def dataset_checksum(path, split: str = "test") -> str:
    """sha256 of the bytes of the file holding `split`, or of a `datasets` split's Arrow files (for run records)."""
    if is_external(path):
        return external_checksum(path, split)
    return known_file_sha256(split_path(path, split))
