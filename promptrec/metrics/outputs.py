"""The files of an evaluation: predictions.jsonl, metrics.json and config.json, written atomically.

Shared by `jobs.evaluate` (LLM scores) and `baselines.classic` (classic models), so both write the same
format and `metrics.summary` reads either.
"""

from __future__ import annotations

from pathlib import Path

from promptrec.core.files import write_json, write_jsonl
from promptrec.metrics.pointwise import sigmoid


def write_outputs(out_dir: Path, examples, scores, metrics: dict, record: dict, probabilities: bool = False) -> None:
    """predictions.jsonl (with sigmoid(score) as "probability" when asked), metrics.json, config.json."""

    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / "predictions.jsonl", prediction_rows(examples, scores, probabilities), sort_keys=True)
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "config.json", record)


def prediction_rows(examples, scores, probabilities: bool):
    for ex, score in zip(examples, scores):
        row = {"example_id": ex.get("example_id"), "label": int(ex["label"]), "score": float(score)}
        if probabilities:
            row["probability"] = float(sigmoid([score])[0])
        row.update({k: ex[k] for k in ("user_id", "item_id") if ex.get(k) is not None})
        yield row
