"""Carrying out a plan: each group checked against the disk first, each operation journaled, undoable.

Only moving to a quarantine folder is implemented so far: it keeps each file's path relative to its
scan root, never overwrites (a name taken gets " (1)", " (2)"...), and works across file systems (copy,
fsync, check the size, then remove the original).
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..progress import CancelCheck, never
from .check import group_problems
from .journal import Journal


@dataclass
class ApplyResult:
    journal: Path
    moved: list[tuple[str, str]] = field(default_factory=list)
    """(original path, where it went)."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of operations that could not be done; the run went on."""
    skipped: list[tuple[int, list[str]]] = field(default_factory=list)
    """(group id, reasons) of groups left alone because they changed since the scan."""
    bytes_freed: int = 0
    interrupted: bool = False


def free_name(path: Path) -> Path:
    """`path`, or the first of 'name (1).ext', 'name (2).ext'... that does not exist."""
    n = 0
    candidate = path
    while os.path.lexists(candidate):
        n += 1
        candidate = path.with_name(f"{path.stem} ({n}){path.suffix}")
    return candidate


def move(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move a file to a path that does not exist, across file systems if need be; never overwrites."""
    src, dst = Path(src), Path(dst)
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, "destination exists", str(dst))
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # refuses to overwrite, unlike rename
        os.unlink(src)
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
    tmp = dst.with_name(f".{dst.name}.dedupe-partial")
    shutil.copy2(src, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    if os.path.getsize(tmp) != os.path.getsize(src):
        os.unlink(tmp)
        raise OSError(errno.EIO, "copy came out short", str(dst))
    os.link(tmp, dst)
    os.unlink(tmp)
    os.unlink(src)


def _root_of(path: str, roots: list[str]) -> str:
    matches = [r for r in roots if path == r or path.startswith(r.rstrip("/") + "/")]
    return max(matches, key=len)


def apply_plan(
    plan: dict, move_to: str | os.PathLike, journal_dir: Path | None = None, cancel: CancelCheck = never
) -> ApplyResult:
    """Move every file the plan removes into `move_to`, group by group, journaling each move.

    A group with any file changed since the scan, or a file to remove that is the very file kept, is
    skipped whole. `cancel` is checked between operations, so a stop leaves the journal complete.
    """
    quarantine = Path(move_to).resolve()
    journal = Journal.create(
        journal_dir,
        {"action": "move", "quarantine": str(quarantine), "source": plan.get("source", ""), "roots": plan["roots"]},
    )
    result = ApplyResult(journal.path)
    try:
        for g in plan["groups"]:
            removals = [f for f in g["files"] if f["action"] == "remove"]
            if not removals:
                continue
            problems = group_problems(g)
            if problems:
                result.skipped.append((g["id"], problems))
                journal.write({"skipped": g["id"], "reasons": problems})
                continue
            for n, f in enumerate(removals):
                if cancel():
                    result.interrupted = True
                    return result
                src = f["path"]
                dst = free_name(quarantine / os.path.relpath(src, _root_of(src, plan["roots"])))
                op = f"{g['id']}.{n}"
                journal.write({"op": op, "state": "start", "move": src, "to": str(dst), "size": f["size"]})
                try:
                    move(src, dst)
                except OSError as exc:
                    result.failed.append((src, exc.strerror or str(exc)))
                    journal.write({"op": op, "state": "failed", "reason": exc.strerror or str(exc)})
                    continue
                journal.write({"op": op, "state": "done"})
                result.moved.append((src, str(dst)))
                result.bytes_freed += f["size"]
    finally:
        journal.close()
    return result
