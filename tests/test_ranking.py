"""Batch ranking: shared-prefix scores == full-prompt scores, crash-safe resume, sharding, metrics."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from promptrec.cli.main import main
from promptrec.lm.scoring import Scorer, common_prefix_length, score_sequences, score_shared_prefix
from promptrec.metrics.ranking import ranking_metrics
from promptrec.protocols.next_item import CandidateExamples, load_catalog
from promptrec.protocols.prepare import prepare_movielens
from promptrec.templates.template import load_template

MINI_ML = Path(__file__).parent / "data" / "mini-ml"
CANDIDATES = {"7": ["1", "9", "3", "12"], "12": ["2", "5", "6", "13", "14"], "3": ["4", "10", "11"]}
ITEM_FIRST = """---
name: item_first
version: "1"
kind: pointwise
inputs: [history, item]
choices: [" Yes", " No"]
description: Puts the candidate before the user's history, so no prefix is shared.
---
Movie: {{ item.title }}. The user watched {% for m in history %}{{ m.title }}, {% endfor %}. Will they watch it? Answer:
"""


@pytest.fixture(scope="module")
def next_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("rank") / "data"
    prepare_movielens(MINI_ML, out, history_len=3, protocol="next-item")
    return out


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    from promptrec.lm.config import ModelConfig
    from promptrec.lm.loading import load_model

    return load_model(ModelConfig(model=str(tiny_model_dir), device="cpu"))


@pytest.fixture
def cands_file(tmp_path):
    path = tmp_path / "cands.jsonl"
    path.write_text("".join(json.dumps({"user_id": u, "candidates": c}) + "\n" for u, c in CANDIDATES.items()))
    return path


def group(next_dir, user="12"):
    catalog = load_catalog(next_dir)
    builder, context = CandidateExamples(catalog), catalog.contexts("test")[user]
    return [builder.build(context, item) for item in CANDIDATES[user]]


@pytest.mark.parametrize("template", ["movie_next", "movie_rich", "movie_rich_chat"])
def test_shared_prefix_scores_equal_full_prompt_scores(model_and_tokenizer, next_dir, template):
    model, tokenizer = model_and_tokenizer
    scorer = Scorer(model, tokenizer, load_template(template), score_batch_size=2, candidates_per_pass=2)
    examples = group(next_dir)
    cached, prefix_tokens = scorer.score_group(examples)
    assert prefix_tokens > 8, "the history is shared, so the cache is used"
    np.testing.assert_allclose(cached, scorer.score(examples), atol=1e-4)


@pytest.mark.parametrize("path", ["packed-eager", "batched"])
def test_every_attention_path_gives_full_prompt_scores(model_and_tokenizer, next_dir, monkeypatch, path):
    import promptrec.lm.scoring

    model, tokenizer = model_and_tokenizer
    if path == "batched":  # what flash-attention models take: the prefix cache repeated per row
        monkeypatch.setattr(promptrec.lm.scoring, "takes_custom_masks", lambda model: False)
    else:
        monkeypatch.setattr(model.config, "_attn_implementation", "eager")
    scorer = Scorer(model, tokenizer, load_template("movie_next"), score_batch_size=3, candidates_per_pass=3)
    examples = group(next_dir)
    cached, prefix_tokens = scorer.score_group(examples)
    assert prefix_tokens > 8
    np.testing.assert_allclose(cached, scorer.score(examples), atol=1e-4)


def test_block_attention_runs_for_packed_continuations_and_matches_the_dense_mask(
    model_and_tokenizer, next_dir, monkeypatch
):
    """SDPA models take promptrec_packed's block attention (grouped heads), restored after the pass."""
    from promptrec.lm import packed_attention

    model, tokenizer = model_and_tokenizer
    assert model.config.num_key_value_heads < model.config.num_attention_heads, "the test needs grouped heads"
    layouts, real = [], packed_attention.packed_attention

    def spy(module, query, *args, **kwargs):
        layouts.append(packed_attention._LAYOUT.get())
        return real(module, query, *args, **kwargs)

    monkeypatch.setattr(packed_attention, "packed_attention", spy)
    packed_attention._register.cache_clear()  # register the spy under the same name
    scorer = Scorer(model, tokenizer, load_template("movie_next"), candidates_per_pass=3)
    examples = group(next_dir)
    block, _ = scorer.score_group(examples)
    assert model.config._attn_implementation == "sdpa", "the model's attention is restored after the pass"
    assert layouts and all(layout is not None and len(layout[1]) <= 3 for layout in layouts)
    with monkeypatch.context() as m:
        m.setattr(packed_attention, "supports", lambda model: False)  # SDPA on the dense (query, key) mask
        dense, _ = scorer.score_group(examples)
    np.testing.assert_allclose(block, dense, atol=1e-5)
    np.testing.assert_allclose(block, scorer.score(examples), atol=1e-4)
    monkeypatch.undo()
    packed_attention._register.cache_clear()


