"""Which files go (the plan), the checks against the disk, and the dry run, which changes nothing."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from typer.testing import CliRunner

from dedupe import Settings, report_dict, scan
from dedupe.actions.check import group_problems, real_roots
from dedupe.actions.dryrun import dry_run
from dedupe.actions.plan import PlanError, check_plan, load_plan, make_plan
from dedupe.cli import app
from images import encode, photo, resize


@pytest.fixture
def library(tmp_path):
    root = tmp_path / "photos"
    (root / "2020").mkdir(parents=True)
    (root / "Backup").mkdir()
    pic = photo(600, (480, 360))
    (root / "2020" / "a.jpg").write_bytes(encode(pic, quality=92))
    (root / "Backup" / "a.jpg").write_bytes((root / "2020" / "a.jpg").read_bytes())
    (root / "2020" / "a_small.jpg").write_bytes(encode(resize(pic, 0.5)))
    (root / "2020" / "other.jpg").write_bytes(encode(photo(601, (480, 360))))
    report = report_dict(scan([root], Settings(workers=1)))
    assert len(report["groups"]) == 1 and len(report["groups"][0]["members"]) == 3
    return root, report


def _removed(plan):
    return sorted(
        os.path.relpath(f["path"], plan["roots"][0])
        for g in plan["groups"]
        for f in g["files"]
        if f["action"] == "remove"
    )


def _tree(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_default_plan_removes_all_but_the_keeper(library):
    root, report = library
    plan = make_plan(report)
    keeper = os.path.relpath(report["groups"][0]["keeper"], root)
    assert keeper not in _removed(plan) and len(_removed(plan)) == 2


def test_reference_folder_is_never_touched_and_its_copy_becomes_the_keeper(library):
    root, report = library
    plan = make_plan(report, keep_in=[str(root / "Backup")])
    assert "Backup/a.jpg" not in _removed(plan)
    files = plan["groups"][0]["files"]
    assert next(f for f in files if f["relation"] == "keeper")["path"] == str(root / "Backup" / "a.jpg")
    with pytest.raises(PlanError, match="reference folder"):
        check_plan(make_plan(report), keep_in=[str(root / "Backup"), str(root / "2020")])


def test_only_exact_or_near(library):
    root, report = library
    exact = _removed(make_plan(report, only="exact"))
    near = _removed(make_plan(report, only="near"))
    assert exact and near and not set(exact) & set(near)
    assert "2020/a_small.jpg" in near and "2020/a_small.jpg" not in exact
    with pytest.raises(PlanError):
        make_plan(report, only="everything")


def test_a_plan_never_removes_a_whole_group(library):
    _, report = library
    plan = make_plan(report)
    for f in plan["groups"][0]["files"]:
        f["action"] = "remove"
    with pytest.raises(PlanError, match="at least one copy"):
        check_plan(plan)


@pytest.mark.parametrize("bad", ["{root}/2020/../../etc/passwd", "/etc/passwd", "2020/a.jpg", "{root}/./2020/a.jpg"])
def test_paths_outside_the_roots_are_refused(library, bad):
    root, report = library
    plan = make_plan(report)
    plan["groups"][0]["files"][1]["path"] = bad.format(root=root)
    with pytest.raises(PlanError, match="not a plain path under the scan roots"):
        check_plan(plan)


def test_changed_files_skip_their_group(library):
    root, report = library
    plan = make_plan(report)
    assert group_problems(plan["groups"][0], real_roots(plan)) == []
    victim = root / "2020" / "a_small.jpg"
    victim.write_bytes(victim.read_bytes() + b"\0")
    problems = group_problems(plan["groups"][0], real_roots(plan))
    assert any("a_small.jpg" in p and "size changed" in p for p in problems)
    run = dry_run(plan)
    assert run.operations == [] and [gid for gid, _ in run.skipped] == [plan["groups"][0]["id"]]


def test_a_hard_link_to_the_keeper_is_never_removed(library):
    root, report = library
    plan = make_plan(report)
    keeper = next(f for f in plan["groups"][0]["files"] if f["action"] == "keep")
    other = next(f for f in plan["groups"][0]["files"] if f["action"] == "remove")
    os.remove(other["path"])
    os.link(keeper["path"], other["path"])
    st = os.stat(other["path"])
    other.update(size=st.st_size, mtime_ns=st.st_mtime_ns, device=st.st_dev, inode=st.st_ino)
    assert any("same file as a copy being kept" in p for p in group_problems(plan["groups"][0], real_roots(plan)))


def test_dry_run_changes_nothing(library, tmp_path):
    root, report = library
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(report))
    before = _tree(root)
    res = CliRunner().invoke(app, ["apply", str(saved)])
    assert res.exit_code == 0, res.output
    assert res.output.count("would remove ") == 2
    assert "Nothing was changed." in res.output
    assert _tree(root) == before


def test_plan_command_round_trip(library, tmp_path):
    root, report = library
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(report))
    out = tmp_path / "plan.json"
    res = CliRunner().invoke(app, ["plan", str(saved), "-o", str(out), "--keep-in", str(root / "Backup")])
    assert res.exit_code == 0, res.output
    plan = load_plan(out, keep_in=[str(root / "Backup")])
    assert "Backup/a.jpg" not in _removed(plan)
    edited = json.loads(out.read_text())
    edited["groups"][0]["files"][0]["path"] = "/etc/passwd"
    out.write_text(json.dumps(edited))
    res = CliRunner().invoke(app, ["apply", str(out)])
    assert res.exit_code == 2 and "scan roots" in res.output


def test_keepers_chosen_again_by_other_rules(library):
    root, report = library
    plan = make_plan(report, keeper_rules=("path",))
    files = plan["groups"][0]["files"]
    keeper = next(f for f in files if f["relation"] == "keeper")
    assert keeper["path"] == min((f["path"] for f in files), key=len)  # shortest path now decides
    assert keeper["action"] == "keep" and sum(f["action"] == "keep" for f in files) == 1
    res = CliRunner().invoke(app, ["plan", "-o", "/dev/null", "--keeper-rules", "biggest", str(root)])
    assert res.exit_code == 2 and "keeper_rules" in res.output
