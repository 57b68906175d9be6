"""Knowledge-graph embeddings: items, entities (and optionally users) as vectors in one space.

PyKEEN trains the model (TransE by default; any PyKEEN model name works) on the triples of a
prepared dir's `knowledge.tsv`, optionally plus (user, liked, item) triples from interactions the
protocol lets a model learn from (see `liked_triples`). It is an optional extra
(`pip install 'promptrec[kg]'`), imported only when embeddings are trained. The entity vectors are
cached beside the prepared data in `kg_embeddings/` (`embeddings.safetensors` plus
`embeddings.json`: the config, the sha256 of the triples, versions); `cached_embeddings` reuses them
when config and checksum match and trains again otherwise. Reading them needs numpy only.

What the vectors are used for lives with the users: hybrid features (`kg_similarities`), the `kg`
retriever (`baselines.retrievers`), fact selection by relevance (`graph.select_facts`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from promptrec import __version__
from promptrec.core.errors import ConfigError, DataError
from promptrec.core.files import atomic_dir, read_jsonl, read_text, write_json
from promptrec.knowledge.graph import KnowledgeGraph, entity_label, item_label, load_graph

EMBEDDINGS_DIR = "kg_embeddings"  # inside the prepared dir
VECTORS_FILE = "embeddings.safetensors"
RECORD_FILE = "embeddings.json"
LIKED = "liked"  # relation of the user -> item triples
INSTALL_HINT = "pip install 'promptrec[kg]' (PyKEEN)"


@dataclass(frozen=True)
class EmbeddingConfig:
    model: str = "TransE"  # a PyKEEN model name (TransE, RotatE, DistMult, ...)
    dim: int = 64  # embedding dimension; small: ~12k entities on ML-100K + ml-kg
    num_epochs: int = 20  # about 8 s per run on ML-100K + ml-kg facts, one CPU thread
    batch_size: int = 1024  # triples per optimizer step
    learning_rate: float = 0.01  # Adam
    seed: int = 0  # PyKEEN's random_seed: same seed + triples + threads -> identical vectors
    interactions: bool = False  # add (user, liked, item) triples from the train split (see liked_triples)

    def __post_init__(self):
        for name in ("dim", "num_epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"kg embedding {name}={value!r}; use a positive integer")
        if not isinstance(self.learning_rate, (int, float)) or self.learning_rate <= 0:
            raise ConfigError(f"kg embedding learning_rate={self.learning_rate!r}; use a positive number, e.g. 0.01")


def graph_triples(graph: KnowledgeGraph) -> list[tuple[str, str, str]]:
    """(head, relation, tail) labels of every fact: items are `item:ID`, entities `relation:folded name`.

    Entities match as in `KnowledgeGraph` (same relation, name without case and accents); an item
    tail (also_buy) is the item's own node.
    """
    return [(item_label(f.head), f.relation, entity_label(f.relation, f.tail, f.tail_item)) for f in graph.facts]


def liked_triples(prepared_dir) -> list[tuple[str, str, str]]:
    """(user:U, liked, item:I) for the liked interactions of the train split only.

    Next-item dirs: interactions tagged `train` (before every user's valid and test targets).
    TALLRec-style dirs: the train examples' liked targets and liked history items; valid and test
    examples are other users' later windows, so none of their labels enter.
    """
    prepared_dir = Path(prepared_dir)
    manifest = json.loads(read_text(prepared_dir / "manifest.json"))
    pairs = set()
    if manifest.get("name") == "next-item":
        threshold = manifest["parameters"]["like_threshold"]
        for _, row in read_jsonl(prepared_dir / "interactions.jsonl", "prepare the directory again"):
            if row["split"] == "train" and row["rating"] > threshold:
                pairs.add((str(row["user_id"]), str(row["item_id"])))
    else:
        for _, example in read_jsonl(prepared_dir / "train.jsonl", "prepare the directory again"):
            user = str(example.get("user_id"))
            if example.get("label") == 1:
                pairs.add((user, str(example["item_id"])))
            pairs.update((user, str(h["item_id"])) for h in example.get("history") or [] if h.get("liked"))
    return [(f"user:{user}", LIKED, item_label(item)) for user, item in sorted(pairs)]


def triples_sha256(triples: Iterable[tuple[str, str, str]]) -> str:
    digest = hashlib.sha256()
    for triple in sorted(set(triples)):
        digest.update(("\t".join(triple) + "\n").encode("utf-8"))
    return digest.hexdigest()


class Embeddings:
    """Entity label -> vector (numpy); cosine similarities between items and history means."""

    def __init__(self, labels: Sequence[str], vectors: np.ndarray):
        self.labels = list(labels)
        self.vectors = np.asarray(vectors, dtype=np.float32)  # (entities, dim)
        self.index = {label: i for i, label in enumerate(self.labels)}
        norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
        self.unit = self.vectors / np.where(norms == 0, 1.0, norms)  # (entities, dim)

    def item_vector(self, item_id) -> np.ndarray | None:
        row = self.index.get(item_label(item_id))
        return None if row is None else self.vectors[row]

    def profile(self, item_ids: Iterable) -> np.ndarray | None:
        """The items' mean unit vector scaled to unit length: the direction every cosine here is taken to
        (None when no item has a vector, or their vectors cancel out)."""
        rows = [self.index[label] for label in map(item_label, item_ids) if label in self.index]
        if not rows:
            return None
        mean = self.unit[rows].mean(axis=0)
        norm = float(np.linalg.norm(mean))
        return mean / norm if norm > 0 else None

    def similarity(self, item_id, profile: np.ndarray | None) -> float | None:
        """Cosine of the item's vector and a `profile` (None when either is missing)."""
        row = self.index.get(item_label(item_id))
        return None if row is None or profile is None else float(self.unit[row] @ profile)


def train_embeddings(triples: Sequence[tuple[str, str, str]], config: EmbeddingConfig = EmbeddingConfig()):
    """Train `config.model` with PyKEEN on `triples` (CPU, seeded) and return the entity vectors."""
    if not triples:
        raise DataError("no triples to embed; prepare the data with --kg (and/or use interactions)")
    models, triples_module, training = _pykeen()
    labelled = np.array(sorted(set(triples)), dtype=str)
    factory = triples_module.TriplesFactory.from_labeled_triples(labelled)
    try:
        model_class = models.model_resolver.lookup(config.model)
    except (KeyError, ValueError):
        raise ConfigError(f"unknown PyKEEN model {config.model!r}; try TransE, RotatE or DistMult") from None
    model = model_class(triples_factory=factory, embedding_dim=config.dim, random_seed=config.seed)
    loop = training.SLCWATrainingLoop(
        model=model, triples_factory=factory, optimizer="adam", optimizer_kwargs={"lr": config.learning_rate}
    )
    with warnings.catch_warnings():  # PyKEEN's "always shuffled" and torch's pin_memory-on-CPU notices
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
        loop.train(factory, num_epochs=config.num_epochs, batch_size=config.batch_size, use_tqdm=False)
    vectors = model.entity_representations[0](indices=None).detach().cpu().numpy()  # (entities, dim)
    if np.iscomplexobj(vectors):  # RotatE: complex entities; real and imaginary parts side by side
        vectors = np.concatenate([vectors.real, vectors.imag], axis=1)
    labels = sorted(factory.entity_to_id, key=factory.entity_to_id.get)
    return Embeddings(labels, vectors)


def _pykeen():
    try:
        import class_resolver.api as resolver_api
    except ImportError:
        raise ConfigError(f"knowledge-graph embeddings need PyKEEN: {INSTALL_HINT}") from None
    # PyKEEN's import indexes every loaded subclass of torch's Optimizer by name. class_resolver drops
    # classes of other packages by comparing each with its direct parent, not with the base, so once
    # bitsandbytes is imported (peft and 4-bit loading import it) its RMSprop collides with torch's and
    # the import fails. While PyKEEN imports, keep only subclasses from the base's own package.
    original = resolver_api.get_subclasses

    def same_package(cls, *args, exclude_external: bool = True, **kwargs):
        found = original(cls, *args, exclude_external=exclude_external, **kwargs)
        top = cls.__module__.split(".")[0]
        return (sub for sub in found if not exclude_external or sub.__module__.split(".")[0] == top)

    resolver_api.get_subclasses = same_package
    try:
        return tuple(importlib.import_module(f"pykeen.{name}") for name in ("models", "triples", "training"))
    except ImportError:
        raise ConfigError(f"knowledge-graph embeddings need PyKEEN: {INSTALL_HINT}") from None
    finally:
        resolver_api.get_subclasses = original


def cached_embeddings(prepared_dir, config: EmbeddingConfig = EmbeddingConfig()) -> Embeddings:
    """The embeddings of a prepared dir's graph (+ train interactions), trained once and cached there."""
    prepared_dir = Path(prepared_dir)
    triples = graph_triples(load_graph(prepared_dir))
    if config.interactions:
        triples += liked_triples(prepared_dir)
    record = cache_record(triples, config)
    cached = load_embeddings(prepared_dir / EMBEDDINGS_DIR, record)
    if cached is not None:
        return cached
    embeddings = train_embeddings(triples, config)
    save_embeddings(prepared_dir / EMBEDDINGS_DIR, embeddings, record)
    return embeddings


def cache_record(triples: Sequence[tuple[str, str, str]], config: EmbeddingConfig) -> dict:
    """What a cache must match to be reused: the config and the triples' checksum."""
    return {"config": asdict(config), "triples_sha256": triples_sha256(triples), "num_triples": len(set(triples))}


class GraphEmbedder:
    """`attach_knowledge`'s `embed` at prepare time: trains on the graph's facts, then caches in the new dir.

    Facts only (no interactions): the relevance ranking reads each example's own history, so nothing
    about later interactions can enter its facts.
    """

    def __init__(self, config: EmbeddingConfig = EmbeddingConfig(interactions=False)):
        if config.interactions:
            raise ConfigError("prepare-time KG embeddings use the graph's facts only; set interactions=False")
        self.config, self.embeddings, self.record = config, None, None

    def __call__(self, graph: KnowledgeGraph) -> Embeddings:
        triples = graph_triples(graph)
        self.record = cache_record(triples, self.config)
        self.embeddings = train_embeddings(triples, self.config)
        return self.embeddings

    def save(self, prepared_dir) -> None:
        if self.embeddings is not None:
            save_embeddings(Path(prepared_dir) / EMBEDDINGS_DIR, self.embeddings, self.record)


def save_embeddings(out_dir: Path, embeddings: Embeddings, record: Mapping) -> None:
    from safetensors.numpy import save_file

    versions = {"promptrec": __version__, "pykeen": importlib.metadata.version("pykeen")}
    with atomic_dir(out_dir) as tmp:
        metadata = {"labels": json.dumps(embeddings.labels)}
        save_file({"vectors": np.ascontiguousarray(embeddings.vectors)}, str(tmp / VECTORS_FILE), metadata=metadata)
        write_json(tmp / RECORD_FILE, {**record, "file": VECTORS_FILE, "versions": versions})


def load_embeddings(out_dir: Path, expected: Mapping | None = None) -> Embeddings | None:
    """Cached embeddings, or None when absent or (with `expected`) made from another config or triples."""
    record_path, vectors_path = Path(out_dir) / RECORD_FILE, Path(out_dir) / VECTORS_FILE
    if not record_path.is_file() or not vectors_path.is_file():
        return None
    record = json.loads(read_text(record_path))
    if expected is not None and any(record.get(key) != value for key, value in expected.items()):
        return None
    from safetensors.numpy import safe_open

    with safe_open(str(vectors_path), framework="numpy") as handle:
        labels = json.loads(handle.metadata()["labels"])
        vectors = handle.get_tensor("vectors")
    return Embeddings(labels, vectors)


def kg_similarities(example: Mapping, embeddings: Embeddings) -> dict:
    """{"liked": cos, "disliked": cos} of the candidate to the mean of its liked / disliked history (None if absent).

    Only the example's own history is used: items the user rated before the example's time.
    """
    history = example.get("history") or []
    liked = embeddings.profile(h["item_id"] for h in history if h.get("liked"))
    disliked = embeddings.profile(h["item_id"] for h in history if not h.get("liked"))
    item_id = example.get("item_id")
    return {"liked": embeddings.similarity(item_id, liked), "disliked": embeddings.similarity(item_id, disliked)}


def annotate_similarities(examples: Iterable[Mapping], embeddings: Embeddings) -> list[dict]:
    """Copies of `examples` with `kg_similarity` (see `kg_similarities`), read by the hybrid's KG features."""
    return [{**example, "kg_similarity": kg_similarities(example, embeddings)} for example in examples]
