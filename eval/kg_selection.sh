#!/usr/bin/env bash
# Fact and link selection by rarity vs by KG-embedding relevance (issue 16), same template, budget,
# shots and seeds (eval/configs/kg_selection.yaml). About 45 minutes on 2 CPU cores.
#   bash eval/kg_selection.sh [ML100K_DIR] [ML_KG_DIR]
set -euo pipefail
ML=${1:-../shared/data/ml-100k}
KG=${2:-../shared/data/ml-kg}
SOURCES=(--kg "imdb=$KG/imdb-rkge/auxiliary.txt" --kg "dbpedia=$KG/dbpedia-ml1m")
[ -f data/ml100k-kg/manifest.json ] || promptrec data prepare movielens --source "$ML" --out data/ml100k-kg "${SOURCES[@]}"
[ -f data/ml100k-kg-emb/manifest.json ] ||
  promptrec data prepare movielens --source "$ML" --out data/ml100k-kg-emb --kg-rank-by embedding "${SOURCES[@]}"
promptrec experiment --config eval/configs/kg_selection.yaml
promptrec experiment --config eval/configs/kg_selection.yaml \
  --set data=data/ml100k-kg-emb --set out=eval/results/kg_selection/embedding
for selection in rarity embedding; do
  echo "## facts by $selection"
  cat "eval/results/kg_selection/$selection/summary.md"
done
