"""Few-shot LoRA training: sample K examples, fit a PEFT LoRA adapter, keep the best by valid AUC.

Hybrid by default: when the shots carry numeric features (`protocols.features`), the trained score is
the LLM's log-odds plus a wide logit over those features (`lm.wide`), trained with BCE. `wide.mode`
says how: `residual` fits the wide part first by logistic regression on the shots and trains the LoRA
with its logit as a fixed offset (the LLM learns the residual); `joint` starts from the same fit and
trains both together; `off` gives the pure LLM back. The wide part is saved beside the adapter.

A mixture (`tasks`, `protocols.mixture`) trains one adapter on several datasets, each with its template:
the shots of all tasks go through the same loop; a mixture of one task is the single-task run.

The gate (`wide.gate`): after the best epoch is chosen, the LLM's weight in the hybrid score is fitted in
[0, 1] on the same valid examples (`baselines.wide.fit_gate`), so a LoRA whose residual does not carry
over to new examples is turned down towards the wide part alone (README: how this default was chosen).

The loop runs on `accelerate`: one process, or several under `accelerate launch` (DDP over GPUs,
or gloo over CPU processes). Every rank walks the same seeded global batches and takes its slice,
so the global batch, and thus the result, does not depend on the number of processes.
Prompts come from the same `Scorer` used by evaluation, so training and inference cannot drift.

Memory: a process runs its slice of a batch `micro_batch_size` examples at a time and adds up their
gradients (each micro-batch's mean loss weighted by its share of the slice, so the sum is the gradient
of one pass over the slice), and `gradient_checkpointing` keeps only each layer's input for backward
and recomputes the rest. On the 135M model a 380-token example holds ~0.5 GB of activations through
30 layers without it; with both, `train` fits in ~1.5 GB where one 8-example pass took ~9 GB.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from promptrec.baselines.wide import Gate, WidePart, fit_gate, fit_wide
from promptrec.core.config import to_dict
from promptrec.core.errors import ConfigError, first_line
from promptrec.core.files import write_json
from promptrec.core.lazy import LazyModule
from promptrec.core.records import provenance, template_record
from promptrec.lm.adapter import RUN_RECORD
from promptrec.lm.config import ModelConfig
from promptrec.lm.distributed import make_accelerator
from promptrec.lm.loading import load_model
from promptrec.lm.scoring import Scorer, answer_log_odds, model_device, next_token_log_probs, pad_batch, score_sequences
from promptrec.protocols.features import available_features, check_feature_names
from promptrec.protocols.mixture import TaskDraw, TaskPools, TaskSpec, draw_tasks, shot_counts

torch = LazyModule("torch")
tensorboard = LazyModule("torch.utils.tensorboard")  # only with tensorboard installed (checked at plan time)

LOSSES = ("auto", "lm", "bce")
WIDE_MODES = ("auto", "residual", "joint", "off")
DEFAULT_HYBRID = "residual"  # what wide.mode=auto trains (README: how this default was chosen)


@dataclass(frozen=True)
class LoraSettings:
    r: int = 8  # LoRA rank (TALLRec uses 8)
    lora_alpha: int = 16  # scaling numerator; effective scale alpha / r
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")  # attention projections

    def __post_init__(self):
        if not isinstance(self.r, int) or self.r < 1:
            raise ConfigError(f"lora.r={self.r!r} must be a positive integer (the LoRA rank; TALLRec uses 8)")
        if not (isinstance(self.lora_alpha, (int, float)) and math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
            raise ConfigError(f"lora.lora_alpha={self.lora_alpha!r} must be a positive number (e.g. 2 x lora.r)")
        if not (isinstance(self.lora_dropout, (int, float)) and 0 <= self.lora_dropout < 1):
            raise ConfigError(f"lora.lora_dropout={self.lora_dropout!r} must be in [0, 1) (e.g. 0.05)")
        if not self.target_modules or not all(isinstance(m, str) and m for m in self.target_modules):
            raise ConfigError("lora.target_modules must name at least one module, e.g. q_proj,v_proj")


@dataclass(frozen=True)
class WideSettings:
    mode: str = "auto"  # auto (DEFAULT_HYBRID, or off with loss=lm) | residual | joint | off (module docstring)
    features: tuple[str, ...] = ()  # names from protocols.features; () = those of DEFAULT_FEATURES the shots carry
    l2: float = 1.0  # L2 penalty of the wide part's logistic fit on the shots (C = 1 / l2)
    gate: bool = True  # fit the LLM's weight in [0, 1] on the valid examples after training (needs valid_examples)

    def __post_init__(self):
        if self.mode not in WIDE_MODES:
            raise ConfigError(f"wide.mode={self.mode!r} is unknown; use one of {', '.join(WIDE_MODES)}")
        if not (isinstance(self.l2, (int, float)) and math.isfinite(self.l2) and self.l2 > 0):
            raise ConfigError(f"wide.l2={self.l2!r} must be a positive number (the L2 penalty, e.g. 1.0)")
        check_feature_names(self.features)


@dataclass(frozen=True)
class TrainConfig:
    template: str = "tallrec_plain"  # template name under prompts/ or a .j2 path
    shots: int = 64  # K training examples drawn from the train split
    seed: int = 0  # drives the K-shot sample, LoRA init, batch order and dropout
    balanced: bool = False  # False: uniform sample like TALLRec; True: K/2 positives and K/2 negatives
    loss: str = "auto"  # auto: bce with a wide part, else lm; lm: cross-entropy on the answer; bce: on the log-odds
    learning_rate: float = 1e-3  # the rate of the README runs on the 135M model (TALLRec uses 1e-4 at 7B)
    num_epochs: int = 8  # upper bound; early stopping usually ends sooner
    batch_size: int = 8  # examples per optimizer step (global batch, split across processes)
    micro_batch_size: int = 2  # examples per forward/backward pass in a process; gradients add up to batch_size
    gradient_checkpointing: bool = True  # recompute layer activations in backward: ~1/3 more compute, far less memory
    warmup_ratio: float = 0.1  # fraction of steps with linearly rising learning rate
    weight_decay: float = 0.0
    valid_examples: int = 128  # seeded sample of the valid split scored after each epoch (0 = no early stop)
    patience: int = 3  # epochs without a valid-AUC gain before stopping
    score_batch_size: int = 16  # prompts per forward pass when scoring validation examples
    lora: LoraSettings = field(default_factory=LoraSettings)
    wide: WideSettings = field(default_factory=WideSettings)
    model: ModelConfig = field(default_factory=ModelConfig)
    tasks: tuple[TaskSpec, ...] = ()  # a mixture (protocols.mixture): () = one task, `template` on the run's data

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ConfigError(f"loss={self.loss!r} is unknown; use one of {', '.join(LOSSES)}")
        if self.loss == "lm" and self.wide.mode not in ("auto", "off"):
            raise ConfigError(
                f"loss=lm cannot train the hybrid (wide.mode={self.wide.mode}): it trains on BCE of the LLM's "
                "log-odds plus the wide logit; set loss=bce (or auto), or wide.mode=off for the pure LLM"
            )
        for name, low, high in (("learning_rate", 0, None), ("warmup_ratio", 0, 1), ("weight_decay", 0, None)):
            value = getattr(self, name)
            inside = isinstance(value, (int, float)) and math.isfinite(value) and value >= low
            if not inside or (high is not None and value > high) or (name == "learning_rate" and value == 0):
                bounds = (
                    "a positive number (e.g. 1e-3)"
                    if name == "learning_rate"
                    else f"a number in [{low}, {high or 'inf'})"
                )
                raise ConfigError(f"{name}={value!r} must be {bounds}")
        for name in ("shots", "num_epochs", "batch_size", "micro_batch_size", "patience", "score_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be at least 1")
        if self.valid_examples < 0:
            raise ConfigError(f"valid_examples={self.valid_examples} must be >= 0 (0 turns early stopping off)")
        check_mixture(self)


def check_mixture(config: TrainConfig) -> None:
    """A mixture names its templates per task, and trains the pure LLM when it has several tasks."""
    if not config.tasks:
        return
    if config.template != TrainConfig.template:
        raise ConfigError(
            f"template={config.template} is unused with `tasks`: each task names its template; drop template"
        )
    if len(config.tasks) > 1 and config.wide.mode in ("residual", "joint"):
        raise ConfigError(
            f"wide.mode={config.wide.mode} needs one task: the wide part is fitted on one task's features, and "
            f"these are {len(config.tasks)} tasks; set wide.mode=off (auto is off for a mixture)"
        )
    shot_counts(config.tasks, config.shots)


def enable_checkpointing(model) -> None:
    """Recompute layer activations in backward (transformers 5 names it activation checkpointing)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers 4
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def add_lora(model, config: TrainConfig):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.model.quantization != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lora = LoraConfig(task_type="CAUSAL_LM", **dataclasses.asdict(config.lora))
    lora.target_modules = list(config.lora.target_modules)
    try:
        return get_peft_model(model, lora)
    except ValueError as error:
        linear = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                         if isinstance(module, torch.nn.Linear)})  # fmt: skip
        asked = list(config.lora.target_modules)
        raise ConfigError(
            f"lora.target_modules={asked} do not fit this model ({first_line(error)[:100]}); "
            f"its linear layers are: {', '.join(linear)}"
        ) from None


