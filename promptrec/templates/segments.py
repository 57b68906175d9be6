"""Rendered prompts as segments: which special tokens the template put there, and which text came from data.

The guarantee (STYLE.md, Templates): the only special tokens in a scored prompt are the ones the
template's own literal text or the tokenizer's chat template put there. Stripping special-token strings
out of data values before rendering (`template.sanitize`) is not enough: a body can join list items
(`["<|im_", "start|>"] | join`), unescape (`"&lt;|im_start|&gt;" | striptags`) or print dict keys, and
so assemble one from harmless pieces. So a render keeps track of its trusted parts instead:

- literal body text is rewritten at compile time so that each special-token string in it becomes a
  sentinel (`\\ue000<nonce><index>\\ue001`, the nonce secret to this process, digits only so that
  `upper` and friends leave it alone); after the render, sentinels become trusted segments holding
  the token's text and everything between them is untrusted;
- a chat template's text around the user message (and the template's `system` message) is trusted.

`Prompt.text` is exactly the text `Template.render` returns. `promptrec.lm.encoding` tokenises a
`Prompt` so that special tokens are read only inside trusted segments.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptrec.core.errors import TemplateError

NONCE = f"{secrets.randbelow(10**16):016d}"  # data written before this process started cannot contain it


SENTINEL_RE = re.compile(f"\ue000{NONCE}(\\d+)\ue001")


BODY_PLACEHOLDER = f"promptrec-body-{NONCE}"  # stands for the body when reading a chat template's frame


@dataclass(frozen=True)
class Segment:
    text: str
    trusted: bool  # written by the template's literal text or the chat template: special tokens count


@dataclass(frozen=True)
class Prompt:
    segments: tuple[Segment, ...]

    @property
    def text(self) -> str:
        return "".join(segment.text for segment in self.segments)

    def strip(self) -> Prompt:
        """The prompt with leading and trailing whitespace removed, as `str.strip` would."""
        text = self.text
        start = len(text) - len(text.lstrip())
        end = len(text.rstrip())
        segments, offset = [], 0
        for segment in self.segments:
            low, high = max(start - offset, 0), min(end - offset, len(segment.text))
            if low < high:
                segments.append(Segment(segment.text[low:high], segment.trusted))
            offset += len(segment.text)
        return Prompt(tuple(segments))


def untrusted(text: str) -> Prompt:
    return Prompt((Segment(text, False),))


def sentinel_writer(specials: tuple[str, ...]):
    """Rewrites literal body text: each special-token string becomes its sentinel (longest match first)."""
    if not specials:
        return None
    pattern = re.compile("|".join(map(re.escape, specials)))
    index = {token: k for k, token in enumerate(specials)}
    return lambda text: pattern.sub(lambda m: f"\ue000{NONCE}{index[m.group(0)]}\ue001", text)


def marked_prompt(text: str, specials: tuple[str, ...]) -> Prompt:
    """A rendered body with sentinels cut into segments: sentinels -> trusted tokens, the rest untrusted."""
    segments, last = [], 0
    for match in SENTINEL_RE.finditer(text):
        segments.append(Segment(text[last : match.start()], False))
        segments.append(Segment(specials[int(match.group(1))], True))
        last = match.end()
    segments.append(Segment(text[last:], False))
    return Prompt(tuple(s for s in segments if s.text))


def chat_prompt(tokenizer: Any, system: str | None, body: Prompt, path: Path | None) -> Prompt:
    """The body as the user turn of `tokenizer`'s chat template, the frame around it trusted."""
    body = body.strip()
    messages = [{"role": "system", "content": system}] if system else []

    def apply(content: str) -> str:
        turns = [*messages, {"role": "user", "content": content}]
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)

    text, frame = apply(body.text), apply(BODY_PLACEHOLDER)
    before, found, after = frame.partition(BODY_PLACEHOLDER)
    if not found or BODY_PLACEHOLDER in after or before + body.text + after != text:
        raise TemplateError(
            f"{path}: the tokenizer's chat template changes the user message instead of inserting it as "
            "written, so data text cannot be kept apart from the chat markup; use a non-chat template "
            "(chat: false) or a model whose chat template inserts messages verbatim"
        )
    return Prompt((Segment(before, True), *body.segments, Segment(after, True)))
