"""The dataset model (users, items, interactions) and the loaders that build it from files.

Two loaders live here: `load_movielens` for the raw MovieLens-100K files and
`load_interactions_table` for any CSV/TSV/JSONL table with named columns. Both check every line at
load time and raise `DataError` naming the file, line and fix: ratings must be finite numbers
(MovieLens: whole stars 1-5). Rows repeating an earlier row exactly (user, item, timestamp, rating,
label) are dropped and counted in `Dataset.warnings`, one line each, which the protocols copy into the
manifest. Turning a dataset into training or evaluation examples is not done here; see
`promptrec.protocols`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from promptrec.core.errors import DataError
from promptrec.core.files import read_text

MOVIELENS_FILES = ("u.data", "u.item", "u.user", "u.genre")


TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")


MOVIELENS_STARS = (1, 5)  # u.data ratings are whole stars in this range


_ITEM_FIXED_FIELDS = 5  # item_id|title|release_date|video_release_date|imdb_url, then genre flags


_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)")


_YEAR_AT_END = re.compile(r"(\d{4})$")


@dataclass(frozen=True)
class User:
    user_id: str
    attributes: dict = field(default_factory=dict)  # e.g. age, gender, occupation


@dataclass(frozen=True)
class Item:
    item_id: str
    title: str
    attributes: dict = field(default_factory=dict)  # e.g. genres, year


@dataclass(frozen=True)
class Interaction:
    user_id: str
    item_id: str
    rating: float | None  # explicit rating when the source has one
    label: int | None  # 1 liked / 0 not, when the source gives a label instead of a rating
    timestamp: int  # unix seconds; orders each user's history


@dataclass(frozen=True)
class Dataset:
    name: str
    users: dict[str, User]
    items: dict[str, Item]
    interactions: list[Interaction]  # in file order; protocols depend on it
    source_paths: tuple[Path, ...] = ()  # files read, so run records can checksum them
    warnings: tuple[str, ...] = ()  # what loading repaired, one line each with counts (e.g. duplicate rows)


def load_movielens(source_dir) -> Dataset:
    """Load the raw MovieLens-100K files (u.data, u.item, u.user, u.genre) from `source_dir`."""
    source_dir = Path(source_dir)
    if source_dir.is_file():
        raise DataError(f"{source_dir}: is a file; pass the directory holding {', '.join(MOVIELENS_FILES)}")
    paths = {name: source_dir / name for name in MOVIELENS_FILES}
    for path in paths.values():
        if not path.is_file():
            raise DataError(
                f"{path}: file not found; the directory must hold the raw MovieLens-100K files "
                f"({', '.join(MOVIELENS_FILES)}) as unpacked from ml-100k.zip"
            )
    genres = _read_genres(paths["u.genre"])
    items = _read_ml_items(paths["u.item"], genres)
    users = _read_ml_users(paths["u.user"])
    interactions, warnings = drop_duplicates(paths["u.data"], _read_ml_ratings(paths["u.data"]))
    _check_references(paths["u.data"], interactions, users, items)
    return Dataset("movielens-100k", users, items, interactions, tuple(paths.values()), warnings)


def _read_lines(path: Path, encoding: str = "utf-8") -> list[tuple[int, str]]:
    """(1-based line number, line) for every non-blank line; blank lines carry no record."""
    # split on "\n" only: str.splitlines() also breaks on latin-1 bytes such as 0x85
    lines = enumerate(read_text(path, encoding).split("\n"), 1)
    return [(n, line.rstrip("\r")) for n, line in lines if line.strip()]


def _split_fields(path: Path, line_no: int, line: str, sep: str, count: int) -> list[str]:
    fields = line.split(sep)
    if len(fields) != count:
        raise DataError(
            f"{path}:{line_no}: expected {count} {sep!r}-separated fields, found {len(fields)} "
            f"in {line[:80]!r}; fix or remove the line"
        )
    return fields


def _parse_int(path: Path, line_no: int, name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{path}:{line_no}: {name} must be an integer, got {value!r}; fix the line") from None


def _read_genres(path: Path) -> list[str]:
    """Genre names in index order (the order of the flag columns in u.item)."""
    by_index = {}
    for line_no, line in _read_lines(path):
        name, index = _split_fields(path, line_no, line, "|", 2)
        by_index[_parse_int(path, line_no, "genre index", index)] = name
    if sorted(by_index) != list(range(len(by_index))):
        raise DataError(f"{path}: genre indices {sorted(by_index)} are not 0..n-1; fix the file")
    return [by_index[i] for i in range(len(by_index))]


def _read_ml_items(path: Path, genres: list[str]) -> dict[str, Item]:
    items = {}
    for line_no, line in _read_lines(path, encoding="latin-1"):
        fields = _split_fields(path, line_no, line, "|", _ITEM_FIXED_FIELDS + len(genres))
        item_id, title, release_date = fields[0], fields[1], fields[2]
        flags = fields[_ITEM_FIXED_FIELDS:]
        if any(flag not in ("0", "1") for flag in flags):
            raise DataError(f"{path}:{line_no}: genre flags must be 0 or 1, got {flags}; fix the line")
        _parse_int(path, line_no, "item_id", item_id)
        if item_id in items:
            raise DataError(f"{path}:{line_no}: duplicate item_id {item_id!r}; remove one of the lines")
        attributes = {
            "genres": [g for g, flag in zip(genres, flags, strict=True) if flag == "1" and g != "unknown"],
            "year": _release_year(release_date, title),
            "release_date": release_date or None,
        }
        items[item_id] = Item(item_id, title, attributes)
    return items


def _release_year(release_date: str, title: str) -> int | None:
    """Year from '01-Jan-1995'; failing that from the last '(1995)' in the title; else None."""
    match = _YEAR_AT_END.search(release_date)
    if match:
        return int(match.group(1))
    in_title = _YEAR_IN_TITLE.findall(title)
    return int(in_title[-1]) if in_title else None


def _read_ml_users(path: Path) -> dict[str, User]:
    users = {}
    for line_no, line in _read_lines(path):
        user_id, age, gender, occupation, zip_code = _split_fields(path, line_no, line, "|", 5)
        _parse_int(path, line_no, "user_id", user_id)
        if user_id in users:
            raise DataError(f"{path}:{line_no}: duplicate user_id {user_id!r}; remove one of the lines")
        attributes = {
            "age": _parse_int(path, line_no, "age", age),
            "gender": gender,
            "occupation": occupation,
            "zip": zip_code,
        }
        users[user_id] = User(user_id, attributes)
    return users


def _read_ml_ratings(path: Path) -> list[Interaction]:
    interactions = []
    low, high = MOVIELENS_STARS
    for line_no, line in _read_lines(path):
        user_id, item_id, rating, timestamp = _split_fields(path, line_no, line.strip(), "\t", 4)
        _parse_int(path, line_no, "user_id", user_id)
        _parse_int(path, line_no, "item_id", item_id)
        stars = _parse_int(path, line_no, "rating", rating)
        if not low <= stars <= high:
            raise DataError(f"{path}:{line_no}: rating {stars} is outside {low}-{high} stars; fix or remove the line")
        timestamp = _parse_int(path, line_no, "timestamp", timestamp)
        interactions.append(Interaction(user_id, item_id, float(stars), None, timestamp))
    return interactions


def drop_duplicates(path: Path, interactions: list[Interaction]) -> tuple[list[Interaction], tuple[str, ...]]:
    """Interactions without exact repeats of an earlier row (first kept), and the warning saying how many."""
    kept = list(dict.fromkeys(interactions))  # Interaction is frozen, so equal rows hash alike
    repeats = len(interactions) - len(kept)
    if not repeats:
        return interactions, ()
    return kept, (f"{path}: dropped {repeats} duplicate rows (same user, item, timestamp and rating as one before)",)


def _check_references(path, interactions: list[Interaction], users: dict, items: dict) -> None:
    """Every interaction must name a known user and item; report the count and the first one."""
    for kind, known, key in (("item", items, "item_id"), ("user", users, "user_id")):
        unknown = [x for x in interactions if getattr(x, key) not in known]
        if unknown:
            first = getattr(unknown[0], key)
            raise DataError(
                f"{path}: {len(unknown)} interactions reference unknown {kind} ids "
                f"(first: {key} {first!r}); add them to the {kind} file or drop those interactions"
            )


def load_interactions_table(interactions_path, items_path=None, users_path=None) -> Dataset:
    """Load interactions (and optional item and user tables) from CSV, TSV or JSON-lines files.

    Interactions need columns user_id, item_id, timestamp and rating and/or label. Items need
    item_id and title; users need user_id; every other column becomes an attribute. Without an
    item table, items are made from the interactions, titled by a `title` column if present.
    """
    interactions_path = Path(interactions_path)
    rows = _read_table(interactions_path)
    _require_columns(interactions_path, rows, ("user_id", "item_id", "timestamp"))
    if rows and not {"rating", "label"} & set(rows[0][1]):
        raise DataError(
            f"{interactions_path}: missing column 'rating' or 'label' (found: {_found(rows)}); "
            "add a rating column (number) or a label column (1 liked, 0 not)"
        )
    interactions = [_parse_interaction(interactions_path, n, row) for n, row in rows]
    interactions, warnings = drop_duplicates(interactions_path, interactions)
    items = _load_items(items_path, rows, interactions_path)
    users = _load_users(users_path, interactions)
    _check_references(interactions_path, interactions, users, items)
    sources = tuple(Path(p) for p in (interactions_path, items_path, users_path) if p is not None)
    return Dataset(interactions_path.stem, users, items, interactions, sources, warnings)


def _read_table(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) pairs from a .csv, .tsv, .jsonl or .json (JSON lines or a JSON list)."""
    suffix = path.suffix.lower()
    if path.is_dir():
        raise DataError(f"{path}: is a directory; pass a {', '.join(TABLE_SUFFIXES)} file")
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(TABLE_SUFFIXES)}")
    text = read_text(path, encoding="utf-8-sig")  # -sig: spreadsheets often write a BOM
    if suffix in (".csv", ".tsv"):
        return _parse_delimited(path, text, "," if suffix == ".csv" else "\t")
    return _parse_json_rows(path, text)


