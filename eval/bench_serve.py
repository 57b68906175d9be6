"""Benchmark: `promptrec serve` /v1/rank latency and throughput at 1 and 8 clients, against `promptrec rank`.

MovieLens-100K leave-one-out (10-item histories), an item-kNN retriever's top 20 (target included) for a
seeded sample of users, the embedded model on CPU by default. The same users are ranked by the batch job
(`jobs.rank.rank`) and through the server (uvicorn on 127.0.0.1, in this process); the scores must agree.
/v1/score with one example per request shows what micro-batching does when requests are small enough to
share a forward pass. One JSON line per measurement:

    python eval/bench_serve.py                      # embedded model, 8 users x 20 candidates, 2 rounds
    python eval/bench_serve.py --users 4 --rounds 1 --model DIR

The phases run in rounds (rank job, server at 1 and 8 clients, /v1/score at 1 and 8 clients), so a
drifting load on a shared machine touches them alike; the last line holds each phase's median rate.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from promptrec.baselines.retrievers import build_candidates
from promptrec.jobs.api import BackgroundServer, create_app
from promptrec.jobs.rank import RankConfig, rank
from promptrec.jobs.serve import ServeConfig, Service
from promptrec.lm.config import ModelConfig
from promptrec.protocols.candidates import CandidateConfig
from promptrec.protocols.next_item import CandidateExamples, load_catalog
from promptrec.protocols.prepare import prepare_movielens

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k"


def post(url: str, path: str, body: dict) -> tuple[float, dict]:
    """(seconds, answer) of one request on a fresh connection, as an independent client would send it."""
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(url)
    start = time.perf_counter()
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=600)
    connection.request("POST", path, body=json.dumps(body), headers={"content-type": "application/json"})
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"{path}: HTTP {response.status}: {answer}")
    return time.perf_counter() - start, answer


def load(url: str, path: str, bodies: list[dict], clients: int) -> tuple[dict, list[dict]]:
    """Send every body once from `clients` threads; latency percentiles, throughput, and the answers."""
    todo, lock = list(enumerate(bodies)), threading.Lock()
    latencies, answers = [0.0] * len(bodies), [None] * len(bodies)

    def client():
        while True:
            with lock:
                if not todo:
                    return
                index, body = todo.pop(0)
            latencies[index], answers[index] = post(url, path, body)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    p50, p95 = np.percentile(latencies, [50, 95]) * 1000
    stats = {"clients": clients, "requests": len(bodies), "p50_ms": round(p50, 1), "p95_ms": round(p95, 1)}
    return stats | {"requests_per_s": round(len(bodies) / wall, 3), "wall_s": round(wall, 2)}, answers


def prepare(args, out: Path) -> tuple[Path, list[dict]]:
    data = out / "data"
    prepare_movielens(args.source, data, history_len=10, protocol="next-item")
    rows, _ = build_candidates(load_catalog(data), "test", CandidateConfig("itemknn", args.candidates, True, args.seed))
    return data, random.Random(args.seed).sample(rows, args.users)


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def bench_rank_job(model, data: Path, rows: list[dict], out: Path) -> tuple[dict, dict]:
    """The batch job on the same users: (its record, its ranked rows keyed by user)."""
    cands = out / "cands.jsonl"
    cands.write_text("".join(json.dumps(row) + "\n" for row in rows))
    summary = rank(RankConfig(model=model), data, cands, out / "ranked.jsonl", overwrite=True)
    per_user = summary["scoring_seconds"] / len(rows)  # model loading excluded, as for the warm server
    record = {"bench": "rank_job", "users": len(rows), "seconds_per_user": round(per_user, 3)}
    record |= {"users_per_s": round(1 / per_user, 3), "candidates_per_s": round(summary["candidates_per_second"], 1)}
    return record, {r["user_id"]: r for r in map(json.loads, (out / "ranked.jsonl").read_text().splitlines())}


def bench_serve(service: Service, url: str, path: str, bodies: list[dict], clients: int, ranked: dict | None) -> dict:
    before = (service.batcher.num_turns, service.batcher.num_jobs)
    stats, answers = load(url, path, bodies, clients)
    turns, jobs = service.batcher.num_turns - before[0], service.batcher.num_jobs - before[1]
    record = {"bench": f"serve {path}", **stats, "mean_turn_size": round(jobs / turns, 2)}
    if ranked is not None:  # the server's scores against the batch job's
        record["max_abs_diff_vs_rank"] = max(
            float(np.abs(np.array(a["scores"]) - ranked[a["user_id"]]["scores"]).max()) for a in answers
        )
        record["same_order_as_rank"] = all(a["items"] == ranked[a["user_id"]]["items"] for a in answers)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(SHARED), help="raw MovieLens-100K directory")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every phase, interleaved")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = ModelConfig(model=args.model, device="cpu")
    emit({"bench": "machine", "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
          "model": args.model, "users": args.users, "candidates": args.candidates, "rounds": args.rounds})  # fmt: skip
    records: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data, rows = prepare(args, Path(tmp))
        catalog = load_catalog(data)
        builder, contexts = CandidateExamples(catalog), catalog.contexts("test")
        ranks = [{"user_id": r["user_id"], "candidates": r["candidates"]} for r in rows]
        singles = [
            {"examples": [builder.build(contexts[r["user_id"]], item)]} for r in rows for item in r["candidates"][:4]
        ]
        service = Service(ServeConfig(model=model), data_dir=data)
        with BackgroundServer(create_app(service)) as server:
            post(server.url, "/v1/rank", ranks[0])  # warm-up
            for _ in range(args.rounds):  # every phase once per round: the shared machine's load drifts
                record, ranked = bench_rank_job(model, data, rows, Path(tmp))
                phases = [record]
                phases += [bench_serve(service, server.url, "/v1/rank", ranks, n, ranked) for n in (1, 8)]
                phases += [bench_serve(service, server.url, "/v1/score", singles, n, None) for n in (1, 8)]
                for record in phases:
                    emit(record)
                    records.setdefault(f"{record['bench']} x{record.get('clients', 1)}", []).append(record)
    rate = {
        name: float(np.median([r.get("requests_per_s", r.get("users_per_s")) for r in rs]))
        for name, rs in records.items()
    }
    emit({"bench": "summary", "load_avg_1m": round(os.getloadavg()[0], 2), "median_requests_or_users_per_s": rate})


if __name__ == "__main__":
    main()
