"""One adapter for several tasks: the split of K by weight, seeded per-task shots, the run record, evaluation."""

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest

from promptrec.cli.main import main
from promptrec.cli.train import task_flag, tasks_relative_to_file
from promptrec.core.config import resolve
from promptrec.core.errors import ConfigError
from promptrec.jobs.evaluate import EvalConfig, evaluate
from promptrec.lm.adapter import RUN_RECORD, Adapter, template_name_for
from promptrec.lm.training import TrainConfig, WideSettings, train, train_tasks
from promptrec.protocols.mixture import TaskPools, TaskSpec, draw_tasks, shot_counts, split_by_weight
from promptrec.protocols.splits import load_split
from tests.test_training import tiny_config as training_config


def tiny_config(tiny_model_dir, **overrides) -> TrainConfig:
    """test_training's tiny recipe, one epoch."""
    return training_config(tiny_model_dir, num_epochs=1, **overrides)


def pool(n, positives, prefix="e"):
    return [{"example_id": f"{prefix}{i}", "label": int(i < positives)} for i in range(n)]


# ---------------------------------------------------------------- splitting K
@pytest.mark.parametrize(
    "total, weights, expected",
    [
        (64, [1.0], [64]),
        (10, [1, 1, 1], [4, 3, 3]),  # the leftover shot goes to the first of equal remainders
        (7, [2, 1], [5, 2]),  # quotas 4.67, 2.33: floors 4 + 2, the 1 left to the larger remainder
        (9, [1, 2, 6], [1, 2, 6]),
        (5, [0.1, 0.1, 0.8], [1, 0, 4]),
        (0, [1, 1], [0, 0]),
    ],
)
def test_split_by_weight_adds_up_to_the_total(total, weights, expected):
    assert split_by_weight(total, weights) == expected and sum(expected) == total


def spec(template="movie_rich", data="d", **overrides) -> TaskSpec:
    return TaskSpec(data=data, template=template, **overrides)


def test_fixed_shots_are_kept_and_the_rest_goes_by_weight():
    assert shot_counts([spec(shots=5), spec(weight=1), spec(weight=3)], 17) == [5, 3, 9]


@pytest.mark.parametrize(
    "specs, total, message",
    [
        ([spec(), spec()], 1, "gets 0 of the 1 shots"),
        ([spec(shots=9), spec()], 8, "add up to 9, but shots=8"),
        ([spec(shots=3), spec(shots=3)], 8, "set shots=6"),
    ],
)
def test_impossible_shot_splits_are_refused(specs, total, message):
    with pytest.raises(ConfigError, match=message):
        shot_counts(specs, total)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"data": "", "template": "movie_rich"}, "has no `data`"),
        ({"data": "d", "template": ""}, "has no `template`"),
        ({"data": "d", "template": "t", "weight": 0}, "weight=0; give a positive number"),
        ({"data": "d", "template": "t", "weight": float("nan")}, "weight=nan"),
        ({"data": "d", "template": "t", "shots": 0}, "shots=0"),
    ],
)
def test_bad_task_specs_are_refused(fields, message):
    with pytest.raises(ConfigError, match=message):
        TaskSpec(**fields)


# ---------------------------------------------------------------- seeded per-task shots
def test_shots_per_task_are_reproducible_from_the_seed_and_add_up_to_k():
    tasks = [
        TaskPools(spec("movie_rich", "a"), pool(40, 20, "a"), [], {}),
        TaskPools(spec("movie_next", "b", weight=3), pool(40, 20, "b"), [], {}),
    ]

    def ids(seed):
        return [[ex["example_id"] for ex in d.shots] for d in draw_tasks(tasks, 10, 0, seed, False)]

    assert ids(0) == ids(0) and ids(0) != ids(1)
    # quotas 2.5 and 7.5: the tie of remainders goes to the earlier task
    assert [len(shots) for shots in ids(0)] == [3, 7] and all(i.startswith("a") for i in ids(0)[0])


