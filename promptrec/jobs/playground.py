"""The template playground behind `promptrec serve --playground`: lint, render, diff, score, save.

A prompt engineer edits template text in the page; everything here takes that text, never a path.
Text becomes a `Template` the only way templates are made (`load_template` on a file written to a
temporary folder), so edits get the same lint and the same sandboxed rendering as shipped files, and
messages name `<name>.j2` and its line instead of the temporary path. Examples are a seeded sample of
a split of `--data` (`select_examples`, as `evaluate --limit`); scoring goes through the serving
`Service`'s worker. Saving writes `<templates_dir>/<name>.j2` only: a checked name, lint-clean text,
and an existing file is replaced only when the caller says so.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tempfile
from pathlib import Path

import numpy as np

from promptrec.core.errors import ConfigError, PromptrecError, TemplateError
from promptrec.core.files import read_text, write_text_atomic
from promptrec.jobs.serve import PointwiseJob, Service
from promptrec.metrics.pointwise import pointwise_metrics, sigmoid
from promptrec.protocols.shots import select_examples
from promptrec.protocols.splits import SPLITS, load_split
from promptrec.templates.leaks import leak_warnings
from promptrec.templates.template import check_templates, list_templates, load_template

NAME_RE = re.compile(r"[a-z0-9_]+")  # a saved template's name, which is also its file name


MAX_EXAMPLES = 200  # examples one render or score request may ask for


class ExistsError(PromptrecError):
    """Saving would replace an existing file and the caller did not say so (HTTP 409)."""


class Playground:
    def __init__(self, service: Service, data_dir: Path | None, templates_dir: Path):
        self.service, self.data_dir, self.templates_dir = service, data_dir, Path(templates_dir)
        self._splits: dict[str, list[dict]] = {}

    def state(self) -> dict:
        """What the page starts from: templates to pick, splits, scoring choices, the token limit."""
        return {
            "templates": self.templates(),
            "template": self.service.template.name,
            "splits": self.splits(),
            "choices": self.service.info["scoring_choices"],
            "max_prompt_tokens": self.service.max_prompt_tokens,
            "templates_dir": str(self.templates_dir),
            "model": self.service.config.model.model,
        }

    def templates(self) -> list[dict]:
        """Shipped templates, then the ones saved under `templates_dir` (broken ones too: to fix them)."""
        shipped = [{"name": t.name, "origin": "prompts", "text": read_text(t.path)} for t in list_templates()]
        saved = sorted(self.templates_dir.glob("*.j2")) if self.templates_dir.is_dir() else []
        return shipped + [{"name": p.stem, "origin": str(self.templates_dir), "text": read_text(p)} for p in saved]

    def splits(self) -> list[str]:
        if self.data_dir is None:
            return []
        if self.data_dir.is_file():
            return [self.data_dir.stem]
        return [s for s in SPLITS if any((self.data_dir / f"{s}{x}").is_file() for x in (".jsonl", ".json"))]

    def examples(self, split: str, num_examples: int, seed: int) -> list[dict]:
        """A seeded sample of `split` (the same for the same arguments, as `evaluate --limit`)."""
        if self.data_dir is None:
            raise ConfigError("the playground needs examples; restart it with --data DIR (a prepared data directory)")
        if split not in self.splits():
            raise ConfigError(f"unknown split {split!r}; choose one of: {', '.join(self.splits())}")
        if split not in self._splits:
            self._splits[split] = load_split(self.data_dir, split)
        return select_examples(self._splits[split], num_examples, seed)

    def lint(self, text: str, name: str | None = None) -> list[dict]:
        """`prompts check` on the text (saved as `<name>.j2`): one {line, message, source} per problem."""
        stem = name or _stem(text)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{stem}.j2"
            write_text_atomic(path, text)
            problems = check_templates([path])
        return [_problem(problem.replace(str(path), f"{stem}.j2"), stem, text) for problem in problems]

    def render(self, texts: list[str], split: str, num_examples: int, seed: int) -> dict:
        """Each sampled example through each template: prompt, token count, truncation, leaks, and a line diff."""
        templates = [self.parse(text, f"template {'AB'[i]}") for i, text in enumerate(texts)]
        rows = []
        for position, example in enumerate(self.examples(split, num_examples, seed)):
            prompts = [self._prompt(template, example) for template in templates]
            texts_ok = [p["text"] for p in prompts if "text" in p]
            row = {"position": position, "example_id": example.get("example_id"), "label": example.get("label")}
            row["prompts"] = prompts
            row["diff"] = line_diff(*texts_ok) if len(texts_ok) == 2 else None
            rows.append(row)
        return {"examples": rows, "max_prompt_tokens": self.service.max_prompt_tokens}

    def score_job(self, text: str, split: str, num_examples: int, seed: int, positions: list[int], choice: str):
        """The sampled examples at `positions`, as a job for the service's worker."""
        template = self.parse(text, "template")
        sample = self.examples(split, num_examples, seed)
        outside = [p for p in positions if not 0 <= p < len(sample)]
        if outside:
            raise ConfigError(f"example position {outside[0]} is outside the sample of {len(sample)}")
        examples = [sample[p] for p in positions]
        self.service.check(template, examples)
        if choice not in self.service.info["scoring_choices"]:
            raise ConfigError(
                f"unknown scoring choice {choice!r}; choose one of {self.service.info['scoring_choices']}"
            )
        return PointwiseJob(examples, template, choice)

    def save(self, name: str, text: str, overwrite: bool) -> dict:
        """Write lint-clean `text` to `<templates_dir>/<name>.j2`; an existing file only with `overwrite`."""
        if not NAME_RE.fullmatch(name):
            raise ConfigError(f"template name {name!r}: use lowercase letters, digits and _ only (it names the file)")
        if name in {t.name for t in list_templates()}:
            raise ConfigError(f"template name {name!r} is a shipped template's; choose another name")
        directory = self.templates_dir.resolve()
        path = directory / f"{name}.j2"
        problems = self.lint(text, name)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise TemplateError(f"not saved: {problems[0]['message']}{more}")
        existed = path.exists()
        if existed and not overwrite:
            raise ExistsError(f"{path} already exists; tick 'overwrite' to replace it, or choose another name")
        directory.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)  # a symlink at `path` is replaced, never written through
        return {"path": str(path), "name": name, "overwrote": existed}

    def parse(self, text: str, what: str):
        """Template text as a `Template` (errors name `<name>.j2`, prefixed with `what`)."""
        stem = _stem(text)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{stem}.j2"
            write_text_atomic(path, text)
            try:
                template = load_template(path)
            except TemplateError as error:
                raise TemplateError(f"{what}: {str(error).replace(str(path), f'{stem}.j2')}") from None
        return dataclasses.replace(template, path=Path(f"{stem}.j2"))

    def _prompt(self, template, example: dict) -> dict:
        try:
            text, ids = self.service.encode(template, example)
        except TemplateError as error:
            return {"error": str(error)}
        prompt = {"text": text, "num_tokens": len(ids), "leaks": leak_warnings(template, example, text)}
        prompt["truncated"] = len(ids) > self.service.max_prompt_tokens
        return prompt


