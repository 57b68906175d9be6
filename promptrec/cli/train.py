"""CLI verb `train`: fit a few-shot LoRA adapter (`lm.training`)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from promptrec.cli.common import (
    add_config_flags,
    add_data_flags,
    add_model_flags,
    command_parser,
    data_record,
    load_examples,
    load_valid,
    model_flags,
    output_path,
    resolve_path,
    valid_examples,
)
from promptrec.core.config import resolve
from promptrec.core.errors import ConfigError
from promptrec.core.files import refuse_overwrite
from promptrec.lm.training import TrainConfig, train, train_tasks
from promptrec.protocols.mixture import TaskPools, task_templates

EXAMPLES = """examples:
  promptrec train --data data/ml100k --template tallrec_plain --shots 64 --seed 0 --out adapters/plain-64-s0
  promptrec train --data train.json --valid valid.json --template alpaca --shots 16 --out adapters/a16
  promptrec train --data data/ml100k --config eval/configs/train.yaml --set lora.r=16 --set loss=bce --out adapters/x
  promptrec train --task data/ml100k:movie_rich --task data/ml-next:movie_next:2 --shots 96 --out adapters/mix
  accelerate launch --multi_gpu --num_processes 2 -m promptrec train --data data/ml100k --out adapters/ddp"""


# ---------------------------------------------------------------- train
def add_parser(sub) -> None:
    parser = command_parser(sub, "train", "Fit a LoRA adapter on K labelled examples (few-shot).", EXAMPLES)
    add_data_flags(
        parser, "prepared dir, .jsonl, Alpaca .json, a save_to_disk dir or hub:owner/name (training pool)", False
    )
    parser.add_argument(
        "--task",
        action="append",
        default=[],
        metavar="DATA:TEMPLATE[:WEIGHT]",
        help="a task of a mixture (repeatable; instead of --data/--template): K shots split by weight (default 1)",
    )
    parser.add_argument("--valid", help="validation data (default: the 'valid' split of --data)")
    parser.add_argument("--out", required=True, help="adapter output dir (PEFT safetensors + run record)")
    parser.add_argument("--template", help="template name or .j2 path (default tallrec_plain)")
    parser.add_argument("--shots", type=int, help="K examples sampled from the train split (default 64)")
    parser.add_argument("--seed", type=int, help="sampling/initialisation seed (default 0)")
    parser.add_argument(
        "--loss", choices=["lm", "bce"], help="default: bce for the hybrid, lm for the pure LLM (wide.mode=off)"
    )
    parser.add_argument("--batch-size", type=int, help="examples per optimizer step (default 8)")
    parser.add_argument(
        "--micro-batch-size", type=int, help="examples per forward/backward pass; less memory, same result (default 2)"
    )
    parser.add_argument("--score-batch-size", type=int, help="prompts per forward pass when validating (default 16)")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished adapter in --out")
    add_config_flags(parser)
    add_model_flags(parser)
    parser.set_defaults(handler=train_command)


def train_command(args) -> int:
    flags = {"template": args.template, "shots": args.shots, "seed": args.seed, "loss": args.loss} | model_flags(args)
    flags |= {"batch_size": args.batch_size, "micro_batch_size": args.micro_batch_size}
    flags |= {"score_batch_size": args.score_batch_size, "tasks": [task_flag(text) for text in args.task] or None}
    config = tasks_relative_to_file(resolve(TrainConfig, args.config, args.set, flags), args)
    refuse_overwrite(output_path(args.out, "dir"), "promptrec_run.json", args.overwrite)
    if config.tasks:
        result = train_tasks(config, mixture_pools(config, args), resolve_path(args.out), progress=True)
    else:
        result = train_one_task(config, args)
    if result.main_process:
        kind = (
            f"hybrid: LLM + wide part on {', '.join(result.wide_features)}"
            + (
                f", LLM weight {result.gate.llm_weight:.2f} from {result.gate.examples} valid examples"
                if result.gate
                else ""
            )  # fmt: skip
            if result.wide_features
            else f"pure LLM, {result.loss} loss"
        )
        print(
            f"saved adapter to {result.out_dir} ({kind}; best epoch {result.best_epoch}, "
            f"valid AUC {result.best_valid_auc:.4f}, {result.seconds:.0f} s)"
        )
    return 0


def train_one_task(config: TrainConfig, args):
    if not args.data:
        raise ConfigError("pass --data (one task) or --task DATA:TEMPLATE[:WEIGHT] (a mixture; repeatable)")
    data = resolve_path(args.data)
    pool = load_examples(data, "train", args.columns)
    valid = (
        load_valid(resolve_path(args.valid), args.columns) if args.valid else valid_examples(data, config, args.columns)
    )
    return train(config, pool, valid, resolve_path(args.out), data_record(data, "train"), progress=True)


def task_flag(text: str) -> dict:
    """--task DATA:TEMPLATE[:WEIGHT] as a `tasks` entry; DATA may hold ':' (hub:owner/name), so read from the right."""
    head, _, last = text.rpartition(":")
    weight = None
    try:
        weight = float(last)
        head, _, last = head.rpartition(":")
    except ValueError:
        pass
    if not head or not last:
        raise ConfigError(f"--task {text!r} is not DATA:TEMPLATE[:WEIGHT]; write e.g. --task data/ml100k:movie_rich:1")
    return {"data": head, "template": last} | ({"weight": weight} if weight is not None else {})


def tasks_relative_to_file(config: TrainConfig, args) -> TrainConfig:
    """Tasks from a --config file name their data (and .j2 templates) relative to that file."""
    if args.task or not args.config or not config.tasks:
        return config
    base = Path(args.config).parent

    def resolve_file(text: str) -> str:
        return text if os.path.isabs(text) or text.startswith("hub:") else os.path.normpath(base / text)

    tasks = tuple(
        replace(
            t,
            data=resolve_file(t.data),
            template=resolve_file(t.template) if t.template.endswith(".j2") or "/" in t.template else t.template,
        )
        for t in config.tasks
    )
    return replace(config, tasks=tasks)


def mixture_pools(config: TrainConfig, args) -> list[TaskPools]:
    """Each task's train pool, valid sample pool and data record (templates checked before any data loads)."""
    if args.data or args.valid:
        raise ConfigError("--task (or `tasks` in --config) names each task's data; drop --data and --valid")
    task_templates(config.tasks)
    pools = []
    for spec in config.tasks:
        data = resolve_path(spec.data)
        valid = valid_examples(data, config, args.columns)
        pools.append(TaskPools(spec, load_examples(data, "train", args.columns), valid, data_record(data, "train")))
    return pools
