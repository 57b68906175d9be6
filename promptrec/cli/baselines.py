"""CLI verb `baselines`: classic baselines on the same split and shots as the LLM runs."""

from __future__ import annotations

from promptrec.baselines.classic import run_baselines
from promptrec.cli.common import add_data_flags, command_parser, load_examples, output_path, resolve_path
from promptrec.protocols.shots import select_examples

EXAMPLES = """examples:
  promptrec baselines --data data/ml100k --shots 64 --seeds 0 1 2 --out eval/results/baselines
  promptrec baselines --data data/ml100k --limit 300 --out eval/results/baselines-300"""


# ---------------------------------------------------------------- baselines
def add_parser(sub) -> None:
    parser = command_parser(
        sub,
        "baselines",
        "Classic baselines on the same split: history/item/user like-rates, and popularity, item-kNN, "
        "logistic regression and one-hot logistic regression on K shots and on the full train split.",
        EXAMPLES,
    )
    add_data_flags(parser, "prepared dir from `promptrec data prepare`, a save_to_disk dir, or hub:owner/name")
    parser.add_argument("--split", default="test")
    parser.add_argument("--shots", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--limit", type=int, default=0, help="score the same seeded sample as `evaluate --limit`")
    parser.add_argument("--out", required=True)
    parser.set_defaults(handler=baselines_command)


def baselines_command(args) -> int:
    data = resolve_path(args.data)
    test = select_examples(load_examples(data, args.split, args.columns), args.limit, seed=0)
    train = load_examples(data, "train", args.columns)
    results = run_baselines(train, test, args.shots, args.seeds, output_path(args.out, "dir"))
    for name, runs in results.items():
        aucs = [m["auc"] for m in runs]
        print(f"{name:24} AUC {sum(aucs) / len(aucs):.4f}" + (f" (mean of {len(aucs)} seeds)" if len(aucs) > 1 else ""))
    return 0
