"""Classic baselines: features from an example's own history and leak-free stats; sklearn models."""

import json
import math

import numpy as np
import pytest

from promptrec.baselines import FEATURES, HEURISTICS, features, logistic_scores, run_baselines
from promptrec.cli import main
from promptrec.errors import DataError


def example(liked, item_rate, item_count, user_rate, label=1, ratings=None):
    ratings = ratings or [5.0 if x else 2.0 for x in liked]
    return {
        "example_id": "e",
        "user_id": "u",
        "label": label,
        "history": [{"liked": x, "rating": r} for x, r in zip(liked, ratings)],
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
    assert set(results) == set(HEURISTICS) | {"logreg_10shot", "logreg_full"}
    assert len(results["logreg_10shot"]) == 2
    record = json.loads((tmp_path / "logreg_10shot-seed1" / "config.json").read_text())
    assert record["kind"] == "baseline" and record["shots"] == 10 and record["seed"] == 1
    assert math.isnan(results["history_like_fraction"][0]["logloss"]), "rates are not log-odds"


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
