"""Few-shot experiments on the tiny model: grid, checks before training, resume, records, summary, plot."""

import csv
import importlib.util
import json
import math
import shutil
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

import promptrec.jobs.sweep
import promptrec.protocols.features
from promptrec.baselines.classic import LEARNED
from promptrec.cli.main import main
from promptrec.core.config import build, merge
from promptrec.core.errors import ConfigError
from promptrec.jobs.experiment import ExperimentConfig, expand_grid, load_experiment_config, model_slug, plan_experiment
from promptrec.jobs.sweep import run_experiment
from promptrec.metrics.summary import summarize

MINI_ML = Path(__file__).parent / "data" / "mini-ml"
TINY_TRAIN = {"num_epochs": 1, "batch_size": 4, "valid_examples": 0, "lora": {"r": 4, "lora_alpha": 8}}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from promptrec.protocols.prepare import prepare_movielens

    out = tmp_path_factory.mktemp("experiment") / "prepared"
    prepare_movielens(MINI_ML, out, history_len=3)  # train 17, valid 2, test 3 examples
    return out


def tiny_values(prepared, model_dir, out) -> dict:
    return {
        "data": str(prepared),
        "out": str(out),
        "templates": ["tallrec_plain"],
        "shots": [0, 8],
        "seeds": [0, 1],
        "models": [str(model_dir)],
        "train": TINY_TRAIN,
    }


def tiny_config(prepared, model_dir, out, **overrides) -> ExperimentConfig:
    return build(ExperimentConfig, merge(tiny_values(prepared, model_dir, out), overrides))


class Calls:
    """Counts calls to train() and evaluate() while still running them."""

    def __init__(self, monkeypatch):
        self.train = self.evaluate = 0
        real_train, real_evaluate = promptrec.jobs.sweep.train, promptrec.jobs.sweep.evaluate

        def train(*args, **kwargs):
            self.train += 1
            return real_train(*args, **kwargs)

        def evaluate(*args, **kwargs):
            self.evaluate += 1
            return real_evaluate(*args, **kwargs)

        monkeypatch.setattr(promptrec.jobs.sweep, "train", train)
        monkeypatch.setattr(promptrec.jobs.sweep, "evaluate", evaluate)


@pytest.fixture(scope="module")
def finished(prepared, tiny_model_dir, tmp_path_factory):
    """One finished tiny experiment; tests that change it work on a copy."""
    out = tmp_path_factory.mktemp("finished") / "run"
    events = []
    records = run_experiment(plan_experiment(tiny_config(prepared, tiny_model_dir, out)), report=events.append)
    return out, records, events


def copy_of(finished, tmp_path) -> Path:
    shutil.copytree(finished[0], tmp_path / "run")
    return tmp_path / "run"


# ---------------------------------------------------------------- grid and config


def test_grid_runs_zero_shot_once_per_template_and_model_and_fills_train_configs():
    config = ExperimentConfig(templates=("a", "b"), shots=(0, 16, 64), seeds=(0, 1, 2), models=("m1", "org/m2"))
    cells = expand_grid(config, ["a", "b"])
    llm = [c for c in cells if c.kind == "llm"]
    assert len(llm) == 2 * 2 * (1 + 2 * 3)
    assert sum(c.shots == 0 for c in llm) == 4 and all(c.train is None and c.seed is None for c in llm if c.shots == 0)
    cell = next(c for c in llm if c.cell_id == "m2/b/16shot-seed2")
    assert (cell.train.template, cell.train.shots, cell.train.seed, cell.train.model.model) == ("b", 16, 2, "org/m2")
    assert cell.evaluate.model == cell.train.model and cell.evaluate.template == "b"
    names = {c.cell_id for c in cells if c.kind != "llm"}
    assert {"baselines/itemknn_16shot-seed0", "baselines/itemknn_full", "baselines/item_like_rate"} <= names
    assert len(names) == 3 + len(LEARNED) * 2 * 3 + len(LEARNED), "heuristics + methods x K x seeds + full ceilings"


