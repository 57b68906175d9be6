"""Few-shot LoRA training: sample K examples, fit a PEFT LoRA adapter, keep the best by valid AUC.

The loop runs on `accelerate`: one process, or several under `accelerate launch` (DDP over GPUs,
or gloo over CPU processes). Every rank walks the same seeded global batches and takes its slice,
so the global batch, and thus the result, does not depend on the number of processes.
Prompts come from the same `Scorer` used by evaluation, so training and inference cannot drift.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from promptrec.core.config import to_dict
from promptrec.core.errors import ConfigError
from promptrec.core.files import write_json
from promptrec.core.lazy import LazyModule
from promptrec.core.records import provenance, template_record
from promptrec.lm.adapter import RUN_RECORD
from promptrec.lm.config import ModelConfig
from promptrec.lm.distributed import make_accelerator
from promptrec.lm.loading import load_model
from promptrec.lm.scoring import Scorer, answer_log_odds, model_device, next_token_log_probs, pad_batch, score_sequences
from promptrec.protocols.shots import sample_shots
from promptrec.templates.template import load_template

torch = LazyModule("torch")
tensorboard = LazyModule("torch.utils.tensorboard")  # only with tensorboard installed (checked at plan time)

LOSSES = ("lm", "bce")


@dataclass(frozen=True)
class LoraSettings:
    r: int = 8  # LoRA rank (TALLRec uses 8)
    lora_alpha: int = 16  # scaling numerator; effective scale alpha / r
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")  # attention projections


@dataclass(frozen=True)
class TrainConfig:
    template: str = "tallrec_plain"  # template name under prompts/ or a .j2 path
    shots: int = 64  # K training examples drawn from the train split
    seed: int = 0  # drives the K-shot sample, LoRA init, batch order and dropout
    balanced: bool = False  # False: uniform sample like TALLRec; True: K/2 positives and K/2 negatives
    loss: str = "lm"  # lm: cross-entropy on the answer tokens only; bce: on the yes/no log-odds
    learning_rate: float = 1e-3  # the rate of the README runs on the 135M model (TALLRec uses 1e-4 at 7B)
    num_epochs: int = 8  # upper bound; early stopping usually ends sooner
    batch_size: int = 8  # examples per optimizer step (global batch, split across processes)
    warmup_ratio: float = 0.1  # fraction of steps with linearly rising learning rate
    weight_decay: float = 0.0
    valid_examples: int = 128  # seeded sample of the valid split scored after each epoch (0 = no early stop)
    patience: int = 3  # epochs without a valid-AUC gain before stopping
    score_batch_size: int = 16  # prompts per forward pass when scoring validation examples
    lora: LoraSettings = field(default_factory=LoraSettings)
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ConfigError(f"loss={self.loss!r} is unknown; use one of {', '.join(LOSSES)}")
        for name in ("shots", "num_epochs", "batch_size", "patience", "score_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be at least 1")
        if self.valid_examples < 0:
            raise ConfigError(f"valid_examples={self.valid_examples} must be >= 0 (0 turns early stopping off)")


def add_lora(model, config: TrainConfig):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.model.quantization != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lora = LoraConfig(task_type="CAUSAL_LM", **dataclasses.asdict(config.lora))
    lora.target_modules = list(config.lora.target_modules)
    return get_peft_model(model, lora)


def batch_loss(model, scorer: Scorer, sequences: list[list[int]], labels: list[int], loss: str) -> torch.Tensor:
    pad_id = scorer.tokenizer.pad_token_id
    if loss == "bce":
        log_odds = answer_log_odds(model, pad_batch(sequences, pad_id, "left"), scorer.answers)
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


def validation_auc(accelerator, model, scorer: Scorer, sequences, labels, batch_size: int) -> float:
    """Each rank scores its slice; the gathered scores give every rank the same AUC."""
    from accelerate.utils import gather_object
    from sklearn.metrics import roc_auc_score

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
    """
    start = time.perf_counter()
    run = prepare_run(config, train_pool, valid_pool)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    history, best_auc, best_epoch, stale = [], -1.0, 0, 0
    order_rng = random.Random(config.seed + 1)
    for epoch in range(1, config.num_epochs + 1):
        entry = {"epoch": epoch, "train_loss": run_epoch(run, order_rng)}
        if run.valid_sequences:
            entry["valid_auc"] = validation_auc(
                run.accelerator, run.model, run.scorer, run.valid_sequences, run.valid_labels, config.score_batch_size
            )
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
            if run.accelerator.is_main_process:
                run.accelerator.unwrap_model(run.model).save_pretrained(out_dir)
        else:
            stale += 1
            if stale >= config.patience:
                break
    run.accelerator.wait_for_everyone()
    result = TrainResult(
        out_dir, best_epoch, best_auc, history, time.perf_counter() - start, run.accelerator.is_main_process
    )
    if result.main_process:
        write_run_record(run, result, data_record or {})
    return result


