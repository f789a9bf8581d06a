"""Reading and writing the project's files: one JSON reader, one atomic writer, one file hash.

A file that a killed process was writing must never look finished: text goes to a temporary file in
the same folder (same file system, so the rename is atomic), is flushed to disk, then replaces the
target. A JSON file that does not parse is an error naming the file, of the caller's error type, so
that each format owner reports its own kind of problem (``LayoutError``, ``RunError``, ...).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


class FileFormatError(ValueError):
    """A file that does not hold what it should (not JSON, not an object); the message names it."""


def read_json(
    path: str | Path,
    error: type[Exception] = FileFormatError,
    *,
    missing_ok: bool = False,
    expect: type | None = None,
) -> Any:
    """The JSON value of ``path``.

    Args:
        error: the exception raised (with the file's path in its message) when the file is not valid
            JSON or not UTF-8, or not of type ``expect``.
        missing_ok: return ``None`` for a file that does not exist (else ``FileNotFoundError``).
        expect: the type the top-level value must have (``dict`` for a summary or a manifest).
    """
    path = Path(path)
    if missing_ok and not path.exists():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{path}: not valid JSON ({err})") from None
    if expect is not None and not isinstance(value, expect):
        raise error(f"{path}: not a JSON {expect.__name__} (found {type(value).__name__})")
    return value


def json_text(value: Any) -> str:
    """The project's JSON file text: indented, UTF-8 characters kept, a final newline."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def write_json(path: str | Path, value: Any) -> Path:
    """Write ``value`` as JSON to ``path`` atomically (its folder created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json_text(value))
    return path


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically: a temporary file in its folder, then ``os.replace``."""
    path = Path(path)
    mode = _mode(path)
    descriptor, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # mkstemp makes it owner-only; these files are read by others (publish, eval)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def read_jsonl(path: str | Path, error: type[Exception] = FileFormatError) -> list[tuple[int, Any]]:
    """The JSON value of each non-blank line of ``path``, with its line number (from 1).

    A line that is not JSON, or a file that is not UTF-8, raises ``error`` naming the file and line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text ({err})") from None
    values = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values.append((number, json.loads(line)))
        except json.JSONDecodeError as err:
            raise error(f"{path}, line {number}: not valid JSON ({err})") from None
    return values
