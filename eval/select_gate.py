"""Should training gate the LLM part by default? Decided on valid examples only, by cross-fitting.

Reads hybrid adapters' predictions on a *valid* split (`promptrec evaluate --split valid --adapter A
--out DIR/seedN`, adapters trained without a gate), each row carrying `llm_score`, `wide_score` and
`label`. For each seed it splits the valid examples in two halves many times (seeded), fits the gate
(`baselines.wide.fit_gate`: the LLM's weight in [0, 1] and an intercept) on one half, and scores the
other half three ways: the hybrid as trained (weight 1), the gated hybrid, and the wide part alone
(weight 0). The mean held-out AUC of each, per domain and over all, is the evidence for the default.
No test split is read.

The README's figures: the ungated hybrid adapters of `eval/configs/hybrid_tallrec_movie.yaml` and
`hybrid_amazon.yaml` (64 shots, seeds 0 1 2), each scored on a valid split, then the study:

    for s in 0 1 2; do
      promptrec evaluate --data data/ml100k --split valid --limit 256 --no-reliability-plot \\
        --adapter eval/results/hybrid_tallrec_movie/embedded/movie_verbal/64shot-seed$s/adapter \\
        --out eval/results/gate_valid/tallrec/seed$s
      promptrec evaluate --data data/amazon-magazine --split valid --no-reliability-plot \\
        --adapter eval/results/hybrid_amazon/embedded/product_rich/64shot-seed$s/adapter \\
        --out eval/results/gate_valid/amazon/seed$s
    done
    python eval/select_gate.py eval/results/gate_valid/amazon eval/results/gate_valid/tallrec
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from promptrec.baselines.wide import fit_gate
from promptrec.jobs.sweep import read_predictions

WAYS = ("as trained (weight 1)", "gated", "wide part alone (weight 0)")


def cross_fitted(rows: list[dict], halves: int, seed: int) -> tuple[np.ndarray, list[float]]:
    """(mean held-out AUC of each way, the weights fitted) over `halves` seeded half/half splits."""
    llm = np.array([r["llm_score"] for r in rows], np.float64)
    wide = np.array([r["wide_score"] for r in rows], np.float64)
    labels = np.array([r["label"] for r in rows], int)
    rng = np.random.default_rng(seed)
    aucs, weights = [], []
    while len(aucs) < halves:
        order = rng.permutation(len(rows))
        fit, held = order[: len(rows) // 2], order[len(rows) // 2 :]
        if len(set(labels[fit])) < 2 or len(set(labels[held])) < 2:
            continue
        gate = fit_gate(llm[fit], wide[fit], labels[fit])
        weights.append(gate.llm_weight)
        aucs.append([roc_auc_score(labels[held], a * llm[held] + wide[held]) for a in (1.0, gate.llm_weight, 0.0)])
    return np.mean(aucs, axis=0), weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", type=Path, help="dirs holding seedN/predictions.jsonl on a valid split")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--halves", type=int, default=200, help="random half/half splits per seed")
    args = parser.parse_args()
    print("| valid dir | seed | examples | " + " | ".join(WAYS) + " | fitted weight (median) |")
    print("|---|---|---|" + "---|" * len(WAYS) + "---|")
    per_dir = {}
    for directory in args.dirs:
        rows_of_dir = []
        for seed in args.seeds:
            rows = read_predictions(directory / f"seed{seed}" / "predictions.jsonl")
            if "llm_score" not in rows[0]:
                raise SystemExit(f"{directory}/seed{seed}: no llm_score column; evaluate a hybrid adapter")
            means, weights = cross_fitted(rows, args.halves, seed)
            rows_of_dir.append(means)
            cells = " | ".join(f"{v:.4f}" for v in means)
            print(f"| {directory.name} | {seed} | {len(rows)} | {cells} | {np.median(weights):.2f} |")
        per_dir[directory.name] = np.mean(rows_of_dir, axis=0)
    print()
    print("| valid dir | " + " | ".join(WAYS) + " |")
    print("|---|" + "---|" * len(WAYS))
    for name, means in per_dir.items():
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in means) + " |")
    overall = np.mean(list(per_dir.values()), axis=0)
    print("| **mean of dirs** | " + " | ".join(f"**{v:.4f}**" for v in overall) + " |")


if __name__ == "__main__":
    main()
