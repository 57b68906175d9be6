"""Tests for promptrec.protocols: TALLRec example building and prepared-split I/O."""

import hashlib
import json
from pathlib import Path

import pytest

from promptrec.core.errors import ConfigError, DataError
from promptrec.data.dataset import Dataset, Interaction, Item, User, load_movielens
from promptrec.protocols.prepare import prepare_movielens, prepare_table
from promptrec.protocols.splits import dataset_checksum, load_alpaca, load_split, write_prepared
from promptrec.protocols.tallrec import build_tallrec_examples

DATA = Path(__file__).parent / "data"
MINI_ML = DATA / "mini-ml"
ALPACA_DIR = DATA / "alpaca"
PROTOCOL = {"name": "tallrec", "parameters": {"history_len": 10}}


@pytest.fixture(scope="module")
def mini() -> Dataset:
    return load_movielens(MINI_ML)


@pytest.fixture(scope="module")
def mini_splits(mini) -> dict:
    return build_tallrec_examples(mini)


def toy_dataset(num_interactions: int, ratings=None, labels=None) -> Dataset:
    """One user with `num_interactions` distinct items at increasing times."""
    ratings = ratings or [4.0] * num_interactions
    items = {str(i): Item(str(i), f"Item {i}", {}) for i in range(num_interactions)}
    interactions = [
        Interaction("u", str(i), None if labels else ratings[i], labels[i] if labels else None, i)
        for i in range(num_interactions)
    ]
    return Dataset("toy", {"u": User("u", {})}, items, interactions)


# ---------------------------------------------------------------- building


def test_mini_split_sizes_and_user_order(mini_splits):
    # user 7 has 14 interactions (4 windows), user 12 has 5 (none), user 3 has 12 (2 windows);
    # users come in first-appearance order 7, 12, 3: not sorted as numbers or as strings
    assert {k: len(v) for k, v in mini_splits.items()} == {"train": 4, "valid": 1, "test": 1}
    assert [e["user_id"] for e in mini_splits["train"]] == ["7"] * 4
    assert [e["item_id"] for e in mini_splits["train"]] == ["11", "12", "13", "14"]
    assert (mini_splits["valid"][0]["item_id"], mini_splits["test"][0]["item_id"]) == ("4", "3")
    assert [e["example_id"] for e in mini_splits["train"]] == [f"train-0000{i}" for i in range(4)]


def test_history_is_time_ordered_and_stable_on_ties(mini_splits):
    # items 5 and 4 share a timestamp; 5 comes first in u.data, so it stays first
    history = mini_splits["train"][0]["history"]
    assert [h["item_id"] for h in history] == ["3", "1", "2", "5", "4", "6", "7", "8", "9", "10"]


def test_history_is_previous_items_never_the_target(mini, mini_splits):
    by_user = {}
    for x in mini.interactions:
        by_user.setdefault(x.user_id, []).append(x)
    for examples in mini_splits.values():
        for example in examples:
            ordered = sorted(by_user[example["user_id"]], key=lambda x: x.timestamp)
            position = [(x.item_id, x.timestamp) for x in ordered].index((example["item_id"], example["timestamp"]))
            expected = [x.item_id for x in ordered[position - 10 : position]]
            assert [h["item_id"] for h in example["history"]] == expected
            assert example["item_id"] not in expected
            times = [h["timestamp"] for h in example["history"]]
            assert times == sorted(times) and times[-1] <= example["timestamp"]


def test_example_schema(mini_splits):
    example = mini_splits["train"][0]
    assert set(example) == {
        "example_id",
        "user_id",
        "item_id",
        "label",
        "rating",
        "timestamp",
        "user",
        "item",
        "stats",
        "history",
        "knn",
    }
    assert example["user"] == {
        "user_id": "7",
        "age": 53,
        "gender": "F",
        "occupation": "other",
        "zip": "94043",
    }
    assert example["item"] == {
        "item_id": "11",
        "title": "Speed (1994)",
        "genres": ["Action"],
        "year": 1994,
        "release_date": "01-Jan-1994",
    }
    assert example["history"][0] == {
        "item_id": "3",
        "title": "Café au Lait (1993)",
        "genres": ["Comedy", "Drama"],
        "year": 1993,
        "release_date": "01-Jan-1993",
        "rating": 3.0,
        "liked": False,
        "timestamp": 880000900,
    }
    assert (example["label"], example["rating"], example["timestamp"]) == (1, 4.0, 880001900)


