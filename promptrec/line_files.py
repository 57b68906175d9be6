"""Line-oriented data files read tolerantly: gzip by its magic bytes, bad lines counted, not fatal.

`raw_lines` gives each line's bytes (gunzipped when the file starts with gzip's magic; a .gz name
without it is an error), `text_lines` the non-blank UTF-8 lines, `json_object` one line parsed as a
JSON object.
Every bad line goes to a `LineErrors`, which names the first few and fails the load with a
`DataError` naming file and line when the first record is bad (the file is not this format at all),
when more than max(MAX_BAD_LINES, MAX_BAD_FRACTION of the lines) are bad, or when a gzip file is
truncated or corrupt. What a line must hold is the caller's: the Amazon loader (`promptrec.amazon`)
decides which keys are required and which repairs are made.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

from promptrec.errors import DataError

MAX_BAD_LINES = 10  # bad lines tolerated in any file ...
MAX_BAD_FRACTION = 0.01  # ... or this fraction of its lines, whichever is larger
_GZIP_MAGIC = b"\x1f\x8b"


def raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, bytes) of every line, gunzipped when the file starts with gzip's magic."""
    try:
        with open(path, "rb") as handle:
            is_gzip = handle.read(2) == _GZIP_MAGIC
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the path") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory; pass the file itself") from None
    if path.suffix == ".gz" and not is_gzip:
        raise DataError(f"{path}: named .gz but not a gzip file; download it again or rename it")
    line_no = 0
    try:
        with gzip.open(path, "rb") if is_gzip else open(path, "rb") as handle:
            for line_no, line in enumerate(handle, 1):
                yield line_no, line
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{path}:{line_no + 1}: unreadable gzip data ({err}); the file is truncated or corrupt, download it again"
        ) from None


class LineErrors:
    """Counts bad lines of one file and enforces the tolerance described in the module docstring."""

    def __init__(self, path: Path, hint: str):
        self.path, self.hint = path, hint
        self.examples: list[str] = []
        self.count = 0
        self.lines = 0
        self.records = 0

    def bad(self, line_no: int, reason: str) -> None:
        if self.records == 0:  # nothing good came before: the file is not this format at all
            raise DataError(f"{self.path}:{line_no}: {reason}; {self.hint}")
        self.count += 1
        if len(self.examples) < 5:
            self.examples.append(f"line {line_no}: {reason}")

    def check(self) -> None:
        if self.records == 0:
            raise DataError(f"{self.path}: no records; {self.hint}")
        if self.count > max(MAX_BAD_LINES, MAX_BAD_FRACTION * self.lines):
            raise DataError(
                f"{self.path}: {self.count} of {self.lines} lines are malformed ({self.examples[0]}); "
                f"fix the file or download it again"
            )


def text_lines(path: Path, errors: LineErrors) -> Iterator[tuple[int, str]]:
    for line_no, raw in raw_lines(path):
        errors.lines = line_no
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError as err:
            errors.bad(line_no, f"not valid UTF-8 (byte {err.start})")
            continue
        if text:
            yield line_no, text


def json_object(line_no: int, text: str, errors: LineErrors) -> dict | None:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        errors.bad(line_no, f"invalid JSON ({err.msg})")
        return None
    if not isinstance(record, dict):
        errors.bad(line_no, f"expected a JSON object, got {type(record).__name__}")
        return None
    return record
