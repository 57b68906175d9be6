"""Prompt templates: load, lint and render the `.j2` files under `prompts/`.

A template file is YAML front matter between `---` lines followed by a Jinja body. `render()` is the
single place where an example becomes the text a model sees, so training, scoring and evaluation
cannot drift apart; `render_prompt()` gives the same text as segments that tell the template's own
special tokens from data text (`segments`). Bodies run in a sandbox with limits on time, size and
work (`sandbox`). Prompt text itself lives in `prompts/`, never here; token ids for the answer
choices are looked up by the scoring code at run time, not here.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import yaml

from promptrec.core.errors import TemplateError
from promptrec.templates.limits import RenderLimitError, render_budget
from promptrec.templates.sandbox import SANDBOX, compile_body
from promptrec.templates.segments import Prompt, chat_prompt, marked_prompt, sentinel_writer, untrusted


def shipped_prompts_dir() -> Path:
    """The shipped templates: package data in an installed wheel, else the checkout's top-level prompts/."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "prompts"
    return installed if installed.is_dir() else package.parent / "prompts"


PROMPTS_DIR = shipped_prompts_dir()


KINDS = ("pointwise",)


REQUIRED_KEYS = ("name", "version", "kind", "inputs", "choices", "description")


OPTIONAL_KEYS = ("chat", "system")


# Chat-control markers such as <|im_end|>, <|eot_id|> or DeepSeek's full-width <｜...｜>; removed
# from data text even without a tokenizer, so golden files and previews show what a model gets.
MARKER_RE = re.compile(r"<[|｜][^\s<>]{0,64}?[|｜]>")


MAX_TEMPLATE_BYTES = 1_000_000  # a template file is a few KB; a bigger one is a mistake (a data file?)


@dataclass(frozen=True)
class Template:
    name: str
    version: str
    kind: str
    inputs: tuple[str, ...]
    choices: tuple[str, str]  # positive answer first, exactly as the model should continue
    description: str
    chat: bool = False
    system: str | None = None  # system message, chat templates only
    path: Path | None = None
    source: str = ""  # the Jinja body, front matter removed
    sha256: str = ""  # of the whole file's bytes, recorded beside every result
    body_line: int = 1  # file line where the body starts, so Jinja line numbers map to the file

    def render(self, example: Mapping[str, Any], tokenizer: Any = None) -> str:
        """The prompt for one example; it ends exactly where the answer (a choice) starts."""
        return self.render_prompt(example, tokenizer).text

    def render_prompt(self, example: Mapping[str, Any], tokenizer: Any = None) -> Prompt:
        """`render()` as segments: the template's own special tokens (and chat frame) apart from data text."""
        example_id = example.get("example_id", "?")
        context = {}
        for name in self.inputs:
            if name not in example:
                raise TemplateError(
                    f"{self.path}: example {example_id} has no field '{name}' (template "
                    f"'{self.name}' needs {', '.join(self.inputs)}); add it to the data or pick a "
                    f"template whose inputs the data has"
                )
            context[name] = example[name]
        specials = tuple(special_tokens(tokenizer))
        context = sanitize(context, specials)
        try:
            with render_budget():
                text = _compiled(self.source, specials).render(context)
        except RenderLimitError as err:
            where = f"{self._where(err)}: template '{self.name}' stopped on example {example_id}"
            raise TemplateError(f"{where}: {err}") from None
        except RecursionError as err:
            raise TemplateError(
                f"{self._where(err)}: template '{self.name}' stopped on example {example_id}: macros call each "
                "other too deeply; give the recursion a condition that ends it"
            ) from None
        # Anything else raised by the body comes from data it cannot handle (a None rating) or from its
        # own code (a typo, deep recursion); the sandbox keeps both away from the rest of the program.
        except Exception as err:  # noqa: BLE001
            raise TemplateError(
                f"{self._where(err)}: rendering example {example_id} failed: {_one_line(err)}; fix the "
                f"template or add the missing field to the data"
            ) from None
        body = marked_prompt(text, specials) if specials else untrusted(text)
        if not self.chat or tokenizer is None:
            return body
        if not getattr(tokenizer, "chat_template", None):
            raise TemplateError(
                f"{self.path}: template '{self.name}' is a chat template but the tokenizer has no "
                f"chat_template; use a non-chat template or a chat (instruct) model"
            )
        return chat_prompt(tokenizer, self.system, body, self.path)

    def _where(self, err: Exception) -> str:
        """`path:line` of the body line a runtime error came from (Jinja rewrites the frames)."""
        frames = traceback.walk_tb(err.__traceback__)
        lines = [n for f, n in frames if f.f_code.co_filename == "<template>"]
        return f"{self.path}:{lines[-1] + self.body_line - 1}" if lines else str(self.path)


