"""Summarize evaluation and baseline dirs into a Markdown table: mean ± std over seeds per cell.

    python eval/summarize.py eval/results/tallrec_movie

Reads each run's metrics.json and config.json (the run record), never directory names.
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def cell_key(record: dict) -> tuple[str, int]:
    if record["kind"] == "baseline":
        return f"baseline: {record['baseline']}", record["shots"]
    adapter = record.get("adapter_record") or {}
    template = record["template"]["name"]
    shots = adapter.get("config", {}).get("shots", 0) if adapter else 0
    return template, shots


def main(results_dir: str) -> None:
    cells = defaultdict(list)
    for metrics_path in sorted(Path(results_dir).rglob("metrics.json")):
        record = json.loads((metrics_path.parent / "config.json").read_text())
        cells[cell_key(record)].append(json.loads(metrics_path.read_text()))
    print("| template | shots | runs | AUC | UAUC | log loss | test examples |")
    print("|---|---|---|---|---|---|---|")
    for (template, shots), runs in sorted(cells.items()):
        def stat(name):
            values = np.array([m[name] for m in runs], dtype=float)
            return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}" if len(values) > 1 else f"{values[0]:.4f}"
        print(f"| {template} | {shots} | {len(runs)} | {stat('auc')} | {stat('uauc')} | {stat('logloss')} | "
              f"{runs[0]['num_examples']} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "eval/results/tallrec_movie")
