"""A split's examples: a read-only sequence of dicts over a memory-mapped Arrow file (`datasets.Dataset`).

Examples are nested dicts (histories of item dicts, stats, optional keys) that templates must see exactly as
they were written. Arrow's schema inference would change them (a key missing from one row becomes None, ints
become floats in mixed columns), so each example stays its JSON text, decoded on access, beside a few typed
columns that selection and metrics read without decoding a single example:

- `example`: the JSON text (a prepared split's line, byte for byte);
- `label`: the label as a float, null when it is not a number (checked where 0/1 labels are needed);
- `user_id`: the user id as text, null when absent (UAUC groups, a next-item split's user index);
- `keys`: example_id, user_id and item_id as JSON, exactly as written (predictions.jsonl).

A `.jsonl` split is copied once into `<cache_dir>/examples/<sha256 of the file>-v<format>.arrow`: content-
addressed, so an unchanged file is never parsed again and a changed one gets a new copy, and nothing is written
beside the data (a read-only prepared directory works). `lm.prompt_cache` keeps tokenised prompts beside it.
Splits from a user's own `datasets` data come through `protocols.external`; where the split files are
found, and the manifest, is `protocols.splits`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from promptrec.core.errors import ConfigError, DataError
from promptrec.core.files import cache_dir, known_file_sha256, read_jsonl_lines
from promptrec.core.lazy import LazyModule

datasets = LazyModule("datasets")
pa = LazyModule("pyarrow")

ARROW_FORMAT = 1  # bump when the columns change: copies in the old format are then never read


COLUMNS = ("example", "label", "user_id", "keys")


KEY_NAMES = ("example_id", "user_id", "item_id")


ROWS_PER_BATCH = 2048  # examples per Arrow record batch while copying a split (~5 MB of text)


def arrow_schema():
    return pa.schema(
        [("example", pa.string()), ("label", pa.float64()), ("user_id", pa.string()), ("keys", pa.string())]
    )


def example_columns(example: dict) -> tuple[float | None, str | None, str]:
    """(label, user_id, keys) of one example, as the typed columns hold them."""
    label = example.get("label")
    # bool is an int: True counts as 1, as `label in (0, 1)` always did
    number = float(label) if isinstance(label, (int, float)) else None
    user_id = example.get("user_id")
    keys = json.dumps({k: example[k] for k in KEY_NAMES if k in example}, ensure_ascii=False)
    return number, None if user_id is None else str(user_id), keys


def record_batch(texts: list[str], records: list[dict]):
    labels, users, keys = zip(*(example_columns(r) for r in records)) if records else ((), (), ())
    arrays = [pa.array(texts, pa.string()), pa.array(labels, pa.float64()), pa.array(users, pa.string())]
    return pa.record_batch([*arrays, pa.array(keys, pa.string())], schema=arrow_schema())


def write_arrow(path: Path, batches: Iterable) -> None:
    """Record batches into an Arrow stream file (what `datasets` memory-maps), atomically."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, arrow_schema()) as writer:
            for batch in batches:
                writer.write_batch(batch)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def writable_dir(*candidates: Path) -> Path:
    """The first folder that can be created and written; the system temp dir as a last resort."""
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                return folder
        except OSError:
            continue
    return Path(tempfile.mkdtemp(prefix="promptrec-examples-"))


def examples_cache_dir() -> Path:
    return cache_dir() / "examples"


