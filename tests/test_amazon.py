"""Tests for promptrec.amazon: the Amazon 2018 loader, its repairs and counts, and `data prepare amazon`."""

import gzip
import json
from pathlib import Path

import pytest

from promptrec.cli.main import main
from promptrec.core.errors import ConfigError, DataError
from promptrec.data.amazon import load_amazon
from promptrec.data.dataset import Interaction
from promptrec.templates.template import load_template

FIXTURES = Path(__file__).parent / "data" / "amazon"
REVIEWS = FIXTURES / "reviews.json"
META = FIXTURES / "meta.json"
RATINGS = FIXTURES / "ratings.csv"


@pytest.fixture(scope="module")
def loaded():
    return load_amazon(REVIEWS, META)


def gzipped(tmp_path: Path, source: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(gzip.compress(source.read_bytes(), mtime=0))
    return path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- reviews


def test_reviews_counts_file_order_and_latest_repeat(loaded):
    dataset, report = loaded
    assert (report.num_review_lines, report.num_reviews, report.num_users, report.num_items) == (12, 10, 3, 6)
    assert report.num_bad_review_lines == 1 and report.bad_review_lines == ["line 8: missing key 'overall'"]
    assert report.num_repeated_pairs == 1
    # (U1, A2) was rated at lines 3 and 6: the later rating is kept, in its own file position
    assert [x for x in dataset.interactions if (x.user_id, x.item_id) == ("U1", "A2")] == [
        Interaction("U1", "A2", 1.0, None, 1500259200)
    ]
    assert [x.item_id for x in dataset.interactions[:4]] == ["A1", "A1", "A3", "A2"]
    assert list(dataset.users) == ["U1", "U2", "U3"]
    assert all(user.attributes == {} for user in dataset.users.values())
    assert dataset.name == "amazon-reviews" and dataset.source_paths == (REVIEWS, META)


def test_gzip_is_read_by_magic_bytes(tmp_path, loaded):
    dataset, _ = load_amazon(gzipped(tmp_path, REVIEWS, "Gift_Cards_5.json.gz"), gzipped(tmp_path, META, "meta.bin"))
    assert dataset.interactions == loaded[0].interactions and dataset.items == loaded[0].items
    assert dataset.name == "amazon-Gift_Cards_5"


def test_ratings_csv_keeps_the_latest_of_repeated_pairs():
    dataset, report = load_amazon(RATINGS, META)
    assert report.reviews_format == "csv" and report.num_repeated_pairs == 2
    assert dataset.interactions == [
        Interaction("U1", "A1", 5.0, None, 1500000000),
        Interaction("U2", "A1", 2.0, None, 1500000100),
        Interaction("U1", "A2", 2.0, None, 1500500000),  # the latest of three ratings, not the last line
        Interaction("U2", "A3", 4.0, None, 1500172800),
        Interaction("U3", "A5", 5.0, None, 1500432000),
    ]


# ---------------------------------------------------------------- metadata repairs


@pytest.mark.parametrize(
    "asin, title",
    [
        ("A1", "Harbor Coffee Gift Card"),  # a real title is kept
        ("A2", "Garden Table brings seasonal recipes."),  # HTML fragment -> description's first sentence
        ("A3", "Trailhead (Outdoors)"),  # empty, no description -> brand (leaf category)
        ("A4", "item A4"),  # HTML fragment and nothing else to go on
        ("A5", "Paper Lantern Books Gift Card"),  # differing duplicate line: the first is kept
        ("B9", "item B9"),  # reviewed but absent from the metadata
    ],
)
def test_titles(loaded, asin, title):
    assert loaded[0].items[asin].title == title


def test_title_repairs_are_counted(loaded):
    report = loaded[1]
    assert report.title_sources == {"title": 2, "description": 1, "brand+category": 1, "asin": 1, "no metadata": 1}
    assert report.num_titles_repaired == 3


@pytest.mark.parametrize(
    "asin, attribute, expected",
    [
        ("A1", "categories", ["Gift Cards"]),  # a repeated level is merged
        ("A2", "categories", ["Magazine Subscriptions", "Cooking, Food & Wine", "Recipes & Techniques"]),
        ("A1", "description", "Redeemable at any Harbor Coffee shop."),  # tags removed, first paragraph only
        ("A5", "description", "A card for book lovers."),  # a plain string, not a list
        ("A1", "brand", "Harbor Coffee"),
        ("A5", "brand", None),  # empty brand
        ("A1", "price", 25.0),
        ("A2", "price", 1250.0),  # thousands separator
        ("A3", "price", 10.0),  # a range: the low end
        ("A4", "price", None),  # CSS instead of a price
        ("A5", "price", None),  # empty
        ("A1", "also_buy", ["A2"]),  # unreviewed Z9 and the item itself dropped
        ("A2", "also_view", ["A1", "A5"]),
        ("B9", "categories", []),
    ],
)
def test_item_attributes(loaded, asin, attribute, expected):
    assert loaded[0].items[asin].attributes[attribute] == expected


def test_metadata_counts(loaded):
    report = loaded[1]
    assert (report.num_meta_lines, report.num_meta_asins) == (9, 6)
    assert (report.num_meta_duplicates, report.num_meta_duplicates_differing) == (2, 1)
    assert report.bad_meta_lines == ["line 8: missing key 'asin'"]
    assert (report.num_prices_missing, report.num_price_ranges, report.num_prices_unparsable) == (1, 1, 1)
    assert (report.num_links_kept, report.num_links_outside) == (3, 1)
    assert report.num_items_without_meta == 1


def test_long_descriptions_are_cut_at_a_word(tmp_path):
    words = " ".join(["word"] * 100)
    meta = write(tmp_path / "meta.json", json.dumps({"asin": "A1", "title": "T", "description": [words]}) + "\n")
    description = load_amazon(REVIEWS, meta)[0].items["A1"].attributes["description"]
    assert description.endswith("word...") and len(description) <= 203


def test_drop_items_without_metadata():
    dataset, report = load_amazon(REVIEWS, META, missing_meta="drop")
    assert "B9" not in dataset.items and report.num_reviews_without_meta_dropped == 1
    assert report.num_reviews == 9
    assert any("dropped with their 1 reviews" in line for line in report.warnings())


def test_unknown_missing_meta_policy():
    with pytest.raises(ConfigError, match="keep, drop"):
        load_amazon(REVIEWS, META, missing_meta="guess")


def test_warnings_name_every_repair_with_counts(loaded):
    text = "\n".join(loaded[1].warnings())
    for fragment in (
        "skipped 1 malformed lines (line 8: missing key 'overall')",
        "1 repeated (user, item) ratings (0 exact duplicate lines); kept the latest",
        "2 duplicate lines removed (9 lines -> 6 ASINs; 1 differed",
        "1 reviewed items have no metadata; kept with the title 'item <asin>'",
        "3 of 6 items had an HTML-fragment or missing title",
        "1 prices could not be parsed",
    ):
        assert fragment in text


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "reviews_text, expected",
    [
        (META.read_text(encoding="utf-8"), r"reviews\.json:1: missing key 'reviewerID'; expected Amazon 2018 review"),
        ("asin,reviewerID,rating,timestamp\nA1,U1,5,1\n", r":1: rating 'rating' .*ratings CSV without header"),
        ("A1,U1\n", r":1: expected 4 fields, found 2"),
        (
            '{"reviewerID": "U1", "asin": "A1", "overall": 9, "unixReviewTime": 1}\n',
            r":1: rating 9 is not a number from 1 to 5",
        ),
        (
            '{"reviewerID": "U1", "asin": "A1", "overall": NaN, "unixReviewTime": 1}\n',
            r":1: rating nan is not a number from",
        ),
        ("A1,U1,inf,1\n", r":1: rating 'inf' is not a number from 1 to 5"),
        ("A1,U1,5,1.5\n", r":1: timestamp '1.5' is not whole unix seconds"),
        ("", r"the file is empty"),
    ],
)
def test_a_file_of_the_wrong_kind_fails_at_its_first_line(tmp_path, reviews_text, expected):
    with pytest.raises(DataError, match=expected):
        load_amazon(write(tmp_path / "reviews.json", reviews_text), META)