def test_variants_make_one_cell_each_on_the_same_shots_and_zero_shot_stays_single():
    config = ExperimentConfig(templates=("a",), shots=(0, 16), seeds=(0, 1), variants=("hybrid", "llm"), loss="bce")
    llm = [c for c in expand_grid(config, ["a"]) if c.kind == "llm"]
    assert [c.cell_id for c in llm] == [
        "embedded/a/0shot", "embedded/a/16shot-seed0", "embedded/a/16shot-seed1",
        "embedded/a+llm/16shot-seed0", "embedded/a+llm/16shot-seed1",
    ]  # fmt: skip
    hybrid, pure = llm[1], llm[3]
    assert (hybrid.train.wide.mode, pure.train.wide.mode) == ("auto", "off")
    assert replace(hybrid.train, wide=pure.train.wide) == pure.train, "the same shots, seed and settings otherwise"
    assert hybrid.template == pure.template == "a"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"loss": "lm", "variants": ["hybrid", "llm"]}, "loss: lm trains the pure LLM only"),
        ({"variants": ["wide"]}, "variant 'wide' is unknown"),
        ({"train": {"wide": {"mode": "joint"}}}, "list `variants`"),
    ],
)
def test_impossible_variant_configs_are_errors(tmp_path, values, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match=message):
        load_experiment_config(path)


def test_baselines_can_be_switched_off():
    cells = expand_grid(ExperimentConfig(shots=(0, 8), seeds=(0,), baselines=False), ["tallrec_plain"])
    assert [c.kind for c in cells] == ["llm", "llm"]


@pytest.mark.parametrize(
    "spec, slug", [("embedded", "embedded"), ("meta-llama/Llama-2-7b-hf", "Llama-2-7b-hf"), ("/x/y/m.gguf", "m.gguf")]
)
def test_model_slug(spec, slug):
    assert model_slug(spec) == slug


def test_paths_in_a_config_file_resolve_relative_to_it(tmp_path):
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "grid.yaml"
    path.write_text(yaml.safe_dump({"data": "../data", "out": "runs/x", "templates": ["tallrec_plain", "my/t.j2"]}))
    config = load_experiment_config(path, ["seeds=0,1"], out=None)
    assert Path(config.data) == tmp_path / "data" and Path(config.out) == tmp_path / "configs" / "runs" / "x"
    assert config.templates == ("tallrec_plain", str(tmp_path / "configs" / "my" / "t.j2"))
    assert config.seeds == (0, 1)
    assert load_experiment_config(path, ["out=elsewhere"]).out == "elsewhere", "--set paths are cwd-relative"


@pytest.fixture(scope="module")
def prepared_amazon(tmp_path_factory):
    from promptrec.data.amazon import load_amazon
    from promptrec.protocols.prepare import prepare_dataset

    amazon = Path(__file__).parent / "data" / "amazon"
    out = tmp_path_factory.mktemp("experiment") / "amazon"
    prepare_dataset(load_amazon(amazon / "reviews.json", amazon / "meta.json")[0], out, history_len=1)
    return out


@pytest.fixture(scope="module")
def prepared_kg(tmp_path_factory):
    from promptrec.cli.main import main

    imdb = Path(__file__).parent / "data" / "kg" / "auxiliary.txt"
    out = tmp_path_factory.mktemp("experiment") / "kg"
    assert main(["data", "prepare", "movielens", "--source", str(MINI_ML), "--out", str(out), "--history-len", "3",
                 "--kg", f"imdb={imdb}"]) == 0  # fmt: skip
    return out


def test_committed_configs_load_and_plan(prepared, prepared_amazon, prepared_kg):
    for path in sorted((Path(__file__).parents[1] / "eval" / "configs").glob("*.yaml")):
        text = path.read_text()  # the data its templates render
        data = prepared_amazon if "product_" in text else prepared_kg if "movie_kg" in text else prepared
        config = load_experiment_config(path, [f"data={data}", "shots=0,4"])
        plan = plan_experiment(config, check_models=False)
        assert plan.cells, path


