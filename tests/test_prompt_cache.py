"""Tests for promptrec.lm.prompt_cache: cached tokenisation gives the ids and scores of tokenising each prompt."""

from pathlib import Path

import numpy as np
import pytest

from promptrec.lm import prompt_cache
from promptrec.lm.config import ModelConfig
from promptrec.lm.loading import load_model
from promptrec.lm.prompt_cache import prompt_tokens
from promptrec.lm.scoring import Scorer
from promptrec.protocols.prepare import prepare_movielens
from promptrec.protocols.shots import select_examples
from promptrec.protocols.splits import load_split
from promptrec.templates.template import load_template

TEMPLATES = ["tallrec_plain", "movie_rich_chat"]  # plain text (BOS added) and a chat template (none added)


@pytest.fixture(scope="module")
def prepared(ml100k_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tokens") / "prepared"
    prepare_movielens(ml100k_dir, out, max_examples=200)
    return out


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    return load_model(ModelConfig(model=str(tiny_model_dir)))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PROMPTREC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "examples"


@pytest.mark.parametrize("name", TEMPLATES)
def test_cached_ids_are_the_encoded_prompts(cache, prepared, model_and_tokenizer, name):
    model, tokenizer = model_and_tokenizer
    scorer = Scorer(model, tokenizer, load_template(name))
    examples = load_split(prepared, "test")
    tokens = prompt_tokens(examples, tokenizer, scorer.template)
    expected = [scorer.encode(ex) for ex in examples]
    assert [tokens.rows[i] for i in range(len(examples))] == expected
    assert tokens.lengths.tolist() == [len(ids) for ids in expected]


@pytest.mark.parametrize("name", TEMPLATES)
def test_cached_tokenisation_scores_equal_uncached(cache, prepared, model_and_tokenizer, name):
    model, tokenizer = model_and_tokenizer
    scorer = Scorer(model, tokenizer, load_template(name), score_batch_size=4)
    examples = select_examples(load_split(prepared, "train"), 24, seed=1)  # a selection, out of file order
    cached = scorer.score_tokens(prompt_tokens(examples, tokenizer, scorer.template))
    assert np.array_equal(cached, scorer.score(list(examples)))  # bit-identical, not merely close


def test_examples_in_memory_are_tokenised_in_memory(cache, prepared, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    scorer = Scorer(model, tokenizer, load_template("tallrec_plain"), score_batch_size=4)
    examples = list(load_split(prepared, "valid"))[:6]
    tokens = prompt_tokens(examples, tokenizer, scorer.template)
    assert tokens.rows == [scorer.encode(ex) for ex in examples] and not list(cache.glob("tokens-*"))
    assert np.array_equal(scorer.score_tokens(tokens), scorer.score(examples))


def test_tokens_are_cached_per_template_and_reused(cache, prepared, model_and_tokenizer, monkeypatch):
    _, tokenizer = model_and_tokenizer
    examples = load_split(prepared, "test")
    first = prompt_tokens(examples, tokenizer, load_template("tallrec_plain"))
    [path] = cache.glob("tokens-*.arrow")

    def no_tokenising(*args, **kwargs):
        raise AssertionError("cached prompts were tokenised again")

    with monkeypatch.context() as patch:
        patch.setattr(prompt_cache, "encode_batch", no_tokenising)
        again = prompt_tokens(examples, tokenizer, load_template("tallrec_plain"))
    assert [again.rows[i] for i in range(3)] == [first.rows[i] for i in range(3)]
    assert list(cache.glob("tokens-*.arrow")) == [path]
    prompt_tokens(examples, tokenizer, load_template("movie_rich"))
    prompt_tokens(examples.select([0, 1]), tokenizer, load_template("tallrec_plain"))
    assert len(list(cache.glob("tokens-*.arrow"))) == 3, "another template or selection: another file"
    assert len(list(cache.glob("*.arrow"))) == 4, "the split's own copy and the three token files, nothing else"
