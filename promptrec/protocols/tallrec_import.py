"""TALLRec's published instruction files, imported as structured examples (protocol `tallrec-import`).

TALLRec released its data as Alpaca-style JSON: a list of {instruction, input, output} records
with output "Yes." or "No." and an input of three lines, for any kind of item:

    User Preference: "Heat (1995)", "Birdcage, The (1996)"
    User Unpreference: "Twister (1996)"
    Whether the user will like the target movie "Fargo (1996)"?

Its book files name the author after each title (`"Sula" written by Toni Morrison`) and quote the
target once more (`""Sula" written by Toni Morrison"`). `import_tallrec` turns each record into the
shape the other protocols write (`history` items with `title`, `liked` and `author` when given,
`item`, `label`) and keeps `instruction` and `input`, so structured templates and `alpaca` both
render it. The files list liked items before disliked ones and carry no times, so `history` is
in that order, not in time order; `stats` holds only what the prompt itself shows.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from promptrec import __version__
from promptrec.core.errors import DataError
from promptrec.core.files import file_sha256
from promptrec.protocols.splits import load_alpaca, write_prepared

PROTOCOL = "tallrec-import"


INPUT = re.compile(
    r"User Preference:(?P<liked>.*)\nUser Unpreference:(?P<disliked>.*)\n"
    r'Whether the user will like the target [^"\n]+ (?P<target>".*")\?\s*\Z'
)


# One quoted title, maybe with its author, ending where the next `, "` or the list ends. The title
# may itself hold quotes (TALLRec copied some as `\It\"`), so it ends at the first quote followed by
# a boundary; authors may hold commas ("Philippa Einzig, Susan Pearce") but never `, "`.
ITEM = re.compile(r'"(?P<title>.*?)"(?: written by (?P<author>.*?))?(?=, "|\Z)')


INPUT_FORMAT = (
    'TALLRec inputs read \'User Preference: "A", "B"\\nUser Unpreference: "C"\\n'
    'Whether the user will like the target movie "D"?\''
)


class _ParseError(ValueError):
    """What is wrong with one input text; `tallrec_examples` adds the file and record."""


def import_tallrec(paths: dict[str, Path], out_dir) -> dict:
    """Parse TALLRec files ({split: path}) and write them as one prepared dir; return the manifest.

    Every file is parsed before anything is written, and the write replaces `out_dir` atomically,
    so a malformed record leaves `out_dir` as it was.
    """
    splits = {split: tallrec_examples(Path(path), split) for split, path in paths.items()}
    protocol = {
        "name": PROTOCOL,
        "parameters": {},
        # keyed by split: TALLRec names every domain's files train/valid/test.json
        "sources": {split: {"file": Path(path).name, "sha256": file_sha256(path)} for split, path in paths.items()},
        "promptrec_version": __version__,
    }
    manifest_path = write_prepared(splits, out_dir, protocol)
    return json.loads(manifest_path.read_text(encoding="utf-8"))


def tallrec_examples(path: Path, split: str) -> list[dict]:
    """The structured examples of one TALLRec file, ids `<split>-<record index>`."""
    records = load_alpaca(path)
    if not records:
        raise DataError(f"{path}: holds no records; pass a TALLRec file with at least one")
    examples = []
    for index, record in enumerate(records):
        try:
            examples.append(_example(record, f"{split}-{index:05d}"))
        except _ParseError as err:
            raise DataError(f"{path}: record {index} (0-based): {err}") from None
    return examples


def _example(record: dict, example_id: str) -> dict:
    text = record["input"]
    if not isinstance(text, str):
        raise _ParseError(f"'input' must be a string, got {type(text).__name__}; {INPUT_FORMAT}")
    match = INPUT.match(text)
    if match is None:
        raise _ParseError(f"'input' is not in TALLRec's format ({text[:40]!r}...); {INPUT_FORMAT}")
    liked = [item | {"liked": True} for item in _items(match["liked"], "User Preference")]
    disliked = [item | {"liked": False} for item in _items(match["disliked"], "User Unpreference")]
    num_shown = len(liked) + len(disliked)
    return {
        "example_id": example_id,
        "label": record["label"],
        "instruction": record["instruction"],
        "input": text,
        "item": _target(match["target"]),
        "history": liked + disliked,
        "stats": {
            "history_like_fraction": round(len(liked) / num_shown, 4) if num_shown else None,
            "history_num_liked": len(liked),
            "history_num_shown": num_shown,
        },
    }


def _items(text: str, field: str) -> list[dict]:
    """The quoted items of one comma-separated list (empty text: no items)."""
    text = text.strip()
    items, position = [], 0
    while position < len(text):
        match = ITEM.match(text, position)
        if match is None:
            shown = repr(text[position : position + 40])
            if text[position] == '"':
                raise _ParseError(f"{field}: unterminated quote at {shown}; close every title with '\"'")
            raise _ParseError(f'{field}: expected a quoted title at {shown}; TALLRec quotes each title ("Title")')
        items.append({key: value for key, value in match.groupdict().items() if value is not None})
        position = match.end() + 2  # past the ", " the lookahead saw (or past the end)
    return items


def _target(quoted: str) -> dict:
    """The target item: book files wrap `"Title" written by Author` in one more pair of quotes."""
    for text in (quoted[1:-1], quoted):
        try:
            items = _items(text, "target")
        except _ParseError:
            continue
        if len(items) == 1 and (text == quoted or "author" in items[0]):
            return items[0]
    raise _ParseError(f"target: expected one quoted title, got {quoted[:60]!r}; {INPUT_FORMAT}")