# ---------------------------------------------------------------- errors before training


def write_config(tmp_path, prepared, model_dir) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(tiny_values(prepared, model_dir, tmp_path / "out")))
    return path


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("templates=talrec_plain", "did you mean 'tallrec_plain'"),
        ("shots=0,8,100", "shots [100] exceed the 17 examples of the train split"),
        ("shots=0,1", "1 shots of seed 0 all have label"),
        ("shot=8", "did you mean shots?"),
        ("train.learning_rat=0.1", "did you mean train.learning_rate?"),
        ("train.shots=8", "set `shots` at the top level"),
        ("model.model=x", "set `models` at the top level"),
        ("seeds=0,0", "lists a value twice"),
        ("loss=mse", "loss='mse' is unknown"),
        ("split=nope", "no split 'nope'"),
    ],
)
def test_user_mistakes_exit_2_before_any_training(
    assignment, message, prepared, tiny_model_dir, tmp_path, capsys, monkeypatch
):
    calls = Calls(monkeypatch)
    code = main(["experiment", "--config", str(write_config(tmp_path, prepared, tiny_model_dir)), "--set", assignment])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert calls.train == calls.evaluate == 0 and not (tmp_path / "out").exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed")
def test_tensorboard_without_the_package_is_a_clear_error(prepared, tiny_model_dir, tmp_path, capsys):
    config = write_config(tmp_path, prepared, tiny_model_dir)
    assert main(["experiment", "--config", str(config), "--set", "tensorboard=true"]) == 2
    assert "pip install tensorboard" in capsys.readouterr().err


