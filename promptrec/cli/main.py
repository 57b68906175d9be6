"""The `promptrec` command line: `main(argv)` returns the exit code so tests can call it directly.

Each verb lives in its own module of this package, with its `--help` examples; user mistakes
(`PromptrecError`) surface as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from promptrec.cli import baselines, data, evaluate, experiment, prompts, quickstart, rank, serve, train
from promptrec.cli.common import add_verbose_flag
from promptrec.core.errors import PromptrecError
from promptrec.lm.memory import release_large_buffers

COMMANDS = (prompts, data, train, evaluate, baselines, rank, serve, experiment, quickstart)  # in --help order


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="promptrec", description="Prompt-based LLM recommendation.")
    add_verbose_flag(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:
        quiet_third_party()
    release_large_buffers()  # freed tensor buffers go back to the OS (lm.memory): a lower peak RSS
    try:
        return args.handler(args) or 0
    except PromptrecError as error:
        print(f"promptrec: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the file system said no (permissions, full disk, a directory for a file)
        where = f"{error.filename}: " if error.filename else ""
        print(f"promptrec: error: {where}{error.strerror or error}; check the path, its permissions and free space",
              file=sys.stderr)  # fmt: skip
        return 2
    except KeyboardInterrupt:
        print("promptrec: interrupted", file=sys.stderr)
        return 130


# Libraries whose notices mean nothing to a user on a normal run (bitsandbytes' "kernels" package
# notice, transformers' deprecation FutureWarnings, accelerate's and peft's hints); -v shows them.
QUIETED_LOGGERS = ("bitsandbytes", "transformers", "accelerate", "peft", "torch", "datasets", "huggingface_hub")


def quiet_third_party() -> None:
    """Hide third-party warnings and log notices below ERROR for this process (promptrec's own stay)."""
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=r"promptrec(\.|$)")
    # transformers sets its library logger's level from this variable when it first logs, and reads the
    # hub's progress-bar switch ("Loading weights" bars) when it is imported; promptrec's own bars stay.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # already imported (a program calling main()): switch it off directly
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    for name in QUIETED_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
