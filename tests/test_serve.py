"""`promptrec serve`: the same scores as `rank` and `evaluate`, one-line 4xx answers, batching, members.

The server runs for real (uvicorn on 127.0.0.1): started by the command itself in a subprocess for the
equality with `promptrec rank`, in a thread of the test process elsewhere.
"""

import json
import os
import subprocess
import sys
import threading
from dataclasses import replace

import numpy as np
import pytest
from serving import CANDIDATES, call, make_adapter, prepare_next_item, served

from promptrec.cli.main import main
from promptrec.jobs.evaluate import EvalConfig, evaluate
from promptrec.jobs.serve import ServeConfig
from promptrec.lm.config import ModelConfig
from promptrec.lm.ensemble import load_ensemble
from promptrec.lm.members import BASE, ENSEMBLE, MemberScorer, member_choices
from promptrec.protocols.splits import load_split
from promptrec.templates.template import load_template


@pytest.fixture(scope="module")
def next_dir(tmp_path_factory):
    return prepare_next_item(tmp_path_factory.mktemp("serve") / "data")


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    """Two random LoRA members of one seed ensemble; the second is a hybrid (it carries a wide part)."""
    out = tmp_path_factory.mktemp("serve-adapters")
    return [
        make_adapter(out / "m0", tiny_model_dir, seed=1),
        make_adapter(out / "m1", tiny_model_dir, seed=2, wide=True),
    ]


@pytest.fixture(scope="module")
def config(tiny_model_dir):
    return ServeConfig(model=ModelConfig(model=str(tiny_model_dir), device="cpu"), max_candidates=6)


@pytest.fixture(scope="module")
def server(config, next_dir):
    with served(config, data_dir=next_dir) as (service, url):
        yield service, url


