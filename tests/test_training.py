"""Few-shot LoRA training on the tiny model: sampling, saving, reloading, multi-process parity."""

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from promptrec.core.errors import ConfigError
from promptrec.lm.adapter import RUN_RECORD
from promptrec.lm.config import ModelConfig
from promptrec.lm.loading import load_model
from promptrec.lm.scoring import Scorer
from promptrec.lm.training import LoraSettings, TrainConfig, train
from promptrec.protocols.shots import sample_shots
from promptrec.protocols.splits import load_split
from promptrec.templates.template import load_template


def pool(n, positives):
    return [{"example_id": f"e{i}", "label": int(i < positives)} for i in range(n)]


@pytest.mark.parametrize("balanced", [False, True])
def test_sample_shots_is_reproducible_and_sized(balanced):
    first = sample_shots(pool(50, 20), 10, seed=3, balanced=balanced)
    assert first == sample_shots(pool(50, 20), 10, seed=3, balanced=balanced)
    assert len({ex["example_id"] for ex in first}) == 10
    if balanced:
        assert sum(ex["label"] for ex in first) == 5


def test_sample_shots_differs_by_seed():
    assert sample_shots(pool(50, 20), 10, 0, False) != sample_shots(pool(50, 20), 10, 1, False)


@pytest.mark.parametrize(
    "shots, balanced, message",
    [(51, False, "exceeds the 50 training examples"), (30, True, "needs 15 positives and 15 negatives")],
)
def test_sample_shots_refuses_impossible_requests(shots, balanced, message):
    with pytest.raises(ConfigError, match=message):
        sample_shots(pool(50, 5), shots, 0, balanced)


def tiny_config(tiny_model_dir, **overrides):
    base = TrainConfig(
        template="tallrec_plain",
        shots=8,
        num_epochs=2,
        batch_size=4,
        valid_examples=6,
        patience=5,
        learning_rate=1e-2,
        lora=LoraSettings(r=4, lora_alpha=8, lora_dropout=0.0),
        model=ModelConfig(model=str(tiny_model_dir)),
    )
    return replace(base, **overrides)


@pytest.mark.parametrize("loss", ["lm", "bce"])
def test_train_saves_adapter_and_run_record_that_reload(tiny_model_dir, prepared_dir, tmp_path, loss):
    config = tiny_config(tiny_model_dir, loss=loss)
    # The mini fixture's valid split holds 2 positives only; validate on the train pool instead.
    train_pool = valid = load_split(prepared_dir, "train")
    result = train(config, train_pool, valid, tmp_path / "adapter")
    record = json.loads((tmp_path / "adapter" / RUN_RECORD).read_text())
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    assert record["template"]["name"] == "tallrec_plain" and len(record["template"]["sha256"]) == 64
    assert record["config"]["loss"] == loss and record["config"]["seed"] == 0
    assert len(record["shot_ids"]) == 8 and record["best_epoch"] == result.best_epoch
    assert [h["epoch"] for h in record["history"]] == [1, 2]

    base, tokenizer = load_model(config.model)
    tuned, _ = load_model(config.model, adapter=tmp_path / "adapter")
    template = load_template("tallrec_plain")
    before = Scorer(base, tokenizer, template).score(valid)
    after = Scorer(tuned, tokenizer, template).score(valid)
    assert abs(before - after).max() > 1e-4, "the trained adapter must change the scores"


def test_training_is_deterministic(tiny_model_dir, prepared_dir, tmp_path):
    config = tiny_config(tiny_model_dir, num_epochs=1)
    data = load_split(prepared_dir, "train"), load_split(prepared_dir, "train")
    train(config, *data, tmp_path / "a")
    train(config, *data, tmp_path / "b")
    assert (tmp_path / "a" / "adapter_model.safetensors").read_bytes() == (
        tmp_path / "b" / "adapter_model.safetensors"
    ).read_bytes()