@pytest.mark.parametrize(
    "ratings, labels, expected",
    [
        ([1.0, 2.0, 3.0, 3.5, 4.0, 5.0], None, [0, 0, 0, 1, 1, 1]),  # liked = rating > 3
        (None, [0, 1, 1, 0, 1, 0], [0, 1, 1, 0, 1, 0]),  # label-only data: liked = label == 1
    ],
)
def test_liked_rule(ratings, labels, expected):
    splits = build_tallrec_examples(toy_dataset(7, ratings and [4.0] + ratings, labels and [0] + labels), 1)
    examples = splits["train"] + splits["valid"] + splits["test"]
    assert [e["label"] for e in examples] == expected
    assert [e["history"][0]["liked"] for e in examples[1:]] == [bool(x) for x in expected[:-1]]


@pytest.mark.parametrize(
    "num_windows, expected_sizes",
    [
        (10, (8, 1, 1)),
        (6, (4, 1, 1)),
        (20, (16, 2, 2)),
    ],
)
def test_split_boundaries_follow_tallrec(num_windows, expected_sizes):
    splits = build_tallrec_examples(toy_dataset(num_windows + 2), history_len=2)
    assert tuple(len(splits[s]) for s in ("train", "valid", "test")) == expected_sizes


@pytest.mark.parametrize(
    "num_windows, expected",
    [
        (3, "only 3 examples could be built, so the valid split would be empty; lower --history-len"),
        (1, "so the train and valid split would be empty"),
        (0, "no user has more than 2 ratings (the most any user has is 2), so no example could be built"),
    ],
)
def test_an_empty_split_is_refused_with_the_reason(num_windows, expected):
    with pytest.raises(DataError) as err:
        build_tallrec_examples(toy_dataset(num_windows + 2), history_len=2)
    assert expected in str(err.value)


def test_max_examples_keeps_the_last_windows():
    splits = build_tallrec_examples(toy_dataset(32), history_len=2, max_examples=10)
    kept = [e["item_id"] for s in ("train", "valid", "test") for e in splits[s]]
    assert kept == [str(i) for i in range(22, 32)]


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"history_len": 0}, "history_len must be a positive integer, got 0"),
        ({"max_examples": -1}, "max_examples must be a positive integer, got -1"),
        ({"fractions": (0.8, 0.1)}, r"fractions must be three non-negative numbers summing to 1"),
        ({"fractions": (0.5, 0.1, 0.1)}, r"got \(0\.5, 0\.1, 0\.1\)"),
    ],
)
def test_bad_parameters(mini, kwargs, expected):
    with pytest.raises(ConfigError, match=expected):
        build_tallrec_examples(mini, **kwargs)


def test_item_attribute_clashing_with_history_field():
    dataset = toy_dataset(3)
    dataset.items["0"] = Item("0", "Zero", {"rating": "PG"})
    with pytest.raises(DataError, match=r"item '0': attribute 'rating' clashes with a history field"):
        build_tallrec_examples(dataset, history_len=1)


# ---------------------------------------------------------------- writing and reading


def test_write_is_byte_identical_and_round_trips(tmp_path, mini_splits):
    first = write_prepared(mini_splits, tmp_path / "a", PROTOCOL).parent
    second = write_prepared(mini_splits, tmp_path / "b", PROTOCOL).parent
    names = sorted(p.name for p in first.iterdir())
    assert names == ["manifest.json", "test.jsonl", "train.jsonl", "valid.jsonl"]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert load_split(first, "train") == mini_splits["train"]
    assert "Café" in (first / "train.jsonl").read_text(encoding="utf-8")  # ensure_ascii=False


