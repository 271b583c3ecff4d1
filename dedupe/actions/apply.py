"""Carrying out a plan: each group checked against the disk first, each operation journaled, undoable.

Actions: move to a quarantine folder (path relative to its scan root kept, never overwriting, across
file systems), the platform trash (send2trash; a trash that cannot take a file stops the run instead of
pretending), a hard or symbolic link to the keeper in place of a byte-identical copy (made under a
temporary name and renamed over it, so the path is never missing), and permanent deletion.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..progress import CancelCheck, never
from .check import keeper_of, real_roots, skip_reasons
from .journal import Journal
from .plan import PlanError, check_plan, check_quarantine

ACTIONS = ("move", "trash", "hardlink", "symlink", "delete")
LINKS = ("hardlink", "symlink")


class TrashUnavailable(RuntimeError):
    """The platform trash cannot take a file (another file system without a trash folder, ...)."""


@dataclass
class ApplyResult:
    journal: Path
    done: list[tuple[str, str]] = field(default_factory=list)
    """(path, what happened to it: where it went, or what it links to)."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of operations that could not be done; the run went on."""
    skipped: list[tuple[int, list[str]]] = field(default_factory=list)
    """(group id, reasons) of groups left alone because they changed since the scan."""
    bytes_freed: int = 0
    interrupted: bool = False
    stopped: str | None = None
    """Why the run stopped before the end (the trash could not take a file)."""


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


def _quarantined(path: str, roots: list[str], quarantine: Path) -> Path:
    """Where a file goes: under its path relative to its scan root, or under its own name when the root is
    the file itself (relative to itself a file is '.', the quarantine folder itself)."""
    root = _root_of(path, roots)
    return free_name(quarantine / (os.path.relpath(path, root) if path != root else os.path.basename(path)))


def _replace_with_link(path: str, keeper: str, kind: str) -> None:
    """Put a link to `keeper` at `path`: made under a temporary name beside it, then renamed over it."""
    tmp = Path(path).with_name(f".{Path(path).name}.dedupe-link")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    if kind == "hardlink":
        os.link(keeper, tmp)
    else:
        os.symlink(keeper, tmp)
    os.replace(tmp, path)


def _trash(path: str) -> str | None:
    """Send a file to the platform trash; where it went when that can be found (freedesktop trash)."""
    from send2trash import send2trash
    from send2trash.exceptions import TrashPermissionError

    try:
        send2trash(path)
    except TrashPermissionError as exc:
        raise TrashUnavailable(f"the trash cannot take {path}: {exc}") from None
    except OSError as exc:
        if os.path.lexists(path):
            raise TrashUnavailable(f"the trash cannot take {path}: {exc.strerror or exc}") from None
        raise
    return trashed_location(path)


def trashed_location(original: str) -> str | None:
    """The newest file in a freedesktop trash whose .trashinfo names `original`, or None."""
    from urllib.parse import unquote

    home = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "Trash"
    found = []
    mount = Path(original).parent
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    for trash in (home, mount / ".Trash" / str(os.getuid()), mount / f".Trash-{os.getuid()}"):
        info_dir = trash / "info"
        if not info_dir.is_dir():
            continue
        for info in info_dir.glob("*.trashinfo"):
            try:
                lines = info.read_text("utf-8", "surrogateescape").splitlines()
            except OSError:
                continue
            named = next((unquote(x[5:]) for x in lines if x.startswith("Path=")), None)
            if named is not None and (named == original or str(trash.parent / named) == original):
                found.append((info.stat().st_mtime_ns, str(trash / "files" / info.name[: -len(".trashinfo")])))
    return max(found)[1] if found else None


def apply_plan(
    plan: dict,
    action: str,
    target: str | os.PathLike | None = None,
    journal_dir: Path | None = None,
    cancel: CancelCheck = never,
    paranoid: bool = False,
) -> ApplyResult:
    """Carry out `action` on every file the plan removes, group by group, journaling each operation; the
    whole plan is checked first (PlanError, see check_plan), so that no group acts on a file another keeps.

    `target` is the quarantine folder for "move" (PlanError if it is a file, or is, lies in or holds a scan
    root: see check_quarantine). Links replace only byte-identical copies of the keeper (others stay). A
    group with any file changed since the scan, a file to remove that is the very file kept, or (with
    `paranoid`) content that no longer hashes as scanned, is skipped whole. `cancel` is checked between
    operations, so a stop leaves the journal complete.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    check_plan(plan)
    roots = real_roots(plan)
    if action == "move":
        check_quarantine(plan, target)
    quarantine = Path(target).resolve() if action == "move" else None
    if quarantine is not None:  # marked, so that a later scan of a tree that holds it skips it
        from ..walk import QUARANTINE_MARKER  # here: undo imports this module, and the walk numpy

        try:
            quarantine.mkdir(parents=True, exist_ok=True)
            marker = quarantine / QUARANTINE_MARKER
            if not marker.exists():
                marker.write_text("Files dedupe apply --move-to set aside; dedupe scan skips this folder.\n")
        except OSError as exc:  # nothing could be moved there
            raise PlanError(f"--move-to {target}: cannot write there ({exc.strerror or exc})") from None
    journal = Journal.create(
        journal_dir,
        {
            "action": action,
            "quarantine": str(quarantine or ""),
            "source": plan.get("source", ""),
            "roots": plan["roots"],
        },
    )
    result = ApplyResult(journal.path)
    try:
        for g in plan["groups"]:
            removals = [f for f in g["files"] if f["action"] == "remove"]
            if action in LINKS:
                removals = [f for f in removals if f["relation"] == "exact"]
            if not removals:
                continue
            keeper = keeper_of(g)
            problems = skip_reasons(g, removals, roots, paranoid or action in LINKS)
            if problems:
                result.skipped.append((g["id"], problems))
                journal.write({"skipped": g["id"], "reasons": problems})
                continue
            for n, f in enumerate(removals):
                if cancel():
                    result.interrupted = True
                    return result
                src = f["path"]
                record = {
                    "op": f"{g['id']}.{n}",
                    "kind": action,
                    "path": src,
                    "size": f["size"],
                    "mtime_ns": f["mtime_ns"],
                    "content_hash": f["content_hash"],
                    "keeper": keeper["path"],
                }
                if quarantine is not None:
                    record["to"] = str(_quarantined(src, plan["roots"], quarantine))
                journal.write({**record, "state": "start"})
                try:
                    outcome = _do(action, src, record)
                except TrashUnavailable as exc:
                    result.stopped = str(exc)
                    journal.write({"op": record["op"], "state": "failed", "reason": str(exc)})
                    return result
                except OSError as exc:
                    result.failed.append((src, exc.strerror or str(exc)))
                    journal.write({"op": record["op"], "state": "failed", "reason": exc.strerror or str(exc)})
                    continue
                journal.write(
                    {"op": record["op"], "state": "done", **({"to": record["trashed"]} if action == "trash" else {})}
                )
                result.done.append((src, outcome or ""))
                result.bytes_freed += f["size"]
    finally:
        journal.close()
    return result


def _do(action: str, src: str, record: dict) -> str | None:
    """One operation; what became of the file, in words for the summary (or the trash location)."""
    if action == "move":
        move(src, record["to"])
        return record["to"]
    if action == "trash":
        record["trashed"] = _trash(src)
        return record["trashed"] or "the trash"
    if action in LINKS:
        _replace_with_link(src, record["keeper"], action)
        return f"{action} to {record['keeper']}"
    os.unlink(src)
    return "deleted"