def _parse_delimited(path: Path, text: str, delimiter: str) -> list[tuple[int, dict]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header, rows = None, []
    for values in reader:
        if not values:
            continue  # blank line
        if header is None:
            header = values
            continue
        if len(values) != len(header):
            raise DataError(
                f"{path}:{reader.line_num}: {len(values)} fields but the header has {len(header)} "
                f"({','.join(header)}); fix the line (quote values that contain {delimiter!r})"
            )
        rows.append((reader.line_num, dict(zip(header, values, strict=True))))
    if header is not None and not rows:
        raise DataError(f"{path}: has a header but no rows; add data or pick another file")
    return rows


def _parse_json_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):  # a JSON list, not lines
        records = _json_loads(path, 1, text)
        numbered = list(enumerate(records if isinstance(records, list) else [records], 1))
    else:
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        numbered = [(n, _json_loads(path, n, line)) for n, line in lines]
    for line_no, record in numbered:
        if not isinstance(record, dict):
            raise DataError(
                f"{path}:{line_no}: expected a JSON object per row, got {type(record).__name__}; "
                'write one {"column": value, ...} object per line'
            )
    return numbered


def _json_loads(path: Path, line_no: int, text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{line_no}: invalid JSON ({err.msg}); fix the line") from None


def _found(rows) -> str:
    return ",".join(rows[0][1]) if rows else "nothing, the file is empty"


def _require_columns(path: Path, rows, columns: tuple[str, ...]) -> None:
    present = set(rows[0][1]) if rows else set()
    for column in columns:
        if column not in present:
            fix = f"rename the column or add one named {column!r}"
            if len(present) == 1 and any(s in next(iter(present)) for s in (",", ";", "\t", "|")):
                fix = "the header has one column, so the file uses another separator; save it comma-separated "
                fix += "as .csv or tab-separated as .tsv"
            raise DataError(f"{path}: missing column {column!r} (found: {_found(rows)}); {fix}")


def _cell(path: Path, line_no: int, row: dict, column: str):
    if column not in row:
        raise DataError(f"{path}:{line_no}: missing key {column!r}; add it to the row")
    return row[column]


def _parse_id(path: Path, line_no: int, row: dict, column: str) -> str:
    value = _cell(path, line_no, row, column)
    if value is None or isinstance(value, (bool, list, dict)) or str(value).strip() == "":
        raise DataError(f"{path}:{line_no}: {column} is {value!r}; give every row an id")
    return str(value).strip()


def _parse_interaction(path: Path, line_no: int, row: dict) -> Interaction:
    rating = _parse_rating(path, line_no, row.get("rating"))
    label = _parse_label(path, line_no, row.get("label"))
    if rating is None and label is None:
        raise DataError(f"{path}:{line_no}: no rating and no label; give the row one of them")
    return Interaction(
        user_id=_parse_id(path, line_no, row, "user_id"),
        item_id=_parse_id(path, line_no, row, "item_id"),
        rating=rating,
        label=label,
        timestamp=_parse_timestamp(path, line_no, _cell(path, line_no, row, "timestamp")),
    )


def _parse_rating(path: Path, line_no: int, value) -> float | None:
    if value is None or value == "":
        return None
    try:
        rating = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        rating = math.nan
    if not math.isfinite(rating):  # float() reads 'nan' and 'inf'; every protocol compares ratings
        raise DataError(f"{path}:{line_no}: rating must be a finite number, got {value!r}; fix or remove the line")
    return rating


def _parse_label(path: Path, line_no: int, value) -> int | None:
    if value is None or value == "":
        return None
    if str(value).strip().lower() in ("1", "true"):
        return 1
    if str(value).strip().lower() in ("0", "false"):
        return 0
    raise DataError(f"{path}:{line_no}: label must be 1 (liked) or 0 (not), got {value!r}")


def _parse_timestamp(path: Path, line_no: int, value) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not number.is_integer() or isinstance(value, bool):
        raise DataError(
            f"{path}:{line_no}: timestamp must be an integer (unix seconds), got {value!r}; convert dates to unix time"
        )
    return int(number)


def _load_items(items_path, interaction_rows, interactions_path: Path) -> dict[str, Item]:
    if items_path is None:
        items = {}
        for line_no, row in interaction_rows:
            item_id = _parse_id(interactions_path, line_no, row, "item_id")
            items.setdefault(item_id, Item(item_id, str(row.get("title") or item_id), {}))
        return items
    path = Path(items_path)
    rows = _read_table(path)
    _require_columns(path, rows, ("item_id", "title"))
    items = {}
    for line_no, row in rows:
        item_id = _parse_id(path, line_no, row, "item_id")
        if item_id in items:
            raise DataError(f"{path}:{line_no}: duplicate item_id {item_id!r}; remove one of the rows")
        attributes = {k: v for k, v in row.items() if k not in ("item_id", "title")}
        items[item_id] = Item(item_id, str(_cell(path, line_no, row, "title")), attributes)
    return items


def _load_users(users_path, interactions: list[Interaction]) -> dict[str, User]:
    if users_path is None:
        return {x.user_id: User(x.user_id, {}) for x in interactions}
    path = Path(users_path)
    rows = _read_table(path)
    _require_columns(path, rows, ("user_id",))
    users = {}
    for line_no, row in rows:
        user_id = _parse_id(path, line_no, row, "user_id")
        if user_id in users:
            raise DataError(f"{path}:{line_no}: duplicate user_id {user_id!r}; remove one of the rows")
        users[user_id] = User(user_id, {k: v for k, v in row.items() if k != "user_id"})
    return users
