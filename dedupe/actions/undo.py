"""Reversing an apply run from its journal, complete or interrupted, never overwriting anything."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from .apply import move
from .journal import read


@dataclass
class UndoResult:
    restored: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    """(original path, why it was not restored)."""


def undo(journal_path: str | os.PathLike) -> UndoResult:
    """Put every moved file back where it was, last moved first, and note each in the journal.

    An operation the run only started is resolved from the disk: if the original is still there the
    move never happened. A file is not put back over something that appeared at its path since.
    """
    _header, records = read(journal_path)
    starts = {r["op"]: r for r in records if r.get("state") == "start"}
    finished = {r["op"] for r in records if r.get("state") == "done"}
    undone = {r["undone"] for r in records if "undone" in r}
    result = UndoResult()
    with open(journal_path, "a", encoding="utf-8", errors="backslashreplace") as log:
        for op in reversed(list(starts)):
            if op in undone:
                continue
            src, dst = starts[op]["move"], starts[op]["to"]
            if op not in finished and os.path.lexists(src):
                continue  # killed before the move: nothing to undo
            if not os.path.lexists(dst):
                result.refused.append((src, f"the moved file is no longer at {dst}"))
                continue
            if os.path.lexists(src):
                result.refused.append((src, "something has appeared at the original path since; not overwritten"))
                continue
            try:
                move(dst, src)
            except OSError as exc:
                result.refused.append((src, exc.strerror or str(exc)))
                continue
            result.restored.append(src)
            log.write(json.dumps({"undone": op}) + "\n")
            log.flush()
            os.fsync(log.fileno())
    return result
