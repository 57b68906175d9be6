"""Choose the wide part's default features on VALIDATION data (never a test split).

For each prepared dir, each candidate feature set is fitted exactly as the hybrid fits its wide part
(L2 logistic regression on K shots, standardized on the shots) for several seeds, and scored by AUC
on the dir's valid split. No LLM is involved, so this runs in seconds. The set with the best mean
valid AUC over the dirs becomes `protocols.features.DEFAULT_FEATURES`.

    python eval/select_wide_features.py data/ml100k data/ml100k-global data/amazon-magazine --seeds 0 1 2 3 4 5 6 7 8 9

`--prior-ratings` also tries the shrunk like-rate (`protocols.features.shrunk_item_like_rate`) with
other pseudo-rating counts than the registered one (as `item_like_rate_shrunk@m`).

With `--kg-embeddings` (dirs prepared with --kg, `pip install 'promptrec[kg]'`), the examples are
annotated with KG-embedding similarities (`knowledge.embeddings`, trained once and cached in the dir)
and the like-rates are also tried with the two KG features added:

    python eval/select_wide_features.py data/ml100k-kg --kg-embeddings [--kg-interactions]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from sklearn.metrics import roc_auc_score

from promptrec.baselines.wide import fit_wide
from promptrec.knowledge.embeddings import EmbeddingConfig, annotate_similarities, cached_embeddings
from promptrec.protocols.features import FEATURES, MIN_PRESENT, available_features, shrunk_item_like_rate
from promptrec.protocols.shots import sample_shots, select_examples
from promptrec.protocols.splits import load_split

CANDIDATES = {
    "all": tuple(name for name in FEATURES if not name.startswith(("kg_", "knn_"))),  # the stats and history features
    "rates": ("history_like_fraction", "history_mean_rating", "item_like_rate", "user_like_rate"),
    "rates+item_count": (
        "history_like_fraction", "history_mean_rating", "item_like_rate", "user_like_rate", "log_item_ratings",
    ),
    "logreg_baseline": (
        "history_like_fraction", "history_mean_rating", "item_like_rate", "log_item_ratings", "user_like_rate",
    ),
}  # fmt: skip
RATES = CANDIDATES["rates"]
SHRUNK = ("history_like_fraction", "history_mean_rating", "item_like_rate_shrunk")
CANDIDATES |= {
    "shrunk": SHRUNK,  # the target's like-rate shrunk toward the user's, in place of both raw rates
    "shrunk+user": (*SHRUNK, "user_like_rate"),
    "rates+shrunk": (*RATES, "item_like_rate_shrunk"),
    "rates+knn": (*RATES, "knn_liked_similarity", "knn_disliked_similarity"),  # item-kNN to the history
    "rates+knn_liked": (*RATES, "knn_liked_similarity"),
    "shrunk+knn": (*SHRUNK, "knn_liked_similarity", "knn_disliked_similarity"),
}
KG_CANDIDATES = {
    "rates+kg": (*RATES, "kg_liked_similarity", "kg_disliked_similarity"),
    "rates+kg_liked": (*RATES, "kg_liked_similarity"),
    "kg_only": ("kg_liked_similarity", "kg_disliked_similarity"),
}

KG_FEATURES = ("kg_liked_similarity", "kg_disliked_similarity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="+", help="prepared dirs with train and valid splits")
    parser.add_argument("--shots", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--valid-limit", type=int, default=2000, help="seeded sample of the valid split")
    parser.add_argument(
        "--prior-ratings", type=float, nargs="*", default=[],
        help="also try the `shrunk` set with these pseudo-rating counts m",
    )  # fmt: skip
    parser.add_argument("--kg-embeddings", action="store_true", help="also try the two KG-embedding features")
    parser.add_argument("--kg-interactions", action="store_true", help="embed train-split likes with the KG")
    parser.add_argument(
        "--min-present", type=float, nargs="+", default=[1.0, MIN_PRESENT],
        help="share of the shots that must give a feature for the wide part to keep it (1.0 = every shot)",
    )  # fmt: skip
    args = parser.parse_args()
    sets = CANDIDATES | (KG_CANDIDATES if args.kg_embeddings else {})
    for m in args.prior_ratings:  # registered for this run only, under a name the registry cannot clash with
        FEATURES[f"item_like_rate_shrunk@{m:g}"] = shrunk_item_like_rate(m)
        sets |= {f"shrunk@{m:g}": (*SHRUNK[:2], f"item_like_rate_shrunk@{m:g}")}
    candidates = {(name, share): features for name, features in sets.items() for share in args.min_present}
    means = {key: [] for key in candidates}
    for data in args.data:
        train, valid = load_split(data, "train"), select_examples(load_split(data, "valid"), args.valid_limit, 0)
        if args.kg_embeddings:
            embeddings = cached_embeddings(data, EmbeddingConfig(interactions=args.kg_interactions))
            train, valid = annotate_similarities(train, embeddings), annotate_similarities(valid, embeddings)
        labels = [ex["label"] for ex in valid]
        for (name, share), features in candidates.items():
            aucs = []
            for seed in args.seeds:
                shots = sample_shots(train, args.shots, seed, balanced=False)
                names = available_features(shots, [f for f in features if f not in KG_FEATURES], share)
                # The KG similarities are None where a shot has no liked (disliked) history; the wide
                # part fills those with the shots' mean, so they are kept wherever they vary.
                names += available_features(shots, [f for f in features if f in KG_FEATURES], min_present=0)
                wide = fit_wide(shots, [ex["label"] for ex in shots], names, l2=1.0)
                aucs.append(roc_auc_score(labels, wide.logits(valid)))
            means[name, share].append(float(np.mean(aucs)))
            mean, std = round(float(np.mean(aucs)), 4), round(float(np.std(aucs, ddof=1)), 4)
            row = {"data": data, "features": name, "min_present": share}
            print(json.dumps(row | {"valid_auc_mean": mean, "valid_auc_std": std}))
    best = max(means, key=lambda key: np.mean(means[key]))
    summary = {f"{name}@{share}": round(float(np.mean(v)), 4) for (name, share), v in means.items()}
    print(json.dumps({"best": f"{best[0]}@{best[1]}", "mean_valid_auc": summary}))


if __name__ == "__main__":
    main()
