"""The hybrid scorer: LLM log-odds + a wide logit over named features, trained on the shots.

Invariants: a wide part with w = 0 and b = 0 leaves the LLM score exactly; the wide part's save/load
round trip gives identical scores; residual training keeps the logistic fit, joint training moves it,
off trains the pure LLM; an ensemble's score is the mean of its members'.
"""

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from promptrec.baselines.wide import WIDE_FILE, WidePart, fit_gate, fit_wide, load_wide
from promptrec.core.errors import ConfigError, ModelError
from promptrec.jobs.evaluate import EvalConfig, evaluate
from promptrec.lm.adapter import RUN_RECORD, Adapter
from promptrec.lm.config import ModelConfig
from promptrec.lm.loading import load_model
from promptrec.lm.scoring import Scorer
from promptrec.lm.training import LoraSettings, TrainConfig, WideSettings, train
from promptrec.protocols.features import FEATURES, ITEM_PRIOR_RATINGS, available_features, feature_row
from promptrec.protocols.prepare import prepare_movielens
from promptrec.protocols.shots import sample_shots
from promptrec.protocols.splits import load_split
from promptrec.templates.template import load_template

MINI_ML = Path(__file__).parent / "data" / "mini-ml"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("hybrid") / "data"
    prepare_movielens(MINI_ML, out, history_len=3)
    return out


@pytest.fixture(scope="module")
def pools(prepared):
    return load_split(prepared, "train"), load_split(prepared, "valid")


def config(model_dir, **changes) -> TrainConfig:
    base = TrainConfig(
        shots=12, num_epochs=1, batch_size=4, valid_examples=0, learning_rate=1e-2,
        lora=LoraSettings(r=4, lora_alpha=8, lora_dropout=0.0), model=ModelConfig(model=str(model_dir)),
    )  # fmt: skip
    return replace(base, **changes)


def evaluated_rows(model_dir, examples, out: Path, adapter) -> list[dict]:
    """`evaluate` with `adapter` (a path, a list of paths, or None) on `examples`; its prediction rows."""
    eval_config = EvalConfig(template="tallrec_plain", reliability_plot=False, model=ModelConfig(model=str(model_dir)))
    evaluate(eval_config, examples, out, adapter)
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(pools, tiny_model_dir, tmp_path_factory):
    """One adapter per wide mode, trained on the same 12 shots."""
    out = tmp_path_factory.mktemp("adapters")
    for mode in ("residual", "joint", "off"):
        train(config(tiny_model_dir, wide=WideSettings(mode=mode)), *pools, out / mode)
    return out


def test_features_are_read_from_the_example_alone():
    example = {
        "history": [{"liked": True, "rating": 5}, {"liked": False, "rating": 2}],
        "stats": {"item_num_ratings": 3},
    }
    row = dict(zip(FEATURES, feature_row(example, list(FEATURES))))
    assert row["history_like_fraction"] == 0.5 and row["history_mean_rating"] == 3.5
    assert row["log_item_ratings"] == pytest.approx(math.log(4)) and row["item_like_rate"] is None


def test_the_shrunk_like_rate_lies_between_the_items_and_the_users():
    """(likes + m u) / (ratings + m), u the user's like-rate (the shown history's for a new user)."""
    read = FEATURES["item_like_rate_shrunk"]
    history = [{"liked": True}, {"liked": True}, {"liked": True}, {"liked": False}]

    def example(count, rate, user_rate):
        stats = {"item_num_ratings": count, "item_like_rate": rate, "user_like_rate": user_rate}
        return {"history": history, "stats": stats}

    m = ITEM_PRIOR_RATINGS
    assert read(example(30, 0.9, 0.4)) == pytest.approx((0.9 * 30 + m * 0.4) / (30 + m))
    assert 0.4 < read(example(30, 0.9, 0.4)) < 0.9
    assert read(example(0, None, 0.4)) == pytest.approx(0.4)  # an item nobody rated: the user's rate
    assert read(example(0, None, None)) == pytest.approx(0.75)  # a new user: the shown history's like-fraction
    assert read(example(5, 0.0, 1.0)) > read(example(50, 0.0, 1.0))  # more ratings, less shrinking
    assert read({"history": history, "stats": {}}) is None  # no count, no feature
    assert read(example(3, None, 0.5)) is None  # ratings without a rate: malformed, not guessed


def test_available_features_drop_missing_and_constant_ones():
    examples = [{"history": [{"liked": i % 2 == 0}] * 2, "stats": {"item_like_rate": None}} for i in range(4)]
    assert available_features(examples) == ["history_like_fraction"]