def test_multi_token_answers_through_the_cache(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    from promptrec.lm.scoring import answer_ids

    answers = answer_ids(tokenizer, ("Yes. liked", "No. disliked"))
    assert not answers.single_token
    prefix = tokenizer("User Preference: Toy Story (1995), Star Wars (1977), Fargo (1996)").input_ids
    sequences = [prefix + tokenizer(f" Comedy {i} Drama" * (i + 1)).input_ids for i in range(5)]
    cached, used = score_shared_prefix(model, sequences, answers, tokenizer.pad_token_id, candidates_per_pass=3)
    assert used == len(prefix) or used >= len(prefix) - 1
    np.testing.assert_allclose(cached, score_sequences(model, sequences, answers, tokenizer.pad_token_id), atol=1e-4)


def test_candidate_first_template_falls_back_to_full_prompts(model_and_tokenizer, next_dir, tmp_path):
    model, tokenizer = model_and_tokenizer
    path = tmp_path / "item_first.j2"
    path.write_text(ITEM_FIRST)
    scorer = Scorer(model, tokenizer, load_template(path), score_batch_size=2, candidates_per_pass=2)
    examples = group(next_dir)
    scores, prefix_tokens = scorer.score_group(examples)
    assert prefix_tokens == 0
    np.testing.assert_allclose(scores, scorer.score(examples), atol=1e-6)


def test_common_prefix_length():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[5, 1], [6, 1]]) == 0


def rank_argv(next_dir, cands, out, model_dir, *extra):
    return ["rank", "--data", str(next_dir), "--candidates", str(cands), "--model", str(model_dir),
            "--device", "cpu", "--out", str(out), *extra]  # fmt: skip


def read_lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_rank_writes_each_user_once_in_score_order(next_dir, cands_file, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "ranked.jsonl"
    assert main(rank_argv(next_dir, cands_file, out, tiny_model_dir, "--top-k", "3", "--probabilities")) == 0
    rows = read_lines(out)
    assert [r["user_id"] for r in rows] == list(CANDIDATES)
    for row in rows:
        assert len(row["items"]) == min(3, len(CANDIDATES[row["user_id"]]))
        assert set(row["items"]) <= set(CANDIDATES[row["user_id"]])
        assert row["scores"] == sorted(row["scores"], reverse=True)
        np.testing.assert_allclose(row["probabilities"], 1 / (1 + np.exp(-np.array(row["scores"]))))
    assert not (tmp_path / "ranked.jsonl.parts").exists(), "parts are merged and removed"
    record = json.loads((tmp_path / "ranked.jsonl.run.json").read_text())
    assert record["finished"]["num_candidates_scored"] == 12


def test_rank_refuses_to_replace_or_mix_jobs(next_dir, cands_file, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "ranked.jsonl"
    assert main(rank_argv(next_dir, cands_file, out, tiny_model_dir)) == 0
    before = out.read_bytes()
    assert main(rank_argv(next_dir, cands_file, out, tiny_model_dir)) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == before
    (tmp_path / "ranked.jsonl.parts").mkdir()
    (tmp_path / "ranked.jsonl.parts" / "shard-0.jsonl").write_text("")
    out.unlink()
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"user_id": "7", "candidates": ["1", "9"]}) + "\n")
    assert main(rank_argv(next_dir, other, out, tiny_model_dir, "--resume")) == 2
    assert "candidates_sha256 changed" in capsys.readouterr().err
    assert main(rank_argv(next_dir, cands_file, out, tiny_model_dir, "--overwrite")) == 0
    assert out.read_bytes() == before


def test_resume_after_a_crash_equals_an_uninterrupted_run(
    next_dir, cands_file, tiny_model_dir, tmp_path, monkeypatch, capsys
):
    full = tmp_path / "full.jsonl"
    assert main(rank_argv(next_dir, cands_file, full, tiny_model_dir)) == 0
    calls = {"n": 0}
    original = Scorer.score_group

    def crash_on_second_user(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the job dies after one user is written
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Scorer, "score_group", crash_on_second_user)
    out = tmp_path / "ranked.jsonl"
    assert main(rank_argv(next_dir, cands_file, out, tiny_model_dir)) == 130
    part = tmp_path / "ranked.jsonl.parts" / "shard-0.jsonl"
    assert len(part.read_text().splitlines()) == 1 and not out.exists()
    with part.open("a") as handle:
        handle.write('{"user_id": "12", "ite')  # a torn line, as a kill mid-write leaves
    monkeypatch.setattr(Scorer, "score_group", original)
    assert main(rank_argv(next_dir, cands_file, out, tiny_model_dir, "--resume")) == 0
    assert out.read_bytes() == full.read_bytes()
    assert json.loads((tmp_path / "ranked.jsonl.run.json").read_text())["finished"]["num_users_resumed"] == 1


