"""Every user mistake, through the command line: exit 2, one line on stderr, no traceback, nothing lost.

Three tables of hostile or mistaken inputs (templates, data files, candidate files). Each case runs
`promptrec.cli.main.main(argv)` in a folder holding its inputs and an earlier output, and checks that
every file there is byte-identical afterwards (and that no file appeared). No model is loaded: the
errors come before it (template cases load the tiny tokenizer only).
"""

import gzip
import json
import shutil
import time
from pathlib import Path

import pytest

from promptrec.cli.main import main

MINI_ML = Path(__file__).parent / "data" / "mini-ml"
FRONT = """---
name: {name}
version: "1"
kind: pointwise
inputs: [item]
choices: ["Yes", "No"]
description: A test template.
---
"""


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_user_error(capsys, root: Path, argv: list[str], expected: str) -> str:
    """Run `argv` and check the contract; return the error line."""
    before = snapshot(root)
    capsys.readouterr()
    start = time.perf_counter()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, f"exit {code}; stderr: {err!r}"
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert "Traceback" not in err + out
    assert expected in lines[0], lines[0]
    assert snapshot(root) == before, "an input or an earlier output changed"
    assert time.perf_counter() - start < 60, "no hang (generous: a loaded 2-core machine loads the model slowly)"
    return lines[0]


# ---------------------------------------------------------------- templates
TEMPLATE_CASES = [  # (id, body or whole file, expected fragment, verb): "check" lints, "render" runs it
    ("range_too_big", "{% for i in range(10**9) %}{{ item }}{% endfor %}", "over the limit of 10,000", "render"),
    ("nested_loops", "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}{{ item }}",
     "steps", "render"),
    ("huge_string", "{{ item }}{{ 'a' * 10**10 }}", "would build a value over the limit", "render"),
    ("huge_power", "{{ item }}{{ 7 ** (10 ** 6) }}", "bits", "render"),
    ("huge_center", "{{ item.title | center(10**10) }}", "filter 'center' got the number", "render"),
    ("huge_join", "{{ (['a' * 999999] * 1000) | join }}{{ item }}", "filter 'join' would build", "render"),
    ("doubling", "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
     "{{ item }}", "'~' built a value", "render"),
    ("huge_output", "{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}{{ item }}", "wrote more than", "render"),
    ("endless_macro", "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(item) }}", "too deeply", "render"),
    ("format_width", "{{ '%999999999d' % 1 }}{{ item }}", "'%' would build", "render"),
    ("typo_field", "{{ item.titel }}", "has no attribute 'titel'", "render"),
    ("bad_arithmetic", "{{ item.title - 1 }}", "unsupported operand", "render"),
    ("syntax_error", "{{ item.title }\n", "Jinja syntax error", "check"),
    ("unclosed_block", "{% for x in item %}{{ x }}\n", "Jinja syntax error", "check"),
    ("undeclared_input", "{{ item }}{{ user }}", "undeclared variable 'user'", "check"),
    ("deep_nesting", "{{ " + "(" * 5000 + "item" + ")" * 5000 + " }}", "too deeply to parse", "check"),
    ("no_front_matter", None, "missing front matter", "check"),
    ("not_utf8", None, "not valid UTF-8", "check"),
    ("huge_file", None, "over the limit of 1,000,000 for a template", "check"),
    ("unknown_key", None, "unknown front-matter key 'choice'", "check"),
    ("missing_file", None, "no such file or directory", "check"),
]  # fmt: skip


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("bad-templates") / "prepared"
    assert (
        main(["data", "prepare", "movielens", "--source", str(MINI_ML), "--out", str(out), "--history-len", "3"]) == 0
    )
    return out


def write_template(root: Path, name: str, body: str | None) -> Path:
    path = root / f"{name}.j2"
    if name == "no_front_matter":
        path.write_text("{{ item }}\n", encoding="utf-8")
    elif name == "not_utf8":
        path.write_bytes(FRONT.format(name=name).encode() + b"{{ item }} caf\xe9\n")
    elif name == "huge_file":
        path.write_text(FRONT.format(name=name) + "{{ item }}" + " " * 1_100_000, encoding="utf-8")
    elif name == "unknown_key":
        path.write_text(FRONT.format(name=name).replace("choices:", "choice:"), encoding="utf-8")
    elif name != "missing_file":
        path.write_text(FRONT.format(name=name) + body, encoding="utf-8")
    return path


