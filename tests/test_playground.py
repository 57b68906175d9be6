"""The template playground's server side: lint of edited text, seeded renders with diff, token counts and
leak warnings, scoring of the sample, and saving that never leaves its folder or overwrites unasked."""

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from serving import call, make_adapter, prepare_next_item, served

from promptrec.jobs.playground import line_diff
from promptrec.jobs.serve import ServeConfig
from promptrec.lm.config import ModelConfig
from promptrec.protocols.shots import select_examples
from promptrec.protocols.splits import load_split
from promptrec.templates.leaks import leak_warnings
from promptrec.templates.template import PROMPTS_DIR, load_template

MOVIE_NEXT = (PROMPTS_DIR / "pointwise" / "movie_next.j2").read_text()


def edited(old: str, new: str, text: str = MOVIE_NEXT) -> str:
    assert old in text
    return text.replace(old, new)


@pytest.fixture(scope="module")
def next_dir(tmp_path_factory):
    return prepare_next_item(tmp_path_factory.mktemp("playground") / "data")


@pytest.fixture(scope="module")
def adapter(tiny_model_dir, tmp_path_factory):
    return make_adapter(tmp_path_factory.mktemp("playground-adapter") / "a", tiny_model_dir, seed=3)


@pytest.fixture(scope="module")
def page(tiny_model_dir, next_dir, adapter, tmp_path_factory):
    config = ServeConfig(model=ModelConfig(model=str(tiny_model_dir), device="cpu"))
    templates_dir = tmp_path_factory.mktemp("saved") / "templates"
    with served(config, [adapter], next_dir, playground_dir=templates_dir) as (service, url):
        yield service, url, templates_dir


def post(url, path, body):
    return call(url, "POST", path, body)


def test_state_lists_shipped_templates_splits_and_scoring_choices(page, adapter):
    _, url, _ = page
    status, state = call(url, "GET", "/playground/api/state")
    assert status == 200
    shipped = sorted(p.stem for p in PROMPTS_DIR.rglob("*.j2"))
    assert sorted(t["name"] for t in state["templates"] if t["origin"] == "prompts") == shipped
    assert state["splits"] == ["train", "valid", "test"] and state["template"] == "movie_next"
    assert state["choices"] == ["ensemble", "base"], "one adapter: no member choices beside the ensemble"


def test_the_page_and_its_files_are_served(page):
    import http.client

    _, url, _ = page
    port = int(url.rsplit(":", 1)[1])
    for path, kind in [("/playground", "text/html"), ("/playground/static/playground.js", "javascript"),
                       ("/playground/static/playground.css", "text/css")]:  # fmt: skip
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200 and kind in response.getheader("content-type"), path
        response.read()
        connection.close()


@pytest.mark.parametrize(
    "text, line, message, source",
    [
        (MOVIE_NEXT, None, None, None),
        (edited("Answer:", "Answer: {{ oops"), 21, "Jinja syntax error", "Answer: {{ oops"),
        (edited("Answer:", "Answer: {{ budget }}"), None, "undeclared variable 'budget'", None),
        (edited("kind: pointwise", "kind: pointwise\nflavour: mild"), None, "unknown front-matter key 'flavour'", None),
        (edited('version: "3"', "version: [2"), 4, "not valid YAML", None),  # YAML notices on the next line
    ],
)
def test_lint_reports_the_problem_with_its_body_line(page, text, line, message, source):
    _, url, _ = page
    status, body = post(url, "/playground/api/check", {"text": text})
    assert status == 200
    if message is None:
        assert body["problems"] == []
        return
    [problem] = body["problems"]
    assert message in problem["message"] and problem["line"] == line
    assert problem["message"].startswith("movie_next.j2"), "named after the template, not a temporary file"
    if source is not None:
        assert problem["source"] == source


def test_render_shows_both_templates_with_a_diff_token_counts_and_the_seeded_sample(page, next_dir):
    service, url, _ = page
    b = edited("Question: will", "Question: honestly, will")
    status, body = post(url, "/playground/api/render", {"texts": [MOVIE_NEXT, b], "split": "train",
                                                        "num_examples": 3, "seed": 5})  # fmt: skip
    assert status == 200, body
    expected = select_examples(load_split(next_dir, "train"), 3, 5)
    assert [row["example_id"] for row in body["examples"]] == [e["example_id"] for e in expected]
    first = body["examples"][0]
    a_prompt, b_prompt = first["prompts"]
    assert a_prompt["text"] == load_template("movie_next").render(expected[0], service.tokenizer)
    assert a_prompt["num_tokens"] == len(service.encode(load_template("movie_next"), expected[0])[1])
    assert not a_prompt["truncated"] and a_prompt["leaks"] == []
    changed = [line for line in first["diff"] if line["op"] != " "]
    assert [line["op"] for line in changed] == ["-", "+"] and "honestly" in changed[1]["text"]


