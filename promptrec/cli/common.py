"""Flags and helpers every CLI verb shares: model and config flags, the parser factory, data loading."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from promptrec.core.config import resolve
from promptrec.core.errors import ConfigError
from promptrec.core.files import check_writable
from promptrec.lm.adapter import Adapter, ensemble_base_model
from promptrec.lm.config import ModelConfig
from promptrec.protocols.examples import Examples
from promptrec.protocols.external import is_external, is_single_split, parse_columns
from promptrec.protocols.splits import dataset_checksum, load_split


def adapter_defaults(adapters: list[Adapter | None]) -> dict:
    """Config defaults adapters imply: their base model (any --config, --set or --model still wins)."""
    base_model = ensemble_base_model(adapters)
    return {"model": {"model": base_model}} if base_model else {}


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


def print_json(data: dict) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def resolve_path(path: str) -> Path:
    return Path(path).expanduser()


def output_path(path: str, kind: str) -> Path:
    """An output path (`kind` "file" or "dir"), checked writable before any long work starts."""
    resolved = resolve_path(path)
    check_writable(resolved, kind)
    return resolved


def command_parser(sub, name: str, help_text: str, examples: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_verbose_flag(parser)
    return parser


def add_verbose_flag(parser: argparse.ArgumentParser, default=argparse.SUPPRESS) -> None:
    """-v before or after the command; only the top-level parser sets the default (False)."""
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="show third-party warnings and notices"
    )


def model_config(args):
    return resolve(ModelConfig, flags=model_flags(args)["model"])


def add_data_flags(parser: argparse.ArgumentParser, data_help: str, required: bool = True) -> None:
    """--data, and --columns for a user's own `datasets` data (protocols.external)."""
    parser.add_argument("--data", required=required, help=data_help)
    parser.add_argument(
        "--columns",
        metavar="NAME=COLUMN,...",
        help="for a save_to_disk dir or hub:owner/name: which column feeds each name, e.g. label=clicked,user_id=uid",
    )


def load_examples(path: Path, split: str, columns: str | None = None) -> Examples:
    return load_split(path, split, parse_columns(columns))


def load_valid(path: Path, columns: str | None) -> Examples:
    """`train --valid`: --columns (meant for --data) applies to it only when it is `datasets` data too."""
    return load_examples(path, "valid", columns if is_external(path) else None)


def valid_examples(data: Path, config, columns: str | None = None) -> list[dict] | Examples:
    if config.valid_examples == 0:
        return []
    if data.is_file() or is_single_split(data):
        kind = "one saved Dataset" if data.is_dir() else "a single file"
        raise ConfigError(
            f"--data {data} is {kind}, so there is no valid split; "
            "pass --valid FILE or --set valid_examples=0 to train without early stopping"
        )
    prepared = (data / "manifest.json").is_file()
    if prepared and not any((data / f"valid{suffix}").is_file() for suffix in (".jsonl", ".json")):
        raise ConfigError(  # e.g. an import of a train file only
            f"--data {data} has no valid split (valid.jsonl); "
            "pass --valid FILE or --set valid_examples=0 to train without early stopping"
        )
    return load_examples(data, "valid", columns)


def data_record(path: Path, split: str) -> dict:
    return {"path": str(path), "split": split, "sha256": dataset_checksum(path, split)}
