"""Result tables and the learning-curve plot: mean ± std over seeds per (model, method, shots, loss).

Input is a list of run records (the `cell.json` of `promptrec experiment`, or records rebuilt from
the `config.json` + `metrics.json` that `evaluate` and `baselines` write). Output: summary.csv
(full precision, for tools), summary.md (for people) and learning_curve.png (AUC against shots,
one line per template and per baseline; full-data baselines and heuristics as horizontal lines).
std is the sample standard deviation (ddof=1) over seeds; a single run has none.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

METRICS = ("auc", "uauc", "logloss", "accuracy")


KIND_ORDER = {"llm": 0, "baseline": 1, "heuristic": 2}


CSV_COLUMNS = ("kind", "model", "method", "shots", "loss", "runs", "seeds", "num_examples") + tuple(
    f"{m}_{s}" for m in METRICS for s in ("mean", "std")
)


def summarize(records: list[dict]) -> list[dict]:
    """One row per (kind, model, method, shots, loss) with n, mean and std of each metric."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for record in records:
        key = (record["kind"], record.get("model") or "-", record["method"], record["shots"], record.get("loss") or "-")
        groups[key].append(record)
    rows = []
    for (kind, model, method, shots, loss), members in groups.items():
        seeds = sorted(r["seed"] for r in members if r.get("seed") is not None)
        row = {"kind": kind, "model": model, "method": method, "shots": shots, "loss": loss, "runs": len(members)}
        row["seeds"] = " ".join(map(str, seeds)) or "-"
        row["num_examples"] = members[0]["metrics"]["num_examples"]
        for metric in METRICS:
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std([r["metrics"].get(metric) for r in members])
        rows.append(row)
    return sorted(rows, key=_order)


def mean_std(values: list) -> tuple[float, float]:
    """Mean and sample std (ddof=1) ignoring NaN; (nan, nan) if nothing is left, std nan for one value."""
    array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    array = array[~np.isnan(array)]
    if not len(array):
        return math.nan, math.nan
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else math.nan


def _order(row: dict) -> tuple:
    shots = row["shots"]
    return (
        KIND_ORDER.get(row["kind"], 9),
        row["model"],
        row["method"],
        shots == "full",
        shots if shots != "full" else 0,
    )


def write_summary(records: list[dict], out_dir: Path) -> list[Path]:
    """summary.csv, summary.md and learning_curve.png in `out_dir`; returns their paths."""
    rows = summarize(records)
    paths = [out_dir / "summary.csv", out_dir / "summary.md", out_dir / "learning_curve.png"]
    with paths[0].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    paths[1].write_text(markdown_table(rows))
    plot_learning_curve(rows, paths[2])
    return paths


def _cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"


def method_label(row: dict) -> str:
    return row["method"] if row["kind"] == "llm" else f"{row['kind']}: {row['method']}"


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| model | method | shots | loss | runs | AUC | UAUC | log loss | accuracy | examples |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        metrics = " | ".join(_cell(row[f"{m}_mean"], row[f"{m}_std"]) for m in METRICS)
        lines.append(
            f"| {row['model']} | {method_label(row)} | {row['shots']} | {row['loss']} | {row['runs']} | "
            f"{metrics} | {row['num_examples']} |"
        )
    note = "\nmean ± std (ddof=1) over seeds; shots `full` = the whole train split; `-` = not defined.\n"
    return "\n".join(lines) + "\n" + note


