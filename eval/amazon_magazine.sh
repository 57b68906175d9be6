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
FILES=(--reviews "$SOURCE/Magazine_Subscriptions_5.json.gz" --meta "$SOURCE/meta_Magazine_Subscriptions.json.gz")
TRAIN_SET=(--shots "$SHOTS" --seed 0 --set num_epochs=4 --set valid_examples=0 --set learning_rate=1e-3)
mkdir -p "$OUT"

# 1. pointwise + calibration (history of 4: few 5-core shoppers have 10 earlier reviews)
[ -f "$OUT/data/manifest.json" ] || promptrec data prepare amazon "${FILES[@]}" --history-len 4 --out "$OUT/data"
[ -f "$OUT/baselines/logreg_full/metrics.json" ] ||
  promptrec baselines --data "$OUT/data" --shots "$SHOTS" --seeds 0 --out "$OUT/baselines"
[ -f "$OUT/rich-0shot/metrics.json" ] ||
  promptrec evaluate --data "$OUT/data" --template product_rich --probabilities --out "$OUT/rich-0shot"
for loss in lm bce; do
  [ -f "$OUT/adapters/rich-$loss/promptrec_run.json" ] ||
    promptrec train --data "$OUT/data" --template product_rich --loss "$loss" "${TRAIN_SET[@]}" --out "$OUT/adapters/rich-$loss"
  [ -f "$OUT/rich-${SHOTS}shot-$loss/metrics.json" ] ||
    promptrec evaluate --data "$OUT/data" --adapter "$OUT/adapters/rich-$loss" --probabilities --out "$OUT/rich-${SHOTS}shot-$loss"
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
        promptrec train --data "$OUT/search" --template "$template" --loss bce "${TRAIN_SET[@]}" --out "$adapter"
      extra=(--adapter "$adapter")
    fi
    ranked="$OUT/ranked-$template-$model.jsonl"
    [ -f "$ranked" ] || promptrec rank --data "$OUT/next" --candidates "$cands" "${extra[@]}" --out "$ranked" --resume
    promptrec evaluate --ranked "$ranked" --data "$OUT/next" --out "$OUT/eval-$template-$model" > /dev/null
  done
done
python - "$OUT" <<'PY'
import json, sys, pathlib
from promptrec.metrics import auc_interval
out = pathlib.Path(sys.argv[1])
print("| pointwise run | examples | AUC [95% bootstrap] | log loss | Brier | ECE |\n|---|---|---|---|---|---|")
for path in sorted(out.glob("rich-*/metrics.json")) + sorted(out.glob("baselines/*/metrics.json")):
    m = json.loads(path.read_text())
    rows = [json.loads(line) for line in (path.parent / "predictions.jsonl").open()]
    low, high = auc_interval([r["label"] for r in rows], [r["score"] for r in rows])
    name = path.parent.name if path.parent.parent == out else "baseline " + path.parent.name
    print(f"| {name} | {m['num_examples']} | {m['auc']:.4f} [{low:.2f}, {high:.2f}] | {m['logloss']:.4f} | "
          f"{m.get('brier', float('nan')):.4f} | {m.get('ece', float('nan')):.4f} |")
print("\n| search ranker | users | NDCG@10 | HR@10 | MRR |\n|---|---|---|---|---|")
for path in sorted(out.glob("eval-*/metrics.json")):
    m = json.loads(path.read_text())
    print(f"| {path.parent.name.removeprefix('eval-')} | {m['num_users']} | {m['ndcg@10']:.4f} | {m['hr@10']:.4f} | {m['mrr']:.4f} |")
PY