def test_templates_with_other_answers_are_refused():
    tasks = [TaskPools(spec("movie_rich"), pool(10, 5), [], {}), TaskPools(spec("tallrec_plain"), pool(10, 5), [], {})]
    with pytest.raises(ConfigError, match="one adapter learns one pair of answers"):
        draw_tasks(tasks, 4, 0, 0, False)


# ---------------------------------------------------------------- config and flags
@pytest.mark.parametrize(
    "text, expected",
    [
        ("data/ml100k:movie_rich", {"data": "data/ml100k", "template": "movie_rich"}),
        ("data/ml100k:movie_rich:2", {"data": "data/ml100k", "template": "movie_rich", "weight": 2.0}),
        ("hub:owner/name:product_search:0.5", {"data": "hub:owner/name", "template": "product_search", "weight": 0.5}),
    ],
)
def test_task_flag_reads_data_template_and_weight(text, expected):
    assert task_flag(text) == expected


def test_tasks_in_a_config_file_are_relative_to_it(tmp_path):
    path = tmp_path / "configs" / "mix.yaml"
    path.parent.mkdir()
    path.write_text(
        "tasks:\n  - {data: ../data/a, template: movie_rich, weight: 2}\n  - {data: /abs/b, template: x.j2}\n"
    )
    config = tasks_relative_to_file(resolve(TrainConfig, str(path)), SimpleNamespace(task=[], config=str(path)))
    assert config.tasks == (
        TaskSpec(data=str(tmp_path / "data" / "a"), template="movie_rich", weight=2.0),
        TaskSpec(data="/abs/b", template=str(tmp_path / "configs" / "x.j2")),
    )


def test_a_mixture_trains_the_pure_llm_and_refuses_the_hybrid():
    two = (spec(), spec("movie_next"))
    assert TrainConfig(tasks=two).wide.mode == "auto"
    with pytest.raises(ConfigError, match="wide.mode=residual needs one task"):
        TrainConfig(tasks=two, wide=WideSettings(mode="residual"))
    TrainConfig(tasks=two[:1], wide=WideSettings(mode="residual"))  # one task: the hybrid as before


# ---------------------------------------------------------------- training
def test_a_mixture_of_one_task_trains_the_single_task_adapter(tiny_model_dir, prepared_dir, tmp_path):
    """The key invariant: same seed, same data, same template -> byte-identical weights (hybrid included)."""
    config = tiny_config(tiny_model_dir)
    train_pool = valid = load_split(prepared_dir, "train")
    record = {"path": str(prepared_dir), "split": "train"}
    train(config, train_pool, valid, tmp_path / "single", record)
    task = TaskSpec(data=str(prepared_dir), template=config.template)
    mixed = replace(config, tasks=(task,))
    train_tasks(mixed, [TaskPools(task, train_pool, valid, record)], tmp_path / "mixture")
    for name in ("adapter_model.safetensors", "wide.safetensors"):
        assert (tmp_path / "single" / name).read_bytes() == (tmp_path / "mixture" / name).read_bytes(), name
    single, mixture = (json.loads((tmp_path / d / RUN_RECORD).read_text()) for d in ("single", "mixture"))
    assert single["tasks"] == mixture["tasks"] and single["shot_ids"] == mixture["shot_ids"]
    assert single["history"] == mixture["history"] and single["template"] == mixture["template"]


