"""Batch ranking: score every (user, candidate) pair of a candidate file and write ranked lists.

A job reads a next-item directory (user contexts, catalogue) and a candidate file, renders one
prompt per candidate through the template, scores a user's candidates together with
`Scorer.score_group` (the shared prefix runs once) and appends one JSON line per user.

Crash safety: each process appends finished users to its own file under `<out>.parts/` and
fsyncs it; `--resume` truncates a torn last line, skips users already written and scores the
rest. When every user is done the main process merges the parts into `<out>` in candidate-file
order (atomic rename) and removes the parts. `<out>.run.json` names the job (candidate file,
template, adapter, model, split): resuming with anything else is refused. Under
`accelerate launch` users are dealt to processes round-robin; scores do not depend on the
process a user lands on, so the merged file equals a single-process run.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from promptrec.core.config import to_dict
from promptrec.core.errors import ConfigError, DataError
from promptrec.core.files import read_jsonl, write_json, write_jsonl
from promptrec.core.records import provenance, template_record
from promptrec.lm.adapter import ensemble_base_model, open_adapters, template_name_for
from promptrec.lm.config import ModelConfig
from promptrec.lm.distributed import gather_objects, process_state
from promptrec.lm.ensemble import load_ensemble
from promptrec.protocols.candidates import load_candidates
from promptrec.protocols.co_ratings import SECTION as SIMILARITY_SECTION
from promptrec.protocols.features import SIMILARITY_FEATURES
from promptrec.protocols.next_item import CandidateExamples, load_catalog
from promptrec.templates.template import load_template


@dataclass(frozen=True)
class RankConfig:
    template: str | None = None  # None: the adapter's training template, else movie_next
    split: str = "test"  # whose contexts (history up to the held-out item) the prompts show
    top_k: int = 0  # items kept per user in the output; 0 keeps every candidate
    # packed into one forward pass after the prefix: 20 (a user's whole list) is fastest on CPU with
    # block attention (`python eval/bench_rank.py --candidates-per-pass 10`: 9% slower)
    candidates_per_pass: int = 20
    min_prefix_tokens: int = 8  # a shorter common prefix scores full prompts (no cache reuse)
    probabilities: bool = False  # also write sigmoid(score) per item (calibrated if trained with BCE)
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self):
        if self.top_k < 0 or self.candidates_per_pass < 1 or self.min_prefix_tokens < 1:
            raise ConfigError("top_k must be >= 0, candidates_per_pass >= 1 and min_prefix_tokens >= 1")


def parts_dir(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".parts")


def run_record_path(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".run.json")


def _identity(config: RankConfig, template, candidates_sha256: str, adapters: list, data_dir: Path) -> dict:
    """What makes two runs the same job; scores from different jobs must never share a file."""
    return {
        "candidates_sha256": candidates_sha256,
        "template": template_record(template) | {"path": None},
        # one adapter: its path and hash, as before ensembles; an ensemble: the lists, in member order
        "adapter": _one_or_list([str(a.path) for a in adapters if a is not None]),
        "adapter_sha256": _one_or_list([a.weights_sha256() for a in adapters if a is not None]),
        "model": to_dict(config.model),
        "split": config.split,
        "data_dir": str(data_dir),
        "top_k": config.top_k,
        "probabilities": config.probabilities,
    }


def _one_or_list(values: list):
    return None if not values else values[0] if len(values) == 1 else values


def prepare_output(out_path: Path, identity: dict, resume: bool, overwrite: bool) -> None:
    """Check `out_path` against resume/overwrite and write the job's identity (main process only)."""
    parts, record = parts_dir(out_path), run_record_path(out_path)
    if overwrite:
        for path in [out_path, record, *(parts.glob("*") if parts.is_dir() else [])]:
            path.unlink(missing_ok=True)
    elif out_path.exists():
        raise ConfigError(f"{out_path} already holds a finished ranking; pass --overwrite or choose another --out")
    elif parts.is_dir() and any(parts.iterdir()) and not resume:
        raise ConfigError(
            f"{parts} holds an unfinished ranking; pass --resume to finish it or --overwrite to start again"
        )
    if resume and record.is_file():
        previous = json.loads(record.read_text()).get("identity", {})
        changed = sorted(k for k in identity if previous.get(k) != identity[k])
        if changed:
            raise ConfigError(
                f"{out_path}: --resume with a different job ({', '.join(changed)} changed); "
                "rerun with the original arguments or pass --overwrite"
            )
    parts.mkdir(parents=True, exist_ok=True)
    write_json(record, {"identity": identity, **provenance()})


