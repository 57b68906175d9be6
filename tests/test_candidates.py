"""Candidate sets: retrievers, recorded shuffles, protocol records, and checks on users' own files."""

import json
from pathlib import Path

import numpy as np
import pytest

from promptrec.baselines.retrievers import Retriever, build_candidates
from promptrec.cli.main import main
from promptrec.core.errors import ConfigError, DataError
from promptrec.core.files import file_sha256
from promptrec.protocols.candidates import CandidateConfig, load_candidates, protocol_path, write_candidates
from promptrec.protocols.next_item import load_catalog
from promptrec.protocols.prepare import prepare_movielens

MINI_ML = Path(__file__).parent / "data" / "mini-ml"
# u1 and u2 share items a, b; u3 has b, c. Items: a, b, c, d.
TOY = [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u2", "d"), ("u3", "b"), ("u3", "c")]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    out = tmp_path_factory.mktemp("cands") / "data"
    prepare_movielens(MINI_ML, out, history_len=3, protocol="next-item")
    return load_catalog(out)


def toy_retriever(kind):
    return Retriever([{"user_id": u, "item_id": i} for u, i in TOY], ["a", "b", "c", "d"], kind)


def test_popularity_orders_by_count_and_skips_seen_items():
    retriever = toy_retriever("popularity")
    assert retriever.top("u3", 3) == ["a", "d"], "a (2 users) before d (1); b, c are u3's own"
    assert retriever.top("new-user", 2) == ["b", "a"]


def test_itemknn_sums_cosine_similarity_to_the_users_items():
    retriever = toy_retriever("itemknn")
    # columns: a=[1,1,0] b=[1,1,1] c=[0,0,1] d=[0,1,0] over (u1,u2,u3)
    cos = lambda x, y: np.dot(x, y) / np.linalg.norm(x) / np.linalg.norm(y)  # noqa: E731
    a, b, c, d = map(np.array, ([1, 1, 0], [1, 1, 1], [0, 0, 1], [0, 1, 0]))
    expected = {"c": cos(c, a) + cos(c, b), "d": cos(d, a) + cos(d, b)}  # u1 has a, b
    assert retriever.top("u1", 2) == sorted(expected, key=lambda i: -expected[i])


def test_candidates_exclude_fit_items_and_are_shuffled_with_the_seed(catalog):
    rows, record = build_candidates(catalog, "test", CandidateConfig("popularity", num=3, seed=1))
    fit = catalog.fit_interactions("test")
    for row in rows:
        seen = {x["item_id"] for x in fit if x["user_id"] == row["user_id"]}
        assert not seen & set(row["candidates"])
    again, _ = build_candidates(catalog, "test", CandidateConfig("popularity", num=3, seed=1))
    assert again == rows
    orders = {tuple(r["candidates"]) for s in range(8) for r in build_candidates(
        catalog, "test", CandidateConfig("popularity", num=3, seed=s))[0] if r["user_id"] == "3"}  # fmt: skip
    assert len(orders) > 1, "candidate order depends on the seed, not only the retriever"
    assert record["num_users"] == 3 and 0 <= record["recall_at_3"] <= 1


def test_recall_counts_targets_the_retriever_found(catalog):
    rows, record = build_candidates(catalog, "test", CandidateConfig("popularity", num=20))
    targets = {u: ex["item_id"] for u, ex in catalog.contexts("test").items()}
    hits = sum(targets[r["user_id"]] in r["candidates"] for r in rows)
    assert record["recall_at_20"] == hits / len(rows)


def test_include_target_puts_the_held_out_item_in_every_list(catalog):
    rows, _ = build_candidates(catalog, "test", CandidateConfig("popularity", num=1, include_target=True))
    targets = {u: ex["item_id"] for u, ex in catalog.contexts("test").items()}
    assert all(r["candidates"] == [targets[r["user_id"]]] for r in rows)


def test_max_users_samples_users_with_the_seed(catalog):
    rows, record = build_candidates(catalog, "test", CandidateConfig(max_users=2, seed=3))
    assert len(rows) == 2 and record["max_users"] == 2
    assert rows == build_candidates(catalog, "test", CandidateConfig(max_users=2, seed=3))[0]


def test_written_file_has_a_protocol_record_with_its_hash(catalog, tmp_path):
    rows, record = build_candidates(catalog, "test", CandidateConfig(num=3))
    write_candidates(rows, record, tmp_path / "c.jsonl", retriever_ranked_path=tmp_path / "order.jsonl")
    written = json.loads(protocol_path(tmp_path / "c.jsonl").read_text())
    assert written["sha256"] == file_sha256(tmp_path / "c.jsonl") and written["retriever"] == "popularity"
    loaded = load_candidates(tmp_path / "c.jsonl", catalog, "test")
    assert loaded.rows == [{"user_id": r["user_id"], "candidates": r["candidates"]} for r in rows]
    assert loaded.num_empty == 0


def test_retriever_order_is_written_apart_and_never_in_the_candidate_file(catalog, tmp_path):
    from promptrec.jobs.ranked_metrics import read_ranked

    rows, record = build_candidates(catalog, "test", CandidateConfig("popularity", num=3, seed=4))
    write_candidates(rows, record, tmp_path / "c.jsonl", retriever_ranked_path=tmp_path / "order.jsonl")
    retriever = Retriever(catalog.fit_interactions("test"), sorted(catalog.items), "popularity")
    ranked = read_ranked(tmp_path / "order.jsonl")
    assert ranked == {r["user_id"]: retriever.top(r["user_id"], 3) for r in rows}
    assert "retriever_order" not in (tmp_path / "c.jsonl").read_text()


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"user_id": "nobody", "candidates": ["1"]}'], "unknown user 'nobody'"),
        (['{"user_id": "7", "candidates": ["1", "999"]}'], "1 unknown item id"),
        (['{"user_id": "7", "candidates": ["1", "1"]}'], "listed twice"),
        (['{"user_id": "7", "candidates": ["1"]}', '{"user_id": "7", "candidates": ["2"]}'], "appears twice"),
        (["not json"], "invalid JSON"),
        (['{"user": "7"}'], "expected"),
        (['{"user_id": "7", "candidates": []}'], "no user has any candidates"),
    ],
)
def test_bad_candidate_files_are_refused_with_the_line(catalog, tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        load_candidates(path, catalog, "test")


def test_candidates_built_for_another_split_are_refused(catalog, tmp_path):
    rows, record = build_candidates(catalog, "test", CandidateConfig(num=3))
    write_candidates(rows, record, tmp_path / "c.jsonl")
    with pytest.raises(DataError) as err:
        load_candidates(tmp_path / "c.jsonl", catalog, "valid")
    assert "built for split 'test'" in str(err.value) and "ranking uses split 'valid'" in str(err.value)
    assert "pass --split test or build candidates with --split valid" in str(err.value)
    assert load_candidates(tmp_path / "c.jsonl", catalog, "test").rows  # the right split still loads


def test_a_users_own_file_without_a_record_loads_for_any_split(catalog, tmp_path):
    path = tmp_path / "own.jsonl"
    user = next(iter(catalog.contexts("valid")))
    path.write_text(json.dumps({"user_id": user, "candidates": ["1", "2"]}) + "\n")
    assert load_candidates(path, catalog, "valid").rows == [{"user_id": user, "candidates": ["1", "2"]}]


def test_a_corrupt_protocol_record_is_named(catalog, tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"user_id": "7", "candidates": ["1"]}\n')
    protocol_path(path).write_text("{not json")
    with pytest.raises(DataError, match=r"c\.jsonl\.protocol\.json:1: invalid JSON"):
        load_candidates(path, catalog, "test")


def test_empty_lists_are_skipped_and_counted(catalog, tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"user_id": "7", "candidates": []}\n{"user_id": "3", "candidates": ["1"], "query": "q"}\n')
    loaded = load_candidates(path, catalog, "test")
    assert loaded.num_empty == 1 and loaded.rows == [{"user_id": "3", "candidates": ["1"], "query": "q"}]


def test_unknown_retriever_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown retriever 'bm25'"):
        CandidateConfig("bm25")


def test_cli_writes_candidates_and_reports_recall(catalog, tmp_path, capsys):
    out = tmp_path / "c.jsonl"
    argv = ["candidates", "--data", str(catalog.data_dir), "--retriever", "itemknn", "--num", "2", "--out", str(out)]
    assert main(argv) == 0
    assert "Recall@2" in capsys.readouterr().out and len(out.read_text().splitlines()) == 3
    assert main(["candidates", "--data", str(catalog.data_dir), "--retriever", "nope", "--out", str(out)]) == 2
    assert "unknown retriever" in capsys.readouterr().err
