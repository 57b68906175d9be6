"""Tests for promptrec.protocols.examples: Arrow-backed splits behave as the lists of dicts they replace."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from promptrec.core.errors import ConfigError, DataError
from promptrec.core.files import read_jsonl
from promptrec.protocols import examples as examples_module
from promptrec.protocols.examples import (
    Examples,
    ExamplesByUser,
    check_binary_labels,
    key_rows_of,
    labels_of,
    user_ids_of,
)
from promptrec.protocols.prepare import prepare_movielens
from promptrec.protocols.shots import sample_shots, select_examples
from promptrec.protocols.splits import SPLITS, load_split

DATA = Path(__file__).parent / "data"
FIXTURES = ["example_movie", "example_movie_kg", "example_product", "example_product_kg", "example_product_search"]


def listed(path: Path) -> list[dict]:
    """What load_split returned before Arrow: every line's object, in order."""
    return [record for _, record in read_jsonl(path, "")]


def dumps(examples) -> list[str]:
    return [json.dumps(ex, sort_keys=True) for ex in examples]


@pytest.fixture(scope="module")
def ml_prepared(ml100k_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ml") / "prepared"
    prepare_movielens(ml100k_dir, out)
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh promptrec cache, so the Arrow copies made here are this test's own."""
    monkeypatch.setenv("PROMPTREC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "examples"


@pytest.fixture
def mixed_split(tmp_path) -> Path:
    """Examples of every shape the fixtures hold, plus the shapes Arrow inference would bend."""
    records = [json.loads((DATA / f"{name}.json").read_text()) for name in FIXTURES]
    records += [
        {"example_id": "odd-1", "label": 0, "user_id": 7, "stats": {"n": 1}, "history": []},  # an int user id
        {"example_id": "odd-2", "label": 1, "stats": {"n": 1.5}, "extra": None, "title": "Café «x»"},
        {"label": True, "example_id": "odd-3", "item_id": "9", "nested": [[1, 2.0], {"a": [None]}]},
    ]
    path = tmp_path / "split" / "test.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_real_splits_are_the_same_dicts_byte_for_byte(ml_prepared):
    for split in SPLITS:
        expected = listed(ml_prepared / f"{split}.jsonl")
        examples = load_split(ml_prepared, split)
        assert isinstance(examples, Examples) and len(examples) == len(expected)
        assert dumps(examples) == dumps(expected)  # sort_keys=True, as the brief asks
        assert [json.dumps(ex) for ex in examples] == [json.dumps(ex) for ex in expected]  # key order too
        assert examples == expected


def test_fixture_shapes_survive_unchanged(cache, mixed_split):
    expected = listed(mixed_split)
    examples = load_split(mixed_split)
    assert [json.dumps(ex) for ex in examples] == [json.dumps(ex) for ex in expected]
    assert examples[5]["user_id"] == 7 and "item_id" not in examples[5]  # no int -> str, no key -> None
    assert examples[6]["stats"]["n"] == 1.5 and examples[5]["stats"]["n"] == 1 and examples[6]["extra"] is None


@pytest.mark.parametrize("position", [0, 3, -1, -7])
def test_indexing_matches_the_list(cache, mixed_split, position):
    assert load_split(mixed_split)[position] == listed(mixed_split)[position]


def test_index_out_of_range(cache, mixed_split):
    with pytest.raises(IndexError):
        load_split(mixed_split)[8]


def test_slices_and_select_match_the_list(cache, mixed_split):
    examples, expected = load_split(mixed_split), listed(mixed_split)
    assert examples[1:6:2] == expected[1:6:2] and examples[::-1] == expected[::-1]
    picked = examples.select([6, 0, 2])
    assert list(picked) == [expected[6], expected[0], expected[2]] and picked[1] == expected[0]
    assert picked.select([2])[0] == expected[2]  # a selection of a selection


def test_each_access_is_a_fresh_dict(cache, mixed_split):
    examples = load_split(mixed_split)
    examples[0]["label"] = 99
    assert examples[0]["label"] == 1


def test_column_reads_match_the_decoded_examples(cache, mixed_split):
    examples, expected = load_split(mixed_split), listed(mixed_split)
    assert labels_of(examples).tolist() == [float(ex["label"]) for ex in expected]
    assert user_ids_of(examples) == [None if ex.get("user_id") is None else str(ex["user_id"]) for ex in expected]
    keys = [{k: ex[k] for k in ("example_id", "user_id", "item_id") if k in ex} for ex in expected]
    assert list(key_rows_of(examples)) == [k | {"label": ex["label"]} for k, ex in zip(keys, expected)]
    assert list(key_rows_of(examples.select([6])))[0]["label"] == 1  # True counts as 1, as before


def test_seeded_samples_pick_the_same_examples_as_from_a_list(ml_prepared):
    examples = load_split(ml_prepared, "train")
    expected = listed(ml_prepared / "train.jsonl")
    assert list(select_examples(examples, 50, seed=3)) == select_examples(expected, 50, seed=3)
    for balanced in (False, True):
        assert sample_shots(examples, 16, 1, balanced) == sample_shots(expected, 16, 1, balanced)


@pytest.mark.parametrize("label", [2, "1", None])
def test_non_binary_labels_are_refused_naming_the_example(label):
    records = [{"example_id": "a", "label": 1}, {"example_id": "b", "label": label}]
    for examples in (records, Examples.from_dicts(records)):
        with pytest.raises(ConfigError, match=rf"example b has label {label!r}; evaluation needs 0/1"):
            check_binary_labels(examples)


def test_contexts_by_user_keep_the_last_example_of_a_user():
    records = [{"example_id": "a", "label": 1, "user_id": "u"}, {"example_id": "b", "label": 1, "user_id": "u"}]
    by_user = ExamplesByUser(Examples.from_dicts(records + [{"example_id": "c", "label": 0, "user_id": "v"}]))
    assert dict(by_user) == {"u": records[1], "v": {"example_id": "c", "label": 0, "user_id": "v"}}
    assert "u" in by_user and "w" not in by_user and len(by_user) == 2


# ---------------------------------------------------------------- the Arrow copy


def copies(cache: Path) -> list[Path]:
    return sorted(p for p in cache.glob("*.arrow") if not p.name.startswith("tokens-"))


def test_arrow_copy_is_made_once_and_reused(cache, mixed_split, monkeypatch):
    first = load_split(mixed_split)
    [copy] = copies(cache)
    stamp = copy.stat().st_mtime_ns

    def no_rebuild(path):
        raise AssertionError("an unchanged split was parsed again")

    monkeypatch.setattr(examples_module, "jsonl_batches", no_rebuild)
    assert load_split(mixed_split) == first and copies(cache) == [copy] and copy.stat().st_mtime_ns == stamp


def test_arrow_copy_is_rebuilt_when_the_file_changes(cache, mixed_split):
    assert len(load_split(mixed_split)) == 8
    with mixed_split.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"example_id": "new", "label": 0}) + "\n")
    examples = load_split(mixed_split)
    assert len(examples) == 9 and examples[-1] == {"example_id": "new", "label": 0}
    assert len(copies(cache)) == 2