def test_manifest_records_protocol_counts_and_checksums(tmp_path, mini_splits):
    manifest = json.loads(write_prepared(mini_splits, tmp_path, PROTOCOL).read_text())
    assert manifest["name"] == "tallrec" and manifest["parameters"] == {"history_len": 10}
    train = manifest["splits"]["train"]
    assert (train["num_examples"], train["positive_rate"]) == (4, 0.5)
    assert train["sha256"] == hashlib.sha256((tmp_path / "train.jsonl").read_bytes()).hexdigest()
    assert dataset_checksum(tmp_path, "train") == train["sha256"]


def test_write_refuses_foreign_non_empty_dir(tmp_path, mini_splits):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match=r"not empty and holds no manifest\.json.*pick an empty directory"):
        write_prepared(mini_splits, tmp_path, PROTOCOL)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_write_replaces_a_prepared_dir_without_stale_files(tmp_path, mini_splits):
    out = tmp_path / "prepared"
    write_prepared({"train": mini_splits["train"], "old": mini_splits["test"]}, out, PROTOCOL, {"knowledge.tsv": b"x"})
    write_prepared(mini_splits, out, PROTOCOL)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "test.jsonl", "train.jsonl", "valid.jsonl"]
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"], "no temporary sibling is left"


def test_write_refuses_a_file(tmp_path, mini_splits):
    (tmp_path / "out").write_text("keep me")
    with pytest.raises(DataError, match=r"out: exists and is not a directory"):
        write_prepared(mini_splits, tmp_path / "out", PROTOCOL)


def test_crash_while_writing_keeps_the_old_prepared_dir(tmp_path, mini_splits, request):
    out = tmp_path / "prepared"
    write_prepared({"train": mini_splits["train"]}, out, PROTOCOL)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    request.getfixturevalue("disk_full_on_second_write")  # armed only now: the old dir is written
    with pytest.raises(OSError, match="No space left"):
        write_prepared(mini_splits, out, PROTOCOL)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"], "the half-written temporary dir is removed"


def test_prepare_movielens_records_sources(tmp_path):
    manifest = prepare_movielens(MINI_ML, tmp_path / "out")
    expected = hashlib.sha256((MINI_ML / "u.data").read_bytes()).hexdigest()
    assert manifest["sources"]["u.data"] == expected
    assert sorted(manifest["sources"]) == ["u.data", "u.genre", "u.item", "u.user"]
    assert {k: v["num_examples"] for k, v in manifest["splits"].items()} == {
        "train": 4,
        "valid": 1,
        "test": 1,
    }
    assert manifest["parameters"]["history_len"] == 10


def test_prepare_table(tmp_path):
    rows = "".join(f"u,{i},{1 + i % 5},{i}\n" for i in range(13))
    interactions = tmp_path / "r.csv"
    interactions.write_text("user_id,item_id,rating,timestamp\n" + rows)
    manifest = prepare_table(interactions, None, None, tmp_path / "out", history_len=2)
    assert sum(v["num_examples"] for v in manifest["splits"].values()) == 11
    assert list(manifest["sources"]) == ["r.csv"]


@pytest.mark.parametrize(
    "relative, split, expected_first_id",
    [
        ("prepared", "valid", "valid-00000"),  # a prepared dir
        ("prepared/test.jsonl", "ignored", "test-00000"),  # one prepared file
        ("alpaca", "test", "test-00000"),  # a dir of Alpaca files
        ("alpaca/test.json", "ignored", "test-00000"),  # one Alpaca file
    ],
)
def test_load_split_path_kinds(tmp_path, mini_splits, relative, split, expected_first_id):
    write_prepared(mini_splits, tmp_path / "prepared", PROTOCOL)
    (tmp_path / "alpaca").mkdir()
    (tmp_path / "alpaca" / "test.json").write_bytes((ALPACA_DIR / "test.json").read_bytes())
    assert load_split(tmp_path / relative, split)[0]["example_id"] == expected_first_id


def test_load_split_missing_split_lists_available(tmp_path, mini_splits):
    write_prepared(mini_splits, tmp_path, PROTOCOL)
    with pytest.raises(DataError, match=r"no split 'dev'.*available splits: test, train, valid"):
        load_split(tmp_path, "dev")


def test_load_split_empty(tmp_path):
    (tmp_path / "test.jsonl").write_text("")
    with pytest.raises(DataError, match=r"test\.jsonl: split 'test' has no examples"):
        load_split(tmp_path)


