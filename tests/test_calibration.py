"""Tests for promptrec.calibration: Brier, ECE/MCE by hand and against scikit-learn, the reliability PNG,
and their place in metrics.json / predictions.jsonl via `evaluate`."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from promptrec.cli.main import main
from promptrec.core.errors import ConfigError
from promptrec.metrics.calibration import (
    brier_score,
    calibration_metrics,
    expected_calibration_error,
    max_calibration_error,
    plot_reliability,
    reliability_bins,
)
from promptrec.metrics.pointwise import pointwise_metrics, sigmoid

MINI_ML = Path(__file__).parent / "data" / "mini-ml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_ece_and_mce_hand_computed():
    # 2 bins. [0, .5): p .3 .2 (mean .25), labels 1 1 -> gap .75. [.5, 1]: p .9 .8 (mean .85), labels 1 0 -> gap .35
    labels, probabilities = [1, 0, 1, 1], [0.9, 0.8, 0.3, 0.2]
    assert expected_calibration_error(labels, probabilities, num_bins=2) == pytest.approx((2 * 0.75 + 2 * 0.35) / 4)
    assert max_calibration_error(labels, probabilities, num_bins=2) == pytest.approx(0.75)


@pytest.mark.parametrize(
    "labels, probabilities",
    [
        ([1, 0, 0, 0], [0.25, 0.25, 0.25, 0.25]),  # one bin, mean 0.25, observed 1 in 4
        ([0, 1], [0.0, 1.0]),  # both ends; p = 1 falls in the last bin
        ([1, 0, 1, 0, 1, 1, 1, 0], [0.5] * 4 + [0.75] * 4),
    ],
)
def test_perfect_calibration_is_zero(labels, probabilities):
    assert expected_calibration_error(labels, probabilities) == pytest.approx(0.0)
    assert max_calibration_error(labels, probabilities) == pytest.approx(0.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_brier_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=300)
    probabilities = rng.uniform(size=300)
    assert brier_score(labels, probabilities) == pytest.approx(brier_score_loss(labels, probabilities), abs=1e-15)


def test_bins_count_every_prediction_once_and_leave_empty_bins_nan():
    bins = reliability_bins([0, 1, 1, 0], [0.0, 0.99, 1.0, 0.1], num_bins=10)
    assert bins.counts.tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert bins.observed[9] == 1.0 and bins.mean_predicted[9] == pytest.approx(0.995)
    assert math.isnan(bins.observed[5]) and bins.edges[0] == 0.0 and bins.edges[-1] == 1.0


@pytest.mark.parametrize(
    "labels, probabilities, fragment",
    [
        ([1, 0], [0.5, 2.0], r"pass sigmoid\(score\), not raw scores"),
        ([1, 2], [0.5, 0.5], "labels must be 0 or 1"),
        ([1, 0, 1], [0.5, 0.5], "equal-length"),
    ],
)
def test_bad_inputs(labels, probabilities, fragment):
    with pytest.raises(ConfigError, match=fragment):
        calibration_metrics(labels, probabilities)


def test_pointwise_metrics_report_calibration_of_sigmoid_scores():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, size=200)
    scores = rng.normal(size=200) + labels
    metrics = pointwise_metrics(labels, scores)
    assert metrics["brier"] == pytest.approx(brier_score_loss(labels, sigmoid(scores)))
    assert metrics["ece"] == pytest.approx(expected_calibration_error(labels, sigmoid(scores)))
    assert metrics["ece_bins"] == 15 and 0 <= metrics["mce"] <= 1


def test_reliability_plot_is_a_png(tmp_path):
    rng = np.random.default_rng(0)
    probabilities = rng.uniform(size=100)
    labels = (rng.uniform(size=100) < probabilities).astype(int)
    path = plot_reliability(labels, probabilities, tmp_path / "plots" / "reliability.png")
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000


def test_importing_calibration_neither_imports_matplotlib_nor_picks_a_backend():
    code = "import sys, promptrec.metrics.calibration, promptrec.metrics.pointwise; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("calibration") / "prepared"
    argv = ["data", "prepare", "movielens", "--source", str(MINI_ML), "--out", str(out), "--history-len", "3"]
    assert main(argv) == 0
    return out


def evaluate_argv(prepared, model_dir, out, *extra) -> list[str]:
    data = ["--data", str(prepared), "--split", "train"]
    return ["evaluate", *data, "--model", str(model_dir), "--out", str(out), *extra]


def test_evaluate_writes_calibration_plot_and_probabilities(prepared, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "res"
    assert main(evaluate_argv(prepared, tiny_model_dir, out, "--probabilities")) == 0
    printed = json.loads(capsys.readouterr().out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"brier", "ece", "mce"} <= set(metrics) and printed["ece"] == metrics["ece"]
    assert (out / "reliability.png").read_bytes()[:8] == PNG_MAGIC
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(row["probability"] == pytest.approx(1 / (1 + math.exp(-row["score"]))) for row in rows)
    assert json.loads((out / "config.json").read_text())["config"]["probabilities"] is True


def test_evaluate_without_plot_or_probabilities(prepared, tiny_model_dir, tmp_path):
    out = tmp_path / "res"
    assert main(evaluate_argv(prepared, tiny_model_dir, out, "--no-reliability-plot")) == 0
    assert not (out / "reliability.png").exists()
    assert "probability" not in json.loads((out / "predictions.jsonl").read_text().splitlines()[0])