def test_python_literal_metadata_2014_format_is_refused(tmp_path):
    meta = write(tmp_path / "meta.json", "{'asin': 'A1', 'title': 'Old format'}\n")
    with pytest.raises(DataError, match=r"meta\.json:1: invalid JSON .*product metadata JSON lines"):
        load_amazon(REVIEWS, meta)


def test_too_many_bad_lines_is_an_error(tmp_path):
    good = '{"reviewerID": "U1", "asin": "A1", "overall": 5, "unixReviewTime": 1}\n'
    reviews = write(tmp_path / "reviews.json", good + '{"reviewerID": "U1"}\n' * 11)
    with pytest.raises(DataError, match=r"11 of 12 lines are malformed \(line 2: missing key 'asin'\)"):
        load_amazon(reviews, META)


def test_truncated_gzip_names_the_file_and_says_what_to_do(tmp_path):
    data = gzip.compress((REVIEWS.read_text(encoding="utf-8") * 50).encode(), mtime=0)
    path = tmp_path / "Gift_Cards_5.json.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"Gift_Cards_5\.json\.gz:\d+: unreadable gzip data .*download it again"):
        load_amazon(path, META)


def test_gz_name_without_gzip_content(tmp_path):
    path = write(tmp_path / "reviews.json.gz", REVIEWS.read_text(encoding="utf-8"))
    with pytest.raises(DataError, match="named .gz but not a gzip file"):
        load_amazon(path, META)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.json\.gz: file not found"):
        load_amazon(REVIEWS, tmp_path / "nope.json.gz")


