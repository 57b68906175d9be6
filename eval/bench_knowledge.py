"""Benchmark: knowledge-graph fact selection for 10,000 (user, candidate) pairs vs scoring them.

Loads MovieLens-100K and its KG (IMDb auxiliary.txt + DBpedia edgelists), builds the 10,000 TALLRec
pairs, times `select_facts` over all of them (best of --repeats), counts facts and links per pair,
measures the prompt-length cost of movie_kg over movie_rich with the embedded tokenizer, and times
scoring a few movie_kg prompts with the embedded model to put selection in proportion. Prints a
summary and, last, one JSON line.

    python eval/bench_knowledge.py                     # about 40 s on 2 idle CPU cores
    python eval/bench_knowledge.py --score 0           # skip the model (selection and tokens only)
"""

import argparse
import json
import statistics
import time
from dataclasses import asdict
from pathlib import Path

from promptrec.data.dataset import load_movielens
from promptrec.knowledge.graph import Budget, enrich, load_sources, select_facts
from promptrec.lm.config import ModelConfig
from promptrec.lm.loading import load_model, load_tokenizer
from promptrec.lm.scoring import Scorer
from promptrec.protocols.tallrec import build_tallrec_examples
from promptrec.templates.template import load_template

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=SHARED_DATA / "ml-100k", type=Path, help="raw MovieLens-100K dir")
    parser.add_argument("--kg", default=SHARED_DATA / "ml-kg", type=Path, help="ml-kg dir (imdb-rkge, dbpedia-ml1m)")
    parser.add_argument("--pairs", type=int, default=10000, help="(user, candidate) pairs to select facts for")
    parser.add_argument("--repeats", type=int, default=3, help="selection timing: best of N runs")
    parser.add_argument("--tokens", type=int, default=2000, help="pairs whose prompts are tokenized (cost)")
    parser.add_argument("--score", type=int, default=8, help="movie_kg prompts to score with the model (0: skip)")
    return parser.parse_args()


def time_selection(graph, pairs, budget, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        selected = [select_facts(graph, e["item_id"], e["history"], budget) for e in pairs]
        best = min(best, time.perf_counter() - start)
    return best, selected


def token_cost(tokenizer, pairs):
    """Per-pair prompt tokens of movie_kg minus movie_rich (the same prompt without KG lines)."""
    with_kg, without = load_template("movie_kg"), load_template("movie_rich")
    lengths = [tokenizer([t.render(e) for e in pairs]).input_ids for t in (with_kg, without)]
    extra = sorted(len(a) - len(b) for a, b in zip(*lengths))
    base = statistics.mean(len(b) for b in lengths[1])
    return extra, base


def time_scoring(examples, num):
    model, tokenizer = load_model(ModelConfig())
    scorer = Scorer(model, tokenizer, load_template("movie_kg"))
    scorer.score(examples[:2])  # warm-up
    start = time.perf_counter()
    scorer.score(examples[:num])
    return (time.perf_counter() - start) / num


def measure(args) -> tuple[dict, list]:
    budget = Budget()
    dataset = load_movielens(args.source)
    start = time.perf_counter()
    specs = [f"imdb={args.kg / 'imdb-rkge' / 'auxiliary.txt'}", f"dbpedia={args.kg / 'dbpedia-ml1m'}"]
    graph, reports = load_sources(specs, dataset)
    load_seconds = time.perf_counter() - start
    splits = build_tallrec_examples(dataset)
    pairs = [e for split in ("train", "valid", "test") for e in splits[split]][: args.pairs]
    seconds, selected = time_selection(graph, pairs, budget, args.repeats)
    enriched = enrich(pairs, graph, budget)
    extra, base = token_cost(load_tokenizer(ModelConfig()), enriched[: args.tokens])
    result = {
        "pairs": len(pairs),
        "token_pairs": len(extra),
        "budget": asdict(budget),
        "graph_facts": len(graph.facts),
        "graph_items": graph.num_items,
        "graph_load_seconds": round(load_seconds, 3),
        "selection_seconds": round(seconds, 4),
        "pairs_per_second": round(len(pairs) / seconds),
        "mean_facts": round(statistics.mean(len(s["facts"]) for s in selected), 3),
        "mean_links": round(statistics.mean(len(s["links"]) for s in selected), 3),
        "share_with_link": round(sum(bool(s["links"]) for s in selected) / len(selected), 4),
        "mean_prompt_tokens_movie_rich": round(base, 1),
        "mean_extra_tokens": round(statistics.mean(extra), 1),
        "p90_extra_tokens": extra[int(0.9 * len(extra))],
        "max_extra_tokens": extra[-1],
    }
    if args.score:
        per_prompt = time_scoring(enriched, args.score)
        result["score_seconds_per_prompt"] = round(per_prompt, 3)
        result["score_seconds_for_pairs"] = round(per_prompt * len(pairs))
        result["selection_share_of_scoring"] = round(seconds / (per_prompt * len(pairs)), 6)
    return result, reports


def main() -> None:
    result, reports = measure(parse_args())
    r = result
    for report in reports:
        print(f"{report.source}: {report.num_facts} facts, {report.num_malformed} malformed lines")
    print(f"graph: {r['graph_facts']} facts on {r['graph_items']} items, loaded in {r['graph_load_seconds']} s")
    print(f"selection: {r['pairs']} pairs in {r['selection_seconds']} s ({r['pairs_per_second']:,} pairs/s)")
    print(f"per pair: {r['mean_facts']} facts, {r['mean_links']} links ({r['share_with_link']:.0%} with a link)")
    print(
        f"prompt cost ({r['token_pairs']} pairs): movie_rich {r['mean_prompt_tokens_movie_rich']} tokens; "
        f"movie_kg adds {r['mean_extra_tokens']} on average (p90 {r['p90_extra_tokens']}, max {r['max_extra_tokens']})"
    )
    if "score_seconds_per_prompt" in r:
        print(
            f"scoring: {r['score_seconds_per_prompt']} s per movie_kg prompt, ~{r['score_seconds_for_pairs']} s for "
            f"{r['pairs']} pairs; selection takes {r['selection_share_of_scoring']:.4%} of that"
        )
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
