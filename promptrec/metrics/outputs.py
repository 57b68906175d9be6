"""The files of an evaluation: predictions.jsonl, metrics.json and config.json, written atomically.

Shared by `jobs.evaluate` (LLM scores) and `baselines.classic` (classic models), so both write the same
format and `metrics.summary` reads either.
"""

from __future__ import annotations

import json
from pathlib import Path

from promptrec.core.files import write_json
from promptrec.metrics.pointwise import sigmoid


def write_outputs(out_dir: Path, examples, scores, metrics: dict, record: dict, probabilities: bool = False) -> None:
    """predictions.jsonl (with sigmoid(score) as "probability" when asked), metrics.json, config.json."""

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "predictions.jsonl.tmp"
    with tmp.open("w") as handle:
        for ex, score in zip(examples, scores):
            row = {"example_id": ex.get("example_id"), "label": int(ex["label"]), "score": float(score)}
            if probabilities:
                row["probability"] = float(sigmoid([score])[0])
            row.update({k: ex[k] for k in ("user_id", "item_id") if ex.get(k) is not None})
            handle.write(json.dumps(row, sort_keys=True) + "\n")
    tmp.replace(out_dir / "predictions.jsonl")
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "config.json", record)
