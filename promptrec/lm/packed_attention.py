"""Block-sparse attention for continuations packed after one shared prefix.

Shared-prefix ranking packs a user's candidate continuations into one row after the prefix's KV
cache; a dense (query, key) mask lets each continuation see the prefix and its own earlier tokens.
SDPA with that dense mask computes every masked-out score too (10 continuations of ~40 tokens after
a 266-token prefix: 400 x 666 scores per head where 10 x 40 x 306 are needed) and, being masked,
repeats the key/value heads for grouped-query attention.

`packed_layout(model, prefix_len, lengths)` switches the model to the attention function registered
here for one forward: the continuations become a batch, each row attending to [the prefix's keys
(a broadcast view, not a copy) | its own keys] under a causal mask, in one SDPA call with grouped
heads. The same arithmetic without the masked blocks. Outside that block (another thread, or a
forward without a layout) the function is plain SDPA, and the dense mask is still passed, so either
function gives the same scores.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools

from promptrec.core.lazy import LazyModule

torch = LazyModule("torch")

NAME = "promptrec_packed"

_LAYOUT: contextvars.ContextVar[tuple[int, tuple[int, ...]] | None] = contextvars.ContextVar("packed", default=None)


@functools.cache
def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, packed_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def supports(model) -> bool:
    """Whether `packed_layout` applies: models on SDPA (eager keeps the dense mask)."""
    return getattr(model.config, "_attn_implementation", None) in ("sdpa", NAME)


@contextlib.contextmanager
def packed_layout(model, prefix_len: int, lengths: list[int]):
    """Within the block, the model's attention computes only the prefix and per-continuation blocks."""
    _register()
    config = model.config
    previous = config._attn_implementation
    token = _LAYOUT.set((prefix_len, tuple(lengths)))
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = previous
        _LAYOUT.reset(token)


class _Plan:
    """Index tensors of one packed forward, built once and used by every layer."""

    def __init__(self, prefix_len: int, lengths: tuple[int, ...], device):
        width, starts = max(lengths), list(itertools.accumulate(lengths, initial=0))
        offsets = torch.arange(width)
        valid = offsets[None, :] < torch.tensor(lengths)[:, None]  # (continuations, width)
        self.index = (torch.tensor(starts[:-1])[:, None] + offsets[None, :]).masked_fill(~valid, 0).to(device)
        own = torch.ones((width, width), dtype=torch.bool).tril()[None] & valid[:, None, :]  # (c, query, key)
        prefix = torch.ones((len(lengths), width, prefix_len), dtype=torch.bool)
        self.mask = torch.cat([prefix, own], dim=2)[:, None].to(device)  # (c, 1, query, prefix + key)
        self.back = (torch.arange(len(lengths))[:, None] * width + offsets[None, :])[valid].to(device)  # (total,)


@functools.lru_cache(maxsize=8)
def _plan(layout: tuple[int, tuple[int, ...]], device) -> _Plan:
    return _Plan(layout[0], layout[1], device)


def packed_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """The attention interface's signature: (batch, heads, q, dim) in, (batch, q, heads, dim) out."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    layout = _LAYOUT.get()
    total = query.shape[2]
    if layout is None or query.shape[0] != 1 or key.shape[2] != layout[0] + total or sum(layout[1]) != total:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    prefix_len, lengths = layout
    plan = _plan(layout, query.device)
    count = len(lengths)

    def rows(states):  # (1, heads, prefix + total, dim) -> (continuations, heads, prefix + width, dim)
        own = states[0, :, prefix_len:][:, plan.index].transpose(0, 1)
        return torch.cat([states[:, :, :prefix_len].expand(count, -1, -1, -1), own], dim=2)

    heads, dim = query.shape[1], query.shape[3]
    out = torch.nn.functional.scaled_dot_product_attention(
        query[0][:, plan.index].transpose(0, 1),  # (continuations, heads, width, dim)
        rows(key),
        rows(value),
        attn_mask=plan.mask,
        scale=scaling,
        enable_gqa=key.shape[1] != heads,
    )  # (continuations, heads, width, dim)
    out = out.transpose(0, 1).reshape(heads, -1, dim)[:, plan.back]  # (heads, total, dim)
    return out.transpose(0, 1)[None].contiguous(), None