def test_load_split_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: no such file or directory"):
        load_split(tmp_path / "nowhere")


# ---------------------------------------------------------------- Alpaca


def test_load_alpaca():
    examples = load_alpaca(ALPACA_DIR / "test.json")
    assert [e["label"] for e in examples] == [1, 0, 1]
    assert examples[1]["example_id"] == "test-00001"
    assert set(examples[0]) == {"example_id", "instruction", "input", "output", "label"}
    assert examples[0]["output"] == "Yes."


@pytest.mark.parametrize("output, label", [("Yes.", 1), ("No.", 0), (" yes ", 1), ("NO", 0)])
def test_alpaca_output_normalisation(tmp_path, output, label):
    path = tmp_path / "few.json"
    path.write_text(json.dumps([{"instruction": "i", "input": "x", "output": output}]))
    assert load_alpaca(path)[0]["label"] == label


@pytest.mark.parametrize(
    "records, expected",
    [
        (
            [{"instruction": "i", "input": "x", "output": "Maybe."}],
            r"bad\.json: record 0 \(0-based\) has output 'Maybe\.'",
        ),
        ([{"instruction": "i", "output": "Yes."}], r"bad\.json: record 0 \(0-based\) has no 'input' key"),
        ({"instruction": "i"}, r"bad\.json: expected a JSON list"),
    ],
)
def test_alpaca_errors_name_file_record_and_value(tmp_path, records, expected):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(records))
    with pytest.raises(DataError, match=expected):
        load_alpaca(path)


def test_alpaca_invalid_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n{"instruction": \n')
    with pytest.raises(DataError, match=r"bad\.json:\d+: invalid JSON"):
        load_alpaca(path)


# ---------------------------------------------------------------- real data


def test_real_movielens_tallrec_split(ml100k_dir):
    dataset = load_movielens(ml100k_dir)
    assert (len(dataset.users), len(dataset.items), len(dataset.interactions)) == (
        943,
        1682,
        100000,
    )
    splits = build_tallrec_examples(dataset)
    assert {k: len(v) for k, v in splits.items()} == {"train": 8000, "valid": 1000, "test": 1000}
    assert len({e["user_id"] for e in splits["test"]}) == 16


def test_prior_stats_use_only_earlier_interactions():
    """Counts and like-rates come from interactions strictly before the example's timestamp."""
    from promptrec.data.dataset import Interaction
    from promptrec.protocols.tallrec import PriorStats

    events = [("u1", "a", 5.0, 10), ("u2", "a", 2.0, 20), ("u3", "a", 4.0, 30), ("u1", "b", 1.0, 30)]
    prior = PriorStats([Interaction(u, i, r, None, t) for u, i, r, t in events], like_threshold=3.0)
    assert prior.before("item", "a", 10) == {"item_num_ratings": 0, "item_like_rate": None}
    assert prior.before("item", "a", 30) == {"item_num_ratings": 2, "item_like_rate": 0.5}
    assert prior.before("item", "a", 31) == {"item_num_ratings": 3, "item_like_rate": round(2 / 3, 4)}
    assert prior.before("user", "u1", 30) == {"user_num_ratings": 1, "user_like_rate": 1.0}
    assert prior.before("user", "nobody", 99) == {"user_num_ratings": 0, "user_like_rate": None}


def test_example_stats_match_brute_force_counts():
    from promptrec.data.dataset import load_movielens
    from promptrec.protocols.tallrec import build_tallrec_examples

    dataset = load_movielens(Path(__file__).parent / "data" / "mini-ml")
    for split in build_tallrec_examples(dataset, history_len=3).values():
        for example in split:
            for kind, key in (("item", example["item_id"]), ("user", example["user_id"])):
                earlier = [
                    x
                    for x in dataset.interactions
                    if getattr(x, f"{kind}_id") == key and x.timestamp < example["timestamp"]
                ]
                assert example["stats"][f"{kind}_num_ratings"] == len(earlier)
                if earlier:
                    rate = sum(x.rating > 3 for x in earlier) / len(earlier)
                    assert example["stats"][f"{kind}_like_rate"] == round(rate, 4)
