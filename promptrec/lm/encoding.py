"""Prompt text -> token ids, with special tokens read only where the template or chat template put them.

`encode_prompt(tokenizer, prompt, chat)` takes a `templates.segments.Prompt` (from
`Template.render_prompt`). The fast path tokenises the whole text in one call, exactly as before,
and keeps the result when its special-token ids are the expected ones: those the tokenizer adds itself
(BOS and the like) and those written in trusted segments, in order. Otherwise data text assembled a
special-token string (a join, an unescape, a printed dict key, or data text running into a trusted
token): then each segment is tokenised on its own, untrusted ones with `split_special_tokens=True`,
so their special-token strings become plain text. Clean prompts therefore get the same ids as a plain
`tokenizer(text)` call, and no prompt gets a special token from its data.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from promptrec.core.errors import TemplateError
from promptrec.templates.segments import Prompt
from promptrec.templates.template import special_tokens


def encode_prompt(tokenizer, prompt: Prompt | str, chat: bool) -> list[int]:
    """Token ids of `prompt`; a plain string is trusted as a whole (the tokenizer's own behaviour)."""
    add_special_tokens = not chat  # chat text already carries the model's markers; plain text gets BOS
    if isinstance(prompt, str):
        return tokenizer(prompt, add_special_tokens=add_special_tokens).input_ids
    ids = tokenizer(prompt.text, add_special_tokens=add_special_tokens).input_ids
    facts = tokenizer_facts(tokenizer)
    specials = facts.specials
    head, tail = facts.added if add_special_tokens else ((), ())
    expected = expected_special_ids(tokenizer, prompt, specials, head, tail)
    if [i for i in ids if i in specials] == expected:
        return ids
    ids = list(head)
    for segment in prompt.segments:
        pieces = tokenizer(segment.text, add_special_tokens=False, split_special_tokens=not segment.trusted)
        ids += pieces.input_ids
    ids += tail
    if [i for i in ids if i in specials] != expected:
        raise TemplateError(
            "the tokenizer still reads special tokens in data text with split_special_tokens=True; "
            "use another tokenizer or a template that does not print this data"
        )
    return ids


def expected_special_ids(tokenizer, prompt: Prompt, specials: frozenset[int], head=(), tail=()) -> list[int]:
    """Special-token ids the prompt should hold: the trusted segments', between the ones the tokenizer
    adds itself before (`head`, e.g. BOS) and after (`tail`) a text."""
    facts = tokenizer_facts(tokenizer)
    trusted = [i for segment in prompt.segments if segment.trusted for i in facts.specials_in(segment.text)]
    return [i for i in head if i in specials] + trusted + [i for i in tail if i in specials]


@dataclass
class TokenizerFacts:
    """What the guard asks of one tokenizer on every prompt, computed once: its special-token ids, the ids
    it adds around a text, and the special ids inside each trusted template text seen so far."""

    key: tuple  # `facts_key(tokenizer)` when computed: adding or naming special tokens changes it
    specials: frozenset[int]
    added: tuple[tuple[int, ...], tuple[int, ...]]
    tokenizer: object = field(repr=False)
    trusted: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def specials_in(self, text: str) -> tuple[int, ...]:
        if text not in self.trusted:
            if len(self.trusted) >= TRUSTED_TEXTS:
                self.trusted.clear()
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
            self.trusted[text] = tuple(i for i in ids if i in self.specials)
        return self.trusted[text]


TRUSTED_TEXTS = 4096  # trusted template texts remembered per tokenizer (a template has a handful)
_FACTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def facts_key(tokenizer) -> tuple:
    """Changes when tokens are added (the length) or a special token is named (bos, pad, extra ones)."""
    return len(tokenizer), tuple(getattr(tokenizer, "all_special_tokens", ()) or ())


def tokenizer_facts(tokenizer) -> TokenizerFacts:
    """The cached `TokenizerFacts` of `tokenizer`, recomputed when `facts_key` changes (about 1 us to check)."""
    key, facts = facts_key(tokenizer), _FACTS.get(tokenizer)
    if facts is None or facts.key != key:
        facts = TokenizerFacts(key, special_ids(tokenizer), added_ids(tokenizer), weakref.proxy(tokenizer))
        _FACTS[tokenizer] = facts
    return facts


def special_ids(tokenizer) -> frozenset[int]:
    """Ids of every special token of `tokenizer` (those `template.special_tokens` lists), read afresh
    (`tokenizer_facts` caches them per vocabulary size)."""
    ids = tokenizer.convert_tokens_to_ids(special_tokens(tokenizer))
    return frozenset(i for i in ids if i is not None)


def added_ids(tokenizer) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(before, after): the ids `add_special_tokens=True` puts around a text, e.g. ((BOS,), ())."""
    bare = tokenizer("a", add_special_tokens=False).input_ids
    full = tokenizer("a", add_special_tokens=True).input_ids
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return tuple(full[:start]), tuple(full[start + len(bare) :])
    return tuple(full), ()  # the tokenizer changes the text itself; treat its extras as a prefix
