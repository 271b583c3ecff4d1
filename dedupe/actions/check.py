"""Before a group is touched: is every file still the one the scan saw? Read-only."""

from __future__ import annotations

import os


def why_changed(f: dict) -> str | None:
    """None when the file at f["path"] is still what the scan recorded (size, mtime_ns, device, inode),
    else the reason in a few words. A symbolic link standing at the path is never acted on: removing
    or moving it frees nothing, and the reason says whether the scan followed it or it came since."""
    try:
        st = os.lstat(f["path"])
    except FileNotFoundError:
        return "no longer there"
    except OSError as exc:
        return f"cannot be checked: {exc.strerror or exc}"
    if os.path.islink(f["path"]):
        try:
            target = os.stat(f["path"])
        except OSError:
            return "now a broken symbolic link"
        if (target.st_dev, target.st_ino, target.st_size) == (f["device"], f["inode"], f["size"]):
            return "a symbolic link the scan followed (--follow-symlinks): links are never acted on"
        return "now a symbolic link"
    if not os.path.isfile(f["path"]):
        return "no longer a regular file"
    if st.st_size != f["size"]:
        return f"size changed ({f['size']:,} -> {st.st_size:,} bytes)"
    if st.st_mtime_ns != f["mtime_ns"]:
        return "modified since the scan"
    if (st.st_dev, st.st_ino) != (f["device"], f["inode"]):
        return "replaced by another file since the scan"
    return None


def real_roots(plan: dict) -> list[str]:
    """The plan's scan roots as real paths, for group_problems."""
    return [os.path.join(os.path.realpath(r), "") for r in plan["roots"]]


def group_problems(group: dict, roots: list[str]) -> list[str]:
    """Why the group must be skipped whole: any file changed, a file to remove that lies outside the
    real scan `roots` (real_roots: a folder link the scan followed led out of them), or one that is the
    very same file (one inode, two paths) as a file to keep, whose removal would lose the picture."""
    out = []
    for f in group["files"]:
        if why := why_changed(f):
            out.append(f"{f['path']}: {why}")
        elif f["action"] == "remove" and not (os.path.realpath(f["path"]) + os.sep).startswith(tuple(roots)):
            out.append(f"{f['path']}: reached through a folder link the scan followed, outside the scan roots")
    kept = {(f["device"], f["inode"]) for f in group["files"] if f["action"] == "keep"}
    for f in group["files"]:
        if f["action"] == "remove" and (f["device"], f["inode"]) in kept:
            out.append(f"{f['path']}: the same file as a copy being kept")
    return out


def keeper_of(group: dict) -> dict:
    """The file a group keeps for the others: its keeper, or the first file kept."""
    kept = [f for f in group["files"] if f["action"] == "keep"]
    return next((f for f in kept if f["relation"] == "keeper"), kept[0])


def skip_reasons(group: dict, removals: list[dict], roots: list[str], rehash: bool) -> list[str]:
    """Why a group is left whole, as apply and its dry run both judge it: group_problems, then, with
    `rehash` (--paranoid, links), the keeper or a file to remove whose content no longer hashes as
    scanned though its size and times are unchanged. Near copies too: one rewritten in place with
    another picture, its times put back, was the only copy of that picture."""
    from ..exact import content_hash_file

    problems = group_problems(group, roots)
    if problems or not rehash:
        return problems
    return [
        f"{f['path']}: content changed since the scan"
        for f in [keeper_of(group), *removals]
        if content_hash_file(f["path"]) != f["content_hash"]
    ]
