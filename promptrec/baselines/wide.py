"""The wide part of the hybrid scorer: a logistic layer over named example features.

score(x) = LLM log-odds (log P(yes) - log P(no)) + w . standardize(f(x)) + b. The features are the
leak-free facts an example carries (`protocols.features`); their scaling (mean, scale, and the fill
value for a missing feature) is fitted on the K training shots only. The part is saved beside the
adapter as `wide.safetensors` (tensors: mean, scale, fill, weight, bias; the feature names in its
metadata) and read back by everything that loads the adapter, so `evaluate`, `rank` and `experiment`
score with it whenever the adapter carries it. numpy only (no torch): it never slows the model's forward
pass. Alone, fitted on the same shots, it is the `wide` baseline (`baselines.classic`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from promptrec.core.errors import ConfigError, ModelError
from promptrec.protocols.features import check_feature_names, feature_row

WIDE_FILE = "wide.safetensors"


@dataclass(frozen=True)
class WidePart:
    names: tuple[str, ...]  # feature names, in column order
    mean: np.ndarray  # (features,) fitted on the shots
    scale: np.ndarray  # (features,) standard deviation on the shots (1 where constant)
    fill: np.ndarray  # (features,) value used where an example lacks the feature (the shots' mean)
    weight: np.ndarray  # (features,) on standardized features
    bias: float

    def standardized(self, examples: Sequence[dict]) -> np.ndarray:
        """(examples, features) matrix of standardized features, missing values filled."""
        raw = np.array([feature_row(example, self.names) for example in examples], dtype=object).reshape(
            len(examples), len(self.names)
        )
        missing = np.equal(raw, None)
        values = np.where(missing, self.fill, raw).astype(np.float64)
        return (values - self.mean) / self.scale

    def logits(self, examples: Sequence[dict]) -> np.ndarray:
        """The wide logit of each example: w . standardized f(x) + b."""
        if not examples:
            return np.zeros(0)
        return self.standardized(examples) @ self.weight + self.bias

    def with_parameters(self, weight: np.ndarray, bias: float) -> WidePart:
        return WidePart(self.names, self.mean, self.scale, self.fill, np.asarray(weight, np.float64), float(bias))

    def record(self) -> dict:
        """What the run record says of the part (the numbers themselves are in wide.safetensors)."""
        return {"file": WIDE_FILE, "features": list(self.names), "weight": self.weight.tolist(), "bias": self.bias}

    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        tensors = {"mean": self.mean, "scale": self.scale, "fill": self.fill, "weight": self.weight}
        tensors = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in tensors.items()}
        tensors["bias"] = np.array([self.bias], dtype=np.float64)
        save_file(tensors, str(Path(directory) / WIDE_FILE), metadata={"features": json.dumps(list(self.names))})


def fit_wide(examples: Sequence[dict], labels: Sequence[int], names: Sequence[str], l2: float) -> WidePart:
    """Standardize on `examples` (the shots) and fit an L2 logistic regression (C = 1 / l2)."""
    from sklearn.linear_model import LogisticRegression

    check_feature_names(names)
    if len(set(labels)) < 2:
        raise ConfigError(f"the {len(labels)} shots all have label {labels[0]}; the wide part needs both labels")
    raw = np.array([feature_row(example, names) for example in examples], dtype=object).reshape(len(examples), -1)
    missing = np.equal(raw, None)
    present = np.where(missing, np.nan, raw).astype(np.float64)
    mean = np.nan_to_num(np.nanmean(present, axis=0)) if len(names) else np.zeros(0)
    values = np.where(missing, mean, present)
    scale = values.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=1.0 / l2, max_iter=1000)
    model.fit((values - mean) / scale, np.asarray(labels))
    return WidePart(
        tuple(names), mean, scale, mean.copy(), model.coef_[0].astype(np.float64), float(model.intercept_[0])
    )


def load_wide(directory: Path) -> WidePart | None:
    """The wide part saved in an adapter directory, or None when the adapter has none (pure LLM)."""
    path = Path(directory) / WIDE_FILE
    if not path.exists():
        return None
    from safetensors import SafetensorError
    from safetensors.numpy import load_file, safe_open

    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="numpy") as handle:
            names = tuple(json.loads((handle.metadata() or {}).get("features", "null")))
    except (SafetensorError, OSError, ValueError, TypeError) as error:
        raise ModelError(f"{path} is unreadable ({error}); retrain the adapter or delete the file") from None
    check_feature_names(names)
    needed = ("mean", "scale", "fill", "weight", "bias")
    if any(key not in tensors for key in needed) or any(len(tensors[k]) != len(names) for k in needed[:4]):
        raise ModelError(f"{path} does not match its feature list {list(names)}; retrain the adapter")
    return WidePart(
        names, tensors["mean"], tensors["scale"], tensors["fill"], tensors["weight"], float(tensors["bias"][0])
    )
