"""Typed configuration: frozen dataclasses, YAML files and `--set key.sub=value` overrides.

Precedence, lowest first: dataclass defaults < YAML file < `--set` overrides < dedicated CLI flags.
Unknown keys are errors with a did-you-mean; values are coerced to the field's declared type.
The concern-specific dataclasses live beside the code that uses them (models, training, ...).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from pathlib import Path

from promptrec.core.errors import ConfigError


def parse_assignments(assignments: list[str]) -> dict:
    """["lora.r=16", "shots=64"] -> {"lora": {"r": "16"}, "shots": "64"} (strings; coerced later)."""
    tree: dict = {}
    for assignment in assignments or []:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {assignment!r} is not key=value; write e.g. --set lora.r=16")
        node = tree
        *parents, leaf = key.strip().split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {assignment!r}: {parent!r} was already given a value; set only its fields")
        node[leaf] = value
    return tree


def load_yaml(path: str | Path) -> dict:
    import yaml

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist; check the path")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML ({str(error).splitlines()[0]}); fix the syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at top level")
    return data


def merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def build(cls, values: dict, prefix: str = ""):
    """Instantiate dataclass `cls` from nested `values`, checking every key and coercing types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint}")
        kwargs[key] = _coerce(hints[key], value, f"{prefix}{key}")
    return cls(**kwargs)


def _coerce(hint, value, key: str):
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} is a section; set its fields as {key}.FIELD=VALUE")
        return build(hint, value, prefix=f"{key}.")
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        return _coerce(next(a for a in args if a is not type(None)), value, key)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(_coerce(args[0], item.strip() if isinstance(item, str) else item, key) for item in items)
    return _scalar(hint, value, key)


def _scalar(hint, value, key: str):
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if hint in (int, float, str):
            if hint is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return hint(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key!r}: {value!r} is not a valid {hint.__name__}") from None
    return value


def to_dict(config) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def resolve(
    cls,
    config_path: str | None = None,
    assignments: list[str] | None = None,
    flags: dict | None = None,
    defaults: dict | None = None,
):
    """defaults < `defaults` (e.g. an adapter's base model) < YAML < --set < flags (None flags are not given)."""
    values = merge(_drop_none(defaults or {}), load_yaml(config_path) if config_path else {})
    values = merge(values, parse_assignments(assignments or []))
    values = merge(values, _drop_none(flags or {}))
    return build(cls, values)


def _drop_none(tree: dict) -> dict:
    return {k: _drop_none(v) if isinstance(v, dict) else v for k, v in tree.items() if v is not None}
