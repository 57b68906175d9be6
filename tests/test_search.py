"""Tests for promptrec.search: category-path queries, leave-one-out candidate sets, the search splits."""

import json
from pathlib import Path

import pytest

from promptrec.cli.main import main
from promptrec.core.errors import ConfigError, DataError
from promptrec.data.dataset import Dataset, Interaction, Item, User
from promptrec.protocols.search import (
    build_search_candidates,
    prepare_search,
    query_overlap,
    search_query,
    search_summary,
)
from promptrec.templates.template import load_template

AMAZON = Path(__file__).parent / "data" / "amazon"
ROOT = "Magazine Subscriptions"
NUM_ITEMS = 30


def catalogue_item(i: int) -> Item:
    if i == 28:  # no category below the root: the brand is the query
        return Item("I28", "Item 28", {"categories": [ROOT], "brand": "Acme Press"})
    if i == 29:  # nothing to build a query from
        return Item("I29", "Item 29", {"categories": [], "brand": None})
    sections = ["Cooking, Food & Wine", "Home & Garden", "Sports"]
    return Item(f"I{i:02d}", f"Item {i}", {"categories": [ROOT, sections[i % 3], f"Level {i % 2}"], "brand": "B"})


def make_dataset(users: dict[str, list[int]]) -> Dataset:
    """users: user id -> item numbers in time order (written to the file newest first)."""
    items = {item.item_id: item for item in map(catalogue_item, range(NUM_ITEMS))}
    interactions = [
        Interaction(user, catalogue_item(i).item_id, 5.0, None, 1000 * (k + 1))
        for user, numbers in users.items()
        for k, i in reversed(list(enumerate(numbers)))
    ]
    return Dataset("toy", {u: User(u) for u in users}, items, interactions)


USERS = {"u1": [0, 1, 2, 3], "u2": [4, 5, 28], "u3": [6, 29], "u4": [7, 8, 9, 10, 11]}


@pytest.fixture
def dataset() -> Dataset:
    return make_dataset(USERS)


@pytest.mark.parametrize(
    "categories, brand, query, source",
    [
        ([ROOT, "Food & Wine", "Recipes & Techniques"], None, "food wine recipes techniques", "category"),
        (["Books", "Children's Books", "Ages 9-12", "Children's Books"], "X", "children's books ages 9-12", "category"),
        (["Gift Cards", "Gift Cards"], "Starbucks", "starbucks", "brand"),  # the root repeated is still the root
        ([], "  Acme   Press ", "acme press", "brand"),
        (["Gift Cards"], None, "", "none"),
        ("Gift Cards", "", "", "none"),  # a bare string is one level: the root
    ],
)
def test_search_query(categories, brand, query, source):
    assert search_query({"categories": categories, "brand": brand}) == (query, source)


def test_candidates_hold_the_last_purchase_once_and_never_a_touched_item(dataset):
    rows = build_search_candidates(dataset, num_candidates=10, seed=3)
    assert [row["user_id"] for row in rows] == ["u1", "u2", "u4"]  # u3's last item has no query
    for row in rows:
        owned = {x.item_id for x in dataset.interactions if x.user_id == row["user_id"]}
        assert row["target"] == catalogue_item(USERS[row["user_id"]][-1]).item_id  # last by time, not by file
        assert len(row["candidates"]) == len(set(row["candidates"])) == 10
        assert row["candidates"].count(row["target"]) == 1
        assert not (set(row["candidates"]) - {row["target"]}) & owned
        assert set(row["candidates"]) <= set(dataset.items)


def test_query_comes_from_the_target_category_path(dataset):
    rows = {row["user_id"]: row for row in build_search_candidates(dataset)}
    assert rows["u1"]["query"] == "cooking food wine level 1" and rows["u1"]["query_source"] == "category"  # I03
    assert rows["u2"]["query"] == "acme press" and rows["u2"]["query_source"] == "brand"  # I28


def test_valid_split_targets_the_second_to_last_purchase(dataset):
    rows = {row["user_id"]: row for row in build_search_candidates(dataset, split="valid")}
    assert rows["u1"]["target"] == "I02" and rows["u3"]["target"] == "I06"
    assert rows["u1"]["candidates"] != build_search_candidates(dataset)[0]["candidates"]


def test_candidates_are_deterministic_and_depend_on_the_seed(dataset):
    assert build_search_candidates(dataset, seed=1) == build_search_candidates(dataset, seed=1)
    first, other = build_search_candidates(dataset, seed=1), build_search_candidates(dataset, seed=2)
    assert [r["candidates"] for r in first] != [r["candidates"] for r in other]


def test_a_users_candidates_do_not_change_when_users_are_added():
    alone = build_search_candidates(make_dataset({"u1": USERS["u1"]}))
    together = build_search_candidates(make_dataset(USERS | {"u0": [12, 13]}))
    assert alone[0] == next(row for row in together if row["user_id"] == "u1")


