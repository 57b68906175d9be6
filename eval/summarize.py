"""Print a results dir as a Markdown table: mean ± std over seeds per (model, method, shots, loss).

    python eval/summarize.py eval/results/tallrec_movie

A dir written by `promptrec experiment` already holds summary.md; for it this reads the cell
records (cell.json). Any other dir is read through the run records (config.json + metrics.json)
that `promptrec evaluate` and `promptrec baselines` leave, never through directory names. The table
code is `promptrec.summary`, shared with `promptrec experiment`.
"""

import sys
from pathlib import Path

from promptrec.metrics.summary import markdown_table, read_cell_records, records_from_run_dirs, summarize


def main(results_dir: str) -> None:
    records = read_cell_records(Path(results_dir)) or records_from_run_dirs(Path(results_dir))
    if not records:
        sys.exit(f"summarize: no run records (cell.json or config.json + metrics.json) under {results_dir}")
    print(markdown_table(summarize(records)), end="")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "eval/results/tallrec_movie")
