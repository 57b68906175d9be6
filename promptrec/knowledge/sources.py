"""Knowledge-graph sources: read each kind of fact file into `Fact`s, counting what could not be read.

`load_triples` reads a triple table, `facts_from_attributes` turns item attributes into facts, and
`load_imdb_auxiliary` and `load_dbpedia` read the MovieLens sources in ml-kg; `load_source` picks one
of them for a `--kg KIND=VALUE` spec. Loaders do not stop at a bad line: they count it in a
`LoadReport`, which the CLI prints as a warning and the manifest keeps. Merging sources into a graph,
selecting facts per example and the prepared-dir files live in `promptrec.knowledge`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

from promptrec.core.errors import ConfigError, DataError
from promptrec.core.files import read_text
from promptrec.data.dataset import Dataset

MAPPING_FILE = "ml100k_to_ml1m_dbpedia.tsv"


SOURCE_KINDS = ("imdb", "dbpedia", "triples", "attributes")


MAX_LISTED = 5  # malformed lines / unknown ids a report names; the rest are counted


IMDB_RELATIONS = {"genre": "genre", "director": "director", "actors": "actor"}


DBPEDIA_RELATIONS = {
    "director": "director", "starring": "actor", "writer": "writer", "producer": "producer",
    "musicComposer": "composer", "cinematography": "cinematographer", "editing": "editor",
    "distributor": "distributor",
}  # fmt: skip


ATTRIBUTE_RELATIONS = {
    "genres": "genre", "categories": "category", "category": "category", "brand": "brand",
    "year": "year", "price": "price_band", "also_buy": "also_buy", "also_bought": "also_buy",
    "also_view": "also_view", "also_viewed": "also_view",
}  # fmt: skip


ITEM_LINK_ATTRIBUTES = ("also_buy", "also_bought", "also_view", "also_viewed")  # values are item ids


DEFAULT_ATTRIBUTES = ("genres", "year", "brand", "categories", "price", "also_buy", "also_view")


PRICE_BANDS = ((10, "under $10"), (25, "$10-25"), (50, "$25-50"), (100, "$50-100"))  # else "$100 and up"


DBPEDIA_RESOURCE = "http://dbpedia.org/resource/"


_IMDB_ID = re.compile(r"id:(\d+)[|:](.*)")  # id 1581's line uses ':' where the others use '|'


_QUALIFIER = re.compile(r"\s+\([^()]*\)$")  # DBpedia's "(film)", "(actor)": not part of the name


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


class Fact(NamedTuple):
    head: str  # item id
    relation: str
    tail: str  # readable name (for an item tail: its title)
    tail_item: str | None = None  # item id when the tail is an item (also_buy, also_view)


@dataclass
class LoadReport:
    """What one source gave and what it could not; `warnings()` for the CLI, `record()` for manifests."""

    source: str  # kind and file name, e.g. "imdb auxiliary.txt"
    files: dict = field(default_factory=dict)  # file name -> sha256 of every file read
    num_facts: int = 0
    num_malformed: int = 0
    malformed: list = field(default_factory=list)  # first MAX_LISTED "file:line" locations
    num_unknown_items: int = 0  # distinct item ids not in the dataset; their facts are dropped
    unknown_items: list = field(default_factory=list)  # first MAX_LISTED of them
    num_unmapped: int = 0  # rows about things outside the dataset (ML-1M-only movies): expected

    def add_malformed(self, where: str) -> None:
        self.num_malformed += 1
        if len(self.malformed) < MAX_LISTED:
            self.malformed.append(where)

    def warnings(self) -> list[str]:
        lines = []
        if self.num_malformed:
            lines.append(
                f"{self.source}: skipped {self.num_malformed} malformed line(s) (first: "
                f"{', '.join(self.malformed)}); fix them to keep their facts"
            )
        if self.num_unknown_items:
            lines.append(
                f"{self.source}: {self.num_unknown_items} item id(s) are not in the dataset (first: "
                f"{', '.join(self.unknown_items)}); their facts were dropped; check the id mapping"
            )
        return lines

    def record(self) -> dict:
        return asdict(self)


def _clean(text) -> str:
    return " ".join(str(text).split())  # one line, single spaces: names go into TSV files and prompts


def _file_record(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path")
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}


def _lines(path: Path) -> list[tuple[int, str]]:
    text = read_text(path, encoding="utf-8-sig")  # auxiliary.txt starts with a BOM
    return [(n, line.strip()) for n, line in enumerate(text.split("\n"), 1) if line.strip()]


def load_triples(path, head="head", relation="relation", tail="tail", tail_item=None):
    """(facts, report) from a CSV (.csv) or TSV (other suffixes) table with a header row.

    `head` names the item-id column, `relation` and `tail` the relation and readable entity name;
    `tail_item` optionally names a column of item ids for item-to-item facts.
    """
    path = Path(path)
    delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    reader = csv.reader(io.StringIO(read_text(path, "utf-8-sig"), newline=""), delimiter=delimiter)
    header = next(reader, [])
    columns = [c for c in (head, relation, tail, tail_item) if c]
    for column in columns:
        if column not in header:
            raise DataError(
                f"{path}: no column {column!r} (found: {', '.join(header) or 'nothing'}); name the "
                "columns with head=, relation=, tail= or rename them in the file"
            )
    where = [header.index(c) for c in columns]
    report, facts = LoadReport(f"triples {path.name}", _file_record(path)), []
    for values in reader:
        if not values:
            continue  # blank line
        row = [_clean(values[i]) for i in where] if len(values) == len(header) else []
        if len(row) < 3 or not all(row[:3]):
            report.add_malformed(f"{path.name}:{reader.line_num}")
            continue
        facts.append(Fact(row[0], row[1], row[2], (row[3] or None) if tail_item else None))
    return facts, report


def load_imdb_auxiliary(path):
    """(facts, report) from ml-kg's IMDb auxiliary.txt: `id:N|genre:a,b|director:c|actors:d,e`.

    The two odd lines the data README describes parse: id 1581's ':' after the id, and id 40's
    capital 'Actors:' and space after 'director:' (keys are case-insensitive, values stripped).
    A line without `id:N`, or with a field that is not genre/director/actors, is malformed.
    """
    path = Path(path)
    report, facts = LoadReport(f"imdb {path.name}", _file_record(path)), []
    for line_no, line in _lines(path):
        parsed = _imdb_facts(line)
        if parsed is None:
            report.add_malformed(f"{path.name}:{line_no}")
        else:
            facts.extend(parsed)
    return facts, report


def _imdb_facts(line: str) -> list[Fact] | None:
    match = _IMDB_ID.fullmatch(line)
    if match is None:
        return None
    facts = []
    for part in match.group(2).split("|"):
        key, sep, values = part.partition(":")
        relation = IMDB_RELATIONS.get(key.strip().lower())
        if not sep or relation is None:
            return None
        facts.extend(Fact(match.group(1), relation, _clean(v)) for v in values.split(",") if v.strip())
    return facts


def load_dbpedia(dbpedia_dir, mapping_path):
    """(facts, report) from DBpedia `dbo_<relation>.edgelist` files keyed by MovieLens-1M movies.

    `mapping_path` is ml-kg's ml100k_to_ml1m_dbpedia.tsv: each ML-100K item id with its DBpedia
    URI (rows with match 'none' or no URI are skipped). Edgelist rows about movies no ML-100K item
    maps to are counted as unmapped; a row that is not two DBpedia resources is malformed.
    """
    dbpedia_dir, mapping_path = Path(dbpedia_dir), Path(mapping_path)
    files = sorted(p for p in dbpedia_dir.glob("dbo*.edgelist") if p.is_file()) if dbpedia_dir.is_dir() else []
    if not files:
        raise DataError(f"{dbpedia_dir}: no dbo_<relation>.edgelist files; pass the dbpedia-ml1m folder of ml-kg")
    report = LoadReport(f"dbpedia {dbpedia_dir.name}", _file_record(mapping_path))
    items_of = _dbpedia_mapping(mapping_path, report)
    facts = []
    for file in files:
        report.files.update(_file_record(file))
        name = file.stem[4:]  # dbo_director / dbo:director
        relation = DBPEDIA_RELATIONS.get(name, name)
        for line_no, line in _lines(file):
            parts = line.split()
            if len(parts) != 2 or not all(p.startswith(DBPEDIA_RESOURCE) for p in parts):
                report.add_malformed(f"{file.name}:{line_no}")
                continue
            heads = items_of.get(parts[0], ())
            report.num_unmapped += not heads
            facts.extend(Fact(head, relation, entity_name(parts[1])) for head in heads)
    return facts, report


def _dbpedia_mapping(path: Path, report: LoadReport) -> dict[str, list[str]]:
    """DBpedia URI -> the ML-100K item ids mapped to it (a few ML-100K titles appear twice)."""
    reader = csv.DictReader(io.StringIO(read_text(path, "utf-8-sig"), newline=""), delimiter="\t")
    for column in ("ml100k_item_id", "dbpedia_uri", "match"):
        if column not in (reader.fieldnames or []):
            raise DataError(
                f"{path}: no column {column!r} (found: {', '.join(reader.fieldnames or []) or 'nothing'}); "
                f"pass ml-kg's {MAPPING_FILE}"
            )
    items_of: dict[str, list[str]] = {}
    for row in reader:
        item_id, uri = _clean(row["ml100k_item_id"] or ""), _clean(row["dbpedia_uri"] or "")
        if None in row or None in row.values() or not item_id:
            report.add_malformed(f"{path.name}:{reader.line_num}")
        elif uri and row["match"] != "none":
            items_of.setdefault(uri, []).append(item_id)
    return items_of


def entity_name(uri: str) -> str:
    """A URI's readable last segment: '.../Mark_Stevens_(film_editor)' -> 'Mark Stevens'."""
    name = _clean(urllib.parse.unquote(uri.rstrip("/").rsplit("/", 1)[-1]).replace("_", " "))
    return _QUALIFIER.sub("", name) or name


