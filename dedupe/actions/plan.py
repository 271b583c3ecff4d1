"""Which files go: a report (or an edited plan) -> a checked plan. Reads no file: it only asks the disk
where paths lead (reference and quarantine folders are compared by real path) and whether folders exist.

A plan is JSON (PLAN_VERSION) that a person or the HTML review may edit:

    {"plan_version": 1, "roots": ["/photos"], "source": "dupes.json",
     "groups": [{"id": 1, "kind": "near",
                 "files": [{"path": "/photos/a.jpg", "action": "keep", "relation": "keeper", "size": 123,
                            "mtime_ns": 0, "device": 1, "inode": 2, "content_hash": "..."}, ...]}]}

`action` is "keep" or "remove"; the identity fields are those recorded at scan time, which apply checks
again before touching anything. `relation` is said against the file marked "keeper", which is kept:
"exact" only for its byte-identical copies (the only files --hardlink and --symlink replace).
A group may carry a `decision` (the HTML review writes it; `dedupe decide` and `dedupe apply` remember
it in the cache, see dedupe.decisions): "not_duplicates" or "keep_all", with every file kept, or
"forget", which drops the remembered decisions that cover the group. A plan never removes every file
of a group, never touches a file under a reference folder (by real path), and names only files under
the report's scan roots, each in one group only. Other keys (the review adds "report_id") are ignored.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import PurePath

from ..decisions import FORGET, KINDS
from ..report.jsonreport import ReportError, read_report

PLAN_VERSION = 1
_IDENTITY = ("size", "mtime_ns", "device", "inode", "content_hash")
_FIELDS = {"path": str, "size": int, "mtime_ns": int, "device": int, "inode": int, "content_hash": str}
_HASH = re.compile(r"[0-9a-f]{32}")


class PlanError(ValueError):
    """A plan that must not be carried out; the message says why, in one line."""


def _under(path: str, folders: list[str]) -> bool:
    p = PurePath(os.path.normpath(path))
    return any(p == PurePath(f) or PurePath(f) in p.parents for f in folders)


def _reference_folders(keep_in: list[str]) -> list[str]:
    """The real paths of the reference folders: a folder named through a symbolic link, or files found
    through one, must still be protected. A folder that is not there is refused: a typo protects nothing."""
    for f in keep_in:
        if not os.path.isdir(f):
            raise PlanError(f"--keep-in {f}: no such folder")
    return [os.path.realpath(f) for f in keep_in]


def _in_reference(path: str, refs: list[str]) -> bool:
    return bool(refs) and _under(os.path.realpath(path), refs)


def _rechoose(members: list[dict], rules: tuple[str, ...]) -> dict:
    """The keeper by other rules than the scan's, from what the report records of each member."""
    from ..group import Candidate, choose_keeper
    from ..model import FileRecord, ImageInfo

    cands = [
        Candidate(
            FileRecord(m["path"], m["root"], m["size"], m["mtime_ns"], m["device"], m["inode"], m["format"]),
            ImageInfo(
                m["width"],
                m["height"],
                m["format"],
                m["lossless"],
                m["width"] * m["height"],
                m["exif_date"],
                m["camera"],
                cut_short=m.get("cut_short", 0.0),
            ),
        )
        for m in members
    ]
    return members[choose_keeper(cands, rules)[0]]


def make_plan(
    report: dict,
    keep_in: list[str] = (),
    only: str | None = None,
    source: str = "",
    keeper_rules: tuple[str, ...] | None = None,
) -> dict:
    """The plan a report proposes: every member but the keeper goes, with these changes:

    - `keeper_rules`: the keeper is chosen again by these rules (see Settings.keeper_rules);
    - `keep_in` (reference folders): nothing under them goes, and a member under one becomes the keeper
      (when that one looks cut short, the best whole copy stays too);
    - `only="exact"` removes only byte-identical copies of the keeper, `only="near"` only the others;
    - a group a remembered decision covers (reported with ignore_decisions) keeps every file, and carries
      the decision, so that acting on a report never overrides what a person decided.
    """
    if only not in (None, "exact", "near"):
        raise PlanError(f"--only takes exact or near, not {only!r}")
    _check_report(report)
    refs = _reference_folders(keep_in)
    groups = []
    for g in report["groups"]:
        members = g["members"]
        keeper = next(m for m in members if m["relation"] == "keeper")
        if keeper_rules:
            keeper = _rechoose(members, keeper_rules)
        in_ref = [m for m in members if _in_reference(m["path"], refs)]
        if in_ref and keeper not in in_ref:
            keeper = in_ref[0]  # members are listed keeper first, then by path
        whole = next((m for m in members if not m.get("cut_short")), None)
        spared = whole if keeper.get("cut_short") else None  # a damaged reference copy keeps a whole one
        files = []
        for m in members:
            byte_identical = m["content_hash"] == keeper["content_hash"]
            goes = m is not keeper and m is not spared and not _in_reference(m["path"], refs)
            goes = goes and not g.get("decision")
            if only == "exact":
                goes = goes and byte_identical
            elif only == "near":
                goes = goes and not byte_identical
            files.append(
                {
                    "path": m["path"],
                    "action": "remove" if goes else "keep",
                    "relation": "keeper" if m is keeper else ("exact" if byte_identical else "near"),
                    **{k: m[k] for k in _IDENTITY},
                }
            )
        decided = {"decision": g["decision"]} if g.get("decision") else {}
        groups.append({"id": g["id"], "kind": g["kind"], **decided, "files": files})
    plan = {"plan_version": PLAN_VERSION, "roots": list(report["roots"]), "source": source, "groups": groups}
    check_plan(plan, keep_in)
    return plan


