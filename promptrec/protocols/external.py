"""A user's own `datasets` data as a split: a `save_to_disk` directory or a cached hub dataset, columns mapped.

`--data DIR` where DIR holds dataset_dict.json (a DatasetDict: one dataset per split) or state.json (one
Dataset: the same rows whatever the split, like a single .jsonl file); `--data hub:owner/name` loads the split
with `datasets.load_dataset`, which under HF_HUB_OFFLINE=1 reads only the local cache.

`--columns label=clicked,user_id=uid` says which column feeds each name that templates and metrics read;
the other columns keep their names. `label` is required and must be 0/1; `example_id` is made up
(`<split>-00042`, the row number) when there is none; ids become text, as prepared splits hold them. Each row
becomes an example dict, kept as JSON in an `Examples` Arrow file written by `Dataset.map` into the examples
cache, named by the sha256 of the source's Arrow files, the split and the mapping (so it is made once).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from promptrec.core.errors import ConfigError, DataError, first_line
from promptrec.core.files import known_file_sha256
from promptrec.core.lazy import LazyModule
from promptrec.protocols.examples import (
    ARROW_FORMAT,
    Examples,
    arrow_schema,
    examples_cache_dir,
    fallback_dir,
    record_batch,
    writable_dir,
)

datasets = LazyModule("datasets")
pa = LazyModule("pyarrow")

HUB_PREFIX = "hub:"


DICT_FILE = "dataset_dict.json"  # save_to_disk of a DatasetDict


STATE_FILE = "state.json"  # save_to_disk of one Dataset


COLUMNS_EXAMPLE = "--columns label=clicked,user_id=uid"


def is_external(path) -> bool:
    """Whether `path` names a user's `datasets` data rather than prepared files."""
    if str(path).startswith(HUB_PREFIX):
        return True
    path = Path(path)
    return path.is_dir() and any((path / name).is_file() for name in (DICT_FILE, STATE_FILE))


def is_single_split(path) -> bool:
    """A saved single Dataset: its rows serve every split, so there is no separate valid split."""
    path = Path(path)
    return not str(path).startswith(HUB_PREFIX) and path.is_dir() and (path / STATE_FILE).is_file()


def parse_columns(text: str | None) -> dict[str, str]:
    """`label=clicked,user_id=uid` -> {"label": "clicked", "user_id": "uid"} (name templates read -> column)."""
    mapping: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in (text or "").split(","))):
        name, sep, column = (s.strip() for s in pair.partition("="))
        if not sep or not name or not column:
            raise ConfigError(f"--columns: {pair!r} is not NAME=COLUMN; write e.g. {COLUMNS_EXAMPLE}")
        if name in mapping:
            raise ConfigError(f"--columns maps {name!r} twice ({mapping[name]!r} and {column!r}); keep one")
        mapping[name] = column
    return mapping


def open_source(path, split: str):
    """The `datasets.Dataset` of `split` behind `path` (a save_to_disk dir or hub:owner/name)."""
    spec = str(path)
    if spec.startswith(HUB_PREFIX):
        name = spec[len(HUB_PREFIX) :]
        try:
            return datasets.load_dataset(name, split=split)
        except (ConnectionError, OSError, ValueError) as error:  # not cached offline, unknown split, no such id
            raise DataError(
                f"cannot load hub dataset {name!r} split {split!r} ({first_line(error)}); with HF_HUB_OFFLINE=1 "
                "it must already be in the local datasets cache: load it once online, or pass a save_to_disk dir"
            ) from None
    try:
        loaded = datasets.load_from_disk(spec)
    except (OSError, ValueError) as error:  # a saved dir with files missing or damaged
        raise DataError(f"{spec}: cannot load the saved dataset ({first_line(error)}); save it again") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(f"{spec}: no split {split!r}; available splits: {', '.join(loaded)}; pick one of them")
        return loaded[split]
    return loaded


def source_checksum(source) -> str:
    """sha256 over the Arrow files behind `source` (their own sha256s, in order), else over its batches."""
    digest = hashlib.sha256()
    files = [f["filename"] for f in source.cache_files]
    if files:
        for filename in files:
            digest.update(known_file_sha256(filename).encode())
    else:
        for batch in source.with_format("arrow").iter(batch_size=10_000):
            for sink in batch.to_batches():
                digest.update(sink.serialize())
    return digest.hexdigest()


