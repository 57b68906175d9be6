"""Leak check: does a rendered prompt give away its own example's answer?

The playground runs it on every prompt it renders and shows each finding as a one-line warning. It
checks three things, and only these:
1. the template reads a field that holds the answer: `label`, `rating` (the target's own rating,
   which the label is derived from) or `output` (an Alpaca record's "Yes."/"No.");
2. the prompt already ends with one of the template's answer choices (e.g. "Answer: Yes"), so the
   model would be scored on what comes after the answer;
3. the line that names the target item (its title) also shows the target's rating, written as
   "N star(s)", "rated N" or "rating: N" (N as the templates print numbers, e.g. 4 for 4.0).
Facts that merely correlate with the label (popularity, like-rates before the example's time) are
legitimate features and are not flagged; neither is a leak the three patterns do not match.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

LABEL_FIELDS = {
    "label": "the example's label",
    "rating": "the target's own rating (the label comes from it)",
    "output": "the Alpaca answer",
}


def leak_warnings(template, example: Mapping[str, Any], prompt: str) -> list[str]:
    """One line per leak found in `prompt`, the render of `example` through `template`; [] if none."""
    warnings = [
        f"the template reads '{name}', {meaning}" for name, meaning in LABEL_FIELDS.items() if name in template.inputs
    ]
    end = prompt.rstrip()
    for choice in template.choices:
        if choice.strip() and end.endswith(choice.strip()):
            warnings.append(f"the prompt ends with the answer {choice.strip()!r}; end it where the answer starts")
    warnings += _rating_on_target_line(example, prompt)
    return warnings


def _rating_on_target_line(example: Mapping[str, Any], prompt: str) -> list[str]:
    item, rating = example.get("item"), example.get("rating")
    title = item.get("title") if isinstance(item, Mapping) else None
    if not title or isinstance(rating, bool) or not isinstance(rating, (int, float)):
        return []
    shown = re.escape(f"{rating:g}")
    pattern = re.compile(
        rf"(?<![\d.]){shown}\s*stars?\b|\brated\s+{shown}(?![\d.])|\brating:?\s*{shown}(?![\d.])", re.I
    )
    for line in prompt.splitlines():
        if title in line and pattern.search(line):
            return [f"the target's line shows its rating {rating:g}: {line.strip()[:120]!r}"]
    return []
