"""CLI verb `quickstart`: the newcomer's tour on the embedded model (`jobs.quickstart`)."""

from __future__ import annotations

from promptrec.cli.common import add_model_flags, command_parser, model_config, resolve_path
from promptrec.jobs.quickstart import run as run_quickstart

EXAMPLES = """examples:
  promptrec quickstart --source ../shared/data/ml-100k --out runs/quickstart"""


# ---------------------------------------------------------------- quickstart
def add_parser(sub) -> None:
    parser = command_parser(
        sub,
        "quickstart",
        "Prepare MovieLens, evaluate zero-shot, train a few-shot adapter, "
        "evaluate it, and print a results table and one user's ranked list.",
        EXAMPLES,
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
    run_quickstart(
        resolve_path(args.source),
        resolve_path(args.out),
        args.template,
        args.shots,
        args.epochs,
        args.limit,
        model_config(args),
    )
    return 0
