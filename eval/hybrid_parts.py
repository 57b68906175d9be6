"""The README's hybrid table from an experiment dir: per seed, the hybrid, its two parts, the classic
baselines on the same shots, and the ensemble of the seeds (mean score), as AUC on the scored examples.

Reads what `promptrec experiment` left: each hybrid cell's predictions (`score`, `llm_score`,
`wide_score`), the pure-LLM cells of the `llm` variant when they ran, and the baselines' predictions.

    python eval/hybrid_parts.py eval/results/hybrid_tallrec_movie --template movie_verbal

It also prints, per seed, the hybrid minus logistic regression with a 95% paired bootstrap interval
over the scored examples. `--hybrid` points the hybrid's three columns elsewhere, e.g. at adapters
re-scored by `promptrec evaluate --out DIR/seedN` beside `promptrec baselines --out DIR/baselines`:

    python eval/hybrid_parts.py eval/results/hybrid_tallrec_movie_all1000 --hybrid 'seed{seed}/predictions.jsonl'

`--pure` reads the pure-LLM cells from another run on the same shots (the gated configs train only the
hybrid and are read beside the ungated run's pure LLM):

    python eval/hybrid_parts.py eval/results/hybrid_amazon_gated --template product_rich \\
        --pure eval/results/hybrid_amazon
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from promptrec.jobs.sweep import read_predictions
from promptrec.metrics.pointwise import auc_gap_interval
from promptrec.metrics.summary import mean_std

COLUMNS = {  # column -> (where, score key); {seed} and {t} are filled in
    "hybrid": ("embedded/{t}/{shots}shot-seed{seed}/eval/predictions.jsonl", "score"),
    "its LLM part": ("embedded/{t}/{shots}shot-seed{seed}/eval/predictions.jsonl", "llm_score"),
    "its wide part": ("embedded/{t}/{shots}shot-seed{seed}/eval/predictions.jsonl", "wide_score"),
    "LLM alone (pure)": ("embedded/{t}+llm/{shots}shot-seed{seed}/eval/predictions.jsonl", "score"),
    "wide baseline": ("baselines/wide_{shots}shot-seed{seed}/predictions.jsonl", "score"),
    "logreg": ("baselines/logreg_{shots}shot-seed{seed}/predictions.jsonl", "score"),
}
HYBRID_COLUMNS = ("hybrid", "its LLM part", "its wide part")
PURE = "LLM alone (pure)"
ADAPTER_RECORD = "embedded/{t}/{shots}shot-seed{seed}/adapter/promptrec_run.json"


def scores(path: Path, key: str) -> dict[str, tuple[int, float]] | None:
    if not path.exists():
        return None
    return {row["example_id"]: (int(row["label"]), float(row[key])) for row in read_predictions(path)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("--template", default="movie_verbal")
    parser.add_argument("--shots", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--hybrid", help="the hybrid's predictions under RESULTS, with {seed} (and {t}, {shots})")
    parser.add_argument("--pure", type=Path, help="read the pure-LLM cells from this experiment dir (same shots)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of the paired gap")
    args = parser.parse_args()
    columns = dict(COLUMNS)
    if args.hybrid:
        columns |= {name: (args.hybrid, key) for name, (_, key) in COLUMNS.items() if name in HYBRID_COLUMNS}
    if args.pure:
        pattern, key = COLUMNS[PURE]
        columns[PURE] = (str(args.pure.resolve() / pattern), key)
    table = {column: {} for column in COLUMNS}
    for column, (pattern, key) in columns.items():
        for seed in args.seeds:
            path = args.results / pattern.format(t=args.template, shots=args.shots, seed=seed)
            table[column][seed] = scores(path, key)
    print("| seed | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    aucs = {column: [] for column in COLUMNS}
    for seed in args.seeds:
        cells = []
        for column in COLUMNS:
            found = table[column][seed]
            if found is None:
                cells.append("")
                continue
            labels, values = zip(*found.values())
            aucs[column].append(roc_auc_score(labels, values))
            cells.append(f"{aucs[column][-1]:.4f}")
        print(f"| {seed} | " + " | ".join(cells) + " |")
    means = ["{:.4f} ± {:.4f}".format(*mean_std(v)) if len(v) > 1 else "" for v in aucs.values()]
    print("| mean ± std | " + " | ".join(means) + " |")
    ensemble = []
    for column in COLUMNS:
        runs = [table[column][seed] for seed in args.seeds]
        if any(run is None for run in runs):
            ensemble.append("")
            continue
        ids = sorted(runs[0])
        labels = [runs[0][i][0] for i in ids]
        ensemble.append(f"{roc_auc_score(labels, np.mean([[run[i][1] for i in ids] for run in runs], axis=0)):.4f}")
    print("| ensemble of the seeds (mean score) | " + " | ".join(ensemble) + " |")
    print(json.dumps({column: [round(a, 4) for a in values] for column, values in aucs.items()}))
    for seed in args.seeds:
        run = args.results / ADAPTER_RECORD.format(t=args.template, shots=args.shots, seed=seed)
        gate = json.loads(run.read_text()).get("gate") if run.exists() else None
        if gate:
            print(
                f"seed {seed}: gate fitted the LLM weight {gate['llm_weight']:.3f} on {gate['examples']} valid "
                f"examples (valid AUC {gate['auc_before']:.4f} at weight 1 -> {gate['auc_after']:.4f})"
            )
    for seed in args.seeds:
        hybrid, logreg = table["hybrid"][seed], table["logreg"][seed]
        if hybrid is not None and logreg is not None:
            ids = sorted(set(hybrid) & set(logreg))  # the examples both scored
            labels = [hybrid[i][0] for i in ids]
            first, second = [hybrid[i][1] for i in ids], [logreg[i][1] for i in ids]
            gap, low, high = auc_gap_interval(labels, first, second, resamples=args.resamples)
            print(f"seed {seed}: hybrid - logreg {gap:+.4f}, 95% paired bootstrap [{low:+.4f}, {high:+.4f}]")


if __name__ == "__main__":
    main()
