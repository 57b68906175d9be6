#!/usr/bin/env bash
# One adapter for three tasks vs one adapter per task, at equal total shots (P5-style multi-task LoRA):
#   ctr     MovieLens-100K, TALLRec split, movie_rich: AUC on the test split;
#   next    MovieLens-100K next-item, movie_next: reranking a popularity retriever's top 20 with the
#           held-out movie forced in, NDCG@10;
#   search  Amazon Magazine product search, product_search: reranking the query-overlap top 20, NDCG@10.
# Per task, one adapter on SHOTS shots of that task (3 x SHOTS shots over three adapters); the mixture,
# one adapter on 3 x SHOTS shots, weights 1:1:1 (SHOTS per task), scored on each task with its template.
# Both sides: pure LLM (a mixture has no wide part, so wide.mode=off everywhere), same loss, epochs
# (each shot seen num_epochs times), learning rate and seeds. Hours on CPU: run it where a GPU is.
#   bash eval/multitask.sh [ML100K_DIR] [AMAZON_DIR] [RESULTS_DIR]
# SHOTS, SEEDS, USERS (ranked users per task), LIMIT (seeded ctr test examples, 0 = all), LOSS change
# the grid. The README's CPU figures: SHOTS=32 SEEDS=0 USERS=50 LIMIT=300.
set -euo pipefail
ML=${1:-../shared/data/ml-100k}
AMAZON=${2:-../shared/data/amazon-magazine_subscriptions}
OUT=${3:-eval/results/multitask}
SHOTS=${SHOTS:-64}
SEEDS=${SEEDS:-"0 1 2"}
USERS=${USERS:-200}
LIMIT=${LIMIT:-0}
LOSS=${LOSS:-bce}
TRAIN_SET=(--loss "$LOSS" --set num_epochs=4 --set valid_examples=0 --set learning_rate=1e-3 --set wide.mode=off)
FILES=(--reviews "$AMAZON/Magazine_Subscriptions_5.json.gz" --meta "$AMAZON/meta_Magazine_Subscriptions.json.gz")
declare -A DATA=([ctr]="$OUT/ctr" [next]="$OUT/next" [search]="$OUT/search")
declare -A TEMPLATE=([ctr]=movie_rich [next]=movie_next [search]=product_search)
mkdir -p "$OUT/eval"

prepare() {  # prepare DIR ARGS...: `promptrec data prepare ARGS --out DIR` unless done
  [ -f "$1/manifest.json" ] || promptrec data prepare "${@:2}" --out "$1"
}
prepare "$OUT/ctr" movielens --source "$ML"
prepare "$OUT/next" movielens --source "$ML" --protocol next-item
prepare "$OUT/amazon-next" amazon "${FILES[@]}" --protocol next-item --history-len 4  # search candidates
prepare "$OUT/search" amazon "${FILES[@]}" --protocol search --history-len 4  # search shots (with queries)
# the held-out movie is forced into each list (--include-target): every user measures the reranking
[ -f "$OUT/cands-next.jsonl" ] || promptrec candidates --data "$OUT/next" --retriever popularity --num 20 \
  --include-target --max-users "$USERS" --seed 0 --out "$OUT/cands-next.jsonl"
[ -f "$OUT/cands-search.jsonl" ] || promptrec candidates --data "$OUT/amazon-next" --retriever search --num 20 \
  --max-users "$USERS" --seed 0 --out "$OUT/cands-search.jsonl"

rank_and_evaluate() {  # rank_and_evaluate ADAPTER TEMPLATE DATA CANDIDATES RESULTS
  [ -f "$5.ranked.jsonl" ] ||
    promptrec rank --data "$3" --candidates "$4" --adapter "$1" --template "$2" --out "$5.ranked.jsonl" --resume
  promptrec evaluate --ranked "$5.ranked.jsonl" --data "$3" --out "$5" --overwrite > /dev/null
}
score() {  # score ADAPTER TASK NAME: the task's test metrics in $OUT/eval/NAME-TASK
  local results="$OUT/eval/$3-$2"
  [ -f "$results/metrics.json" ] && return
  case $2 in
    ctr) promptrec evaluate --data "$OUT/ctr" --adapter "$1" --template movie_rich --limit "$LIMIT" --out "$results" > /dev/null ;;
    next) rank_and_evaluate "$1" movie_next "$OUT/next" "$OUT/cands-next.jsonl" "$results" ;;
    search) rank_and_evaluate "$1" product_search "$OUT/amazon-next" "$OUT/cands-search.jsonl" "$results" ;;
  esac
}

for seed in $SEEDS; do
  tasks=()
  for task in ctr next search; do
    adapter="$OUT/adapters/single-$task-seed$seed"
    [ -f "$adapter/promptrec_run.json" ] ||
      promptrec train --data "${DATA[$task]}" --template "${TEMPLATE[$task]}" --shots "$SHOTS" --seed "$seed" \
        "${TRAIN_SET[@]}" --out "$adapter"
    score "$adapter" "$task" "single-seed$seed"
    tasks+=(--task "${DATA[$task]}:${TEMPLATE[$task]}:1")
  done
  adapter="$OUT/adapters/mixture-seed$seed"
  [ -f "$adapter/promptrec_run.json" ] ||
    promptrec train "${tasks[@]}" --shots $((3 * SHOTS)) --seed "$seed" "${TRAIN_SET[@]}" --out "$adapter"
  for task in ctr next search; do score "$adapter" "$task" "mixture-seed$seed"; done
done

python - "$OUT" <<'PY'
import json, pathlib, re, sys
from collections import defaultdict
import numpy as np
out = pathlib.Path(sys.argv[1])
metric = {"ctr": "auc", "next": "ndcg@10", "search": "ndcg@10"}
values = defaultdict(list)
for path in sorted(out.glob("eval/*/metrics.json")):
    kind, task = re.fullmatch(r"(single|mixture)-seed\d+-(\w+)", path.parent.name).groups()
    values[kind, task].append(json.loads(path.read_text())[metric[task]])
print("| task (metric) | one adapter per task | one multi-task adapter | seeds |\n|---|---|---|---|")
for task, name in metric.items():
    cells = [f"{np.mean(v):.4f} +/- {np.std(v):.4f}" if (v := values[kind, task]) else "-" for kind in ("single", "mixture")]
    print(f"| {task} ({name}) | {cells[0]} | {cells[1]} | {len(values['mixture', task])} |")
PY