def test_help_shows_real_examples(capsys):
    with pytest.raises(SystemExit):
        main(["experiment", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "eval/configs/tallrec_movie_cpu.yaml" in out
    configs = Path(__file__).parents[1] / "eval" / "configs"
    for name in ("tallrec_movie_cpu.yaml", "template_ab.yaml"):
        assert name in out and (configs / name).exists()


def test_dry_run_lists_cells_and_trains_nothing(prepared, tiny_model_dir, tmp_path, capsys, monkeypatch):
    calls = Calls(monkeypatch)
    assert main(["experiment", "--config", str(write_config(tmp_path, prepared, tiny_model_dir)), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 LLM cells" in out and "tallrec_plain/8shot-seed1: to run" in out
    assert calls.train == calls.evaluate == 0 and not (tmp_path / "out").exists()


# ---------------------------------------------------------------- running, records, resume


def test_every_cell_leaves_a_record_with_what_reproduces_it(finished):
    out, records, events = finished
    llm = [r for r in records if r["kind"] == "llm"]
    assert len(llm) == 4 and len(records) == 4 + (3 + len(LEARNED) * 2 + len(LEARNED))
    ensemble = next(r for r in llm if r["method"].endswith("ensemble"))
    assert ensemble["members"] == [r["cell"] for r in llm if r["shots"] == 8 and r["seed"] is not None]
    record = json.loads((out / llm[1]["cell"] / "cell.json").read_text())
    assert record["method"] == "tallrec_plain" and record["shots"] == 8 and record["seed"] == 0
    assert len(record["template"]["sha256"]) == 64 and len(record["fingerprint"]) == 64
    assert record["config"]["train"]["seed"] == 0 and record["config"]["train"]["shots"] == 8
    assert record["fingerprint_inputs"]["data"]["scored"] and record["metrics"]["num_examples"] == 3
    assert record["seconds"] > 0 and record["training"]["history"][0]["epoch"] == 1
    assert record["training"]["gate"] is None  # valid_examples 0: nothing to fit the LLM's weight on
    assert (out / llm[1]["cell"] / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((out / "experiment.json").read_text())["config"]["train"].get("shots") is None
    starts = [e for e in events if e.status == "start"]
    cells = [r for r in llm if r is not ensemble]
    assert [e.message.split(":")[0] for e in starts] == [f"cell {k}/3 {r['cell']}" for k, r in enumerate(cells, 1)]
    done = [e for e in events if e.status == "done"]
    assert "ETA" in done[0].message and done[-1].eta_seconds is None


def test_rerun_skips_finished_cells_and_says_so(finished, prepared, tiny_model_dir, tmp_path, monkeypatch):
    out = copy_of(finished, tmp_path)
    calls, events = Calls(monkeypatch), []
    plan = plan_experiment(tiny_config(prepared, tiny_model_dir, out))
    assert {p.status for p in plan.cells} == {"done"}
    records = run_experiment(plan, report=events.append)
    assert calls.train == calls.evaluate == 0
    assert sum(e.status == "skip" for e in events) == 3 and "finished earlier, skipped" in events[1].message
    assert [r["fingerprint"] for r in records] == [r["fingerprint"] for r in finished[1]]


class Scalars:
    """Stands in for TensorBoard's SummaryWriter (the package is optional)."""

    def __init__(self):
        self.logged, self.closed = [], False

    def add_scalar(self, tag, value, step):
        self.logged.append((tag, step))

    def close(self):
        self.closed = True


def test_an_unfinished_cell_is_rerun_alone_with_epoch_progress_and_curves(
    finished, prepared, tiny_model_dir, tmp_path, monkeypatch
):
    out = copy_of(finished, tmp_path)
    last = next(r for r in reversed(finished[1]) if "members" not in r)  # the last cell (ensembles are derived)
    (out / last["cell"] / "cell.json").unlink()  # as if killed before the record was written
    calls, events, writer = Calls(monkeypatch), [], Scalars()
    monkeypatch.setattr(promptrec.jobs.sweep, "tensorboard_writer", lambda plan, cell: writer)
    run_experiment(plan_experiment(tiny_config(prepared, tiny_model_dir, out)), report=events.append)
    assert (calls.train, calls.evaluate) == (1, 1)
    assert (out / last["cell"] / "cell.json").exists()
    assert [e.message.strip().split(" train_loss")[0] for e in events if e.status == "epoch"] == ["epoch 1/1"]
    assert writer.logged == [("train_loss", 1), ("test_auc", 1)] and writer.closed


def test_a_changed_config_is_refused_then_overwrite_reruns_only_changed_cells(
    finished, prepared, tiny_model_dir, tmp_path, monkeypatch
):
    out = copy_of(finished, tmp_path)
    # seed 1 leaves the grid (its cell stays on disk, outside the summary) so only one cell reruns
    changed = tiny_config(prepared, tiny_model_dir, out, seeds=[0], train={"learning_rate": 0.5})
    plan = plan_experiment(changed)
    assert [p.cell.cell_id for p in plan.cells if p.status == "changed"] == [
        f"{model_slug(str(tiny_model_dir))}/tallrec_plain/8shot-seed0"
    ]
    calls = Calls(monkeypatch)
    with pytest.raises(ConfigError, match=r"1 cell\(s\).*train.learning_rate: 0.001 -> 0.5.*--overwrite"):
        run_experiment(plan)
    assert calls.train == calls.evaluate == 0
    records = run_experiment(plan, overwrite=True)
    assert (calls.train, calls.evaluate) == (1, 1), "zero-shot cells and baselines did not change"
    assert sum(r["kind"] == "llm" for r in records) == 2
    assert {p.status for p in plan_experiment(changed).cells} == {"done"}


def test_execution_only_settings_do_not_make_a_cell_changed(finished, prepared, tiny_model_dir, tmp_path):
    """Micro-batch size and recomputed activations change memory, not the adapter: finished cells stay done,
    also when the settings differ from a record written before they existed; a real change still shows."""
    out = copy_of(finished, tmp_path)
    faster = {"micro_batch_size": 1, "gradient_checkpointing": False}
    assert {p.status for p in plan_experiment(tiny_config(prepared, tiny_model_dir, out, train=faster)).cells} == {
        "done"
    }
    for path in out.rglob("cell.json"):  # as if written by a release without the two settings
        record = json.loads(path.read_text())
        for key in ("micro_batch_size", "gradient_checkpointing"):
            (record.get("fingerprint_inputs", {}).get("train") or {}).pop(key, None)
        path.write_text(json.dumps(record))
    assert {p.status for p in plan_experiment(tiny_config(prepared, tiny_model_dir, out)).cells} == {"done"}
    changed = plan_experiment(tiny_config(prepared, tiny_model_dir, out, train=faster | {"learning_rate": 0.5}))
    assert {p.changes for p in changed.cells if p.status == "changed"} == {("train.learning_rate: 0.001 -> 0.5",)}


def test_a_setting_added_after_a_cell_ran_changes_it_only_off_its_default(finished, prepared, tiny_model_dir, tmp_path):
    out = copy_of(finished, tmp_path)
    for path in out.rglob("cell.json"):  # as if written by a release before `train.tasks` and `train.patience`
        record = json.loads(path.read_text())
        for key in ("tasks", "patience"):
            (record.get("fingerprint_inputs", {}).get("train") or {}).pop(key, None)
        path.write_text(json.dumps(record))
    assert {p.status for p in plan_experiment(tiny_config(prepared, tiny_model_dir, out)).cells} == {"done"}
    plan = plan_experiment(tiny_config(prepared, tiny_model_dir, out, train={"patience": 7}))
    assert {p.changes for p in plan.cells if p.status == "changed"} == {("train.patience: None -> 7",)}


def test_new_default_features_change_the_cells_whose_wide_part_reads_them(
    finished, prepared, tiny_model_dir, tmp_path, monkeypatch
):
    """A release with other default wide features must not pass old hybrid cells off as done."""
    out = copy_of(finished, tmp_path)
    before = list(promptrec.protocols.features.DEFAULT_FEATURES)
    monkeypatch.setattr(promptrec.protocols.features, "DEFAULT_FEATURES", ("history_like_fraction",))
    plan = plan_experiment(tiny_config(prepared, tiny_model_dir, out))
    changed = {p.cell.cell_id for p in plan.cells if p.status == "changed"}
    trained = {p.cell.cell_id for p in plan.cells if p.cell.kind == "llm" and p.cell.shots}
    assert changed == trained | {c for c in (p.cell.cell_id for p in plan.cells) if c.startswith("baselines/wide_")}
    assert {p.changes for p in plan.cells if p.status == "changed"} == {
        (f"default_features: {before!r} -> ['history_like_fraction']",)
    }
    pure = plan_experiment(tiny_config(prepared, tiny_model_dir, out, variants=["llm"], loss="bce"))
    own = {"wide": {"features": ["user_like_rate"]}}
    named = plan_experiment(tiny_config(prepared, tiny_model_dir, out, train=TINY_TRAIN | own))
    for other in (pure, named):  # no wide part, or one naming its features: the default is not read
        assert not any("default_features" in p.inputs for p in other.cells if p.cell.kind == "llm")


def test_the_gate_changes_only_cells_that_could_fit_it(finished, prepared, tiny_model_dir, tmp_path):
    """A cell recorded before `wide.gate` existed was trained ungated: with valid examples to fit the gate on,
    today's default (on) is a change; without any (valid_examples 0) the gate does nothing, so no change."""
    out = copy_of(finished, tmp_path)
    for path in out.rglob("cell.json"):  # as if written by a release before the gate
        record = json.loads(path.read_text())
        ((record.get("fingerprint_inputs", {}).get("train") or {}).get("wide") or {}).pop("gate", None)
        path.write_text(json.dumps(record))
    assert {p.status for p in plan_experiment(tiny_config(prepared, tiny_model_dir, out)).cells} == {"done"}
    off = {"wide": {"gate": False}}
    assert {p.status for p in plan_experiment(tiny_config(prepared, tiny_model_dir, out, train=off)).cells} == {"done"}
    plan = plan_experiment(tiny_config(prepared, tiny_model_dir, out, train=TINY_TRAIN | {"valid_examples": 2}))
    hybrid = {p.cell.cell_id for p in plan.cells if p.cell.kind == "llm" and p.cell.shots}
    assert {p.cell.cell_id for p in plan.cells if p.status == "changed"} == hybrid
    assert all("train.wide.gate: None -> True" in p.changes for p in plan.cells if p.status == "changed")


def test_changed_config_via_the_cli_exits_2(finished, prepared, tiny_model_dir, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    config = write_config(tmp_path, prepared, tiny_model_dir)
    assert main(["experiment", "--config", str(config), "--out", str(out), "--set", "limit=2"]) == 2
    assert "--overwrite" in capsys.readouterr().err


# ---------------------------------------------------------------- summary and plot


def test_summary_statistics_match_the_cell_records(finished):
    out, records, _ = finished
    groups = defaultdict(list)
    for path in out.rglob("cell.json"):
        record = json.loads(path.read_text())
        groups[(record["kind"], record["method"], str(record["shots"]))].append(record["metrics"])
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert len(rows) == len(groups)
    for row in rows:
        runs = groups[(row["kind"], row["method"], row["shots"])]
        assert int(row["runs"]) == len(runs)
        for metric in ("auc", "uauc", "logloss", "accuracy"):
            values = np.array([m[metric] for m in runs], dtype=float)
            values = values[~np.isnan(values)]
            mean = values.mean() if len(values) else math.nan
            std = values.std(ddof=1) if len(values) > 1 else math.nan
            assert float(row[f"{metric}_mean"]) == pytest.approx(mean, nan_ok=True)
            assert float(row[f"{metric}_std"]) == pytest.approx(std, nan_ok=True)
    table = (out / "summary.md").read_text()
    assert "| tallrec_plain | 8 | bce | 2 |" in table, "a hybrid by default (the split carries features): bce"
    assert "| tallrec_plain ensemble | 8 | bce | 1 |" in table and "baseline: itemknn | full" in table


def test_summary_of_hand_made_records():
    def record(seed, auc, shots=8):
        metrics = {"auc": auc, "uauc": math.nan, "logloss": 0.7, "accuracy": 0.5, "num_examples": 10}
        return {
            "kind": "llm",
            "model": "m",
            "method": "t",
            "shots": shots,
            "seed": seed,
            "loss": "lm",
            "metrics": metrics,
        }

    rows = summarize([record(0, 0.6), record(1, 0.7), record(2, 0.8), record(None, 0.55, shots=0)])
    assert [(r["shots"], r["runs"]) for r in rows] == [(0, 1), (8, 3)]
    assert rows[1]["auc_mean"] == pytest.approx(0.7) and rows[1]["auc_std"] == pytest.approx(0.1)
    assert math.isnan(rows[1]["uauc_mean"]) and math.isnan(rows[0]["auc_std"])


def test_learning_curve_is_a_png(finished):
    data = (finished[0] / "learning_curve.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_summary_script_reads_experiment_records(finished):
    import runpy

    script = Path(__file__).parents[1] / "eval" / "summarize.py"
    module = runpy.run_path(str(script))
    rows = summarize(module["read_cell_records"](finished[0]))
    assert len(rows) == len(list(csv.DictReader((finished[0] / "summary.csv").open())))


def test_config_dataclass_rejects_empty_and_negative_grids():
    with pytest.raises(ConfigError, match="`seeds` is empty"):
        ExperimentConfig(seeds=())
    with pytest.raises(ConfigError, match="must be >= 0"):
        replace(ExperimentConfig(), shots=(-1,))
