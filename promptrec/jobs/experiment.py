"""Few-shot experiments: a grid of templates x shots x seeds x models on one frozen split, resumably.

Every LLM cell trains (K > 0) and evaluates through the same `train()` and `evaluate()` as the
`train` and `evaluate` commands; classic baselines run on the same split and shot budgets. The whole
grid is checked (templates, shots against the pool, data, models) before the first cell trains.

Resume: a finished cell leaves `cell.json`, its record, holding a fingerprint: the hash of the
cell's resolved train and evaluate configs, its template's sha256 and the checksums of the splits
it read. A rerun skips cells whose recorded fingerprint matches. A cell whose fingerprint differs
was made by another config: the run is refused before anything trains (so one table never mixes
two configs) unless `overwrite`, which reruns exactly those cells. Tables and plots live in
`promptrec.summary`. Nothing here prints: progress goes to a callback as ready-made lines.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from promptrec.baselines.classic import HEURISTICS, BaselineSpec, baseline_specs, shown_facts
from promptrec.core.config import build, load_yaml, merge, parse_assignments, to_dict
from promptrec.core.errors import ConfigError, DataError
from promptrec.jobs.evaluate import EvalConfig
from promptrec.lm.config import ModelConfig
from promptrec.lm.loading import load_tokenizer
from promptrec.lm.scoring import answer_ids
from promptrec.lm.training import LOSSES, TrainConfig, wide_mode
from promptrec.protocols import features
from promptrec.protocols.shots import sample_shots
from promptrec.protocols.splits import dataset_checksum, load_split
from promptrec.templates.template import load_template

RECORD = "cell.json"  # written last, atomically: its presence marks a finished cell
# Settings that change speed and memory, not the result (tests check that micro-batches and recomputed
# activations train the same adapter): a cell finished under other values of these is still done.
EXECUTION_ONLY = ("train.micro_batch_size", "train.gradient_checkpointing")


# Variants of a few-shot cell (`variants`): the wide part's mode (lm.training.WideSettings.mode).
VARIANTS = {
    "hybrid": "auto",  # the default hybrid (LLM log-odds + wide logit)
    "llm": "off",  # the pure LLM, trained with `loss`
    "residual": "residual",  # the hybrid's two ways, named
    "joint": "joint",
}


# Keys of the `train` and `model` sections that the grid sets per cell, and where to set them instead.
GRID_OWNED = {
    "train": {"template": "templates", "shots": "shots", "seed": "seeds", "loss": "loss", "model": "model.* / models"},
    "model": {"model": "models"},
}


@dataclass(frozen=True)
class ExperimentConfig:
    data: str = ""  # prepared dir from `promptrec data prepare`; in a YAML file, relative to that file
    out: str = ""  # run dir for cells, summary and plot; in a YAML file, relative to that file
    split: str = "test"  # the frozen split every cell and baseline is scored on
    templates: tuple[str, ...] = ("tallrec_plain",)  # names under prompts/ or .j2 paths (relative to the file)
    shots: tuple[int, ...] = (0, 16, 64)  # K per cell; 0 = zero-shot, run once per template x model
    seeds: tuple[int, ...] = (0, 1, 2)  # shot-sample/initialisation seeds: the error bars come from these
    models: tuple[str, ...] = ("embedded",)  # model specs: HF id, local dir, .gguf, embedded
    loss: str = "auto"  # training loss of few-shot cells: auto (bce for hybrids, lm for llm) | lm | bce
    variants: tuple[str, ...] = ("hybrid",)  # few-shot variants per cell (VARIANTS): hybrid, llm, residual, joint
    limit: int = 0  # score a seeded sample of N examples of `split` (0 = all), the same for every cell
    limit_seed: int = 0  # seed of that sample
    score_batch_size: int = 16  # prompts per forward pass when scoring `split`
    baselines: bool = True  # classic baselines at each K and on the whole train split (a ceiling)
    tensorboard: bool = False  # per-epoch curves under OUT/tensorboard (needs `pip install tensorboard`)
    train: TrainConfig = field(default_factory=TrainConfig)  # training settings; the grid sets template/shots/seed/loss
    model: ModelConfig = field(default_factory=ModelConfig)  # dtype/device/quantization for train and evaluate

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ConfigError(f"loss={self.loss!r} is unknown; use one of {', '.join(LOSSES)}")
        if self.loss == "lm" and set(self.variants) - {"llm"}:
            raise ConfigError(
                "loss: lm trains the pure LLM only, but variants list a hybrid; set loss: auto (or bce), "
                "or variants: [llm]"
            )
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ConfigError(f"variant {unknown[0]!r} is unknown; use some of {', '.join(VARIANTS)}")
        for name in ("templates", "shots", "seeds", "models", "variants"):
            values = getattr(self, name)
            if not values:
                raise ConfigError(f"`{name}` is empty; list at least one value")
            if len(set(values)) != len(values):
                raise ConfigError(f"`{name}` lists a value twice ({list(values)}); list each once")
        if min(self.shots) < 0:
            raise ConfigError(f"shots {list(self.shots)} must be >= 0 (0 = zero-shot)")
        if self.limit < 0 or self.score_batch_size < 1:
            raise ConfigError("limit must be >= 0 (0 = all examples) and score_batch_size >= 1")


def load_experiment_config(
    path: str | Path | None, assignments: list[str] | None = None, out: str | None = None
) -> ExperimentConfig:
    """defaults < YAML (paths relative to it) < --set (paths relative to the cwd) < --out."""
    values = _relative_to_file(load_yaml(path), Path(path).parent) if path else {}
    values = merge(values, parse_assignments(assignments or []))
    if out:
        values["out"] = out
    if isinstance(values.get("train"), dict) and "mode" in (values["train"].get("wide") or {}):
        raise ConfigError("train.wide.mode is set per cell by the grid; list `variants` (hybrid, llm, ...) instead")
    for section, owned in GRID_OWNED.items():
        given = values.get(section)
        for key in owned if isinstance(given, dict) else ():
            if key in given:
                raise ConfigError(
                    f"{section}.{key} is set per cell by the grid; set `{owned[key]}` at the top level instead"
                )
    return build(ExperimentConfig, values)


def _relative_to_file(values: dict, base: Path) -> dict:
    def resolve(text) -> str:
        return text if os.path.isabs(str(text)) else os.path.normpath(base / str(text))

    values = dict(values)
    for key in ("data", "out"):
        if isinstance(values.get(key), str) and values[key]:
            values[key] = resolve(values[key])
    if isinstance(values.get("templates"), list):
        values["templates"] = [
            resolve(t) if isinstance(t, str) and (t.endswith(".j2") or "/" in t) else t for t in values["templates"]
        ]
    return values


def config_record(config: ExperimentConfig) -> dict:
    """The resolved config without the train/model keys the grid overrides (they would mislead)."""
    record = to_dict(config)
    for section, owned in GRID_OWNED.items():
        for key in owned:
            record[section].pop(key, None)
    return record


@dataclass(frozen=True)
class Splits:
    path: Path
    train: list[dict]
    valid: list[dict]  # [] when training does not early-stop
    scored: list[dict]  # the whole `split`; each cell scores its seeded `limit` sample of it
    checksums: dict[str, str]  # split name -> sha256 of its file

    def record(self, split: str) -> dict:
        return {"path": str(self.path), "split": split, "sha256": self.checksums[split]}


@dataclass(frozen=True)
class Cell:
    cell_id: str  # its directory under the run dir (for people; records never parse it)
    kind: str  # llm | baseline | heuristic
    method: str  # template name (+variant unless hybrid, e.g. movie_rich+llm) or baseline method
    shots: int | str  # K (0 = zero-shot / trains on nothing) or "full" (the whole train split)
    seed: int | None = None
    model: str | None = None  # model spec, LLM cells only
    train: TrainConfig | None = None  # None: zero-shot or baseline
    evaluate: EvalConfig | None = None  # LLM cells only
    baseline: BaselineSpec | None = None  # baseline cells only
    template: str | None = None  # template name, LLM cells only
    variant: str | None = None  # a key of VARIANTS, few-shot LLM cells only


@dataclass(frozen=True)
class PlannedCell:
    cell: Cell
    fingerprint: str
    inputs: dict  # what the fingerprint hashes, kept in the record to say what changed
    status: str  # done (finished with this fingerprint) | todo | changed (finished with another)
    changes: tuple[str, ...] = ()  # for `changed`: "key: old -> new" lines


@dataclass(frozen=True)
class Plan:
    config: ExperimentConfig
    out_dir: Path
    splits: Splits
    templates: dict  # name -> Template
    cells: list[PlannedCell]

    def describe(self) -> list[str]:
        """One line per cell for `--dry-run`."""
        labels = {"done": "done, will be skipped", "todo": "to run", "changed": "CHANGED since it ran"}
        llm = [p for p in self.cells if p.cell.kind == "llm"]
        lines = [f"{self.out_dir}: {len(llm)} LLM cells, {len(self.cells) - len(llm)} baseline runs"]
        lines += [f"  {p.cell.cell_id}: {labels[p.status]}" for p in self.cells]
        return lines


def model_slug(spec: str) -> str:
    """A directory name for a model spec: its last path component, made file-system safe."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(spec.rstrip("/\\")).name or spec).strip("_") or "model"


