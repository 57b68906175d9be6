"""Files in and out: tolerant line readers, one atomic writer, one overwrite rule, checksums.

Reading: `raw_lines` gives each line's bytes (gunzipped when the file starts with gzip's magic),
`text_lines` the non-blank UTF-8 lines, `json_object` one line parsed as a JSON object; every bad line
goes to a `LineErrors`, which fails the load with a `DataError` naming file and line when the file is
not this format at all or has too many bad lines; `read_jsonl` streams the JSON-lines files we write.
Writing: `write_json` and friends write a temporary file and rename it, so a crash never leaves a torn
file; `atomic_dir` does the same for a whole directory; `refuse_overwrite` is the one rule for finished
outputs and `check_writable` checks an output before long work. `cache_dir` is promptrec's own cache,
where `known_file_sha256` remembers the checksums of big files.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import secrets
import shutil
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from promptrec.core.errors import ConfigError, DataError


def refuse_overwrite(out: Path, marker: str, overwrite: bool, what: str = "a finished run") -> None:
    """Finished outputs are never silently replaced: a rerun into the same dir must say so."""
    if (out / marker).exists() and not overwrite:
        raise ConfigError(f"{out} already holds {what} ({marker}); pass --overwrite or choose another --out")


def read_text(path: Path, encoding: str = "utf-8") -> str:
    name = "UTF-8" if encoding in ("utf-8", "utf-8-sig") else encoding  # -sig only means "a BOM may start it"
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the path") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory; pass the file itself") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid {name} (byte {err.start}); re-save the file as {name}") from None


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


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_writable(path: Path, kind: str) -> None:
    """Before any long work: can `path` (a `kind` "file" or "dir" output) be written? One-line error if not."""
    path = Path(path)
    if kind == "file" and path.is_dir():
        raise DataError(f"{path} is a directory; pass a file path for this output")
    if kind == "dir" and path.exists() and not path.is_dir():
        raise DataError(f"{path} is a file; pass a directory for this output")
    existing = path if kind == "dir" and path.is_dir() else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(
            f"{existing} is not writable, so {path} cannot be written; choose another --out or fix permissions"
        )


def known_file_sha256(path) -> str:
    """`file_sha256`, remembered under the cache dir per (path, size, mtime, ctime, inode): a big file that has
    not changed is not read again. Any write changes its ctime, which no tool can set back, so a stale entry
    cannot match. A cache that cannot be written only costs the next call a full read."""
    path = Path(path).resolve()
    stat = path.stat()
    stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
    entry = cache_dir() / "sha256" / f"{hashlib.sha256(str(path).encode()).hexdigest()}.json"
    try:
        known = json.loads(entry.read_text(encoding="utf-8"))
        if known.get("stat") == stamp:
            return known["sha256"]
    except (OSError, ValueError, AttributeError, KeyError):
        pass
    digest = file_sha256(path)
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_json(entry, {"path": str(path), "stat": stamp, "sha256": digest})
    except OSError:
        pass
    return digest


def read_jsonl(path: Path, fix: str) -> Iterator[tuple[int, dict]]:
    """(1-based line number, object) of every non-blank line of a JSON-lines file we or the user wrote.

    The one reader of such files: a line that is not a JSON object is a `DataError` naming the file,
    the line and `fix` (what to do about it).
    """
    for line_no, _, record in read_jsonl_lines(path, fix):
        yield line_no, record


def read_jsonl_lines(path: Path, fix: str) -> Iterator[tuple[int, str, dict]]:
    """`read_jsonl` with each line's text too (what the object was parsed from), streamed line by line.

    Lines end at b"\n" only, as `str.split("\n")` would cut them, so a stray "\r" stays inside its line.
    """
    offset = 0  # bytes before this line, so a decoding error names its byte in the file
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the path") from None
    with handle:
        for line_no, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(
                    f"{path}: not valid utf-8 (byte {offset + err.start}); re-save the file as utf-8"
                ) from None
            offset += len(raw)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{line_no}: invalid JSON ({err.msg}); {fix}") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}; {fix}")
            yield line_no, line.rstrip("\n"), record


def cache_dir() -> Path:
    """promptrec's own cache (converted GGUF models, Arrow copies of splits): $PROMPTREC_CACHE or ~/.cache/promptrec."""
    return Path(os.environ.get("PROMPTREC_CACHE", Path.home() / ".cache" / "promptrec"))


def write_lines_atomic(path: str | Path, lines: Iterable[str]) -> None:
    """The one atomic writer: lines go to a temporary sibling, which is fsynced and renamed over `path`.

    A crash mid-write never leaves a truncated file behind; readers see the old file or the new one.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_lines_atomic(path, [text])


def write_jsonl(path: str | Path, rows: Iterable[dict], **dumps) -> None:
    """JSON lines, one object per row, atomically (`dumps` go to json.dumps, e.g. sort_keys=True)."""
    write_lines_atomic(path, (json.dumps(row, **dumps) + "\n" for row in rows))


def write_json(path: str | Path, data: dict) -> None:
    """A JSON record, atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


@contextmanager
def atomic_dir(out: Path) -> Iterator[Path]:
    """Yield an empty temporary sibling of `out` to fill; it replaces `out` only if the block finishes.

    On any error the temporary dir is removed and `out` is left as it was. The swap is two renames
    (old `out` aside, new one in), so only a crash between them can leave `out` missing, with the
    old contents intact in a hidden `.<name>.old-*` sibling.
    """
    out = Path(os.path.abspath(out))  # "." and "a/.." have no name to build siblings from
    out.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = out.with_name(f".{out.name}.tmp-{tag}")
    tmp.mkdir()  # not tempfile.mkdtemp: its 0700 mode would outlive the rename
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not out.exists():
        tmp.rename(out)
        return
    old = out.with_name(f".{out.name}.old-{tag}")
    out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        old.rename(out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old)
