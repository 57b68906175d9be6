"""Scoring with a seed ensemble: several adapters on one base model, their scores averaged.

A single adapter (or none: zero-shot) is the ensemble of one, so `evaluate`, `rank` and `serve` have
one scoring path. Members are attached to the one base model under `ensemble_names` and switched
with `set_adapter`, so N seeds cost one model's memory. Each member adds its own wide part (a hybrid
adapter) to its own LLM log-odds, weighted by its gate, before the average.
"""

from __future__ import annotations

import numpy as np

from promptrec.lm.adapter import Adapter, ensemble_names
from promptrec.lm.config import ModelConfig
from promptrec.lm.loading import load_model
from promptrec.lm.prompt_cache import prompt_tokens
from promptrec.lm.scoring import Scorer


class EnsembleScorer:
    def __init__(self, model, tokenizer, template, adapters: list[Adapter | None], **scorer_options):
        self.model, self.tokenizer, self.template = model, tokenizer, template
        self.members = [
            (name, Scorer(model, tokenizer, template, wide=adapter.wide if adapter else None, **scorer_options))
            for adapter, name in zip(adapters, ensemble_names(adapters))
        ]

    def _each(self):
        for name, scorer in self.members:
            if len(self.members) > 1:
                self.model.set_adapter(name)
            yield scorer

    def parts(self, examples: list[dict], progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(LLM log-odds, each times its member's gate weight; wide logits), averaged over the members.

        The score is their sum."""
        llm, wide = np.zeros(len(examples)), np.zeros(len(examples))
        tokens = prompt_tokens(examples, self.tokenizer, self.template, progress)  # cached for a split on disk
        for scorer in self._each():
            llm_share, wide_logits = scorer.parts(scorer.score_tokens(tokens, progress=progress), examples)
            llm, wide = llm + llm_share, wide + wide_logits
        return llm / len(self.members), wide / len(self.members)

    def score_group(self, examples: list[dict], min_prefix_tokens: int = 8) -> tuple[np.ndarray, int]:
        """Scores of one user's candidates (shared prefix reused by every member), averaged."""
        total, prefix_tokens = np.zeros(len(examples)), 0
        for scorer in self._each():
            scores, prefix_tokens = scorer.score_group(examples, min_prefix_tokens)
            total += scores
        return total / len(self.members), prefix_tokens


def load_ensemble(model_config: ModelConfig, adapters: list[Adapter | None], template, **scorer_options):
    """The base model with every member attached, wrapped for scoring."""
    model, tokenizer = load_model(model_config, adapters if len(adapters) > 1 else adapters[0])
    return EnsembleScorer(model, tokenizer, template, adapters, **scorer_options)
