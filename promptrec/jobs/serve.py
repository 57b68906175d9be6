"""The ranking service behind `promptrec serve`: requests in, the `rank` job's scores out.

A `Service` holds one base model with its adapters (`load_ensemble`, as `rank` and `evaluate`), the
serving template and, given a next-item directory, its catalogue and user contexts. A /v1/rank
request becomes one user's candidate examples, built exactly as `rank` builds them (same
`CandidateExamples`, same template, same `score_group` with the same packing), so a known user's
scores equal `promptrec rank`'s. Examples are rendered and counted on the request's thread (a
template or limit error is the client's, answered before any scoring); the model only runs on the
`MicroBatcher`'s worker thread. HTTP lives in `jobs.api`; this module knows nothing of it.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from promptrec.core.config import to_dict
from promptrec.core.errors import ConfigError, DataError, PromptrecError, first_line
from promptrec.core.files import read_text
from promptrec.core.records import provenance, template_record
from promptrec.jobs.batching import MicroBatcher
from promptrec.jobs.rank import needs_similarity, ranked_row, user_examples
from promptrec.lm.adapter import ensemble_base_model, open_adapters, template_name_for
from promptrec.lm.config import ModelConfig
from promptrec.lm.ensemble import load_ensemble
from promptrec.lm.loading import load_tokenizer
from promptrec.lm.members import ENSEMBLE, MemberScorer, member_choices
from promptrec.lm.scoring import answer_ids, encode_prompt
from promptrec.metrics.pointwise import sigmoid
from promptrec.protocols.next_item import ITEM_KEYS, PROTOCOL, CandidateExamples, load_catalog
from promptrec.protocols.splits import MANIFEST_NAME
from promptrec.templates.template import load_template


@dataclass(frozen=True)
class ServeConfig:
    template: str | None = None  # None: the adapters' training template, else movie_next (as `rank`)
    split: str = "test"  # whose contexts a request's `user_id` stands for (as `rank --split`)
    candidates_per_pass: int = 20  # as `rank`: the same packing gives the same scores
    min_prefix_tokens: int = 8  # as `rank`
    score_batch_size: int = 16  # prompts per forward pass of /v1/score (as `evaluate`)
    max_candidates: int = 200  # per /v1/rank request; more is a 422
    max_examples: int = 256  # per /v1/score request; more is a 422
    max_prompt_tokens: int = 4096  # per prompt, also capped by the model's max length; longer is a 422
    max_batch: int = 16  # requests the scoring worker takes in one turn
    batch_wait_ms: float = 10.0  # how long a turn waits for more requests after its first (ms)
    max_queue: int = 256  # requests waiting beyond this are answered 503 (busy)
    max_body_bytes: int = 4_000_000  # a larger request body is a 413
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self):
        counts = ("candidates_per_pass", "min_prefix_tokens", "score_batch_size", "max_candidates", "max_examples")
        counts += ("max_prompt_tokens", "max_batch", "max_queue", "max_body_bytes")
        small = [f"{name}={getattr(self, name)!r} must be >= 1" for name in counts if getattr(self, name) < 1]
        small += [f"batch_wait_ms={self.batch_wait_ms!r} must be >= 0"] if self.batch_wait_ms < 0 else []
        if small:
            raise ConfigError(f"{'; '.join(small)}; fix the flag or --set value")


class LimitError(PromptrecError):
    """A request beyond the server's configured limits (HTTP 422, naming the limit and its flag)."""


@dataclass
class RankJob:
    user_id: str
    item_ids: list[str]
    examples: list[dict]  # one per candidate, in request order


@dataclass
class PointwiseJob:
    examples: list[dict]
    template: object  # a Template: the serving one, or a playground edit
    choice: str = ENSEMBLE  # lm.members: the ensemble, the base model, or one member


ANONYMOUS = "anonymous"  # the user_id of a request that sends its own profile and history


RESERVED = (*ITEM_KEYS, "user_id", "timestamp", "user", "history", "query")  # context keys `fields` cannot set