def expand_grid(config: ExperimentConfig, template_names: list[str]) -> list[Cell]:
    """LLM cells (zero-shot once per template x model), then baseline runs at the grid's K values."""
    cells = []
    for model_spec in config.models:
        model = dataclasses.replace(config.model, model=model_spec)
        for name, template in zip(template_names, config.templates):
            evaluate = EvalConfig(
                template=template,
                split=config.split,
                limit=config.limit,
                limit_seed=config.limit_seed,
                score_batch_size=config.score_batch_size,
                model=model,
            )
            if 0 in config.shots:  # zero-shot: nothing is trained, so no variants
                cell_id = f"{model_slug(model_spec)}/{name}/0shot"
                cells.append(Cell(cell_id, "llm", name, 0, None, model_spec, None, evaluate, template=name))
            for variant in config.variants:
                method = name if variant == "hybrid" else f"{name}+{variant}"
                wide = dataclasses.replace(config.train.wide, mode=VARIANTS[variant])
                for k in sorted(k for k in config.shots if k):
                    for seed in config.seeds:
                        train = dataclasses.replace(
                            config.train,
                            template=template,
                            shots=k,
                            seed=seed,
                            loss=config.loss,
                            model=model,
                            wide=wide,
                        )
                        cell_id = f"{model_slug(model_spec)}/{method}/{k}shot-seed{seed}"
                        cells.append(
                            Cell(
                                cell_id,
                                "llm",
                                method,
                                k,
                                seed,
                                model_spec,
                                train,
                                evaluate,
                                template=name,
                                variant=variant,
                            )
                        )
    if config.baselines:
        for spec in baseline_specs([k for k in config.shots if k], list(config.seeds)):
            kind = "heuristic" if spec.method in HEURISTICS else "baseline"
            shots = 0 if kind == "heuristic" else ("full" if spec.shots is None else spec.shots)
            cells.append(Cell(f"baselines/{spec.run_name}", kind, spec.method, shots, spec.seed, baseline=spec))
    ids = [c.cell_id for c in cells]
    clash = next((i for i in ids if ids.count(i) > 1), None)
    if clash:
        raise ConfigError(
            f"two cells would share the directory {clash!r} (two templates or models with the same name); "
            "rename one template or list one model per name"
        )
    return cells


