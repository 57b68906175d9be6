"""Tests for promptrec.data: the MovieLens loader and the generic table loader."""

import json
import shutil
from pathlib import Path

import pytest

from promptrec.core.errors import DataError
from promptrec.data.dataset import Interaction, load_interactions_table, load_movielens
from promptrec.protocols.prepare import load_warnings, prepare_table

MINI_ML = Path(__file__).parent / "data" / "mini-ml"


@pytest.fixture
def mini_ml(tmp_path) -> Path:
    """A writable copy of the mini MovieLens fixture, for tests that break one file."""
    target = tmp_path / "ml"
    shutil.copytree(MINI_ML, target)
    return target


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- MovieLens


def test_movielens_counts_and_file_order():
    dataset = load_movielens(MINI_ML)
    assert (len(dataset.users), len(dataset.items), len(dataset.interactions)) == (3, 15, 31)
    assert dataset.interactions[0] == Interaction("7", "7", 5.0, None, 880001500)
    assert [x.user_id for x in dataset.interactions[:3]] == ["7", "12", "3"]
    assert [p.name for p in dataset.source_paths] == ["u.data", "u.item", "u.user", "u.genre"]


@pytest.mark.parametrize(
    "item_id, title, genres, year, release_date",
    [
        ("1", "Toy Story (1995)", ["Comedy"], 1995, "01-Jan-1995"),
        ("2", "Star Wars (1977)", ["Action", "Sci-Fi"], 1977, "01-Jan-1977"),
        ("3", "Café au Lait (1993)", ["Comedy", "Drama"], 1993, "01-Jan-1993"),  # latin-1
        ("4", "Fargo (1996)", ["Drama"], 1996, None),  # year from the title
        ("5", "unknown", [], None, None),  # 'unknown' genre dropped, no year anywhere
        (
            "14",
            "Shanghai Triad (Yao a yao yao dao waipo qiao) (1995)",
            ["Drama"],
            1995,
            "01-Jan-1995",
        ),
    ],
)
def test_movielens_item_attributes(item_id, title, genres, year, release_date):
    item = load_movielens(MINI_ML).items[item_id]
    assert item.title == title
    assert item.attributes == {"genres": genres, "year": year, "release_date": release_date}


def test_movielens_user_attributes():
    user = load_movielens(MINI_ML).users["7"]
    assert user.attributes == {"age": 53, "gender": "F", "occupation": "other", "zip": "94043"}


@pytest.mark.parametrize("missing", ["u.data", "u.item", "u.user", "u.genre"])
def test_movielens_missing_file_names_path_and_fix(mini_ml, missing):
    (mini_ml / missing).unlink()
    with pytest.raises(DataError, match=rf"{missing}: file not found.*raw MovieLens-100K files"):
        load_movielens(mini_ml)


@pytest.mark.parametrize(
    "file, bad_line, expected",
    [
        ("u.data", "7\t1\t5", r"u\.data:32: expected 4 '\\t'-separated fields, found 3"),
        ("u.data", "7\t1\tfive\t880001000", r"u\.data:32: rating must be an integer, got 'five'"),
        ("u.data", "7\t1\tnan\t880001000", r"u\.data:32: rating must be an integer, got 'nan'"),
        ("u.data", "7\t1\t6\t880001000", r"u\.data:32: rating 6 is outside 1-5 stars"),
        ("u.data", "7\t1\t0\t880001000", r"u\.data:32: rating 0 is outside 1-5 stars"),
        ("u.data", "7\t1\t5\tyesterday", r"u\.data:32: timestamp must be an integer"),
        ("u.user", "99|old|M|writer|00000", r"u\.user:4: age must be an integer, got 'old'"),
        ("u.user", "3|24|M|technician|85711", r"u\.user:4: duplicate user_id '3'"),
        ("u.item", "16|Short line|01-Jan-1995", r"u\.item:16: expected 10 '\|'-separated fields"),
        ("u.item", "16|Bad flags (1990)||||0|2|0|0|0", r"u\.item:16: genre flags must be 0 or 1"),
        ("u.genre", "Western|9", r"u\.genre: genre indices .* are not 0\.\.n-1"),
    ],
)
def test_movielens_malformed_line_names_file_and_line(mini_ml, file, bad_line, expected):
    path = mini_ml / file
    path.write_bytes(path.read_bytes().rstrip(b"\n") + b"\n" + bad_line.encode() + b"\n")
    with pytest.raises(DataError, match=expected):
        load_movielens(mini_ml)


