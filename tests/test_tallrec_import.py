"""`data import tallrec`: TALLRec's published instruction files into structured prepared examples.

The records below are written the way TALLRec's released data/movie and data/book files are
(SAI990323/TALLRec): quoted titles joined by ", ", book titles followed by `written by Author`,
and the book target quoted twice.
"""

import json
from pathlib import Path

import pytest

from promptrec.cli.main import main
from promptrec.lm.adapter import Adapter
from promptrec.protocols.splits import load_alpaca, load_split
from promptrec.templates.template import load_template

MOVIE_TASK = (
    "Given the user's preference and unpreference, identify whether the user will like the target movie "
    'by answering "Yes." or "No.".'
)
BOOK_TASK = MOVIE_TASK.replace("target movie", "target book")


def record(task: str, text: str, output: str) -> dict:
    return {"instruction": task, "input": text, "output": output}


MOVIES = [
    record(
        MOVIE_TASK,
        'User Preference: "Paris, Texas (1984)", "Return of the Pink Panther, The (1974)", "M*A*S*H (1970)"\n'
        'User Unpreference: "Kalifornia (1993)"\n'
        'Whether the user will like the target movie "Perez Family, The (1995)"?',
        "No.",
    ),
    record(
        MOVIE_TASK,
        'User Preference: "Widows\' Peak (1994)"\n'
        'User Unpreference: "Seventh Seal, The (Sjunde inseglet, Det) (1957)", "Naked Gun 33 1/3: The Final '
        'Insult (1994)"\nWhether the user will like the target movie "Batman (1989)"?',
        "Yes.",
    ),
]
BOOKS = [
    record(
        BOOK_TASK,
        'User Preference: "The Thief" written by Megan Whalen Turner, "Tom\'s Midnight Garden (Yearling Classics)"'
        ' written by Philippa Einzig, Susan Pearce, "The Gypsy Game" written by ZILPHA KEATLEY SNYDER\n'
        "User Unpreference: \n"
        'Whether the user will like the target book ""The Prisoner of Zenda (Puffin Classics)" written by '
        'Anthony Hope"?',
        "No.",
    ),
    record(
        BOOK_TASK,
        'User Preference: "East, West" written by Salman Rushdie\n'
        'User Unpreference: "Perfume" written by Caroline B. Cooney, "A Child Called \\It\\": One Child\'s '
        'Courage to Survive"" written by Dave Pelzer\n'
        'Whether the user will like the target book ""Anne\'s House of Dreams" written by L.M. MONTGOMERY"?',
        "Yes.",
    ),
    record(
        BOOK_TASK,
        'User Preference: \nUser Unpreference: "Siddhartha" written by Hermann Hesse, "The Waves" written by '
        'Virginia Woolf\nWhether the user will like the target book ""East, West : Stories" written by '
        'SALMAN RUSHDIE"?',
        "No.",
    ),
]


def write(path: Path, records) -> Path:
    path.write_text(json.dumps(records, indent=4), encoding="utf-8")
    return path


def import_argv(out: Path, **splits: Path) -> list[str]:
    flags = [arg for split, path in splits.items() for arg in (f"--{split}", str(path))]
    return ["data", "import", "tallrec", *flags, "--out", str(out)]


@pytest.fixture
def imported(tmp_path) -> Path:
    movies, books = write(tmp_path / "movie.json", MOVIES), write(tmp_path / "book.json", BOOKS)
    out = tmp_path / "imported"
    assert main(import_argv(out, train=movies, test=books)) == 0
    return out


# ---------------------------------------------------------------- parsing


def test_movie_histories_labels_and_targets(imported):
    first, second = load_split(imported, "train")
    assert [h["title"] for h in first["history"]] == [
        "Paris, Texas (1984)",
        "Return of the Pink Panther, The (1974)",
        "M*A*S*H (1970)",
        "Kalifornia (1993)",
    ]
    assert [h["liked"] for h in first["history"]] == [True, True, True, False]
    assert first["item"] == {"title": "Perez Family, The (1995)"} and first["label"] == 0
    assert second["item"] == {"title": "Batman (1989)"} and second["label"] == 1
    assert [h["title"] for h in second["history"]][1] == "Seventh Seal, The (Sjunde inseglet, Det) (1957)"
    assert all("author" not in h for h in first["history"] + second["history"])


def test_book_authors_commas_and_quotes_inside_titles(imported):
    first, second, _ = load_split(imported, "test")
    assert first["history"] == [
        {"title": "The Thief", "author": "Megan Whalen Turner", "liked": True},
        {
            "title": "Tom's Midnight Garden (Yearling Classics)",
            "author": "Philippa Einzig, Susan Pearce",
            "liked": True,
        },
        {"title": "The Gypsy Game", "author": "ZILPHA KEATLEY SNYDER", "liked": True},
    ]
    assert first["item"] == {"title": "The Prisoner of Zenda (Puffin Classics)", "author": "Anthony Hope"}
    assert second["history"][2] == {
        "title": 'A Child Called \\It\\": One Child\'s Courage to Survive"',
        "author": "Dave Pelzer",
        "liked": False,
    }
    assert second["item"] == {"title": "Anne's House of Dreams", "author": "L.M. MONTGOMERY"}
    assert [e["label"] for e in (first, second)] == [0, 1]


@pytest.mark.parametrize(
    "split, index, expected",
    [
        ("train", 0, {"history_like_fraction": 0.75, "history_num_liked": 3, "history_num_shown": 4}),
        ("train", 1, {"history_like_fraction": 0.3333, "history_num_liked": 1, "history_num_shown": 3}),
        ("test", 0, {"history_like_fraction": 1.0, "history_num_liked": 3, "history_num_shown": 3}),
        ("test", 2, {"history_like_fraction": 0.0, "history_num_liked": 0, "history_num_shown": 2}),
    ],
)
def test_stats_count_only_what_the_prompt_shows(imported, split, index, expected):
    example = load_split(imported, split)[index]
    assert example["stats"] == expected
    assert expected["history_num_shown"] == len(example["history"])