SLOW_RANK = """
import sys, time
from promptrec.scoring import Scorer
original = Scorer.score_group
def slow(self, *args, **kwargs):
    time.sleep(1.0)
    return original(self, *args, **kwargs)
Scorer.score_group = slow
from promptrec.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_9_then_resume_equals_an_uninterrupted_run(next_dir, cands_file, tiny_model_dir, tmp_path):
    full = tmp_path / "full.jsonl"
    assert main(rank_argv(next_dir, cands_file, full, tiny_model_dir)) == 0
    out = tmp_path / "ranked.jsonl"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    job = subprocess.Popen([sys.executable, "-c", SLOW_RANK, *rank_argv(next_dir, cands_file, out, tiny_model_dir)],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    part = tmp_path / "ranked.jsonl.parts" / "shard-0.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (part.exists() and part.read_text().count("\n") >= 1):
        time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert not out.exists(), "killed before the merge"
    assert main(rank_argv(next_dir, cands_file, out, tiny_model_dir, "--resume")) == 0
    assert out.read_bytes() == full.read_bytes()


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not installed")
def test_two_process_launch_matches_single_process(next_dir, cands_file, tiny_model_dir, tmp_path, free_port):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    single = subprocess.run([sys.executable, "-m", "promptrec", *rank_argv(next_dir, cands_file, one, tiny_model_dir)],
                            env=env, capture_output=True, text=True)  # fmt: skip
    assert single.returncode == 0, single.stderr[-2000:]
    launch = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--main_process_port", str(free_port), "--mixed_precision", "no", "--dynamo_backend", "no",
              "-m", "promptrec"]  # fmt: skip
    double = subprocess.run([*launch, *rank_argv(next_dir, cands_file, two, tiny_model_dir)],
                            env=env, capture_output=True, text=True)  # fmt: skip
    assert double.returncode == 0, double.stderr[-2000:]
    record = json.loads((tmp_path / "two.jsonl.run.json").read_text())["finished"]
    assert record["num_processes"] == 2 and record["num_candidates_scored"] == 12
    for a, b in zip(read_lines(one), read_lines(two), strict=True):
        assert a["user_id"] == b["user_id"] and a["items"] == b["items"]
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)


def test_ranking_metrics_hand_computed():
    ranked = {"a": ["x", "t", "y"], "b": ["t", "x"], "c": ["x", "y"]}
    metrics = ranking_metrics(ranked, {"a": {"t"}, "b": {"t"}, "c": {"t"}}, ks=(1, 2))
    assert metrics["num_users"] == 3 and metrics["num_users_target_in_list"] == 2
    assert metrics["hr@1"] == pytest.approx(1 / 3) and metrics["hr@2"] == pytest.approx(2 / 3)
    assert metrics["ndcg@2"] == pytest.approx((1 / np.log2(3) + 1) / 3)
    assert metrics["mrr"] == pytest.approx((1 / 2 + 1) / 3)


def test_ndcg_matches_scikit_learn_with_several_relevant_items():
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        items = [f"i{k}" for k in range(8)]
        relevant = set(rng.choice(items, size=rng.integers(1, 4), replace=False))
        scores = rng.normal(size=8)
        order = [items[k] for k in np.argsort(-scores)]
        truth = [[int(i in relevant) for i in items]]
        for k in (1, 5):
            ours = ranking_metrics({"u": order}, {"u": relevant}, ks=(k,))[f"ndcg@{k}"]
            assert ours == pytest.approx(ndcg_score(truth, [scores], k=k))


def test_evaluate_ranked_writes_metrics(next_dir, cands_file, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "ranked.jsonl"
    assert main(rank_argv(next_dir, cands_file, out, tiny_model_dir)) == 0
    assert main(["evaluate", "--ranked", str(out), "--data", str(next_dir), "--out", str(tmp_path / "ev")]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    targets = {u: ex["item_id"] for u, ex in load_catalog(next_dir).contexts("test").items()}
    hits = [targets[r["user_id"]] in r["items"][:10] for r in read_lines(out)]
    assert metrics["num_users"] == 3 and metrics["hr@10"] == pytest.approx(np.mean(hits))
    missing = tmp_path / "none.jsonl"
    assert main(["evaluate", "--ranked", str(missing), "--data", str(next_dir), "--out", str(tmp_path / "e2")]) == 2
    assert "no such ranked file" in capsys.readouterr().err