@pytest.mark.parametrize(
    "extra, expected",
    [
        (
            "7\t99\t4\t880009999\n3\t98\t4\t880009999\n",
            r"2 interactions reference unknown item ids \(first: item_id '99'\)",
        ),
        (
            "44\t1\t4\t880009999\n",
            r"1 interactions reference unknown user ids \(first: user_id '44'\)",
        ),
    ],
)
def test_movielens_unknown_reference_counts_and_names_first(mini_ml, extra, expected):
    with open(mini_ml / "u.data", "a") as handle:
        handle.write(extra)
    with pytest.raises(DataError, match=expected):
        load_movielens(mini_ml)


def test_movielens_duplicate_rows_are_dropped_and_counted(mini_ml):
    lines = (mini_ml / "u.data").read_text().splitlines()
    with open(mini_ml / "u.data", "a") as handle:
        handle.write(f"{lines[0]}\n{lines[1]}\n{lines[0]}\n")
    dataset, clean = load_movielens(mini_ml), load_movielens(MINI_ML)
    assert dataset.interactions == clean.interactions
    assert dataset.warnings == (f"{mini_ml / 'u.data'}: dropped 3 duplicate rows (same user, item, timestamp and "
                                "rating as one before)",)  # fmt: skip
    assert clean.warnings == ()


# ---------------------------------------------------------------- generic tables

INTERACTIONS_CSV = "user_id,item_id,rating,timestamp\nu1,10,4,100\nu2,11,2.5,200\nu1,11,5,300\n"
ITEMS_CSV = 'item_id,title,tags\n10,Ten,"a|b|c"\n11,Eleven,d\n'
USERS_CSV = "user_id,age\nu1,30\nu2,41\n"


def test_table_csv_with_items_and_users(tmp_path):
    dataset = load_interactions_table(
        write(tmp_path / "ratings.csv", INTERACTIONS_CSV),
        write(tmp_path / "items.csv", ITEMS_CSV),
        write(tmp_path / "users.csv", USERS_CSV),
    )
    assert dataset.name == "ratings"
    assert dataset.interactions[1] == Interaction("u2", "11", 2.5, None, 200)
    assert dataset.items["10"].title == "Ten"
    assert dataset.items["10"].attributes == {"tags": "a|b|c"}  # CSV strings are not split
    assert dataset.users["u2"].attributes == {"age": "41"}


def test_table_tsv(tmp_path):
    path = write(tmp_path / "ratings.tsv", INTERACTIONS_CSV.replace(",", "\t"))
    assert load_interactions_table(path).interactions[2] == Interaction("u1", "11", 5.0, None, 300)


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_table_json_lines_keep_lists_and_str_ids(tmp_path, suffix):
    rows = [{"user_id": 1, "item_id": 7, "label": 1, "timestamp": 5}]
    items = [{"item_id": 7, "title": "Seven", "tags": ["x", "y"]}]
    dataset = load_interactions_table(
        write(tmp_path / f"likes{suffix}", "\n".join(json.dumps(r) for r in rows) + "\n"),
        write(tmp_path / f"items{suffix}", json.dumps(items[0]) + "\n"),
    )
    assert dataset.interactions == [Interaction("1", "7", None, 1, 5)]
    assert dataset.items["7"].attributes == {"tags": ["x", "y"]}
    assert list(dataset.users) == ["1"]


def test_table_json_list_file(tmp_path):
    rows = [{"user_id": "a", "item_id": "b", "rating": 3, "timestamp": 1}]
    path = write(tmp_path / "ratings.json", json.dumps(rows, indent=2))
    assert load_interactions_table(path).interactions == [Interaction("a", "b", 3.0, None, 1)]


def test_table_without_items_takes_titles_from_interactions(tmp_path):
    path = write(tmp_path / "r.csv", "user_id,item_id,title,rating,timestamp\nu,1,One,4,1\nu,2,,4,2\n")
    items = load_interactions_table(path).items
    assert (items["1"].title, items["2"].title) == ("One", "2")