def prepare_run(config: TrainConfig, train_pool: list[dict], valid_pool: list[dict]) -> Run:
    """Check the request, draw shots, load the model with LoRA, tokenize, build the optimizer."""
    from transformers import get_linear_schedule_with_warmup, set_seed

    template = load_template(config.template)
    shots = sample_shots(train_pool, config.shots, config.seed, config.balanced)
    valid = random.Random(config.seed).sample(valid_pool, min(config.valid_examples, len(valid_pool)))
    if valid and len({ex["label"] for ex in valid}) < 2:
        raise ConfigError(
            f"the {len(valid)} validation examples all have label {valid[0]['label']}, so AUC is "
            "undefined; raise valid_examples, pass a larger --valid, or set valid_examples=0"
        )
    accelerator = make_accelerator()
    if config.batch_size % accelerator.num_processes:
        raise ConfigError(
            f"batch_size={config.batch_size} must divide evenly over {accelerator.num_processes} processes"
        )
    set_seed(config.seed)
    model, tokenizer = load_model(config.model, trainable=True)
    scorer = Scorer(model, tokenizer, template, score_batch_size=config.score_batch_size)
    if config.loss == "bce" and not scorer.answers.single_token:
        raise ConfigError(f"loss=bce needs single-token answers; template {template.name} has {template.choices}")
    model = add_lora(model, config)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.learning_rate, weight_decay=config.weight_decay
    )
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
        [scorer.encode(ex) for ex in shots],
        [scorer.encode(ex) for ex in valid],
        [int(ex["label"]) for ex in valid],
    )


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
        loss = batch_loss(
            run.model, run.scorer, [run.sequences[i] for i in mine], [run.shots[i]["label"] for i in mine], config.loss
        )
        accelerator.backward(loss)
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad()
        losses.append(loss.item())
    # Each rank saw its own slice; report the loss over the whole global batch.
    return float(accelerator.reduce(torch.tensor(float(np.mean(losses)), device=accelerator.device), "mean"))


def write_run_record(run: Run, result: TrainResult, data_record: dict) -> None:
    write_json(
        result.out_dir / RUN_RECORD,
        {
            "kind": "train",
            "config": to_dict(run.config),
            "model": to_dict(run.config.model),
            "template": template_record(run.scorer.template),
            "data": data_record,
            "shot_ids": [ex.get("example_id") for ex in run.shots],
            "shot_positive_rate": float(np.mean([ex["label"] for ex in run.shots])),
            "num_processes": run.accelerator.num_processes,
            "best_epoch": result.best_epoch,
            "best_valid_auc": result.best_valid_auc,
            "history": result.history,
            "seconds": result.seconds,
            **provenance(),
        },
    )


def tensorboard_writer_at(log_dir: Path):
    """A TensorBoard `SummaryWriter` for per-epoch curves (`on_epoch` hooks write to it)."""
    return tensorboard.SummaryWriter(log_dir=str(log_dir))
