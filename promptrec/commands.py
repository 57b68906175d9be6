"""Subcommand parsers and handlers for the CLI (one small handler per verb): prompts, train, evaluate,
quickstart, baselines and experiment, plus the `_parser` helper every verb module builds its parser with.

`data prepare` lives in `promptrec.data_commands`; `candidates`, `rank` and the `evaluate --ranked` handler in
`promptrec.rank_commands`. Flags shared by all verbs (model, config) are in `promptrec.cli`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from promptrec.cli import add_config_flags, add_model_flags, model_flags, print_json, resolve_path
from promptrec.errors import ConfigError, DataError


def _refuse_overwrite(out: Path, marker: str, overwrite: bool) -> None:
    """Finished outputs are never silently replaced: a rerun into the same dir must say so."""
    if (out / marker).exists() and not overwrite:
        raise ConfigError(f"{out} already holds a finished run ({marker}); pass --overwrite or choose another --out")


def _parser(sub, name: str, help_text: str, examples: str) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# ---------------------------------------------------------------- prompts
def add_prompts_parser(sub, examples: str) -> None:
    parser = _parser(sub, "prompts", "List, show, check and render prompt templates.", examples)
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", help="templates under prompts/").set_defaults(handler=prompts_list)
    show = verbs.add_parser("show", help="a template's front matter and body")
    show.add_argument("name")
    show.set_defaults(handler=prompts_show)
    check = verbs.add_parser("check", help="lint template files (default: all under prompts/)")
    check.add_argument("paths", nargs="*")
    check.set_defaults(handler=prompts_check)
    render = verbs.add_parser("render", help="print exactly what the model sees for one example")
    render.add_argument("name")
    render.add_argument("--data", required=True, help="prepared dir, .jsonl, or Alpaca .json")
    render.add_argument("--split", default="test")
    render.add_argument("--index", type=int, default=0)
    add_model_flags(render)
    render.set_defaults(handler=prompts_render)


def prompts_list(args) -> int:
    from promptrec.templates import list_templates

    for template in list_templates():
        chat = " chat" if template.chat else ""
        summary = template.description.splitlines()[0][:70]
        print(f"{template.name:24} v{template.version:<4} {template.kind}{chat:6} {summary}")
    return 0


def prompts_show(args) -> int:
    from promptrec.templates import load_template

    template = load_template(args.name)
    print(Path(template.path).read_text(), end="")
    return 0


def prompts_check(args) -> int:
    from promptrec.templates import PROMPTS_DIR, check_templates

    problems = check_templates([Path(p) for p in args.paths] or [PROMPTS_DIR])
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{len(problems)} problem(s)" if problems else "all templates ok")
    return 2 if problems else 0


def prompts_render(args) -> int:
    from promptrec.models import load_tokenizer
    from promptrec.protocols import load_split
    from promptrec.scoring import answer_ids, encode_prompt
    from promptrec.templates import load_template

    template = load_template(args.name)
    examples = load_split(resolve_path(args.data), args.split)
    if not 0 <= args.index < len(examples):
        raise DataError(
            f"--index {args.index} is out of range; split {args.split!r} has {len(examples)} examples "
            f"(0..{len(examples) - 1})"
        )
    tokenizer = load_tokenizer(model_config(args))
    text = template.render(examples[args.index], tokenizer)
    answers = answer_ids(tokenizer, template.choices, template.name)
    sys.stdout.write(text)
    print(
        f"\n----- {template.name} v{template.version} | example {examples[args.index].get('example_id')} | "
        f"{len(encode_prompt(tokenizer, text, template.chat))} prompt tokens | answers {template.choices} -> "
        f"{answers.positive} / {answers.negative} | label {examples[args.index].get('label')}",
        file=sys.stderr,
    )
    return 0


def model_config(args):
    from promptrec.config import resolve
    from promptrec.models import ModelConfig

    return resolve(ModelConfig, flags=model_flags(args)["model"])


# ---------------------------------------------------------------- train
def add_train_parser(sub, examples: str) -> None:
    parser = _parser(sub, "train", "Fit a LoRA adapter on K labelled examples (few-shot).", examples)
    parser.add_argument("--data", required=True, help="prepared dir, .jsonl, or Alpaca .json (training pool)")
    parser.add_argument("--valid", help="validation data (default: the 'valid' split of --data)")
    parser.add_argument("--out", required=True, help="adapter output dir (PEFT safetensors + run record)")
    parser.add_argument("--template", help="template name or .j2 path (default tallrec_plain)")
    parser.add_argument("--shots", type=int, help="K examples sampled from the train split (default 64)")
    parser.add_argument("--seed", type=int, help="sampling/initialisation seed (default 0)")
    parser.add_argument("--loss", choices=["lm", "bce"], help="lm (default) or bce on the yes/no log-odds")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished adapter in --out")
    add_config_flags(parser)
    add_model_flags(parser)
    parser.set_defaults(handler=train_command)


def train_command(args) -> int:
    from promptrec.config import resolve
    from promptrec.training import TrainConfig, train

    flags = {"template": args.template, "shots": args.shots, "seed": args.seed, "loss": args.loss} | model_flags(args)
    config = resolve(TrainConfig, args.config, args.set, flags)
    _refuse_overwrite(resolve_path(args.out), "promptrec_run.json", args.overwrite)
    data = resolve_path(args.data)
    pool = _load(data, "train")
    valid = _load(resolve_path(args.valid), "valid") if args.valid else _valid_split(data, config)
    result = train(config, pool, valid, resolve_path(args.out), _data_record(data, "train"), progress=True)
    if result.main_process:
        print(
            f"saved adapter to {result.out_dir} (best epoch {result.best_epoch}, "
            f"valid AUC {result.best_valid_auc:.4f}, {result.seconds:.0f} s)"
        )
    return 0


def _load(path: Path, split: str) -> list[dict]:
    from promptrec.protocols import load_split

    return load_split(path, split)


def _valid_split(data: Path, config) -> list[dict]:
    if config.valid_examples == 0:
        return []
    if data.is_file():
        raise ConfigError(
            f"--data {data} is a single file, so there is no valid split; "
            "pass --valid FILE or --set valid_examples=0 to train without early stopping"
        )
    return _load(data, "valid")


def _data_record(path: Path, split: str) -> dict:
    from promptrec.protocols import dataset_checksum

    return {"path": str(path), "split": split, "sha256": dataset_checksum(path, split)}


# ---------------------------------------------------------------- evaluate
def add_evaluate_parser(sub, examples: str) -> None:
    parser = _parser(sub, "evaluate", "Score a split and write metrics.json + predictions.jsonl.", examples)
    parser.add_argument("--data", required=True, help="prepared dir, .jsonl, or Alpaca .json")
    parser.add_argument("--split", help="split to score (default test)")
    parser.add_argument("--ranked", help="a `promptrec rank` output: report NDCG/HR/Recall@K and MRR instead")
    parser.add_argument("--adapter", help="LoRA adapter dir from `promptrec train` (omit for zero-shot)")
    parser.add_argument("--template", help="template (default: the adapter's, else tallrec_plain)")
    parser.add_argument("--limit", type=int, help="score a seeded sample of N examples (default all)")
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
    from promptrec.config import resolve
    from promptrec.evaluation import EvalConfig, evaluate
    from promptrec.models import read_run_record

    if args.ranked:
        from promptrec.rank_commands import evaluate_ranked_command

        return evaluate_ranked_command(args)
    adapter_model = read_run_record(args.adapter).get("model", {}).get("model") if args.adapter else None
    flags = {"split": args.split, "template": args.template, "limit": args.limit} | model_flags(args)
    flags |= {"probabilities": args.probabilities, "reliability_plot": args.reliability_plot}
    if adapter_model and args.model is None and not any(s.startswith("model.model=") for s in args.set):
        flags["model"]["model"] = adapter_model  # default to the base model the adapter was trained on
    config = resolve(EvalConfig, args.config, args.set, flags)
    _refuse_overwrite(resolve_path(args.out), "metrics.json", args.overwrite)
    data = resolve_path(args.data)
    examples = _load(data, config.split)
    metrics = evaluate(
        config, examples, resolve_path(args.out), args.adapter, _data_record(data, config.split), progress=True
    )
    print_json({k: metrics[k] for k in ("auc", "uauc", "logloss", "brier", "ece", "num_examples")})
    return 0


# ---------------------------------------------------------------- quickstart
def add_quickstart_parser(sub, examples: str) -> None:
    parser = _parser(
        sub,
        "quickstart",
        "Prepare MovieLens, evaluate zero-shot, train a few-shot adapter, "
        "evaluate it, and print a results table and one user's ranked list.",
        examples,
    )
    parser.add_argument("--source", required=True, help="directory of the raw MovieLens-100K files")
    parser.add_argument("--out", default="runs/quickstart", help="where data, adapter and results go")
    parser.add_argument("--template", default="tallrec_plain")
    parser.add_argument("--shots", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4, help="training epochs; the last is kept")
    parser.add_argument("--limit", type=int, default=200, help="test examples scored (seeded sample)")
    add_model_flags(parser)
    parser.set_defaults(handler=quickstart_command)


def quickstart_command(args) -> int:
    from promptrec import quickstart

    quickstart.run(
        resolve_path(args.source),
        resolve_path(args.out),
        args.template,
        args.shots,
        args.epochs,
        args.limit,
        model_config(args),
    )
    return 0


# ---------------------------------------------------------------- baselines
def add_baselines_parser(sub, examples: str) -> None:
    parser = _parser(
        sub,
        "baselines",
        "Classic baselines on the same split: history/item/user like-rates, and popularity, item-kNN, "
        "logistic regression and one-hot logistic regression on K shots and on the full train split.",
        examples,
    )
    parser.add_argument("--data", required=True, help="prepared dir from `promptrec data prepare`")
    parser.add_argument("--split", default="test")
    parser.add_argument("--shots", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--limit", type=int, default=0, help="score the same seeded sample as `evaluate --limit`")
    parser.add_argument("--out", required=True)
    parser.set_defaults(handler=baselines_command)


def baselines_command(args) -> int:
    from promptrec.baselines import run_baselines
    from promptrec.evaluation import select_examples

    data = resolve_path(args.data)
    test = select_examples(_load(data, args.split), args.limit, seed=0)
    results = run_baselines(_load(data, "train"), test, args.shots, args.seeds, resolve_path(args.out))
    for name, runs in results.items():
        aucs = [m["auc"] for m in runs]
        print(f"{name:24} AUC {sum(aucs) / len(aucs):.4f}" + (f" (mean of {len(aucs)} seeds)" if len(aucs) > 1 else ""))
    return 0


# ---------------------------------------------------------------- experiment
def add_experiment_parser(sub, examples: str) -> None:
    parser = _parser(
        sub,
        "experiment",
        "Run a few-shot grid (templates x shots x seeds x models) and classic baselines on one split, "
        "resumably; write a record per cell, summary.csv/.md and learning_curve.png.",
        examples,
    )
    add_config_flags(parser)
    parser.add_argument("--out", help="run dir (default: `out` in the config)")
    parser.add_argument("--dry-run", action="store_true", help="check the grid and list cells (done / to run)")
    parser.add_argument("--overwrite", action="store_true", help="rerun cells whose config changed (default: refuse)")
    parser.set_defaults(handler=experiment_command)


def experiment_command(args) -> int:
    from promptrec.experiment import load_experiment_config, plan_experiment
    from promptrec.sweep import run_experiment

    config = load_experiment_config(args.config, args.set, args.out)
    plan = plan_experiment(config, check_models=not args.dry_run)
    if args.dry_run:
        print("\n".join(plan.describe()))
        return 0
    records = run_experiment(plan, args.overwrite, lambda event: print(event.message, flush=True), progress=True)
    print((plan.out_dir / "summary.md").read_text(), end="")
    print(f"{len(records)} records in {plan.out_dir}")
    return 0