@pytest.mark.parametrize(
    "header, expected",
    [
        (
            "user,movie,stars,timestamp",
            r"data\.csv: missing column 'user_id' \(found: user,movie,stars,timestamp\); rename",
        ),
        (
            "user_id,movie,rating,timestamp",
            r"data\.csv: missing column 'item_id' \(found: user_id,movie,rating,timestamp\)",
        ),
        ("user_id,item_id,rating,time", r"missing column 'timestamp'"),
        (
            "user_id,item_id,stars,timestamp",
            r"missing column 'rating' or 'label' \(found: user_id,item_id,stars,timestamp\)",
        ),
    ],
)
def test_table_missing_column_names_column_and_found(tmp_path, header, expected):
    path = write(tmp_path / "data.csv", header + "\n1,2,3,4\n")
    with pytest.raises(DataError, match=expected):
        load_interactions_table(path)


@pytest.mark.parametrize(
    "row, expected",
    [
        ("u1,10,4", r"r\.csv:3: 3 fields but the header has 4"),
        ("u1,10,great,5", r"r\.csv:3: rating must be a finite number, got 'great'"),
        ("u1,10,nan,5", r"r\.csv:3: rating must be a finite number, got 'nan'"),
        ("u1,10,-inf,5", r"r\.csv:3: rating must be a finite number, got '-inf'"),
        (
            "u1,10,4,2020-01-01",
            r"r\.csv:3: timestamp must be an integer \(unix seconds\), got '2020-01-01'",
        ),
        (",10,4,5", r"r\.csv:3: user_id is ''"),
        ("u1,10,,5", r"r\.csv:3: no rating and no label"),
    ],
)
def test_table_bad_row_names_line_and_value(tmp_path, row, expected):
    path = write(tmp_path / "r.csv", "user_id,item_id,rating,timestamp\nu1,10,4,1\n" + row + "\n")
    with pytest.raises(DataError, match=expected):
        load_interactions_table(path)


@pytest.mark.parametrize(
    "items_text, expected",
    [
        ("item_id,name\n10,Ten\n", r"items\.csv: missing column 'title' \(found: item_id,name\)"),
        ("item_id,title\n10,Ten\n10,Again\n", r"items\.csv:3: duplicate item_id '10'"),
        (
            "item_id,title\n10,Ten\n",
            r"r\.csv: 2 interactions reference unknown item ids \(first: item_id '11'\)",
        ),
    ],
)
def test_table_item_file_errors(tmp_path, items_text, expected):
    interactions = write(tmp_path / "r.csv", INTERACTIONS_CSV)
    with pytest.raises(DataError, match=expected):
        load_interactions_table(interactions, write(tmp_path / "items.csv", items_text))


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("r.parquet", "", r"r\.parquet: unsupported file type '\.parquet'; use one of \.csv"),
        ("r.jsonl", '{"user_id": 1}\nnot json\n', r"r\.jsonl:2: invalid JSON"),
        ("r.jsonl", "[1, 2]\n", r"r\.jsonl:1: expected a JSON object per row, got list"),
        ("r.csv", "", r"r\.csv: missing column 'user_id' \(found: nothing, the file is empty\)"),
    ],
)
def test_table_unreadable_files(tmp_path, name, text, expected):
    with pytest.raises(DataError, match=expected):
        load_interactions_table(write(tmp_path / name, text))


def test_table_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        load_interactions_table(tmp_path / "nope.csv")


def test_table_duplicate_rows_are_dropped_counted_and_recorded_in_the_manifest(tmp_path):
    rows = "".join(f"u{u},{i},{1 + (u + i) % 5},{100 * i + u}\n" for u in range(3) for i in range(14))
    path = write(tmp_path / "r.csv", "user_id,item_id,rating,timestamp\n" + rows + "u0,0,1,0\nu0,0,1,0\n")
    dataset = load_interactions_table(path)
    assert len(dataset.interactions) == 42
    assert dataset.warnings == (
        f"{path}: dropped 2 duplicate rows (same user, item, timestamp and rating as one before)",
    )
    manifest = prepare_table(path, None, None, tmp_path / "out", history_len=3)
    assert load_warnings(manifest) == list(dataset.warnings)
    clean = prepare_table(write(tmp_path / "c.csv", "user_id,item_id,rating,timestamp\n" + rows), None, None,
                          tmp_path / "clean", history_len=3)  # fmt: skip
    assert "load_warnings" not in clean and load_warnings(clean) == []


def test_a_repeated_rating_at_another_time_is_not_a_duplicate(tmp_path):
    path = write(tmp_path / "r.csv", "user_id,item_id,rating,timestamp\nu1,10,4,100\nu1,10,4,200\nu1,10,5,100\n")
    assert len(load_interactions_table(path).interactions) == 3
