"""bitsandbytes 4-bit / 8-bit loading, scoring and LoRA training on the tiny model (CPU here, CUDA elsewhere)."""

import importlib.util
import json
from pathlib import Path

import pytest

from promptrec.lm.config import ModelConfig
from promptrec.lm.loading import load_model
from promptrec.lm.scoring import Scorer
from promptrec.templates.template import load_template

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes missing")
EXAMPLE = json.loads((Path(__file__).parent / "data" / "example_movie.json").read_text())


@pytest.mark.parametrize("quantization, layer", [("4bit", "Linear4bit"), ("8bit", "Linear8bitLt")])
def test_quantized_model_scores_close_to_full_precision(tiny_model_64_dir, quantization, layer):
    template = load_template("tallrec_plain")
    full, tokenizer = load_model(ModelConfig(model=str(tiny_model_64_dir)))
    quantized, _ = load_model(ModelConfig(model=str(tiny_model_64_dir), quantization=quantization))
    assert type(quantized.model.layers[0].self_attn.q_proj).__name__ == layer
    reference = Scorer(full, tokenizer, template).score([EXAMPLE])
    assert Scorer(quantized, tokenizer, template).score([EXAMPLE]) == pytest.approx(reference, abs=0.1)


def test_lora_trains_on_a_4bit_model(tiny_model_64_dir, tmp_path):
    from promptrec.lm.training import TrainConfig, train

    examples = [dict(EXAMPLE, example_id=f"e{i}", label=i % 2) for i in range(4)]
    config = TrainConfig(
        shots=4,
        num_epochs=1,
        batch_size=2,
        valid_examples=4,
        model=ModelConfig(model=str(tiny_model_64_dir), quantization="4bit"),
    )
    train(config, examples, examples, tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    tuned, tokenizer = load_model(config.model, adapter=tmp_path / "adapter")
    assert Scorer(tuned, tokenizer, load_template("tallrec_plain")).score([EXAMPLE]).shape == (1,)


def test_shared_prefix_scoring_on_a_4bit_model_equals_full_prompts(tiny_model_64_dir):
    quantized, tokenizer = load_model(ModelConfig(model=str(tiny_model_64_dir), quantization="4bit"))
    scorer = Scorer(quantized, tokenizer, load_template("movie_rich"), score_batch_size=3)
    group = [dict(EXAMPLE, example_id=f"c{i}", item=dict(EXAMPLE["item"], title=f"Film {i} ({1990 + i})"))
             for i in range(5)]  # fmt: skip
    cached, prefix_tokens = scorer.score_group(group)
    assert prefix_tokens > 8
    assert cached == pytest.approx(scorer.score(group), abs=1e-3)
