"""The CLI: every verb on the tiny model, and user mistakes as one line + exit code 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptrec.cli.main import main

MINI_ML = Path(__file__).parent / "data" / "mini-ml"
ALPACA = Path(__file__).parent / "data" / "alpaca" / "test.json"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "prepared"
    assert (
        main(["data", "prepare", "movielens", "--source", str(MINI_ML), "--out", str(out), "--history-len", "3"]) == 0
    )
    return out


def run(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_prompts_list_shows_every_template(capsys):
    code, out, _ = run(capsys, ["prompts", "list"])
    assert code == 0
    for name in ("tallrec_plain", "movie_rich", "movie_rich_chat", "alpaca"):
        assert name in out


def test_prompts_check_passes_on_shipped_templates(capsys):
    code, out, _ = run(capsys, ["prompts", "check"])
    assert code == 0 and "ok" in out


def test_prompts_check_fails_on_broken_template(capsys):
    code, _, err = run(capsys, ["prompts", "check", str(Path(__file__).parent / "data" / "templates")])
    assert code == 2 and "unknown_key.j2" in err


def render_argv(template, prepared, model_dir):
    return ["prompts", "render", template, "--data", str(prepared), "--split", "train", "--model", str(model_dir)]


def test_render_prints_exactly_the_prompt_and_counts_tokens(capsys, prepared, tiny_model_dir):
    code, out, err = run(capsys, render_argv("tallrec_plain", prepared, tiny_model_dir) + ["--index", "0"])
    assert code == 0
    assert out.endswith("### Response:\n")
    assert "prompt tokens" in err and "tallrec_plain" in err


def test_render_chat_template_applies_the_chat_format(capsys, prepared, tiny_model_dir):
    code, out, _ = run(capsys, render_argv("movie_rich_chat", prepared, tiny_model_dir))
    assert code == 0
    assert out.count("<|im_start|>user") == 1 and out.endswith("<|im_start|>assistant\n")


def test_evaluate_zero_shot_writes_metrics_predictions_and_config(capsys, prepared, tiny_model_dir, tmp_path):
    code, out, _ = run(
        capsys,
        [
            "evaluate",
            "--data",
            str(prepared),
            "--split",
            "train",
            "--model",
            str(tiny_model_dir),
            "--out",
            str(tmp_path / "res"),
        ],
    )
    assert code == 0
    metrics = json.loads((tmp_path / "res" / "metrics.json").read_text())
    assert {"auc", "uauc", "logloss", "num_examples"} <= set(metrics)
    rows = [json.loads(line) for line in (tmp_path / "res" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == metrics["num_examples"] == 17
    assert {"user_id", "item_id", "label", "score"} <= set(rows[0])
    record = json.loads((tmp_path / "res" / "config.json").read_text())
    assert record["template"]["name"] == "tallrec_plain" and record["data"]["sha256"]


def test_train_then_evaluate_with_adapter_on_alpaca_file(capsys, tiny_model_dir, tmp_path):
    code, out, err = run(
        capsys,
        [
            "train",
            "--data",
            str(ALPACA),
            "--valid",
            str(ALPACA),
            "--template",
            "alpaca",
            "--shots",
            "2",
            "--model",
            str(tiny_model_dir),
            "--set",
            "num_epochs=1",
            "--set",
            "batch_size=2",
            "--out",
            str(tmp_path / "adapter"),
        ],
    )
    assert code == 0, err
    assert "saved adapter" in out
    code, out, err = run(
        capsys,
        ["evaluate", "--data", str(ALPACA), "--adapter", str(tmp_path / "adapter"), "--out", str(tmp_path / "res")],
    )
    assert code == 0, err
    record = json.loads((tmp_path / "res" / "config.json").read_text())
    assert record["template"]["name"] == "alpaca", "evaluate defaults to the adapter's template"
    assert record["config"]["model"]["model"] == str(tiny_model_dir), "and to the adapter's base model"


USER_ERRORS = {
    "missing source dir": (["data", "prepare", "movielens", "--source", "/nonexistent", "--out", "{tmp}/x"], "u.data"),
    "unknown template": (
        ["evaluate", "--data", "{prepared}", "--template", "tallrec_plian", "--out", "{tmp}/r"],
        "tallrec_plain",
    ),
    "unknown config key": (["train", "--data", "{prepared}", "--set", "shot=3", "--out", "{tmp}/a"], "did you mean"),
    "shots above pool": (
        ["train", "--data", "{prepared}", "--shots", "500", "--model", "{model}", "--out", "{tmp}/a"],
        "exceeds the 17",
    ),
    "missing split": (["evaluate", "--data", "{prepared}", "--split", "dev", "--out", "{tmp}/r"], "dev"),
    "single file without valid": (
        ["train", "--data", "{alpaca}", "--template", "alpaca", "--out", "{tmp}/a"],
        "--valid",
    ),
    "adapter dir that is not one": (
        ["evaluate", "--data", "{prepared}", "--adapter", "{tmp}", "--out", "{tmp}/r"],
        "adapter_config.json",
    ),
    "finished results in --out": (["evaluate", "--data", "{prepared}", "--out", "{finished}"], "--overwrite"),
    "render index out of range": (
        ["prompts", "render", "tallrec_plain", "--data", "{prepared}", "--index", "99"],
        "out of range",
    ),
}


@pytest.mark.parametrize("argv, fragment", USER_ERRORS.values(), ids=USER_ERRORS)
def test_user_mistakes_are_one_line_and_exit_2(capsys, argv, fragment, prepared, tiny_model_dir, tmp_path):
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "metrics.json").write_text('{"auc": 0.7}')
    values = {"prepared": prepared, "tmp": tmp_path, "model": tiny_model_dir, "alpaca": ALPACA, "finished": finished}
    code, _, err = run(capsys, [a.format(**values) for a in argv])
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("promptrec: error:")]
    assert len(lines) == 1 and fragment in lines[0], err
    assert "Traceback" not in err
    assert (finished / "metrics.json").read_text() == '{"auc": 0.7}', "nothing already written is lost"


PREPARE = ["data", "prepare", "movielens", "--source", str(MINI_ML), "--history-len", "3", "--out"]


def test_data_prepare_refuses_a_prepared_dir_without_overwrite(capsys, prepared):
    before = {p.name: p.read_bytes() for p in prepared.iterdir()}
    code, _, err = run(capsys, [*PREPARE, str(prepared), "--history-len", "2"])
    assert code == 2 and err == f"promptrec: error: {prepared} already holds prepared data (manifest.json); " + (
        "pass --overwrite or choose another --out\n"
    )
    assert {p.name: p.read_bytes() for p in prepared.iterdir()} == before


def test_data_prepare_overwrite_replaces_the_dir(capsys, tmp_path):
    out = tmp_path / "prepared"
    assert run(capsys, [*PREPARE, str(out)])[0] == 0
    (out / "candidates.jsonl").write_text("{}\n")  # made from the old splits: must not survive them
    code, _, err = run(capsys, [*PREPARE, str(out), "--history-len", "2", "--overwrite"])
    assert code == 0, err
    assert json.loads((out / "manifest.json").read_text())["parameters"]["history_len"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "test.jsonl", "train.jsonl", "valid.jsonl"]


def test_data_import_refuses_a_prepared_dir_without_overwrite(capsys, prepared, tmp_path):
    before = {p.name: p.read_bytes() for p in prepared.iterdir()}
    code, _, err = run(capsys, ["data", "import", "tallrec", "--train", str(ALPACA), "--out", str(prepared)])
    assert code == 2 and "already holds prepared data" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in prepared.iterdir()} == before


def test_data_prepare_crash_keeps_the_old_dir(capsys, tmp_path, request):
    out = tmp_path / "prepared"
    assert run(capsys, [*PREPARE, str(out)])[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    calls = request.getfixturevalue("disk_full_on_second_write")  # armed only now: the old dir is written
    code, _, err = run(capsys, [*PREPARE, str(out), "--history-len", "2", "--overwrite"])
    assert code == 2 and "No space left on device" in err and len(err.strip().splitlines()) == 1
    assert len(calls) == 2, "the crash came after a split was written"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]


def test_data_help_examples_keep_their_shell_line_continuations(capsys):
    with pytest.raises(SystemExit):
        main(["data", "--help"])
    assert "Gift_Cards_5.json.gz \\\n      --meta" in capsys.readouterr().out


def test_every_verb_has_examples_in_help(capsys):
    for verb in ("prompts", "data", "train", "evaluate", "baselines", "quickstart"):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        assert "examples:" in capsys.readouterr().out


def test_quickstart_runs_every_step_and_prints_table_and_ranked_list(capsys, ml100k_dir, tiny_model_dir, tmp_path):
    code, out, err = run(
        capsys,
        [
            "quickstart",
            "--source",
            str(ml100k_dir),
            "--out",
            str(tmp_path / "qs"),
            "--model",
            str(tiny_model_dir),
            "--shots",
            "4",
            "--epochs",
            "1",
            "--limit",
            "12",
        ],
    )
    assert code == 0, err
    assert "| zero-shot |" in out and "| 4-shot hybrid (LLM + wide) |" in out
    assert "| 4-shot wide part alone |" in out and "| 4-shot LLM part alone |" in out
    assert "Ranked list for user" in out
    scores = [float(line.split()[1]) for line in out.splitlines() if line.strip()[:3].strip(" .").isdigit()]
    assert scores == sorted(scores, reverse=True) and scores, "the ranked list is in score order"


def train_argv(model_dir, out) -> list[str]:
    return ["train", "--data", str(ALPACA), "--valid", str(ALPACA), "--template", "alpaca", "--shots", "2",
            "--model", str(model_dir), "--set", "num_epochs=1", "--batch-size", "2", "--out", str(out)]  # fmt: skip


@pytest.mark.parametrize("verbose", [False, True])
def test_a_training_run_is_quiet_unless_verbose(tiny_model_dir, tmp_path, verbose):
    """A plain run prints promptrec's lines only; -v lets third-party warnings and notices through."""
    argv = [sys.executable, "-W", "always", "-m", "promptrec", *(["-v"] if verbose else [])]
    env = {**os.environ, "PYTHONWARNINGS": "always"}
    env.pop("TRANSFORMERS_VERBOSITY", None)
    result = subprocess.run(
        [*argv, *train_argv(tiny_model_dir, tmp_path / "a")], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    noise = [line for line in result.stderr.splitlines() if "Warning" in line or "kernels" in line]
    if verbose:  # the same run without the filter: what the quiet default hides is really there
        assert noise, result.stderr
    else:
        assert noise == [], result.stderr


def test_evaluate_ranked_refuses_pointwise_flags_and_finished_output(capsys, tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    base = ["evaluate", "--ranked", str(tmp_path / "r.jsonl"), "--data", str(tmp_path), "--out", str(out)]
    for extra, fragment in [(["--adapter", "a"], "--adapter"), (["--limit", "5"], "--limit"), ([], "--overwrite")]:
        code, _, err = run(capsys, [*base, *extra])
        assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err
    assert (out / "metrics.json").read_text() == "{}"
