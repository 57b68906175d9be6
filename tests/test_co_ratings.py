"""Item-kNN similarity of a target to the history: brute-force cosines, strictly earlier ratings only."""

import math
from pathlib import Path

import pytest

from promptrec.data.dataset import load_movielens
from promptrec.protocols.co_ratings import CoRatings
from promptrec.protocols.features import feature_row
from promptrec.protocols.next_item import CandidateExamples, load_catalog
from promptrec.protocols.tallrec import build_tallrec_examples

MINI = Path(__file__).parent / "data" / "mini-ml"


def brute_cosine(ratings, a, b, timestamp):
    """Cosine of items a and b over users (+1 liked, -1 not), ratings strictly before `timestamp`."""
    vectors = {a: {}, b: {}}
    for user, item, time, liked in ratings:
        if item in vectors and time < timestamp:
            vectors[item][user] = 1.0 if liked else -1.0
    if not vectors[a] or not vectors[b]:
        return None
    dot = sum(value * vectors[b].get(user, 0.0) for user, value in vectors[a].items())
    return dot / math.sqrt(len(vectors[a]) * len(vectors[b]))


def test_cosine_ignores_ratings_at_or_after_the_time():
    ratings = [("u1", "a", 1, True), ("u1", "b", 2, True), ("u2", "a", 3, True), ("u2", "b", 5, False)]
    co = CoRatings(ratings)
    assert co.cosine("a", "b", 2) is None  # b has no rating strictly before 2
    assert co.cosine("a", "b", 3) == pytest.approx(1.0)  # only u1: both liked
    assert co.cosine("a", "b", 5) == pytest.approx(1 / math.sqrt(2))  # u2's b (time 5) not yet
    assert co.cosine("a", "b", 6) == pytest.approx(0.0)  # u1 agrees, u2 disagrees
    assert co.history_similarity("a", [("b", True), ("zzz", False)], 6) == {"liked": 0.0, "disliked": None}


def test_prepared_examples_match_brute_force():
    dataset = load_movielens(MINI)
    ratings = [(x.user_id, x.item_id, x.timestamp, x.rating > 3) for x in dataset.interactions]
    seen = 0
    for split in build_tallrec_examples(dataset, history_len=3).values():
        for example in split:
            expected = {}
            for kind, liked in (("liked", True), ("disliked", False)):
                cosines = [
                    brute_cosine(ratings, example["item_id"], h["item_id"], example["timestamp"])
                    for h in example["history"]
                    if h["liked"] == liked
                ]
                cosines = [c for c in cosines if c is not None]
                expected[kind] = round(sum(cosines) / len(cosines), 6) if cosines else None
            assert example["knn"] == pytest.approx(expected)
            assert feature_row(example, ["knn_liked_similarity", "knn_disliked_similarity"]) == pytest.approx(
                [expected["liked"], expected["disliked"]]
            )
            seen += expected["liked"] is not None
    assert seen, "the mini data must exercise at least one known cosine"


def test_rank_time_candidates_get_the_same_rule(tmp_path):
    from promptrec.protocols.prepare import prepare_movielens

    prepare_movielens(MINI, tmp_path / "next", history_len=3, protocol="next-item")
    catalog = load_catalog(tmp_path / "next")
    ratings = [(x["user_id"], x["item_id"], x["timestamp"], x["rating"] > 3) for x in catalog.interactions]
    context = catalog.contexts("test")["7"]
    builder, known = CandidateExamples(catalog), 0
    for item_id in catalog.items:
        example = builder.build(context, item_id)
        liked = [
            brute_cosine(ratings, item_id, h["item_id"], context["timestamp"])
            for h in context["history"]
            if h["liked"] and h["item_id"] != item_id
        ]
        liked = [c for c in liked if c is not None]
        assert example["knn"]["liked"] == pytest.approx(round(sum(liked) / len(liked), 6) if liked else None)
        known += bool(liked)
    assert known, "the mini data must exercise at least one known cosine"
