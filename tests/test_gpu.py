"""GPU tier: bf16 and 4-bit scoring on CUDA. Skipped on machines without CUDA."""

import json
from pathlib import Path

import pytest
import torch

from promptrec.lm.config import ModelConfig
from promptrec.lm.loading import load_model
from promptrec.lm.scoring import Scorer
from promptrec.templates.template import load_template

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
EXAMPLES = [json.loads((Path(__file__).parent / "data" / "example_movie.json").read_text())] * 3


@pytest.mark.parametrize("quantization", ["none", "4bit"])
def test_cuda_scores_batched_equal_single(tiny_model_64_dir, quantization):
    config = ModelConfig(model=str(tiny_model_64_dir), device="cuda", quantization=quantization)
    model, tokenizer = load_model(config)
    assert next(model.parameters()).device.type == "cuda"
    scorer = Scorer(model, tokenizer, load_template("tallrec_plain"), score_batch_size=3)
    batched = scorer.score(EXAMPLES)
    single = [scorer.score([ex])[0] for ex in EXAMPLES]
    assert batched == pytest.approx(single, abs=2e-2)  # bf16 tolerance