@pytest.mark.parametrize("name, body, expected, verb", TEMPLATE_CASES, ids=[c[0] for c in TEMPLATE_CASES])
def test_bad_template(capsys, tmp_path, prepared, tiny_model_dir, name, body, expected, verb):
    data = tmp_path / "prepared"
    shutil.copytree(prepared, data)  # inside the snapshot: it must not change either
    path = write_template(tmp_path, name, body)
    if verb == "check":
        argv = ["prompts", "check", str(path)]
    else:
        argv = ["prompts", "render", str(path), "--data", str(data), "--split", "train", "--model", str(tiny_model_dir)]
    line = assert_user_error(capsys, tmp_path, argv, expected)
    assert f"{path}" in line, "the line names the template file"


def test_check_does_not_run_the_body(capsys, tmp_path):
    path = write_template(
        tmp_path, "huge_string", "{{ item }}{{ 'a' * 10**10 }}{% for i in range(10**9) %}{% endfor %}"
    )
    start = time.perf_counter()
    assert main(["prompts", "check", str(path)]) == 0
    assert time.perf_counter() - start < 2


# ---------------------------------------------------------------- data files
HEADER = "user_id,item_id,rating,timestamp\n"
GOOD_ROWS = "".join(f"u{u},{i},{1 + (u + i) % 5},{100 * i + u}\n" for u in range(4) for i in range(12))


def table(root: Path, text: str, name: str = "ratings.csv") -> list[str]:
    path = root / name
    path.write_text(text, encoding="utf-8")
    return ["--interactions", str(path)]


def movielens(root: Path, extra_line: str) -> list[str]:
    source = root / "ml"
    shutil.copytree(MINI_ML, source)
    with open(source / "u.data", "a", encoding="utf-8") as handle:
        handle.write(extra_line)
    return ["--source", str(source)]


def latin1_table(root: Path) -> list[str]:
    (root / "ratings.csv").write_bytes(HEADER.encode() + "u\u00e9,1,4,5\n".encode("latin-1"))
    return ["--interactions", str(root / "ratings.csv")]


def file_as_source(root: Path) -> list[str]:
    shutil.copytree(MINI_ML, root / "ml")
    return ["--source", str(root / "ml" / "u.data")]


def items_missing_one(root: Path) -> list[str]:
    (root / "items.csv").write_text("item_id,title\n0,Zero\n")
    return table(root, HEADER + GOOD_ROWS) + ["--items", str(root / "items.csv")]


def amazon_not_gzip(root: Path) -> list[str]:
    (root / "reviews.json.gz").write_text('{"reviewerID": "U1", "asin": "A1", "overall": 5, "unixReviewTime": 1}\n')
    (root / "meta.json.gz").write_bytes(gzip.compress(b'{"asin": "A1", "title": "x"}\n'))
    return ["--reviews", str(root / "reviews.json.gz"), "--meta", str(root / "meta.json.gz")]


def amazon_bad_first_rating(root: Path) -> list[str]:
    lines = '{"reviewerID": "U1", "asin": "A1", "overall": NaN, "unixReviewTime": 1}\n'
    (root / "reviews.json").write_text(lines)
    (root / "meta.json").write_text('{"asin": "A1", "title": "x"}\n')
    return ["--reviews", str(root / "reviews.json"), "--meta", str(root / "meta.json")]