def done_users(out_path: Path, repair: bool) -> set[str]:
    """Users already written to any part file; with `repair`, cut a torn last line off each file."""
    done: set[str] = set()
    for part in sorted(parts_dir(out_path).glob("shard-*.jsonl")):
        if repair:
            data = part.read_bytes()
            complete = data[: data.rfind(b"\n") + 1]  # a kill can leave a last line without its newline
            if len(complete) != len(data):
                with part.open("r+b") as handle:
                    handle.truncate(len(complete))
    for part in sorted(parts_dir(out_path).glob("shard-*.jsonl")):
        done.update(row["user_id"] for _, row in part_rows(part))
    return done


PART_FIX = (
    "the part file is corrupt there; delete that line and the ones after it, then rerun with --resume "
    "(those users are scored again), or start over with --overwrite"
)


def part_rows(part: Path):
    """(line number, row) of a part file's finished users; a corrupt line is an error naming it."""
    for line_no, row in read_jsonl(part, PART_FIX):
        if "user_id" not in row or "items" not in row:
            raise DataError(f"{part}:{line_no}: not a ranked row; {PART_FIX}")
        yield line_no, row


def ranked_row(user_id: str, items: list[str], scores: np.ndarray, top_k: int, probabilities: bool) -> dict:
    order = sorted(range(len(items)), key=lambda i: (-scores[i], i))  # ties keep candidate-file order
    order = order[:top_k] if top_k else order
    row = {"user_id": user_id, "items": [items[i] for i in order], "scores": [float(scores[i]) for i in order]}
    if probabilities:
        row["probabilities"] = [float(1.0 / (1.0 + np.exp(-scores[i]))) for i in order]
    return row


def merge_parts(out_path: Path, user_order: list[str]) -> int:
    """Write the parts into `out_path` in candidate-file order; every user exactly once."""
    rows: dict[str, dict] = {}
    for part in sorted(parts_dir(out_path).glob("shard-*.jsonl")):
        for line_no, row in part_rows(part):
            if row["user_id"] in rows:
                raise DataError(f"{part}:{line_no}: user {row['user_id']!r} was ranked twice; rerun with --overwrite")
            rows[row["user_id"]] = row
    missing = [u for u in user_order if u not in rows]
    if missing:
        raise DataError(f"{out_path}: {len(missing)} users were not ranked (e.g. {missing[0]!r}); rerun with --resume")
    write_jsonl(out_path, (rows[u] for u in user_order))
    for part in parts_dir(out_path).glob("*"):
        part.unlink()
    parts_dir(out_path).rmdir()
    return len(user_order)


