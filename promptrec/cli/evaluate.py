"""CLI verb `evaluate`: pointwise metrics of a split, or ranking metrics of a `rank` output (`--ranked`)."""

from __future__ import annotations

import argparse

from promptrec.cli.common import (
    adapter_defaults,
    add_config_flags,
    add_data_flags,
    add_model_flags,
    command_parser,
    data_record,
    load_examples,
    model_flags,
    output_path,
    print_json,
    resolve_path,
)
from promptrec.core.config import resolve
from promptrec.core.errors import ConfigError
from promptrec.core.files import refuse_overwrite
from promptrec.jobs.evaluate import EvalConfig, evaluate
from promptrec.jobs.ranked_metrics import evaluate_ranked
from promptrec.lm.adapter import open_adapters

EXAMPLES = """examples:
  promptrec evaluate --data data/ml100k --out eval/results/zero-shot          # zero-shot
  promptrec evaluate --data data/ml100k --adapter adapters/plain-64-s0 --out eval/results/plain-64-s0
  promptrec evaluate --data test.json --template alpaca --limit 300 --out eval/results/alpaca
  promptrec evaluate --data data/ml100k --adapter adapters/s0 adapters/s1 adapters/s2 --out eval/results/ens  # seeds
  promptrec evaluate --ranked runs/ranked.jsonl --data data/ml100k-next --out eval/results/ranked  # NDCG/HR/MRR"""


# ---------------------------------------------------------------- evaluate
def add_parser(sub) -> None:
    parser = command_parser(sub, "evaluate", "Score a split and write metrics.json + predictions.jsonl.", EXAMPLES)
    add_data_flags(parser, "prepared dir, .jsonl, Alpaca .json, a save_to_disk dir, or hub:owner/name")
    parser.add_argument("--split", help="split to score (default test)")
    parser.add_argument("--ranked", help="a `promptrec rank` output: report NDCG/HR/Recall@K and MRR instead")
    parser.add_argument(
        "--adapter", nargs="+", help="adapter dir from `promptrec train` (omit: zero-shot; several: a seed ensemble)"
    )
    parser.add_argument("--template", help="template (default: the adapter's, else tallrec_plain)")
    parser.add_argument("--limit", type=int, help="score a seeded sample of N examples (default all)")
    parser.add_argument("--score-batch-size", type=int, help="prompts per forward pass (default 16)")
    parser.add_argument(
        "--probabilities", action="store_true", default=None, help='add "probability" = sigmoid(score) to predictions'
    )
    parser.add_argument(
        "--reliability-plot",
        action=argparse.BooleanOptionalAction,
        help="write reliability.png, a calibration diagram (default on; needs matplotlib)",
    )
    parser.add_argument("--out", required=True, help="results dir")
    parser.add_argument("--overwrite", action="store_true", help="replace finished results in --out")
    add_config_flags(parser)
    add_model_flags(parser)
    parser.set_defaults(handler=evaluate_command)


def evaluate_command(args) -> int:
    if args.ranked:
        return evaluate_ranked_command(args)
    adapters = open_adapters(args.adapter)
    flags = {"split": args.split, "template": args.template, "limit": args.limit} | model_flags(args)
    flags |= {"probabilities": args.probabilities, "reliability_plot": args.reliability_plot}
    flags["score_batch_size"] = args.score_batch_size
    config = resolve(EvalConfig, args.config, args.set, flags, defaults=adapter_defaults(adapters))
    refuse_overwrite(output_path(args.out, "dir"), "metrics.json", args.overwrite)
    data = resolve_path(args.data)
    examples = load_examples(data, config.split, args.columns)
    metrics = evaluate(
        config, examples, resolve_path(args.out), adapters, data_record(data, config.split), progress=True
    )
    print_json({k: metrics[k] for k in ("auc", "uauc", "logloss", "brier", "ece", "num_examples")})
    return 0


# Flags of pointwise scoring that mean nothing for a finished ranked file: refused, never silently ignored.
POINTWISE_ONLY = ("adapter", "template", "limit", "probabilities", "reliability_plot", "score_batch_size", "config")


def evaluate_ranked_command(args) -> int:
    given = [name for name in POINTWISE_ONLY if getattr(args, name) not in (None, False)]
    given += ["set"] if args.set else []
    given += [f"model flags ({flag})" for flag in ("model", "dtype", "device", "quantization") if getattr(args, flag)]
    if given:
        flag = given[0] if given[0].startswith("model") else "--" + given[0].replace("_", "-")
        raise ConfigError(
            f"evaluate --ranked reads a finished ranked file, so {flag} has no effect there; drop it "
            "(the adapter and template are chosen when you run `promptrec rank`)"
        )
    out = output_path(args.out, "dir")
    refuse_overwrite(out, "metrics.json", args.overwrite)
    metrics = evaluate_ranked(resolve_path(args.ranked), resolve_path(args.data), args.split or "test", out)
    print_json(metrics)
    return 0
