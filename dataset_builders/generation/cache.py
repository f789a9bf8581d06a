"""The response cache: one SQLite file (WAL), keyed by model, prompt version, parameters and input.

Every answer is committed before the caller uses it, so a run killed at any point resumes where it
stopped and never pays twice for an answer it has received. WAL mode and a busy timeout let several
processes (datatrove tasks, a second run) read and write the same file. Failed requests are not
cached (nothing was paid for them); a bad answer is (it was paid for, and the checks reject it the
same way every time).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    params TEXT NOT NULL,
    input_hash TEXT NOT NULL,
    response TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
) WITHOUT ROWID
"""


def input_hash(messages: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(messages, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def cache_key(model: str, prompt_version: str, params: dict[str, Any], in_hash: str) -> str:
    blob = json.dumps([model, prompt_version, params, in_hash], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=60, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA busy_timeout=60000")
        # Several tasks open one cache at once. Switching a new file to WAL takes an exclusive lock and
        # SQLite may answer "database is locked" at once rather than wait (seen under load in the
        # demo build): retry for up to a minute.
        for attempt in range(600):
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL mode: a commit survives a killed process (only a power cut can lose the last ones).
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.execute(SCHEMA)
                break
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or attempt == 599:
                    raise
                time.sleep(0.1)

    def get(self, key: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT response, prompt_tokens, completion_tokens FROM responses WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        return {"response": row[0], "prompt_tokens": row[1], "completion_tokens": row[2]}

    def contains_many(self, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                k for (k,) in self.db.execute(f"SELECT key FROM responses WHERE key IN ({marks})", chunk)
            )
        return found

    def put(
        self,
        key: str,
        *,
        model: str,
        prompt_version: str,
        params: dict[str, Any],
        in_hash: str,
        response: str,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        """Write one answer and commit it (autocommit) before returning."""
        self.db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                model,
                prompt_version,
                json.dumps(params, sort_keys=True),
                in_hash,
                response,
                prompt_tokens,
                completion_tokens,
                time.time(),
            ),
        )

    def put_many(self, rows: Iterable[dict[str, Any]]) -> int:
        """Load entries (``dump`` rows) in one transaction, keeping answers already present."""
        count = 0
        self.db.execute("BEGIN IMMEDIATE")  # take the write lock now (waiting for it), not mid-transaction
        try:
            for row in rows:
                params = row["params"]
                key = cache_key(row["model"], row["prompt_version"], params, row["input_hash"])
                if row.get("key") and row["key"] != key:
                    raise ValueError(
                        f"cache entry {row['key']}: its key does not match its model/prompt/params/input"
                    )
                response = row["response"]
                if not isinstance(response, str):
                    response = json.dumps(response, ensure_ascii=False)
                self.db.execute(
                    "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        row["model"],
                        row["prompt_version"],
                        json.dumps(params, sort_keys=True),
                        row["input_hash"],
                        response,
                        row.get("prompt_tokens", 0),
                        row.get("completion_tokens", 0),
                        time.time(),
                    ),
                )
                count += 1
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return count

    def load_jsonl(self, path: str | Path) -> int:
        """Load a diffable JSONL export (one entry per line) into the cache."""
        path = Path(path)

        def rows() -> Iterator[dict[str, Any]]:
            with path.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        try:
                            yield json.loads(line)
                        except json.JSONDecodeError as err:
                            raise ValueError(f"{path}:{number}: not valid JSON ({err.msg})") from err

        return self.put_many(rows())

    def dump(self) -> Iterator[dict[str, Any]]:
        for key, model, version, params, in_hash, response, pt, ct, _ in self.db.execute(
            "SELECT * FROM responses ORDER BY key"
        ):
            yield {
                "key": key,
                "model": model,
                "prompt_version": version,
                "params": json.loads(params),
                "input_hash": in_hash,
                "response": response,
                "prompt_tokens": pt,
                "completion_tokens": ct,
            }

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self.db.close()