def test_served_scores_equal_promptrec_rank_with_an_ensemble_and_a_wide_part(
    next_dir, adapters, tiny_model_dir, tmp_path
):
    cands, ranked = tmp_path / "cands.jsonl", tmp_path / "ranked.jsonl"
    cands.write_text("".join(json.dumps({"user_id": u, "candidates": c}) + "\n" for u, c in CANDIDATES.items()))
    common = ["--data", str(next_dir), "--model", str(tiny_model_dir), "--adapter", *map(str, adapters)]
    assert main(["rank", *common, "--candidates", str(cands), "--out", str(ranked)]) == 0
    expected = [json.loads(line) for line in ranked.read_text().splitlines()]
    command = [sys.executable, "-m", "promptrec", "serve", *common, "--port", "0", "--no-access-log"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    try:
        url = server.stdout.readline().split(" at ")[-1].strip()  # "promptrec serve: ... at http://127.0.0.1:PORT"
        assert url.startswith("http://127.0.0.1:"), url
        for row in expected:
            status, body = call(
                url, "POST", "/v1/rank", {"user_id": row["user_id"], "candidates": CANDIDATES[row["user_id"]]}
            )
            assert status == 200, body
            assert body["items"] == row["items"]
            np.testing.assert_allclose(body["scores"], row["scores"], rtol=0, atol=1e-6)
        status, info = call(url, "GET", "/v1/info")
        assert [a["hybrid"] for a in info["adapters"]] == [False, True]
        assert [a["llm_weight"] for a in info["adapters"]] == [None, 1.0]  # trained without valid examples
        assert all(a["templates"] == [a["template"]] for a in info["adapters"])  # one task each
    finally:
        server.terminate()
        server.wait(30)


def test_score_equals_evaluate(server, config, next_dir, tmp_path):
    service, url = server
    examples = list(load_split(next_dir, "train"))
    evaluate(EvalConfig(template="movie_next", reliability_plot=False, model=config.model), examples, tmp_path)
    expected = [json.loads(line)["score"] for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    status, body = call(url, "POST", "/v1/score", {"examples": list(examples)})
    assert status == 200, body
    np.testing.assert_allclose(body["scores"], expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(body["probabilities"], 1 / (1 + np.exp(-np.array(expected))), atol=1e-6)


def test_a_user_sent_in_full_scores_as_the_same_known_user(server, next_dir):
    service, url = server
    context = service.contexts["12"]
    known = call(url, "POST", "/v1/rank", {"user_id": "12", "candidates": CANDIDATES["12"]})[1]
    profile = {k: v for k, v in context["user"].items() if k != "user_id"}
    sent = {"user_id": "12", "profile": profile, "history": context["history"], "timestamp": context["timestamp"]}
    status, body = call(url, "POST", "/v1/rank", sent | {"candidates": CANDIDATES["12"]})
    assert status == 200, body
    assert body == known


def test_a_new_user_and_new_items_are_ranked(server):
    _, url = server
    new_item = {"item_id": "new", "title": "New Movie (2024)", "genres": ["Drama"], "year": 2024}
    body = {
        "profile": {"age": 30, "gender": "F", "occupation": "writer"},
        "history": [{"item_id": "1", "rating": 5}, {"title": "Unlisted (1990)", "genres": ["War"], "rating": 2}],
        "candidates": ["3", new_item],
        "top_k": 1,
    }
    status, ranked = call(url, "POST", "/v1/rank", body)
    assert status == 200, ranked
    assert ranked["user_id"] == "anonymous" and len(ranked["items"]) == 1 and ranked["items"][0] in ("3", "new")


def test_info_names_the_model_template_and_answer_tokens(server, config):
    _, url = server
    status, info = call(url, "GET", "/v1/info")
    assert status == 200
    template = load_template("movie_next")
    assert info["template"] | {"path": None} == {"name": "movie_next", "version": template.version,
                                                  "sha256": template.sha256, "path": None}  # fmt: skip
    assert info["model"]["model"] == config.model.model and info["adapters"] == []
    assert info["answers"]["choices"] == [" Yes", " No"] and len(info["answers"]["positive_token_ids"]) == 1
    assert info["limits"]["max_candidates"] == 6 and info["data"]["num_users"] == 3
    status, health = call(url, "GET", "/healthz")
    assert status == 200 and health["status"] == "ok"


LONG_HISTORY = [{"item_id": "1", "rating": 4}] * 400  # far beyond the tiny model's 1024 positions
BAD_REQUESTS = [
    # (method, path, body (bytes are sent as they are), status, part of the one-line error)
    ("POST", "/v1/rank", b'{"user_id": "7", "candidates": ["1"', 422, "not valid JSON"),
    ("POST", "/v1/rank", b"\xff\xfe", 422, "not valid JSON"),
    ("POST", "/v1/rank", {"user_id": "7"}, 422, "candidates: Field required"),
    ("POST", "/v1/rank", {"user_id": "7", "candidates": ["1"], "candidate": 1}, 422, "candidate: Extra inputs"),
    ("POST", "/v1/rank", {"user_id": "7", "candidates": []}, 422, "candidates: List should have at least 1"),
    ("POST", "/v1/rank", {"user_id": "7", "candidates": [5]}, 422, "candidates.0"),
    ("POST", "/v1/rank", {"user_id": "7", "candidates": ["1"], "top_k": -1}, 422, "top_k"),
    ("POST", "/v1/rank", [1, 2], 422, "body"),
    ("POST", "/v1/rank", {"candidates": ["1"]}, 422, "send a user"),
    ("POST", "/v1/rank", {"user_id": "nobody", "candidates": ["1"]}, 422, "unknown user_id 'nobody'"),
    ("POST", "/v1/rank", {"user_id": "7", "candidates": ["1", "999"]}, 422, "unknown item id '999'"),
    ("POST", "/v1/rank", {"user_id": "7", "candidates": ["1", "9", "1"]}, 422, "'1' is listed twice"),
    ("POST", "/v1/rank", {"user_id": "7", "candidates": list("123456") + ["9"]}, 422, "--max-candidates"),
    ("POST", "/v1/rank", {"profile": {"age": 30}, "history": [], "candidates": ["1"]}, 422, "rendering example"),
    (
        "POST",
        "/v1/rank",
        {"profile": {"age": 1, "gender": "M", "occupation": "x"}, "history": LONG_HISTORY, "candidates": ["1"]},
        422,
        "--max-prompt-tokens",
    ),
    ("POST", "/v1/rank", {"history": [], "fields": {"timestamp": "noon"}, "candidates": ["1"]}, 422, "'timestamp'"),
    ("POST", "/v1/score", {"examples": []}, 422, "examples: List should have at least 1"),
    ("POST", "/v1/score", {"examples": [{"example_id": "x"}]}, 422, "example x has no field 'user'"),
    ("POST", "/v1/score", {"examples": "all"}, 422, "examples"),
    ("POST", "/v1/score", b'{"examples": ["' + b"x" * 4_100_000 + b'"]}', 413, "this server takes at most 4000000"),
    ("GET", "/v1/rank", None, 405, "Method Not Allowed"),
    ("GET", "/v2/rank", None, 404, "Not Found"),
    ("POST", "/playground/api/check", {"text": ""}, 404, "Not Found"),  # no playground on this server
]


@pytest.mark.parametrize("method, path, body, status, message", BAD_REQUESTS)
def test_a_bad_request_is_a_4xx_with_a_one_line_reason(server, method, path, body, status, message):
    _, url = server
    raw = body if isinstance(body, bytes) else None
    got, answer = call(url, method, path, None if raw else body, raw=raw)
    assert (got, list(answer)) == (status, ["error"]), answer
    assert message in answer["error"] and "\n" not in answer["error"] and "Traceback" not in answer["error"]
    assert call(url, "POST", "/v1/rank", {"user_id": "7", "candidates": ["1", "9"]})[0] == 200


def test_a_bug_is_a_500_with_one_line_and_the_server_goes_on(server, monkeypatch):
    service, url = server

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(service.ensemble, "score_group", broken)
    status, answer = call(url, "POST", "/v1/rank", {"user_id": "7", "candidates": ["1", "9"]})
    assert status == 500 and answer == {"error": "internal error (RuntimeError); the server log has the details"}
    monkeypatch.undo()
    assert call(url, "POST", "/v1/rank", {"user_id": "7", "candidates": ["1", "9"]})[0] == 200
    assert call(url, "GET", "/healthz")[1]["status"] == "ok"


def test_concurrent_requests_are_scored_in_shared_turns_with_unchanged_scores(config, next_dir):
    examples = list(load_split(next_dir, "train"))
    with served(replace(config, batch_wait_ms=200), data_dir=next_dir) as (service, url):
        alone = [call(url, "POST", "/v1/score", {"examples": [example]})[1]["scores"][0] for example in examples]
        turns_before, jobs_before = service.batcher.num_turns, service.batcher.num_jobs
        together = [None] * len(examples)

        def client(index):
            together[index] = call(url, "POST", "/v1/score", {"examples": [examples[index]]})[1]["scores"][0]

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(examples))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        turns = service.batcher.num_turns - turns_before
        assert service.batcher.num_jobs - jobs_before == len(examples) and turns < len(examples)
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-5)


def test_member_choices_score_each_member_the_base_model_and_the_ensemble(adapters, tiny_model_dir, next_dir):
    from promptrec.lm.adapter import open_adapters

    members = open_adapters(adapters)
    model = ModelConfig(model=str(tiny_model_dir), device="cpu")
    template = load_template("movie_next")
    examples = list(load_split(next_dir, "train"))
    ensemble = load_ensemble(model, members, template)
    assert member_choices(members) == [ENSEMBLE, BASE, str(adapters[0]), str(adapters[1])]
    assert member_choices([None]) == [ENSEMBLE]

    def total(parts):
        return parts[0] + parts[1]

    got = {c: total(MemberScorer(ensemble, members, template, c).parts(examples)) for c in member_choices(members)}
    alone = [total(load_ensemble(model, [member], template).parts(examples)) for member in members]
    base = total(load_ensemble(model, [None], template).parts(examples))
    np.testing.assert_allclose(got[str(adapters[0])], alone[0], atol=1e-5)
    np.testing.assert_allclose(got[str(adapters[1])], alone[1], atol=1e-5)
    np.testing.assert_allclose(got[BASE], base, atol=1e-5)
    np.testing.assert_allclose(got[ENSEMBLE], (alone[0] + alone[1]) / 2, atol=1e-5)
    assert not np.allclose(alone[0], base, atol=1e-3), "the random adapters change the scores"
    np.testing.assert_allclose(total(ensemble.parts(examples)), got[ENSEMBLE], atol=1e-6), "switching leaves no trace"


@pytest.mark.parametrize(
    "changes, message",
    [({"max_candidates": 0}, "max_candidates"), ({"batch_wait_ms": -1}, "batch_wait_ms")],
)
def test_impossible_serve_configs_are_config_errors(changes, message):
    from promptrec.core.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        ServeConfig(**changes)


def test_serve_refuses_a_port_in_use_in_one_line(next_dir, tiny_model_dir, capsys):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        argv = ["serve", "--model", str(tiny_model_dir), "--data", str(next_dir), "--port", port]
        assert main(argv) == 2
    assert "cannot listen on 127.0.0.1:" in capsys.readouterr().err


def test_a_chunked_body_over_the_limit_is_a_413(server):
    import http.client

    _, url = server
    connection = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=60)
    chunks = (b'{"examples": ["' if i == 0 else b"x" * 100_000 for i in range(50))  # 4.9 MB, no Content-Length
    connection.request(
        "POST", "/v1/score", body=chunks, encode_chunked=True, headers={"content-type": "application/json"}
    )
    response = connection.getresponse()
    assert response.status == 413 and "over 4000000 bytes" in json.loads(response.read())["error"]
    connection.close()
    assert call(url, "GET", "/healthz")[0] == 200


def test_examples_a_hybrid_cannot_read_are_a_422_not_a_500(config, adapters):
    example = {"example_id": "odd", "instruction": "Will they like Heat?", "input": "", "history": ["Heat"]}
    with served(replace(config, template="alpaca"), adapters=[adapters[1]]) as (_, url):  # alpaca reads no history
        status, answer = call(url, "POST", "/v1/score", {"examples": [example]})
        assert status == 422 and "the wide part cannot read the examples' features" in answer["error"]
        status, body = call(url, "POST", "/v1/score", {"examples": [example | {"history": []}]})
        assert status == 200 and set(body) >= {"llm_scores", "wide_scores"}