def test_two_tasks_train_one_adapter_whose_record_lists_both(tiny_model_dir, prepared_dir, tmp_path):
    tasks = (
        TaskSpec(data=str(prepared_dir), template="movie_rich"),
        TaskSpec(data=str(prepared_dir), template="movie_next", weight=3),
    )
    config = tiny_config(tiny_model_dir, tasks=tasks, valid_examples=12)
    examples = load_split(prepared_dir, "train")
    pools = [TaskPools(t, examples, examples, {"path": t.data, "split": "train", "sha256": "x"}) for t in tasks]
    result = train_tasks(config, pools, tmp_path / "mix")
    record = json.loads((tmp_path / "mix" / RUN_RECORD).read_text())
    assert [t["template"]["name"] for t in record["tasks"]] == ["movie_rich", "movie_next"]
    assert [t["shots"] for t in record["tasks"]] == [2, 6] and sum(t["shots"] for t in record["tasks"]) == 8
    assert [len(t["shot_ids"]) for t in record["tasks"]] == [2, 6] and [t["weight"] for t in record["tasks"]] == [1, 3]
    assert [t["valid_examples"] for t in record["tasks"]] == [3, 9]
    assert all(len(t["template"]["sha256"]) == 64 and t["data"]["sha256"] == "x" for t in record["tasks"])
    assert record["template"] is None and record["wide"] is None and record["loss"] == "lm"
    assert 0 <= result.best_valid_auc <= 1  # the mean of the two tasks' AUCs
    adapter = Adapter.open(tmp_path / "mix")
    assert adapter.template_names == ("movie_rich", "movie_next")
    with pytest.raises(ConfigError, match="trained on 2 tasks .*pass --template"):
        template_name_for(None, adapter, "tallrec_plain")
    for template in adapter.template_names:
        eval_config = EvalConfig(template=template, limit=4, reliability_plot=False, model=config.model)
        metrics = evaluate(eval_config, load_split(prepared_dir, "test"), tmp_path / template, adapter=adapter)
        assert "auc" in metrics


def test_cli_trains_a_mixture_and_evaluates_it_with_each_template(tiny_model_dir, prepared_dir, tmp_path, capsys):
    common = ["--model", str(tiny_model_dir), "--set", "num_epochs=1", "--set", "valid_examples=0"]
    argv = ["train", "--task", f"{prepared_dir}:movie_rich", "--task", f"{prepared_dir}:movie_next:3"]
    assert main([*argv, "--shots", "4", "--batch-size", "2", "--out", str(tmp_path / "mix"), *common]) == 0
    record = json.loads((tmp_path / "mix" / RUN_RECORD).read_text())
    assert [t["shots"] for t in record["tasks"]] == [1, 3] and len(record["tasks"][0]["data"]["sha256"]) == 64
    assert [t["weight"] for t in record["config"]["tasks"]] == [1.0, 3.0]
    evaluate_argv = ["evaluate", "--data", str(prepared_dir), "--adapter", str(tmp_path / "mix"), "--limit", "4"]
    evaluate_argv += ["--model", str(tiny_model_dir), "--no-reliability-plot"]
    capsys.readouterr()
    assert main([*evaluate_argv, "--out", str(tmp_path / "none")]) == 2
    assert "pass --template" in capsys.readouterr().err
    for template in ("movie_rich", "movie_next"):
        assert main([*evaluate_argv, "--template", template, "--out", str(tmp_path / template)]) == 0
        assert json.loads((tmp_path / template / "config.json").read_text())["template"]["name"] == template


def test_cli_task_of_one_trains_the_data_template_adapter(tiny_model_dir, prepared_dir, tmp_path):
    """`--task DATA:TEMPLATE` and `--data DATA --template TEMPLATE` train the same bytes through the CLI."""
    common = ["--shots", "4", "--batch-size", "2", "--model", str(tiny_model_dir), "--set", "num_epochs=1"]
    common += ["--set", "valid_examples=0"]
    single = ["train", "--data", str(prepared_dir), "--template", "movie_rich"]
    assert main([*single, *common, "--out", str(tmp_path / "a")]) == 0
    assert main(["train", "--task", f"{prepared_dir}:movie_rich", *common, "--out", str(tmp_path / "b")]) == 0
    for name in ("adapter_model.safetensors", "wide.safetensors"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    records = [json.loads((tmp_path / d / RUN_RECORD).read_text()) for d in ("a", "b")]
    assert records[0]["tasks"] == records[1]["tasks"] and records[1]["template"]["name"] == "movie_rich"
