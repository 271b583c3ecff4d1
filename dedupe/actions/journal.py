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
    if not records or records[0].get("journal_version") != JOURNAL_VERSION:
        raise ValueError(f"{path} is not a dedupe journal")
    return records[0], records[1:]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
