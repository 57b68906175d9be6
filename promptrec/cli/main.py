"""The `promptrec` command line: `main(argv)` returns the exit code so tests can call it directly.

Each verb lives in its own module of this package, with its `--help` examples; user mistakes
(`PromptrecError`) surface as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from promptrec.cli import baselines, data, evaluate, experiment, prompts, quickstart, rank, train
from promptrec.core.errors import PromptrecError

COMMANDS = (prompts, data, train, evaluate, baselines, rank, experiment, quickstart)  # in --help order


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="promptrec", description="Prompt-based LLM recommendation.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
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