def rank(
    config: RankConfig,
    data_dir,
    candidates_path,
    out_path,
    adapter=None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Rank every user of the candidate file; return a summary (users, candidates/s, prefix reuse)."""
    start = time.perf_counter()
    state = process_state()
    out_path, data_dir = Path(out_path), Path(data_dir)
    catalog = load_catalog(data_dir)
    candidates = load_candidates(candidates_path, catalog, config.split)
    adapters = open_adapters(adapter)
    ensemble_base_model(adapters)
    template = load_template(template_name_for(config.template, adapters, default="movie_next"))
    contexts, builder = catalog.contexts(config.split), CandidateExamples(catalog, needs_similarity(template, adapters))
    first = candidates.rows[0]
    template.render(user_examples(builder, contexts, first)[0])  # a template/data mismatch fails before the model loads
    identity = _identity(config, template, candidates.sha256, adapters, data_dir)
    if state.is_main_process:
        prepare_output(out_path, identity, resume, overwrite)
        done_users(out_path, repair=True)  # cut torn lines once, before every process reads the parts
    state.wait_for_everyone()
    done = done_users(out_path, repair=False)
    todo = [row for row in candidates.rows if row["user_id"] not in done]
    mine = todo[state.process_index :: state.num_processes]
    stats = _score_rows(config, template, adapters, builder, contexts, mine, out_path, state, progress)
    state.wait_for_everyone()
    stats = _combine(stats, state)
    summary = {
        "num_users": len(candidates.rows),
        "num_users_resumed": len(done),
        "num_users_empty_skipped": candidates.num_empty,
        "num_processes": state.num_processes,
        **stats,
        "seconds": time.perf_counter() - start,
    }
    if state.is_main_process:
        merge_parts(out_path, [row["user_id"] for row in candidates.rows])
        record = json.loads(run_record_path(out_path).read_text())
        write_json(run_record_path(out_path), record | {"finished": summary, "config": to_dict(config)})
    return summary


def needs_similarity(template, adapters) -> bool:
    """Whether candidates need their item-kNN `knn` section: the template reads it or a wide part does."""
    names = [name for a in adapters if a is not None and a.wide is not None for name in a.wide.names]
    return SIMILARITY_SECTION in template.inputs or any(name in SIMILARITY_FEATURES for name in names)


def _combine(stats: dict, state) -> dict:
    """Totals over processes (candidates/s is the sum of each process's rate)."""
    every = gather_objects([stats], state)
    total = {key: sum(s.get(key, 0) for s in every) for key in stats}
    total["scoring_seconds"] = max(s["scoring_seconds"] for s in every)
    return total


def user_examples(builder, contexts: dict, row: dict) -> list[dict]:
    """One example per candidate of a candidate-file row (`serve` builds its known users' the same way)."""
    context = contexts[row["user_id"]]
    examples = [builder.build(context, item_id) for item_id in row["candidates"]]
    if "query" in row:
        for example in examples:
            example["query"] = row["query"]
    return examples


def _score_rows(config, template, adapters, builder, contexts, rows, out_path, state, progress) -> dict:
    """Score this process's users, appending each finished user to its part file."""
    from tqdm.auto import tqdm

    stats = {
        "num_candidates_scored": 0,
        "num_users_prefix_cached": 0,
        "scoring_seconds": 0.0,
        "candidates_per_second": 0,
    }
    if not rows:
        return stats
    scorer = load_ensemble(config.model, adapters, template, candidates_per_pass=config.candidates_per_pass)
    part = parts_dir(out_path) / f"shard-{state.process_index}.jsonl"
    with part.open("a", encoding="utf-8") as handle:
        for row in tqdm(rows, desc="ranking", unit="user", disable=not (progress and state.is_main_process)):
            tick = time.perf_counter()
            scores, prefix_tokens = scorer.score_group(user_examples(builder, contexts, row), config.min_prefix_tokens)
            stats["scoring_seconds"] += time.perf_counter() - tick
            stats["num_candidates_scored"] += len(row["candidates"])
            stats["num_users_prefix_cached"] += prefix_tokens > 0
            line = ranked_row(row["user_id"], row["candidates"], scores, config.top_k, config.probabilities)
            handle.write(json.dumps(line) + "\n")
            handle.flush()
            os.fsync(handle.fileno())  # a finished user survives kill -9
    stats["candidates_per_second"] = stats["num_candidates_scored"] / max(stats["scoring_seconds"], 1e-9)
    return stats
