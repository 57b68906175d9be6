"""Tests for promptrec.config: precedence, type coercion and the errors of YAML/--set/flags configs."""

import pytest
import yaml

from promptrec.core.config import build, merge, parse_assignments, resolve
from promptrec.core.errors import ConfigError
from promptrec.lm.config import ModelConfig
from promptrec.lm.training import LoraSettings, TrainConfig


def write_yaml(tmp_path, values: dict):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def lookup(config, dotted: str):
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


# (YAML values or None, --set assignments, flags, expected {dotted key: value})
PRECEDENCE_CASES = {
    "defaults": (None, [], {}, {"shots": 64, "lora.r": 8, "model.model": "embedded", "loss": "auto"}),
    "yaml over defaults": (
        {"shots": 8, "lora": {"r": 4}, "model": {"dtype": "float32"}},
        [],
        {},
        {"shots": 8, "lora.r": 4, "lora.lora_alpha": 16, "model.dtype": "float32", "model.model": "embedded"},
    ),
    "set over yaml": (
        {"shots": 8, "lora": {"r": 4, "lora_alpha": 32}},
        ["shots=16", "lora.r=2"],
        {},
        {"shots": 16, "lora.r": 2, "lora.lora_alpha": 32},
    ),
    "set over defaults": (None, ["seed=3", "model.model=tiny"], {}, {"seed": 3, "model.model": "tiny", "shots": 64}),
    "flags over set and yaml": (
        {"shots": 8, "model": {"model": "from-yaml", "dtype": "float32"}},
        ["shots=16", "model.model=from-set"],
        {"shots": 32, "model": {"model": "from-flag"}},
        {"shots": 32, "model.model": "from-flag", "model.dtype": "float32"},
    ),
    "None flags are not given": (
        {"shots": 8, "loss": "bce", "model": {"model": "from-yaml"}},
        ["seed=5"],
        {"shots": None, "seed": None, "loss": None, "model": {"model": None, "dtype": None}},
        {"shots": 8, "seed": 5, "loss": "bce", "model.model": "from-yaml", "model.dtype": "auto"},
    ),
}


@pytest.mark.parametrize("yaml_values, assignments, flags, expected", PRECEDENCE_CASES.values(), ids=PRECEDENCE_CASES)
def test_precedence(tmp_path, yaml_values, assignments, flags, expected):
    config_path = write_yaml(tmp_path, yaml_values) if yaml_values is not None else None
    config = resolve(TrainConfig, config_path, assignments, flags)
    assert {key: lookup(config, key) for key in expected} == expected


def test_resolve_returns_typed_nested_config():
    config = resolve(TrainConfig)
    assert isinstance(config, TrainConfig)
    assert isinstance(config.lora, LoraSettings)
    assert isinstance(config.model, ModelConfig)


# (--set assignment, dotted key, expected value of the expected type)
COERCION_CASES = [
    ("lora.r=16", "lora.r", 16),
    ("shots= 16", "shots", 16),
    ("learning_rate=3e-4", "learning_rate", 3e-4),
    ("learning_rate=0.001", "learning_rate", 0.001),
    ("lora.lora_dropout=0", "lora.lora_dropout", 0.0),
    ("balanced=true", "balanced", True),
    ("balanced=True", "balanced", True),
    ("balanced=yes", "balanced", True),
    ("balanced=1", "balanced", True),
    ("balanced=false", "balanced", False),
    ("balanced=0", "balanced", False),
    ("lora.target_modules=q_proj,v_proj", "lora.target_modules", ("q_proj", "v_proj")),
    ("lora.target_modules=q_proj, v_proj", "lora.target_modules", ("q_proj", "v_proj")),
    ("lora.target_modules=q_proj", "lora.target_modules", ("q_proj",)),
    ("model.revision=abc123", "model.revision", "abc123"),
    ("model.revision=none", "model.revision", None),
    ("template=a=b.j2", "template", "a=b.j2"),  # only the first '=' splits
]


@pytest.mark.parametrize("assignment, key, expected", COERCION_CASES)
def test_set_values_are_coerced(assignment, key, expected):
    value = lookup(resolve(TrainConfig, assignments=[assignment]), key)
    assert value == expected
    assert type(value) is type(expected)


# YAML values arrive already typed (or as strings YAML did not type, like 3e-4).
YAML_COERCION_CASES = [
    ({"lora": {"r": "16"}}, "lora.r", 16),
    ({"learning_rate": "3e-4"}, "learning_rate", 3e-4),
    ({"learning_rate": 1}, "learning_rate", 1.0),
    ({"shots": 8.0}, "shots", 8),
    ({"balanced": True}, "balanced", True),
    ({"balanced": "false"}, "balanced", False),
    ({"lora": {"target_modules": ["q_proj", "v_proj"]}}, "lora.target_modules", ("q_proj", "v_proj")),
    ({"lora": {"target_modules": "q_proj,v_proj"}}, "lora.target_modules", ("q_proj", "v_proj")),
    ({"model": {"revision": None}}, "model.revision", None),
]


@pytest.mark.parametrize("values, key, expected", YAML_COERCION_CASES)
def test_yaml_values_are_coerced(tmp_path, values, key, expected):
    value = lookup(resolve(TrainConfig, write_yaml(tmp_path, values)), key)
    assert value == expected
    assert type(value) is type(expected)


