"""Tests for promptrec.scoring: batched == one-at-a-time scores, answer ids, padding and batching."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from promptrec.core.errors import TemplateError
from promptrec.lm.config import ModelConfig
from promptrec.lm.loading import load_model
from promptrec.lm.scoring import Scorer, answer_ids, length_batches, pad_batch, score_sequences
from promptrec.templates.template import load_template

DATA_DIR = Path(__file__).parent / "data"
TOLERANCE = 1e-4
PROMPTS = [
    "User Preference: Toy Story (1995), Star Wars (1977), Fargo (1996)",
    "Yes",
    "Whether the user will like the target movie? Answer Yes or No.",
    "Comedy Drama",
    "The user is a 24 year old male technician. They liked 7 of these 10 movies. Comedy Drama Action",
    "User Unpreference: GoldenEye (1995), Four Rooms (1995)",
    "### Response:",
]
SINGLE_TOKEN_CHOICES = (" Yes", " No")
# Both answers tokenize to two tokens with the tiny tokenizer (checked in test_multi_token_choices_are_multi_token).
MULTI_TOKEN_CHOICES = (" Yes.", " No.")
# Answers of different lengths: 6 tokens and 2 tokens.
UNEVEN_CHOICES = (" Yes please", " No.")


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    return load_model(ModelConfig(model=str(tiny_model_dir)))


@pytest.fixture(scope="module")
def sequences(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    return [tokenizer(text, add_special_tokens=False).input_ids for text in PROMPTS]


@pytest.fixture(scope="module")
def one_at_a_time(model_and_tokenizer, sequences):
    """Scores of each prompt scored alone, per (choices, padding side); computed once per module."""
    model, tokenizer = model_and_tokenizer
    cache = {}

    def scores(choices, padding_side="left"):
        if (choices, padding_side) not in cache:
            answers = answer_ids(tokenizer, choices)
            cache[choices, padding_side] = np.array(
                [
                    score_sequences(model, [seq], answers, tokenizer.pad_token_id, 1, padding_side)[0]
                    for seq in sequences
                ]
            )
        return cache[choices, padding_side]

    return scores


@torch.no_grad()
def hand_log_odds(model, prompt, answers):
    """log P(positive) - log P(negative), each a sum over its tokens, from one unpadded forward per answer."""

    def continuation(tokens):
        ids = torch.tensor([list(prompt) + list(tokens)])
        log_probs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)  # (length, vocab)
        return sum(log_probs[len(prompt) + k - 1, token].item() for k, token in enumerate(tokens))

    return continuation(answers.positive) - continuation(answers.negative)


def test_prompts_have_varied_lengths(sequences):
    assert len({len(s) for s in sequences}) >= 5


def test_multi_token_choices_are_multi_token(tiny_tokenizer):
    answers = answer_ids(tiny_tokenizer, MULTI_TOKEN_CHOICES)
    assert len(answers.positive) > 1 and len(answers.negative) > 1
    assert not answers.single_token
    uneven = answer_ids(tiny_tokenizer, UNEVEN_CHOICES)
    assert len(uneven.positive) != len(uneven.negative)


def test_single_token_choices_are_single_token(tiny_tokenizer):
    assert answer_ids(tiny_tokenizer, SINGLE_TOKEN_CHOICES).single_token


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("batch_size", [2, 3, 8])
def test_batched_scores_equal_single_scores(model_and_tokenizer, sequences, one_at_a_time, padding_side, batch_size):
    model, tokenizer = model_and_tokenizer
    answers = answer_ids(tokenizer, SINGLE_TOKEN_CHOICES)
    batched = score_sequences(model, sequences, answers, tokenizer.pad_token_id, batch_size, padding_side)
    single = one_at_a_time(SINGLE_TOKEN_CHOICES, padding_side)
    np.testing.assert_allclose(batched, single, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_single_token_scores_equal_hand_computation(model_and_tokenizer, sequences, padding_side):
    model, tokenizer = model_and_tokenizer
    answers = answer_ids(tokenizer, SINGLE_TOKEN_CHOICES)
    batched = score_sequences(model, sequences, answers, tokenizer.pad_token_id, 4, padding_side)
    expected = [hand_log_odds(model, seq, answers) for seq in sequences]
    np.testing.assert_allclose(batched, expected, atol=TOLERANCE, rtol=0)


def test_scores_come_back_in_input_order(model_and_tokenizer, sequences):
    model, tokenizer = model_and_tokenizer
    answers = answer_ids(tokenizer, SINGLE_TOKEN_CHOICES)
    forward = score_sequences(model, sequences, answers, tokenizer.pad_token_id, 3)
    backward = score_sequences(model, sequences[::-1], answers, tokenizer.pad_token_id, 3)
    np.testing.assert_allclose(forward, backward[::-1], atol=TOLERANCE, rtol=0)


def test_scores_are_not_constant(model_and_tokenizer, sequences):
    model, tokenizer = model_and_tokenizer
    answers = answer_ids(tokenizer, SINGLE_TOKEN_CHOICES)
    scores = score_sequences(model, sequences, answers, tokenizer.pad_token_id, 8)
    assert np.all(np.isfinite(scores))
    assert np.ptp(scores) > 1e-6


@pytest.mark.parametrize("choices", [MULTI_TOKEN_CHOICES, UNEVEN_CHOICES])
@pytest.mark.parametrize("batch_size", [2, 3, 8])
def test_multi_token_batched_scores_equal_single_scores(
    model_and_tokenizer, sequences, one_at_a_time, choices, batch_size
):
    model, tokenizer = model_and_tokenizer
    answers = answer_ids(tokenizer, choices)
    batched = score_sequences(model, sequences, answers, tokenizer.pad_token_id, batch_size)
    single = one_at_a_time(choices)
    np.testing.assert_allclose(batched, single, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("choices", [MULTI_TOKEN_CHOICES, UNEVEN_CHOICES])
def test_multi_token_scores_equal_hand_computation(model_and_tokenizer, sequences, choices):
    model, tokenizer = model_and_tokenizer
    answers = answer_ids(tokenizer, choices)
    batched = score_sequences(model, sequences, answers, tokenizer.pad_token_id, 4)
    expected = [hand_log_odds(model, seq, answers) for seq in sequences]
    np.testing.assert_allclose(batched, expected, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize(
    "choices",
    [
        (" Yes.", " Yes!"),  # both start with the " Yes" token
        (" No.", " No"),
    ],
)
def test_answers_sharing_first_token_raise(tiny_tokenizer, choices):
    with pytest.raises(TemplateError) as info:
        answer_ids(tiny_tokenizer, choices, "my_template")
    message = str(info.value)
    assert "my_template" in message
    assert repr(choices[0]) in message and repr(choices[1]) in message


def test_answer_ids_have_no_special_tokens(tiny_tokenizer):
    answers = answer_ids(tiny_tokenizer, SINGLE_TOKEN_CHOICES)
    special = set(tiny_tokenizer.all_special_ids)
    assert not special & (set(answers.positive) | set(answers.negative))


@pytest.mark.parametrize(
    "side, input_ids, mask, position_ids, last_index",
    [
        (
            "left",
            [[9, 9, 5, 6, 7], [8, 1, 2, 3, 4], [9, 9, 9, 9, 5]],
            [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]],
            [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4], [0, 0, 0, 0, 0]],
            [4, 4, 4],
        ),
        (
            "right",
            [[5, 6, 7, 9, 9], [8, 1, 2, 3, 4], [5, 9, 9, 9, 9]],
            [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]],
            [[0, 1, 2, 2, 2], [0, 1, 2, 3, 4], [0, 0, 0, 0, 0]],
            [2, 4, 0],
        ),
    ],
)
def test_pad_batch(side, input_ids, mask, position_ids, last_index):
    batch = pad_batch([[5, 6, 7], [8, 1, 2, 3, 4], [5]], pad_id=9, side=side)
    assert batch.input_ids.tolist() == input_ids
    assert batch.attention_mask.tolist() == mask
    assert batch.last_index.tolist() == last_index
    # Positions count real tokens from 0; positions under padding are masked and do not matter.
    real = batch.attention_mask.bool()
    assert batch.position_ids[real].tolist() == torch.tensor(position_ids)[real].tolist()
    assert batch.side == side


@pytest.mark.parametrize(
    "lengths, batch_size",
    [
        ([5, 1, 9, 3, 3, 7, 2], 2),
        ([5, 1, 9, 3, 3, 7, 2], 3),
        ([5, 1, 9, 3, 3, 7, 2], 100),
        ([4, 4, 4, 4], 3),
        ([1], 1),
        ([], 4),
    ],
)
def test_length_batches_cover_every_index_once_grouped_by_length(lengths, batch_size):
    batches = length_batches(lengths, batch_size)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(0 < len(batch) <= batch_size for batch in batches)
    assert len(batches) == math.ceil(len(lengths) / batch_size)
    # Grouped by length, longest first: no batch holds a shorter prompt than any later batch.
    for earlier, later in zip(batches, batches[1:]):
        assert min(lengths[i] for i in earlier) >= max(lengths[i] for i in later)


def test_length_batches_longest_first():
    assert length_batches([5, 1, 9, 3], 2) == [[2, 0], [3, 1]]


def load_example(name: str) -> dict:
    return json.loads((DATA_DIR / f"example_{name}.json").read_text(encoding="utf-8"))


def other_examples(example: dict) -> list[dict]:
    shorter = dict(example, example_id="short", history=example["history"][:2])
    retitled = dict(example, example_id="retitled", item=dict(example["item"], title="Heat (1995)"))
    no_history = dict(example, example_id="empty", history=[])
    return [shorter, retitled, no_history]


def test_scorer_tallrec_plain_scores_example_finitely(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    scorer = Scorer(model, tokenizer, load_template("tallrec_plain"), score_batch_size=1)
    (score,) = scorer.score([load_example("movie")])
    assert np.isfinite(score)


@pytest.mark.parametrize("batch_size", [2, 4])
def test_scorer_tallrec_plain_batched_equals_single(model_and_tokenizer, batch_size):
    model, tokenizer = model_and_tokenizer
    example = load_example("movie")
    single = Scorer(model, tokenizer, load_template("tallrec_plain"), score_batch_size=1).score([example])[0]
    batch = [other_examples(example)[0], example, *other_examples(example)[1:]]
    lengths = {len(Scorer(model, tokenizer, load_template("tallrec_plain")).encode(ex)) for ex in batch}
    assert len(lengths) > 1  # padding is actually exercised
    batched = Scorer(model, tokenizer, load_template("tallrec_plain"), score_batch_size=batch_size).score(batch)
    assert abs(batched[1] - single) < TOLERANCE
    assert np.all(np.isfinite(batched))
