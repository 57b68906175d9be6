"""Choose the wide part's default features on VALIDATION data (never a test split).

For each prepared dir, each candidate feature set is fitted exactly as the hybrid fits its wide part
(L2 logistic regression on K shots, standardized on the shots) for several seeds, and scored by AUC
on the dir's valid split. No LLM is involved, so this runs in seconds. The set with the best mean
valid AUC over the dirs becomes `protocols.features.DEFAULT_FEATURES`.

    python eval/select_wide_features.py data/ml100k data/ml100k-global
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from sklearn.metrics import roc_auc_score

from promptrec.baselines.wide import fit_wide
from promptrec.protocols.features import available_features
from promptrec.protocols.shots import sample_shots, select_examples
from promptrec.protocols.splits import load_split

CANDIDATES = {
    "all": None,  # every registry feature the shots carry
    "rates": ("history_like_fraction", "history_mean_rating", "item_like_rate", "user_like_rate"),
    "rates+item_count": (
        "history_like_fraction", "history_mean_rating", "item_like_rate", "user_like_rate", "log_item_ratings",
    ),
    "logreg_baseline": (
        "history_like_fraction", "history_mean_rating", "item_like_rate", "log_item_ratings", "user_like_rate",
    ),
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="+", help="prepared dirs with train and valid splits")
    parser.add_argument("--shots", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--valid-limit", type=int, default=2000, help="seeded sample of the valid split")
    args = parser.parse_args()
    means = {name: [] for name in CANDIDATES}
    for data in args.data:
        train, valid = load_split(data, "train"), select_examples(load_split(data, "valid"), args.valid_limit, 0)
        labels = [ex["label"] for ex in valid]
        for name, features in CANDIDATES.items():
            aucs = []
            for seed in args.seeds:
                shots = sample_shots(train, args.shots, seed, balanced=False)
                names = available_features(shots, features)
                wide = fit_wide(shots, [ex["label"] for ex in shots], names, l2=1.0)
                aucs.append(roc_auc_score(labels, wide.logits(valid)))
            means[name].append(float(np.mean(aucs)))
            mean, std = round(float(np.mean(aucs)), 4), round(float(np.std(aucs, ddof=1)), 4)
            print(json.dumps({"data": data, "features": name, "valid_auc_mean": mean, "valid_auc_std": std}))
    best = max(means, key=lambda name: np.mean(means[name]))
    print(json.dumps({"best": best, "mean_valid_auc": {k: round(float(np.mean(v)), 4) for k, v in means.items()}}))


if __name__ == "__main__":
    main()