class Service:
    def __init__(self, config: ServeConfig, adapters=None, data_dir: Path | None = None):
        self.config = config
        self.adapters = open_adapters(adapters)
        ensemble_base_model(self.adapters)
        self.template = load_template(template_name_for(config.template, self.adapters, default="movie_next"))
        self.data_dir = Path(data_dir) if data_dir else None
        self.catalog = _next_item_catalog(self.data_dir) if self.data_dir else None
        self.contexts = self.catalog.contexts(config.split) if self.catalog else None
        similarity = needs_similarity(self.template, self.adapters)
        self.builder = CandidateExamples(self.catalog, similarity) if self.catalog else None
        self.ensemble = load_ensemble(
            config.model, self.adapters, self.template,
            candidates_per_pass=config.candidates_per_pass, score_batch_size=config.score_batch_size,
        )  # fmt: skip
        # The request threads render and count with their own tokenizer; the model's belongs to the worker.
        self.tokenizer, self._tokenizer_lock = load_tokenizer(config.model), threading.Lock()
        model_max = getattr(self.ensemble.model.config, "max_position_embeddings", None) or config.max_prompt_tokens
        self.max_prompt_tokens = min(config.max_prompt_tokens, model_max)
        self._now = 1 + max((x["timestamp"] for x in self.catalog.interactions), default=0) if self.catalog else 0
        self._member_scorers: OrderedDict = OrderedDict()
        self.wide_parts = [a.wide for a in self.adapters if a is not None and a.wide is not None]  # read once
        self.batcher = MicroBatcher(self.run_batch, config.max_batch, config.batch_wait_ms / 1000, config.max_queue)
        self.info = self._info()

    # ------------------------------------------------------------ requests (any thread)
    def rank_job(self, request: dict) -> RankJob:
        """A /v1/rank request (already schema-checked) as one user's candidate examples, rendered and counted."""
        candidates = request["candidates"]
        if len(candidates) > self.config.max_candidates:
            raise LimitError(
                f"{len(candidates)} candidates; this server ranks at most {self.config.max_candidates} per request "
                "(--max-candidates)"
            )
        item_ids = [c if isinstance(c, str) else c["item_id"] for c in candidates]
        repeated = [item_id for item_id, count in Counter(item_ids).items() if count > 1]
        if repeated:
            raise DataError(f"candidate {repeated[0]!r} is listed twice; list each item once")
        user_id, context, known = self._context(request)
        try:
            if known and all(isinstance(c, str) for c in candidates):
                self._check_ids(item_ids)
                row = {"user_id": user_id, "candidates": item_ids} | _query(request)
                examples = user_examples(self.builder, self.contexts, row)  # exactly `rank`'s examples
            else:
                examples = [self._candidate_example(context, c) for c in candidates]
        except (KeyError, TypeError, ValueError, AttributeError) as error:  # a malformed profile, history or record
            raise DataError(f"the request's user or candidates are malformed ({first_line(error)})") from None
        self.check(self.template, examples)
        return RankJob(user_id, item_ids, examples)

    def score_job(self, examples: list[dict]) -> PointwiseJob:
        if len(examples) > self.config.max_examples:
            raise LimitError(
                f"{len(examples)} examples; this server scores at most {self.config.max_examples} per request "
                "(--set max_examples=N)"
            )
        self.check(self.template, examples)
        return PointwiseJob(examples, self.template)

    def check(self, template, examples: list[dict]) -> None:
        """Everything about `examples` that can fail before scoring: the render, the prompt length, and the
        features a hybrid's wide part reads; so the worker scores only examples that fit."""
        self.count_tokens(template, examples)
        for wide in self.wide_parts:
            try:
                wide.logits(examples)
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
                raise DataError(
                    f"the wide part cannot read the examples' features ({first_line(error)}); "
                    "send history and stats shaped as in a prepared split"
                ) from None

    def count_tokens(self, template, examples: list[dict]) -> list[int]:
        """Each example's prompt length in tokens; a render error or a prompt over the limit is raised."""
        counts = [len(self.encode(template, example)[1]) for example in examples]
        for example, count in zip(examples, counts):
            if count > self.max_prompt_tokens:
                raise LimitError(
                    f"the prompt of example {example.get('example_id', '?')} has {count} tokens; this server takes "
                    f"at most {self.max_prompt_tokens} (--max-prompt-tokens, or the model's max length)"
                )
        return counts

    def encode(self, template, example: dict) -> tuple[str, list[int]]:
        """(prompt text, token ids) of `example`, exactly as the scorer renders and tokenizes it."""
        with self._tokenizer_lock:
            text = template.render(example, self.tokenizer)
            return text, encode_prompt(self.tokenizer, text, template.chat)

    def rank_response(self, job: RankJob, scores: np.ndarray, top_k: int) -> dict:
        """The ranked row `promptrec rank --probabilities` writes for this user."""
        return ranked_row(job.user_id, job.item_ids, scores, top_k, probabilities=True)

    def score_response(self, job: PointwiseJob, parts: tuple[np.ndarray, np.ndarray]) -> dict:
        llm, wide = parts
        scores = llm + wide
        response = {"scores": scores.tolist(), "probabilities": sigmoid(scores).tolist()}
        response["example_ids"] = [example.get("example_id") for example in job.examples]
        if self.wide_parts:
            response |= {"llm_scores": llm.tolist(), "wide_scores": wide.tolist()}
        return response

    # ------------------------------------------------------------ the worker thread
    def run_batch(self, jobs: list):
        """(index, result or exception) per job, each as soon as it is done: rank jobs one user at a time,
        pointwise jobs merged into one forward pass per scorer."""
        merged: dict[tuple, list[int]] = {}
        for index, job in enumerate(jobs):
            if isinstance(job, RankJob):
                yield index, _attempt(lambda job=job: self._rank_scores(job))
            else:
                merged.setdefault((job.template.sha256, job.template.name, job.choice), []).append(index)
        for indices in merged.values():
            yield from zip(indices, self._score_together([jobs[i] for i in indices]))

    def _rank_scores(self, job: RankJob) -> np.ndarray:
        return self.ensemble.score_group(job.examples, self.config.min_prefix_tokens)[0]

    def _score_together(self, jobs: list[PointwiseJob]) -> list:
        """One forward pass over every job's examples; on an error, each job alone (the error is its own)."""
        scorer = self._member_scorer(jobs[0].template, jobs[0].choice)
        examples = [example for job in jobs for example in job.examples]
        together = _attempt(lambda: scorer.parts(examples))
        if len(jobs) == 1 or not isinstance(together, Exception):
            return _split(together, [len(job.examples) for job in jobs])
        return [_attempt(lambda job=job: scorer.parts(job.examples)) for job in jobs]

    def _member_scorer(self, template, choice: str):
        if template is self.template and choice == ENSEMBLE:
            return self.ensemble
        key = (template.sha256, template.name, choice)
        if key not in self._member_scorers:
            self._member_scorers[key] = MemberScorer(
                self.ensemble, self.adapters, template, choice, score_batch_size=self.config.score_batch_size
            )
            if len(self._member_scorers) > 16:  # playground edits come and go; keep the recent ones
                self._member_scorers.popitem(last=False)
        self._member_scorers.move_to_end(key)
        return self._member_scorers[key]

    # ------------------------------------------------------------ examples of a rank request
    def _context(self, request: dict) -> tuple[str, dict, bool]:
        """(user id, the context every candidate example shares, whether it is a known user's)."""
        user_id = request.get("user_id")
        own = [key for key in ("profile", "history", "fields", "timestamp") if key in request]
        if user_id is not None and not own:
            if self.contexts is None:
                raise DataError(
                    "user_id needs the server started with --data DIR (a next-item prepared dir); "
                    "or send the user's profile and history"
                )
            if user_id not in self.contexts:
                raise DataError(
                    f"unknown user_id {user_id!r}: not a user of split {self.config.split!r} of {self.data_dir}; "
                    "send the user's profile and history instead"
                )
            return user_id, dict(self.contexts[user_id]) | _query(request), True
        if not own:
            raise DataError("send a user: a user_id known to --data, or the user's profile and/or history")
        user_id = user_id or ANONYMOUS
        context = {"user_id": user_id, "item_id": None, "timestamp": request.get("timestamp", self._now)}
        if "profile" in request:
            context["user"] = {"user_id": user_id, **request["profile"]}
        if "history" in request:
            context["history"] = [self._history_item(entry) for entry in request["history"]]
        taken = sorted(set(request.get("fields", {})) & set(RESERVED))
        if taken:
            raise DataError(
                f"fields may not set {taken[0]!r}; user_id, profile (the template's user), history, query and "
                "timestamp are top-level keys, and the item keys come from each candidate"
            )
        return user_id, context | _query(request) | request.get("fields", {}), False

    def _history_item(self, entry: dict) -> dict:
        """A history entry; an item_id known to the catalogue brings the item's attributes with it."""
        known = self.catalog.items.get(str(entry.get("item_id"))) if self.catalog else None
        return {**known, **entry} if known else entry

    def _check_ids(self, item_ids: list[str]) -> None:
        if self.catalog is None:
            raise DataError(
                "candidate ids need the server started with --data DIR (a next-item prepared dir); send item records"
            )
        unknown = next((i for i in item_ids if i not in self.catalog.items), None)
        if unknown is not None:
            raise DataError(
                f"unknown item id {unknown!r}: not in {self.data_dir}/items.jsonl; send an item record instead"
            )

    def _candidate_example(self, context: dict, candidate) -> dict:
        if isinstance(candidate, str):
            self._check_ids([candidate])
            return self.builder.build(context, candidate)
        item_id = candidate["item_id"]
        if self.builder is not None:  # catalogue stats (popularity, like-rate before the context's time) apply
            return self.builder.build(context, item_id, item=candidate)
        example = {key: value for key, value in context.items() if key not in ITEM_KEYS}
        return example | {"example_id": f"{context['user_id']}:{item_id}", "item_id": item_id, "item": candidate}

    def _info(self) -> dict:
        answers = answer_ids(self.tokenizer, self.template.choices, self.template.name)
        adapters = [a for a in self.adapters if a is not None]
        return {
            "model": to_dict(self.config.model),
            "adapters": [
                {
                    "path": str(a.path),
                    "base_model": a.base_model,
                    "template": a.template_name,
                    "templates": list(a.template_names),  # every task's, for a multi-task adapter
                    "weights_sha256": a.weights_sha256(),
                    "hybrid": a.wide is not None,
                    "llm_weight": None if a.wide is None else a.wide.llm_weight,  # the gate; None: pure LLM
                }
                for a in adapters
            ],
            "template": template_record(self.template),
            "answers": {
                "choices": list(self.template.choices),
                "positive_token_ids": list(answers.positive),
                "negative_token_ids": list(answers.negative),
            },
            "scoring_choices": member_choices(self.adapters),
            "limits": {
                "max_candidates": self.config.max_candidates,
                "max_examples": self.config.max_examples,
                "max_prompt_tokens": self.max_prompt_tokens,
                "max_body_bytes": self.config.max_body_bytes,
            },
            "batching": {"max_batch": self.config.max_batch, "batch_wait_ms": self.config.batch_wait_ms},
            "data": self._data_info(),
            **provenance(),
        }

    def _data_info(self) -> dict | None:
        if self.data_dir is None:
            return None
        info = {"dir": str(self.data_dir), "split": self.config.split}
        if self.catalog is not None:
            info |= {"num_users": len(self.contexts), "num_items": len(self.catalog.items)}
        return info


def _next_item_catalog(data_dir: Path):
    """The catalogue of a next-item directory; None for other data (the playground still reads its splits)."""
    if not data_dir.exists():
        raise DataError(f"--data {data_dir}: no such file or directory; pass a prepared data directory")
    manifest = data_dir / MANIFEST_NAME
    if not manifest.is_file() or json.loads(read_text(manifest)).get("name") != PROTOCOL:
        return None
    return load_catalog(data_dir)


def _query(request: dict) -> dict:
    return {"query": request["query"]} if "query" in request else {}


def _attempt(compute):
    """compute()'s result, or the exception it raised (a job's failure is returned to its request)."""
    try:
        return compute()
    except Exception as error:
        return error


def _split(parts, sizes: list[int]) -> list:
    if isinstance(parts, Exception):
        return [parts] * len(sizes)
    llm, wide = parts
    bounds = np.cumsum([0, *sizes])
    return [(llm[a:b], wide[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
