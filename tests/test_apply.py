"""Moving duplicates to a quarantine folder, journaled, and undoing it: the tree comes back byte for byte."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dedupe import Settings, report_dict, scan
import dedupe.actions.apply as A
from dedupe.actions.apply import apply_plan, free_name, move
from dedupe.actions.dryrun import dry_run
from dedupe.actions.journal import Journal
from dedupe.actions.plan import make_plan
from dedupe.actions.undo import undo
from dedupe.cli import STOP_SIGNALS, app
from images import encode, photo, recompress, resize


@pytest.fixture
def library(tmp_path):
    root = tmp_path / "photos"
    for n in range(3):
        pic = photo(700 + n, (400, 300))
        (root / "2021" / f"e{n}").mkdir(parents=True)
        (root / "2021" / f"e{n}" / "IMG.jpg").write_bytes(encode(pic, quality=92))
        (root / "Backup" / f"e{n}").mkdir(parents=True)
        (root / "Backup" / f"e{n}" / "IMG.jpg").write_bytes((root / "2021" / f"e{n}" / "IMG.jpg").read_bytes())
        (root / "Downloads").mkdir(exist_ok=True)
        (root / "Downloads" / f"IMG_{n}_small.jpg").write_bytes(encode(resize(recompress(pic, 70), 0.5)))
    (root / "single.jpg").write_bytes(encode(photo(710, (400, 300))))
    report = report_dict(scan([root], Settings(workers=1)))
    assert len(report["groups"]) == 3
    return root, report


def tree(root: Path) -> dict:
    """Every file and folder under root: content hash and mtime for files."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) if p.is_file() else "dir"
    return out


def test_move_then_undo_restores_the_tree(library, tmp_path):
    root, report = library
    before = tree(root)
    result = apply_plan(make_plan(report), "move", tmp_path / "q", tmp_path / "journals")
    assert len(result.done) == 6 and not result.failed and not result.skipped
    for src, dst in result.done:  # the path relative to the scan root is kept
        assert not os.path.exists(src)
        assert Path(dst) == tmp_path / "q" / os.path.relpath(src, root)
    keepers = {g["keeper"] for g in report["groups"]}
    assert all(os.path.exists(k) for k in keepers)
    back = undo(result.journal)
    assert len(back.restored) == 6 and not back.refused
    assert tree(root) == before
    assert undo(result.journal).restored == []  # a second undo finds nothing left to do


def test_reference_folders_are_untouched(library, tmp_path):
    root, report = library
    backup_before = tree(root / "Backup")
    result = apply_plan(make_plan(report, keep_in=[str(root / "Backup")]), "move", tmp_path / "q", tmp_path / "j")
    assert result.done and all("/Backup/" not in src for src, _ in result.done)
    assert tree(root / "Backup") == backup_before


def test_a_file_changed_since_the_scan_skips_its_group(library, tmp_path):
    root, report = library
    changed = root / "Downloads" / "IMG_1_small.jpg"
    changed.write_bytes(changed.read_bytes() + b"\0")
    result = apply_plan(make_plan(report), "move", tmp_path / "q", tmp_path / "j")
    group = next(g for g in report["groups"] if any(m["path"] == str(changed) for m in g["members"]))
    assert [gid for gid, _ in result.skipped] == [group["id"]]
    assert all(os.path.exists(m["path"]) for m in group["members"])
    assert len(result.done) == 4


def test_undo_never_overwrites(library, tmp_path):
    root, report = library
    result = apply_plan(make_plan(report), "move", tmp_path / "q", tmp_path / "j")
    src, _ = result.done[0]
    Path(src).write_bytes(b"a new file that appeared since")
    res = CliRunner().invoke(app, ["undo", str(result.journal)])
    assert res.exit_code == 1
    assert Path(src).read_bytes() == b"a new file that appeared since"
    assert "not overwritten" in res.output


def test_move_never_overwrites_and_names_are_freed(tmp_path):
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    with pytest.raises(FileExistsError):
        move(a, b)
    assert b.read_bytes() == b"b" and a.exists()
    assert free_name(b) == tmp_path / "b (1).jpg"