@lru_cache(maxsize=64)
def _compiled(source: str, specials: tuple[str, ...]) -> jinja2.Template:
    """The body compiled under the sandbox's limits, its literal special tokens turned into sentinels."""
    return compile_body(source, sentinel_writer(specials))


def _one_line(err: Exception) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def special_tokens(tokenizer: Any) -> list[str]:
    """Every special-token string of `tokenizer` (longest first), or [] for no tokenizer."""
    if tokenizer is None:
        return []
    tokens = set(getattr(tokenizer, "all_special_tokens", []) or [])
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    tokens.update(tok.content for tok in added.values() if getattr(tok, "special", False))
    return sorted((t for t in tokens if t), key=len, reverse=True)


def sanitize(value: Any, tokens: Iterable[str] = ()) -> Any:
    """`value` with special tokens and `<|...|>` markers removed from every string inside it.

    Data text (titles, reviews) must not be able to close a chat turn or smuggle control tokens in.
    Removal repeats until nothing changes, since deleting one marker can join the halves of another.
    """
    pattern = _removal_pattern(tuple(sorted(set(tokens), key=len, reverse=True)))
    return _scrub(value, pattern)


@lru_cache(maxsize=16)
def _removal_pattern(tokens: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join([MARKER_RE.pattern, *map(re.escape, tokens)]))


