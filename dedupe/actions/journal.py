"""The journal of an apply run: JSON lines, each flushed and fsynced before the next operation starts.

The first line describes the run; then, for each operation, an intent ("start") before it and "done"
after it. A run killed between the two leaves an intent that undo resolves by looking at the disk.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

JOURNAL_VERSION = 1


def default_dir() -> Path:
    """Where journals go unless told: the platform's per-user state folder."""
    from platformdirs import user_state_dir

    return Path(user_state_dir("dedupe")) / "journals"


class Journal:
    """An append-only, fsynced record of one run."""

    def __init__(self, path: Path, header: dict) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "x", encoding="utf-8", errors="backslashreplace")
        self.write({"journal_version": JOURNAL_VERSION, "started": _now(), **header})

    @classmethod
    def create(cls, folder: Path | None, header: dict) -> "Journal":
        folder = folder or default_dir()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        return cls(folder / f"apply-{stamp}.jsonl", header)

    def write(self, record: dict) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def read(path: str | os.PathLike) -> tuple[dict, list[dict]]:
    """(header, records) of a journal; a last line cut short by a kill is ignored."""
    if os.path.exists(path) and not os.path.isfile(path):  # a pipe would be waited on for ever
        raise ValueError(f"{path} is not a regular file")
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    records = []
    for n, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines) - 1:
                break
            raise ValueError(f"{path}: line {n + 1} is not JSON") from None
    if not records or not isinstance(records[0], dict) or records[0].get("journal_version") != JOURNAL_VERSION:
        raise ValueError(f"{path} is not a dedupe journal")
    for n, record in enumerate(records[1:], 2):
        if why := _malformed(record):
            raise ValueError(f"{path}: line {n}: {why}")
    return records[0], records[1:]


_START = {"op": str, "kind": str, "path": str, "size": int, "mtime_ns": int, "content_hash": str, "keeper": str}


def _malformed(record) -> str | None:
    """What a record lacks that undo relies on (every operation's intent carries the file's identity and
    keeper), in a few words; None when it is sound."""
    if not isinstance(record, dict):
        return "not a record"
    if "undone" in record:
        needs = {"undone": str}
    elif record.get("state") == "start":
        needs = _START
    else:
        needs = {"op": str} if "state" in record else {}
    for key, kind in needs.items():
        if type(record.get(key)) is not kind:
            return f"{key} must be {'a string' if kind is str else 'an integer'}, not {record.get(key)!r}"
    if not isinstance(record.get("to", ""), (str, type(None))):
        return f"to must be a path, not {record['to']!r}"
    return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