class Examples(Sequence):
    """A split's examples, in file order; each access decodes a fresh dict (mutating it changes nothing here).

    Behaves as the list of dicts it replaces (len, indexing, slices, iteration, == against a list) and adds
    `select` and column reads (`labels`, `user_ids`, `key_rows`) that decode nothing.
    """

    def __init__(self, dataset, fingerprint: str | None = None, source: str = "", indices=None):
        self.dataset = dataset  # datasets.Dataset with COLUMNS; memory-mapped when read from a file
        self.fingerprint = fingerprint  # identifies the content (and selection); None: held in memory only
        self.source = source  # where the examples came from, for messages
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)  # rows of `dataset`
        self._texts = dataset.data.column("example")

    @classmethod
    def from_dicts(cls, records: list[dict], source: str = "") -> Examples:
        """Examples held in memory (an Alpaca file, a test's list)."""
        texts = [json.dumps(r, ensure_ascii=False) for r in records]
        columns = record_batch(texts, records).to_pydict()
        features = datasets.Features.from_arrow_schema(arrow_schema())
        return cls(datasets.Dataset.from_dict(columns, features=features), None, source)

    def __len__(self) -> int:
        return self.dataset.num_rows if self.indices is None else len(self.indices)

    def _row(self, position: int) -> int:
        if not -len(self) <= position < len(self):
            raise IndexError(f"example {position} out of range (0..{len(self) - 1})")
        position %= len(self)
        return position if self.indices is None else int(self.indices[position])

    def __getitem__(self, position):
        if isinstance(position, slice):
            return self.select(range(len(self))[position])
        return json.loads(self._texts[self._row(position)].as_py())

    def __iter__(self) -> Iterator[dict]:
        if self.indices is None:
            chunks = self._texts.chunks
        else:
            chunks = (
                self._texts.take(self.indices[s : s + ROWS_PER_BATCH]) for s in range(0, len(self), ROWS_PER_BATCH)
            )
        for chunk in chunks:
            for text in chunk.to_pylist():
                yield json.loads(text)

    def __eq__(self, other) -> bool:
        if not isinstance(other, (list, tuple, Examples)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # mutable-sequence semantics, like the list it replaces

    def __repr__(self) -> str:
        return f"<Examples: {len(self)} from {self.source or 'memory'}>"

    def select(self, indices: Iterable[int]) -> Examples:
        """The examples at `indices` (positions in this sequence), sharing the same Arrow data."""
        positions = np.fromiter((int(i) for i in indices), dtype=np.int64)
        rows = positions if self.indices is None else self.indices[positions]
        fingerprint = None
        if self.fingerprint is not None:
            fingerprint = hashlib.sha256(self.fingerprint.encode() + rows.tobytes()).hexdigest()
        return Examples(self.dataset, fingerprint, self.source, rows)

    def selected_dataset(self):
        """The `datasets.Dataset` of exactly these examples (for `Dataset.map`)."""
        # keep_in_memory: the indices mapping is small, and no indices-*.arrow file lands in the cache dir
        return self.dataset if self.indices is None else self.dataset.select(self.indices, keep_in_memory=True)

    def cache_folder(self) -> Path | None:
        """Folder of the Arrow file behind these examples, where derived caches go; None in memory."""
        files = self.dataset.cache_files
        return Path(files[0]["filename"]).parent if self.fingerprint is not None and files else None

    def column(self, name: str):
        column = self.dataset.data.column(name)
        return column if self.indices is None else column.take(self.indices)

    def labels(self) -> np.ndarray:
        """(num_examples,) float labels, NaN where the label is not a number."""
        return self.column("label").to_numpy().astype(np.float64)

    def user_ids(self) -> list[str | None]:
        return self.column("user_id").to_pylist()

    def key_rows(self) -> Iterator[dict]:
        """{example_id, user_id, item_id (those present, as written), label} per example, without decoding it."""
        keys, labels = self.column("keys"), self.column("label")
        for start in range(0, len(self), ROWS_PER_BATCH):
            stop = min(start + ROWS_PER_BATCH, len(self))
            for text, label in zip(keys.slice(start, stop - start).to_pylist(), labels.slice(start, stop - start)):
                yield json.loads(text) | {"label": label.as_py()}


def examples_from_jsonl(path: Path) -> Examples:
    """The examples of a prepared `.jsonl` split, through its Arrow copy (made on first use)."""
    sha256 = known_file_sha256(path)
    name = f"{sha256}-v{ARROW_FORMAT}.arrow"
    arrow_path = next((f / name for f in (examples_cache_dir(), fallback_dir()) if (f / name).is_file()), None)
    if arrow_path is None:
        arrow_path = writable_dir(examples_cache_dir(), fallback_dir()) / name
        write_arrow(arrow_path, jsonl_batches(path))
    return Examples(datasets.Dataset.from_file(str(arrow_path)), sha256, str(path))


def fallback_dir() -> Path:
    """Where Arrow copies go when the cache dir cannot be written (a read-only home, a sandbox)."""
    return Path(tempfile.gettempdir()) / "promptrec-examples"


def jsonl_batches(path: Path) -> Iterator:
    texts: list[str] = []
    records: list[dict] = []
    for line_no, text, record in read_jsonl_lines(path, "prepare the data again"):
        missing = [k for k in ("example_id", "label") if k not in record]
        if missing:
            raise DataError(
                f"{path}:{line_no}: not a prepared example (no {missing[0]!r}); "
                "write splits with `promptrec data prepare`"
            )
        texts.append(text)
        records.append(record)
        if len(texts) == ROWS_PER_BATCH:
            yield record_batch(texts, records)
            texts, records = [], []
    if texts:
        yield record_batch(texts, records)


# ---------------------------------------------------------------- lists or Examples alike


def labels_of(examples) -> np.ndarray:
    if isinstance(examples, Examples):
        return examples.labels()
    # as the `label` column holds them: NaN where a label is missing or not a number
    return np.array([number_or_nan(ex.get("label")) for ex in examples], dtype=np.float64)


def number_or_nan(value) -> float:
    return float(value) if isinstance(value, (int, float)) else float("nan")


def user_ids_of(examples) -> list:
    return examples.user_ids() if isinstance(examples, Examples) else [ex.get("user_id") for ex in examples]


def key_rows_of(examples) -> Iterable[dict]:
    """What predictions.jsonl needs of each example (ids and label): the examples themselves for a list."""
    return examples.key_rows() if isinstance(examples, Examples) else examples


def check_binary_labels(examples) -> None:
    """Evaluation needs 0/1 labels; the first example without one is an error naming it."""
    if isinstance(examples, Examples):
        bad = np.flatnonzero(~np.isin(examples.labels(), (0.0, 1.0)))
        offenders = [examples[int(bad[0])]] if len(bad) else []
    else:
        offenders = [ex for ex in examples if ex.get("label") not in (0, 1)][:1]
    for ex in offenders:
        raise ConfigError(f"example {ex.get('example_id')} has label {ex.get('label')!r}; evaluation needs 0/1 labels")


class ExamplesByUser(Mapping):
    """user_id -> that user's example (the last one when a user appears twice), decoded on access."""

    def __init__(self, examples: Examples):
        self.examples = examples
        self._positions = {user: position for position, user in enumerate(examples.user_ids())}

    def __getitem__(self, user_id) -> dict:
        return self.examples[self._positions[user_id]]

    def __contains__(self, user_id) -> bool:
        return user_id in self._positions

    def __iter__(self) -> Iterator:
        return iter(self._positions)

    def __len__(self) -> int:
        return len(self._positions)
