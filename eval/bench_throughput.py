"""Benchmark: tokens/s of pointwise scoring and of training against a plain forward pass, fp32 and bf16.

For each dtype, on the same seeded test examples and template, in one run:
- `forward`: the roof, a plain batched forward pass of prompts of the examples' mean length (no padding,
  last-position logits, no grad), `--score-batch-size` rows per pass;
- `evaluate`: `Scorer.score` over the examples as `evaluate` runs it (render, guard, length-sorted
  batches, left padding), real prompt tokens per second and its share of the roof;
- `train`: forward + backward of the LoRA model on `--train-examples` of them as `train` runs it (BCE
  on the log-odds, micro-batches of 2), with and without gradient checkpointing;
- `agreement`: the bf16 scores' Pearson correlation and AUC against fp32's on the same examples (the
  tolerance `model.dtype=auto` would have to meet to pick bf16 on a CPU with AMX).
Shared-prefix ranking has its own benchmark (`eval/bench_rank.py`, which also prints its roof share).
Prints one JSON line per measurement.

    python eval/bench_throughput.py --data data/ml100k --template movie_verbal --examples 64
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from bench_rank import forward_throughput  # eval/ is on sys.path when this script runs
from sklearn.metrics import roc_auc_score

from promptrec.lm.config import ModelConfig
from promptrec.lm.loading import load_model
from promptrec.lm.scoring import Scorer
from promptrec.lm.training import TrainConfig, add_lora, batch_loss, enable_checkpointing
from promptrec.protocols.shots import select_examples
from promptrec.protocols.splits import load_split
from promptrec.templates.template import load_template


def train_tokens_per_s(model, tokenizer, template, sequences, labels, checkpointing: bool) -> float:
    if checkpointing:
        enable_checkpointing(model)
    elif hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()
    scorer = Scorer(model, tokenizer, template)
    model.train()
    batch_loss(model, scorer, sequences[:2], labels[:2], "bce").backward()  # warm-up (autograd, allocator)
    start = time.perf_counter()
    for i in range(0, len(sequences), 2):  # micro-batches of 2, as `train` runs them
        batch_loss(model, scorer, sequences[i : i + 2], labels[i : i + 2], "bce").backward()
    seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    model.eval()
    return sum(map(len, sequences)) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/ml100k")
    parser.add_argument("--template", default="movie_verbal")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--examples", type=int, default=64, help="seeded test examples scored")
    parser.add_argument("--train-examples", type=int, default=8)
    parser.add_argument("--score-batch-size", type=int, default=16)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    args = parser.parse_args()
    template = load_template(args.template)
    examples = select_examples(load_split(args.data, "test"), args.examples, 0)
    labels = [example["label"] for example in examples]
    reference = None
    for dtype in args.dtypes:
        model, tokenizer = load_model(ModelConfig(args.model, dtype, "cpu"))
        scorer = Scorer(model, tokenizer, template, score_batch_size=args.score_batch_size)
        sequences = [scorer.encode(example) for example in examples]
        tokens, length = sum(map(len, sequences)), int(np.mean([len(s) for s in sequences]))
        roof = forward_throughput(model, length, args.score_batch_size, max(1, args.examples // args.score_batch_size))
        start = time.perf_counter()
        scores = scorer.score(examples)
        evaluate = tokens / (time.perf_counter() - start)
        row = {"dtype": dtype, "template": args.template, "examples": len(examples), "mean_prompt_tokens": length}
        print(json.dumps(row | {"forward_tokens_per_s": round(roof, 1)}), flush=True)
        print(json.dumps(row | {"evaluate_tokens_per_s": round(evaluate, 1), "of_roof": round(evaluate / roof, 3)}))
        if reference is None:
            reference = scores
        else:
            agreement = {"pearson_vs_fp32": round(float(np.corrcoef(reference, scores)[0, 1]), 4)}
            agreement |= {
                "auc": round(roc_auc_score(labels, scores), 4),
                "auc_fp32": round(roc_auc_score(labels, reference), 4),
            }
            print(json.dumps(row | agreement), flush=True)
        lora = add_lora(model, TrainConfig(template=args.template))
        part = sequences[: args.train_examples]
        for checkpointing in (False, True):
            rate = train_tokens_per_s(lora, tokenizer, template, part, labels[: args.train_examples], checkpointing)
            print(json.dumps(row | {"train_checkpointing": checkpointing, "train_tokens_per_s": round(rate, 1),
                                    "of_roof": round(rate / roof, 3)}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
