#!/usr/bin/env bash
# Amazon Magazine Subscriptions (5-core) with the embedded model, on CPU:
#  1. pointwise like/dislike (rating > 3): product_rich zero-shot and 64-shot LoRA with LM loss vs
#     BCE loss (AUC, log loss, Brier, ECE, reliability plots), beside the classic baselines;
#  2. personalised product search (Ai et al. 2017): each shopper's last purchase among 19 unseen
#     items, query from its category path; query-only vs query + history prompts, zero-shot and
#     64-shot, NDCG@10 / HR@10 over a seeded sample of USERS shoppers, beside the lexical baseline
#     (query-word overlap with each candidate's category words).
#   bash eval/amazon_magazine.sh [AMAZON_DIR] [RESULTS_DIR]
set -euo pipefail
SOURCE=${1:-../shared/data/amazon-magazine_subscriptions}
OUT=${2:-eval/results/amazon_magazine}
USERS=${USERS:-100}
SHOTS=${SHOTS:-64}
SEEDS=${SEEDS:-"0 1 2"}  # seeds of the pointwise LM-vs-BCE runs; the search adapters use seed 0
FILES=(--reviews "$SOURCE/Magazine_Subscriptions_5.json.gz" --meta "$SOURCE/meta_Magazine_Subscriptions.json.gz")
# wide.mode=off: these rows are the pure LLM (LM vs BCE loss); the hybrid has its own config (hybrid_amazon.yaml)
TRAIN_SET=(--shots "$SHOTS" --set num_epochs=4 --set valid_examples=0 --set learning_rate=1e-3 --set wide.mode=off)
mkdir -p "$OUT"

# 1. pointwise + calibration (history of 4: few 5-core shoppers have 10 earlier reviews)
[ -f "$OUT/data/manifest.json" ] || promptrec data prepare amazon "${FILES[@]}" --history-len 4 --out "$OUT/data"
promptrec baselines --data "$OUT/data" --shots "$SHOTS" --seeds $SEEDS --out "$OUT/baselines" > /dev/null  # seconds
[ -f "$OUT/rich-0shot/metrics.json" ] ||
  promptrec evaluate --data "$OUT/data" --template product_rich --probabilities --out "$OUT/rich-0shot"
for loss in lm bce; do
  for seed in $SEEDS; do
    run="rich-${SHOTS}shot-$loss-seed$seed"
    [ -f "$OUT/adapters/$run/promptrec_run.json" ] ||
      promptrec train --data "$OUT/data" --template product_rich --loss "$loss" --seed "$seed" "${TRAIN_SET[@]}" \
        --out "$OUT/adapters/$run"
    [ -f "$OUT/$run/metrics.json" ] ||
      promptrec evaluate --data "$OUT/data" --adapter "$OUT/adapters/$run" --probabilities --out "$OUT/$run"
  done
done

# 2. search: candidates on the next-item split, few-shot examples (with queries) from the search split
[ -f "$OUT/next/manifest.json" ] ||
  promptrec data prepare amazon "${FILES[@]}" --protocol next-item --history-len 4 --out "$OUT/next"
[ -f "$OUT/search/manifest.json" ] ||
  promptrec data prepare amazon "${FILES[@]}" --protocol search --history-len 4 --out "$OUT/search"
cands="$OUT/candidates-search-20.jsonl"
[ -f "$cands" ] && [ -f "$OUT/ranked-query_overlap.jsonl" ] ||
  promptrec candidates --data "$OUT/next" --retriever search --num 20 --max-users "$USERS" --out "$cands" \
    --retriever-ranked "$OUT/ranked-query_overlap.jsonl"
# the lexical baseline: candidates by query-word overlap with their category words, no model
promptrec evaluate --ranked "$OUT/ranked-query_overlap.jsonl" --data "$OUT/next" --out "$OUT/eval-query_overlap" > /dev/null
for template in product_search product_search_personal; do
  for model in 0shot ${SHOTS}shot; do
    extra=(--template "$template")
    if [ "$model" != 0shot ]; then
      adapter="$OUT/adapters/$template-bce"
      [ -f "$adapter/promptrec_run.json" ] ||
        promptrec train --data "$OUT/search" --template "$template" --loss bce --seed 0 "${TRAIN_SET[@]}" --out "$adapter"
      extra=(--adapter "$adapter")
    fi
    ranked="$OUT/ranked-$template-$model.jsonl"
    [ -f "$ranked" ] || promptrec rank --data "$OUT/next" --candidates "$cands" "${extra[@]}" --out "$ranked" --resume
    promptrec evaluate --ranked "$ranked" --data "$OUT/next" --out "$OUT/eval-$template-$model" > /dev/null
  done
