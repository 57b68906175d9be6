"""A mixture of training tasks: several datasets, each with its template and a weight (one adapter, P5-style).

`train` draws each task's share of the K shots from that task's own train split with the run's seed
(`shots.sample_shots`), renders them with the task's template and mixes all of them in its seeded
batches. What lives here: the task spec (a config section), the split of K by weight, the per-task
draw of shots and validation examples. What does not: loading the data (the CLI), the model and the
training loop (`lm.training`).

Rounding: K is split by the largest-remainder rule. Each task gets floor(K * w / sum(w)) shots; the
shots left over go one each to the tasks with the largest fractional parts (ties: the earlier task),
so the counts always add up to K. A task with `shots` set takes exactly that many, and the rest of K
is split by weight over the other tasks. The valid sample (`valid_examples`) is split the same way,
by weight. Every task samples with the same seed (from its own pool): a mixture of one task draws the
shots and validation examples of the single-task run.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from promptrec.core.errors import ConfigError
from promptrec.protocols.examples import Examples
from promptrec.protocols.shots import sample_shots
from promptrec.templates.template import Template, load_template


@dataclass(frozen=True)
class TaskSpec:
    data: str = ""  # prepared dir (any --data form); in a YAML config, relative to that file
    template: str = ""  # template name under prompts/ or a .j2 path, used for this task's prompts
    weight: float = 1.0  # this task's share of the K shots and of the valid sample, relative to the others
    shots: int | None = None  # exactly this many shots for the task (None: its weight's share of K)

    def __post_init__(self):
        if not isinstance(self.data, str) or not self.data:
            raise ConfigError("a task has no `data`; give each task a prepared dir, e.g. {data: data/ml100k, ...}")
        if not isinstance(self.template, str) or not self.template:
            raise ConfigError(f"task {self.data} has no `template`; name one, e.g. {{template: movie_rich}}")
        weight = self.weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
            raise ConfigError(f"task {self.label} has weight={weight!r}; give a positive number (e.g. 1)")
        if self.shots is not None and self.shots < 1:
            raise ConfigError(f"task {self.label} has shots={self.shots}; give at least 1, or leave it out")

    @property
    def label(self) -> str:
        return f"{self.data}:{self.template}"


@dataclass(frozen=True)
class TaskPools:
    """One task's examples as loaded for a run: its spec, its train and valid pools, its data record."""

    spec: TaskSpec
    train: list[dict] | Examples
    valid: list[dict] | Examples
    data_record: dict


@dataclass(frozen=True)
class TaskDraw:
    """What a run trains and validates on for one task."""

    spec: TaskSpec
    template: Template
    shots: list[dict]
    valid: list[dict]
    data_record: dict


def split_by_weight(total: int, weights: list[float]) -> list[int]:
    """`total` split in proportion to `weights`, largest remainder first (module docstring); sums to `total`."""
    quotas = [total * w / sum(weights) for w in weights]
    counts = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for index in by_remainder[: total - sum(counts)]:
        counts[index] += 1
    return counts


def shot_counts(specs: tuple[TaskSpec, ...] | list[TaskSpec], total: int) -> list[int]:
    """Each task's number of shots out of `total` (K): fixed ones as given, the rest by weight."""
    fixed = sum(s.shots for s in specs if s.shots is not None)
    free = [i for i, s in enumerate(specs) if s.shots is None]
    if fixed > total or (not free and fixed != total):
        raise ConfigError(
            f"the tasks' own shots add up to {fixed}, but shots={total}; set shots={fixed}, or leave a task's "
            "shots out so it takes the rest by weight"
        )
    shares = iter(split_by_weight(total - fixed, [specs[i].weight for i in free]))
    counts = [s.shots if s.shots is not None else next(shares) for s in specs]
    for spec, count in zip(specs, counts):
        if count < 1:
            raise ConfigError(
                f"task {spec.label} gets 0 of the {total} shots (weight {spec.weight}); raise shots or its weight"
            )
    return counts


def task_templates(specs) -> list[Template]:
    """The tasks' templates; refused unless they share their answers (one loss, one pair of answer tokens)."""
    templates = [load_template(spec.template) for spec in specs]
    for spec, template in zip(specs[1:], templates[1:]):
        if tuple(template.choices) != tuple(templates[0].choices):
            raise ConfigError(
                f"task {spec.label} answers {list(template.choices)} but task {specs[0].label} answers "
                f"{list(templates[0].choices)}; one adapter learns one pair of answers: pick templates with the same "
                "`choices`"
            )
    return templates


def draw_tasks(tasks: list[TaskPools], shots: int, valid_examples: int, seed: int, balanced: bool) -> list[TaskDraw]:
    """Each task's shots and seeded validation sample (the single-task draw when there is one task)."""
    specs = [task.spec for task in tasks]
    templates = task_templates(specs)
    counts = shot_counts(specs, shots)
    valid_counts = split_by_weight(valid_examples, [s.weight for s in specs])
    draws = []
    for task, template, count, valid_count in zip(tasks, templates, counts, valid_counts):
        try:
            drawn = sample_shots(task.train, count, seed, balanced)
        except ConfigError as error:
            if len(tasks) == 1:
                raise
            raise ConfigError(f"task {task.spec.label}: {error}") from None
        valid = random.Random(seed).sample(task.valid, min(valid_count, len(task.valid)))
        if valid and len({ex["label"] for ex in valid}) < 2:
            where = f" of task {task.spec.label}" if len(tasks) > 1 else ""
            raise ConfigError(
                f"the {len(valid)} validation examples{where} all have label {valid[0]['label']}, so AUC is "
                "undefined; raise valid_examples, pass a larger --valid, or set valid_examples=0"
            )
        draws.append(TaskDraw(task.spec, template, drawn, valid, task.data_record))
    return draws