def facts_from_attributes(items, attributes: Sequence[str] = DEFAULT_ATTRIBUTES):
    """(facts, report) from item attributes: `items` is a Dataset or a mapping of id -> Item.

    A list value gives one fact per element; `price` gives a price band; also_buy / also_view give
    links to other items of `items` (ids outside it are counted as unmapped). An attribute that no
    item has is an error, so a typo cannot silently give no facts.
    """
    items = items.items if isinstance(items, Dataset) else items
    report, facts = LoadReport(f"attributes {','.join(attributes)}"), []
    present = {name for item in items.values() for name in item.attributes}
    for attribute in attributes:
        if attribute not in present:
            raise DataError(
                f"no item has attribute {attribute!r}; attributes present: {', '.join(sorted(present)) or 'none'}"
            )
    for item in items.values():
        for attribute in attributes:
            facts.extend(_attribute_facts(item, attribute, items, report))
    return facts, report


def _attribute_facts(item, attribute: str, items: Mapping, report: LoadReport) -> list[Fact]:
    value = item.attributes.get(attribute)
    values = [v for v in (value if isinstance(value, (list, tuple)) else [value]) if _clean(v or "")]
    relation = ATTRIBUTE_RELATIONS.get(attribute, attribute)
    if attribute in ITEM_LINK_ATTRIBUTES:
        linked = [str(v) for v in values if str(v) in items and str(v) != item.item_id]
        report.num_unmapped += len(values) - len(linked)
        return [Fact(item.item_id, relation, _clean(items[v].title), v) for v in linked]
    if attribute == "price":
        bands = [price_band(v) for v in values]
        for v in (v for v, band in zip(values, bands) if band is None):
            report.add_malformed(f"item {item.item_id} price {v!r}")
        return [Fact(item.item_id, relation, band) for band in bands if band]
    return [Fact(item.item_id, relation, _clean(v)) for v in values]