done
python - "$OUT" "$SHOTS" <<'PY'
import json, math, pathlib, re, sys
from collections import defaultdict
import numpy as np
from promptrec.metrics.pointwise import auc_interval, pointwise_metrics
from promptrec.metrics.ranking import ranking_metrics
from promptrec.metrics.summary import mean_std
out = pathlib.Path(sys.argv[1])
print("| pointwise run | examples | AUC [95% bootstrap] | log loss | Brier | ECE |\n|---|---|---|---|---|---|")
groups = defaultdict(list)
for path in sorted(out.glob("rich-*/metrics.json")) + sorted(out.glob("baselines/*/metrics.json")):
    m = json.loads(path.read_text())
    rows = [json.loads(line) for line in (path.parent / "predictions.jsonl").open()]
    low, high = auc_interval([r["label"] for r in rows], [r["score"] for r in rows])
    name = path.parent.name if path.parent.parent == out else "baseline " + path.parent.name
    groups[re.sub(r"-seed\d+$", "", name)].append(m)
    print(f"| {name} | {m['num_examples']} | {m['auc']:.4f} [{low:.2f}, {high:.2f}] | {m['logloss']:.4f} | "
          f"{m['brier']:.4f} | {m['ece']:.4f} |")
# the constant predictor: every test example gets the train split's positive rate (what calibration must beat)
train, test = ([json.loads(line)["label"] for line in (out / "data" / f"{s}.jsonl").open()] for s in ("train", "test"))
rate = sum(train) / len(train)
m = pointwise_metrics(test, [math.log(rate / (1 - rate))] * len(test))
print(f"| constant: train positive rate {rate:.3f} | {len(test)} | - | {m['logloss']:.4f} | {m['brier']:.4f} | {m['ece']:.4f} |")
print("\n| over seeds (mean ± std) | runs | AUC | log loss | Brier | ECE |\n|---|---|---|---|---|---|")
for name, runs in groups.items():
    if len(runs) > 1:
        cells = [mean_std([m[k] for m in runs]) for k in ("auc", "logloss", "brier", "ece")]
        print(f"| {name} | {len(runs)} | " + " | ".join("-" if math.isnan(a) else f"{a:.4f} ± {b:.4f}" for a, b in cells) + " |")
print("\n| search ranker | users | NDCG@10 | HR@10 | MRR |\n|---|---|---|---|---|")
for path in sorted(out.glob("eval-*/metrics.json")):
    m = json.loads(path.read_text())
    print(f"| {path.parent.name.removeprefix('eval-')} | {m['num_users']} | {m['ndcg@10']:.4f} | {m['hr@10']:.4f} | {m['mrr']:.4f} |")
n = 20  # random order, expected: the one purchase is equally likely at each of the n positions
ndcg, mrr = sum(1 / math.log2(p + 1) for p in range(1, 11)) / n, sum(1 / p for p in range(1, n + 1)) / n
print(f"| random order (expected) | - | {ndcg:.4f} | {10 / n:.4f} | {mrr:.4f} |")
# personalised minus query-only, per user, with a paired 95% bootstrap interval over users
print()
targets = {json.loads(line)["user_id"]: json.loads(line)["item_id"] for line in (out / "next" / "test.jsonl").open()}
def ndcg10(name):  # per user, with the same metric code as `evaluate --ranked`
    ndcg = {}
    for row in map(json.loads, (out / f"ranked-{name}.jsonl").open()):
        user = row["user_id"]
        ndcg[user] = ranking_metrics({user: row["items"]}, {user: {targets[user]}}, ks=(10,))["ndcg@10"]
    return ndcg
for model in ("0shot", f"{sys.argv[2]}shot"):
    personal, query = ndcg10(f"product_search_personal-{model}"), ndcg10(f"product_search-{model}")
    diff = np.array([personal[u] - query[u] for u in sorted(query)])
    draws = diff[np.random.default_rng(0).integers(0, len(diff), (2000, len(diff)))].mean(axis=1)
    low, high = np.percentile(draws, [2.5, 97.5])
    print(f"personalised minus query-only NDCG@10, {model}: {diff.mean():+.4f} "
          f"(95% paired bootstrap over {len(diff)} users [{low:+.3f}, {high:+.3f}])")
PY