def test_a_feature_most_shots_give_is_kept_and_filled_with_their_mean():
    """One shot whose item has no earlier rating must not drop the item's like-rate for all of them."""
    rates = [0.2, 0.8, None, 0.5]
    examples = [
        {"history": [{"liked": True}, {"liked": i % 2 == 0}], "stats": {"item_like_rate": r}}
        for i, r in enumerate(rates)
    ]
    names = ["history_like_fraction", "item_like_rate"]
    assert available_features(examples, names) == names
    assert available_features(examples, names, min_present=1.0) == ["history_like_fraction"]
    assert "item_like_rate" not in available_features(examples[2:], names)  # given by 1 of 2, a single value
    wide = fit_wide(examples, [0, 1, 0, 1], ["item_like_rate"], l2=1.0)
    assert wide.fill[0] == pytest.approx(0.5) and wide.standardized(examples[2:3])[0, 0] == pytest.approx(0.0)


def test_a_zero_wide_part_leaves_the_llm_score_exactly(prepared, tiny_model_dir):
    model, tokenizer = load_model(ModelConfig(model=str(tiny_model_dir)))
    examples = load_split(prepared, "test")[:6]
    names = ("history_like_fraction", "user_like_rate")
    zero = WidePart(names, np.zeros(2), np.ones(2), np.zeros(2), np.zeros(2), 0.0)
    template = load_template("movie_rich")
    plain = Scorer(model, tokenizer, template).score(examples)
    assert np.array_equal(Scorer(model, tokenizer, template, wide=zero).score(examples), plain)
    grouped, _ = Scorer(model, tokenizer, template, wide=zero).score_group(examples)
    assert np.allclose(grouped, plain, atol=1e-4)


def test_the_wide_part_round_trips_through_safetensors(pools, tmp_path):
    shots = sample_shots(pools[0], 14, seed=1, balanced=False)
    names = available_features(shots)
    wide = fit_wide(shots, [ex["label"] for ex in shots], names, l2=1.0)
    wide.save(tmp_path)
    loaded = load_wide(tmp_path)
    assert loaded.names == wide.names
    assert np.array_equal(loaded.logits(pools[1]), wide.logits(pools[1]))
    (tmp_path / WIDE_FILE).write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match=WIDE_FILE):
        load_wide(tmp_path)


def test_the_gate_weight_round_trips_and_an_ungated_file_reads_as_weight_one(pools, tmp_path):
    from safetensors.numpy import load_file, save_file

    shots = sample_shots(pools[0], 14, seed=1, balanced=False)
    wide = fit_wide(shots, [ex["label"] for ex in shots], available_features(shots), l2=1.0)
    gated = wide.with_parameters(wide.weight, wide.bias - 0.2, llm_weight=0.3)
    gated.save(tmp_path)
    loaded = load_wide(tmp_path)
    assert loaded.llm_weight == 0.3 and loaded.bias == pytest.approx(wide.bias - 0.2)
    llm = np.linspace(-2, 2, len(pools[1]))
    share, logits = loaded.hybrid(llm, pools[1])
    assert np.array_equal(share, 0.3 * llm) and np.array_equal(logits, gated.logits(pools[1]))
    tensors = load_file(str(tmp_path / WIDE_FILE))
    metadata = {"features": json.dumps(list(wide.names))}
    save_file({k: v for k, v in tensors.items() if k != "llm_weight"}, str(tmp_path / WIDE_FILE), metadata=metadata)
    assert load_wide(tmp_path).llm_weight == 1.0, "a part saved before the gate scores as it always did"
    save_file(tensors | {"llm_weight": np.array([1.5])}, str(tmp_path / WIDE_FILE), metadata=metadata)
    with pytest.raises(ModelError, match="llm_weight"):
        load_wide(tmp_path)


def test_the_gate_turns_down_an_llm_part_that_reverses_and_keeps_one_that_helps():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    wide = 0.8 * (2 * labels - 1) + rng.normal(0, 1.5, 200)  # a weakly informative wide logit
    helps = 1.5 * (2 * labels - 1) + rng.normal(0, 1.0, 200)
    reverses = -helps
    kept, dropped = fit_gate(helps, wide, labels), fit_gate(reverses, wide, labels)
    assert kept.llm_weight == 1.0 and kept.auc_after == kept.auc_before
    assert dropped.llm_weight == 0.0 and dropped.auc_after > dropped.auc_before
    noise = fit_gate(rng.normal(0, 3, 200), wide, labels)
    assert 0.0 <= noise.llm_weight < 0.5
    for gate, llm in ((kept, helps), (dropped, reverses)):  # the intercept is the likelihood's optimum there

        def loss(shift, gate=gate, llm=llm):
            return np.logaddexp(0, -(2 * labels - 1) * (gate.llm_weight * llm + wide + shift)).mean()

        assert gate.examples == 200
        assert loss(gate.bias_shift) <= min(loss(gate.bias_shift - 0.05), loss(gate.bias_shift + 0.05))
    same = fit_gate(helps, wide, np.ones(200, int))  # one label: nothing to fit
    assert (same.llm_weight, same.bias_shift) == (1.0, 0.0)
    with pytest.raises(ValueError, match="one LLM score"):
        fit_gate(helps[:5], wide, labels)


