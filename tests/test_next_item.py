"""The leave-one-out next-item protocol: targets, histories, negatives, and the catalogue reader."""

import json
from pathlib import Path

import pytest

from promptrec.core.errors import DataError
from promptrec.data.dataset import load_movielens
from promptrec.protocols.next_item import CandidateExamples, build_next_item, load_catalog, prepare_next_item
from promptrec.protocols.prepare import prepare_movielens

MINI_ML = Path(__file__).parent / "data" / "mini-ml"


@pytest.fixture(scope="module")
def dataset():
    return load_movielens(MINI_ML)


@pytest.fixture(scope="module")
def next_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("next") / "data"
    prepare_movielens(MINI_ML, out, history_len=3, protocol="next-item")
    return out


def sequences(dataset):
    by_user = {}
    for x in dataset.interactions:
        by_user.setdefault(x.user_id, []).append(x)
    return {u: sorted(seq, key=lambda x: x.timestamp) for u, seq in by_user.items()}


def test_targets_are_last_second_and_third_to_last(dataset):
    splits, _, counts = build_next_item(dataset, history_len=3)
    seqs = sequences(dataset)
    assert counts["num_users"] == len(seqs)
    for split, position in (("test", -1), ("valid", -2)):
        for ex in splits[split]:
            seq = seqs[ex["user_id"]]
            assert ex["item_id"] == seq[position].item_id and ex["label"] == 1
            expected = [x.item_id for x in seq[len(seq) + position - 3 : len(seq) + position]]
            assert [h["item_id"] for h in ex["history"]] == expected, "the 3 items just before the target"
    positives = [ex for ex in splits["train"] if ex["label"] == 1]
    assert {ex["item_id"] for ex in positives} == {seqs[u][-3].item_id for u in seqs}


def test_train_negatives_are_unseen_by_their_user_and_seeded(dataset):
    splits, _, _ = build_next_item(dataset, history_len=3, negatives=2, seed=5)
    seqs = sequences(dataset)
    negatives = [ex for ex in splits["train"] if ex["label"] == 0]
    unseen = {u: len(dataset.items) - len({x.item_id for x in seq}) for u, seq in seqs.items()}
    assert len(negatives) == sum(min(2, n) for n in unseen.values()), "2 each, fewer where the catalogue runs out"
    for ex in negatives:
        assert ex["item_id"] not in {x.item_id for x in seqs[ex["user_id"]]}
        assert ex["item"]["item_id"] == ex["item_id"]
    again, _, _ = build_next_item(dataset, history_len=3, negatives=2, seed=5)
    assert again == splits
    other, _, _ = build_next_item(dataset, history_len=3, negatives=2, seed=6)
    assert [e["item_id"] for e in other["train"]] != [e["item_id"] for e in splits["train"]]


def test_interactions_are_tagged_with_the_split_they_are_held_out_for(dataset):
    splits, tagged, _ = build_next_item(dataset, history_len=3)
    assert len(tagged) == len(dataset.interactions)
    for split in ("valid", "test"):
        held = {(x["user_id"], x["item_id"]) for x in tagged if x["split"] == split}
        assert held == {(ex["user_id"], ex["item_id"]) for ex in splits[split]}


def test_prepared_dir_has_catalogue_and_checksums(next_dir):
    manifest = json.loads((next_dir / "manifest.json").read_text())
    assert manifest["name"] == "next-item"
    assert set(manifest["files"]) == {"items.jsonl", "interactions.jsonl"}
    catalog = load_catalog(next_dir)
    assert len(catalog.items) == 15 and len(catalog.interactions) == 31
    assert set(catalog.contexts("test")) == {"7", "12", "3"}


def test_fit_interactions_never_contain_the_ranked_targets(next_dir):
    catalog = load_catalog(next_dir)
    for split in ("valid", "test"):
        targets = {(u, ex["item_id"]) for u, ex in catalog.contexts(split).items()}
        fit = {(x["user_id"], x["item_id"]) for x in catalog.fit_interactions(split)}
        assert not targets & fit
    assert len(catalog.fit_interactions("test")) == 31 - 3, "valid targets are history when ranking test"


def test_candidate_examples_carry_leak_free_stats(next_dir):
    catalog = load_catalog(next_dir)
    context = catalog.contexts("test")["7"]
    builder = CandidateExamples(catalog)
    for item_id in catalog.items:
        ex = builder.build(context, item_id)
        earlier = [x for x in catalog.interactions if x["item_id"] == item_id and x["timestamp"] < context["timestamp"]]
        assert ex["stats"]["item_num_ratings"] == len(earlier)
        assert ex["label"] == int(item_id == context["item_id"])
        assert ex["history"] == context["history"] and ex["user"] == context["user"]


def test_tallrec_dir_is_refused_for_ranking(tmp_path):
    prepare_movielens(MINI_ML, tmp_path / "tallrec", history_len=3)
    with pytest.raises(DataError, match="--protocol next-item"):
        load_catalog(tmp_path / "tallrec")


def test_preparation_is_byte_identical(tmp_path, dataset):
    prepare_next_item(dataset, tmp_path / "a", history_len=3)
    prepare_next_item(dataset, tmp_path / "b", history_len=3)
    for name in ("train.jsonl", "test.jsonl", "items.jsonl", "interactions.jsonl", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_knowledge_facts_reach_rank_time_candidates_like_the_splits(tmp_path):
    from promptrec.knowledge.graph import Budget, KnowledgeSpec

    spec = KnowledgeSpec((f"imdb={Path(__file__).parent / 'data' / 'kg' / 'auxiliary.txt'}",), Budget())
    prepare_movielens(MINI_ML, tmp_path / "kg", history_len=3, protocol="next-item", knowledge=spec)
    catalog = load_catalog(tmp_path / "kg")
    builder = CandidateExamples(catalog)
    for split in ("valid", "test"):
        for context in catalog.contexts(split).values():
            rebuilt = builder.build(context, context["item_id"])
            assert rebuilt["kg"] == context["kg"], "a candidate equal to the target gets the split's facts"
    assert any(builder.build(c, "1")["kg"]["facts"] for c in catalog.contexts("test").values())
