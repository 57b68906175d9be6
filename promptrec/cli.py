"""The `promptrec` command line: prompts, data, train, evaluate, baselines, experiment, quickstart.

Handlers parse flags into typed configs and call library functions; user mistakes surface as one
line on stderr and exit code 2. `main(argv)` returns the exit code so tests can call it directly.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from promptrec.errors import PromptrecError

EXAMPLES = {
    "prompts": """examples:
  promptrec prompts list
  promptrec prompts render movie_rich --data data/ml100k --split test --index 0
  promptrec prompts check prompts/ my_templates/new.j2""",
    "data": """examples:
  promptrec data prepare movielens --source ../shared/data/ml-100k --out data/ml100k
  promptrec data prepare table --interactions ratings.csv --items items.csv --out data/mine
  promptrec data prepare amazon --reviews ../shared/data/amazon-gift_cards/Gift_Cards_5.json.gz \
      --meta ../shared/data/amazon-gift_cards/meta_Gift_Cards.json.gz --protocol search --out data/gift-search
  promptrec data prepare movielens --source ../shared/data/ml-100k --out data/ml100k-kg \
      --kg imdb=../shared/data/ml-kg/imdb-rkge/auxiliary.txt --kg dbpedia=../shared/data/ml-kg/dbpedia-ml1m""",
    "train": """examples:
  promptrec train --data data/ml100k --template tallrec_plain --shots 64 --seed 0 --out adapters/plain-64-s0
  promptrec train --data train.json --valid valid.json --template alpaca --shots 16 --out adapters/a16
  promptrec train --data data/ml100k --config eval/configs/train.yaml --set lora.r=16 --set loss=bce --out adapters/x
  accelerate launch --multi_gpu --num_processes 2 -m promptrec train --data data/ml100k --out adapters/ddp""",
    "evaluate": """examples:
  promptrec evaluate --data data/ml100k --out eval/results/zero-shot          # zero-shot
  promptrec evaluate --data data/ml100k --adapter adapters/plain-64-s0 --out eval/results/plain-64-s0
  promptrec evaluate --data test.json --template alpaca --limit 300 --out eval/results/alpaca
  promptrec evaluate --ranked runs/ranked.jsonl --data data/ml100k-next --out eval/results/ranked  # NDCG/HR/MRR""",
    "candidates": """examples:
  promptrec data prepare movielens --source ../shared/data/ml-100k --protocol next-item --out data/ml100k-next
  promptrec candidates --data data/ml100k-next --retriever itemknn --num 20 --out runs/cands-knn20.jsonl
  promptrec candidates --data data/ml100k-next --split valid --include-target --seed 1 --out runs/cands-valid.jsonl""",
    "rank": """examples:
  promptrec rank --data data/ml100k-next --candidates runs/cands-knn20.jsonl --top-k 10 --out runs/ranked.jsonl
  promptrec rank --data data/ml100k-next --candidates runs/cands-knn20.jsonl --adapter adapters/next-64 \
      --out runs/ranked-lora.jsonl --resume          # finish a run that crashed
  accelerate launch --multi_gpu --num_processes 2 -m promptrec rank --data data/ml100k-next \
      --candidates runs/cands-knn20.jsonl --quantization 4bit --out runs/ranked.jsonl""",
    "baselines": """examples:
  promptrec baselines --data data/ml100k --shots 64 --seeds 0 1 2 --out eval/results/baselines
  promptrec baselines --data data/ml100k --limit 300 --out eval/results/baselines-300""",
    "experiment": """examples:
  promptrec experiment --config eval/configs/tallrec_movie_cpu.yaml --dry-run     # list cells, check the grid
  promptrec experiment --config eval/configs/tallrec_movie_cpu.yaml               # run; rerun to resume
  promptrec experiment --config eval/configs/template_ab.yaml --set seeds=0,1 --set limit=100 --out runs/ab-quick""",
    "quickstart": """examples:
  promptrec quickstart --source ../shared/data/ml-100k --out runs/quickstart""",
}


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", help="HF id, local dir, .gguf file, or 'embedded' (default)")
    group.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"])
    group.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    group.add_argument("--quantization", choices=["none", "4bit", "8bit"], help="bitsandbytes quantization")


def model_flags(args) -> dict:
    return {
        "model": {"model": args.model, "dtype": args.dtype, "device": args.device, "quantization": args.quantization}
    }


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file of config keys (lowest precedence after defaults)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set lora.r=16 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    from promptrec import commands, data_commands, rank_commands

    parser = argparse.ArgumentParser(prog="promptrec", description="Prompt-based LLM recommendation.")
    sub = parser.add_subparsers(dest="command", required=True)
    commands.add_prompts_parser(sub, EXAMPLES["prompts"])
    data_commands.add_data_parser(sub, EXAMPLES["data"])
    commands.add_train_parser(sub, EXAMPLES["train"])
    commands.add_evaluate_parser(sub, EXAMPLES["evaluate"])
    commands.add_baselines_parser(sub, EXAMPLES["baselines"])
    rank_commands.add_candidates_parser(sub, EXAMPLES["candidates"])
    rank_commands.add_rank_parser(sub, EXAMPLES["rank"])
    commands.add_experiment_parser(sub, EXAMPLES["experiment"])
    commands.add_quickstart_parser(sub, EXAMPLES["quickstart"])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except PromptrecError as error:
        print(f"promptrec: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("promptrec: interrupted", file=sys.stderr)
        return 130


def print_json(data: dict) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def resolve_path(path: str) -> Path:
    return Path(path).expanduser()
