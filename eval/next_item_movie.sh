#!/usr/bin/env bash
# Next-item reranking on MovieLens-100K (leave-one-out) with the embedded model, on CPU:
# a retriever's top 20 per user (popularity and item-kNN), reranked zero-shot and after a 64-shot
# LoRA, beside the retriever's own order. NDCG/HR@10 over a seeded sample of USERS test users.
#   bash eval/next_item_movie.sh [ML100K_DIR] [RESULTS_DIR]
# USERS=0 ranks all 943 users; RETRIEVERS, SHOTS, SEED, LOSS narrow or change the grid.
set -euo pipefail
SOURCE=${1:-../shared/data/ml-100k}
OUT=${2:-eval/results/next_item_movie}
USERS=${USERS:-200}
SHOTS=${SHOTS:-64}
SEED=${SEED:-0}
LOSS=${LOSS:-bce}
RETRIEVERS=${RETRIEVERS:-"popularity itemknn"}
TEMPLATE=${TEMPLATE:-movie_next}

mkdir -p "$OUT"
[ -f "$OUT/data/manifest.json" ] ||
  promptrec data prepare movielens --source "$SOURCE" --protocol next-item --out "$OUT/data"
adapter="$OUT/adapters/$TEMPLATE-${SHOTS}shot-$LOSS-seed$SEED"
[ -f "$adapter/promptrec_run.json" ] ||
  promptrec train --data "$OUT/data" --template "$TEMPLATE" --shots "$SHOTS" --seed "$SEED" --loss "$LOSS" \
    --set num_epochs=4 --set valid_examples=0 --set learning_rate=1e-3 --out "$adapter"
for retriever in $RETRIEVERS; do
  cands="$OUT/candidates-$retriever-20.jsonl"
  [ -f "$cands" ] || promptrec candidates --data "$OUT/data" --retriever "$retriever" --num 20 \
    --max-users "$USERS" --seed "$SEED" --out "$cands"
  # The retriever alone: its own order, written as a ranked file by the same evaluator.
  python -c "import json,sys; from promptrec.candidates import Retriever; from promptrec.next_item import load_catalog
c=load_catalog(sys.argv[1]); r=Retriever(c.fit_interactions('test'), sorted(c.items), sys.argv[2])
rows=[json.loads(l) for l in open(sys.argv[3])]
open(sys.argv[4],'w').write(''.join(json.dumps({'user_id':x['user_id'],'items':r.top(x['user_id'],20)})+'\n' for x in rows))" \
    "$OUT/data" "$retriever" "$cands" "$OUT/retriever-$retriever.jsonl"
  promptrec evaluate --ranked "$OUT/retriever-$retriever.jsonl" --data "$OUT/data" --out "$OUT/eval-retriever-$retriever" > /dev/null
  for model in zero-shot lora; do
    ranked="$OUT/ranked-$retriever-$model.jsonl"
    extra=(--template "$TEMPLATE"); [ "$model" = lora ] && extra=(--adapter "$adapter")
    [ -f "$ranked" ] || promptrec rank --data "$OUT/data" --candidates "$cands" "${extra[@]}" --out "$ranked" --resume
    promptrec evaluate --ranked "$ranked" --data "$OUT/data" --out "$OUT/eval-$retriever-$model" > /dev/null
  done
done
python - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print("| retriever | ranker | users | NDCG@10 | HR@10 | MRR |\n|---|---|---|---|---|---|")
for metrics in sorted(out.glob("eval-*/metrics.json")):
    m = json.loads(metrics.read_text()); name = metrics.parent.name.removeprefix("eval-")
    retriever, ranker = (name.split("-", 1) + ["retriever order"])[:2] if not name.startswith("retriever-") else (name.split("-", 1)[1], "retriever order")
    print(f"| {retriever} | {ranker} | {m['num_users']} | {m['ndcg@10']:.4f} | {m['hr@10']:.4f} | {m['mrr']:.4f} |")
PY
