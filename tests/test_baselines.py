"""Classic baselines: features from an example's own history and leak-free stats; sklearn models."""

import json
import math

import numpy as np
import pytest

from promptrec.baselines.classic import (
    FEATURES,
    HEURISTICS,
    LEARNED,
    BaselineSpec,
    RatingLog,
    baseline_specs,
    features,
    item_knn_scores,
    logistic_scores,
    onehot_features,
    onehot_logistic_scores,
    popularity_scores,
    run_baselines,
)
from promptrec.cli.main import main
from promptrec.core.errors import DataError


def example(liked, item_rate, item_count, user_rate, label=1, ratings=None):
    ratings = ratings or [5.0 if x else 2.0 for x in liked]
    return {
        "example_id": "e",
        "user_id": "u",
        "item_id": "target",
        "timestamp": 100,
        "label": label,
        "history": [
            {"item_id": f"i{k}", "liked": x, "rating": r, "timestamp": k}
            for k, (x, r) in enumerate(zip(liked, ratings))
        ],
        "stats": {
            "item_like_rate": item_rate,
            "item_num_ratings": item_count,
            "user_like_rate": user_rate,
            "user_num_ratings": 3,
        },
    }


def test_features_are_computed_from_the_example_alone():
    row = features(example([True, True, False, False], 0.25, 3, 0.5))
    assert row == pytest.approx([0.5, 3.5, 0.25, math.log1p(3), 0.5])
    assert len(row) == len(FEATURES)


def test_missing_rates_fall_back_to_the_prior():
    row = features(example([True], None, 0, None))
    assert row[FEATURES.index("item_like_rate")] == 0.55 and row[FEATURES.index("user_like_rate")] == 0.55


def test_examples_without_item_ids_or_times_are_refused_by_rating_based_baselines():
    bare = example([True], 0.5, 1, 0.5)
    del bare["history"][0]["timestamp"]
    with pytest.raises(DataError, match="lacks 'timestamp'.*data prepare"):
        item_knn_scores([bare], [bare])


def test_examples_without_stats_are_refused():
    with pytest.raises(DataError, match="data prepare"):
        features({"example_id": "x", "history": []})


def test_logistic_regression_separates_separable_data():
    train = [example([bool(i % 2)] * 4, 0.5, 10, 0.5, label=i % 2) for i in range(20)]
    scores = logistic_scores(train, train)
    labels = np.array([ex["label"] for ex in train])
    assert scores[labels == 1].min() > scores[labels == 0].max()


def test_run_baselines_writes_one_dir_per_run(tmp_path):
    rng = np.random.default_rng(0)
    pool = [
        example(list(rng.random(10) > 0.5), float(rng.random()), 5, float(rng.random()), label=int(rng.random() > 0.5))
        for _ in range(40)
    ]
    results = run_baselines(pool, pool[:20], shots=10, seeds=[0, 1], out_dir=tmp_path)
    assert set(results) == set(HEURISTICS) | {f"{m}_{k}" for m in LEARNED for k in ("10shot", "full")}
    assert len(results["logreg_10shot"]) == 2 and len(results["itemknn_full"]) == 1
    record = json.loads((tmp_path / "logreg_10shot-seed1" / "config.json").read_text())
    assert record["kind"] == "baseline" and record["shots"] == 10 and record["seed"] == 1
    for key in ("logloss", "accuracy", "brier", "ece", "mce"):
        assert math.isnan(results["history_like_fraction"][0][key]), f"rates are not log-odds: no {key}"
    assert math.isnan(results["itemknn_full"][0]["logloss"]) and not math.isnan(
        results["popularity_full"][0]["logloss"]
    )


def test_baselines_cli_on_a_prepared_split(tmp_path, capsys):
    from pathlib import Path

    prepared = tmp_path / "prepared"
    mini = Path(__file__).parent / "data" / "mini-ml"
    assert (
        main(["data", "prepare", "movielens", "--source", str(mini), "--out", str(prepared), "--history-len", "3"]) == 0
    )
    assert (
        main(
            [
                "baselines",
                "--data",
                str(prepared),
                "--split",
                "train",
                "--shots",
                "8",
                "--seeds",
                "0",
                "--out",
                str(tmp_path / "bl"),
            ]
        )
        == 0
    )
    assert "logreg_full" in capsys.readouterr().out


def window(user, facts, stats=None):
    """A pool example from (item, liked, time) facts: the last is the target, the rest its history."""
    *history, (item, liked, timestamp) = facts
    return {
        "example_id": f"{user}-{item}",
        "user_id": user,
        "item_id": item,
        "label": int(liked),
        "timestamp": timestamp,
        "history": [{"item_id": i, "liked": bool(y), "timestamp": t} for i, y, t in history],
        "stats": stats or {},
    }