def metrics(labels: list[int], scores: list[float]) -> dict:
    """AUC, log loss and accuracy of the scored examples (pointwise_metrics; AUC is None without both labels)."""
    values = pointwise_metrics(labels, np.asarray(scores, dtype=np.float64))
    keys = ("num_examples", "positive_rate", "auc", "logloss", "accuracy")
    return {key: values[key] if np.isfinite(values[key]) else None for key in keys}


def score_rows(job: PointwiseJob, positions: list[int], parts) -> list[dict]:
    llm, wide = parts
    scores = llm + wide
    return [
        {"position": position, "example_id": example.get("example_id"), "label": example.get("label"),
         "score": float(score), "probability": float(sigmoid(score)), "llm_score": float(a), "wide_score": float(b)}
        for position, example, score, a, b in zip(positions, job.examples, scores, llm, wide)
    ]  # fmt: skip


def line_diff(before: str, after: str) -> list[dict]:
    """Lines of `after` against `before`: {"op": " " | "-" | "+", "text"}."""
    lines = difflib.ndiff(before.splitlines(), after.splitlines())
    return [{"op": line[0], "text": line[2:]} for line in lines if line[:1] in " -+"]


def _stem(text: str) -> str:
    """The file stem that lets `text` lint as itself: its front-matter name, when that can name a file.

    Read with a pattern rather than YAML, so a front matter with a YAML error still lints under its name.
    """
    front = text.split("---", 2)[1] if text.startswith("---") and text.count("---") >= 2 else ""
    match = re.search(r"""^name:\s*["']?([A-Za-z0-9_-]{1,100})["']?\s*$""", front, re.M)
    return match.group(1) if match else "untitled"


def _problem(message: str, stem: str, text: str) -> dict:
    match = re.match(rf"{re.escape(stem)}\.j2:(\d+): (.*)", message)
    if match is None:
        return {"line": None, "message": message, "source": None}
    line = int(match.group(1))
    lines = text.splitlines()
    return {"line": line, "message": message, "source": lines[line - 1] if 0 < line <= len(lines) else None}