def batch_loss(
    model, scorer: Scorer, sequences: list[list[int]], labels: list[int], loss: str, offsets: torch.Tensor | None = None
) -> torch.Tensor:
    """The batch's loss; `offsets` (batch,) are wide logits added to the LLM's log-odds (bce only)."""
    pad_id = scorer.tokenizer.pad_token_id
    if loss == "bce":
        log_odds = answer_log_odds(model, pad_batch(sequences, pad_id, "left"), scorer.answers)
        if offsets is not None:
            log_odds = log_odds + offsets.to(device=log_odds.device, dtype=log_odds.dtype)
        target = torch.tensor(labels, dtype=log_odds.dtype, device=log_odds.device)
        return torch.nn.functional.binary_cross_entropy_with_logits(log_odds, target)
    if scorer.answers.single_token:
        # Same loss as the labelled full sequence below, but the vocab projection and softmax run
        # at one position per row instead of all of them (~2x faster on CPU).
        log_probs = next_token_log_probs(model, pad_batch(sequences, pad_id, "left"))
        targets = torch.tensor([scorer.answers.for_label(y)[0] for y in labels], device=log_probs.device)
        return torch.nn.functional.nll_loss(log_probs, targets)
    full = [seq + list(scorer.answers.for_label(y)) for seq, y in zip(sequences, labels)]
    batch = pad_batch(full, pad_id, "right")
    targets = torch.full_like(batch.input_ids, -100)  # loss on the answer tokens only
    for row, (seq, y) in enumerate(zip(sequences, labels)):
        answer = scorer.answers.for_label(y)
        targets[row, len(seq) : len(seq) + len(answer)] = torch.tensor(answer)
    device = model_device(model)
    out = model(
        input_ids=batch.input_ids.to(device),
        attention_mask=batch.attention_mask.to(device),
        position_ids=batch.position_ids.to(device),
        labels=targets.to(device),
        use_cache=False,
    )
    return out.loss


