"""Knowledge-graph facts for prompts: index them, and pick the few that matter per example.

A `KnowledgeGraph` holds (item, relation, entity) facts with readable entity names. The facts come
from the loaders in `promptrec.knowledge_sources` (triple tables, item attributes, the MovieLens
sources in ml-kg), each with a `LoadReport`; `load_sources` merges the `--kg` specs into one graph.
`select_facts` picks, for one (history, candidate) pair, facts about the candidate and links between
the candidate and the history, under a `Budget`; `enrich` adds them to examples as `example["kg"]`.
`attach_knowledge`, `load_graph` and `load_budget` write and read the graph of a prepared dir. The
wording of facts is not here: templates decide how they read.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from promptrec.core.errors import ConfigError, DataError
from promptrec.core.files import read_text
from promptrec.data.dataset import Dataset
from promptrec.knowledge.sources import MAX_LISTED, Fact, LoadReport, load_source, load_triples

KNOWLEDGE_FILE = "knowledge.tsv"  # written into a prepared dir beside the splits


KNOWLEDGE_COLUMNS = ("head", "relation", "tail", "tail_item")


# Facts about a candidate are shown in this relation order; unlisted relations follow, by name.
RELATION_ORDER = (
    "director", "actor", "writer", "composer", "brand", "category", "genre", "producer",
    "cinematographer", "editor", "distributor", "price_band", "year", "also_buy", "also_view",
)  # fmt: skip


# Links through these come after links through any other relation: sharing a genre or a studio
# with a liked movie says less about taste than sharing a director, an actor or a brand.
WEAK_LINK_RELATIONS = frozenset(("genre", "distributor", "producer", "cinematographer", "editor", "year", "price_band"))


RANKINGS = ("rarity", "embedding")  # Budget.rank_by


def item_label(item_id) -> str:
    """An item's node in KG embeddings."""
    return f"item:{item_id}"


def entity_label(relation: str, name: str, tail_item: str | None = None) -> str:
    """The node of a fact's tail: the item itself for an item tail, else `relation:folded name`."""
    return item_label(tail_item) if tail_item else f"{relation}:{fold_name(name)}"


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
    # How facts and links compete for the budget: "rarity" (relation order, then rare shared entities
    # first) or "embedding" (closest, in KG-embedding space, to the mean of the user's liked history;
    # `knowledge.embeddings`, needs `pip install 'promptrec[kg]'`). Same counts either way.
    rank_by: str = "rarity"

    def __post_init__(self):
        if self.rank_by not in RANKINGS:
            raise ConfigError(f"knowledge budget rank_by={self.rank_by!r}; use one of: {', '.join(RANKINGS)}")
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
        self.labels: list[str] = []  # entity id -> its node in KG embeddings (`item:ID` or `relation:folded name`)
        ids: dict[tuple, int] = {}
        own: dict[str, set[int]] = {}  # item -> entities of its own facts
        keys: dict[str, set[int]] = {}  # item -> entities it can link through
        for head, relation, tail, tail_item in self.facts:
            identity = (relation, "item", tail_item) if tail_item else (relation, "name", fold_name(tail))
            entity = ids.setdefault(identity, len(ids))
            if entity == len(self.entities):
                self.entities.append((relation, tail))
                self.labels.append(entity_label(relation, tail, tail_item))
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


