"""Knowledge-graph facts for prompts: load them, index them, and pick the few that matter per example.

A `KnowledgeGraph` holds (item, relation, entity) facts with readable entity names. They come from
triple tables (`load_triples`), item attributes (`facts_from_attributes`) and the MovieLens sources
in ml-kg (`load_imdb_auxiliary`, `load_dbpedia`). Loaders do not stop at a bad line: they count it in
a `LoadReport`, which the CLI prints as a warning and the manifest keeps. `select_facts` picks, for
one (history, candidate) pair, facts about the candidate and links between the candidate and the
history, under a `Budget`; `enrich` adds them to examples as `example["kg"]`. The wording of facts is
not here: templates decide how they read.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

from promptrec.data import Dataset, read_text
from promptrec.errors import ConfigError, DataError

KNOWLEDGE_FILE = "knowledge.tsv"  # written into a prepared dir beside the splits
KNOWLEDGE_COLUMNS = ("head", "relation", "tail", "tail_item")
MAPPING_FILE = "ml100k_to_ml1m_dbpedia.tsv"
SOURCE_KINDS = ("imdb", "dbpedia", "triples", "attributes")
MAX_LISTED = 5  # malformed lines / unknown ids a report names; the rest are counted
# Facts about a candidate are shown in this relation order; unlisted relations follow, by name.
RELATION_ORDER = (
    "director", "actor", "writer", "composer", "brand", "category", "genre", "producer",
    "cinematographer", "editor", "distributor", "price_band", "year", "also_buy", "also_view",
)  # fmt: skip
# Links through these come after links through any other relation: sharing a genre or a studio
# with a liked movie says less about taste than sharing a director, an actor or a brand.
WEAK_LINK_RELATIONS = frozenset(("genre", "distributor", "producer", "cinematographer", "editor", "year", "price_band"))
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


@dataclass(frozen=True)
class Budget:
    """How much KG text one example may carry, counted in facts, links and titles, not tokens.

    The wording (and so the token count) is the template's; eval/bench_knowledge.py measures what
    the defaults cost with movie_kg and the embedded tokenizer, and a template can slice for less.
    """

    max_facts: int = 3  # facts about the candidate (a director and two actors); about 4-6 tokens each
    max_links: int = 2  # candidate-history links; about 15-25 tokens each
    max_titles: int = 2  # history titles named per link and side (liked / disliked)
    # Links only through entities at most this fraction of items hold: a genre or a big distributor
    # shared with the history says little the prompt does not already show.
    max_link_share: float = 0.05

    def __post_init__(self):
        for name, least in (("max_facts", 0), ("max_links", 0), ("max_titles", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigError(f"knowledge budget {name}={value!r}; use an integer >= {least}")
        if not isinstance(self.max_link_share, (int, float)) or not 0 < self.max_link_share <= 1:
            raise ConfigError(
                f"knowledge budget max_link_share={self.max_link_share!r}; use a fraction in (0, 1], e.g. 0.05"
            )


@dataclass(frozen=True)
class KnowledgeSpec:
    """What `data prepare --kg` asks for: source specs such as "imdb=PATH", and the budget."""

    sources: tuple[str, ...]
    budget: Budget = Budget()


# ---------------------------------------------------------------- loaders


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


# ---------------------------------------------------------------- the graph


class KnowledgeGraph:
    """Facts indexed for selection: item -> ranked facts, item -> entity keys, entity -> degree.

    An entity is (relation, name), or (relation, item id) for an item tail; the same name under
    two relations is two entities, so links say "same director", not just "same person". Names
    match without case and accents, so IMDb's "Milos Forman" and DBpedia's "Miloš Forman" are one
    entity, named as in its first fact in (item, relation, name) order. An item tail is also a key
    of that item itself, so C -also_buy-> H and H -also_buy-> C both link C and H. Rarity is
    idf = log(num_items / degree), where degree counts the items holding the key.
    """

    def __init__(self, facts: Iterable[Fact]):
        self.facts = tuple(sorted(set(facts), key=lambda f: (f.head, f.relation, f.tail, f.tail_item or "")))
        self.entities: list[tuple[str, str]] = []  # entity id -> (relation, readable name)
        ids: dict[tuple, int] = {}
        own: dict[str, set[int]] = {}  # item -> entities of its own facts
        keys: dict[str, set[int]] = {}  # item -> entities it can link through
        for head, relation, tail, tail_item in self.facts:
            identity = (relation, "item", tail_item) if tail_item else (relation, "name", _fold(tail))
            entity = ids.setdefault(identity, len(ids))
            if entity == len(self.entities):
                self.entities.append((relation, tail))
            own.setdefault(head, set()).add(entity)
            keys.setdefault(head, set()).add(entity)
            if tail_item:
                keys.setdefault(tail_item, set()).add(entity)
        degree = [0] * len(self.entities)
        for entities in keys.values():
            for entity in entities:
                degree[entity] += 1
        self.idf = [math.log(max(len(keys), 1) / d) for d in degree]
        self.rank = {r: i for i, r in enumerate(RELATION_ORDER)}
        self._keys = {item: frozenset(entities) for item, entities in keys.items()}
        self._facts = {item: tuple(sorted(entities, key=self._fact_key)) for item, entities in own.items()}

    def _fact_key(self, entity: int) -> tuple:
        # Best-connected first: an actor in 20 catalogue movies is a lead the user may know, one in
        # a single movie usually a minor part. Rarity ranks links instead (see select_facts).
        relation, name = self.entities[entity]
        return (self.rank.get(relation, len(self.rank)), relation, self.idf[entity], name)

    def link_key(self, entity: int, num_shared: int) -> tuple:
        """Sort key of a link: strong relations first, then idf x items sharing it, then names."""
        relation, name = self.entities[entity]
        score = self.idf[entity] * num_shared
        return (relation in WEAK_LINK_RELATIONS, -score, self.rank.get(relation, len(self.rank)), relation, name)

    @property
    def num_items(self) -> int:
        return len(self._facts)

    def facts_about(self, item_id: str) -> tuple[int, ...]:
        """Entity ids of the item's facts: relation order, then best-connected first, then by name."""
        return self._facts.get(item_id, ())

    def keys(self, item_id: str) -> frozenset[int]:
        return self._keys.get(item_id, frozenset())