def validation_scores(accelerator, model, scorer: Scorer, sequences, batch_size: int) -> np.ndarray:
    """The LLM's log-odds of every valid sequence: each rank scores its slice, every rank gets them all."""
    from accelerate.utils import gather_object

    rank, world = accelerator.process_index, accelerator.num_processes
    indices = list(range(rank, len(sequences), world))
    model.eval()
    local = score_sequences(
        accelerator.unwrap_model(model),
        [sequences[i] for i in indices],
        scorer.answers,
        scorer.tokenizer.pad_token_id,
        batch_size,
    )
    model.train()
    pairs = gather_object(list(zip(indices, local.tolist()))) if world > 1 else list(zip(indices, local.tolist()))
    scores = np.zeros(len(sequences))
    for index, value in pairs:
        scores[index] = value
    return scores


def validation_auc(scores: np.ndarray, labels, offsets=None, groups=None) -> float:
    """AUC of the valid LLM `scores` plus wide `offsets`.

    With `groups` (a task index per example, several tasks) it is the mean of the tasks' AUCs: the tasks'
    scores need not be on one scale.
    """
    from sklearn.metrics import roc_auc_score

    if offsets is not None:
        scores = scores + offsets
    if groups is not None and len(set(groups)) > 1:
        members = [[i for i, g in enumerate(groups) if g == task] for task in sorted(set(groups))]
        return float(np.mean([roc_auc_score([labels[i] for i in m], scores[m]) for m in members]))
    if len(set(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, scores))


