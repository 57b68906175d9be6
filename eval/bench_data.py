"""Benchmark: preparing `evaluate` and `rank` on a big synthetic split, lists of dicts (before) vs Arrow (after).

Writes a synthetic split shaped like a prepared MovieLens example (user profile, target item with genres
and year, 10-item history with titles, genres, ratings, liked and timestamps, leak-free stats), and a
next-item directory whose test contexts are that same file. Then measures each phase in a fresh
subprocess: wall time of the work, and peak RSS of the whole process (getrusage, so imports included;
`rss_after_imports_mib` says how much of it the imports are).

- evaluate preparation, i.e. what `evaluate` does before its first forward pass plus its metrics' inputs:
  load the split, check the labels, render and tokenise every prompt and batch them by length, read
  labels and user ids;
  - before: the code of --before-rev (extracted with `git archive`): a list of dicts, prompts as token lists;
  - after, first run: the Arrow copy of the split and the tokenised-prompt cache (`Dataset.map`) are made;
  - after, cached: both are read back (the same command run again);
- rank preparation, i.e. `rank`'s steps before scoring, the same code in both revisions: the catalogue,
  the candidate file checked against the split's users, the split's user contexts, the candidate-example
  builder and the first user's examples. Before, every context is a dict; after, an index into Arrow.

Prints one JSON line per measurement, then one with the before/after ratios of the same run.

    python eval/bench_data.py                                    # 1M examples (before needs ~40 GB: see --before-max)
    python eval/bench_data.py --num-examples 100000 --keep /tmp/bench-data
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEFORE_REV = "26e5038"  # the last commit before splits became Arrow-backed
GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Drama", "Fantasy", "Horror",
          "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]  # fmt: skip
OCCUPATIONS = ["technician", "writer", "student", "engineer", "artist", "doctor", "librarian", "programmer"]
NUM_ITEMS = 5000
SCORE_BATCH_SIZE = 16
PHASES = ("evaluate-before", "evaluate-after-first", "evaluate-after-cached", "rank-before", "rank-after")


# ---------------------------------------------------------------- synthetic data


def item_records(rng: random.Random) -> list[dict]:
    items = []
    for i in range(NUM_ITEMS):
        year = rng.randint(1930, 1998)
        title = " ".join(rng.choice(["The", "Last", "Night", "Star", "River", "King", "Love", "City", "Dark", "Blue"])
                         for _ in range(rng.randint(1, 4)))  # fmt: skip
        items.append({"item_id": str(i + 1), "title": f"{title} ({year})",
                      "genres": sorted(rng.sample(GENRES, rng.randint(1, 3))), "year": year,
                      "release_date": f"01-Jan-{year}"})  # fmt: skip
    return items


def synthetic_example(index: int, rng: random.Random, items: list[dict]) -> dict:
    user_id = str(index // 5 + 1)  # five examples per user, like a real split's repeat users
    start = 875_000_000 + rng.randint(0, 10_000_000)
    history = []
    for step in range(10):
        rating = float(rng.randint(1, 5))
        history.append({**rng.choice(items), "rating": rating, "liked": rating > 3.0, "timestamp": start + 60 * step})
    rating = float(rng.randint(1, 5))
    return {
        "example_id": f"test-{index:07d}",
        "user_id": user_id,
        "item_id": (item := rng.choice(items))["item_id"],
        "label": int(rating > 3.0),
        "rating": rating,
        "timestamp": start + 600,
        "user": {
            "user_id": user_id,
            "age": rng.randint(18, 70),
            "gender": rng.choice("MF"),
            "occupation": rng.choice(OCCUPATIONS),
            "zip": f"{rng.randint(10000, 99999)}",
        },
        "item": item,
        "stats": {
            "item_like_rate": round(rng.random(), 4),
            "item_num_ratings": rng.randint(0, 500),
            "user_like_rate": round(rng.random(), 4),
            "user_num_ratings": rng.randint(10, 300),
        },
        "history": history,
    }


def write_lines(path: Path, rows) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")


def generate(work: Path, num_examples: int, rank_users: int, num_candidates: int) -> dict:
    """A prepared tallrec dir (`split/`) and a next-item dir (`next/`) sharing one test.jsonl."""
    rng = random.Random(0)
    items = item_records(rng)
    split, next_dir = work / "split", work / "next"
    split.mkdir(parents=True)
    next_dir.mkdir()
    test = split / "test.jsonl"
    write_lines(test, (synthetic_example(i, rng, items) for i in range(num_examples)))
    manifest = {"name": "tallrec", "parameters": {"history_len": 10}, "splits": {"test": {"file": "test.jsonl"}}}
    (split / "manifest.json").write_text(json.dumps(manifest))
    # next-item: the same examples as each user's test context (the last one of each user wins, as in `rank`)
    os.link(test, next_dir / "test.jsonl")
    write_lines(next_dir / "items.jsonl", items)
    users = sorted({str(i // 5 + 1) for i in range(num_examples)}, key=int)
    write_lines(next_dir / "interactions.jsonl",  # each user's test target: what the builder's stats see
                ({"user_id": u, "item_id": "1", "rating": 4.0, "timestamp": 885_000_000, "split": "test"}
                 for u in users))  # fmt: skip
    next_manifest = {"name": "next-item", "parameters": {"history_len": 10, "like_threshold": 3.0}}
    (next_dir / "manifest.json").write_text(json.dumps(next_manifest))
    picked = random.Random(1).sample(users, min(rank_users, len(users)))
    write_lines(work / "candidates.jsonl",
                ({"user_id": u, "candidates": [it["item_id"] for it in rng.sample(items, num_candidates)]}
                 for u in picked))  # fmt: skip
    return {
        "num_examples": num_examples,
        "split_file_mib": round(test.stat().st_size / 2**20, 1),
        "num_users": len(users),
        "rank_users": len(picked),
        "candidates_per_user": num_candidates,
    }


# ---------------------------------------------------------------- one measurement (a fresh process)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(phase: str, work: Path, template_name: str, rank_template: str, arrow_cache: str) -> dict:
    from promptrec.lm.config import ModelConfig
    from promptrec.lm.loading import load_tokenizer
    from promptrec.lm.scoring import length_batches
    from promptrec.protocols.splits import load_split
    from promptrec.templates.template import load_template

    tokenizer = load_tokenizer(ModelConfig())  # the embedded model's (SmolLM2); loading it is not timed
    os.environ["PROMPTREC_CACHE"] = arrow_cache  # after the tokenizer: its converted copy stays in the usual cache
    imported = rss_mib()
    start = time.perf_counter()
    if phase == "evaluate-before":
        from promptrec.lm.scoring import encode_prompt

        template = load_template(template_name)
        examples = load_split(work / "split", "test")
        for ex in examples:
            if ex.get("label") not in (0, 1):
                raise SystemExit(f"bad label in {ex.get('example_id')}")
        template.render(examples[0])
        sequences = [encode_prompt(tokenizer, template.render(ex, tokenizer), template.chat) for ex in examples]
        batches = length_batches([len(s) for s in sequences], SCORE_BATCH_SIZE)
        labels, users = [ex["label"] for ex in examples], [ex.get("user_id") for ex in examples]
        counts = {"num_batches": len(batches), "num_labels": len(labels), "num_users": len(users)}
        digest = hashlib.sha256(json.dumps([sequences[b[0]] for b in batches[:50]]).encode()).hexdigest()
    elif phase.startswith("evaluate-after"):
        from promptrec.lm.prompt_cache import prompt_tokens
        from promptrec.protocols.examples import check_binary_labels, labels_of, user_ids_of

        template = load_template(template_name)
        examples = load_split(work / "split", "test")
        check_binary_labels(examples)
        template.render(examples[0])
        tokens = prompt_tokens(examples, tokenizer, template)
        batches = length_batches(tokens.lengths, SCORE_BATCH_SIZE)
        labels, users = labels_of(examples), user_ids_of(examples)
        counts = {"num_batches": len(batches), "num_labels": len(labels), "num_users": len(users)}
        digest = hashlib.sha256(json.dumps([tokens.rows[b[0]] for b in batches[:50]]).encode()).hexdigest()
    else:  # rank-before / rank-after: the same code, `rank`'s preparation
        from promptrec.protocols.candidates import load_candidates
        from promptrec.protocols.next_item import CandidateExamples, load_catalog

        template = load_template(rank_template)
        catalog = load_catalog(work / "next")
        candidates = load_candidates(work / "candidates.jsonl", catalog, "test")
        contexts, builder = catalog.contexts("test"), CandidateExamples(catalog)
        first = candidates.rows[0]
        prompt = template.render(builder.build(contexts[first["user_id"]], first["candidates"][0]), tokenizer)
        counts = {"num_contexts": len(contexts), "num_rank_users": len(candidates.rows)}
        digest = hashlib.sha256(prompt.encode()).hexdigest()
    seconds = time.perf_counter() - start
    return {
        "phase": phase,
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(rss_mib(), 1),
        "rss_after_imports_mib": round(imported, 1),
        **counts,
        "check": digest[:16],  # the same prompts on both sides: the first ids of the first 50 batches
    }


# ---------------------------------------------------------------- driver


def extract(rev: str, into: Path) -> Path:
    """The package as it was at `rev` (promptrec/ and prompts/), for the 'before' runs."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "promptrec", "prompts"], capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"git archive {rev} failed: {archive.stderr.decode().strip()}; pass --before-rev")
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def run_phase(phase: str, code_dir: Path, args, work: Path, cache: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code_dir), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    argv = [sys.executable, __file__, "--measure", phase, "--work", str(work), "--arrow-cache", str(cache)]
    argv += ["--template", args.template, "--rank-template", args.rank_template]
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{phase} failed:\n{result.stderr[-3000:]}")
    row = json.loads(result.stdout.strip().splitlines()[-1])
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-examples", type=int, default=1_000_000)
    parser.add_argument("--rank-users", type=int, default=10_000, help="users in the candidate file")
    parser.add_argument("--candidates", type=int, default=20, help="candidates per user")
    parser.add_argument("--template", default="tallrec_plain")
    parser.add_argument("--rank-template", default="movie_next")
    parser.add_argument("--before-rev", default=BEFORE_REV, help="git revision measured as 'before'")
    parser.add_argument("--keep", help="write the data here and keep it (default: a temp dir, removed)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one phase in this process
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--arrow-cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, Path(args.work), args.template, args.rank_template, args.arrow_cache)))
        return
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        run(args, root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def run(args, root: Path) -> None:
    work, cache = root / "data", root / "cache"
    tick = time.perf_counter()
    info = generate(work, args.num_examples, args.rank_users, args.candidates)
    info |= {"generate_seconds": round(time.perf_counter() - tick, 1), "cpus": os.cpu_count(), "phase": "data"}
    print(json.dumps(info), flush=True)
    before_code = extract(args.before_rev, root / "before")
    rows = {}
    for phase in PHASES:
        rows[phase] = run_phase(phase, before_code if phase.endswith("before") else REPO, args, work, cache)
    before, first, cached = rows["evaluate-before"], rows["evaluate-after-first"], rows["evaluate-after-cached"]
    if not before["check"] == first["check"] == cached["check"]:
        raise SystemExit("the before and after prompts differ: the benchmark compares different work")
    ratios = {"phase": "ratios", "num_examples": args.num_examples}
    for name, after in (("evaluate_first", first), ("evaluate_cached", cached), ("rank", rows["rank-after"])):
        old = rows["rank-before"] if name == "rank" else before
        ratios[f"{name}_seconds_before_over_after"] = round(old["seconds"] / max(after["seconds"], 1e-9), 2)
        ratios[f"{name}_peak_rss_before_over_after"] = round(old["peak_rss_mib"] / after["peak_rss_mib"], 2)
    print(json.dumps(ratios), flush=True)


if __name__ == "__main__":
    main()
