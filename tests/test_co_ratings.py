"""Item-kNN similarity of a target to the history: brute-force cosines, strictly earlier ratings only."""

import json
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


@pytest.mark.parametrize("protocol", ["tallrec", "global-time"])
def test_a_history_pool_keeps_the_examples_and_picks_the_most_similar(protocol):
    from promptrec.protocols.global_time import build_global_time_examples

    dataset = load_movielens(MINI)
    ratings = [(x.user_id, x.item_id, x.timestamp, x.rating > 3) for x in dataset.interactions]

    def build(pool):
        if protocol == "tallrec":
            return build_tallrec_examples(dataset, history_len=2, history_pool=pool)
        return build_global_time_examples(dataset, history_len=2, history_pool=pool)[0]

    last, relevant = build(0), build(6)
    changed = 0
    for split in last:
        assert [(x["example_id"], x["item_id"], x["label"]) for x in last[split]] == [
            (x["example_id"], x["item_id"], x["label"]) for x in relevant[split]
        ]
        for example in relevant[split]:
            user = sorted(
                (x for x in dataset.interactions if x.user_id == example["user_id"]), key=lambda x: x.timestamp
            )
            before = [x for x in user if x.timestamp < example["timestamp"]] if protocol == "global-time" else None
            shown = [(h["item_id"], h["timestamp"]) for h in example["history"]]
            assert len(shown) == 2 and shown == sorted(shown, key=lambda pair: pair[1])  # time order
            if before is not None:  # the pool is the user's last 6 strictly before the target
                pool = [x.item_id for x in before[-6:]]
                assert all(item in pool for item, _ in shown)

                cosines = {item: brute_cosine(ratings, example["item_id"], item, example["timestamp"]) for item in pool}
                known = {item: -2.0 if value is None else value for item, value in cosines.items()}
                unchosen = [item for item in pool if item not in {i for i, _ in shown}]
                assert min(known[i] for i, _ in shown) >= max((known[i] for i in unchosen), default=-2.0) - 1e-9
        changed += sum(a["history"] != b["history"] for a, b in zip(last[split], relevant[split]))
    assert changed, "a pool larger than the history must change some history on the mini data"


def test_history_pool_mistakes_fail_with_the_fix(tmp_path, capsys):
    from promptrec.cli.main import main

    source = ["data", "prepare", "movielens", "--source", str(MINI), "--history-len", "2"]
    assert main([*source, "--history-pool", "2", "--out", str(tmp_path / "a")]) == 2
    assert "must exceed history_len 2" in capsys.readouterr().err
    assert main([*source, "--history-pool", "6", "--protocol", "next-item", "--out", str(tmp_path / "b")]) == 2
    assert "--history-pool works with the tallrec and global-time protocols" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert main([*source, "--history-pool", "6", "--out", str(tmp_path / "c")]) == 0
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["parameters"]["history_pool"] == 6


def test_rank_computes_similarities_only_for_templates_or_wide_parts_that_read_them(tmp_path):
    from types import SimpleNamespace

    from promptrec.jobs.rank import needs_similarity
    from promptrec.protocols.prepare import prepare_movielens
    from promptrec.templates.template import load_template

    prepare_movielens(MINI, tmp_path / "next", history_len=3, protocol="next-item")
    catalog = load_catalog(tmp_path / "next")
    context = catalog.contexts("test")["7"]
    assert "knn" not in CandidateExamples(catalog, similarity=False).build(context, "1")
    assert "knn" in CandidateExamples(catalog).build(context, "1")
    template = load_template("movie_next")
    hybrid = SimpleNamespace(wide=SimpleNamespace(names=("item_like_rate", "knn_liked_similarity")))
    plain = SimpleNamespace(wide=SimpleNamespace(names=("item_like_rate",)))
    assert not needs_similarity(template, [None, plain])
    assert needs_similarity(template, [plain, hybrid])
