"""Seeded samples of examples: the K training shots, and the scored subset of a split (`--limit`).

Both are reproducible from their seed, so the LLM runs and the baselines see the same examples.
"""

from __future__ import annotations

import random

from promptrec.core.errors import ConfigError
from promptrec.protocols.examples import Examples, labels_of


def select_examples(examples: list[dict] | Examples, limit: int, seed: int) -> list[dict] | Examples:
    if not limit or limit >= len(examples):
        return examples
    indices = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return examples.select(indices) if isinstance(examples, Examples) else [examples[i] for i in indices]


def sample_shots(pool: list[dict], shots: int, seed: int, balanced: bool) -> list[dict]:
    """K examples from `pool`, reproducible from `seed`; refuses impossible requests."""
    if shots > len(pool):
        raise ConfigError(f"shots={shots} exceeds the {len(pool)} training examples; lower --shots")
    rng = random.Random(seed)
    if not balanced:
        return [pool[i] for i in sorted(rng.sample(range(len(pool)), shots))]
    labels = labels_of(pool)  # a column read for Examples: no example is decoded
    positives = [i for i, label in enumerate(labels) if label == 1]
    negatives = [i for i, label in enumerate(labels) if label == 0]
    half = shots // 2
    if half > len(positives) or shots - half > len(negatives):
        raise ConfigError(
            f"balanced shots={shots} needs {half} positives and {shots - half} negatives; the pool has "
            f"{len(positives)} and {len(negatives)}; lower --shots or set balanced=false"
        )
    return [pool[i] for i in sorted(rng.sample(positives, half) + rng.sample(negatives, shots - half))]