# (--set assignments, substrings the ConfigError message must contain)
ERROR_CASES = {
    "unknown nested key": (["lora.rr=3"], ["rr", "did you mean lora.r?"]),
    "unknown top key": (["shot=3"], ["shot", "did you mean shots?"]),
    "unknown model key": (["model.dtyp=float32"], ["did you mean model.dtype?"]),
    "unknown key, nothing close": (["zzzzzz=1"], ["zzzzzz", "valid keys", "shots"]),
    "bad int": (["shots=abc"], ["shots", "abc", "int"]),
    "bad nested int": (["lora.r=abc"], ["lora.r", "abc"]),
    "float for int": (["lora.r=2.5"], ["lora.r", "2.5"]),
    "bad float": (["learning_rate=fast"], ["learning_rate", "fast", "float"]),
    "bad bool": (["balanced=maybe"], ["balanced", "maybe", "bool"]),
    "no equals sign": (["lora.r"], ["lora.r", "key=value"]),
    "empty key": (["=3"], ["key=value"]),
    "section given a value": (["lora=3"], ["lora", "section"]),
    "invalid loss": (["loss=mse"], ["loss", "mse", "lm", "bce"]),
    "invalid quantization": (["model.quantization=3bit"], ["quantization", "3bit", "4bit"]),
    "invalid dtype": (["model.dtype=fp8"], ["dtype", "fp8", "bfloat16"]),
    "shots below 1": (["shots=0"], ["shots", "at least 1"]),
    "negative valid examples": (["valid_examples=-1"], ["valid_examples"]),
    "micro-batch below 1": (["micro_batch_size=0"], ["micro_batch_size", "at least 1"]),
    "bad checkpointing bool": (["gradient_checkpointing=sometimes"], ["gradient_checkpointing", "bool"]),
}


@pytest.mark.parametrize("assignments, fragments", ERROR_CASES.values(), ids=ERROR_CASES)
def test_bad_set_raises_config_error(assignments, fragments):
    with pytest.raises(ConfigError) as info:
        resolve(TrainConfig, assignments=assignments)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_unknown_nested_key_is_named_whole():
    with pytest.raises(ConfigError, match=r"'lora\.rr'"):
        resolve(TrainConfig, assignments=["lora.rr=3"])


@pytest.mark.parametrize("assignments", [["lora=3", "lora.r=4"], ["shots=1", "shots.x=2"]])
def test_value_then_subkey_raises_config_error(assignments):
    with pytest.raises(ConfigError):
        parse_assignments(assignments)


def test_bad_flag_raises_config_error():
    with pytest.raises(ConfigError, match="quantization"):
        resolve(TrainConfig, flags={"model": {"quantization": "3bit"}})


def test_unknown_yaml_key_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"did you mean lora\.lora_alpha\?"):
        resolve(TrainConfig, write_yaml(tmp_path, {"lora": {"lora_alpa": 8}}))


def test_missing_yaml_raises_config_error(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml"):
        resolve(TrainConfig, missing)


@pytest.mark.parametrize("text", ["shots: [1, 2\n", "- a\n- b\n", "just a string\n"])
def test_malformed_yaml_raises_config_error(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="bad.yaml"):
        resolve(TrainConfig, path)


def test_empty_yaml_gives_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert resolve(TrainConfig, path) == TrainConfig()


PARSE_CASES = [
    ([], {}),
    (None, {}),
    (["shots=64"], {"shots": "64"}),
    (["lora.r=16", "shots=64"], {"lora": {"r": "16"}, "shots": "64"}),
    (["lora.r=16", "lora.lora_alpha=32"], {"lora": {"r": "16", "lora_alpha": "32"}}),
    (["shots=1", "shots=2"], {"shots": "2"}),  # the last one wins
    (["model.revision="], {"model": {"revision": ""}}),
]


@pytest.mark.parametrize("assignments, expected", PARSE_CASES)
def test_parse_assignments(assignments, expected):
    assert parse_assignments(assignments) == expected


MERGE_CASES = [
    ({}, {"a": 1}, {"a": 1}),
    ({"a": 1}, {}, {"a": 1}),
    ({"a": 1, "b": 2}, {"a": 3}, {"a": 3, "b": 2}),
    ({"lora": {"r": 4, "lora_alpha": 8}}, {"lora": {"r": 16}}, {"lora": {"r": 16, "lora_alpha": 8}}),
    ({"lora": {"r": 4}}, {"lora": 5}, {"lora": 5}),
    ({"a": 1}, {"lora": {"r": 2}}, {"a": 1, "lora": {"r": 2}}),
]


@pytest.mark.parametrize("base, override, expected", MERGE_CASES)
def test_merge(base, override, expected):
    assert merge(base, override) == expected


def test_merge_leaves_inputs_unchanged():
    base, override = {"lora": {"r": 4}}, {"lora": {"r": 16}}
    merge(base, override)
    assert base == {"lora": {"r": 4}} and override == {"lora": {"r": 16}}


def test_build_accepts_dataclass_instance_for_section():
    lora = LoraSettings(r=2)
    assert build(TrainConfig, {"lora": lora}).lora is lora
