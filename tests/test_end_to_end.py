"""Real tier: the embedded SmolLM2-135M model on real MovieLens-100K slices, through the CLI.

Prepare -> zero-shot evaluate -> train a LoRA adapter -> evaluate with it -> reload and rescore.
"""

import json

import pytest

from promptrec.cli.main import main
from promptrec.lm.adapter import Adapter
from promptrec.lm.config import ModelConfig
from promptrec.lm.loading import load_model
from promptrec.lm.scoring import Scorer
from promptrec.protocols.splits import load_split
from promptrec.templates.template import load_template

pytestmark = pytest.mark.real
ONE_EPOCH = ["--set", "num_epochs=1", "--set", "valid_examples=8", "--set", "batch_size=4"]


@pytest.fixture(scope="module")
def ml_prepared(ml100k_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "ml100k"
    assert main(["data", "prepare", "movielens", "--source", str(ml100k_dir), "--out", str(out)]) == 0
    return out


def test_embedded_model_trains_saves_reloads_and_evaluates(ml_prepared, tmp_path):
    adapter = tmp_path / "adapter"
    assert (
        main(
            [
                "train",
                "--data",
                str(ml_prepared),
                "--template",
                "tallrec_plain",
                "--shots",
                "8",
                "--seed",
                "0",
                *ONE_EPOCH,
                "--out",
                str(adapter),
            ]
        )
        == 0
    )
    record = json.loads((adapter / "promptrec_run.json").read_text())
    assert record["model"]["model"] == "embedded" and record["data"]["sha256"]

    for name, extra in (("zero", []), ("tuned", ["--adapter", str(adapter)])):
        assert (
            main(
                [
                    "evaluate",
                    "--data",
                    str(ml_prepared),
                    "--template",
                    "tallrec_plain",
                    "--limit",
                    "12",
                    "--out",
                    str(tmp_path / name),
                    *extra,
                ]
            )
            == 0
        )
    zero, tuned = (
        [json.loads(line) for line in (tmp_path / n / "predictions.jsonl").read_text().splitlines()]
        for n in ("zero", "tuned")
    )
    assert [r["example_id"] for r in zero] == [r["example_id"] for r in tuned], "same seeded sample"
    assert max(abs(a["score"] - b["score"]) for a, b in zip(zero, tuned)) > 1e-3, "the adapter changes scores"

    model, tokenizer = load_model(ModelConfig(), adapter=adapter)
    by_id = {ex["example_id"]: ex for ex in load_split(ml_prepared, "test")}
    wide = Adapter.open(adapter).wide
    assert wide is not None, "ML-100K examples carry features, so train fits the hybrid by default"
    scorer = Scorer(model, tokenizer, load_template("tallrec_plain"), wide=wide)
    rescored = scorer.score([by_id[r["example_id"]] for r in tuned])
    assert rescored == pytest.approx([r["score"] for r in tuned], abs=1e-4)
    assert [r["llm_score"] + r["wide_score"] for r in tuned] == pytest.approx([r["score"] for r in tuned], abs=1e-9)


def test_wrong_base_model_for_adapter_is_a_clear_error(ml_prepared, tmp_path, tiny_model_dir, capsys):
    adapter = tmp_path / "tiny-adapter"
    assert (
        main(
            [
                "train",
                "--data",
                str(ml_prepared),
                "--shots",
                "4",
                "--model",
                str(tiny_model_dir),
                *ONE_EPOCH,
                "--out",
                str(adapter),
            ]
        )
        == 0
    )
    code = main(
        [
            "evaluate",
            "--data",
            str(ml_prepared),
            "--adapter",
            str(adapter),
            "--model",
            "embedded",
            "--limit",
            "4",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert code == 2
    assert "trained on model" in capsys.readouterr().err