@dataclass
class TrainResult:
    out_dir: Path
    best_epoch: int
    best_valid_auc: float
    history: list[dict]
    seconds: float
    main_process: bool  # False on the other ranks of a multi-process launch (they print nothing)
    loss: str = "lm"  # the loss in effect (config.loss with auto resolved)
    wide_features: tuple[str, ...] = ()  # the wide part's features; () = the pure LLM
    gate: Gate | None = None  # the LLM's weight fitted on the valid examples (None: not gated)


@dataclass
class Run:
    """What one training run works on, prepared once before the first epoch."""

    config: TrainConfig
    accelerator: object
    model: object
    optimizer: object
    scheduler: object
    scorer: Scorer
    shots: list[dict]
    sequences: list[list[int]]  # tokenized prompts of the shots
    valid_sequences: list[list[int]]
    valid_labels: list[int]
    loss: str  # the loss in effect (config.loss with "auto" resolved)
    wide: WidePart | None = None  # fitted on the shots; None = the pure LLM
    wide_layer: object = None  # joint mode: a torch Linear trained with the LoRA, initialised from `wide`
    shot_features: np.ndarray | None = None  # (shots, features) standardized
    valid_features: np.ndarray | None = None  # (valid, features) standardized
    draws: list[TaskDraw] = field(default_factory=list)  # per task: template, shots, valid (shots in task order)
    valid_tasks: list[int] = field(default_factory=list)  # task index of each valid example

    def current_wide(self) -> WidePart | None:
        """The wide part as it stands (joint mode: with the layer's current weights)."""
        if self.wide is None or self.wide_layer is None:
            return self.wide
        weight = self.wide_layer.weight.detach().double().cpu().numpy()[0]
        return self.wide.with_parameters(weight, float(self.wide_layer.bias.detach().double().cpu()[0]))

    def offsets(self, features: np.ndarray, rows) -> torch.Tensor | None:
        """Wide logits of `rows` of a standardized feature matrix (differentiable in joint mode)."""
        if self.wide is None:
            return None
        chosen = torch.tensor(features[rows], dtype=torch.float32)
        if self.wide_layer is not None:
            return self.wide_layer(chosen).squeeze(-1)
        wide = self.wide
        return chosen.double() @ torch.tensor(wide.weight) + wide.bias


