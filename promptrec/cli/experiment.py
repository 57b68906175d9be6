"""CLI verb `experiment`: a few-shot grid with baselines, resumable (`jobs.experiment`, `jobs.sweep`)."""

from __future__ import annotations

from promptrec.cli.common import add_config_flags, command_parser
from promptrec.jobs.experiment import load_experiment_config, plan_experiment
from promptrec.jobs.sweep import run_experiment

EXAMPLES = """examples:
  promptrec experiment --config eval/configs/tallrec_movie_cpu.yaml --dry-run     # list cells, check the grid
  promptrec experiment --config eval/configs/tallrec_movie_cpu.yaml               # run; rerun to resume
  promptrec experiment --config eval/configs/template_ab.yaml --set seeds=0,1 --set limit=100 --out runs/ab-quick"""


# ---------------------------------------------------------------- experiment
def add_parser(sub) -> None:
    parser = command_parser(
        sub,
        "experiment",
        "Run a few-shot grid (templates x shots x seeds x models) and classic baselines on one split, "
        "resumably; write a record per cell, summary.csv/.md and learning_curve.png.",
        EXAMPLES,
    )
    add_config_flags(parser)
    parser.add_argument("--out", help="run dir (default: `out` in the config)")
    parser.add_argument("--dry-run", action="store_true", help="check the grid and list cells (done / to run)")
    parser.add_argument("--overwrite", action="store_true", help="rerun cells whose config changed (default: refuse)")
    parser.set_defaults(handler=experiment_command)


def experiment_command(args) -> int:
    config = load_experiment_config(args.config, args.set, args.out)
    plan = plan_experiment(config, check_models=not args.dry_run)
    if args.dry_run:
        print("\n".join(plan.describe()))
        return 0
    records = run_experiment(plan, args.overwrite, lambda event: print(event.message, flush=True), progress=True)
    print((plan.out_dir / "summary.md").read_text(), end="")
    print(f"{len(records)} records in {plan.out_dir}")
    return 0
