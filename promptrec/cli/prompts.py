"""CLI verbs `prompts list|show|check|render`.

What ships, a template as written, lint, and exactly what the model sees (with token counts)."""

from __future__ import annotations

import sys
from pathlib import Path

from promptrec.cli.common import (
    add_data_flags,
    add_model_flags,
    command_parser,
    load_examples,
    model_config,
    resolve_path,
)
from promptrec.core.errors import DataError
from promptrec.lm.encoding import encode_prompt
from promptrec.lm.loading import load_tokenizer
from promptrec.lm.scoring import answer_ids
from promptrec.templates.template import PROMPTS_DIR, check_templates, list_templates, load_template

EXAMPLES = """examples:
  promptrec prompts list
  promptrec prompts render movie_rich --data data/ml100k --split test --index 0
  promptrec prompts check prompts/ my_templates/new.j2"""


# ---------------------------------------------------------------- prompts
def add_parser(sub) -> None:
    parser = command_parser(sub, "prompts", "List, show, check and render prompt templates.", EXAMPLES)
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", help="templates under prompts/").set_defaults(handler=prompts_list)
    show = verbs.add_parser("show", help="a template's front matter and body")
    show.add_argument("name")
    show.set_defaults(handler=prompts_show)
    check = verbs.add_parser("check", help="lint template files (default: all under prompts/)")
    check.add_argument("paths", nargs="*")
    check.set_defaults(handler=prompts_check)
    render = verbs.add_parser("render", help="print exactly what the model sees for one example")
    render.add_argument("name")
    add_data_flags(render, "prepared dir, .jsonl, Alpaca .json, a save_to_disk dir, or hub:owner/name")
    render.add_argument("--split", default="test")
    render.add_argument("--index", type=int, default=0)
    add_model_flags(render)
    render.set_defaults(handler=prompts_render)


def prompts_list(args) -> int:
    for template in list_templates():
        chat = " chat" if template.chat else ""
        summary = template.description.splitlines()[0][:70]
        print(f"{template.name:24} v{template.version:<4} {template.kind}{chat:6} {summary}")
    return 0


def prompts_show(args) -> int:
    template = load_template(args.name)
    print(Path(template.path).read_text(), end="")
    return 0


def prompts_check(args) -> int:
    problems = check_templates([Path(p) for p in args.paths] or [PROMPTS_DIR])
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{len(problems)} problem(s)" if problems else "all templates ok")
    return 2 if problems else 0


def prompts_render(args) -> int:
    template = load_template(args.name)
    examples = load_examples(resolve_path(args.data), args.split, args.columns)
    if not 0 <= args.index < len(examples):
        raise DataError(
            f"--index {args.index} is out of range; split {args.split!r} has {len(examples)} examples "
            f"(0..{len(examples) - 1})"
        )
    tokenizer = load_tokenizer(model_config(args))
    prompt = template.render_prompt(examples[args.index], tokenizer)
    answers = answer_ids(tokenizer, template.choices, template.name)
    sys.stdout.write(prompt.text)
    print(
        f"\n----- {template.name} v{template.version} | example {examples[args.index].get('example_id')} | "
        f"{len(encode_prompt(tokenizer, prompt, template.chat))} prompt tokens | answers {template.choices} -> "
        f"{answers.positive} / {answers.negative} | label {examples[args.index].get('label')}",
        file=sys.stderr,
    )
    return 0