_MEMBER = {**_FIELDS, "root": str, "relation": str, "width": int, "height": int, "format": str, "lossless": bool}
"""What a plan is made from, of each member of a report's groups (exif_date and camera: a string or null)."""


def _check_report(report: dict) -> None:
    """The fields make_plan reads from a report, so that an edited or damaged one is refused in one line
    instead of an unexpected error half way (read_report checks only its version)."""
    roots = report.get("roots")
    if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        raise PlanError("the report's roots must be a list of paths")
    if not isinstance(report["groups"], list):
        raise PlanError("the report's groups must be a list")
    for n, g in enumerate(report["groups"], 1):
        if not isinstance(g, dict) or type(g.get("id")) is not int or not isinstance(g.get("members"), list):
            raise PlanError(f"the report's group {n} must be an object with an integer id and a list of members")
        if not isinstance(g.get("kind"), str):
            raise PlanError(f"the report's group {g['id']}: kind is missing or of another type")
        for k, m in enumerate(g["members"], 1):
            if not isinstance(m, dict):
                raise PlanError(f"the report's group {g['id']}: member {k} must be an object, not {m!r}")
            for key, kind in _MEMBER.items():
                if type(m.get(key)) is not kind:
                    raise PlanError(f"the report's group {g['id']}: member {k}: {key} is missing or of another type")
            for key in ("exif_date", "camera"):
                if m.get(key) is not None and not isinstance(m[key], str):
                    raise PlanError(f"the report's group {g['id']}: member {k}: {key} must be a string or null")
            if "\x00" in m["path"]:
                raise PlanError(f"the report's group {g['id']}: member {k}: a path cannot hold a NUL character")
        if sum(isinstance(m, dict) and m.get("relation") == "keeper" for m in g["members"]) != 1:
            raise PlanError(f"the report's group {g['id']} must have exactly one keeper")


def check_plan(plan: dict, keep_in: list[str] = ()) -> None:
    """Refuse a plan that is malformed, removes a whole group, touches a reference folder, names a
    file outside its scan roots (a relative path, or one that '..' takes out), calls "exact" a file
    that is not byte-identical to a kept keeper, removes a file of a group it decides to keep, or names
    a file in two groups. The whole plan is checked before anything is done."""
    _check_shape(plan)
    roots = plan["roots"]
    refs = _reference_folders(keep_in)
    for g in plan["groups"]:
        files = g["files"]
        for f in files:
            path = f["path"]
            if f.get("action") not in ("keep", "remove"):
                raise PlanError(f"group {g.get('id')}: action must be keep or remove, not {f.get('action')!r}")
            if not os.path.isabs(path) or os.path.normpath(path) != path.rstrip("/") or not _under(path, roots):
                raise PlanError(f"group {g.get('id')}: {path!r} is not a plain path under the scan roots")
            if f["action"] == "remove" and _in_reference(path, refs):
                raise PlanError(f"group {g.get('id')}: {path} is under a reference folder and cannot go")
        if files and all(f["action"] == "remove" for f in files):
            raise PlanError(f"group {g.get('id')}: every file would go; at least one copy must stay")
        _check_group(g, files)
    _check_once(plan["groups"])


def _check_shape(plan) -> None:
    """The structure the checks and the actions rely on, so that an edited plan that lacks a field, or has
    one of another type, is refused in one line instead of failing half way (integers exactly: a bool or a
    float is not one)."""
    if not isinstance(plan, dict) or type(plan.get("plan_version")) is not int or plan["plan_version"] != PLAN_VERSION:
        raise PlanError("not a dedupe plan of version 1")
    roots = plan.get("roots")
    plain = isinstance(roots, list) and all(isinstance(r, str) and os.path.isabs(r) for r in roots)
    if not plain or any(os.path.normpath(r) != r for r in roots):
        raise PlanError("the plan's roots must be a list of plain absolute paths, as a scan writes them")
    if not isinstance(plan.get("groups"), list):
        raise PlanError("the plan's groups must be a list")
    for n, g in enumerate(plan["groups"], 1):
        if not isinstance(g, dict) or type(g.get("id")) is not int or not isinstance(g.get("files"), list):
            raise PlanError(f"the plan's group {n} must be an object with an integer id and a list of files")
        for k, f in enumerate(g["files"], 1):
            if not isinstance(f, dict):
                raise PlanError(f"group {g['id']}: file {k} must be an object, not {f!r}")
            for key, kind in _FIELDS.items():
                if type(f.get(key)) is not kind:
                    name = "a string" if kind is str else "an integer"
                    raise PlanError(f"group {g['id']}: file {k}: {key} must be {name}, not {f.get(key)!r}")
            if "\x00" in f["path"]:
                raise PlanError(f"group {g['id']}: file {k}: a path cannot hold a NUL character")