KILLED_RUN = """
import os, sys
sys.path[:0] = [{tests!r}]
import dedupe.actions.apply as A
from dedupe.actions.plan import load_plan

real, calls = A.move, []

def move(src, dst):  # the third move is killed half way: the file has arrived, the original is still there
    calls.append(src)
    if len(calls) == 3:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.link(src, dst)
        os._exit(9)
    real(src, dst)

A.move = move
A.apply_plan(load_plan({report!r}), "move", {quarantine!r}, __import__("pathlib").Path({journals!r}))
"""


def test_a_killed_run_is_undone(library, tmp_path):
    root, report = library
    before = tree(root)
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(report))
    script = tmp_path / "killed.py"
    script.write_text(
        KILLED_RUN.format(
            tests=str(Path(__file__).parent),
            report=str(saved),
            quarantine=str(tmp_path / "q"),
            journals=str(tmp_path / "j"),
        )
    )
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 9, run.stderr
    journal = next((tmp_path / "j").glob("*.jsonl"))
    assert tree(root) != before  # two files had gone
    res = CliRunner().invoke(app, ["undo", str(journal)])
    assert res.exit_code == 0, res.output
    assert tree(root) == before


def test_apply_command(library, tmp_path):
    root, report = library
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(report))
    res = CliRunner().invoke(
        app, ["apply", str(saved), "--move-to", str(tmp_path / "q"), "--journal-dir", str(tmp_path / "j")]
    )
    assert res.exit_code == 0, res.output
    assert sum(line.startswith("move ") for line in res.output.splitlines()) == 6
    assert "dedupe undo" in res.output


@pytest.fixture
def home_trash(tmp_path, monkeypatch):
    """The freedesktop trash of a made-up home, so tests never touch the real one."""
    from send2trash import plat_other

    data = tmp_path / "xdg"
    data.mkdir()
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    monkeypatch.setattr(plat_other, "XDG_DATA_HOME", os.fsencode(data))
    monkeypatch.setattr(plat_other, "HOMETRASH_B", os.fsencode(data / "Trash"))
    return data / "Trash"


def test_trash_then_undo(library, tmp_path, home_trash):
    root, report = library
    before = tree(root)
    result = apply_plan(make_plan(report), "trash", journal_dir=tmp_path / "j")
    assert len(result.done) == 6 and not result.failed and result.stopped is None
    assert len(list((home_trash / "files").iterdir())) == 6
    assert all(not os.path.exists(src) for src, _ in result.done)
    assert undo(result.journal).refused == []
    assert tree(root) == before
    assert list((home_trash / "info").iterdir()) == []


@pytest.mark.parametrize("kind", ["hardlink", "symlink"])
def test_links_replace_only_byte_identical_copies_and_undo(library, tmp_path, kind):
    root, report = library
    before = tree(root)
    result = apply_plan(make_plan(report), kind, journal_dir=tmp_path / "j")
    assert len(result.done) == 3  # the Backup copies; the resized copies are not byte-identical
    for n in range(3):
        copy, keeper = root / "Backup" / f"e{n}" / "IMG.jpg", root / "2021" / f"e{n}" / "IMG.jpg"
        if {copy.as_posix(), keeper.as_posix()} & {src for src, _ in result.done}:
            assert os.path.samefile(copy, keeper)
            assert (kind == "symlink") == (copy.is_symlink() or keeper.is_symlink())
        assert (root / "Downloads" / f"IMG_{n}_small.jpg").is_file()
    assert undo(result.journal).refused == []
    assert tree(root) == before
    assert not any(p.is_symlink() for p in root.rglob("*"))


def test_delete_cannot_be_undone_and_asks_first(library, tmp_path):
    root, report = library
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(report))
    res = CliRunner().invoke(app, ["apply", str(saved), "--delete"])
    assert res.exit_code == 2 and "--yes" in res.output
    assert all(os.path.exists(m["path"]) for g in report["groups"] for m in g["members"])
    res = CliRunner().invoke(app, ["apply", str(saved), "--delete", "--yes", "--journal-dir", str(tmp_path / "j")])
    assert res.exit_code == 0, res.output
    gone = [m["path"] for g in report["groups"] for m in g["members"] if m["relation"] != "keeper"]
    assert gone and not any(os.path.exists(p) for p in gone)
    assert all(os.path.exists(g["keeper"]) for g in report["groups"])
    back = undo(next((tmp_path / "j").glob("*.jsonl")))
    assert back.restored == [] and all("permanently" in why for _, why in back.refused)