def train(
    config: TrainConfig,
    train_pool: list[dict],
    valid_pool: list[dict],
    out_dir: str | Path,
    data_record: dict | None = None,
    progress: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Fit a LoRA adapter on `config.shots` examples of `train_pool`; save the best one to `out_dir`.

    `on_epoch(entry)`, if given, is called on the main process after each epoch with its history
    entry (epoch, train_loss, valid_auc): the hook for progress lines and TensorBoard curves.
    One task (`config.template`); a mixture (`config.tasks`) goes through `train_tasks`.
    """
    if config.tasks:
        raise ConfigError("config.tasks names a mixture; call train_tasks with one TaskPools per task")
    data_record = data_record or {}
    spec = TaskSpec(data=str(data_record.get("path") or "(examples)"), template=config.template)
    return train_tasks(config, [TaskPools(spec, train_pool, valid_pool, data_record)], out_dir, progress, on_epoch)


def train_tasks(
    config: TrainConfig,
    tasks: list[TaskPools],
    out_dir: str | Path,
    progress: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainResult:
    """`train` on a mixture: `tasks` in the order of `config.tasks` (or one task when that is empty)."""
    if config.tasks and [task.spec for task in tasks] != list(config.tasks):
        raise ConfigError("train_tasks needs one TaskPools per entry of config.tasks, in their order")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    run = prepare_run(config, tasks)
    # Everything is written into a sibling and moved into place last: a killed run never leaves a
    # directory that looks like a finished adapter.
    work_dir = out_dir.with_name(out_dir.name + ".partial")
    if run.accelerator.is_main_process:
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True)
    history, best_auc, best_epoch, stale, saved_wide = [], -1.0, 0, 0, None
    best_valid = None  # (LLM log-odds, wide logits) of the valid examples at the best epoch: the gate's inputs
    order_rng = random.Random(config.seed + 1)
    for epoch in range(1, config.num_epochs + 1):
        entry = {"epoch": epoch, "train_loss": run_epoch(run, order_rng)}
        if run.valid_sequences:
            wide = run.current_wide()
            scores = validation_scores(
                run.accelerator, run.model, run.scorer, run.valid_sequences, config.score_batch_size
            )
            offsets = None if wide is None else run.valid_features @ wide.weight + wide.bias
            entry["valid_auc"] = validation_auc(scores, run.valid_labels, offsets, run.valid_tasks)
        history.append(entry)
        if on_epoch is not None and run.accelerator.is_main_process:
            on_epoch(entry)
        if progress and run.accelerator.is_main_process:
            print(
                f"epoch {epoch}/{config.num_epochs} "
                + " ".join(f"{k}={v:.4f}" for k, v in entry.items() if k != "epoch"),
                flush=True,
            )
        if not run.valid_sequences or entry["valid_auc"] > best_auc:
            best_auc, best_epoch, stale = entry.get("valid_auc", float("nan")), epoch, 0
            best_valid = (scores, offsets) if run.valid_sequences else None
            saved_wide = run.current_wide()  # saved once, after the loop (with its gate)
            if run.accelerator.is_main_process:
                run.accelerator.unwrap_model(run.model).save_pretrained(work_dir)
        else:
            stale += 1
            if stale >= config.patience:
                break
    run.accelerator.wait_for_everyone()
    gate = None
    if saved_wide is not None and best_valid is not None and config.wide.gate:
        gate = fit_gate(*best_valid, run.valid_labels)
        saved_wide = saved_wide.with_parameters(saved_wide.weight, saved_wide.bias + gate.bias_shift, gate.llm_weight)
        if progress and run.accelerator.is_main_process:
            print(gate.summary(), flush=True)
    if saved_wide is not None and run.accelerator.is_main_process:
        saved_wide.save(work_dir)
    result = TrainResult(
        out_dir, best_epoch, best_auc, history, time.perf_counter() - start, run.accelerator.is_main_process,
        run.loss, run.wide.names if run.wide is not None else (), gate,
    )  # fmt: skip
    if result.main_process:
        write_run_record(run, result, work_dir, saved_wide)
        replace_dir(work_dir, out_dir)
    run.accelerator.wait_for_everyone()
    return result


def check_out_dir(out_dir: Path) -> None:
    """Refuse, before any work, an --out that holds something other than an adapter (it gets replaced)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file; pass a directory for the adapter")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not ((out_dir / "adapter_config.json").exists() or (out_dir / RUN_RECORD).exists()):
            raise ConfigError(f"--out {out_dir} holds other files and would be replaced; pass a new or empty directory")


def replace_dir(new: Path, target: Path) -> None:
    """Move a finished directory into place, replacing `target` (the caller checked --overwrite)."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def prepare_run(config: TrainConfig, tasks: list[TaskPools]) -> Run:
    """Check the request, draw shots (per task), load the model with LoRA, tokenize, build the optimizer."""
    from transformers import get_linear_schedule_with_warmup, set_seed

    draws = draw_tasks(tasks, config.shots, config.valid_examples, config.seed, config.balanced)
    shots = [ex for draw in draws for ex in draw.shots]
    valid = [ex for draw in draws for ex in draw.valid]
    accelerator = make_accelerator()
    if config.batch_size % accelerator.num_processes:
        raise ConfigError(
            f"batch_size={config.batch_size} must divide evenly over {accelerator.num_processes} processes"
        )
    set_seed(config.seed)
    model, tokenizer = load_model(config.model, trainable=True)
    # One scorer per task template; they share their answers (protocols.mixture), so the first one
    # computes every task's loss once the prompts are tokenized.
    scorers = [Scorer(model, tokenizer, d.template, score_batch_size=config.score_batch_size) for d in draws]
    scorer, template = scorers[0], draws[0].template
    wide = fit_shots_wide(config, shots)
    loss = "bce" if wide is not None else ("lm" if config.loss == "auto" else config.loss)
    if loss == "bce" and not scorer.answers.single_token:
        raise ConfigError(
            f"bce training (loss=bce, or the hybrid's wide part) needs single-token answers; template {template.name} "
            f"has {template.choices}; set wide.mode=off and loss=lm"
        )
    if config.gradient_checkpointing:
        # Non-reentrant: the inputs need not require grad, and dropout masks are replayed exactly.
        enable_checkpointing(model)
    model = add_lora(model, config)
    parameters = [p for p in model.parameters() if p.requires_grad]
    wide_layer = None
    if wide is not None and wide_mode(config) == "joint":
        wide_layer = torch.nn.Linear(len(wide.names), 1)
        with torch.no_grad():
            wide_layer.weight.copy_(torch.tensor(wide.weight).unsqueeze(0))
            wide_layer.bias.fill_(wide.bias)
        parameters += list(wide_layer.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    total_steps = -(-len(shots) // config.batch_size) * config.num_epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    return Run(
        config,
        accelerator,
        model,
        optimizer,
        scheduler,
        scorer,
        shots,
        [scorers[t].encode(ex) for t, draw in enumerate(draws) for ex in draw.shots],
        [scorers[t].encode(ex) for t, draw in enumerate(draws) for ex in draw.valid],
        [int(ex["label"]) for ex in valid],
        loss,
        wide,
        wide_layer,
        None if wide is None else wide.standardized(shots),
        None if wide is None else wide.standardized(valid),
        draws,
        [t for t, draw in enumerate(draws) for _ in draw.valid],
    )


def wide_mode(config: TrainConfig) -> str:
    """The wide mode in effect: auto means DEFAULT_HYBRID, except with the LM loss (the pure LLM)."""
    if config.wide.mode != "auto":
        return config.wide.mode
    return "off" if config.loss == "lm" or len(config.tasks) > 1 else DEFAULT_HYBRID


def fit_shots_wide(config: TrainConfig, shots: list[dict]) -> WidePart | None:
    """The wide part fitted on the shots, or None (wide.mode=off, or the shots carry no usable feature)."""
    if wide_mode(config) == "off":
        return None
    names = available_features(shots, config.wide.features or None)
    missing = [name for name in config.wide.features if name not in names]
    if missing:
        raise ConfigError(
            f"wide.features names {missing[0]!r}, which the {len(shots)} shots do not all carry (or is constant); "
            "drop it from wide.features"
        )
    return fit_wide(shots, [int(ex["label"]) for ex in shots], names, config.wide.l2) if names else None


def run_epoch(run: Run, order_rng: random.Random) -> float:
    """One pass over the shots in seeded global batches; returns the mean loss over all ranks."""
    config, accelerator = run.config, run.accelerator
    run.model.train()
    order = list(range(len(run.shots)))
    order_rng.shuffle(order)
    losses = []
    for start in range(0, len(order), config.batch_size):
        global_batch = order[start : start + config.batch_size]
        mine = global_batch[accelerator.process_index :: accelerator.num_processes] or global_batch[:1]
        losses.append(accumulate_gradients(run, mine))
        if run.wide_layer is not None and accelerator.num_processes > 1:  # outside the DDP model: sync by hand
            for parameter in run.wide_layer.parameters():
                parameter.grad = accelerator.reduce(parameter.grad, "mean")
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad()
    # Each rank saw its own slice; report the loss over the whole global batch.
    return float(accelerator.reduce(torch.tensor(float(np.mean(losses)), device=accelerator.device), "mean"))


def accumulate_gradients(run: Run, mine: list[int]) -> float:
    """Forward and backward over the shots `mine` in micro-batches; returns their mean loss.

    A micro-batch's mean loss is weighted by its share of `mine`, so the gradients add up to those of
    one pass over `mine` (up to float rounding). DDP averages across processes once, on the last one.
    """
    size, total = run.config.micro_batch_size, 0.0
    chunks = [mine[start : start + size] for start in range(0, len(mine), size)]
    for number, chunk in enumerate(chunks):
        last = number == len(chunks) - 1
        with contextlib.nullcontext() if last else run.accelerator.no_sync(run.model):
            loss = batch_loss(
                run.model,
                run.scorer,
                [run.sequences[i] for i in chunk],
                [run.shots[i]["label"] for i in chunk],
                run.loss,
                run.offsets(run.shot_features, chunk),
            ) * (len(chunk) / len(mine))
            run.accelerator.backward(loss)
        total += loss.item()
    return total


def write_run_record(run: Run, result: TrainResult, directory: Path, wide: WidePart | None) -> None:
    """Written last: an adapter directory without it is not a finished promptrec run.

    `tasks` lists every task (one for a single-task run); `template` and `data` name the one task,
    and are None for a mixture of several (`--template` then picks among the tasks' templates).
    """
    single = len(run.draws) == 1
    write_json(
        directory / RUN_RECORD,
        {
            "kind": "train",
            "config": to_dict(run.config),
            "model": to_dict(run.config.model),
            "template": template_record(run.scorer.template) if single else None,
            "data": run.draws[0].data_record if single else None,
            "tasks": [task_record(draw) for draw in run.draws],
            "shot_ids": [ex.get("example_id") for ex in run.shots],
            "shot_positive_rate": float(np.mean([ex["label"] for ex in run.shots])),
            "loss": run.loss,
            "wide": None if wide is None else wide.record() | {"mode": wide_mode(run.config), "l2": run.config.wide.l2},
            "gate": None if result.gate is None else result.gate.record(),
            "num_processes": run.accelerator.num_processes,
            "best_epoch": result.best_epoch,
            "best_valid_auc": result.best_valid_auc,
            "history": result.history,
            "seconds": result.seconds,
            **provenance(),
        },
    )


def task_record(draw: TaskDraw) -> dict:
    """One task of the run record: its data checksum, template, weight and shots."""
    return {
        "data": draw.data_record,
        "template": template_record(draw.template),
        "weight": draw.spec.weight,
        "shots": len(draw.shots),
        "shot_ids": [ex.get("example_id") for ex in draw.shots],
        "shot_positive_rate": float(np.mean([ex["label"] for ex in draw.shots])),
        "valid_examples": len(draw.valid),
    }


def tensorboard_writer_at(log_dir: Path):
    """A TensorBoard `SummaryWriter` for per-epoch curves (`on_epoch` hooks write to it)."""
    return tensorboard.SummaryWriter(log_dir=str(log_dir))
