"""The wide part of the hybrid scorer: a logistic layer over named example features.

score(x) = a * LLM log-odds (log P(yes) - log P(no)) + w . standardize(f(x)) + b. The features are the
leak-free facts an example carries (`protocols.features`); their scaling (mean, scale, and the fill
value for a missing feature) is fitted on the K training shots only. The part is saved beside the
adapter as `wide.safetensors` (tensors: mean, scale, fill, weight, bias, llm_weight; the feature names
in its metadata) and read back by everything that loads the adapter, so `evaluate`, `rank` and `experiment`
score with it whenever the adapter carries it. numpy only (no torch): it never slows the model's forward
pass. Alone, fitted on the same shots, it is the `wide` baseline (`baselines.classic`).

The LLM's weight a (`llm_weight`) is the gate: 1 as trained, or fitted in [0, 1] on held-out labelled
examples after training (`fit_gate`), so an LLM part that learned something its shots do not share with
new examples is turned down instead of dragging the hybrid under its own wide part. A file written
before the gate existed has no `llm_weight`: it reads as 1, the score it always gave.
"""

from __future__ import annotations

import dataclasses
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
    llm_weight: float = 1.0  # the gate: the weight of the LLM's log-odds in the hybrid score

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

    def hybrid(self, llm_scores: np.ndarray, examples: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
        """(the LLM's share, the wide logit) of each example's hybrid score; the score is their sum."""
        return self.llm_weight * np.asarray(llm_scores, np.float64), self.logits(examples)

    def with_parameters(self, weight: np.ndarray, bias: float, llm_weight: float | None = None) -> WidePart:
        gate = self.llm_weight if llm_weight is None else float(llm_weight)
        return dataclasses.replace(self, weight=np.asarray(weight, np.float64), bias=float(bias), llm_weight=gate)

    def record(self) -> dict:
        """What the run record says of the part (the numbers themselves are in wide.safetensors)."""
        weights = {"weight": self.weight.tolist(), "bias": self.bias, "llm_weight": self.llm_weight}
        return {"file": WIDE_FILE, "features": list(self.names)} | weights

    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        tensors = {"mean": self.mean, "scale": self.scale, "fill": self.fill, "weight": self.weight}
        tensors = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in tensors.items()}
        tensors["bias"] = np.array([self.bias], dtype=np.float64)
        tensors["llm_weight"] = np.array([self.llm_weight], dtype=np.float64)
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
    gate = tensors.get("llm_weight", np.ones(1))
    if gate.shape != (1,) or not 0 <= float(gate[0]) <= 1:
        raise ModelError(f"{path} has llm_weight {gate.tolist()}, not one number in [0, 1]; retrain the adapter")
    return WidePart(
        names, tensors["mean"], tensors["scale"], tensors["fill"], tensors["weight"], float(tensors["bias"][0]),
        float(gate[0]),
    )  # fmt: skip


@dataclass(frozen=True)
class Gate:
    """The LLM's weight fitted on held-out examples, and what it did there (for the run record)."""

    llm_weight: float  # in [0, 1]
    bias_shift: float  # added to the wide bias: the intercept refitted with the weight
    examples: int
    auc_before: float  # hybrid AUC on those examples at weight 1
    auc_after: float

    def record(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """The one line `train` and `experiment` print."""
        return (
            f"gate: LLM weight {self.llm_weight:.3f} on {self.examples} valid examples "
            f"(valid AUC {self.auc_before:.4f} -> {self.auc_after:.4f})"
        )


def fit_gate(llm_scores: Sequence[float], wide_logits: Sequence[float], labels: Sequence[int]) -> Gate:
    """The weight a in [0, 1] and intercept shift c maximising the likelihood of sigmoid(a*llm + wide + c).

    Two parameters on held-out labels (the valid examples training already scores): a = 0 is the wide
    part alone, a = 1 the hybrid as trained. A maximum likelihood fit, not an AUC search: it is smooth,
    and it punishes an LLM part that is confidently wrong on new examples.
    """
    from scipy.optimize import minimize
    from sklearn.metrics import roc_auc_score

    llm = np.asarray(llm_scores, np.float64)
    wide = np.asarray(wide_logits, np.float64)
    y = np.asarray(labels, np.float64)
    if len(llm) != len(wide) or len(llm) != len(y):
        counts = f"{len(llm)}, {len(wide)}, {len(y)}"
        raise ValueError(f"fit_gate needs one LLM score, wide logit and label per example ({counts})")
    if len(set(y.tolist())) < 2 or not (np.isfinite(llm).all() and np.isfinite(wide).all()):
        auc = float("nan")
        return Gate(1.0, 0.0, len(y), auc, auc)  # nothing to fit on: keep the hybrid as trained
    sign = 2 * y - 1

    def loss(params):
        a, c = params
        margin = sign * (a * llm + wide + c)
        value = np.logaddexp(0.0, -margin).mean()
        grad_margin = -sign * np.exp(-np.logaddexp(0.0, margin)) / len(y)  # d value / d (a*llm + wide + c)
        return value, np.array([(grad_margin * llm).sum(), grad_margin.sum()])

    fit = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0), (None, None)])
    a, c = (float(v) for v in fit.x)
    return Gate(a, c, len(y), float(roc_auc_score(y, llm + wide)), float(roc_auc_score(y, a * llm + wide)))
