"""Tests for promptrec.knowledge.embeddings (PyKEEN-trained KG embeddings) and their three uses:
hybrid features, the `kg` retriever, and fact selection by relevance. Tiny fixtures (tests/data/kg,
mini-ml); a training run takes about a second."""

import builtins
import json
from pathlib import Path

import numpy as np
import pytest

from promptrec.baselines.retrievers import Retriever, build_candidates
from promptrec.cli.main import main
from promptrec.core.errors import ConfigError
from promptrec.knowledge import embeddings as kge
from promptrec.knowledge.embeddings import (
    EMBEDDINGS_DIR,
    RECORD_FILE,
    EmbeddingConfig,
    Embeddings,
    annotate_similarities,
    cached_embeddings,
    kg_similarities,
    liked_triples,
    train_embeddings,
)
from promptrec.protocols.candidates import CandidateConfig
from promptrec.protocols.features import feature_row
from promptrec.protocols.next_item import load_catalog
from promptrec.protocols.splits import load_split

DATA_DIR = Path(__file__).parent / "data"
KG_DIR = DATA_DIR / "kg"
MINI_ML = DATA_DIR / "mini-ml"
SPLITS = ("train", "valid", "test")
SMALL = EmbeddingConfig(dim=8, num_epochs=3, batch_size=64)


def prepare(out, *extra):
    argv = ["data", "prepare", "movielens", "--source", str(MINI_ML), "--out", str(out), "--history-len", "3"]
    kg = [f"imdb={KG_DIR / 'auxiliary.txt'}", f"dbpedia={KG_DIR / 'dbpedia'}"]
    assert main(argv + [arg for spec in kg for arg in ("--kg", spec)] + list(extra)) == 0
    return out


@pytest.fixture(scope="module")
def kg_prepared(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp("kg") / "prepared")


@pytest.fixture(scope="module")
def next_prepared(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp("kg") / "next", "--protocol", "next-item")


# ---------------------------------------------------------------- training and the cache


def test_embeddings_are_reproducible_from_the_seed(kg_prepared):
    pytest.importorskip("pykeen")
    triples = kge.graph_triples(kge.load_graph(kg_prepared))
    first, second = train_embeddings(triples, SMALL), train_embeddings(triples, SMALL)
    assert first.labels == second.labels
    assert np.array_equal(first.vectors, second.vectors)
    other = train_embeddings(triples, EmbeddingConfig(dim=8, num_epochs=3, batch_size=64, seed=1))
    assert not np.array_equal(first.vectors, other.vectors)


def test_items_and_entities_share_one_space(kg_prepared):
    pytest.importorskip("pykeen")
    embeddings = train_embeddings(kge.graph_triples(kge.load_graph(kg_prepared)), SMALL)
    assert embeddings.vectors.shape == (len(embeddings.labels), 8)
    assert any(label.startswith("item:") for label in embeddings.labels)
    assert any(label.startswith("director:") for label in embeddings.labels)


def test_cache_is_reused_and_retrained_when_config_or_triples_change(tmp_path, kg_prepared, monkeypatch):
    pytest.importorskip("pykeen")
    import shutil

    data = tmp_path / "data"
    shutil.copytree(kg_prepared, data)
    first = cached_embeddings(data, SMALL)
    record = json.loads((data / EMBEDDINGS_DIR / RECORD_FILE).read_text())
    assert record["config"]["dim"] == 8 and len(record["triples_sha256"]) == 64
    calls = []
    real = kge.train_embeddings
    monkeypatch.setattr(kge, "train_embeddings", lambda *a: calls.append(a) or real(*a))
    again = cached_embeddings(data, SMALL)
    assert calls == [] and np.array_equal(first.vectors, again.vectors)
    cached_embeddings(data, EmbeddingConfig(dim=8, num_epochs=3, batch_size=64, interactions=True))
    assert len(calls) == 1  # other triples (users added): trained again
    cached_embeddings(data, EmbeddingConfig(dim=8, num_epochs=4, batch_size=64, interactions=True))
    assert len(calls) == 2  # other config: trained again


def test_missing_extra_names_the_install_command(monkeypatch):
    real_import = builtins.__import__

    def no_pykeen(name, *args, **kwargs):
        if name.startswith("pykeen"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pykeen)
    monkeypatch.setattr(kge.importlib, "import_module", lambda name: no_pykeen(name))
    with pytest.raises(ConfigError, match=r"pip install 'promptrec\[kg\]'"):
        train_embeddings([("item:1", "director", "director:d")], SMALL)