# ---------------------------------------------------------------- CLI


def prepare_argv(out: Path, *extra: str, reviews: Path = REVIEWS) -> list[str]:
    return ["data", "prepare", "amazon", "--reviews", str(reviews), "--meta", str(META), "--out", str(out), *extra]


def test_cli_prepare_prints_counts_and_warnings_and_records_sources(tmp_path, capsys):
    out = tmp_path / "prepared"
    assert main(prepare_argv(out, "--history-len", "1")) == 0
    captured = capsys.readouterr()
    assert "loaded 10 reviews, 3 users, 6 items" in captured.out and "positive rate (rating > 3)" in captured.out
    warnings = captured.err.splitlines()
    assert len(warnings) == 7 and all(line.startswith("promptrec: warning: ") for line in warnings)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == "tallrec" and set(manifest["sources"]) == {"reviews.json", "meta.json"}
    assert json.loads((out / "load_report.json").read_text())["num_titles_repaired"] == 3
    examples = [json.loads(line) for name in ("train", "test") for line in (out / f"{name}.jsonl").open()]
    assert {"brand", "categories", "price", "also_buy"} <= set(examples[0]["item"])
    template = load_template("product_rich")  # every repaired, empty or missing field renders
    assert all(template.render(example).endswith("Answer:") for example in examples)


@pytest.mark.parametrize(
    "reviews_text, fragment",
    [
        (None, "nope.json: file not found"),
        ("not,a,ratings\n", "expected 4 fields, found 3"),
    ],
)
def test_cli_user_errors_exit_2_with_one_line(tmp_path, capsys, reviews_text, fragment):
    reviews = tmp_path / "nope.json" if reviews_text is None else write(tmp_path / "r.csv", reviews_text)
    assert main(prepare_argv(tmp_path / "out", reviews=reviews)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("promptrec: error: ") and fragment in err


def test_cli_corrupt_gzip_exits_2(tmp_path, capsys):
    path = tmp_path / "Gift_Cards_5.json.gz"
    path.write_bytes(gzip.compress(REVIEWS.read_bytes() * 50, mtime=0)[:200])
    assert main(prepare_argv(tmp_path / "out", reviews=path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unreadable gzip data" in err


# ---------------------------------------------------------------- real data (../shared/data)


def test_real_gift_cards(amazon_data_dir):
    folder = amazon_data_dir / "amazon-gift_cards"
    dataset, report = load_amazon(folder / "Gift_Cards_5.json.gz", folder / "meta_Gift_Cards.json.gz")
    # The data README's counts: 2,972 reviews, 458 users, 148 items; 1,547 distinct metadata lines.
    assert (report.num_review_lines, report.num_users, report.num_items) == (2972, 458, 148)
    assert (report.num_meta_lines, report.num_meta_asins, report.num_meta_duplicates) == (1547, 1547, 0)
    # 7 users bought the same gift card twice; one interaction per (user, item) is kept.
    assert report.num_repeated_pairs == 7 and len(dataset.interactions) == 2965
    assert report.num_items_without_meta == 0 and report.title_sources == {"title": 148}
    assert report.num_bad_review_lines == report.num_bad_meta_lines == 0


def test_real_magazine_5core(amazon_data_dir):
    folder = amazon_data_dir / "amazon-magazine_subscriptions"
    meta = folder / "meta_Magazine_Subscriptions.json.gz"
    dataset, report = load_amazon(folder / "Magazine_Subscriptions_5.json.gz", meta)
    assert (report.num_review_lines, report.num_users, report.num_items) == (2375, 348, 157)
    # README: 3,385 lines, 2,320 ASINs, the repeated lines identical; 3 of 157 readable titles.
    assert (report.num_meta_lines, report.num_meta_asins) == (3385, 2320)
    assert (report.num_meta_duplicates, report.num_meta_duplicates_differing) == (1065, 0)
    assert report.title_sources["title"] == 3 and report.num_items_without_meta == 6
    assert report.num_repeated_pairs == 73 and len(dataset.interactions) == 2302
    assert not any(item.title.startswith("<") for item in dataset.items.values())


def test_real_magazine_ratings_csv(amazon_data_dir):
    folder = amazon_data_dir / "amazon-magazine_subscriptions"
    _, report = load_amazon(folder / "Magazine_Subscriptions.csv", folder / "meta_Magazine_Subscriptions.json.gz")
    # README: 89,689 rows, 72,098 users, 2,428 items, 1,371 repeated (user, item) pairs.
    assert (report.num_review_lines, report.num_users, report.num_items) == (89689, 72098, 2428)
    assert report.num_repeated_pairs == 1371 and report.num_reviews == 89689 - 1371