def test_a_prompt_over_the_limit_is_flagged_as_truncated(tiny_model_dir, next_dir, tmp_path):
    config = ServeConfig(model=ModelConfig(model=str(tiny_model_dir), device="cpu"), max_prompt_tokens=100)
    with served(config, data_dir=next_dir, playground_dir=tmp_path) as (_, url):
        body = post(url, "/playground/api/render", {"texts": [MOVIE_NEXT], "split": "test", "num_examples": 1})[1]
    [prompt] = body["examples"][0]["prompts"]
    assert prompt["truncated"] and prompt["num_tokens"] > 100 and body["examples"][0]["diff"] is None


def test_a_render_error_is_shown_for_that_example_and_a_broken_template_is_a_422(page):
    _, url, _ = page
    b = edited("{{ user.age }}", "{{ user.shoe_size }}")
    body = post(url, "/playground/api/render", {"texts": [MOVIE_NEXT, b], "split": "test", "num_examples": 1})[1]
    error = body["examples"][0]["prompts"][1]["error"]
    assert "shoe_size" in error and error.startswith("movie_next.j2:")
    status, answer = post(url, "/playground/api/render", {"texts": [edited("Answer:", "{% if %}")], "split": "test"})
    assert status == 422 and answer["error"].startswith("template A: movie_next.j2:")
    status, answer = post(url, "/playground/api/render", {"texts": [MOVIE_NEXT], "split": "holdout"})
    assert status == 422 and "unknown split 'holdout'" in answer["error"]


def rating_leak():
    return edited("Candidate: {{ item.title }}", "Candidate: {{ item.title }} (you rated it {{ rating }})").replace(
        "inputs: [user,", "inputs: [rating, user,"
    )


LEAKS = [
    (MOVIE_NEXT, {}, []),
    (rating_leak(), {"rating": 4.0}, ["reads 'rating'"]),
    (edited("Answer:", "Answer: Yes"), {}, ["ends with the answer 'Yes'"]),
    (edited("Candidate: {{ item.title }}", "Candidate: {{ item.title }} {{ '%g' | format(user.age) }} stars"),
     {"rating": 4.0, "user": {"age": 4, "gender": "F", "occupation": "x"}}, ["target's line shows its rating 4"]),
    (edited("Candidate: {{ item.title }}", "Candidate: {{ item.title }} {{ '%g' | format(user.age) }} stars"),
     {"rating": 4.0, "user": {"age": 14, "gender": "F", "occupation": "x"}}, []),
]  # fmt: skip


@pytest.mark.parametrize("text, changes, found", LEAKS)
def test_leak_check(next_dir, tmp_path, text, changes, found):
    path = tmp_path / "movie_next.j2"
    path.write_text(text)
    template = load_template(path)
    example = load_split(next_dir, "test")[0] | changes
    warnings = leak_warnings(template, example, template.render(example))
    assert len(warnings) == len(found) and all(f in w for f, w in zip(found, warnings)), warnings


def test_scores_of_the_sample_equal_the_service_scores_for_each_choice(page, next_dir):
    service, url, _ = page
    request = {"text": MOVIE_NEXT, "split": "train", "num_examples": 4, "seed": 0, "positions": [0, 1, 2, 3]}
    examples = list(select_examples(load_split(next_dir, "train"), 4, 0))
    served_scores = post(url, "/v1/score", {"examples": examples})[1]["scores"]
    rows = {
        choice: post(url, "/playground/api/score", request | {"choice": choice})[1]["rows"]
        for choice in ("ensemble", "base")
    }
    np.testing.assert_allclose([r["score"] for r in rows["ensemble"]], served_scores, atol=1e-6)
    assert not np.allclose([r["score"] for r in rows["base"]], served_scores, atol=1e-4), "base: the adapter is off"
    assert [r["label"] for r in rows["base"]] == [e["label"] for e in examples]
    status, answer = post(url, "/playground/api/score", request | {"choice": "member7"})
    assert status == 422 and "unknown scoring choice 'member7'" in answer["error"]
    status, answer = post(url, "/playground/api/score", request | {"positions": [9]})
    assert status == 422 and "position 9 is outside the sample of 4" in answer["error"]


