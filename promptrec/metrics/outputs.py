"""The files of an evaluation: predictions.jsonl, metrics.json and config.json, written atomically.

Shared by `jobs.evaluate` (LLM scores) and `baselines.classic` (classic models), so both write the same
format and `metrics.summary` reads either.
"""

from __future__ import annotations

from pathlib import Path

from promptrec.core.files import write_json, write_jsonl
from promptrec.metrics.pointwise import sigmoid


def write_outputs(
    out_dir: Path, examples, scores, metrics: dict, record: dict, probabilities: bool = False, parts: dict | None = None
) -> None:
    """predictions.jsonl (with sigmoid(score) as "probability" when asked), metrics.json, config.json.

    `parts` ({name: scores}) adds named components of each score to its row (e.g. llm_score, wide_score).
    """

    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(
        out_dir / "predictions.jsonl", prediction_rows(examples, scores, probabilities, parts or {}), sort_keys=True
    )
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "config.json", record)


def prediction_rows(examples, scores, probabilities: bool, parts: dict):
    for index, (ex, score) in enumerate(zip(examples, scores)):
        row = {"example_id": ex.get("example_id"), "label": int(ex["label"]), "score": float(score)}
        row.update({name: float(values[index]) for name, values in parts.items()})
        if probabilities:
            row["probability"] = float(sigmoid([score])[0])
        row.update({k: ex[k] for k in ("user_id", "item_id") if ex.get(k) is not None})
        yield row
