"""Running an experiment's plan: each cell through `train()` and `evaluate()`, records, progress, ETA.

`promptrec.experiment` decides what to run and what is already done; this module runs the rest and
writes one `cell.json` per cell (config, fingerprint, template hash, seed, metrics, seconds), then
the summary table and plot. Progress goes to a callback as ready-made lines; nothing here prints.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from promptrec.baselines.classic import baseline_metrics, score_baseline, trained_on, write_baseline
from promptrec.core.config import to_dict
from promptrec.core.errors import ConfigError
from promptrec.core.files import read_jsonl, write_json, write_jsonl
from promptrec.core.records import provenance, template_record
from promptrec.jobs.evaluate import evaluate
from promptrec.jobs.experiment import RECORD, Cell, Plan, PlannedCell, config_record, fingerprint, model_slug
from promptrec.lm.training import tensorboard_writer_at, train
from promptrec.metrics.pointwise import pointwise_metrics
from promptrec.metrics.summary import write_summary
from promptrec.protocols.shots import select_examples


@dataclass(frozen=True)
class Progress:
    """One progress line for the caller to show."""

    message: str
    status: str  # baselines | skip | start | epoch | done | summary
    index: int = 0  # 1-based LLM cell number (0: not about one LLM cell)
    total: int = 0
    eta_seconds: float | None = None


def run_experiment(
    plan: Plan, overwrite: bool = False, report: Callable[[Progress], None] | None = None, progress: bool = False
) -> list[dict]:
    """Run every cell not done yet (baselines first: seconds), write the summary, return all records.

    Cells finished earlier with the same fingerprint are skipped and reported; cells finished with
    another fingerprint are refused unless `overwrite`. `progress` shows `evaluate`'s scoring bar.
    """

    report = report or (lambda event: None)
    changed = [p for p in plan.cells if p.status == "changed"]
    if changed and not overwrite:
        first = changed[0]
        raise ConfigError(
            f"{len(changed)} cell(s) in {plan.out_dir} were run with another config (first: {first.cell.cell_id}: "
            f"{'; '.join(first.changes[:3]) or 'fingerprint differs'}); pass --overwrite to rerun them, "
            "or choose another --out"
        )
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    write_json(plan.out_dir / "experiment.json", experiment_record(plan))
    records = run_baselines(plan, report)
    llm = [p for p in plan.cells if p.cell.kind == "llm"]
    clock = Eta(sum(cost_units(p.cell, plan) for p in llm if p.status != "done"))
    for index, planned in enumerate(llm, 1):
        cell_dir = plan.out_dir / planned.cell.cell_id
        head = f"cell {index}/{len(llm)} {planned.cell.cell_id}"
        if planned.status == "done":
            report(Progress(f"{head}: finished earlier, skipped", "skip", index, len(llm)))
            records.append(json.loads((cell_dir / RECORD).read_text()))
            continue
        eta = clock.eta()
        report(Progress(f"{head}: running" + (f" (ETA {duration(eta)})" if eta else ""), "start", index, len(llm), eta))
        clear(cell_dir, plan.out_dir)
        record = run_llm_cell(plan, planned, cell_dir, epoch_reporter(report, index, len(llm)), progress)
        clock.done(cost_units(planned.cell, plan), record["seconds"])
        eta = clock.eta()
        tail = f", ETA {duration(eta)} for the rest" if eta else ""
        message = f"{head}: AUC {record['metrics']['auc']:.4f} in {duration(record['seconds'])}{tail}"
        report(Progress(message, "done", index, len(llm), eta))
        records.append(record)
    records += ensemble_records(plan, records)
    paths = write_summary(records, plan.out_dir)
    report(Progress("wrote " + ", ".join(str(p) for p in paths), "summary"))
    return records


def ensemble_records(plan: Plan, records: list[dict]) -> list[dict]:
    """One "ensemble of the seeds" record per (model, method, K) with 2+ seeds: the mean of their scores.

    The same numbers as `evaluate --adapter SEED0 SEED1 ...` (which averages the members' scores),
    computed from the cells' predictions instead of scoring again; written under ensembles/.
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for record in records:
        if record["kind"] == "llm" and record.get("seed") is not None and record["shots"]:
            groups[(record["model"], record["method"], record["shots"], record.get("loss"))].append(record)
    made = []
    for (model, method, shots, loss), members in sorted(groups.items(), key=lambda item: str(item[0])):
        if len(members) < 2:
            continue
        members = sorted(members, key=lambda r: r["seed"])
        runs = [read_predictions(plan.out_dir / m["cell"] / "eval" / "predictions.jsonl") for m in members]
        if any([r["example_id"] for r in run] != [r["example_id"] for r in runs[0]] for run in runs):
            raise ConfigError(
                f"the seeds of {method} at {shots} shots scored different examples; rerun with --overwrite"
            )
        scores = np.mean([[r["score"] for r in run] for run in runs], axis=0)
        rows = runs[0]
        metrics = pointwise_metrics([r["label"] for r in rows], scores, [r.get("user_id") for r in rows])
        out = plan.out_dir / "ensembles" / model_slug(model) / method / f"{shots}shot"
        record = {
            "kind": "llm", "cell": str(out.relative_to(plan.out_dir)), "method": f"{method} ensemble",
            "model": model, "shots": shots, "seed": None, "loss": loss, "split": plan.config.split,
            "members": [m["cell"] for m in members], "metrics": metrics, **provenance(),
            "fingerprint": fingerprint({"ensemble_of": [m["fingerprint"] for m in members]}),
        }  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        write_jsonl(out / "predictions.jsonl", [r | {"score": float(s)} for r, s in zip(rows, scores)], sort_keys=True)
        write_json(out / RECORD, record)
        made.append(record)
    return made


def read_predictions(path: Path) -> list[dict]:
    return [row for _, row in read_jsonl(path, "rerun the cell with --overwrite")]


def epoch_reporter(report: Callable[[Progress], None], index: int, total: int) -> Callable[[str], None]:
    return lambda line: report(Progress(line, "epoch", index, total))


def run_baselines(plan: Plan, report: Callable[[Progress], None]) -> list[dict]:
    start, records, ran = time.perf_counter(), [], 0
    for planned in (p for p in plan.cells if p.cell.kind != "llm"):
        cell_dir = plan.out_dir / planned.cell.cell_id
        if planned.status == "done":
            records.append(json.loads((cell_dir / RECORD).read_text()))
            continue
        clear(cell_dir, plan.out_dir)
        records.append(run_baseline_cell(plan, planned, cell_dir))
        ran += 1
    if records:
        seconds = duration(time.perf_counter() - start)
        report(Progress(f"baselines: {ran} run in {seconds}, {len(records) - ran} finished earlier", "baselines"))
    return records


def run_llm_cell(
    plan: Plan, planned: PlannedCell, cell_dir: Path, say: Callable[[str], None], progress: bool = False
) -> dict:
    """Train (K > 0) and evaluate one cell exactly as `promptrec train` and `promptrec evaluate` do."""

    cell, splits, start = planned.cell, plan.splits, time.perf_counter()
    writer = tensorboard_writer(plan, cell)
    adapter_dir, trained = None, None
    if cell.train is not None:

        def on_epoch(entry: dict) -> None:
            values = " ".join(f"{k}={v:.4f}" for k, v in entry.items() if k != "epoch")
            say(f"  epoch {entry['epoch']}/{cell.train.num_epochs} {values}")
            for key, value in entry.items():
                if writer is not None and key != "epoch":
                    writer.add_scalar(key, value, entry["epoch"])

        result = train(
            cell.train, splits.train, splits.valid, cell_dir / "adapter", splits.record("train"), on_epoch=on_epoch
        )
        adapter_dir = result.out_dir
        trained = {"best_epoch": result.best_epoch, "best_valid_auc": result.best_valid_auc, "seconds": result.seconds}
        trained |= {"history": result.history, "loss": result.loss, "wide_features": list(result.wide_features)}
        trained["gate"] = None if result.gate is None else result.gate.record()
        if result.gate is not None:
            say(f"  {result.gate.summary()}")
    split = cell.evaluate.split
    metrics = evaluate(cell.evaluate, splits.scored, cell_dir / "eval", adapter_dir, splits.record(split), progress)
    if writer is not None:
        writer.add_scalar(f"{split}_auc", metrics["auc"], cell.train.num_epochs if cell.train else 0)
        writer.close()
    record = cell_record(plan, planned, metrics, time.perf_counter() - start)
    record.update(
        template=template_record(plan.templates[cell.template]),
        config={"train": to_dict(cell.train) if cell.train else None, "evaluate": to_dict(cell.evaluate)},
        training=trained,
        loss=trained["loss"] if trained else None,
    )
    write_json(cell_dir / RECORD, record)
    return record


def run_baseline_cell(plan: Plan, planned: PlannedCell, cell_dir: Path) -> dict:
    """Score the same seeded sample as the LLM cells with one baseline, at the same shot budget."""

    config, spec, start = plan.config, planned.cell.baseline, time.perf_counter()
    scored = select_examples(plan.splits.scored, config.limit, config.limit_seed)
    scores = score_baseline(spec, plan.splits.train, scored, config.train.balanced)
    metrics = baseline_metrics(spec, scored, scores)
    write_baseline(spec, scored, scores, metrics, cell_dir, trained_on(spec, plan.splits.train))
    record = cell_record(plan, planned, metrics, time.perf_counter() - start)
    record["baseline"] = spec.name
    write_json(cell_dir / RECORD, record)
    return record


def cell_record(plan: Plan, planned: PlannedCell, metrics: dict, seconds: float) -> dict:
    cell = planned.cell
    return {
        "kind": cell.kind,
        "cell": cell.cell_id,
        "method": cell.method,
        "model": cell.model,
        "shots": cell.shots,
        "seed": cell.seed,
        "loss": cell.train.loss if cell.train else None,
        "split": plan.config.split,
        "fingerprint": planned.fingerprint,
        "fingerprint_inputs": planned.inputs,
        "metrics": metrics,
        "seconds": seconds,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **provenance(),
    }


def experiment_record(plan: Plan) -> dict:
    return {
        "kind": "experiment",
        "config": config_record(plan.config),
        "data": {name: plan.splits.record(name) for name in plan.splits.checksums},
        "templates": {name: template_record(t) for name, t in plan.templates.items()},
        "cells": [p.cell.cell_id for p in plan.cells],
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **provenance(),
    }


def tensorboard_writer(plan: Plan, cell: Cell):
    """A SummaryWriter under OUT/tensorboard/<cell> when asked for (checked installed at plan time)."""
    if not plan.config.tensorboard:
        return None
    return tensorboard_writer_at(plan.out_dir / "tensorboard" / cell.cell_id)


def cost_units(cell: Cell, plan: Plan) -> float:
    """Rough relative cost for the ETA: scored examples, plus per epoch 3 per trained example
    (forward and backward) and the validation sample."""
    scored = min(plan.config.limit or len(plan.splits.scored), len(plan.splits.scored))
    if cell.train is None:
        return float(scored)
    valid = min(cell.train.valid_examples, len(plan.splits.valid))
    return float(scored + cell.train.num_epochs * (3 * cell.train.shots + valid))


class Eta:
    """Seconds left = seconds per cost unit so far x cost units left."""

    def __init__(self, units_left: float):
        self.units_left, self.units_done, self.seconds_spent = units_left, 0.0, 0.0

    def done(self, units: float, seconds: float) -> None:
        self.units_left -= units
        self.units_done += units
        self.seconds_spent += seconds

    def eta(self) -> float | None:
        if not self.units_done or self.units_left <= 0:
            return None
        return self.units_left * self.seconds_spent / self.units_done


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def clear(cell_dir: Path, out_dir: Path) -> None:
    """Remove what an unfinished or outdated run of this cell left, so nothing stale mixes in."""
    if cell_dir.exists() and out_dir.resolve() in cell_dir.resolve().parents:
        shutil.rmtree(cell_dir)
