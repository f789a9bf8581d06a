"""Writing a run folder's files so that a reader sees the old file or the new one, never half of one.

A run killed while it writes ``manifest.json`` or ``adapter_config.json`` must not leave a truncated
file that looks finished: the text goes to a temporary file in the same folder (same file system,
so the rename is atomic), is flushed to disk, then replaces the target.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


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
        os.chmod(tmp, mode)  # mkstemp makes it owner-only; a run folder is read by others (publish, eval)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