def test_paranoid_skips_a_group_whose_bytes_changed_under_the_same_size_and_time(library, tmp_path):
    root, report = library
    copy = root / "Backup" / "e0" / "IMG.jpg"
    st = copy.stat()
    data = bytearray(copy.read_bytes())
    data[-3] ^= 0xFF
    copy.write_bytes(bytes(data))
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))  # size and mtime as scanned: only the bytes differ
    group = next(g for g in report["groups"] if any(m["path"] == str(copy) for m in g["members"]))
    predicted = dry_run(make_plan(report), paranoid=True)  # the dry run of --paranoid re-hashes too
    assert group["id"] in [gid for gid, _ in predicted.skipped]
    assert group["id"] not in [gid for gid, _ in dry_run(make_plan(report)).skipped]
    result = apply_plan(make_plan(report), "move", tmp_path / "q", tmp_path / "j", paranoid=True)
    assert group["id"] in [gid for gid, _ in result.skipped]
    assert copy.exists()
    assert len(result.done) == len(predicted.operations)


def test_one_action_at_a_time(library, tmp_path):
    _, report = library
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(report))
    res = CliRunner().invoke(app, ["apply", str(saved), "--trash", "--delete", "--yes"])
    assert res.exit_code == 2 and "choose one action" in res.output


def test_an_unavailable_trash_stops_the_run_with_a_message(library, tmp_path, monkeypatch):
    import send2trash
    from send2trash.exceptions import TrashPermissionError

    root, report = library
    calls = []

    def refuse(path):
        calls.append(path)
        raise TrashPermissionError(path)

    monkeypatch.setattr(send2trash, "send2trash", refuse)
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(report))
    res = CliRunner().invoke(app, ["apply", str(saved), "--trash", "--journal-dir", str(tmp_path / "j")])
    assert res.exit_code == 1 and "the trash cannot take" in res.output
    assert len(calls) == 1  # stopped at the first refusal, claimed nothing
    assert all(os.path.exists(m["path"]) for g in report["groups"] for m in g["members"])


def test_a_stop_request_ends_the_run_between_operations(library, tmp_path):
    root, report = library
    asked = iter([False, False, True])
    result = apply_plan(make_plan(report), "move", tmp_path / "q", tmp_path / "j", cancel=lambda: next(asked, True))
    assert result.interrupted and len(result.done) == 2
    assert undo(result.journal).restored == [src for src, _ in reversed(result.done)]


@pytest.mark.skipif(sys.platform == "win32", reason="a process signals itself the POSIX way")
@pytest.mark.parametrize("number", STOP_SIGNALS)
def test_a_signal_ends_the_command_between_operations(library, tmp_path, monkeypatch, number):
    """Ctrl-C, `kill` or a closed terminal during `dedupe apply` lets the file in hand finish moving, so the
    journal is complete and undo puts everything back."""
    root, report = library
    before = tree(root)
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(report))
    real, calls = A.move, []

    def move(src, dst):
        calls.append(src)
        if len(calls) == 2:
            os.kill(os.getpid(), number)
        real(src, dst)

    def unhandled(*_):  # what the signal does if the command leaves it to us (SIGTERM's default ends pytest)
        raise RuntimeError("signal not handled by dedupe")

    monkeypatch.setattr(A, "move", move)
    previous = signal.signal(number, unhandled)
    try:
        res = CliRunner().invoke(
            app, ["apply", str(saved), "--move-to", str(tmp_path / "q"), "--journal-dir", str(tmp_path / "j")]
        )
    finally:
        signal.signal(number, previous)
    assert res.exit_code == 128 + number and "Interrupted after 2 files" in res.output, res.output
    assert len(calls) == 2
    assert CliRunner().invoke(app, ["undo", str(next((tmp_path / "j").glob("*.jsonl")))]).exit_code == 0
    assert tree(root) == before