@pytest.mark.parametrize("loss", ["lm", "bce"])
def test_micro_batches_and_checkpointing_train_the_one_pass_adapter(tiny_model_dir, prepared_dir, tmp_path, loss):
    """Gradients accumulated over micro-batches (3 + 1 of a 4-example batch, or 1 at a time) and layers
    recomputed in backward train the adapter that one forward/backward pass per batch trains."""
    from safetensors.torch import load_file

    data = load_split(prepared_dir, "train"), load_split(prepared_dir, "train")
    runs = {"one pass": (4, False), "3 + 1": (3, False), "1 at a time, recomputed": (1, True)}
    weights, histories = {}, {}
    for name, (micro, checkpointing) in runs.items():
        config = tiny_config(tiny_model_dir, loss=loss, micro_batch_size=micro, gradient_checkpointing=checkpointing)
        histories[name] = train(config, *data, tmp_path / name).history
        weights[name] = load_file(tmp_path / name / "adapter_model.safetensors")
    for name in list(runs)[1:]:
        assert weights[name].keys() == weights["one pass"].keys()
        assert max((weights[name][k] - weights["one pass"][k]).abs().max().item() for k in weights[name]) < 5e-5, name
        for a, b in zip(histories[name], histories["one pass"]):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
            assert a["valid_auc"] == pytest.approx(b["valid_auc"], abs=1e-9)


def test_single_class_validation_is_refused(tiny_model_dir, prepared_dir, tmp_path):
    with pytest.raises(ConfigError, match="AUC is undefined"):
        train(
            tiny_config(tiny_model_dir), load_split(prepared_dir, "train"), load_split(prepared_dir, "valid"), tmp_path
        )


def test_bce_needs_single_token_answers(tiny_model_dir, prepared_dir, tmp_path):
    template = tmp_path / "multi.j2"
    template.write_text(
        "---\nname: multi\nversion: '1'\nkind: pointwise\ninputs: [item]\nchoices: [' Yes.', ' No.']\n"
        "description: two-token answers\n---\nWill the user like {{ item.title }}?"
    )
    config = tiny_config(tiny_model_dir, template=str(template), loss="bce")
    with pytest.raises(ConfigError, match="single-token answers"):
        train(config, load_split(prepared_dir, "train"), [], tmp_path / "adapter")


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not installed")
def test_two_process_launch_matches_single_process(tiny_model_dir, prepared_dir, tmp_path, free_port):
    """DDP over 2 CPU processes (gloo) trains the same adapter as 1 process: same global batches."""
    common = [
        "-m",
        "promptrec",
        "train",
        "--data",
        str(prepared_dir),
        "--model",
        str(tiny_model_dir),
        "--shots",
        "8",
        "--set",
        "num_epochs=2",
        "--set",
        "batch_size=4",
        "--set",
        "valid_examples=6",
        "--set",
        "lora.lora_dropout=0",
        "--set",
        "lora.r=4",
        "--set",
        "learning_rate=1e-2",
        "--valid",
        str(prepared_dir / "train.jsonl"),
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    single = subprocess.run(
        [sys.executable, *common, "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True
    )
    assert single.returncode == 0, single.stderr[-2000:]
    launch = [
        "accelerate",
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--main_process_port",
        str(free_port),
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    double = subprocess.run([*launch, *common, "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True)
    assert double.returncode == 0, double.stderr[-2000:]
    assert double.stdout.count("saved adapter") == 1, "only the main process reports"

    from safetensors.torch import load_file

    one, two = (
        load_file(tmp_path / "one" / "adapter_model.safetensors"),
        load_file(tmp_path / "two" / "adapter_model.safetensors"),
    )
    assert one.keys() == two.keys()
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-4
    records = [json.loads((tmp_path / d / RUN_RECORD).read_text()) for d in ("one", "two")]
    assert [r["num_processes"] for r in records] == [1, 2]
    for a, b in zip(records[0]["history"], records[1]["history"]):
        assert a["valid_auc"] == pytest.approx(b["valid_auc"], abs=1e-6)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)


def test_a_training_run_killed_midway_leaves_nothing_that_loads(prepared_dir, tiny_model_dir, tmp_path, capsys):
    """kill -9 after the first epoch's weights are saved: no adapter dir appears, and loaders say why."""
    out = tmp_path / "adapter"
    argv = [sys.executable, "-m", "promptrec", "train", "--data", str(prepared_dir), "--shots", "8",
            "--model", str(tiny_model_dir), "--set", "num_epochs=400", "--set", "valid_examples=0",
            "--batch-size", "4", "--out", str(out)]  # fmt: skip
    job = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    weights = tmp_path / "adapter.partial" / "adapter_model.safetensors"
    deadline = time.monotonic() + 120
    while not weights.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    job.kill()
    job.wait()
    assert weights.exists(), "the run saved an epoch before it was killed"
    assert not out.exists()
    from promptrec.cli.main import main

    for adapter in (out, tmp_path / "adapter.partial"):
        evaluate = ["evaluate", "--data", str(prepared_dir), "--adapter", str(adapter), "--out", str(tmp_path / "r")]
        assert main(evaluate) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists()