DATA_CASES = [  # (id, source kind, build(root) -> argv part, expected fragment)
    ("nan_rating", "table", lambda r: table(r, HEADER + GOOD_ROWS + "u1,3,nan,5\n"),
     "ratings.csv:50: rating must be a finite number, got 'nan'"),
    ("inf_rating", "table", lambda r: table(r, HEADER + "u1,3,inf,5\n" + GOOD_ROWS),
     "ratings.csv:2: rating must be a finite number, got 'inf'"),
    ("nan_in_jsonl", "table",
     lambda r: table(r, '{"user_id": "u", "item_id": "i", "rating": NaN, "timestamp": 1}\n', "r.jsonl"),
     "r.jsonl:1: rating must be a finite number"),
    ("bool_rating", "table",
     lambda r: table(r, '{"user_id": "u", "item_id": "i", "rating": true, "timestamp": 1}\n', "r.jsonl"),
     "rating must be a finite number, got True"),
    ("stars_out_of_range", "movielens", lambda r: movielens(r, "7\t1\t6\t880001000\n"),
     "u.data:32: rating 6 is outside"),
    ("stars_not_a_number", "movielens", lambda r: movielens(r, "7\t1\tnan\t880001000\n"),
     "u.data:32: rating must be an integer, got 'nan'"),
    ("one_rating_per_user", "table", lambda r: table(r, HEADER + "".join(f"u{u},{u},4,{u}\n" for u in range(30))),
     "no user has more than 10 ratings (the most any user has is 1), so no example could be built"),
    ("too_few_examples", "table", lambda r: table(r, HEADER + "".join(f"u1,{i},4,{i}\n" for i in range(13))),
     "the valid split would be empty"),
    ("missing_column", "table", lambda r: table(r, "user_id,item_id,rating\nu1,1,4\n"), "missing column 'timestamp'"),
    ("no_rating_column", "table", lambda r: table(r, "user_id,item_id,timestamp\nu1,1,4\n"),
     "missing column 'rating' or 'label'"),
    ("wrong_delimiter", "table", lambda r: table(r, HEADER.replace(",", ";") + "u1;1;4;5\n"),
     "the file uses another separator"),
    ("bad_encoding", "table", latin1_table, "not valid UTF-8 (byte 34); re-save the file as UTF-8"),
    ("gzip_that_is_not", "amazon", amazon_not_gzip, "named .gz but not a gzip file"),
    ("amazon_nan_first_line", "amazon", amazon_bad_first_rating, "reviews.json:1: rating nan is not a number from"),
    ("directory_not_file", "table", lambda r: ["--interactions", str(r)], "is a directory"),
    ("file_not_directory", "movielens", file_as_source, "is a file; pass the directory"),
    ("missing_file", "table", lambda r: ["--interactions", str(r / "nope.csv")], "file not found"),
    ("empty_file", "table", lambda r: table(r, ""), "the file is empty"),
    ("header_only", "table", lambda r: table(r, HEADER), "has a header but no rows"),
    ("unknown_extension", "table", lambda r: table(r, HEADER, "ratings.xlsx"), "unsupported file type '.xlsx'"),
    ("invalid_json_line", "table", lambda r: table(r, '{"user_id": "u"\n', "r.jsonl"), "r.jsonl:1: invalid JSON"),
    ("bad_label", "table", lambda r: table(r, "user_id,item_id,label,timestamp\nu1,1,maybe,4\n"),
     "label must be 1 (liked) or 0 (not), got 'maybe'"),
    ("bad_timestamp", "table", lambda r: table(r, HEADER + "u1,1,4,2020-01-01\n"), "timestamp must be an integer"),
    ("unknown_item", "table", items_missing_one, "interactions reference unknown item ids"),
]  # fmt: skip


@pytest.fixture
def earlier_run(tmp_path) -> Path:
    """An earlier prepared directory; a failed run into the same --out must leave it as it was."""
    out = tmp_path / "out"
    assert (
        main(["data", "prepare", "movielens", "--source", str(MINI_ML), "--out", str(out), "--history-len", "3"]) == 0
    )
    return out