def price_band(price) -> str | None:
    """'$25.00', 25 or '$10.99 - $30.00' (first number) -> '$25-50'; None when there is no number."""
    match = _NUMBER.search(str(price).replace(",", ""))
    if match is None:
        return None
    amount = float(match.group())
    return next((band for limit, band in PRICE_BANDS if amount < limit), "$100 and up")


def load_source(spec: str, dataset: Dataset):
    """(facts, report) for one `--kg KIND=VALUE` spec; attributes come from `dataset`."""
    kind, sep, value = spec.partition("=")
    if not sep or kind not in SOURCE_KINDS or not value:
        raise ConfigError(
            f"--kg {spec!r}: expected KIND=VALUE with KIND one of {', '.join(SOURCE_KINDS)}, e.g. "
            "imdb=ml-kg/imdb-rkge/auxiliary.txt, dbpedia=ml-kg/dbpedia-ml1m[,MAPPING.tsv], "
            "triples=facts.tsv, attributes=brand,categories,price,also_buy"
        )
    if kind == "imdb":
        return load_imdb_auxiliary(value)
    if kind == "triples":
        return load_triples(value)
    if kind == "attributes":
        return facts_from_attributes(dataset, tuple(a for a in value.split(",") if a))
    directory, _, mapping = value.partition(",")
    return load_dbpedia(directory, mapping or _default_mapping(Path(directory)))


def _default_mapping(directory: Path) -> Path:
    for candidate in (directory / MAPPING_FILE, directory.parent / MAPPING_FILE):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"--kg dbpedia={directory}: no {MAPPING_FILE} in it or beside it; pass it as dbpedia=DIR,MAPPING.tsv"
    )
