"""The actions never lose a picture by a detour: reference folders named or scanned through symbolic links,
scan roots that are files, quarantine folders where the next scan would find the files, plans that name a
file in two groups, plans and journals edited out of shape."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dedupe import Settings, report_dict, scan
from dedupe.actions.apply import apply_plan
from dedupe.actions.dryrun import dry_run
from dedupe.actions.journal import read
from dedupe.actions.plan import PlanError, check_plan, make_plan
from dedupe.actions.undo import undo
from dedupe.cli import app
from images import encode, photo, resize


@pytest.fixture
def library(tmp_path):
    """Two pictures, each with copies in copies/ (the reference folder of these tests)."""
    root = tmp_path / "photos"
    (root / "orig").mkdir(parents=True)
    (root / "copies").mkdir()
    for n in range(2):
        pic = photo(900 + n, (400, 300))
        (root / "orig" / f"p{n}.jpg").write_bytes(encode(pic, quality=92))
        (root / "copies" / f"p{n}.jpg").write_bytes((root / "orig" / f"p{n}.jpg").read_bytes())
        (root / "copies" / f"p{n}_small.jpg").write_bytes(encode(resize(pic, 0.5)))
    return root


def _report(*roots):
    report = report_dict(scan(list(roots), Settings(workers=1)))
    assert len(report["groups"]) == 2 and all(len(g["members"]) == 3 for g in report["groups"])
    return report


def _removed(plan) -> list[str]:
    return [f["path"] for g in plan["groups"] for f in g["files"] if f["action"] == "remove"]


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.jpg")}


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_reference_folder_named_through_a_symbolic_link_is_protected(library, tmp_path):
    alias = tmp_path / "copies_alias"
    alias.symlink_to(library / "copies")
    report = _report(library)
    plan = make_plan(report, keep_in=[str(alias)])
    assert _removed(plan) and not any("/copies/" in p for p in _removed(plan))
    with pytest.raises(PlanError, match="reference folder"):
        check_plan(make_plan(report), keep_in=[str(alias)])

    saved, planned = tmp_path / "report.json", tmp_path / "plan.json"
    saved.write_text(json.dumps(report))
    before = _tree(library / "copies")
    assert _cli("plan", saved, "-o", planned, "--keep-in", alias).exit_code == 0
    res = _cli("apply", planned, "--keep-in", alias, "--move-to", tmp_path / "q", "--journal-dir", tmp_path / "j")
    assert res.exit_code == 0 and "Done: 2 files" in res.output, res.output
    assert _tree(library / "copies") == before


def test_files_scanned_through_a_symbolic_link_are_protected_by_the_real_folder(library, tmp_path):
    alias = tmp_path / "alias"
    alias.symlink_to(library)
    report = _report(alias)
    plan = make_plan(report, keep_in=[str(library / "copies")])
    assert _removed(plan) and not any("/copies/" in p for p in _removed(plan))
    with pytest.raises(PlanError, match="reference folder"):
        check_plan(make_plan(report), keep_in=[str(library / "copies")])


def test_a_reference_folder_that_is_not_there_is_refused(library, tmp_path):
    report = _report(library)
    with pytest.raises(PlanError, match="no such folder"):
        make_plan(report, keep_in=[str(library / "copise")])
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(report))
    res = _cli("apply", saved, "--keep-in", library / "copise")
    assert res.exit_code == 2 and res.output.strip() == f"dedupe: --keep-in {library / 'copise'}: no such folder"


def test_files_given_as_scan_roots_are_moved_into_the_quarantine_under_their_names(library, tmp_path):
    files = [library / "orig" / "p0.jpg", library / "copies" / "p0.jpg", library / "copies" / "p0_small.jpg"]
    report = report_dict(scan(files, Settings(workers=1)))
    assert len(report["groups"]) == 1
    quarantine = tmp_path / "q"
    quarantine.mkdir()
    before = _tree(library)
    result = apply_plan(make_plan(report), "move", quarantine, tmp_path / "j")
    assert len(result.done) == 2 and not result.failed
    for src, dst in result.done:
        assert Path(dst) == quarantine / Path(src).name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j", "photos", "q"]
    assert not undo(result.journal).refused and _tree(library) == before


@pytest.mark.parametrize(
    "where, why",
    [
        ("{root}", "in the scan root"),
        ("{root}/_quarantine", "in the scan root"),
        ("{tmp}/alias/_quarantine", "in the scan root"),  # a symbolic link to a folder in the root
        ("{tmp}", "holds the scan root"),
        ("{tmp}/a_file", "is not a folder"),
        ("{tmp}/a_file/q", "is not a folder"),
    ],
)
def test_a_quarantine_folder_in_a_scan_root_or_that_is_a_file_is_refused(library, tmp_path, where, why):
    (tmp_path / "alias").symlink_to(library / "copies")
    (tmp_path / "a_file").write_bytes(b"not a folder")
    quarantine = where.format(root=library, tmp=tmp_path)
    report = _report(library)
    before = _tree(library)
    with pytest.raises(PlanError, match=why):
        apply_plan(make_plan(report), "move", quarantine, tmp_path / "j")
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(report))
    res = _cli("apply", saved, "--move-to", quarantine, "--journal-dir", tmp_path / "j")
    assert res.exit_code == 2 and res.output.count("\n") == 1 and why in res.output, res.output
    assert _tree(library) == before and not (tmp_path / "j").exists()


def _swapped(group: dict, gid: int, through: tuple[str, str] = ("", "")) -> dict:
    """A copy of a group under another id that keeps a copy the group removes and removes its keeper;
    its paths optionally rewritten (a root reached through a symbolic link)."""
    g = copy.deepcopy(group)
    g["id"] = gid
    keeper = next(f for f in g["files"] if f["relation"] == "keeper")
    twin = next(f for f in g["files"] if f["relation"] == "exact")
    keeper.update(action="remove", relation="exact")
    twin.update(action="keep", relation="keeper")
    for f in g["files"]:
        f["path"] = f["path"].replace(*through)
    return g


def _twice(plan: dict, how: str, alias: Path) -> str:
    """Edit the plan so that a file is in two groups; the message that must refuse it."""
    first = plan["groups"][0]
    keeper = next(f["path"] for f in first["files"] if f["relation"] == "keeper")
    if how == "swapped":
        plan["groups"].append(_swapped(first, 999))
        return f"{keeper} is in group {first['id']} and again in group 999"
    if how == "decided":
        plan["groups"].append({**copy.deepcopy(first), "id": 999})
        first["decision"] = "not_duplicates"
        for f in first["files"]:
            f["action"] = "keep"
        return f"{keeper} is in group {first['id']} and again in group 999"
    if how == "alias":
        root = plan["roots"][0]
        plan["roots"].append(str(alias))
        plan["groups"].append(_swapped(first, 999, (root, str(alias))))
        return f"{keeper.replace(root, str(alias))} in group 999 is the same file as {keeper} in group {first['id']}"
    plan["groups"][1]["id"] = first["id"]
    return f"group id {first['id']} is used twice"


@pytest.mark.parametrize("how", ["swapped", "decided", "alias", "same id"])
def test_a_plan_that_names_a_file_in_two_groups_is_refused_whole(library, tmp_path, how):
    (tmp_path / "alias").symlink_to(library)
    plan = make_plan(_report(library))
    message = _twice(plan, how, tmp_path / "alias")
    before = _tree(library)
    for check in (check_plan, dry_run, lambda p: apply_plan(p, "move", tmp_path / "q", tmp_path / "j")):
        with pytest.raises(PlanError) as refused:
            check(plan)
        assert message in str(refused.value)
    saved = tmp_path / "plan.json"
    saved.write_text(json.dumps(plan))
    for args in ((), ("--move-to", tmp_path / "q", "--journal-dir", tmp_path / "j")):
        res = _cli("apply", saved, *args)
        assert res.exit_code == 2 and res.output.count("\n") == 1 and message in res.output, res.output
    assert _tree(library) == before and not (tmp_path / "j").exists()


def _file(plan: dict) -> dict:
    return plan["groups"][0]["files"][1]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: _file(p).pop("mtime_ns"), "mtime_ns must be an integer, not None"),
        (lambda p: _file(p).update(size=None), "size must be an integer, not None"),
        (lambda p: _file(p).update(size=True), "size must be an integer, not True"),
        (lambda p: _file(p).update(device=str(_file(p)["device"])), "device must be an integer"),
        (lambda p: _file(p).pop("path"), "path must be a string, not None"),
        (lambda p: p["groups"][0]["files"].__setitem__(1, "/photos/a.jpg"), "file 2 must be an object"),
        (lambda p: p["groups"][0].pop("files"), "group 1 must be an object with an integer id and a list of files"),
        (lambda p: p["groups"][0].pop("id"), "group 1 must be an object with an integer id and a list of files"),
        (lambda p: p["groups"].__setitem__(0, []), "group 1 must be an object"),
        (lambda p: p.update(groups={"1": p["groups"][0]}), "groups must be a list"),
        (lambda p: p.update(roots=p["roots"][0]), "roots must be a list of plain"),  # each letter a root: "/" too
        (lambda p: p.update(roots=[p["roots"][0] + "/../photos"]), "roots must be a list of plain"),
        (lambda p: p.update(roots=["photos"]), "roots must be a list of plain"),
        (lambda p: p.update(plan_version=True), "not a dedupe plan of version 1"),
        (lambda p: _file(p).update(path=_file(p)["path"] + "\x00.jpg"), "a path cannot hold a NUL character"),
    ],
)
def test_a_plan_out_of_shape_is_refused_in_one_line(library, tmp_path, edit, message):
    plan = make_plan(_report(library))
    edit(plan)
    with pytest.raises(PlanError, match=message):
        check_plan(plan)
    saved = tmp_path / "plan.json"
    saved.write_text(json.dumps(plan))
    res = _cli("apply", saved)
    assert res.exit_code == 2 and res.output.count("\n") == 1 and message in res.output, res.output


@pytest.mark.parametrize(
    "state, edit, message",
    [
        ("start", lambda r: r.pop("path"), "path must be a string, not None"),
        ("start", lambda r: r.pop("keeper"), "keeper must be a string, not None"),
        ("start", lambda r: r.pop("size"), "size must be an integer, not None"),
        ("start", lambda r: r.update(to=1), "to must be a path, not 1"),
        ("done", lambda r: r.pop("op"), "op must be a string, not None"),
        ("undone", lambda r: r.update(undone=["1.0"]), "undone must be a string"),
    ],
)
def test_a_journal_out_of_shape_is_refused_in_one_line(library, tmp_path, state, edit, message):
    result = apply_plan(make_plan(_report(library)), "move", tmp_path / "q", tmp_path / "j")
    assert len(result.done) == 4
    records = [json.loads(line) for line in result.journal.read_text().splitlines()]
    if state == "undone":
        records.append({})
    edit(next(r for r in reversed(records) if r.get("state", "undone") == state))
    result.journal.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(ValueError, match=message):
        read(result.journal)
    moved = _tree(tmp_path / "q")
    res = _cli("undo", result.journal)
    assert res.exit_code == 2 and res.output.count("\n") == 1 and message in res.output, res.output
    assert _tree(tmp_path / "q") == moved  # nothing was put back: the journal is read whole first


def test_a_symbolic_link_the_scan_followed_is_left_and_said_so(tmp_path):
    """With --follow-symlinks a group holds a link's path; removing or moving the link frees nothing, and
    apply said "no longer a regular file", as if it had changed since the scan."""
    outside, root = tmp_path / "outside", tmp_path / "photos"
    outside.mkdir()
    root.mkdir()
    pic = photo(950, (400, 300))
    (root / "a.jpg").write_bytes(encode(pic, quality=95))
    (outside / "a_small.jpg").write_bytes(encode(resize(pic, 0.5)))
    (root / "link.jpg").symlink_to(outside / "a_small.jpg")
    report = report_dict(scan([root], Settings(workers=1, follow_symlinks=True)))
    plan = make_plan(report)
    assert _removed(plan) == [str(root / "link.jpg")]
    ((gid, reasons),) = dry_run(plan).skipped
    assert reasons == [
        f"{root / 'link.jpg'}: a symbolic link the scan followed (--follow-symlinks): links are never acted on"
    ]
    result = apply_plan(plan, "move", tmp_path / "q", tmp_path / "j")
    assert not result.done and (root / "link.jpg").is_symlink() and (outside / "a_small.jpg").exists()


def _member(report: dict) -> dict:
    return report["groups"][0]["members"][1]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: _member(r).pop("mtime_ns"), "member 2: mtime_ns is missing or of another type"),
        (lambda r: _member(r).update(width=None), "member 2: width is missing or of another type"),
        (lambda r: _member(r).update(camera=3), "member 2: camera must be a string or null"),
        (lambda r: r["groups"][0]["members"].__setitem__(1, "x.jpg"), "member 2 must be an object"),
        (lambda r: r["groups"][0].pop("members"), "group 1 must be an object with an integer id and a list of members"),
        (lambda r: _member(r).update(relation="keeper"), "group 1 must have exactly one keeper"),
        (lambda r: r.update(groups={}), "the report's groups must be a list|groups is missing"),
        (lambda r: r.update(roots="/photos"), "the report's roots must be a list of paths|roots is missing"),
        (lambda r: r["groups"][0].pop("kind"), "the report's group 1: kind is missing"),
        (lambda r: _member(r).update(path=_member(r)["path"] + "\x00"), "a path cannot hold a NUL character"),
    ],
)
def test_a_report_out_of_shape_is_refused_in_one_line(library, tmp_path, edit, message):
    """A damaged or edited report gave "unexpected error" (a KeyError or TypeError half way)."""
    report = _report(library)
    edit(report)
    made, read = (message.split("|") + [message])[:2]  # make_plan's words, and the command's (read_report's)
    with pytest.raises(PlanError, match=made):
        make_plan(report, keep_in=[str(library / "copies")], keeper_rules=("size",))
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(report))
    res = _cli("plan", saved, "-o", tmp_path / "plan.json", "--keep-in", library / "copies")
    assert res.exit_code == 2 and res.output.count("\n") == 1 and read in res.output, res.output


def test_a_file_reached_through_a_followed_folder_link_outside_the_roots_is_left(tmp_path):
    """With --follow-symlinks, a folder link led the scan to files outside its roots; apply moved the
    real files out there."""
    outside, root = tmp_path / "elsewhere", tmp_path / "photos"
    outside.mkdir()
    root.mkdir()
    pic = photo(951, (400, 300))
    (root / "a.jpg").write_bytes(encode(pic, quality=95))
    (outside / "a_small.jpg").write_bytes(encode(resize(pic, 0.5)))
    (root / "linked").symlink_to(outside)
    plan = make_plan(report_dict(scan([root], Settings(workers=1, follow_symlinks=True))))
    assert _removed(plan) == [str(root / "linked" / "a_small.jpg")]
    ((_, reasons),) = dry_run(plan).skipped
    assert reasons == [
        f"{root / 'linked' / 'a_small.jpg'}: reached through a folder link the scan followed, outside the scan roots"
    ]
    result = apply_plan(plan, "move", tmp_path / "q", tmp_path / "j")
    assert not result.done and (outside / "a_small.jpg").exists()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r.pop("summary"), "summary is missing or of another type"),
        (lambda r: r.update(schema_version="1"), "schema_version must be an integer, not '1'"),
        (lambda r: r["groups"][0].update(members="x"), "the page cannot be drawn"),
        (lambda r: r.update(stats=None), "the page cannot be drawn"),
    ],
)
def test_a_report_without_what_a_page_needs_is_refused_in_one_line(library, tmp_path, edit, message):
    report = _report(library)
    edit(report)
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(report))
    res = _cli("report", saved, "--html", tmp_path / "page.html")
    assert res.exit_code == 2 and res.output.count("\n") == 1 and message in res.output, res.output


def test_a_journal_folder_that_cannot_be_one_is_refused_before_anything_moves(library, tmp_path):
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(_report(library)))
    before = _tree(library)
    (tmp_path / "jfile").write_text("a file")
    for journal in (tmp_path / "jfile", tmp_path / "jfile" / "sub"):
        res = _cli("apply", saved, "--move-to", tmp_path / "q", "--journal-dir", journal)
        assert res.exit_code == 2 and res.output.startswith("dedupe: --journal-dir"), res.output
    assert _tree(library) == before


def test_a_later_scan_of_a_tree_holding_a_quarantine_skips_it(library, tmp_path):
    """Scanning the home folder later: the quarantined copy, its path shorter, was kept, and the
    library's original proposed for removal, the only copy left in a folder a person empties."""
    quarantine = library.parent / "q"
    result = apply_plan(make_plan(_report(library)), "move", quarantine, tmp_path / "j")
    assert result.done and (quarantine / ".dedupe-quarantine").is_file()
    later = scan([library.parent], Settings(workers=1))
    assert later.groups == []  # the copies set aside are not found again beside their originals
    assert any(p.path == str(quarantine) and "quarantine" in p.reason for p in later.problems)
    (quarantine / ".dedupe-quarantine").unlink()  # unmarked, they were: and a copy there could be kept
    assert scan([library.parent], Settings(workers=1)).groups
    inside = scan([quarantine], Settings(workers=1))  # given as a root, it is scanned
    assert inside.stats["image_files"] == len(result.done)
    (quarantine / ".dedupe-quarantine").write_text("")
    left = len(list(library.rglob("*.jpg")))
    for roots in ([library.parent, quarantine], [quarantine, library.parent]):  # in either order
        assert scan(roots, Settings(workers=1)).stats["image_files"] == left + len(result.done)


def test_a_quarantine_that_cannot_be_written_is_refused_before_anything_moves(library, tmp_path, monkeypatch):
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(_report(library)))
    before = _tree(library)

    def refused(self, *a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", refused)
    res = _cli("apply", saved, "--move-to", tmp_path / "q")
    assert res.exit_code == 2 and "cannot write there" in res.output, res.output
    assert _tree(library) == before