def test_move_across_file_systems_copies_then_removes(tmp_path, monkeypatch):
    import errno

    src, dst = tmp_path / "a.jpg", tmp_path / "q" / "a.jpg"
    src.write_bytes(b"picture bytes")
    os.utime(src, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    real_link = os.link

    def no_cross_device_links(a, b, *args, **kw):
        if str(a) == str(src):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_link(a, b, *args, **kw)

    monkeypatch.setattr(os, "link", no_cross_device_links)
    move(src, dst)
    assert not src.exists() and dst.read_bytes() == b"picture bytes"
    assert dst.stat().st_mtime_ns == 1_600_000_000_000_000_000
    assert [p.name for p in dst.parent.iterdir()] == ["a.jpg"]  # no partial file left


def test_a_file_that_cannot_be_moved_is_reported_and_the_run_goes_on(library, tmp_path, monkeypatch):
    import dedupe.actions.apply as A

    root, report = library
    real = A.move
    victim = str(root / "Downloads" / "IMG_1_small.jpg")

    def move(src, dst):
        if src == victim:
            raise PermissionError(13, "Permission denied", src)
        real(src, dst)

    monkeypatch.setattr(A, "move", move)
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(report))
    res = CliRunner().invoke(
        app, ["apply", str(saved), "--move-to", str(tmp_path / "q"), "--journal-dir", str(tmp_path / "j")]
    )
    assert res.exit_code == 1
    assert f"FAILED {victim}: Permission denied" in res.output and "5 files" in res.output and "1 failed" in res.output
    assert os.path.exists(victim)


@pytest.mark.parametrize("left", ["partial", "link", "copy"])
def test_undo_of_a_move_killed_half_way_clears_what_it_left_in_the_quarantine(library, tmp_path, left):
    """Killed (SIGKILL) while a file was being moved: the original is still in place, and the quarantine
    held a .NAME.dedupe-partial copy, or the whole copy made before the original went, that undo left."""
    root, report = library
    plan = make_plan(report)
    group = next(g for g in plan["groups"] if any(f["action"] == "remove" for f in g["files"]))
    f = next(f for f in group["files"] if f["action"] == "remove")
    to = tmp_path / "q" / "gone.jpg"
    to.parent.mkdir()
    if left == "partial":
        Path(to.with_name(f".{to.name}.dedupe-partial")).write_bytes(Path(f["path"]).read_bytes()[:100])
    elif left == "link":
        os.link(f["path"], to)
    else:
        shutil.copyfile(f["path"], to)
    stranger = tmp_path / "q" / "other.jpg"
    stranger.write_bytes(b"not ours")
    journal = Journal.create(tmp_path / "j", {"action": "move", "quarantine": str(to.parent), "roots": plan["roots"]})
    journal.write(
        {
            "op": "1.0",
            "kind": "move",
            "path": f["path"],
            "size": f["size"],
            "mtime_ns": f["mtime_ns"],
            "content_hash": f["content_hash"],
            "keeper": "/k.jpg",
            "to": str(to),
            "state": "start",
        }
    )
    journal.close()
    result = undo(journal.path)
    assert result.restored == [] and result.refused == []
    # a whole copy of its bytes stays, said: another run may have quarantined a file of that content there
    assert result.left == ([str(to)] if left == "copy" else [])
    expected = ["gone.jpg", "other.jpg"] if left == "copy" else ["other.jpg"]
    assert Path(f["path"]).exists() and sorted(p.name for p in to.parent.iterdir()) == expected


def test_paranoid_also_rehashes_a_near_copy_rewritten_in_place(library, tmp_path):
    """A near copy overwritten in place with another picture, its size and times put back: --paranoid
    hashed only the keeper and byte-identical copies, and deleted the only copy of the new picture."""
    root, report = library
    small = root / "Downloads" / "IMG_0_small.jpg"
    st = small.stat()
    other = encode(photo(799, (200, 150)))[: st.st_size]
    small.write_bytes(other + bytes(st.st_size - len(other)))
    os.utime(small, ns=(st.st_atime_ns, st.st_mtime_ns))
    result = apply_plan(make_plan(report), "delete", None, tmp_path / "j", paranoid=True)
    assert small.exists() and any(str(small) in "; ".join(why) for _, why in result.skipped)


def test_undo_moves_back_only_the_file_it_moved(library, tmp_path):
    """Two runs into one quarantine, the first one's file removed by hand: the second run's file took
    the freed name, and undoing the first run moved that file into the first library."""
    root, report = library
    first = apply_plan(make_plan(report), "move", tmp_path / "q", tmp_path / "j")
    moved_to = {src: dst for src, dst in first.done}
    src, dst = next(iter(moved_to.items()))
    Path(dst).unlink()  # emptied by hand
    Path(dst).write_bytes(encode(photo(798, (100, 80))))  # another file under that name since
    back = undo(first.journal)
    assert src in [p for p, _ in back.refused] and not Path(src).exists()
    assert any("not the one moved there" in why for _, why in back.refused)