@pytest.mark.parametrize("name, kind, build, expected", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data_file(capsys, tmp_path, earlier_run, name, kind, build, expected):
    # --overwrite: the run may replace the earlier output, yet a bad input must leave it as it was
    argv = ["data", "prepare", kind, *build(tmp_path), "--out", str(earlier_run), "--overwrite"]
    assert_user_error(capsys, tmp_path, argv, expected)


@pytest.mark.parametrize(
    "out, flags, expected",
    [
        ("a-file.txt", [], "exists and is not a directory"),
        ("unrelated", [], "not empty and holds no manifest.json"),
        ("fresh", ["--history-len", "0"], "history_len must be a positive integer, got 0"),
    ],
)
def test_bad_output_directory(capsys, tmp_path, out, flags, expected):
    (tmp_path / "a-file.txt").write_text("mine")
    (tmp_path / "unrelated").mkdir()
    (tmp_path / "unrelated" / "notes.txt").write_text("mine")
    argv = ["data", "prepare", "movielens", "--source", str(MINI_ML), "--out", str(tmp_path / out), *flags]
    assert_user_error(capsys, tmp_path, argv, expected)


def test_duplicate_rows_are_a_counted_warning_not_an_error(tmp_path, capsys):
    path = tmp_path / "ratings.csv"
    path.write_text(HEADER + GOOD_ROWS + GOOD_ROWS.splitlines(keepends=True)[0] * 3)
    assert main(["data", "prepare", "table", "--interactions", str(path), "--out", str(tmp_path / "o"),
                 "--history-len", "3"]) == 0  # fmt: skip
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["load_warnings"] == [f"{path}: dropped 3 duplicate rows (same user, item, timestamp and rating "
                                         "as one before)"]  # fmt: skip


# ---------------------------------------------------------------- candidate files
@pytest.fixture(scope="module")
def next_item(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-candidates")
    data = root / "next"
    assert main(["data", "prepare", "movielens", "--source", str(MINI_ML), "--out", str(data), "--history-len", "3",
                 "--protocol", "next-item"]) == 0  # fmt: skip
    assert main(["candidates", "--data", str(data), "--num", "3", "--out", str(root / "test-cands.jsonl")]) == 0
    return data, root / "test-cands.jsonl"


def lines(*rows) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


CANDIDATE_CASES = [  # (id, candidate file text or None for the fixture's file, extra flags, expected fragment)
    ("unknown_user", lines({"user_id": "nobody", "candidates": ["1"]}), [], "unknown user 'nobody'"),
    ("unknown_item", lines({"user_id": "7", "candidates": ["1", "999"]}), [], "1 unknown item id(s), e.g. '999'"),
    ("user_twice", lines({"user_id": "7", "candidates": ["1"]}, {"user_id": "7", "candidates": ["2"]}), [],
     "user '7' appears twice"),
    ("item_twice", lines({"user_id": "7", "candidates": ["1", "1"]}), [], "item '1' is listed twice"),
    ("malformed_json", lines('{"user_id": "7", "candidates": ["1"]'), [], "cands.jsonl:1: invalid JSON"),
    ("not_an_object", lines('["7", ["1"]]'), [], "expected a JSON object"),
    ("no_candidates_key", lines({"user_id": "7", "items": ["1"]}), [], 'expected {"user_id": ..., "candidates"'),
    ("candidates_not_a_list", lines({"user_id": "7", "candidates": "1,2"}), [], 'expected {"user_id"'),
    ("all_lists_empty", lines({"user_id": "7", "candidates": []}), [], "no user has any candidates"),
    ("empty_file", "", [], "no user has any candidates"),
    ("wrong_split", None, ["--split", "valid"], "built for split 'test' (test-cands.jsonl.protocol.json) but ranking "
     "uses split 'valid'; pass --split test or build candidates with --split valid"),
    ("missing_file", "MISSING", [], "no such candidate file"),
]  # fmt: skip


@pytest.mark.parametrize("name, text, flags, expected", CANDIDATE_CASES, ids=[c[0] for c in CANDIDATE_CASES])
def test_bad_candidate_file(capsys, tmp_path, next_item, tiny_model_dir, name, text, flags, expected):
    data, built = next_item
    shutil.copytree(data, tmp_path / "next")
    if text is None:  # the fixture's own file, with its protocol record
        for path in (built, Path(f"{built}.protocol.json")):
            shutil.copy(path, tmp_path / path.name)
        cands = tmp_path / built.name
    else:
        cands = tmp_path / "cands.jsonl"
        if text != "MISSING":
            cands.write_text(text)
    out = tmp_path / "ranked.jsonl"  # an earlier ranking: --overwrite must not remove it before the inputs check out
    out.write_text('{"user_id": "7", "items": ["1"], "scores": [0.5]}\n')
    argv = ["rank", "--data", str(tmp_path / "next"), "--candidates", str(cands), "--out", str(out), "--overwrite",
            "--model", str(tiny_model_dir), *flags]  # fmt: skip
    assert_user_error(capsys, tmp_path, argv, expected)


# ---------------------------------------------------------------- configs, outputs, adapters, flags
def copy_prepared(root: Path, prepared: Path) -> Path:
    data = root / "data"
    shutil.copytree(prepared, data)
    return data


def stub_adapter(root: Path, name: str, files: dict) -> Path:
    adapter = root / name
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    for file, content in files.items():
        (adapter / file).write_bytes(content if isinstance(content, bytes) else content.encode())
    return adapter


def train_argv(data: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--shots", "4", "--model", str(model), "--set", "num_epochs=1",
            "--set", "valid_examples=0", "--batch-size", "2", "--out", str(out), *extra]  # fmt: skip


def mixture_argv(model: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--shots", "4", "--model", str(model), "--set", "num_epochs=1", "--set", "valid_examples=0",
            "--batch-size", "2", "--out", str(out), *extra]  # fmt: skip


def two_tasks(data: Path, first: str = "movie_rich", second: str = "movie_next") -> list[str]:
    return ["--task", f"{data}:{first}", "--task", f"{data}:{second}"]


def ranked_argv(root: Path, data: Path, *extra: str) -> list[str]:
    return ["evaluate", "--ranked", str(root / "x.jsonl"), "--data", str(data), *extra, "--out", str(root / "res")]


def evaluate_argv(data: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return ["evaluate", "--data", str(data), "--model", str(model), "--out", str(out), *extra]


RUN_RECORD_OTHER = json.dumps({"model": {"model": "other-model"}, "template": {"name": "tallrec_plain"}})
RUN_RECORD_TWO_TASKS = json.dumps({"template": None, "tasks": [{"template": {"name": "movie_rich"}},
                                                               {"template": {"name": "movie_next"}}]})  # fmt: skip
RUN_CASES = [  # (id, build(root, data, model) -> argv, expected fragment)
    ("lora_rank_zero", lambda r, d, m: train_argv(d, m, r / "a", "--set", "lora.r=0"), "lora.r=0 must be a positive"),
    ("lora_dropout_two", lambda r, d, m: train_argv(d, m, r / "a", "--set", "lora.lora_dropout=2"),
     "lora.lora_dropout=2"),
    ("lora_alpha_negative", lambda r, d, m: train_argv(d, m, r / "a", "--set", "lora.lora_alpha=-1"),
     "lora.lora_alpha=-1"),
    ("lora_unknown_module", lambda r, d, m: train_argv(d, m, r / "a", "--set", "lora.target_modules=nonexistent_proj"),
     "its linear layers are"),
    ("learning_rate_nan", lambda r, d, m: train_argv(d, m, r / "a", "--set", "learning_rate=nan"),
     "learning_rate=nan must be a positive number"),
    ("learning_rate_zero", lambda r, d, m: train_argv(d, m, r / "a", "--set", "learning_rate=0"), "learning_rate=0"),
    ("warmup_above_one", lambda r, d, m: train_argv(d, m, r / "a", "--set", "warmup_ratio=2"), "warmup_ratio=2"),
    ("weight_decay_inf", lambda r, d, m: train_argv(d, m, r / "a", "--set", "weight_decay=inf"), "weight_decay=inf"),
    ("shots_zero", lambda r, d, m: train_argv(d, m, r / "a", "--shots", "0"), "shots=0 must be at least 1"),
    ("shots_above_pool", lambda r, d, m: train_argv(d, m, r / "a", "--shots", "100000"), "exceeds the"),
    ("wide_mode_unknown", lambda r, d, m: train_argv(d, m, r / "a", "--set", "wide.mode=sideways"),
     "wide.mode='sideways'"),
    ("wide_l2_negative", lambda r, d, m: train_argv(d, m, r / "a", "--set", "wide.l2=-1"), "wide.l2=-1"),
    ("wide_unknown_feature", lambda r, d, m: train_argv(d, m, r / "a", "--set", "wide.features=colour"),
     "unknown feature 'colour'"),
    ("lm_loss_with_hybrid", lambda r, d, m: train_argv(d, m, r / "a", "--loss", "lm", "--set", "wide.mode=joint"),
     "loss=lm cannot train the hybrid"),
    ("config_key_typo", lambda r, d, m: train_argv(d, m, r / "a", "--set", "lorra.r=4"), "lorra"),
    ("train_out_is_a_file", lambda r, d, m: train_argv(d, m, r / "earlier.txt"), "is a file"),
    ("train_out_under_a_file", lambda r, d, m: train_argv(d, m, r / "earlier.txt" / "a"), "not writable"),
    ("train_out_holds_other_files", lambda r, d, m: train_argv(d, m, r / "notes"), "holds other files"),
    ("train_missing_data", lambda r, d, m: train_argv(r / "nowhere", m, r / "a"), "no such file or directory"),
    ("train_missing_local_model", lambda r, d, m: train_argv(d, r / "models" / "gone", r / "a"),
     "model path"),
    ("evaluate_missing_adapter", lambda r, d, m: evaluate_argv(d, m, r / "res", "--adapter", str(r / "gone")),
     "no such adapter directory"),
    ("evaluate_partial_adapter",
     lambda r, d, m: evaluate_argv(d, m, r / "res", "--adapter", str(stub_adapter(r, "a.partial", {}))),
     "unfinished training run"),
    ("evaluate_pickle_adapter",
     lambda r, d, m: evaluate_argv(d, m, r / "res", "--adapter", str(stub_adapter(r, "p", {"adapter_model.bin": b"0"}))
                                   ),
     "safetensors only"),
    ("evaluate_foreign_adapter_without_template",
     lambda r, d, m: evaluate_argv(d, m, r / "res", "--adapter", str(stub_adapter(r, "f", {}))), "pass --template"),
    ("evaluate_adapter_of_another_model",
     lambda r, d, m: evaluate_argv(d, m, r / "res", "--adapter",
                                   str(stub_adapter(r, "o", {"promptrec_run.json": RUN_RECORD_OTHER}))),
     "trained on model 'other-model'"),
    ("evaluate_ensemble_of_two_templates",
     lambda r, d, m: evaluate_argv(d, m, r / "res", "--adapter",
         str(stub_adapter(r, "t1", {"promptrec_run.json": json.dumps({"template": {"name": "movie_rich"}})})),
         str(stub_adapter(r, "t2", {"promptrec_run.json": json.dumps({"template": {"name": "tallrec_plain"}})}))),
     "different templates"),
    ("evaluate_finished_out", lambda r, d, m: evaluate_argv(d, m, r / "done"), "--overwrite"),
    ("evaluate_unknown_split", lambda r, d, m: evaluate_argv(d, m, r / "res", "--split", "holdout"), "no split"),
    ("evaluate_negative_limit", lambda r, d, m: evaluate_argv(d, m, r / "res", "--limit", "-1"), "limit must be >= 0"),
    ("evaluate_zero_batch", lambda r, d, m: evaluate_argv(d, m, r / "res", "--score-batch-size", "0"),
     "score_batch_size"),
    ("evaluate_text_file_as_data", lambda r, d, m: evaluate_argv(r / "earlier.txt", m, r / "res"), ".jsonl split file"),
    ("ranked_with_adapter",
     lambda r, d, m: ranked_argv(r, d, "--adapter", "a"),
     "--adapter has no effect"),
    ("ranked_with_limit",
     lambda r, d, m: ranked_argv(r, d, "--limit", "3"),
     "--limit has no effect"),
    ("baselines_out_is_a_file",
     lambda r, d, m: ["baselines", "--data", str(d), "--shots", "4", "--seeds", "0", "--out", str(r / "earlier.txt")],
     "is a file"),
    ("unknown_dtype", lambda r, d, m: evaluate_argv(d, m, r / "res", "--set", "model.dtype=float8"),
     "model.dtype='float8' is unknown"),
    ("unknown_quantization", lambda r, d, m: evaluate_argv(d, m, r / "res", "--set", "model.quantization=2bit"),
     "model.quantization='2bit' is unknown"),
    ("boolean_not_a_boolean", lambda r, d, m: train_argv(d, m, r / "a", "--set", "balanced=maybe"), "balanced"),
    ("train_missing_valid_file", lambda r, d, m: train_argv(d, m, r / "a", "--valid", str(r / "valid.jsonl")),
     "no such file or directory"),
    ("mixture_unknown_template", lambda r, d, m: mixture_argv(m, r / "a", *two_tasks(d, second="movie_rick")),
     "unknown template 'movie_rick'"),
    ("mixture_missing_data",
     lambda r, d, m: mixture_argv(m, r / "a", "--task", f"{r / 'nowhere'}:movie_rich", "--task", f"{d}:movie_next"),
     "no such file or directory"),
    ("mixture_weight_zero", lambda r, d, m: mixture_argv(m, r / "a", "--task", f"{d}:movie_rich:0"),
     "weight=0.0; give a positive number"),
    ("mixture_weight_negative", lambda r, d, m: mixture_argv(m, r / "a", *two_tasks(d), "--task", f"{d}:movie_rich:-1"),
     "weight=-1.0"),
    ("mixture_answers_differ", lambda r, d, m: mixture_argv(m, r / "a", *two_tasks(d, second="tallrec_plain")),
     "one pair of answers"),
    ("mixture_with_hybrid", lambda r, d, m: mixture_argv(m, r / "a", *two_tasks(d), "--set", "wide.mode=joint"),
     "wide.mode=joint needs one task"),
    ("mixture_with_data", lambda r, d, m: train_argv(d, m, r / "a", *two_tasks(d)), "drop --data"),
    ("mixture_with_template", lambda r, d, m: mixture_argv(m, r / "a", *two_tasks(d), "--template", "movie_rich"),
     "unused with `tasks`"),
    ("mixture_bad_task_flag", lambda r, d, m: mixture_argv(m, r / "a", "--task", "movie_rich"),
     "is not DATA:TEMPLATE[:WEIGHT]"),
    ("mixture_too_few_shots", lambda r, d, m: mixture_argv(m, r / "a", *two_tasks(d), "--shots", "1"),
     "gets 0 of the 1 shots"),
    ("train_without_data", lambda r, d, m: mixture_argv(m, r / "a"), "pass --data (one task) or --task"),
    ("evaluate_multitask_adapter_without_template",
     lambda r, d, m: evaluate_argv(d, m, r / "res", "--adapter",
                                   str(stub_adapter(r, "mt", {"promptrec_run.json": RUN_RECORD_TWO_TASKS}))),
     "pass --template with the one to score"),
    ("experiment_missing_config", lambda r, d, m: ["experiment", "--config", str(r / "grid.yaml")], "grid.yaml"),
    ("render_index_out_of_range",
     lambda r, d, m: ["prompts", "render", "tallrec_plain", "--data", str(d), "--index", "999", "--model", str(m)],
     "out of range"),
]  # fmt: skip


@pytest.mark.parametrize("name, build, expected", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_bad_run_request(capsys, tmp_path, prepared, tiny_model_dir, name, build, expected):
    data = copy_prepared(tmp_path, prepared)
    (tmp_path / "earlier.txt").write_text("an earlier output")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("mine")
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "metrics.json").write_text("{}")
    argv = build(tmp_path, data, tiny_model_dir)
    assert_user_error(capsys, tmp_path, argv, expected)
