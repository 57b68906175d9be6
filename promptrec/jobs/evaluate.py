"""Evaluate a (model, adapter, template) on a split: predictions.jsonl, metrics.json, config.json.

Zero-shot evaluation is evaluation without an adapter. Every output directory carries the
resolved config and a run record so a number can always be traced back to what produced it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from promptrec.core.config import to_dict
from promptrec.core.errors import ConfigError
from promptrec.core.records import provenance, template_record
from promptrec.lm.adapter import ensemble_base_model, open_adapters, template_name_for
from promptrec.lm.config import ModelConfig
from promptrec.lm.ensemble import load_ensemble
from promptrec.metrics.calibration import plot_reliability
from promptrec.metrics.outputs import write_outputs
from promptrec.metrics.pointwise import pointwise_metrics, sigmoid
from promptrec.protocols.examples import check_binary_labels, key_rows_of, labels_of, user_ids_of
from promptrec.protocols.shots import select_examples
from promptrec.templates.template import load_template


@dataclass(frozen=True)
class EvalConfig:
    template: str | None = None  # None: the adapter's training template, else tallrec_plain
    split: str = "test"
    limit: int = 0  # 0 = every example; N = a seeded sample of N (for quick CPU runs)
    limit_seed: int = 0  # seed of that sample, so runs with the same limit compare like for like
    score_batch_size: int = 16  # prompts per forward pass
    probabilities: bool = False  # predictions.jsonl rows also carry "probability" = sigmoid(score)
    reliability_plot: bool = True  # write reliability.png (calibration diagram; needs matplotlib)
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self):
        if self.limit < 0 or self.score_batch_size < 1:
            raise ConfigError("limit must be >= 0 and score_batch_size >= 1")


def evaluate(
    config: EvalConfig,
    examples: list[dict],
    out_dir: str | Path,
    adapter=None,
    data_record: dict | None = None,
    progress: bool = False,
) -> dict:
    """Score `examples`, write predictions/metrics/config to `out_dir`, return the metrics.

    `adapter` is one adapter (path or `Adapter`), a list of them (a seed ensemble: their scores are
    averaged), or None (zero-shot). Hybrid adapters add their wide logit to the LLM's log-odds;
    predictions then also carry `llm_score` and `wide_score`, the two parts of `score`.
    """
    start = time.perf_counter()
    adapters = open_adapters(adapter)
    ensemble_base_model(adapters)
    template = load_template(template_name_for(config.template, adapters, default="tallrec_plain"))
    examples = select_examples(examples, config.limit, config.limit_seed)
    check_binary_labels(examples)
    # Render one prompt before loading the model: a template/data mismatch fails in a second, not a minute.
    if examples:
        template.render(examples[0])
    if config.reliability_plot:
        _require_matplotlib()
    llm_scores, wide_scores = score_ensemble(config, adapters, template, examples, progress)
    scores = llm_scores + wide_scores
    metrics = pointwise_metrics(labels_of(examples), scores, user_ids_of(examples))
    metrics["seconds"] = time.perf_counter() - start
    if config.reliability_plot:
        plot_reliability_of(Path(out_dir), examples, scores, template.name)
    hybrid = any(a is not None and a.wide is not None for a in adapters)
    write_outputs(
        Path(out_dir),
        key_rows_of(examples),
        scores,
        metrics,
        {
            "kind": "evaluate",
            "config": to_dict(config),
            "adapter": str(adapters[0].path) if len(adapters) == 1 and adapters[0] else None,
            "adapter_record": adapters[0].record if len(adapters) == 1 and adapters[0] else None,
            "ensemble": [str(a.path) for a in adapters] if len(adapters) > 1 else None,
            "template": template_record(template),
            "data": data_record or {},
            **provenance(),
        },
        probabilities=config.probabilities,
        parts={"llm_score": llm_scores, "wide_score": wide_scores} if hybrid else None,
    )
    return metrics


def score_ensemble(config: EvalConfig, adapters, template, examples, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """(LLM log-odds, wide logits) averaged over the adapters; the wide part is 0 for pure-LLM adapters."""
    scorer = load_ensemble(config.model, adapters, template, score_batch_size=config.score_batch_size)
    return scorer.parts(examples, progress=progress)


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(
            "reliability_plot needs matplotlib; pip install matplotlib, or pass --no-reliability-plot"
        ) from None


def plot_reliability_of(out_dir: Path, examples, scores, template_name: str) -> None:
    labels = labels_of(examples).astype(int).tolist()
    title = f"{template_name}, {len(labels)} examples\nreliability of sigmoid(score)"
    plot_reliability(labels, sigmoid(scores), out_dir / "reliability.png", title=title)