def test_manifest_records_protocol_sources_and_counts(imported, tmp_path):
    manifest = json.loads((imported / "manifest.json").read_text())
    assert manifest["name"] == "tallrec-import"
    assert manifest["sources"]["train"]["file"] == "movie.json"
    assert len(manifest["sources"]["test"]["sha256"]) == 64
    assert {split: info["num_examples"] for split, info in manifest["splits"].items()} == {"train": 2, "test": 3}
    assert sorted(p.name for p in imported.iterdir()) == ["manifest.json", "test.jsonl", "train.jsonl"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary dir is left behind"


def test_alpaca_renders_imported_examples_as_the_original_file(imported, tmp_path):
    template = load_template("alpaca")
    original = load_alpaca(tmp_path / "book.json")
    imported_examples = load_split(imported, "test")
    assert [template.render(e) for e in imported_examples] == [template.render(e) for e in original]


@pytest.mark.parametrize("split", ["train", "test"])
def test_history_titles_renders_imported_movies_and_books(imported, split):
    for example in load_split(imported, split):
        text = load_template("history_titles").render(example)
        liked = example["stats"]["history_num_liked"]
        assert f"They liked {liked} of the {len(example['history'])} items shown." in text
        assert text.endswith("Question: will the user like this one? Answer:\n")
    book = load_split(imported, "test")[0]
    assert "- Tom's Midnight Garden (Yearling Classics) by Philippa Einzig, Susan Pearce\n" in (
        load_template("history_titles").render(book)
    )


def test_only_train_writes_only_train(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(import_argv(out, train=write(tmp_path / "train.json", BOOKS))) == 0
    assert f"wrote {out}: train 3" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "train.jsonl"]


def test_training_on_train_only_asks_for_a_valid_split(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(import_argv(out, train=write(tmp_path / "train.json", BOOKS))) == 0
    capsys.readouterr()
    assert main(["train", "--data", str(out), "--template", "history_titles", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no valid split" in err and "--set valid_examples=0" in err


# ---------------------------------------------------------------- malformed files


def bad_input(text: str) -> list[dict]:
    return [MOVIES[0], record(MOVIE_TASK, text, "Yes.")]


MALFORMED = {
    "not a list": ({"instruction": MOVIE_TASK}, "expected a JSON list"),
    "missing key": ([MOVIES[0], {"instruction": MOVIE_TASK, "output": "Yes."}], "record 1 (0-based) has no 'input'"),
    "output Maybe": ([record(MOVIE_TASK, MOVIES[0]["input"], "Maybe.")], "record 0 (0-based) has output 'Maybe.'"),
    "no User Preference": (
        bad_input('Liked: "Heat (1995)"\nUser Unpreference: \nWhether the user will like the target movie "X"?'),
        "record 1 (0-based): 'input' is not in TALLRec's format",
    ),
    "unterminated quote": (
        bad_input(
            'User Preference: "Heat (1995)\nUser Unpreference: \nWhether the user will like the target movie "X"?'
        ),
        "record 1 (0-based): User Preference: unterminated quote at '\"Heat (1995)'",
    ),
    "unquoted title": (
        bad_input(
            'User Preference: Heat (1995)\nUser Unpreference: \nWhether the user will like the target movie "X"?'
        ),
        "record 1 (0-based): User Preference: expected a quoted title",
    ),
    "input not a string": (bad_input(7), "record 1 (0-based): 'input' must be a string, got int"),
    "no records": ([], "holds no records"),
    "not JSON": ("[{", "invalid JSON"),
}


@pytest.mark.parametrize("records, fragment", MALFORMED.values(), ids=MALFORMED)
def test_malformed_files_exit_2_with_one_line_naming_file_and_record(tmp_path, capsys, records, fragment):
    path = tmp_path / "bad.json"
    path.write_text(records if isinstance(records, str) else json.dumps(records), encoding="utf-8")
    good = write(tmp_path / "good.json", MOVIES)
    out = tmp_path / "out"
    assert main(import_argv(out, train=good, test=path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"promptrec: error: {path}") and fragment in err, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "good.json"]


def test_malformed_file_leaves_an_existing_prepared_dir_untouched(imported, tmp_path, capsys):
    before = {p.name: p.read_bytes() for p in imported.iterdir()}
    bad = write(tmp_path / "bad.json", [record(MOVIE_TASK, "nonsense", "Yes.")])
    assert main([*import_argv(imported, train=bad), "--overwrite"]) == 2
    assert "record 0 (0-based)" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in imported.iterdir()} == before


def test_train_with_history_titles_on_an_imported_dir_gives_the_hybrid(tmp_path, tiny_model_dir, capsys):
    """The hybrid default holds beyond MovieLens: imported title-only histories carry a like-fraction."""
    books = write(tmp_path / "book.json", BOOKS * 2)
    out = tmp_path / "imported"
    assert main(import_argv(out, train=books)) == 0
    argv = ["train", "--data", str(out), "--template", "history_titles", "--shots", "6", "--model",
            str(tiny_model_dir), "--set", "num_epochs=1", "--set", "valid_examples=0", "--batch-size", "2",
            "--out", str(tmp_path / "adapter")]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    adapter = Adapter.open(tmp_path / "adapter")
    assert adapter.wide is not None and "history_like_fraction" in adapter.wide.names
    assert adapter.record["loss"] == "bce" and adapter.record["template"]["name"] == "history_titles"