def fingerprint_inputs(cell: Cell, config: ExperimentConfig, splits: Splits, templates: dict) -> dict:
    """Everything that decides a cell's result; the code version is recorded beside it, not hashed."""
    data = {"scored": splits.checksums[config.split]}
    if cell.kind == "llm":
        if cell.train is not None:
            data["train"] = splits.checksums["train"]
            if cell.train.valid_examples:
                data["valid"] = splits.checksums["valid"]
        inputs = {
            "train": _train_inputs(cell.train) if cell.train else None,
            "evaluate": to_dict(cell.evaluate),
            "template_sha256": templates[cell.template].sha256,
            "data": data,
        }
        reads_defaults = cell.train is not None and wide_mode(cell.train) != "off" and not cell.train.wide.features
        return inputs | (_default_features() if reads_defaults else {})
    data["train"] = splits.checksums["train"]
    scored = {"split": config.split, "limit": config.limit, "limit_seed": config.limit_seed}
    baseline = dataclasses.asdict(cell.baseline)
    inputs = {"baseline": baseline, "balanced": config.train.balanced, "evaluate": scored, "data": data}
    return inputs | (_default_features() if cell.method == "wide" else {})


def _train_inputs(train: TrainConfig) -> dict:
    """The train config as it decides the adapter: the gate is recorded off where there is nothing to fit
    it on (no valid examples), so such a cell is the same with the gate on or off."""
    inputs = to_dict(train)
    inputs["wide"]["gate"] = train.wide.gate and train.valid_examples > 0
    return inputs


def _default_features() -> dict:
    """A wide part that names no features reads DEFAULT_FEATURES: a release that changes them changes the cell.

    A record written before this key existed lacks it, so such a cell shows as changed once, with the
    features it would now use (its wide part may have been fitted on other ones).
    """
    return {"default_features": list(features.DEFAULT_FEATURES)}


