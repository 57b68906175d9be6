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
from promptrec.knowledge.graph import Budget, KnowledgeGraph, enrich, select_facts
from promptrec.knowledge.sources import Fact
from promptrec.protocols.candidates import CandidateConfig
from promptrec.protocols.features import feature_row
from promptrec.protocols.next_item import CandidateExamples, load_catalog
from promptrec.protocols.splits import load_split

DATA_DIR = Path(__file__).parent / "data"
KG_DIR = DATA_DIR / "kg"
MINI_ML = DATA_DIR / "mini-ml"
SPLITS = ("train", "valid", "test")
SMALL = EmbeddingConfig(dim=8, num_epochs=3, batch_size=64)


def prepare_status(out, *extra) -> int:
    argv = ["data", "prepare", "movielens", "--source", str(MINI_ML), "--out", str(out), "--history-len", "3"]
    kg = [f"imdb={KG_DIR / 'auxiliary.txt'}", f"dbpedia={KG_DIR / 'dbpedia'}"]
    return main(argv + [arg for spec in kg for arg in ("--kg", spec)] + list(extra))


def prepare(out, *extra):
    assert prepare_status(out, *extra) == 0
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
    real_import_module = kge.importlib.import_module  # the importlib module itself: patch pykeen's names only
    monkeypatch.setattr(
        kge.importlib,
        "import_module",
        lambda name, *a, **k: no_pykeen(name) if name.startswith("pykeen") else real_import_module(name, *a, **k),
    )
    with pytest.raises(ConfigError, match=r"pip install 'promptrec\[kg\]'"):
        train_embeddings([("item:1", "director", "director:d")], SMALL)


def test_missing_extra_is_a_one_line_error_with_exit_2(monkeypatch, tmp_path, capsys):
    real_import_module = kge.importlib.import_module  # the importlib module itself: patch pykeen's names only

    def no_pykeen(name, *args, **kwargs):
        if name.startswith("pykeen"):
            raise ImportError(f"No module named {name!r}")
        return real_import_module(name, *args, **kwargs)

    monkeypatch.setattr(kge.importlib, "import_module", no_pykeen)
    assert prepare_status(tmp_path / "out", "--kg-rank-by", "embedding") == 2
    err = capsys.readouterr().err.strip()
    assert "pip install 'promptrec[kg]'" in err and len(err.splitlines()) == 1


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


# ---------------------------------------------------------------- fact selection by relevance

ANY_SHARE = {"max_link_share": 1.0}  # tiny graphs: every entity is held by a large share of items


def relevance_graph() -> tuple[KnowledgeGraph, Embeddings]:
    """Candidate c shares director D with h1 and actor A with h2 (A rarer); actors A, B, E of c.

    In embedding space h2 and actor B sit near the x axis, h1, D and E near the y axis.
    """
    facts = [Fact("c", "director", "D"), Fact("h1", "director", "D"), Fact("x1", "director", "D")]
    facts += [Fact("c", "actor", "A"), Fact("h2", "actor", "A"), Fact("c", "actor", "B"), Fact("c", "actor", "E")]
    facts += [Fact("x2", "actor", "B"), Fact("x3", "actor", "B"), Fact("x4", "actor", "E")]
    labels = ["item:h1", "item:h2", "director:d", "actor:a", "actor:b", "actor:e"]
    vectors = [[0, 1], [1, 0], [0.1, 1], [0.7, 0.7], [1, 0.1], [0.2, 1]]
    return KnowledgeGraph(facts), Embeddings(labels, np.array(vectors, dtype=np.float32))


def pasts(*entries):
    return [{"item_id": i, "title": f"Movie {i}", "liked": liked, "timestamp": t} for i, liked, t in entries]


def test_embedding_ranking_prefers_what_is_close_to_the_liked_history():
    graph, embeddings = relevance_graph()
    history = pasts(("h1", True, 1), ("h2", False, 2))  # liked h1 (y axis), disliked h2
    by_rarity = select_facts(graph, "c", history, Budget(max_facts=1, max_links=1, **ANY_SHARE))
    by_embedding = select_facts(
        graph, "c", history, Budget(max_facts=1, max_links=1, rank_by="embedding", **ANY_SHARE), embeddings
    )
    assert by_rarity["links"][0]["entity"] == "A"  # held by 2 items, D by 3: rarer
    assert by_embedding["links"][0]["entity"] == "D"  # beside the liked h1
    assert by_embedding["facts"] == [{"relation": "director", "entity": "D"}]  # closest to h1 of c's facts