def external_checksum(path, split: str) -> str:
    return source_checksum(open_source(path, split))


def check_mapping(source, mapping: dict[str, str], where: str) -> dict[str, str]:
    """The mapping, checked against the source's columns; `label` must come from somewhere."""
    for name, column in mapping.items():
        if column not in source.column_names:
            raise DataError(
                f"{where}: --columns {name}={column}: no column {column!r}; columns: "
                f"{', '.join(source.column_names)}; map one of them"
            )
    if "label" not in mapping and ("label" not in source.column_names or "label" in mapping.values()):
        raise DataError(
            f"{where}: no 'label' column; map your 0/1 column with --columns label=<column> "
            f"(columns: {', '.join(source.column_names)})"
        )
    return mapping


def check_labels(source, column: str, where: str) -> None:
    """Every label is 0 or 1 (ints, bools or whole floats); the first other value is an error naming its row."""
    values = source.with_format("arrow")[column]
    try:
        numbers = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        numbers = np.full(len(values), np.nan)
    bad = np.flatnonzero(~np.isin(numbers, (0.0, 1.0)))
    if len(bad):
        row = int(bad[0])
        raise DataError(
            f"{where}: column {column!r} (the label) holds {values[row].as_py()!r} at row {row}; labels must be "
            "0 or 1: map a 0/1 column with --columns label=<column> or convert yours first"
        )


def row_example(row: dict, mapping: dict[str, str], split: str, index: int, where: str) -> dict:
    """One row as an example: mapped columns under their new names, the rest as they are, ids as text."""
    example = {}
    sources = {column: [n for n, c in mapping.items() if c == column] for column in mapping.values()}
    for column, value in row.items():
        if column in sources:
            example.update(dict.fromkeys(sources[column], value))
        elif column not in mapping:  # a column that a mapped one replaces is dropped
            example[column] = value
    example["label"] = int(example["label"])
    for key in ("example_id", "user_id", "item_id"):
        if example.get(key) is not None:
            example[key] = str(example[key])
    if "example_id" not in example:
        example = {"example_id": f"{split}-{index:05d}", **example}
    return example


def example_text(example: dict, where: str) -> str:
    try:
        return json.dumps(example, ensure_ascii=False)
    except TypeError as error:
        column = next(k for k, v in example.items() if not _is_json(v))
        raise DataError(
            f"{where}: column {column!r} holds values JSON cannot hold ({first_line(error)}); "
            "drop or convert that column before passing the dataset"
        ) from None


def _is_json(value) -> bool:
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


def convert_batch(batch: dict, indices: list[int], mapping: dict[str, str], split: str, where: str) -> dict:
    names = list(batch)
    records = [
        row_example({n: batch[n][offset] for n in names}, mapping, split, index, where)
        for offset, index in enumerate(indices)
    ]
    return record_batch([example_text(r, where) for r in records], records).to_pydict()


def load_external(path, split: str, columns: dict[str, str] | None) -> Examples:
    """The examples of `split` of a user's `datasets` data, converted once into the examples cache."""
    where = f"{path} split {split!r}"
    source = open_source(path, split)
    mapping = check_mapping(source, dict(columns or {}), where)
    check_labels(source, mapping.get("label", "label"), where)
    if source.num_rows == 0:
        raise DataError(f"{where}: no rows; pass a split that has examples")
    inputs = [source_checksum(source), split, sorted(mapping.items()), ARROW_FORMAT]
    fingerprint = hashlib.sha256(json.dumps(inputs).encode()).hexdigest()
    name = f"{fingerprint}-v{ARROW_FORMAT}.arrow"
    cached = next((f / name for f in (examples_cache_dir(), fallback_dir()) if (f / name).is_file()), None)
    converted = source.map(
        convert_batch,
        batched=True,
        with_indices=True,
        fn_kwargs={"mapping": mapping, "split": split, "where": where},
        remove_columns=source.column_names,
        features=datasets.Features.from_arrow_schema(arrow_schema()),
        cache_file_name=str(cached or writable_dir(examples_cache_dir(), fallback_dir()) / name),
        load_from_cache_file=True,
        new_fingerprint=fingerprint,
        desc="converting examples",
    )
    return Examples(converted, fingerprint, str(path))
