"""Tests for promptrec.protocols.external: a user's saved `datasets` data through --data and --columns."""

import json
from pathlib import Path

import datasets
import pytest

from promptrec.cli.main import main
from promptrec.core.errors import ConfigError
from promptrec.protocols import external
from promptrec.protocols.external import parse_columns
from promptrec.protocols.prepare import prepare_movielens
from promptrec.protocols.splits import dataset_checksum, load_split

MINI_ML = Path(__file__).parent / "data" / "mini-ml"
RENAMES = {"label": "clicked", "user_id": "uid"}  # the user's names for what templates and metrics read
MAPPING = "label=clicked,user_id=uid"


def users_rows(examples) -> list[dict]:
    return [{RENAMES.get(k, k): v for k, v in ex.items()} for ex in examples]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ext") / "prepared"
    prepare_movielens(MINI_ML, out, history_len=3)
    return out


@pytest.fixture(scope="module")
def saved(prepared, tmp_path_factory) -> Path:
    """One saved Dataset: the train split under the user's column names."""
    out = tmp_path_factory.mktemp("ext") / "saved"
    datasets.Dataset.from_list(users_rows(load_split(prepared, "train"))).save_to_disk(str(out))
    return out


@pytest.fixture(scope="module")
def saved_dict(prepared, tmp_path_factory) -> Path:
    """A saved DatasetDict with train and test splits (no example_id column: it is made up)."""
    out = tmp_path_factory.mktemp("ext") / "saved_dict"
    splits = {
        split: datasets.Dataset.from_list(
            [{k: v for k, v in row.items() if k != "example_id"} for row in users_rows(load_split(prepared, split))]
        )
        for split in ("train", "test")
    }
    datasets.DatasetDict(splits).save_to_disk(str(out))
    return out


def run(capsys, argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_saved_dataset_with_mapping_gives_the_prepared_examples(prepared, saved):
    examples = load_split(saved, "train", parse_columns(MAPPING))
    assert examples == load_split(prepared, "train")
    assert [json.dumps(ex) for ex in examples] == [json.dumps(ex) for ex in load_split(prepared, "train")]


def test_missing_example_ids_are_made_up_from_split_and_row(saved_dict):
    examples = load_split(saved_dict, "test", parse_columns(MAPPING))
    assert [ex["example_id"] for ex in examples] == [f"test-{i:05d}" for i in range(len(examples))]


def test_conversion_is_cached(saved, monkeypatch):
    first = load_split(saved, "train", parse_columns(MAPPING))

    def no_conversion(*args, **kwargs):
        raise AssertionError("an unchanged dataset was converted again")

    monkeypatch.setattr(external, "convert_batch", no_conversion)
    assert load_split(saved, "train", parse_columns(MAPPING)) == first


def test_checksum_names_the_split_data(saved_dict):
    assert dataset_checksum(saved_dict, "train") == dataset_checksum(saved_dict, "train")
    assert dataset_checksum(saved_dict, "train") != dataset_checksum(saved_dict, "test")


def test_prompts_render_through_a_saved_dataset_is_the_prepared_prompt(capsys, prepared, saved, tiny_model_dir):
    common = ["prompts", "render", "tallrec_plain", "--index", "1", "--model", tiny_model_dir]
    code, from_saved, _ = run(capsys, [*common, "--data", saved, "--columns", MAPPING])
    assert code == 0
    assert (run(capsys, [*common, "--data", prepared, "--split", "train"])[1]) == from_saved


def test_evaluate_a_saved_dataset_dict(capsys, prepared, saved_dict, tiny_model_dir, tmp_path):
    argv = ["evaluate", "--model", tiny_model_dir, "--template", "tallrec_plain", "--no-reliability-plot"]
    code, _, err = run(capsys, [*argv, "--data", saved_dict, "--columns", MAPPING, "--out", tmp_path / "a"])
    assert code == 0, err
    assert run(capsys, [*argv, "--data", prepared, "--out", tmp_path / "b"])[0] == 0
    rows = [json.loads(line) for line in (tmp_path / "a" / "predictions.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (tmp_path / "b" / "predictions.jsonl").read_text().splitlines()]
    assert [r["score"] for r in rows] == [r["score"] for r in expected]
    assert [r["user_id"] for r in rows] == [r["user_id"] for r in expected]
    record = json.loads((tmp_path / "a" / "config.json").read_text())["data"]
    assert record == {"path": str(saved_dict), "split": "test", "sha256": dataset_checksum(saved_dict, "test")}


BAD = {
    "unknown column": (["--columns", "label=nope"], "--columns label=nope: no column 'nope'"),
    "label not 0/1": (["--columns", "label=rating"], "column 'rating' (the label) holds 3.0 at row 0"),
    "no label": (["--columns", "user_id=uid"], "no 'label' column; map your 0/1 column with --columns label="),
    "not a pair": (["--columns", "label"], "'label' is not NAME=COLUMN"),
    "twice": (["--columns", "label=clicked,label=uid"], "maps 'label' twice"),
    "missing split": (["--columns", MAPPING, "--split", "valid"], "no split 'valid'; available splits: train, test"),
}


@pytest.mark.parametrize("extra, fragment", BAD.values(), ids=BAD)
def test_bad_mappings_are_one_line_and_exit_2(capsys, saved_dict, tiny_model_dir, extra, fragment):
    code, _, err = run(capsys, ["prompts", "render", "tallrec_plain", "--data", saved_dict, *extra])
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err


def test_columns_on_prepared_files_is_refused(capsys, prepared):
    code, _, err = run(capsys, ["prompts", "render", "tallrec_plain", "--data", prepared, "--columns", MAPPING])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "drop --columns" in err, err


def test_uncached_hub_dataset_is_one_line_naming_it(capsys):
    code, _, err = run(capsys, ["prompts", "render", "tallrec_plain", "--data", "hub:nobody/not-cached-here"])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "'nobody/not-cached-here'" in err and "HF_HUB_OFFLINE" in err


def test_training_on_one_saved_dataset_needs_a_valid_set(capsys, saved, tiny_model_dir, tmp_path):
    argv = ["train", "--data", saved, "--columns", MAPPING, "--model", tiny_model_dir, "--out", tmp_path / "a"]
    code, _, err = run(capsys, argv)
    assert code == 2 and "there is no valid split" in err and "--valid" in err, err


@pytest.mark.parametrize("text, expected", [("", {}), (" label = y , user_id=u", {"label": "y", "user_id": "u"})])
def test_parse_columns(text, expected):
    assert parse_columns(text) == expected


def test_parse_columns_refuses_an_empty_name():
    with pytest.raises(ConfigError, match="not NAME=COLUMN"):
        parse_columns("=clicked")


def test_damaged_saved_dir_is_one_line(capsys, tmp_path):
    (tmp_path / "state.json").write_text("{")
    code, _, err = run(capsys, ["prompts", "render", "tallrec_plain", "--data", tmp_path])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot load the saved dataset" in err, err


def test_train_on_a_saved_dataset_with_a_prepared_valid_file(capsys, prepared, saved, tiny_model_dir, tmp_path):
    argv = ["train", "--data", saved, "--columns", MAPPING, "--valid", prepared / "train.jsonl", "--shots", "2"]
    argv += ["--model", tiny_model_dir, "--set", "num_epochs=1", "--batch-size", "2", "--out", tmp_path / "a"]
    code, out, err = run(capsys, argv)
    assert code == 0 and "saved adapter" in out, err
    record = json.loads((tmp_path / "a" / "promptrec_run.json").read_text())
    assert record["data"]["sha256"] == dataset_checksum(saved, "train")
