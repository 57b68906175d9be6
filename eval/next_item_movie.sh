#!/usr/bin/env bash
# Next-item reranking on MovieLens-100K (leave-one-out) with the embedded model, on CPU:
# a retriever's top 20 per user (popularity and item-kNN), reranked zero-shot and after a 64-shot
# LoRA, beside the retriever's own order. NDCG/HR@10 over a seeded sample of USERS test users.
#   bash eval/next_item_movie.sh [ML100K_DIR] [RESULTS_DIR]
# USERS=0 ranks all 943 users; RETRIEVERS, SHOTS, SEED, LOSS narrow or change the grid.
# INCLUDE_TARGET=0 (default) keeps the retriever's list as it is: true metrics, the retriever's
# Recall@20 caps every ranker. INCLUDE_TARGET=1 forces the held-out item in (sampled protocol); with
# a popularity retriever the forced item is then nearly always the least popular candidate, so that
# protocol rewards spotting the odd one out (see the README), not knowing the user.
set -euo pipefail
SOURCE=${1:-../shared/data/ml-100k}
OUT=${2:-eval/results/next_item_movie}
USERS=${USERS:-200}
SHOTS=${SHOTS:-64}
SEED=${SEED:-0}
LOSS=${LOSS:-bce}
RETRIEVERS=${RETRIEVERS:-"popularity itemknn"}
TEMPLATE=${TEMPLATE:-movie_next}
INCLUDE=(); [ "${INCLUDE_TARGET:-0}" = 1 ] && INCLUDE=(--include-target)

mkdir -p "$OUT"
[ -f "$OUT/data/manifest.json" ] ||
  promptrec data prepare movielens --source "$SOURCE" --protocol next-item --out "$OUT/data"
adapter="$OUT/adapters/$TEMPLATE-${SHOTS}shot-$LOSS-seed$SEED"
[ -f "$adapter/promptrec_run.json" ] ||
  promptrec train --data "$OUT/data" --template "$TEMPLATE" --shots "$SHOTS" --seed "$SEED" --loss "$LOSS" \
    --set num_epochs=4 --set valid_examples=0 --set learning_rate=1e-3 --set wide.mode=off --out "$adapter"  # README rows: pure LLM
for retriever in $RETRIEVERS; do
  name="$retriever"; [ ${#INCLUDE[@]} -gt 0 ] && name="$retriever+target"  # forced-target lists are named apart
  cands="$OUT/candidates-$name-20.jsonl"
  [ -f "$cands" ] || promptrec candidates --data "$OUT/data" --retriever "$retriever" --num 20 \
    --max-users "$USERS" --seed "$SEED" "${INCLUDE[@]}" --out "$cands" --retriever-ranked "$OUT/ranked-$name-retriever.jsonl"
  promptrec evaluate --ranked "$OUT/ranked-$name-retriever.jsonl" --data "$OUT/data" \
    --out "$OUT/eval-$name-retriever" > /dev/null  # the retriever alone, its own order
  for model in zero-shot lora; do
    ranked="$OUT/ranked-$name-$model.jsonl"
    extra=(--template "$TEMPLATE"); [ "$model" = lora ] && extra=(--adapter "$adapter")
    [ -f "$ranked" ] || promptrec rank --data "$OUT/data" --candidates "$cands" "${extra[@]}" --out "$ranked" --resume
    promptrec evaluate --ranked "$ranked" --data "$OUT/data" --out "$OUT/eval-$name-$model" > /dev/null
  done
done
python - "$OUT" <<'PY'
import json, sys, pathlib
from promptrec.baselines.retrievers import Retriever
from promptrec.metrics.ranking import ranking_metrics
from promptrec.protocols.next_item import load_catalog
out = pathlib.Path(sys.argv[1])
print("| candidates | ranker | users | NDCG@10 | HR@10 | MRR |\n|---|---|---|---|---|---|")
for metrics in sorted(out.glob("eval-*/metrics.json")):
    m = json.loads(metrics.read_text())
    name, ranker = metrics.parent.name.removeprefix("eval-").split("-", 1)
    print(f"| {name} | {ranker} | {m['num_users']} | {m['ndcg@10']:.4f} | {m['hr@10']:.4f} | {m['mrr']:.4f} |")
# Sanity check of forced-target lists: order candidates least popular first, knowing nothing else.
catalog = load_catalog(out / "data")
targets = {user: {ex["item_id"]} for user, ex in catalog.contexts("test").items()}
popularity = Retriever(catalog.fit_interactions("test"), sorted(catalog.items), "popularity")
count = dict(zip(popularity.item_ids, popularity.popularity))
for cands in sorted(out.glob("candidates-*+target-20.jsonl")):
    rows = [json.loads(line) for line in cands.read_text().splitlines()]
    ranked = {r["user_id"]: sorted(r["candidates"], key=lambda i: (count[i], i)) for r in rows}
    m = ranking_metrics(ranked, targets)
    name = cands.name.removeprefix("candidates-").removesuffix("-20.jsonl")
    print(f"| {name} | least popular first | {m['num_users']} | {m['ndcg@10']:.4f} | {m['hr@10']:.4f} | {m['mrr']:.4f} |")
PY