# Item vectors over users (u1, u2, u4) from facts before t=10: T = (1, -1, 1), A = (1, 1, 1), B = (-1, 1, 0).
POOL = [
    window("u1", [("A", 1, 1), ("B", 0, 2), ("T", 1, 3)]),
    window("u2", [("A", 1, 1), ("T", 0, 4), ("B", 1, 5)]),
    window("u4", [("A", 1, 1), ("T", 1, 2)]),
]
# u3 liked both A and B and is asked about T at t=10.
TARGET = window("u3", [("A", 1, 9), ("B", 1, 9), ("T", 1, 10)])


def test_item_knn_matches_a_hand_computed_case():
    cos_ta, cos_tb = 1 / 3, -2 / math.sqrt(6)  # (1-1+1)/(sqrt3*sqrt3), (-1-1+0)/(sqrt3*sqrt2)
    expected = (cos_ta * 1 + cos_tb * 1) / (abs(cos_ta) + abs(cos_tb))  # both history items liked: +1
    assert item_knn_scores(POOL, [TARGET])[0] == pytest.approx(expected)
    disliked_b = window("u3", [("A", 1, 9), ("B", 0, 9), ("T", 1, 10)])
    assert item_knn_scores(POOL, [disliked_b])[0] == pytest.approx(1.0), "similar to liked, unlike the disliked"


def test_item_knn_ignores_facts_at_or_after_the_example_time():
    future = [window("u6", [("T", 0, 10), ("B", 1, 12)]), window("u7", [("A", 1, 11), ("T", 0, 13)])]
    assert item_knn_scores(POOL + future, [TARGET])[0] == pytest.approx(item_knn_scores(POOL, [TARGET])[0])


def test_item_knn_with_no_shared_raters_scores_zero():
    assert item_knn_scores(POOL, [window("u3", [("Z", 1, 9), ("T", 1, 10)])])[0] == 0.0


def test_rating_log_counts_a_fact_once_and_only_before_a_time():
    repeated = POOL + [window("u1", [("A", 1, 1), ("B", 0, 2), ("T", 1, 3), ("C", 1, 6)])]
    log = RatingLog(repeated)
    assert sorted(log.before("T", 10)) == [("u1", 1.0), ("u2", -1.0), ("u4", 1.0)]
    assert log.before("T", 3) == [("u4", 1.0)] and log.before("nothing", 10) == []


def test_popularity_is_the_smoothed_like_rate_of_earlier_ratings():
    prior = np.mean([ex["label"] for ex in POOL])  # 1.0: every pool target was liked
    rate = (2 + 2.0 * prior) / (3 + 2.0)  # T: liked by u1 and u4, not by u2, before t=10
    assert popularity_scores(POOL, [TARGET])[0] == pytest.approx(math.log(rate / (1 - rate)))
    early = window("u3", [("A", 1, 1), ("T", 1, 2)])  # before anyone rated T: the prior alone
    assert popularity_scores(POOL, [early])[0] == popularity_scores(POOL, [window("u9", [("Q", 1, 50)])])[0]


def test_onehot_features_name_ids_genres_and_the_history_profile():
    ex = example([True, False], 0.5, 3, 0.5)
    ex.update(user_id="7", item_id="9", user={"age": 34, "gender": "F", "occupation": "writer"})
    ex["item"] = {"genres": ["Drama"]}
    ex["history"][0]["genres"], ex["history"][1]["genres"] = ["Drama", "War"], ["Comedy"]
    row = onehot_features(ex)
    assert row["user=7"] == row["item=9"] == row["genre=Drama"] == row["age=30s"] == row["gender=F"] == 1.0
    assert row["liked_genre=War"] == 0.5 and row["disliked_genre=Comedy"] == 0.5
    assert row["liked_same_genre"] == 0.5 and "disliked_same_genre" not in row


def test_onehot_logistic_regression_learns_the_item_effect():
    pool = []
    for i in range(20):
        ex = example([True, False], 0.5, 3, 0.5, label=i % 2)
        ex.update(user_id=str(i), item_id="good" if i % 2 else "bad", user={}, item={"genres": []})
        pool.append(ex)
    scores = onehot_logistic_scores(pool, pool)
    labels = np.array([ex["label"] for ex in pool])
    assert scores[labels == 1].min() > scores[labels == 0].max()


def test_baseline_specs_cover_every_method_at_each_budget():
    specs = baseline_specs([0, 16, 64], [0, 1])
    assert [s.run_name for s in specs[:3]] == list(HEURISTICS)
    assert BaselineSpec("itemknn", 16, 1) in specs and BaselineSpec("itemknn") in specs
    assert BaselineSpec("itemknn", 0, 0) not in specs, "nothing to learn from zero shots"
    assert len(specs) == 3 + len(LEARNED) * 2 * 2 + len(LEARNED)
    assert (
        BaselineSpec("logreg", 16, 1).run_name == "logreg_16shot-seed1" and BaselineSpec("logreg").name == "logreg_full"
    )