def test_a_missing_feature_is_filled_with_the_shots_mean(pools):
    shots = sample_shots(pools[0], 14, seed=1, balanced=False)
    wide = fit_wide(shots, [ex["label"] for ex in shots], ["user_like_rate"], l2=1.0)
    blank = {"history": [], "stats": {}}
    assert wide.logits([blank])[0] == pytest.approx(wide.bias)  # the mean standardizes to 0


def test_residual_keeps_the_logistic_fit_and_joint_moves_it(trained, pools):
    residual, joint = Adapter.open(trained / "residual"), Adapter.open(trained / "joint")
    shots = [ex for ex in pools[0] if ex["example_id"] in set(residual.record["shot_ids"])]
    fitted = fit_wide(shots, [ex["label"] for ex in shots], list(residual.wide.names), l2=1.0)
    assert np.allclose(residual.wide.weight, fitted.weight) and residual.wide.bias == pytest.approx(fitted.bias)
    assert not np.allclose(joint.wide.weight, fitted.weight), "joint training updates w with the LoRA"
    for adapter, mode in ((residual, "residual"), (joint, "joint")):
        assert adapter.record["wide"]["mode"] == mode and adapter.record["loss"] == "bce"
        assert adapter.record["wide"]["features"] == list(adapter.wide.names)


def test_the_gate_reweights_the_trained_llm_part_and_leaves_its_weights(trained, pools, tiny_model_dir, tmp_path):
    """Gating happens after training: the LoRA and wide weights are those of the ungated run (same seed, one
    epoch), the LLM's weight and the intercept come from the valid examples, and evaluate applies them."""
    from safetensors.numpy import load_file

    held_out = pools[0][::-1]  # the mini split's 2 valid examples share a label: gate on train examples instead
    gated_config = config(tiny_model_dir, valid_examples=8, wide=WideSettings(mode="residual"))
    train(gated_config, pools[0], held_out, tmp_path / "gated")
    gated, plain = Adapter.open(tmp_path / "gated"), Adapter.open(trained / "residual")
    gate = gated.record["gate"]
    assert gate["examples"] == 8 and 0.0 <= gate["llm_weight"] <= 1.0
    assert gated.wide.llm_weight == gate["llm_weight"] == gated.record["wide"]["llm_weight"]
    assert np.array_equal(gated.wide.weight, plain.wide.weight)
    assert gated.wide.bias == pytest.approx(plain.wide.bias + gate["bias_shift"])
    lora = [load_file(str(path / "adapter_model.safetensors")) for path in (tmp_path / "gated", trained / "residual")]
    assert all(np.array_equal(lora[0][k], lora[1][k]) for k in lora[1])
    assert plain.record["gate"] is None and plain.wide.llm_weight == 1.0  # valid_examples 0: nothing to fit on
    test = held_out[:6]
    rows = {
        name: evaluated_rows(tiny_model_dir, test, tmp_path / f"eval-{name}", adapter)
        for name, adapter in (("gated", tmp_path / "gated"), ("plain", trained / "residual"))
    }
    expected = [gate["llm_weight"] * r["llm_score"] for r in rows["plain"]]
    assert [r["llm_score"] for r in rows["gated"]] == pytest.approx(expected, abs=1e-5)
    summed = [r["llm_score"] + r["wide_score"] for r in rows["gated"]]
    assert [r["score"] for r in rows["gated"]] == pytest.approx(summed)
    ungated = config(tiny_model_dir, valid_examples=8, wide=WideSettings(mode="residual", gate=False))
    train(ungated, pools[0], held_out, tmp_path / "ungated")
    assert Adapter.open(tmp_path / "ungated").record["gate"] is None
    assert Adapter.open(tmp_path / "ungated").wide.llm_weight == 1.0


