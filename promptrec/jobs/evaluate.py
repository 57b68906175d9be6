"""Evaluate a (model, adapter, template) on a split: predictions.jsonl, metrics.json, config.json.

Zero-shot evaluation is evaluation without an adapter. Every output directory carries the
resolved config and a run record so a number can always be traced back to what produced it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from promptrec.core.config import to_dict
from promptrec.core.errors import ConfigError
from promptrec.core.records import provenance, template_record
from promptrec.lm.adapter import open_adapter, template_name_for
from promptrec.lm.config import ModelConfig
from promptrec.lm.loading import load_model
from promptrec.lm.prompt_cache import prompt_tokens
from promptrec.lm.scoring import Scorer
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
    """Score `examples`, write predictions/metrics/config to `out_dir`, return the metrics."""

    start = time.perf_counter()
    adapter = open_adapter(adapter)
    template = load_template(template_name_for(config.template, adapter, default="tallrec_plain"))
    examples = select_examples(examples, config.limit, config.limit_seed)
    check_binary_labels(examples)
    # Render one prompt before loading the model: a template/data mismatch fails in a second, not a minute.
    if examples:
        template.render(examples[0])
    if config.reliability_plot:
        _require_matplotlib()
    model, tokenizer = load_model(config.model, adapter)
    tokens = prompt_tokens(examples, tokenizer, template, progress)  # cached with Dataset.map for a split on disk
    scores = Scorer(model, tokenizer, template, config.score_batch_size).score_tokens(tokens, progress=progress)
    metrics = pointwise_metrics(labels_of(examples), scores, user_ids_of(examples))
    metrics["seconds"] = time.perf_counter() - start
    if config.reliability_plot:
        plot_reliability_of(Path(out_dir), examples, scores, template.name)
    write_outputs(
        Path(out_dir),
        key_rows_of(examples),
        scores,
        metrics,
        {
            "kind": "evaluate",
            "config": to_dict(config),
            "adapter": str(adapter.path) if adapter else None,
            "adapter_record": adapter.record if adapter else None,
            "template": template_record(template),
            "data": data_record or {},
            **provenance(),
        },
        probabilities=config.probabilities,
    )
    return metrics


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