def _check_group(g: dict, files: list[dict]) -> None:
    """The checks of a group's relations and decision (see check_plan)."""
    keepers = [f for f in files if f.get("relation") == "keeper"]
    if len(keepers) > 1 or any(f["action"] != "keep" for f in keepers):
        raise PlanError(f"group {g.get('id')}: one file at most is the keeper, and it is kept")
    for f in files:
        if f.get("relation") not in ("keeper", "exact", "near"):
            raise PlanError(f"group {g.get('id')}: relation must be keeper, exact or near, not {f.get('relation')!r}")
        if f["relation"] == "exact" and (not keepers or f.get("content_hash") != keepers[0].get("content_hash")):
            raise PlanError(f"group {g.get('id')}: {f['path']} is called exact but is not a copy of the keeper")
    decision = g.get("decision")
    if decision is None:
        return
    if decision not in (*KINDS, FORGET):
        raise PlanError(f"group {g.get('id')}: decision must be one of {', '.join((*KINDS, FORGET))}, not {decision!r}")
    if not all(isinstance(f.get("content_hash"), str) and _HASH.fullmatch(f["content_hash"]) for f in files):
        raise PlanError(f"group {g.get('id')}: a decision needs the content hash of every file")
    if decision in KINDS and any(f["action"] == "remove" for f in files):
        raise PlanError(f"group {g.get('id')}: decided {decision} but a file is marked remove")


def _check_once(groups: list[dict]) -> None:
    """Every file in one group only, by path and by identity (the same file by another path: a symbolic
    link to a folder, a hard link): kept in one group and removed in another, or removed by both, every
    copy of a picture could go. Group ids are unique too: the journal names each operation by its group."""
    ids, paths, identities = set(), {}, {}
    for g in groups:
        gid = g["id"]
        if gid in ids:
            raise PlanError(f"group id {gid} is used twice; each group needs its own")
        ids.add(gid)
        for f in g["files"]:
            path, identity = f["path"], (f["device"], f["inode"])
            if path in paths:
                raise PlanError(f"{path} is in group {paths[path]} and again in group {gid}; a file is in one group")
            paths[path] = gid
            first_gid, first = identities.setdefault(identity, (gid, path))
            if first_gid != gid:  # within a group, apply skips the group (check.py)
                raise PlanError(
                    f"{path} in group {gid} is the same file as {first} in group {first_gid}; a file is in one group"
                )


def check_quarantine(plan: dict, folder: str | os.PathLike) -> None:
    """Refuse a quarantine folder that is a file (every move would fail), or that is, lies in or holds a
    scan root: moved files would be renamed in place, or found again by the next scan, where a quarantined
    copy could become the keeper. Real paths, so that a symbolic link does not hide it."""
    real = os.path.realpath(folder)
    existing = real
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise PlanError(f"--move-to {folder}: {existing} is not a folder")
    for root in plan["roots"]:
        if _under(real, [os.path.realpath(root)]):
            raise PlanError(f"--move-to {folder} is in the scan root {root}: a scan would find the files moved there")
        if _under(os.path.realpath(root), [real]):
            raise PlanError(f"--move-to {folder} holds the scan root {root}: choose a folder apart from it")


def load_plan(
    path: str | os.PathLike,
    keep_in: list[str] = (),
    only: str | None = None,
    keeper_rules: tuple[str, ...] | None = None,
    quarantine: str | os.PathLike | None = None,
) -> dict:
    """A checked plan from a plan file, or made from a scan report with these options; with the folder
    that --move-to would move files into, checked too."""
    if os.path.exists(path) and not os.path.isfile(path):  # a pipe would be waited on for ever
        raise PlanError(f"{path} is not a regular file")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:  # ValueError: undecodable, not JSON, a NUL in the path
        raise PlanError(f"cannot read {path}: {exc}") from None
    if isinstance(data, dict) and "plan_version" in data:
        if only is not None or keeper_rules:
            raise PlanError("--only and --keeper-rules apply to a report; a plan already says what goes")
        check_plan(data, keep_in)
        plan = data
    else:
        try:
            report = read_report(path)
        except ReportError as exc:
            raise PlanError(str(exc)) from None
        plan = make_plan(report, keep_in, only, source=str(path), keeper_rules=keeper_rules)
    if quarantine is not None:
        check_quarantine(plan, quarantine)
    return plan