def fold_name(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _id_order(item_id: str) -> tuple:
    return (0, int(item_id), "") if item_id.isdigit() else (1, 0, item_id)


def select_facts(
    graph: KnowledgeGraph, item_id: str, history: Sequence[Mapping], budget=Budget(), embeddings=None, before=None
) -> dict:
    """{"facts": [...], "links": [...]} for one candidate and the user's history (oldest first).

    facts: {"relation", "entity"} about the candidate, in `facts_about` order. links: entities the
    candidate shares with history items, among entities at most `max_link_share` of items hold,
    ranked by `KnowledgeGraph.link_key` (links through WEAK_LINK_RELATIONS last; then idf x number
    of history items sharing the entity, so a rare director shared once beats a big studio shared
    twice); each names up to `max_titles` liked and disliked history titles, most recent first.
    With `budget.rank_by == "embedding"`, `embeddings` (a `knowledge.embeddings.Embeddings`) rank
    both instead: the candidate's facts and the links closest to the mean of the liked history
    items win the same budget (rarity order where no liked history item has a vector). History
    entries with a timestamp after `before` (the example's time) are never used.
    """
    relevance = None
    if budget.rank_by == "embedding":
        if embeddings is None:
            raise ConfigError("knowledge budget rank_by='embedding' needs KG embeddings; pass them or use 'rarity'")
        history = [h for h in history if before is None or h.get("timestamp") is None or h["timestamp"] <= before]
        relevance = _relevance(graph, history, embeddings)
    own = graph.facts_about(item_id)
    if relevance is not None:  # the most relevant facts, shown in the usual order
        chosen = set(sorted(own, key=lambda e: -relevance[e])[: budget.max_facts])
        own = tuple(e for e in own if e in chosen)
    facts = [graph.entities[e] for e in own[: budget.max_facts]]
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
    link_key = graph.link_key if relevance is None else _relevance_key(graph, relevance)
    ranked = sorted(shared.items(), key=lambda pair: link_key(pair[0], len(pair[1])))
    return {"facts": [{"relation": r, "entity": n} for r, n in facts], "links": _links(graph, ranked, budget)}


def _links(graph: KnowledgeGraph, ranked: list, budget: Budget) -> list[dict]:
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
    return links


class _Relevance(dict):
    """entity id -> cosine of its vector to the liked-history profile, computed on first use; -2 without a vector."""

    def __init__(self, graph: KnowledgeGraph, embeddings, profile):
        super().__init__()
        self.graph, self.embeddings, self.profile = graph, embeddings, profile  # profile: (dim,) unit

    def __missing__(self, entity: int) -> float:
        row = self.embeddings.index.get(self.graph.labels[entity])
        self[entity] = -2.0 if row is None else float(self.embeddings.unit[row] @ self.profile)
        return self[entity]


def _relevance(graph: KnowledgeGraph, history: Sequence[Mapping], embeddings) -> dict | None:
    """None (rarity order) where no liked history item has a vector."""
    profile = embeddings.profile(str(h["item_id"]) for h in history if h.get("liked"))  # (dim,) unit, or None
    return None if profile is None else _Relevance(graph, embeddings, profile)


def _relevance_key(graph: KnowledgeGraph, relevance: dict):
    def key(entity: int, num_shared: int) -> tuple:
        relation, name = graph.entities[entity]
        return (relation in WEAK_LINK_RELATIONS, -relevance[entity], graph.rank.get(relation, len(graph.rank)), name)

    return key


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


def enrich(examples: Iterable[Mapping], graph: KnowledgeGraph, budget=Budget(), embeddings=None) -> list[dict]:
    """Copies of `examples` with `kg` added (see `select_facts`); every other key is left as it is."""
    enriched = []
    for example in examples:
        if "item_id" not in example:
            raise DataError(
                f"example {example.get('example_id', '?')} has no item_id; KG facts need examples "
                "from `promptrec data prepare` (not Alpaca records)"
            )
        history, before = example.get("history", []), example.get("timestamp")
        kg = select_facts(graph, str(example["item_id"]), history, budget, embeddings, before)
        enriched.append({**example, "kg": kg})
    return enriched


def load_sources(specs: Sequence[str], dataset: Dataset):
    """(graph, reports) for `--kg KIND=VALUE` specs, restricted to the dataset's items."""
    return build_graph((load_source(spec, dataset) for spec in specs), dataset.items)


def attach_knowledge(dataset: Dataset, splits: Mapping[str, list[dict]], spec: KnowledgeSpec, embed=None):
    """(enriched splits, manifest record, {file name: bytes}) for a prepared dir.

    `embed(graph) -> Embeddings` trains KG embeddings when the budget ranks by embedding.
    """
    graph, reports = load_sources(spec.sources, dataset)
    embeddings = None
    if spec.budget.rank_by == "embedding":
        if embed is None:
            raise ConfigError("knowledge budget rank_by='embedding' needs KG embeddings; use 'rarity'")
        embeddings = embed(graph)
    data = graph_bytes(graph)
    record = {
        "file": KNOWLEDGE_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "num_facts": len(graph.facts),
        "num_items": graph.num_items,
        "budget": asdict(spec.budget),
        "sources": [report.record() for report in reports],
    }
    enriched = {name: enrich(examples, graph, spec.budget, embeddings) for name, examples in splits.items()}
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