def build_graph(loaded: Iterable[tuple[list[Fact], LoadReport]], item_ids=None):
    """(graph, reports) merging sources; with `item_ids`, facts about other ids are dropped and counted."""
    facts, reports = [], []
    for source_facts, report in loaded:
        if item_ids is not None:
            unknown = sorted({f.head for f in source_facts if f.head not in item_ids}, key=_id_order)
            report.num_unknown_items += len(unknown)
            report.unknown_items.extend(unknown[: MAX_LISTED - len(report.unknown_items)])
            source_facts = [f for f in source_facts if f.head in item_ids]
        report.num_facts = len(set(source_facts))
        facts.extend(source_facts)
        reports.append(report)
    return KnowledgeGraph(facts), reports


def _fold(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _id_order(item_id: str) -> tuple:
    return (0, int(item_id), "") if item_id.isdigit() else (1, 0, item_id)


# ---------------------------------------------------------------- selection


def select_facts(graph: KnowledgeGraph, item_id: str, history: Sequence[Mapping], budget: Budget = Budget()) -> dict:
    """{"facts": [...], "links": [...]} for one candidate and the user's history (oldest first).

    facts: {"relation", "entity"} about the candidate, in `facts_about` order. links: entities the
    candidate shares with history items, among entities at most `max_link_share` of items hold,
    ranked by `KnowledgeGraph.link_key` (links through WEAK_LINK_RELATIONS last; then idf x number
    of history items sharing the entity, so a rare director shared once beats a big studio shared
    twice); each names up to `max_titles` liked and disliked history titles, most recent first.
    """
    facts = [graph.entities[e] for e in graph.facts_about(item_id)[: budget.max_facts]]
    min_idf = -math.log(budget.max_link_share)  # idf = log(num_items / degree)
    keys = frozenset(e for e in graph.keys(item_id) if graph.idf[e] >= min_idf - 1e-9)
    shared, seen = {}, {item_id}
    for past in reversed(history):
        past_id = str(past["item_id"])
        if past_id in seen:
            continue
        seen.add(past_id)
        for entity in keys & graph.keys(past_id):
            shared.setdefault(entity, []).append(past)
    ranked = sorted(shared.items(), key=lambda pair: graph.link_key(pair[0], len(pair[1])))
    links, said = [], set()
    for entity, pasts in ranked:
        if len(links) == budget.max_links:
            break
        relation, name = graph.entities[entity]
        # Each link must say something new: Woody Allen as director and as actor is one link, and so
        # are two actors shared with the same movie (or C -> H and H -> C bought together).
        same_items = (relation, tuple(sorted(str(p["item_id"]) for p in pasts)))
        if name not in said and same_items not in said:
            said.update((name, same_items))
            links.append(_link((relation, name), pasts, budget.max_titles))
    return {"facts": [{"relation": relation, "entity": name} for relation, name in facts], "links": links}


def _link(entity: tuple[str, str], pasts: list[Mapping], max_titles: int) -> dict:
    liked = [p["title"] for p in pasts if p.get("liked")]
    disliked = [p["title"] for p in pasts if not p.get("liked")]
    return {
        "relation": entity[0],
        "entity": entity[1],
        "liked": liked[:max_titles],
        "disliked": disliked[:max_titles],
        "num_liked": len(liked),
        "num_disliked": len(disliked),
    }


def enrich(examples: Iterable[Mapping], graph: KnowledgeGraph, budget: Budget = Budget()) -> list[dict]:
    """Copies of `examples` with `kg` added (see `select_facts`); every other key is left as it is."""
    enriched = []
    for example in examples:
        if "item_id" not in example:
            raise DataError(
                f"example {example.get('example_id', '?')} has no item_id; KG facts need examples "
                "from `promptrec data prepare` (not Alpaca records)"
            )
        kg = select_facts(graph, str(example["item_id"]), example.get("history", []), budget)
        enriched.append({**example, "kg": kg})
    return enriched


# ---------------------------------------------------------------- prepared data


def load_sources(specs: Sequence[str], dataset: Dataset):
    """(graph, reports) for `--kg KIND=VALUE` specs, restricted to the dataset's items."""
    return build_graph((_load_spec(spec, dataset) for spec in specs), dataset.items)


def _load_spec(spec: str, dataset: Dataset):
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


def attach_knowledge(dataset: Dataset, splits: Mapping[str, list[dict]], spec: KnowledgeSpec):
    """(enriched splits, manifest record, {file name: bytes}) for a prepared dir."""
    graph, reports = load_sources(spec.sources, dataset)
    data = graph_bytes(graph)
    record = {
        "file": KNOWLEDGE_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "num_facts": len(graph.facts),
        "num_items": graph.num_items,
        "budget": asdict(spec.budget),
        "sources": [report.record() for report in reports],
    }
    enriched = {name: enrich(examples, graph, spec.budget) for name, examples in splits.items()}
    return enriched, record, {KNOWLEDGE_FILE: data}


def knowledge_warnings(manifest: Mapping) -> list[str]:
    """The load warnings a manifest's knowledge record holds ([] without one)."""
    sources = manifest.get("knowledge", {}).get("sources", [])
    return [line for record in sources for line in LoadReport(**record).warnings()]


def graph_bytes(graph: KnowledgeGraph) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(KNOWLEDGE_COLUMNS)
    writer.writerows((f.head, f.relation, f.tail, f.tail_item or "") for f in graph.facts)
    return buffer.getvalue().encode("utf-8")


def _knowledge_record(prepared_dir) -> tuple[Path, dict]:
    prepared_dir = Path(prepared_dir)
    manifest = json.loads(read_text(prepared_dir / "manifest.json"))
    if "knowledge" not in manifest:
        raise DataError(
            f"{prepared_dir}: prepared without knowledge-graph facts; prepare it again with --kg "
            "(e.g. --kg imdb=ml-kg/imdb-rkge/auxiliary.txt)"
        )
    return prepared_dir, manifest["knowledge"]


def load_graph(prepared_dir) -> KnowledgeGraph:
    """The graph `data prepare --kg` wrote into `prepared_dir`, checked against its manifest."""
    prepared_dir, record = _knowledge_record(prepared_dir)
    path = prepared_dir / record["file"]
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != record["sha256"]:
        raise DataError(f"{path}: missing or changed since it was prepared (sha256 differs); prepare the data again")
    facts, report = load_triples(path, *KNOWLEDGE_COLUMNS)
    if report.num_malformed:
        raise DataError(f"{path}: {report.warnings()[0]}; prepare the data again")
    return KnowledgeGraph(facts)


def load_budget(prepared_dir) -> Budget:
    """The budget the prepared examples were enriched with, so rank-time examples match them."""
    return Budget(**_knowledge_record(prepared_dir)[1]["budget"])
