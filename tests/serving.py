"""Helpers for the tests of `promptrec serve`: an HTTP client on 127.0.0.1, adapters, a served app."""

import http.client
import json
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from promptrec.baselines.wide import WidePart
from promptrec.jobs.api import BackgroundServer, create_app
from promptrec.jobs.playground import Playground
from promptrec.jobs.serve import Service
from promptrec.lm.adapter import RUN_RECORD
from promptrec.protocols.prepare import prepare_movielens

MINI_ML = Path(__file__).parent / "data" / "mini-ml"
CANDIDATES = {"7": ["1", "9", "3", "12"], "12": ["2", "5", "6", "13", "14"], "3": ["4", "10", "11"]}


def call(url: str, method: str, path: str, body=None, raw: bytes | None = None, timeout: float = 120):
    """(status, parsed JSON body) of one request; `raw` sends those bytes as the body instead of `body`."""
    where = urlsplit(url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=timeout)
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    try:
        connection.request(method, path, body=data, headers={"content-type": "application/json"})
        response = connection.getresponse()
        text = response.read().decode()
    finally:
        connection.close()
    return response.status, json.loads(text) if text else None


def prepare_next_item(out: Path) -> Path:
    prepare_movielens(MINI_ML, out, history_len=3, protocol="next-item")
    return out


def make_adapter(out: Path, model_dir: Path, seed: int, wide: bool = False) -> Path:
    """A LoRA adapter with random (non-zero) weights, promptrec's run record and, with `wide`, a wide part."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(out)
    record = {"model": {"model": str(model_dir)}, "template": {"name": "movie_next"}}
    (out / RUN_RECORD).write_text(json.dumps(record))
    if wide:
        names = ("log_item_ratings", "user_like_rate", "history_mean_rating")
        ones, zeros = np.ones(len(names)), np.zeros(len(names))
        WidePart(names, zeros, ones, zeros, np.array([0.7, -0.4, 0.2]), 0.1).save(out)
    return out


@contextmanager
def served(config, adapters=None, data_dir=None, playground_dir=None):
    """(service, base URL) of the app served in this process until the block ends."""
    service = Service(config, adapters, data_dir)
    page = Playground(service, data_dir, playground_dir) if playground_dir is not None else None
    with BackgroundServer(create_app(service, page)) as server:
        yield service, server.url