@pytest.mark.parametrize(
    "fields, message",
    [({"dim": 0}, "dim=0"), ({"num_epochs": 1.5}, "num_epochs=1.5"), ({"learning_rate": -1}, "learning_rate=-1")],
)
def test_config_validation(fields, message):
    with pytest.raises(ConfigError, match=message):
        EmbeddingConfig(**fields)


def test_liked_triples_come_from_the_train_split_only(kg_prepared, next_prepared):
    catalog = load_catalog(next_prepared)
    later = {(x["user_id"], x["item_id"]) for x in catalog.interactions if x["split"] != "train"}
    pairs = {(u.removeprefix("user:"), i.removeprefix("item:")) for u, _, i in liked_triples(next_prepared)}
    assert pairs and not pairs & later
    pairs_of = {s: {(str(x["user_id"]), str(x["item_id"])) for x in load_split(kg_prepared, s)} for s in SPLITS}
    held_out, train = pairs_of["valid"] | pairs_of["test"], pairs_of["train"]
    pairs = {(u.removeprefix("user:"), i.removeprefix("item:")) for u, _, i in liked_triples(kg_prepared)}
    assert pairs and not (pairs & held_out) - train


# ---------------------------------------------------------------- hybrid features


def toy_embeddings() -> Embeddings:
    labels = ["item:1", "item:2", "item:3", "director:d"]
    return Embeddings(labels, np.array([[1, 0], [1, 0.1], [0, 1], [1, 1]], dtype=np.float32))


@pytest.mark.parametrize(
    "history, liked, disliked",
    [
        ([("2", True), ("3", False)], 0.995, 0.0),  # candidate 1 is close to liked 2, orthogonal to disliked 3
        ([("2", True)], 0.995, None),  # no disliked history
        ([], None, None),
        ([("99", True), ("3", False)], None, 0.0),  # an item without a vector counts as absent
    ],
)
def test_kg_similarities_and_none_where_absent(history, liked, disliked):
    example = {"item_id": "1", "history": [{"item_id": i, "liked": flag} for i, flag in history]}
    got = kg_similarities(example, toy_embeddings())
    for key, want in (("liked", liked), ("disliked", disliked)):
        assert got[key] is None if want is None else got[key] == pytest.approx(want, abs=1e-3)


def test_unknown_candidate_has_no_similarity():
    example = {"item_id": "99", "history": [{"item_id": "1", "liked": True}]}
    assert kg_similarities(example, toy_embeddings()) == {"liked": None, "disliked": None}


def test_features_read_the_annotated_similarities_and_none_otherwise():
    names = ["kg_liked_similarity", "kg_disliked_similarity"]
    example = {"item_id": "1", "history": [{"item_id": "2", "liked": True}]}
    assert feature_row(example, names) == [None, None]  # not annotated
    (annotated,) = annotate_similarities([example], toy_embeddings())
    liked, disliked = feature_row(annotated, names)
    assert liked == pytest.approx(0.995, abs=1e-3) and disliked is None
    assert "kg_similarity" not in example  # a copy is annotated


# ---------------------------------------------------------------- the kg retriever


def test_kg_retriever_ranks_by_similarity_to_liked_items_and_skips_seen_ones():
    interactions = [
        {"user_id": "u", "item_id": "2", "rating": 5},  # liked: the profile
        {"user_id": "u", "item_id": "3", "rating": 1},  # seen, not liked
        {"user_id": "v", "item_id": "3", "rating": 5},
    ]
    labels = ["item:1", "item:2", "item:3", "item:4", "item:5"]
    vectors = np.array([[1, 0.2], [1, 0.1], [0, 1], [-1, 0], [0.5, 0.5]], dtype=np.float32)
    retriever = Retriever(interactions, ["1", "2", "3", "4", "5"], "kg", Embeddings(labels, vectors))
    assert retriever.top("u", 3) == ["1", "5", "4"]  # closest to item 2 first; 2 and 3 are u's own
    assert retriever.top("new-user", 2) == ["3", "2"]  # no history: popularity


def test_kg_candidates_have_the_requested_shape_and_no_fit_items(next_prepared, tmp_path):
    pytest.importorskip("pykeen")
    import shutil

    data = tmp_path / "next"
    shutil.copytree(next_prepared, data)
    catalog = load_catalog(data)
    rows, record = build_candidates(catalog, "test", CandidateConfig("kg", num=3, seed=0))
    assert record["retriever"] == "kg" and record["num_users"] == len(rows) > 0
    fit = catalog.fit_interactions("test")
    for row in rows:
        seen = {x["item_id"] for x in fit if x["user_id"] == row["user_id"]}
        assert len(row["candidates"]) == min(3, len(catalog.items) - len(seen)) == len(set(row["candidates"]))
        assert not seen & set(row["candidates"])
    assert (data / EMBEDDINGS_DIR / RECORD_FILE).is_file()
