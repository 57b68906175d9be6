"""The newcomer's tour: raw MovieLens -> prepared split -> zero-shot -> few-shot LoRA -> table + ranked list.

Sized to finish in minutes on 2 CPU cores; every step is the same library call the CLI verbs make.
"""

from __future__ import annotations

from pathlib import Path

from promptrec.core.files import read_jsonl
from promptrec.jobs.evaluate import EvalConfig, evaluate
from promptrec.lm.config import ModelConfig
from promptrec.lm.training import TrainConfig, train
from promptrec.metrics.pointwise import pointwise_metrics
from promptrec.protocols.prepare import prepare_movielens
from promptrec.protocols.splits import MANIFEST_NAME, dataset_checksum, load_split


def run(source: Path, out: Path, template: str, shots: int, epochs: int, limit: int, model: ModelConfig) -> None:
    data_dir = out / "data"
    if not (data_dir / MANIFEST_NAME).exists():
        prepare_movielens(source, data_dir)
    say(f"[1/4] data ready in {data_dir}")
    test = load_split(data_dir, "test")
    record = {"path": str(data_dir), "split": "test", "sha256": dataset_checksum(data_dir, "test")}
    eval_config = EvalConfig(template=template, limit=limit, model=model)
    zero = evaluate(eval_config, test, out / "zero-shot", data_record=record, progress=True)
    say(f"[2/4] zero-shot AUC {zero['auc']:.4f}")
    # Same recipe as the README's table: fixed epochs, last one kept (a small validation sample is noise).
    config = TrainConfig(template=template, shots=shots, num_epochs=epochs, valid_examples=0, model=model)
    adapter = out / f"adapter-{template}-{shots}shot"
    train(config, load_split(data_dir, "train"), load_split(data_dir, "valid"), adapter, progress=True)
    say(f"[3/4] adapter saved to {adapter}")
    tuned = evaluate(eval_config, test, out / "few-shot", adapter=adapter, data_record=record, progress=True)
    say(f"[4/4] {shots}-shot AUC {tuned['auc']:.4f}\n")
    rows = {"zero-shot": zero, f"{shots}-shot hybrid (LLM + wide)": tuned}
    rows |= part_metrics(out / "few-shot" / "predictions.jsonl", shots)
    say(results_table(rows, template))
    say(ranked_list(out / "few-shot" / "predictions.jsonl", test))


def part_metrics(predictions_path: Path, shots: int) -> dict[str, dict]:
    """Rows for each part of a hybrid's score alone (same examples), so the table shows what each adds."""
    rows = [row for _, row in read_jsonl(predictions_path, "evaluate again")]
    if "wide_score" not in rows[0]:
        return {}
    labels, users = [r["label"] for r in rows], [r.get("user_id") for r in rows]
    return {
        f"{shots}-shot wide part alone": pointwise_metrics(labels, [r["wide_score"] for r in rows], users),
        f"{shots}-shot LLM part alone": pointwise_metrics(labels, [r["llm_score"] for r in rows], users),
    }


def results_table(rows: dict[str, dict], template: str) -> str:
    lines = [f"| {template} | AUC | UAUC | log loss | examples |", "|---|---|---|---|---|"]
    for name, m in rows.items():
        lines.append(f"| {name} | {m['auc']:.4f} | {m['uauc']:.4f} | {m['logloss']:.4f} | {m['num_examples']} |")
    return "\n".join(lines) + "\n"


def ranked_list(predictions_path: Path, examples: list[dict], top: int = 10) -> str:
    """The first test user's scored movies, best first, with what they really thought of them."""
    titles = {ex["example_id"]: ex["item"]["title"] for ex in examples}
    rows = [row for _, row in read_jsonl(predictions_path, "evaluate again")]
    user = rows[0]["user_id"]
    mine = sorted((r for r in rows if r["user_id"] == user), key=lambda r: -r["score"])[:top]
    lines = [f"Ranked list for user {user} (score = log P(Yes) - log P(No)):"]
    for rank, row in enumerate(mine, 1):
        verdict = "liked" if row["label"] else "not liked"
        lines.append(f"{rank:>3}. {row['score']:+.3f}  {titles[row['example_id']]}  ({verdict})")
    return "\n".join(lines)


def say(text: str) -> None:
    print(text, flush=True)