def fingerprint(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def plan_experiment(config: ExperimentConfig, check_models: bool = True) -> Plan:
    """Check the whole grid before anything trains and find which cells are already done.

    `check_models` also loads each model's tokenizer and checks every template's answers and
    rendering with it (seconds); `--dry-run` skips it.
    """
    if not config.out:
        raise ConfigError("no run dir: set `out` in the config or pass --out")
    splits = load_splits(config)
    templates = load_templates(config, splits)
    check_grid(config, splits)
    if check_models:
        check_models_fit(config, templates, splits)
    out_dir = Path(config.out)
    cells = expand_grid(config, [t.name for t in templates])
    by_name = dict(zip([t.name for t in templates], templates))
    planned = []
    for cell in cells:
        inputs = fingerprint_inputs(cell, config, splits, by_name)
        planned.append(cell_status(out_dir / cell.cell_id, cell, inputs))
    return Plan(config, out_dir, splits, by_name, planned)


def cell_status(cell_dir: Path, cell: Cell, inputs: dict) -> PlannedCell:
    digest = fingerprint(inputs)
    record_path = cell_dir / RECORD
    if not record_path.exists():
        return PlannedCell(cell, digest, inputs, "todo")
    record = json.loads(record_path.read_text())
    if record.get("fingerprint") == digest:
        return PlannedCell(cell, digest, inputs, "done")
    changes = _differences(record.get("fingerprint_inputs", {}), inputs, config_defaults())
    lines = tuple(line for key, line in changes if key not in EXECUTION_ONLY)
    return PlannedCell(cell, digest, inputs, "changed" if lines else "done", lines)


def config_defaults() -> dict:
    """What a key missing from an old fingerprint meant: the configs' defaults, as fingerprints hold them.

    Except where a new setting's default changed the behaviour: `wide.gate` is on by default, but a cell
    recorded before it existed was trained without a gate.
    """
    train = to_dict(TrainConfig())
    train["wide"]["gate"] = False
    return {"train": train, "evaluate": to_dict(EvalConfig())}


def _differences(old, new, defaults=None, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, "key: old -> new") for each leaf that differs.

    A key the old record lacks is a setting added to promptrec after the cell ran: at its default it
    keeps the old behaviour (e.g. `train.tasks` empty = one task), so it is no change.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        defaults = defaults if isinstance(defaults, dict) else {}
        lines = []
        for key in sorted(set(old) | set(new)):
            if key not in old and key in defaults and new.get(key) == defaults[key]:
                continue
            lines += _differences(old.get(key), new.get(key), defaults.get(key), f"{prefix}{key}.")
        return lines
    key = prefix.rstrip(".")
    return [] if old == new else [(key, f"{key}: {old!r} -> {new!r}")]


def load_splits(config: ExperimentConfig) -> Splits:
    if not config.data:
        raise ConfigError(
            "no data: set `data` to a dir prepared by `promptrec data prepare` (relative to the config file)"
        )
    path = Path(config.data)
    if not path.is_dir():
        raise DataError(f"data {path} is not a directory; prepare one with `promptrec data prepare ... --out {path}`")
    needs_valid = any(config.shots) and config.train.valid_examples > 0
    names = ["train", config.split] + (["valid"] if needs_valid else [])
    loaded = {name: load_split(path, name) for name in names}
    checksums = {name: dataset_checksum(path, name) for name in names}
    return Splits(path, loaded["train"], loaded.get("valid", []), loaded[config.split], checksums)


def load_templates(config: ExperimentConfig, splits: Splits) -> list:
    """Each template, loaded (unknown names: did-you-mean) and rendered on one scored example."""

    templates = [load_template(name) for name in config.templates]
    for template in templates:
        template.render(splits.scored[0])
    return templates


def check_grid(config: ExperimentConfig, splits: Splits) -> None:
    """Shots against the pool (and per-class counts when balanced); baseline inputs."""
    pool = len(splits.train)
    too_many = [k for k in config.shots if k > pool]
    if too_many:
        raise ConfigError(
            f"shots {too_many} exceed the {pool} examples of the train split of {splits.path}; "
            f"drop them from `shots` (at most {pool})"
        )
    for k in (k for k in config.shots if k):
        for seed in config.seeds:
            labels = {ex["label"] for ex in sample_shots(splits.train, k, seed, config.train.balanced)}
            if config.baselines and len(labels) < 2:
                raise ConfigError(
                    f"the {k} shots of seed {seed} all have label {labels.pop()}, so the learned baselines cannot "
                    "be fitted; raise that K, set train.balanced=true, or set baselines=false"
                )
    if config.baselines:
        try:
            shown_facts(splits.train[0]), shown_facts(splits.scored[0])
        except DataError as error:
            raise DataError(f"{error}; or set baselines=false") from None
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("tensorboard=true needs the tensorboard package; `pip install tensorboard` or set it false")


def check_models_fit(config: ExperimentConfig, templates: list, splits: Splits) -> None:
    """Each model's tokenizer loads, and each template's answers and chat format work with it."""

    for spec in config.models:
        tokenizer = load_tokenizer(dataclasses.replace(config.model, model=spec))
        for template in templates:
            template.render(splits.scored[0], tokenizer)
            answers = answer_ids(tokenizer, template.choices, template.name)
            if config.loss == "bce" and any(config.shots) and not answers.single_token:
                raise ConfigError(
                    f"loss=bce needs single-token answers; template {template.name} has {template.choices} "
                    f"with model {spec}; use loss=lm or another template"
                )