def test_a_gate_at_zero_skips_the_llm_and_scores_the_wide_part(
    trained, prepared, tiny_model_dir, tmp_path, monkeypatch
):
    """Weight 0: the LLM's share is 0 whatever it says, so no forward pass runs, in evaluate's batched path,
    in the shared-prefix path (rank, serve) and in `score`; the scores are the wide logits exactly."""
    import shutil

    import promptrec.lm.scoring as scoring

    shutil.copytree(trained / "residual", tmp_path / "off")
    wide = Adapter.open(tmp_path / "off").wide
    wide.with_parameters(wide.weight, wide.bias, llm_weight=0.0).save(tmp_path / "off")

    def no_forward(*args, **kwargs):
        raise AssertionError("the LLM ran although its weight is 0")

    monkeypatch.setattr(scoring, "score_sequences", no_forward)
    monkeypatch.setattr(scoring, "score_shared_prefix", no_forward)
    test = load_split(prepared, "test")
    rows = evaluated_rows(tiny_model_dir, test, tmp_path / "eval", tmp_path / "off")
    gated = Adapter.open(tmp_path / "off").wide
    assert [r["llm_score"] for r in rows] == [0.0] * len(test)
    assert [r["score"] for r in rows] == pytest.approx(list(gated.logits(test)), abs=1e-12)
    model, tokenizer = load_model(ModelConfig(model=str(tiny_model_dir)))
    scorer = Scorer(model, tokenizer, load_template("tallrec_plain"), wide=gated)
    assert np.array_equal(scorer.score(test), gated.logits(test))
    grouped, prefix = scorer.score_group(test)
    assert np.array_equal(grouped, gated.logits(test)) and prefix == 0


def test_wide_off_trains_the_pure_llm(trained):
    off = Adapter.open(trained / "off")
    assert off.wide is None and off.record["wide"] is None and off.record["loss"] == "lm"
    assert not (trained / "off" / WIDE_FILE).exists()


def test_training_leaves_no_partial_directory(trained):
    assert sorted(p.name for p in trained.iterdir()) == ["joint", "off", "residual"]
    assert all((trained / name / RUN_RECORD).exists() for name in ("joint", "off", "residual"))


def test_evaluate_adds_the_wide_part_and_reports_both_parts(trained, prepared, tiny_model_dir, tmp_path):
    test = load_split(prepared, "test")
    rows = evaluated_rows(tiny_model_dir, test, tmp_path / "hybrid", trained / "residual")
    wide = Adapter.open(trained / "residual").wide
    assert [r["wide_score"] for r in rows] == pytest.approx(list(wide.logits(test)))
    assert [r["score"] for r in rows] == pytest.approx([r["llm_score"] + r["wide_score"] for r in rows])
    pure = evaluated_rows(tiny_model_dir, test, tmp_path / "pure", trained / "off")[0]
    assert "wide_score" not in pure, "an adapter without a wide part keeps working as before"


def test_an_ensemble_scores_the_mean_of_its_members(trained, prepared, tiny_model_dir, tmp_path):
    test = load_split(prepared, "test")
    members = [trained / "residual", trained / "joint"]

    def scores(name, adapter):
        return np.array([row["score"] for row in evaluated_rows(tiny_model_dir, test, tmp_path / name, adapter)])

    each = [scores(f"m{index}", member) for index, member in enumerate(members)]
    assert list(scores("ensemble", members)) == pytest.approx(list((each[0] + each[1]) / 2), abs=1e-5)
    record = json.loads((tmp_path / "ensemble" / "config.json").read_text())
    assert record["ensemble"] == [str(m) for m in members]


@pytest.mark.parametrize(
    "loss, wide, message",
    [
        ("lm", {"mode": "residual"}, "loss=lm cannot train the hybrid"),
        ("auto", {"features": ("colour",)}, "unknown feature 'colour'"),
        ("auto", {"l2": 0.0}, "wide.l2"),
        ("auto", {"mode": "wide"}, "wide.mode='wide'"),
    ],
)
def test_impossible_hybrid_configs_are_config_errors(tiny_model_dir, loss, wide, message):
    with pytest.raises(ConfigError, match=message):
        config(tiny_model_dir, loss=loss, wide=WideSettings(**wide))


def test_naming_a_feature_the_shots_lack_is_an_error(pools, tiny_model_dir, tmp_path):
    alpaca = [{"example_id": f"a{i}", "label": i % 2, "instruction": "x", "input": "y"} for i in range(12)]
    with pytest.raises(ConfigError, match="history_like_fraction"):
        train(config(tiny_model_dir, template="alpaca", wide=WideSettings(features=("history_like_fraction",))),
              alpaca, [], tmp_path / "a")  # fmt: skip
    assert not (tmp_path / "a").exists()