def test_nothing_is_written_beside_the_data(cache, ml_prepared):
    before = sorted(p.name for p in ml_prepared.iterdir())
    load_split(ml_prepared, "test")
    assert sorted(p.name for p in ml_prepared.iterdir()) == before


def test_unwritable_cache_falls_back_to_a_temp_dir(tmp_path, monkeypatch, mixed_split):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the cache dir should be")
    monkeypatch.setenv("PROMPTREC_CACHE", str(blocked))
    monkeypatch.setattr(examples_module.tempfile, "tempdir", str(tmp_path / "tmp"))
    assert load_split(mixed_split) == listed(mixed_split)
    assert len(list((tmp_path / "tmp" / "promptrec-examples").glob("*.arrow"))) == 1


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", r"test\.jsonl:2: invalid JSON"),
        ('["a list"]', r"test\.jsonl:2: expected a JSON object, got list"),
        ('{"label": 1}', r"test\.jsonl:2: not a prepared example \(no 'example_id'\)"),
    ],
)
def test_bad_lines_are_errors_naming_file_and_line(cache, tmp_path, line, message):
    path = tmp_path / "test.jsonl"
    path.write_text('{"example_id": "a", "label": 1}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_split(path)
    assert list(cache.iterdir()) == [], "a failed copy leaves nothing behind"


def test_random_access_pattern_of_sample_shots(cache, mixed_split):
    examples = load_split(mixed_split)
    picks = sorted(random.Random(0).sample(range(len(examples)), 4))
    assert [examples[i] for i in picks] == [listed(mixed_split)[i] for i in picks]
    assert np.isnan(Examples.from_dicts([{"example_id": "x", "label": "yes"}]).labels()[0])


def test_split_checksum_is_remembered_until_the_file_changes(cache, mixed_split, monkeypatch):
    from promptrec.core import files

    reads = []
    real = files.file_sha256
    monkeypatch.setattr(files, "file_sha256", lambda path: reads.append(path) or real(path))
    first = files.known_file_sha256(mixed_split)
    assert files.known_file_sha256(mixed_split) == first and len(reads) == 1
    mixed_split.write_bytes(mixed_split.read_bytes().replace(b"odd-1", b"odd-9"))  # same size, new content
    assert files.known_file_sha256(mixed_split) == real(mixed_split) != first and len(reads) == 2
