"""A trained LoRA adapter as one object: its directory, its run record, its base model and template.

Anything that loads an adapter asks here: which base model it was trained on (a mismatch is a one-line
error before the slow model load), which template it was trained with, and the hash of its weights
(for ranking jobs' identities). PEFT attaches the weights. An adapter without promptrec's run record
(a foreign PEFT adapter) has an empty record: it works, but names neither base model nor template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from promptrec.baselines.wide import WidePart, load_wide
from promptrec.core.errors import ConfigError, ModelError, first_line
from promptrec.core.files import file_sha256
from promptrec.core.lazy import LazyModule
from promptrec.lm.config import ModelConfig

peft = LazyModule("peft")
safetensors = LazyModule("safetensors")

RUN_RECORD = "promptrec_run.json"  # written last by `train`, beside PEFT's files


@dataclass(frozen=True)
class Adapter:
    path: Path
    record: dict  # the run record; {} for a foreign PEFT adapter

    @classmethod
    def open(cls, path: str | Path) -> Adapter:
        path = Path(path)
        if path.name.endswith(".partial"):
            raise ModelError(
                f"{path} is an unfinished training run (it was stopped before it finished); "
                "run `promptrec train` again with the same --out"
            )
        if not path.is_dir():
            raise ModelError(f"{path}: no such adapter directory; pass the --out dir of `promptrec train`")
        if not (path / "adapter_config.json").exists():
            raise ModelError(
                f"{path} is not a PEFT adapter (no adapter_config.json); pass the --out dir of `promptrec train`"
            )
        record_path = path / RUN_RECORD
        try:
            record = json.loads(record_path.read_text()) if record_path.exists() else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelError(f"{record_path} is not valid JSON; retrain the adapter or restore the file") from None
        if (path / "adapter_model.bin").exists() and not (path / "adapter_model.safetensors").exists():
            bin_path, out = path / "adapter_model.bin", path / "adapter_model.safetensors"
            raise ModelError(
                f"{bin_path} is a pickle file; promptrec loads safetensors only (pickles can run code). Convert it "
                f'if you trust it: python -c "import torch; from safetensors.torch import save_file; '
                f"save_file(torch.load('{bin_path}', weights_only=True), '{out}')\""
            )
        return cls(path, record if isinstance(record, dict) else {})

    @property
    def finished_by_promptrec(self) -> bool:
        """Whether `promptrec train` finished this adapter (its run record is written last)."""
        return bool(self.record)

    @property
    def base_model(self) -> str | None:
        """The model spec the adapter was trained on (None if the record does not say)."""
        return self.record.get("model", {}).get("model")

    @property
    def template_name(self) -> str | None:
        """The one template it was trained with (None for a mixture of several tasks, or no record)."""
        return (self.record.get("template") or {}).get("name")

    @property
    def template_names(self) -> tuple[str, ...]:
        """The templates of every task it was trained on (a mixture lists several), in task order."""
        tasks = self.record.get("tasks") or []
        names = [(task.get("template") or {}).get("name") for task in tasks if isinstance(task, dict)]
        names = [name for name in names if name] or [self.template_name]
        return tuple(name for name in names if name)

    @property
    def wide(self) -> WidePart | None:
        """The hybrid's wide part saved beside the weights (None: a pure-LLM adapter)."""
        return load_wide(self.path)

    def weights_sha256(self) -> str | None:
        weights = sorted(self.path.glob("adapter_model.*"))
        return file_sha256(weights[0]) if weights else None

    def check_base(self, config: ModelConfig) -> None:
        """Refuse a base model other than the one the adapter was trained on, before any slow load."""
        if self.base_model is not None and self.base_model != config.model:
            raise ModelError(
                f"adapter {self.path} was trained on model {self.base_model!r}, not {config.model!r}; "
                f"pass --model {self.base_model}"
            )

    def attach(self, model, config: ModelConfig, trainable: bool = False, name: str = "default"):
        """Attach the weights as adapter `name`; a wrong base model is a clear error, not a shape traceback.

        On a model that already carries adapters (a `PeftModel`), the weights are added beside them.
        """
        self.check_base(config)
        try:
            if isinstance(model, peft.PeftModel):
                model.load_adapter(str(self.path), adapter_name=name, is_trainable=trainable)
                return model
            return peft.PeftModel.from_pretrained(model, str(self.path), adapter_name=name, is_trainable=trainable)
        except safetensors.SafetensorError as error:
            raise ModelError(
                f"{self.path}: the adapter weights are unreadable ({first_line(error)[:200]}); "
                "the file is truncated or corrupt: train the adapter again"
            ) from None
        except (RuntimeError, ValueError, KeyError) as error:
            raise ModelError(
                f"adapter {self.path} does not fit model {config.model!r} ({first_line(error)[:200]}); "
                "pass the --model it was trained on"
            ) from None
        except OSError as error:
            raise ModelError(
                f"{self.path}: cannot read the adapter ({first_line(error)[:150]}); check its files"
            ) from None


def open_adapter(path: str | Path | Adapter | None) -> Adapter | None:
    """An `Adapter` from a path (or None for zero-shot); an `Adapter` passes through."""
    if path is None or isinstance(path, Adapter):
        return path
    return Adapter.open(path)


def ensemble_names(adapters: list[Adapter | None]) -> list[str | None]:
    """The PEFT adapter name each member is attached under by `load_model` (None: the bare model)."""
    return [None] if adapters == [None] else [f"member{index}" for index in range(len(adapters))]


def open_adapters(paths) -> list[Adapter | None]:
    """Adapters of a seed ensemble (a path, an Adapter or a list of them); [None] for zero-shot."""
    if paths is None or isinstance(paths, (str, Path, Adapter)):
        return [open_adapter(paths)]
    if not paths:
        return [None]
    return [open_adapter(path) for path in paths]


def template_name_for(template: str | None, adapter: Adapter | list[Adapter | None] | None, default: str) -> str:
    """The template to render with: the one asked for, else the adapters' own, else `default`.

    The adapters of an ensemble must agree on their template (or the caller names one); an adapter
    trained on a mixture of several tasks needs the caller to name one (any of them, or another).
    """
    adapters = adapter if isinstance(adapter, list) else [adapter]
    trained = sorted({a.template_name for a in adapters if a is not None and a.template_name})
    if template:
        return template
    foreign = next((a for a in adapters if a is not None and not a.finished_by_promptrec), None)
    if foreign is not None:
        raise ConfigError(
            f"adapter {foreign.path} has no {RUN_RECORD}: it is not a finished `promptrec train` run (a foreign "
            "PEFT adapter, or a run that was stopped); pass --template to say which template it was trained with"
        )
    mixture = next((a for a in adapters if a is not None and len(a.template_names) > 1), None)
    if mixture is not None:
        names = mixture.template_names
        raise ConfigError(
            f"adapter {mixture.path} was trained on {len(names)} tasks (templates {', '.join(names)}); "
            f"pass --template with the one to score, e.g. --template {names[0]}"
        )
    if len(trained) > 1:
        raise ConfigError(f"the adapters were trained with different templates ({', '.join(trained)}); pass --template")
    return trained[0] if trained else default


def ensemble_base_model(adapters: list[Adapter | None]) -> str | None:
    """The base model all adapters were trained on (an ensemble mixing base models is an error)."""
    models = sorted({a.base_model for a in adapters if a is not None and a.base_model})
    if len(models) > 1:
        raise ConfigError(f"the adapters were trained on different models ({', '.join(models)}); ensemble one model")
    return models[0] if models else None