def test_the_target_is_not_always_first(dataset):
    rows = [row for seed in range(5) for row in build_search_candidates(dataset, seed=seed)]
    assert len({row["candidates"].index(row["target"]) for row in rows}) > 1


def test_summary_counts_users_without_a_query(dataset):
    rows = build_search_candidates(dataset)
    assert search_summary(dataset, rows) == {
        "num_users": 4,
        "num_rows": 3,
        "num_users_without_query": 1,
        "query_sources": {"brand": 1, "category": 2},
    }


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        ({"num_candidates": 1}, ConfigError, "num_candidates must be >= 2"),
        ({"num_candidates": 27}, DataError, "user 'u4' interacted with 5 of 30 items"),
        ({"split": "train"}, ConfigError, "split must be one of test, valid"),
    ],
)
def test_bad_parameters(dataset, kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        build_search_candidates(dataset, **kwargs)


def test_prepared_split_as_source(dataset, tmp_path):
    test = [json.loads(line) for line in open(prepare_and_path(dataset, tmp_path) / "test.jsonl")]
    rows = build_search_candidates(test, num_candidates=5)
    by_user = {row["user_id"]: row for row in rows}
    assert by_user["u1"]["target"] == "I03"
    history = {h["item_id"] for ex in test if ex["user_id"] == "u4" for h in ex["history"]}
    assert not (set(by_user["u4"]["candidates"]) - {"I11"}) & history


def test_next_item_catalog_as_source(dataset, tmp_path):
    from promptrec.protocols.next_item import load_catalog, prepare_next_item

    prepare_next_item(dataset, tmp_path / "next")
    rows = build_search_candidates(load_catalog(tmp_path / "next"))
    assert {row["user_id"]: row["target"] for row in rows} == {"u1": "I03", "u2": "I28", "u4": "I11"}


# ---------------------------------------------------------------- prepared search splits


def prepare_and_path(dataset: Dataset, tmp_path: Path) -> Path:
    prepare_search(dataset, tmp_path / "search", history_len=2, num_candidates=5, negatives=2, seed=0)
    return tmp_path / "search"


def test_prepare_search_splits(dataset, tmp_path):
    out = prepare_and_path(dataset, tmp_path)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == "search" and manifest["parameters"]["num_candidates"] == 5
    assert manifest["counts"]["test"]["num_users_without_query"] == 1
    splits = {name: [json.loads(line) for line in open(out / f"{name}.jsonl")] for name in ("train", "valid", "test")}
    for name in ("valid", "test"):
        by_user: dict[str, list[dict]] = {}
        for example in splits[name]:
            by_user.setdefault(example["user_id"], []).append(example)
        assert all(len(group) == 5 and sum(ex["label"] for ex in group) == 1 for group in by_user.values())
        assert all(len({ex["query"] for ex in group}) == 1 for group in by_user.values())
    # train: every purchase before the valid one, each followed by 2 negatives
    positives = [(ex["user_id"], ex["item_id"]) for ex in splits["train"] if ex["label"] == 1]
    assert positives == [("u1", "I00"), ("u1", "I01"), ("u2", "I04"), ("u4", "I07"), ("u4", "I08"), ("u4", "I09")]
    assert len(splits["train"]) == 18


def test_search_examples_show_only_earlier_purchases(dataset, tmp_path):
    test = [json.loads(line) for line in open(prepare_and_path(dataset, tmp_path) / "test.jsonl")]
    example = next(ex for ex in test if ex["user_id"] == "u4" and ex["label"] == 0)
    assert [h["item_id"] for h in example["history"]] == ["I09", "I10"]  # the 2 before I11
    assert example["query"] == search_query(catalogue_item(11).attributes)[0]
    assert example["rating"] is None and example["item_id"] != "I11"


def test_prepare_search_needs_categories_or_brand(tmp_path):
    items = {f"M{i}": Item(f"M{i}", f"Movie {i}", {"genres": ["Drama"]}) for i in range(10)}
    interactions = [Interaction("u", f"M{i}", 4.0, None, i) for i in range(3)]
    dataset = Dataset("movies", {"u": User("u")}, items, interactions)
    with pytest.raises(DataError, match="needs items with a 'categories' list or a 'brand'"):
        prepare_search(dataset, tmp_path / "out")


def write_amazon_files(folder: Path) -> tuple[Path, Path]:
    """28 magazines, 10 shoppers with 3 purchases each (the last with 1): 20 candidates fit every user."""
    meta = [
        {"asin": item.item_id, "title": item.title, "brand": "B", "category": item.attributes["categories"]}
        for item in map(catalogue_item, range(NUM_ITEMS - 2))
    ]
    reviews = [
        {"reviewerID": f"u{user}", "asin": f"I{i:02d}", "overall": 5.0, "unixReviewTime": 1000 * k}
        for user in range(10)
        for k, i in enumerate(range(3 * user, min(3 * user + 3, NUM_ITEMS - 2)))
    ]
    for name, rows in (("reviews.json", reviews), ("meta.json", meta)):
        (folder / name).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return folder / "reviews.json", folder / "meta.json"


def test_cli_prepare_amazon_search(tmp_path, capsys):
    reviews, meta = write_amazon_files(tmp_path)
    argv = ["data", "prepare", "amazon", "--reviews", str(reviews), "--meta", str(meta), "--protocol", "search"]
    assert main([*argv, "--out", str(tmp_path / "search")]) == 0
    out = capsys.readouterr().out
    assert "positive rate (label 1): test 0.05, train 0.5, valid 0.05" in out
    assert "test 200, train 18, valid 180" in out  # 10 users x 20 candidates; 9 have a valid and a train purchase
    example = json.loads((tmp_path / "search" / "test.jsonl").read_text().splitlines()[0])
    assert example["query"] and "history" in example


def test_search_split_renders_and_scores_with_both_search_templates(tmp_path, tiny_model_dir, capsys):
    reviews, meta = write_amazon_files(tmp_path)
    data = tmp_path / "search"
    argv = ["data", "prepare", "amazon", "--reviews", str(reviews), "--meta", str(meta), "--protocol", "search"]
    assert main([*argv, "--out", str(data)]) == 0
    examples = [json.loads(line) for line in (data / "test.jsonl").open()]
    for name in ("product_search", "product_search_personal"):
        assert all(load_template(name).render(ex).endswith("will buy? Answer:") for ex in examples)
    out = tmp_path / "results"
    evaluate = ["evaluate", "--data", str(data), "--template", "product_search_personal", "--limit", "8"]
    assert main([*evaluate, "--model", str(tiny_model_dir), "--no-reliability-plot", "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["num_examples"] == 8


def test_candidates_search_retriever_writes_queries_for_the_rank_path(tmp_path, capsys):
    from promptrec.baselines.retrievers import build_candidates
    from promptrec.protocols.candidates import CandidateConfig, load_candidates
    from promptrec.protocols.next_item import load_catalog
    from promptrec.protocols.prepare import prepare_dataset

    dataset = make_dataset({"u1": [0, 1, 2, 3], "u2": [4, 5, 28], "u3": [6, 7, 29], "u4": [7, 8, 9, 10, 11]})
    prepare_dataset(dataset, tmp_path / "next", protocol="next-item", history_len=2)
    catalog = load_catalog(tmp_path / "next")
    rows, record = build_candidates(catalog, "test", CandidateConfig("search", num=5, seed=1))
    targets = {u: ex["item_id"] for u, ex in catalog.contexts("test").items()}
    assert {r["user_id"] for r in rows} == {"u1", "u2", "u4"}, "u3's last purchase (I29) gives no query"
    assert record["num_users_without_query"] == 1 and record["recall_at_5"] == 1.0
    for row in rows:
        assert row["query"] and targets[row["user_id"]] in row["candidates"] and len(row["candidates"]) == 5
    out = tmp_path / "c.jsonl"
    assert main(["candidates", "--data", str(tmp_path / "next"), "--retriever", "search", "--num", "5",
                 "--out", str(out)]) == 0  # fmt: skip
    assert all("query" in r for r in load_candidates(out, catalog, "test").rows)
    lexical = ["candidates", "--data", str(tmp_path / "next"), "--retriever", "search", "--num", "5",
               "--out", str(tmp_path / "x.jsonl"), "--retriever-ranked", str(tmp_path / "order.jsonl")]  # fmt: skip
    assert main(lexical) == 0
    ranked = {r["user_id"]: r["items"] for r in map(json.loads, (tmp_path / "order.jsonl").open())}
    for row in load_candidates(tmp_path / "x.jsonl", catalog, "test").rows:
        overlaps = [query_overlap(row["query"], catalog.items[item]) for item in ranked[row["user_id"]]]
        assert sorted(ranked[row["user_id"]]) == sorted(row["candidates"])
        assert overlaps == sorted(overlaps, reverse=True)
        assert overlaps[0] == 1.0, "the purchase's own category words are the query"


@pytest.mark.parametrize(
    "query, item, expected",
    [
        ("cooking food wine", {"categories": ["Magazine Subscriptions", "Cooking, Food & Wine"]}, 1.0),
        ("cooking food wine", {"categories": ["Magazine Subscriptions", "Food"]}, 1 / 3),
        ("cooking food", {"categories": ["Magazine Subscriptions", "Sports"]}, 0.0),
        ("acme", {"categories": ["Magazine Subscriptions"], "brand": "Acme"}, 1.0),
        ("acme", {}, 0.0),
    ],
)
def test_query_overlap_is_jaccard_of_query_words(query, item, expected):
    assert query_overlap(query, item) == pytest.approx(expected)