def _scrub(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        removed = 1
        while removed:
            value, removed = pattern.subn("", value)
        return value
    if isinstance(value, Mapping):  # keys too: a table's header row is data (`{% for k, v in user.items() %}`)
        return {_scrub(key, pattern): _scrub(item, pattern) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub(item, pattern) for item in value]
    if isinstance(value, tuple):
        return tuple(_scrub(item, pattern) for item in value)
    return value


def load_template(name_or_path: str | Path) -> Template:
    """A template by file path (`*.j2`) or by name (looked up under `prompts/`)."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".j2") or "/" in text or "\\" in text:
        path = Path(name_or_path)
        if not path.is_file():
            raise TemplateError(f"{path}: template file not found; check the path or pass a template name")
        return _parse(path)
    index = _index(PROMPTS_DIR)
    if text not in index:
        hint = difflib.get_close_matches(text, index, n=1)
        did_you_mean = f"did you mean '{hint[0]}'? " if hint else ""
        raise TemplateError(
            f"unknown template '{text}'; {did_you_mean}available: "
            f"{', '.join(sorted(index)) or 'none'} (in {PROMPTS_DIR}), or pass a path to a .j2 file"
        )
    return _parse(index[text])


def list_templates() -> list[Template]:
    """Every template under `prompts/`, sorted by name."""
    return [_parse(path) for _, path in sorted(_index(PROMPTS_DIR).items())]


def check_templates(paths: Iterable[str | Path]) -> list[str]:
    """Lint template files (directories searched recursively): one line per problem, [] if clean."""
    problems: list[str] = []
    seen: dict[str, Path] = {}
    for root in map(Path, paths):
        if not root.exists():
            problems.append(f"{root}: no such file or directory; check the path")
            continue
        for path in _template_files(root) if root.is_dir() else [root]:
            try:
                template = _parse(path)
            except TemplateError as err:
                problems.append(str(err))
                continue
            first = seen.setdefault(template.name, path.resolve())
            if first != path.resolve():
                problems.append(f"{path}: name '{template.name}' is also used by {first}; rename one")
    return problems


def _template_files(root: Path) -> list[Path]:
    """`*.j2` files under `root`, skipping folders whose name starts with `_` (shared partials)."""
    files = sorted(p for p in root.rglob("*.j2") if p.is_file())
    return [p for p in files if not any(d[0] == "_" for d in p.relative_to(root).parent.parts)]


def _index(root: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in _template_files(root):
        if path.stem in index:
            other = index[path.stem]
            raise TemplateError(f"{path}: name '{path.stem}' is also used by {other}; rename one")
        index[path.stem] = path
    return index


def _parse(path: Path) -> Template:
    if path.stat().st_size > MAX_TEMPLATE_BYTES:
        raise TemplateError(
            f"{path}: {path.stat().st_size:,} bytes, over the limit of {MAX_TEMPLATE_BYTES:,} for a template; "
            "check that this is a template file"
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TemplateError(f"{path}: not valid UTF-8 ({err.reason}); save it as UTF-8") from None
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip() != "---":
        raise TemplateError(f"{path}:1: missing front matter; start the file with a '---' line")
    end = next((i for i, line in enumerate(lines[1:], 1) if line.rstrip() == "---"), None)
    if end is None:
        raise TemplateError(f"{path}: front matter is not closed; add a '---' line before the body")
    meta = _front_matter(path, "".join(lines[1:end]))
    source, body_line = "".join(lines[end + 1 :]), end + 2
    try:
        ast = SANDBOX.parse(source)
        used = jinja2.meta.find_undeclared_variables(ast)  # nothing is evaluated: the sandbox folds no constants
    except jinja2.TemplateSyntaxError as err:
        line = err.lineno + body_line - 1
        raise TemplateError(f"{path}:{line}: Jinja syntax error: {err.message}") from None
    except RecursionError:
        raise TemplateError(f"{path}: the body nests brackets or blocks too deeply to parse; simplify it") from None
    declared = set(meta["inputs"])
    if used - declared:
        raise TemplateError(f"{path}: body uses undeclared variable {_names(used - declared)}; add it to 'inputs'")
    if declared - used:
        raise TemplateError(
            f"{path}: input {_names(declared - used)} is declared but the body never uses it; remove it from 'inputs'"
        )
    return Template(
        name=meta["name"], version=str(meta["version"]), kind=meta["kind"],
        inputs=tuple(meta["inputs"]), choices=tuple(meta["choices"]),
        description=meta["description"].strip(), chat=meta.get("chat", False),
        system=meta.get("system"), path=path, source=source,
        sha256=hashlib.sha256(raw).hexdigest(), body_line=body_line,
    )  # fmt: skip


def _names(names: Iterable[str]) -> str:
    return ", ".join(f"'{name}'" for name in sorted(names))


def _front_matter(path: Path, text: str) -> dict[str, Any]:
    """Parsed front matter with its keys checked; values are checked by `_check_values`."""
    try:
        meta = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 2}" if mark else str(path)  # +2: the '---' line, 1-based
        problem = getattr(err, "problem", None) or err
        raise TemplateError(f"{where}: front matter is not valid YAML ({problem})") from None
    allowed = REQUIRED_KEYS + OPTIONAL_KEYS
    if not isinstance(meta, dict):
        raise TemplateError(f"{path}: front matter must be a YAML mapping of {', '.join(allowed)}")
    for key in meta:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            did_you_mean = f"did you mean '{hint[0]}'? " if hint else ""
            raise TemplateError(
                f"{path}: unknown front-matter key '{key}'; {did_you_mean}allowed: {', '.join(allowed)}"
            )
    for key in REQUIRED_KEYS:
        if key not in meta:
            raise TemplateError(f"{path}: front matter lacks required key '{key}'; add it")
    _check_values(path, meta)
    return meta


def _check_values(path: Path, meta: dict[str, Any]) -> None:
    def bad(key: str, why: str) -> TemplateError:
        return TemplateError(f"{path}: front-matter key '{key}' is {meta[key]!r}; it {why}")

    if meta["name"] != path.stem:
        raise bad("name", f"must equal the file name '{path.stem}'; rename the file or the name")
    if isinstance(meta["version"], bool) or not isinstance(meta["version"], (str, int, float)):
        raise bad("version", 'must be a version string such as "1" or "1.2"')
    if meta["kind"] not in KINDS:
        raise bad("kind", f"must be one of: {', '.join(KINDS)}")
    inputs = meta["inputs"]
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise bad("inputs", "must be a list of variable names, e.g. [history, item]")
    if not all(i.isidentifier() for i in inputs):
        raise bad("inputs", "holds a name Jinja cannot use; use letters, digits and _ only")
    if len(set(inputs)) != len(inputs):
        raise bad("inputs", "lists a name twice; list each input once")
    choices = meta["choices"]
    texts = [c for c in choices if isinstance(c, str) and c] if isinstance(choices, list) else []
    if not isinstance(choices, list) or len(texts) != 2 or len(choices) != 2:
        raise bad("choices", 'must list exactly 2 non-empty strings, positive first: ["Yes", "No"]')
    if choices[0] == choices[1]:
        raise bad("choices", "must be 2 different strings, positive answer first")
    if not isinstance(meta["description"], str) or not meta["description"].strip():
        raise bad("description", "must be a non-empty string saying what the prompt shows")
    if not isinstance(meta.get("chat", False), bool):
        raise bad("chat", "must be true or false")
    if meta.get("system") is not None:
        if not isinstance(meta["system"], str) or not meta["system"].strip():
            raise bad("system", "must be a non-empty string")
        if not meta.get("chat", False):
            raise bad("system", "only applies to chat templates; set 'chat: true' or remove it")
