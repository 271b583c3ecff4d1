"""Reversing an apply run from its journal, complete or interrupted, never overwriting anything."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..exact import content_hash_file
from .apply import move
from .journal import read


@dataclass
class UndoResult:
    restored: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    """(original path, why it was not restored)."""
    left: list[str] = field(default_factory=list)
    """Files in the quarantine that a move killed half way may have left, a whole copy of a file still in
    place: not removed, as another run's file of the same content looks the same."""


def _unlink_copy(path: str, keeper: str, content_hash: str, mtime_ns: int) -> None:
    """Replace the link at `path` by a copy of the keeper's content, which the scan found identical."""
    if content_hash_file(keeper) != content_hash:
        raise OSError(0, f"the kept file {keeper} no longer has the content to restore")
    tmp = Path(path).with_name(f".{Path(path).name}.dedupe-undo")
    shutil.copyfile(keeper, tmp)
    os.utime(tmp, ns=(mtime_ns, mtime_ns))
    os.replace(tmp, path)


def _drop_leftovers(start: dict) -> str | None:
    """What a move stopped half way (killed) left in the quarantine while its file stayed where it was:
    the partial copy (its name is the run's own), or another link to the file itself. A whole copy of
    its bytes stays, and is returned: another run may have quarantined a file of the same content there."""
    if start["kind"] != "move" or not start.get("to"):
        return None
    to = Path(start["to"])
    partial = to.with_name(f".{to.name}.dedupe-partial")
    if os.path.isfile(partial) and not os.path.islink(partial):
        partial.unlink()
    if os.path.isfile(to) and not os.path.islink(to):
        if os.path.samefile(to, start["path"]):
            to.unlink()
        elif content_hash_file(to) == start["content_hash"]:
            return str(to)
    return None


def _undo_one(start: dict, finished: bool, left: list[str]) -> tuple[bool, str | None]:
    """Reverse one operation: (whether a file was put back, why it could not be); a copy a killed move
    may have left goes to `left`."""
    kind, path = start["kind"], start["path"]
    if kind in ("hardlink", "symlink"):
        is_ours = (
            os.path.islink(path) and os.readlink(path) == start["keeper"]
            if kind == "symlink"
            else os.path.exists(path) and os.path.samefile(path, start["keeper"])
        )
        if not is_ours:
            return False, ("no longer the link that was made; left as it is" if finished else None)
        _unlink_copy(path, start["keeper"], start["content_hash"], start["mtime_ns"])
        return True, None
    if not finished and os.path.lexists(path):  # stopped before the file went
        if (copy := _drop_leftovers(start)) is not None:
            left.append(copy)
        return False, None
    if kind == "delete":
        return False, "deleted permanently; cannot be restored"
    where = start.get("to")
    if kind == "trash" and not where:
        return False, "sent to the system trash; restore it from there"
    if not where or not os.path.lexists(where):
        return False, f"the file is no longer at {where}"
    if os.path.lexists(path):
        return False, "something has appeared at the original path since; not overwritten"
    same = os.path.isfile(where) and not os.path.islink(where) and os.path.getsize(where) == start["size"]
    if not same or content_hash_file(where) != start["content_hash"]:  # another run's file under a freed name
        return False, f"the file at {where} is not the one moved there; left as it is"
    move(where, path)
    if kind == "trash":
        info = Path(where).parent.parent / "info" / (Path(where).name + ".trashinfo")
        info.unlink(missing_ok=True)
    return True, None


def undo(journal_path: str | os.PathLike) -> UndoResult:
    """Put every file back as it was, last operation first, and note each in the journal.

    An operation the run only started is resolved from the disk: if the original is still there it
    never happened. Nothing that appeared at a path since is overwritten.
    """
    _header, records = read(journal_path)
    starts = {r["op"]: r for r in records if r.get("state") == "start"}
    finished = {r["op"]: r for r in records if r.get("state") == "done"}
    undone = {r["undone"] for r in records if "undone" in r}
    result = UndoResult()
    with open(journal_path, "a", encoding="utf-8", errors="backslashreplace") as log:
        for op in reversed(list(starts)):
            if op in undone:
                continue
            start = {**starts[op], **{k: v for k, v in finished.get(op, {}).items() if k == "to" and v}}
            try:
                restored, why = _undo_one(start, op in finished, result.left)
            except OSError as exc:
                restored, why = False, exc.strerror or str(exc)
            if why:
                result.refused.append((start["path"], why))
                continue
            if restored:
                result.restored.append(start["path"])
            log.write(json.dumps({"undone": op}) + "\n")
            log.flush()
            os.fsync(log.fileno())
    return result
