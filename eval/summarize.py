"""Summarize evaluation and baseline dirs into a Markdown table: mean ± std over seeds per cell.

    python eval/summarize.py eval/results/tallrec_movie

A cell is (method, shots, loss). Reads each run's metrics.json and config.json (the run record),
never directory names.
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def cell_key(record: dict) -> tuple[str, int, str]:
    if record["kind"] == "baseline":
        return f"baseline: {record['baseline']}", record["shots"], "-"
    adapter = record.get("adapter_record") or {}
    if not adapter:
        return record["template"]["name"], 0, "-"
    return record["template"]["name"], adapter["config"]["shots"], adapter["config"]["loss"]


def stat(runs: list[dict], name: str) -> str:
    values = np.array([m[name] for m in runs], dtype=float)
    if np.isnan(values).all():
        return "-"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def main(results_dir: str) -> None:
    cells = defaultdict(list)
    for metrics_path in sorted(Path(results_dir).rglob("metrics.json")):
        record = json.loads((metrics_path.parent / "config.json").read_text())
        cells[cell_key(record)].append(json.loads(metrics_path.read_text()))
    print("| method | shots | loss | runs | AUC | UAUC | log loss | test examples |")
    print("|---|---|---|---|---|---|---|---|")
    for (method, shots, loss), runs in sorted(cells.items(), key=lambda kv: (kv[0][0].startswith("baseline"), kv[0])):
        print(
            f"| {method} | {shots} | {loss} | {len(runs)} | {stat(runs, 'auc')} | {stat(runs, 'uauc')} | "
            f"{stat(runs, 'logloss')} | {runs[0]['num_examples']} |"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "eval/results/tallrec_movie")