def test_metrics_of_scored_examples_match_hand_computed_auc(page):
    _, url, _ = page
    body = post(url, "/playground/api/metrics", {"labels": [1, 0, 1, 0], "scores": [0.9, 0.1, 0.2, 0.3]})[1]
    assert body["auc"] == pytest.approx(0.75) and body["num_examples"] == 4
    assert post(url, "/playground/api/metrics", {"labels": [1, 1], "scores": [0.1, 0.2]})[1]["auc"] is None
    assert post(url, "/playground/api/metrics", {"labels": [1], "scores": [0.1, 0.2]})[0] == 422


def test_save_writes_a_new_template_and_never_overwrites_unasked(page):
    _, url, templates_dir = page
    text = edited("name: movie_next", "name: movie_next_mine")
    status, saved = post(url, "/playground/api/save", {"name": "movie_next_mine", "text": text})
    assert status == 200 and Path(saved["path"]) == templates_dir.resolve() / "movie_next_mine.j2"
    assert Path(saved["path"]).read_text() == text and load_template(saved["path"]).name == "movie_next_mine"
    changed = text.replace('version: "3"', 'version: "4"')
    status, answer = post(url, "/playground/api/save", {"name": "movie_next_mine", "text": changed})
    assert status == 409 and "tick 'overwrite'" in answer["error"] and Path(saved["path"]).read_text() == text
    status, again = post(url, "/playground/api/save", {"name": "movie_next_mine", "text": changed, "overwrite": True})
    assert status == 200 and again["overwrote"] and Path(saved["path"]).read_text() == changed
    names = [t["name"] for t in call(url, "GET", "/playground/api/state")[1]["templates"] if t["origin"] != "prompts"]
    assert "movie_next_mine" in names


@pytest.mark.parametrize(
    "name, message",
    [
        ("../outside", "lowercase letters, digits and _ only"),
        ("/etc/passwd", "lowercase letters, digits and _ only"),
        ("Movie", "lowercase letters, digits and _ only"),
        ("a.j2", "lowercase letters, digits and _ only"),
        ("movie_next", "is a shipped template's"),
        ("movie_other", "must equal the file name 'movie_other'"),
    ],
)
def test_save_refuses_bad_names_and_text_that_does_not_lint(page, name, message):
    _, url, templates_dir = page
    before = sorted(templates_dir.rglob("*")) if templates_dir.exists() else []
    status, answer = post(url, "/playground/api/save", {"name": name, "text": MOVIE_NEXT})
    assert status == 422 and message in answer["error"], answer
    assert (sorted(templates_dir.rglob("*")) if templates_dir.exists() else []) == before


def test_save_replaces_a_symlink_instead_of_writing_through_it(page, tmp_path):
    _, url, templates_dir = page
    target = tmp_path / "elsewhere.j2"
    target.write_text("keep me")
    templates_dir.mkdir(parents=True, exist_ok=True)
    os.symlink(target, templates_dir / "linked.j2")
    text = edited("name: movie_next", "name: linked")
    assert post(url, "/playground/api/save", {"name": "linked", "text": text, "overwrite": True})[0] == 200
    assert target.read_text() == "keep me" and not (templates_dir / "linked.j2").is_symlink()


def test_line_diff():
    assert line_diff("a\nb\nc", "a\nB\nc") == [
        {"op": " ", "text": "a"}, {"op": "-", "text": "b"}, {"op": "+", "text": "B"}, {"op": " ", "text": "c"},
    ]  # fmt: skip


def test_without_data_the_playground_still_lints(tiny_model_dir, tmp_path):
    config = ServeConfig(model=ModelConfig(model=str(tiny_model_dir), device="cpu"))
    with served(replace(config), playground_dir=tmp_path) as (_, url):
        assert call(url, "GET", "/playground/api/state")[1]["splits"] == []
        assert post(url, "/playground/api/check", {"text": MOVIE_NEXT})[1] == {"problems": []}
        status, answer = post(url, "/playground/api/render", {"texts": [MOVIE_NEXT], "split": "test"})
        assert status == 422 and "--data" in answer["error"]
