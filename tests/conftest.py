"""Shared fixtures: a tiny random Llama and a byte-level BPE tokenizer with a chat template.

Built offline once per session and saved with `save_pretrained`, so tests exercise the real
`from_pretrained` path without any hub access.
"""

import os
import socket
from pathlib import Path

import pytest

from promptrec.protocols.prepare import prepare_movielens

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "User Preference: Toy Story (1995), Star Wars (1977), Fargo (1996)",
    "User Unpreference: GoldenEye (1995), Four Rooms (1995)",
    "Whether the user will like the target movie? Answer Yes or No.",
    "### Instruction: ### Input: ### Response: Yes. No. liked disliked rated",
    "Comedy Drama Action Thriller Romance Sci-Fi War Adventure Animation Children's",
    "The user is a 24 year old male technician. They liked 7 of these 10 movies.",
] * 20


def build_tiny_tokenizer(out_dir: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(out_dir)
    return fast


def tiny_llama(vocab_size: int, hidden_size: int = 32, seed: int = 0):
    """An in-memory tiny random Llama; hidden_size varies so adapters can be made not to fit."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()


def build_tiny_model(out_dir: Path, vocab_size: int, seed: int = 0, hidden_size: int = 32):
    tiny_llama(vocab_size, hidden_size, seed).save_pretrained(out_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A directory holding a tiny random LlamaForCausalLM and its tokenizer (chat template included)."""
    out_dir = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_tiny_tokenizer(out_dir)
    build_tiny_model(out_dir, vocab_size=len(tokenizer))
    return out_dir


@pytest.fixture(scope="session")
def tiny_model_64_dir(tmp_path_factory) -> Path:
    """Like tiny_model_dir with hidden size 64: bitsandbytes 4-bit needs dims of 64 or more."""
    out_dir = tmp_path_factory.mktemp("tiny-llama-64")
    tokenizer = build_tiny_tokenizer(out_dir)
    build_tiny_model(out_dir, vocab_size=len(tokenizer), hidden_size=64)
    return out_dir


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory) -> Path:
    """The tiny MovieLens sample (tests/data/mini-ml) prepared with 3-item histories (test_training, test_mixture)."""
    out = tmp_path_factory.mktemp("prepared")
    prepare_movielens(Path(__file__).parent / "data" / "mini-ml", out, history_len=3)
    return out


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """The real MovieLens-100K files beside the project (never committed into it)."""
    path = SHARED_DATA_DIR / "ml-100k"
    if not (path / "u.data").exists():
        pytest.skip(f"real data not found at {path}")
    return path


@pytest.fixture(scope="session")
def amazon_data_dir() -> Path:
    """The folder holding the real amazon-gift_cards/ and amazon-magazine_subscriptions/ files."""
    for name in ("amazon-gift_cards/Gift_Cards_5.json.gz", "amazon-magazine_subscriptions/Magazine_Subscriptions.csv"):
        if not (SHARED_DATA_DIR / name).exists():
            pytest.skip(f"real data not found at {SHARED_DATA_DIR / name}")
    return SHARED_DATA_DIR


@pytest.fixture
def free_port() -> int:
    """A TCP port free right now, for `accelerate launch --main_process_port`: with the default 29500, two
    launch tests running at once (parallel CI jobs, two engineers on one machine) join each other's group."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))  # the kernel picks an unused port; released on close, for the launcher to bind
        return sock.getsockname()[1]


@pytest.fixture
def disk_full_on_second_write(monkeypatch):
    """Path.write_bytes fails with ENOSPC on its second call; returns the list of paths it was called with."""
    real_write_bytes, calls = Path.write_bytes, []

    def write_bytes(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_write_bytes(path, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    return calls
