"""Tokenised prompts of a split: rendered and tokenised once with `Dataset.map`, cached beside its Arrow file.

`prompt_tokens` gives what `Scorer.score_tokens` scores: each prompt's token ids and the lengths. For
`Examples` read from a file, the map writes `tokens-<fingerprint>.arrow` next to the examples' Arrow copy;
the fingerprint covers everything that decides the ids (the examples' content sha256 and any selection, the
template file's sha256, the renderer's code, the tokenizer as `datasets`' Hasher sees it: vocabulary,
settings, chat template; and the chat flag), so a rerun reads the file back and renders nothing. Scoring
reads the lengths from one column and fetches one batch's rows at a time, so a million prompts never sit
in Python lists. Examples held in memory (a list, an Alpaca file) are tokenised in memory with
`encode_prompt`, prompt by prompt, exactly as `Scorer.encode` does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from promptrec.core.files import file_sha256
from promptrec.core.lazy import LazyModule
from promptrec.lm import encoding as encoding_module
from promptrec.lm.encoding import encode_prompt
from promptrec.protocols.examples import Examples, fallback_dir, writable_dir
from promptrec.templates import template as template_module

datasets = LazyModule("datasets")
fingerprint_module = LazyModule("datasets.fingerprint")

TOKENS_FORMAT = 1  # bump when the columns or the encoding change: old files are then never read


@dataclass(frozen=True)
class PromptTokens:
    rows: Sequence  # rows[i]: token ids (list[int]) of prompt i, fetched on access when on disk
    lengths: np.ndarray  # (num_prompts,) token counts


class TokenRows(Sequence):
    """Token id lists of a memory-mapped `input_ids` column, one row decoded per access."""

    def __init__(self, dataset):
        self._ids = dataset.data.column("input_ids")

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index) -> list[int]:
        return self._ids[int(index)].as_py()


def prompt_tokens(examples, tokenizer, template, progress: bool = False) -> PromptTokens:
    """Token ids of every example's prompt, from the cache when these prompts were tokenised before."""
    if not isinstance(examples, Examples) or examples.cache_folder() is None:
        rows = [encode_prompt(tokenizer, template.render_prompt(ex, tokenizer), template.chat) for ex in examples]
        return PromptTokens(rows, np.array([len(r) for r in rows], dtype=np.int64))
    name = f"tokens-{tokens_fingerprint(examples, tokenizer, template)}.arrow"
    folders = (examples.cache_folder(), fallback_dir())
    path = next((f / name for f in folders if (f / name).is_file()), None) or writable_dir(*folders) / name
    with progress_bars(progress):
        tokens = examples.selected_dataset().map(
            encode_batch,
            batched=True,
            batch_size=256,
            input_columns=["example"],
            remove_columns=examples.dataset.column_names,
            fn_kwargs={"tokenizer": tokenizer, "template": template},
            features=datasets.Features(
                {"input_ids": datasets.List(datasets.Value("int32")), "num_tokens": datasets.Value("int32")}
            ),
            cache_file_name=str(path),
            load_from_cache_file=True,
            new_fingerprint=path.stem,
            desc="tokenising prompts",
        )
    return PromptTokens(TokenRows(tokens), tokens.data.column("num_tokens").to_numpy().astype(np.int64))


def encode_batch(texts: list[str], tokenizer, template) -> dict:
    """`encode_prompt` over a batch, prompt by prompt through the special-token guard (as `Scorer.encode`)."""
    ids = [
        encode_prompt(tokenizer, template.render_prompt(json.loads(text), tokenizer), template.chat) for text in texts
    ]
    return {"input_ids": ids, "num_tokens": [len(i) for i in ids]}


def tokens_fingerprint(examples: Examples, tokenizer, template) -> str:
    inputs = {
        "examples": examples.fingerprint,
        "template": [template.name, template.version, template.sha256, template.chat, template.system],
        "template_source": hashlib.sha256(template.source.encode()).hexdigest(),
        "renderer": file_sha256(template_module.__file__),
        "encoder": file_sha256(encoding_module.__file__),
        "tokenizer": fingerprint_module.Hasher.hash(tokenizer),
        "format": TOKENS_FORMAT,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]


@contextlib.contextmanager
def progress_bars(enabled: bool):
    """`datasets`' progress bars on or off for one block, then as they were."""
    was_enabled = datasets.is_progress_bar_enabled()
    (datasets.enable_progress_bars if enabled else datasets.disable_progress_bars)()
    try:
        yield
    finally:
        (datasets.enable_progress_bars if was_enabled else datasets.disable_progress_bars)()
