"""Scoring with part of a loaded seed ensemble: one member adapter alone, or the bare base model.

`serve` loads the base model once with every adapter attached (`load_ensemble`). Its playground lets a
prompt engineer score the same examples with the whole ensemble (what `rank` and `evaluate` use),
with one member, or with no adapter at all, on those same weights: no second model in memory. Every
choice still scores through `EnsembleScorer` (a one-member ensemble for a member or the base model).
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from promptrec.core.errors import ConfigError
from promptrec.core.lazy import LazyModule
from promptrec.lm.adapter import Adapter, ensemble_names
from promptrec.lm.ensemble import EnsembleScorer

peft = LazyModule("peft")

ENSEMBLE = "ensemble"  # every adapter, scores averaged: the serving path


BASE = "base"  # the base model with every adapter switched off (zero-shot)


def member_choices(adapters: list[Adapter | None]) -> list[str]:
    """What a caller may score with: the ensemble, the base model, and each member when there are several."""
    if adapters == [None]:
        return [ENSEMBLE]  # zero-shot: the ensemble is the base model
    members = [str(a.path) for a in adapters] if len(adapters) > 1 else []
    return [ENSEMBLE, BASE, *members]


class MemberScorer:
    """An `EnsembleScorer` over one choice of `member_choices`, sharing the serving ensemble's model."""

    def __init__(self, ensemble: EnsembleScorer, adapters: list[Adapter | None], template, choice: str, **options):
        choices = member_choices(adapters)
        if choice not in choices:
            raise ConfigError(f"unknown scoring choice {choice!r}; choose one of: {', '.join(choices)}")
        self.model = ensemble.model
        self.choice = choice
        self.adapter_name = None  # the PEFT adapter to activate first (a member of several)
        if choice == ENSEMBLE:
            members = adapters
        elif choice == BASE:
            members = [None]
        else:
            index = choices.index(choice) - 2
            members, self.adapter_name = [adapters[index]], ensemble_names(adapters)[index]
        self.scorer = EnsembleScorer(ensemble.model, ensemble.tokenizer, template, members, **options)

    def parts(self, examples: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """(LLM log-odds, wide logits) of `examples` under this choice; score = their sum."""
        if self.adapter_name is not None:
            # A one-member EnsembleScorer never switches adapters, so the member is made active here;
            # the full ensemble activates each of its members itself on every call.
            self.model.set_adapter(self.adapter_name)
        with self._adapters_off() if self.choice == BASE else nullcontext():
            return self.scorer.parts(examples)

    def _adapters_off(self):
        if isinstance(self.model, peft.PeftModel):
            return self.model.disable_adapter()
        return nullcontext()
