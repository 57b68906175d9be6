"""A trained LoRA adapter as one concept: its directory, its run record, its base model and template.

Anything that loads an adapter asks here: which base model it was trained on (a mismatch is a one-line
error before the slow model load), which template it was trained with, and the hash of its weights
(for ranking jobs' identities). PEFT attaches the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from promptrec.core.errors import ModelError, first_line
from promptrec.core.files import file_sha256
from promptrec.lm.config import ModelConfig


def resolve_template_name(config, adapter_dir: str | Path | None, default: str = "tallrec_plain") -> str:
    if config.template:
        return config.template
    if adapter_dir is not None:
        trained = read_run_record(adapter_dir).get("template", {}).get("name")
        if trained:
            return trained
    return default


RUN_RECORD = "promptrec_run.json"


def read_run_record(adapter_dir: str | Path) -> dict:
    path = Path(adapter_dir) / RUN_RECORD
    return json.loads(path.read_text()) if path.exists() else {}


def check_adapter(adapter_dir: str | Path, config: ModelConfig) -> None:
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise ModelError(
            f"{adapter_dir} is not a PEFT adapter (no adapter_config.json); pass the --out dir of `promptrec train`"
        )
    trained_on = read_run_record(adapter_dir).get("model", {}).get("model")
    if trained_on is not None and trained_on != config.model:
        raise ModelError(
            f"adapter {adapter_dir} was trained on model {trained_on!r}, not {config.model!r}; "
            f"pass --model {trained_on}"
        )


def attach_adapter(model, adapter_dir: str | Path, config: ModelConfig, trainable: bool = False):
    """Attach a saved LoRA adapter; a wrong base model is a clear error, not a shape traceback."""
    from peft import PeftModel

    check_adapter(adapter_dir, config)
    try:
        return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)
    except (RuntimeError, ValueError, KeyError) as error:
        raise ModelError(
            f"adapter {adapter_dir} does not fit model {config.model!r} ({first_line(error)[:200]}); "
            "pass the --model it was trained on"
        ) from None


def adapter_sha256(adapter_dir) -> str | None:
    if adapter_dir is None:
        return None

    weights = sorted(Path(adapter_dir).glob("adapter_model.*"))
    return file_sha256(weights[0]) if weights else None