def plot_learning_curve(rows: list[dict], path: Path, metric: str = "auc") -> None:
    """Mean metric against shots with std error bars; ceilings and heuristics as horizontal lines."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A Figure on the Agg canvas: no pyplot, so no global backend switch and no display needed.
    figure = Figure(figsize=(10, 5.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    ks = sorted({r["shots"] for r in rows if r["kind"] != "heuristic" and r["shots"] != "full"})
    position = {k: i for i, k in enumerate(ks)}
    methods = sorted({(r["kind"], r["model"], r["method"]) for r in rows}, key=lambda x: (KIND_ORDER.get(x[0], 9), x))
    multi_model = len({r["model"] for r in rows if r["kind"] == "llm"}) > 1
    handles = []
    for number, (kind, model, method) in enumerate(methods):
        members = [r for r in rows if (r["kind"], r["model"], r["method"]) == (kind, model, method)]
        label = method + (f" ({model})" if multi_model and kind == "llm" else "")
        handles += _draw_method(axes, members, position, metric, colormaps["tab10"](number % 10), label)
    handles.append(axes.axhline(0.5, color="grey", linewidth=0.8, label="chance"))
    axes.set_xticks(range(len(ks)), [str(k) for k in ks])
    axes.set_xlabel("shots (K training examples; equally spaced)")
    axes.set_ylabel(f"{metric.upper()} (mean ± std over seeds)")
    examples = ", ".join(map(str, sorted({r["num_examples"] for r in rows})))
    axes.set_title(f"{metric.upper()} against shots, {examples} scored examples")
    axes.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    axes.grid(alpha=0.3)
    figure.savefig(path, dpi=120, bbox_inches="tight")


def _draw_method(axes, members: list[dict], position: dict, metric: str, color, label: str) -> list:
    """LLM templates: solid lines; K-shot baselines: dashed; full-data ceilings: dash-dot; heuristics: dotted."""
    kind, handles = members[0]["kind"], []
    curve = sorted((r for r in members if r["shots"] in position and kind != "heuristic"), key=_order)
    if curve:
        llm = kind == "llm"
        handles.append(
            axes.errorbar(
                [position[r["shots"]] for r in curve],
                [r[f"{metric}_mean"] for r in curve],
                yerr=[0 if math.isnan(r[f"{metric}_std"]) else r[f"{metric}_std"] for r in curve],
                marker="o" if llm else "s",
                linestyle="-" if llm else "--",
                linewidth=2 if llm else 1,
                capsize=3,
                color=color,
                label=label if llm else f"{label} (K shots)",
            )
        )
    for row in (r for r in members if r["shots"] == "full" or kind == "heuristic"):
        style, suffix = (":", " (heuristic)") if kind == "heuristic" else ("-.", " (full train split)")
        handles.append(axes.axhline(row[f"{metric}_mean"], color=color, linestyle=style, label=label + suffix))
    return handles


def read_cell_records(out_dir: Path) -> list[dict]:
    """The `cell.json` records of an experiment run dir."""
    return [json.loads(p.read_text()) for p in sorted(Path(out_dir).rglob("cell.json"))]


def records_from_run_dirs(results_dir: Path) -> list[dict]:
    """Summary records rebuilt from the run records (`config.json` + `metrics.json`) that
    `promptrec evaluate` and `promptrec baselines` write; never from directory names."""
    records = []
    for metrics_path in sorted(Path(results_dir).rglob("metrics.json")):
        config_path = metrics_path.parent / "config.json"
        if not config_path.exists():
            continue
        run = json.loads(config_path.read_text())
        metrics = json.loads(metrics_path.read_text())
        if run.get("kind") == "baseline":
            name = run["baseline"]
            shots = "full" if name.endswith("_full") else run["shots"]
            kind = "heuristic" if run["shots"] == 0 else "baseline"
            method = run.get("method") or re.sub(r"_(\d+shot|full)$", "", name)
            records.append(
                {"kind": kind, "method": method, "shots": shots, "seed": run.get("seed"), "metrics": metrics}
            )
            continue
        adapter = (run.get("adapter_record") or {}).get("config") or {}
        records.append(
            {
                "kind": "llm",
                "model": run.get("config", {}).get("model", {}).get("model"),
                "method": run["template"]["name"],
                "shots": adapter.get("shots", 0),
                "seed": adapter.get("seed"),
                "loss": adapter.get("loss"),
                "metrics": metrics,
            }
        )
    return records