@pytest.mark.parametrize("max_facts, max_links, max_titles", [(0, 0, 1), (1, 1, 1), (2, 1, 2), (3, 3, 1), (5, 5, 3)])
def test_embedding_ranking_respects_the_budget(max_facts, max_links, max_titles):
    graph, embeddings = relevance_graph()
    history = pasts(("h1", True, 1), ("h2", True, 2), ("x1", False, 3), ("x2", True, 4), ("x3", False, 5))
    budget = Budget(max_facts, max_links, max_titles, rank_by="embedding", **ANY_SHARE)
    kg = select_facts(graph, "c", history, budget, embeddings)
    rarity = select_facts(graph, "c", history, Budget(max_facts, max_links, max_titles, **ANY_SHARE))
    assert len(kg["facts"]) == len(rarity["facts"]) <= max_facts
    assert len(kg["links"]) == len(rarity["links"]) <= max_links
    assert all(len(link["liked"]) <= max_titles and len(link["disliked"]) <= max_titles for link in kg["links"])


def test_embedding_ranking_never_uses_an_interaction_after_the_example():
    graph, embeddings = relevance_graph()
    budget = Budget(max_facts=1, max_links=2, rank_by="embedding", **ANY_SHARE)
    # h1 was liked AFTER the example's time (a bad history row): it must neither be linked nor
    # pull the profile toward the y axis (which would pick fact E and link D first).
    example = {"item_id": "c", "timestamp": 10, "history": pasts(("h2", True, 5), ("h1", True, 11))}
    (enriched,) = enrich([example], graph, budget, embeddings)
    named = [title for link in enriched["kg"]["links"] for title in link["liked"] + link["disliked"]]
    assert "Movie h1" not in named and [link["entity"] for link in enriched["kg"]["links"]] == ["A"]
    assert enriched["kg"]["facts"] == [{"relation": "actor", "entity": "B"}]  # closest to h2 (x axis)


def test_embedding_ranking_without_embeddings_or_liked_history():
    graph, embeddings = relevance_graph()
    budget = Budget(rank_by="embedding", **ANY_SHARE)
    with pytest.raises(ConfigError, match="needs KG embeddings"):
        select_facts(graph, "c", pasts(("h1", True, 1)), budget)
    history = pasts(("h1", False, 1), ("h2", False, 2))  # nothing liked: rarity order, same budget
    rarity = select_facts(graph, "c", history, Budget(**ANY_SHARE))
    assert select_facts(graph, "c", history, budget, embeddings) == rarity
    with pytest.raises(ConfigError, match="rank_by='size'"):
        Budget(rank_by="size")


def test_prepare_with_kg_rank_by_embedding_caches_the_embeddings_and_keeps_the_budget(tmp_path):
    pytest.importorskip("pykeen")
    out = prepare(tmp_path / "emb", "--kg-rank-by", "embedding", "--kg-max-links", "1")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["knowledge"]["budget"]["rank_by"] == "embedding"
    record = json.loads((out / EMBEDDINGS_DIR / RECORD_FILE).read_text())
    assert record["config"]["interactions"] is False
    for split in SPLITS:
        for example in load_split(out, split):
            assert len(example["kg"]["facts"]) <= 3 and len(example["kg"]["links"]) <= 1
            history_ids = {str(h["item_id"]) for h in example["history"]}
            assert all(h["timestamp"] <= example["timestamp"] for h in example["history"])
            for link in example["kg"]["links"]:
                titles = {h["title"] for h in example["history"] if str(h["item_id"]) in history_ids}
                assert set(link["liked"] + link["disliked"]) <= titles


def test_kg_rank_by_needs_kg():
    assert main(["data", "prepare", "movielens", "--source", str(MINI_ML), "--out", "x", "--kg-rank-by", "rarity"]) == 2


def test_rank_time_candidates_use_the_cached_embeddings(tmp_path, monkeypatch):
    pytest.importorskip("pykeen")
    out = prepare(tmp_path / "next-emb", "--protocol", "next-item", "--kg-rank-by", "embedding")
    monkeypatch.setattr(kge, "train_embeddings", lambda *a: pytest.fail("the cached embeddings were not reused"))
    catalog = load_catalog(out)
    builder = CandidateExamples(catalog)
    context = next(iter(catalog.contexts("test").values()))
    for item_id in sorted(catalog.items):
        kg = builder.build(context, item_id)["kg"]
        assert len(kg["facts"]) <= 3 and len(kg["links"]) <= 2


def test_embeddings_train_after_bitsandbytes_was_imported(tmp_path):
    """bitsandbytes' RMSprop made PyKEEN's import fail (a name clash in its optimizer index)."""
    import subprocess
    import sys

    pytest.importorskip("pykeen")
    pytest.importorskip("bitsandbytes")
    code = (
        "import bitsandbytes.optim, torch.optim; from promptrec.knowledge.embeddings import _pykeen; "
        "models, _, _ = _pykeen(); print(models.TransE.__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("TransE"), done.stderr[-2000:]
