"""The global-time protocol: all users' ratings on one timeline, cut 80/10/10 by position."""

import json
from pathlib import Path

import pytest

from promptrec.cli.main import main
from promptrec.core.errors import ConfigError
from promptrec.data.dataset import Dataset, Interaction, Item, User
from promptrec.protocols.global_time import build_global_time_examples
from promptrec.protocols.splits import load_split
from promptrec.templates.template import load_template

MINI_ML = Path(__file__).parent / "data" / "mini-ml"
SPLITS = ("train", "valid", "test")


def two_users() -> Dataset:
    """Ten ratings in file order; u2 rates twice in second 4, and rates u1's item i4 last."""
    rows = [
        ("u1", "i1", 5, 1),
        ("u1", "i2", 4, 2),
        ("u1", "i3", 1, 3),
        ("u1", "i4", 5, 5),
        ("u1", "i5", 2, 8),
        ("u2", "j1", 4, 2),
        ("u2", "j2", 2, 4),
        ("u2", "j3", 4, 4),
        ("u2", "j4", 5, 6),
        ("u2", "i4", 1, 9),
    ]
    items = {item: Item(item, f"Title {item}", {}) for _, item, _, _ in rows}
    users = {user: User(user, {}) for user in ("u1", "u2")}
    interactions = [Interaction(user, item, float(rating), None, time) for user, item, rating, time in rows]
    return Dataset("two-users", users, items, interactions)


def test_hand_made_timeline_cut_and_windows():
    # timeline: i1@1 i2@2 j1@2 i3@3 j2@4 j3@4 i4@5 j4@6 | i5@8 | i4@9 (u2): 8 train, 1 valid, 1 test
    splits, counts = build_global_time_examples(two_users(), history_len=2)
    items = {split: [(e["user_id"], e["item_id"]) for e in examples] for split, examples in splits.items()}
    assert items == {
        "train": [("u1", "i3"), ("u1", "i4"), ("u2", "j4")],
        "valid": [("u1", "i5")],
        "test": [("u2", "i4")],
    }
    histories = {split: [[h["item_id"] for h in e["history"]] for e in examples] for split, examples in splits.items()}
    # j3 shares second 4 with j2, so neither is the other's history: j3 has one earlier rating, no example
    assert histories == {
        "train": [["i1", "i2"], ["i2", "i3"], ["j2", "j3"]],
        "valid": [["i3", "i4"]],
        "test": [["j3", "j4"]],
    }
    assert [e["example_id"] for e in splits["train"]] == ["train-00000", "train-00001", "train-00002"]
    assert counts["train"] == {
        "num_interactions": 8,
        "num_without_full_history": 5,
        "first_timestamp": 1,
        "last_timestamp": 6,
    }


def test_stats_come_from_ratings_strictly_before():
    splits, _ = build_global_time_examples(two_users(), history_len=2)
    (test,) = splits["test"]
    # i4 was rated once before (u1, 5 stars: liked); u2 rated 4 items before second 9, 3 of them liked
    assert test["stats"] == {
        "item_num_ratings": 1,
        "item_like_rate": 1.0,
        "user_num_ratings": 4,
        "user_like_rate": 0.75,
    }
    assert test["label"] == 0


@pytest.mark.parametrize(
    "kwargs, expected",
    [({"history_len": 0}, "history_len must be a positive integer"), ({"fractions": (0.5, 0.5)}, "fractions")],
)
def test_bad_parameters(kwargs, expected):
    with pytest.raises(ConfigError, match=expected):
        build_global_time_examples(two_users(), **kwargs)


@pytest.fixture(scope="module")
def mini_time(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("global-time") / "prepared"
    argv = ["data", "prepare", "movielens", "--source", str(MINI_ML), "--protocol", "global-time"]
    assert main([*argv, "--history-len", "3", "--out", str(out)]) == 0
    return out


def test_cli_prints_counts_and_the_cut(tmp_path, capsys):
    argv = ["data", "prepare", "movielens", "--source", str(MINI_ML), "--protocol", "global-time"]
    assert main([*argv, "--history-len", "3", "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["name"] == "global-time" and manifest["parameters"]["history_len"] == 3
    counts = {split: manifest["splits"][split]["num_examples"] for split in SPLITS}
    assert f"test {counts['test']}, train {counts['train']}, valid {counts['valid']}" in out
    assert [manifest["counts"][split]["num_interactions"] for split in SPLITS] == [24, 3, 4]  # 31 ratings
    assert "train: 24 interactions from 880000900 to " in out


def test_splits_follow_each_other_in_time(mini_time):
    splits = {split: load_split(mini_time, split) for split in SPLITS}
    assert all(splits.values())
    for earlier, later in zip(SPLITS, SPLITS[1:]):
        assert max(e["timestamp"] for e in splits[earlier]) <= min(e["timestamp"] for e in splits[later])
    for examples in splits.values():
        times = [e["timestamp"] for e in examples]
        assert times == sorted(times)


def test_no_history_reaches_its_example_time(mini_time):
    for split in SPLITS:
        for example in load_split(mini_time, split):
            times = [h["timestamp"] for h in example["history"]]
            assert len(times) == 3 and times == sorted(times) and max(times) < example["timestamp"]
            assert example["stats"]["user_num_ratings"] >= 3


def test_examples_render_with_the_title_and_tallrec_templates(mini_time):
    for example in load_split(mini_time, "test"):
        for name in ("history_titles", "tallrec_plain", "movie_rich"):
            assert load_template(name).render(example)
