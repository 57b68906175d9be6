"""Yes/no scoring: one forward pass per prompt, score = log P(yes) - log P(no) at the answer position.

Answer token ids come from the tokenizer for the template's `choices`, never from constants.
Multi-token answers are scored as summed log-probabilities of their tokens. Batching groups
prompts of similar length; padding is explicit (mask + position ids) so a batched score equals a
one-at-a-time score on either padding side. Training reuses `answer_log_odds` for its BCE loss.

Shared-prefix scoring (`score_shared_prefix`): one user's prompts for many candidates share their
first tokens (instruction, profile, history). Those tokens run once; their key/value cache is
copied to every candidate row and only each candidate's remaining tokens run. The prefix is the
longest common *token* prefix of the full prompts, so any template works (chat ones included) and
the arithmetic is the same as scoring each full prompt; a template that puts the candidate first
has no useful prefix and falls back to plain batched scoring.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import itertools
from dataclasses import dataclass

import numpy as np

from promptrec.core.errors import TemplateError
from promptrec.core.lazy import LazyModule
from promptrec.lm import packed_attention
from promptrec.lm.encoding import encode_prompt

torch = LazyModule("torch")


def no_grad(function):
    """torch.no_grad() as a decorator, applied at call time so that importing this module loads no torch."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with torch.no_grad():
            return function(*args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class AnswerIds:
    positive: tuple[int, ...]
    negative: tuple[int, ...]

    @property
    def single_token(self) -> bool:
        return len(self.positive) == 1 and len(self.negative) == 1

    def for_label(self, label: int) -> tuple[int, ...]:
        return self.positive if label else self.negative


def answer_ids(tokenizer, choices: tuple[str, str], template_name: str = "template") -> AnswerIds:
    """Token ids of the two answers as they follow the prompt (no BOS, no special tokens)."""
    positive, negative = (tuple(tokenizer(c, add_special_tokens=False).input_ids) for c in choices)
    if not positive or not negative:
        raise TemplateError(f"{template_name}: answer choices {choices!r} tokenize to nothing; use visible words")
    if positive[0] == negative[0]:
        raise TemplateError(
            f"{template_name}: answer choices {choices!r} share their first token {positive[0]}; "
            "pick answers that differ at their first token (e.g. 'Yes'/'No')"
        )
    return AnswerIds(positive, negative)


@dataclass
class Batch:
    input_ids: torch.Tensor  # (batch, length)
    attention_mask: torch.Tensor  # (batch, length), 1 on real tokens
    position_ids: torch.Tensor  # (batch, length), 0.. on real tokens whatever the padding side
    last_index: torch.Tensor  # (batch,), index of each row's last real token
    side: str  # "left" puts every last token in the final column


def pad_batch(sequences: list[list[int]], pad_id: int, side: str = "left") -> Batch:
    length = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, seq in enumerate(sequences):
        span = slice(length - len(seq), length) if side == "left" else slice(0, len(seq))
        input_ids[row, span] = torch.tensor(seq, dtype=torch.long)
        mask[row, span] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    last_index = torch.full((len(sequences),), length - 1) if side == "left" else mask.sum(-1) - 1
    return Batch(input_ids, mask, position_ids, last_index, side)


def model_device(model) -> torch.device:
    # DDP wrappers have no `.device`; parameters always do.
    return next(model.parameters()).device


def forward_logits(model, batch: Batch, logits_to_keep: int = 0) -> torch.Tensor:
    """(batch, kept positions, vocab) float logits; 0 keeps every position."""
    device = model_device(model)
    return model(
        input_ids=batch.input_ids.to(device),
        attention_mask=batch.attention_mask.to(device),
        position_ids=batch.position_ids.to(device),
        use_cache=False,
        logits_to_keep=logits_to_keep,
    ).logits.float()


def next_token_log_probs(model, batch: Batch) -> torch.Tensor:
    """(batch, vocab) log-probabilities of the token after each row's last real token."""
    if batch.side == "left":
        # Only the final column is needed, which skips the vocab projection everywhere else.
        last_logits = forward_logits(model, batch, logits_to_keep=1)[:, -1]
    else:
        logits = forward_logits(model, batch)
        last_logits = logits[torch.arange(logits.shape[0], device=logits.device), batch.last_index.to(logits.device)]
    return torch.log_softmax(last_logits, dim=-1)


def answer_log_odds(model, batch: Batch, answers: AnswerIds) -> torch.Tensor:
    """(batch,) log P(positive) - log P(negative) for single-token answers, from one forward pass."""
    log_probs = next_token_log_probs(model, batch)
    return log_probs[:, answers.positive[0]] - log_probs[:, answers.negative[0]]


def continuation_log_probs(model, prompts: list[list[int]], continuation: tuple[int, ...], pad_id: int) -> torch.Tensor:
    """(batch,) summed log-probability of `continuation` after each prompt (right padding)."""
    sequences = [p + list(continuation) for p in prompts]
    log_probs = torch.log_softmax(forward_logits(model, pad_batch(sequences, pad_id, side="right")), dim=-1)
    total = torch.zeros(len(prompts), device=log_probs.device)  # log_probs: (batch, length, vocab)
    for row, prompt in enumerate(prompts):
        for offset, token in enumerate(continuation):
            # token at position len(prompt)+offset is predicted by the logits one step earlier
            total[row] += log_probs[row, len(prompt) + offset - 1, token]
    return total


def length_batches(lengths, batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first, so memory peaks early; ties in input order)."""
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable").tolist()
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


@no_grad
def score_sequences(
    model,
    sequences,
    answers: AnswerIds,
    pad_id: int,
    batch_size: int = 8,
    padding_side: str = "left",
    progress: bool = False,
    lengths=None,
) -> np.ndarray:
    """Log-odds for each tokenized prompt, in input order.

    `sequences` is a list of token id lists, or any sequence that fetches them on access (`lm.prompt_cache`);
    `lengths` (their token counts) spares reading every one of them just to batch them.
    """
    from tqdm.auto import tqdm

    lengths = [len(s) for s in sequences] if lengths is None else lengths
    scores = np.zeros(len(lengths), dtype=np.float64)
    batches = length_batches(lengths, batch_size)
    for indices in tqdm(batches, desc="scoring", unit="batch", disable=not progress):
        chunk = [sequences[i] for i in indices]
        if answers.single_token:
            values = answer_log_odds(model, pad_batch(chunk, pad_id, padding_side), answers)
        else:
            values = continuation_log_probs(model, chunk, answers.positive, pad_id) - continuation_log_probs(
                model, chunk, answers.negative, pad_id
            )
        scores[indices] = values.cpu().numpy()
    return scores


def common_prefix_length(sequences: list[list[int]]) -> int:
    """Length of the longest token prefix shared by every sequence."""
    shortest = min(sequences, key=len)
    for position, token in enumerate(shortest):
        if any(seq[position] != token for seq in sequences):
            return position
    return len(shortest)


def _cache_argument(model) -> str:
    # transformers 5 renamed `past_key_values` to `cache`; accept either so older 5.x releases work.
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _answer_rows(continuations: list[list[int]], answers: AnswerIds) -> tuple[list[list[int]], list[tuple]]:
    """Rows to run after the prefix and, per row, the answer tokens its final positions predict.

    Single-token answers need one row per candidate (read the last position). Multi-token answers
    need two rows per candidate, each continued by all but the last answer token.
    """
    if answers.single_token:
        return continuations, [()] * len(continuations)
    rows, targets = [], []
    for continuation in continuations:
        for answer in (answers.positive, answers.negative):
            rows.append(continuation + list(answer[:-1]))
            targets.append(answer)
    return rows, targets


@no_grad
def score_shared_prefix(
    model,
    sequences: list[list[int]],
    answers: AnswerIds,
    pad_id: int,
    candidates_per_pass: int = 32,
    min_prefix_tokens: int = 8,
) -> tuple[np.ndarray, int]:
    """Log-odds of prompts that share a prefix, and the prefix length used (0: plain scoring).

    The prefix runs once (batch 1) into a KV cache. Then, with sdpa/eager attention, up to
    `candidates_per_pass` continuations are packed into ONE row after it: a block mask lets each token see
    the prefix and the earlier tokens of its own continuation only, positions restart after the
    prefix for every continuation, and only the answer positions reach the vocab projection. No
    padding and no copies of the prefix cache per candidate. Other attention kernels (flash) take
    a batched path: the cache repeated per row, continuations left-padded.
    """
    prefix_len = min(common_prefix_length(sequences), min(len(s) for s in sequences) - 1)
    if len(sequences) < 2 or prefix_len < min_prefix_tokens:
        return score_sequences(model, sequences, answers, pad_id, candidates_per_pass), 0
    device = model_device(model)
    argument = _cache_argument(model)
    out = model(input_ids=torch.tensor([sequences[0][:prefix_len]], device=device), use_cache=True, logits_to_keep=1)
    prefix_cache = getattr(out, argument, None) or out.past_key_values
    rows, targets = _answer_rows([s[prefix_len:] for s in sequences], answers)
    step = _packed_log_probs if takes_custom_masks(model) else _batched_log_probs
    values = np.zeros(len(rows), dtype=np.float64)
    for start in range(0, len(rows), candidates_per_pass):
        chunk = list(range(start, min(start + candidates_per_pass, len(rows))))
        cache = copy.deepcopy(prefix_cache)  # the forward appends to it; the prefix stays pristine
        log_probs = step(model, cache, argument, prefix_len, [rows[i] for i in chunk], [targets[i] for i in chunk])
        for row, index in enumerate(chunk):  # log_probs[row]: (positions kept for that row, vocab)
            if answers.single_token:
                values[index] = (
                    log_probs[row][-1, answers.positive[0]] - log_probs[row][-1, answers.negative[0]]
                ).item()
            else:  # the last len(answer) kept positions predict the answer's tokens
                steps = log_probs[row][-len(targets[index]) :]
                values[index] = sum(steps[k, token].item() for k, token in enumerate(targets[index]))
    if not answers.single_token:
        values = values[0::2] - values[1::2]
    return values, prefix_len


def takes_custom_masks(model) -> bool:
    """Whether attention accepts a 4D (query, key) mask: sdpa and eager do, flash kernels do not."""
    return getattr(model.config, "_attn_implementation", None) in ("sdpa", "eager")


def _kept(targets: list[tuple]) -> list[int]:
    return [max(len(t), 1) for t in targets]  # positions each row needs: 1, or one per answer token


def _packed_log_probs(model, cache, argument: str, prefix_len: int, rows, targets) -> list[torch.Tensor]:
    """Continuations packed in one row after the cached prefix; per row, (kept, vocab) log-probs."""
    device = model_device(model)
    lengths = [len(r) for r in rows]
    total = sum(lengths)
    ends = list(itertools.accumulate(lengths))
    allowed = torch.zeros((total, prefix_len + total), dtype=torch.bool)  # (query, key)
    allowed[:, :prefix_len] = True
    for end, length in zip(ends, lengths):
        begin = end - length
        allowed[begin:end, prefix_len + begin : prefix_len + end] = torch.ones(length, length, dtype=torch.bool).tril()
    if model.config._attn_implementation == "eager":  # eager adds the mask to the scores
        dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    else:
        mask = allowed
    positions = torch.tensor([prefix_len + k for length in lengths for k in range(length)])
    keep = [end - n + k for end, n in zip(ends, _kept(targets)) for k in range(n)]
    # On SDPA, packed_layout computes only the prefix and per-continuation blocks of that mask
    supported = packed_attention.supports(model)
    layout = packed_attention.packed_layout(model, prefix_len, lengths) if supported else contextlib.nullcontext()
    with layout:
        logits = model(
            input_ids=torch.tensor([[token for row in rows for token in row]], device=device),
            attention_mask=mask[None, None].to(device),  # (1, 1, query, prefix + query)
            position_ids=positions[None].to(device),
            use_cache=True,
            logits_to_keep=torch.tensor(keep, device=device),
            **{argument: cache},
        ).logits.float()[0]  # (kept positions, vocab)
    return list(torch.log_softmax(logits, dim=-1).split(_kept(targets)))


def _batched_log_probs(model, cache, argument: str, prefix_len: int, rows, targets) -> list[torch.Tensor]:
    """Continuations as a left-padded batch after the prefix cache repeated per row."""
    device = model_device(model)
    batch = pad_batch(rows, pad_id=0, side="left")  # padding is masked out; its id never matters
    cache.batch_repeat_interleave(len(rows))
    mask = torch.cat([torch.ones((len(rows), prefix_len), dtype=torch.long), batch.attention_mask], dim=1)
    keep = max(_kept(targets))
    logits = model(
        input_ids=batch.input_ids.to(device),
        attention_mask=mask.to(device),
        position_ids=(batch.position_ids + prefix_len).to(device),
        use_cache=True,
        logits_to_keep=keep,
        **{argument: cache},
    ).logits.float()  # (batch, keep, vocab)
    log_probs = torch.log_softmax(logits, dim=-1)
    return [log_probs[row, keep - n :] for row, n in enumerate(_kept(targets))]


class Scorer:
    """Renders examples with one template and scores them with one model: the only inference path.

    With a `wide` part (an adapter trained as a hybrid), every score is the LLM's log-odds (times the
    part's gate weight) plus the wide logit of the same example; it is computed in numpy after the
    forward pass, so the shared-prefix path runs exactly as without it. A part whose gate turned the
    LLM off (weight 0) makes the LLM's share 0 whatever it says, so the forward pass is skipped: the
    prompts are still rendered and tokenized (a template error still shows), and the scores are the
    wide logits, as they would be after the pass.
    """

    def __init__(self, model, tokenizer, template, score_batch_size: int = 8, candidates_per_pass: int = 20, wide=None):
        self.model, self.tokenizer, self.template, self.wide = model, tokenizer, template, wide
        self.score_batch_size = score_batch_size  # prompts per forward pass (`score`)
        self.candidates_per_pass = candidates_per_pass  # continuations packed after a shared prefix (`score_group`)
        self.answers = answer_ids(tokenizer, template.choices, template.name)

    def encode(self, example: dict) -> list[int]:
        # Segments, not text: special-token strings that data put into the prompt are tokenised as plain text.
        return encode_prompt(self.tokenizer, self.template.render_prompt(example, self.tokenizer), self.template.chat)

    @property
    def llm_off(self) -> bool:
        """True when the wide part's gate weighs the LLM at 0: its log-odds cannot change a score."""
        return self.wide is not None and self.wide.llm_weight == 0.0

    def score_group(self, examples: list[dict], min_prefix_tokens: int = 8) -> tuple[np.ndarray, int]:
        """Scores of examples that share a context (one user's candidates), reusing their common prefix."""
        sequences = [self.encode(example) for example in examples]
        if self.llm_off:
            return self.with_wide(np.zeros(len(examples)), examples), 0
        scores, prefix_tokens = score_shared_prefix(
            self.model,
            sequences,
            self.answers,
            self.tokenizer.pad_token_id,
            self.candidates_per_pass,
            min_prefix_tokens,
        )
        return self.with_wide(scores, examples), prefix_tokens

    def score(self, examples: list[dict], progress: bool = False) -> np.ndarray:
        sequences = [self.encode(example) for example in examples]
        if self.llm_off:
            return self.with_wide(np.zeros(len(examples)), examples)
        scores = score_sequences(
            self.model, sequences, self.answers, self.tokenizer.pad_token_id, self.score_batch_size, progress=progress
        )
        return self.with_wide(scores, examples)

    def with_wide(self, llm_scores: np.ndarray, examples: list[dict]) -> np.ndarray:
        """The hybrid score: the gated LLM log-odds + the wide logit (the LLM's alone without a wide part)."""
        return llm_scores if self.wide is None else sum(self.wide.hybrid(llm_scores, examples))

    def parts(self, llm_scores: np.ndarray, examples: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """(the LLM's share, the wide logit) of each score; the wide logit is 0 without a wide part."""
        if self.wide is None:
            return llm_scores, np.zeros(len(llm_scores))
        return self.wide.hybrid(llm_scores, examples)

    def score_tokens(self, tokens, progress: bool = False) -> np.ndarray:
        """LLM log-odds of prompts tokenised by `lm.prompt_cache.prompt_tokens` (no wide part: add `with_wide`).

        Zeros when the gate turned the LLM off (`llm_off`): the pass is skipped, as its share would be 0."""
        if self.llm_off:
            return np.zeros(len(tokens.rows))
        return score_sequences(
            self.model,
            tokens.rows,
            self.answers,
            self.tokenizer.pad_token_id,
            self.score_batch_size,
            progress=progress,
            lengths=tokens.lengths,
        )
