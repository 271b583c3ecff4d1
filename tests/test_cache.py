"""The feature cache: unchanged, moved and copied files are not decoded again; changed files are; a bad
cache is rebuilt; concurrent scans share one; an interrupted scan keeps what it computed."""

from __future__ import annotations

import dataclasses
import multiprocessing
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dedupe.cache as cache_mod
from dedupe import Cancelled, Settings, scan
from dedupe.actions.plan import make_plan
from dedupe.cache import Cache, CacheError, clear, default_path
from images import (
    add_comment,
    crop,
    encode,
    exif,
    group_names,
    logo,
    photo,
    recompress,
    resize,
    strip_metadata,
    with_metadata,
)

SIZE = (400, 300)


def library(root: Path) -> list[set[str]]:
    """Three pictures with copies (resized, recompressed, a logo, a crop) and two singletons."""
    root.mkdir(parents=True, exist_ok=True)
    a, b, c = photo(11, SIZE), photo(22, SIZE), photo(33, SIZE)
    files = {
        "a.jpg": encode(a, quality=95),
        "a_small.jpg": encode(resize(a, 0.5)),
        "a_q50.jpg": encode(recompress(a, 80), quality=50),
        "b.png": encode(b, "PNG"),
        "b_logo.jpg": encode(logo(b)),
        "c.jpg": encode(c, quality=95),
        "c_crop.jpg": encode(crop(c, 0.08)),
        "alone_1.jpg": encode(photo(44, SIZE)),
        "alone_2.jpg": encode(photo(55, SIZE)),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    return [{"a.jpg", "a_small.jpg", "a_q50.jpg"}, {"b.png", "b_logo.jpg"}, {"c.jpg", "c_crop.jpg"}]


class Count:
    """Counts calls of a function it stands in for (in this process: the tests use one worker)."""

    def __init__(self, real):
        self.real, self.calls = real, []

    def __call__(self, *args, **kw):
        self.calls.append(os.path.basename(args[0]))
        return self.real(*args, **kw)


@pytest.fixture
def decodes(monkeypatch) -> Count:
    import dedupe.read

    counter = Count(dedupe.read._analyse_data)
    monkeypatch.setattr(dedupe.read, "_analyse_data", counter)
    return counter


def sorted_groups(result) -> list[set[str]]:
    return sorted(group_names(result), key=sorted)


def test_a_warm_scan_reads_decodes_and_verifies_nothing(tmp_path, serial, monkeypatch):
    expected = library(tmp_path / "lib")
    db = tmp_path / "cache.sqlite"
    cold = scan([tmp_path / "lib"], serial, cache=db)
    assert sorted_groups(cold) == sorted(expected, key=sorted)
    assert cold.stats["images_from_cache"] == 0

    def forbidden(*args, **kw):
        raise AssertionError("a warm scan must not do this")

    import dedupe.crops
    import dedupe.exact
    import dedupe.match
    import dedupe.read
    import dedupe.walk

    monkeypatch.setattr(dedupe.walk, "open", forbidden, raising=False)  # not even to sniff the format
    monkeypatch.setattr(dedupe.read, "_read", forbidden)
    monkeypatch.setattr(dedupe.exact, "content_hash_file", forbidden)
    monkeypatch.setattr(dedupe.match, "confirm", forbidden)
    monkeypatch.setattr(dedupe.crops, "geometry", forbidden)
    monkeypatch.setattr(dedupe.crops, "_search_job", forbidden)
    warm = scan([tmp_path / "lib"], serial, cache=db)
    assert warm.stats["keypoints_searched"] == 0
    assert sorted_groups(warm) == sorted_groups(cold)
    assert warm.stats["images_from_cache"] == warm.stats["images_decoded"] == 9
    assert [[m.__dict__ for m in g.members] for g in warm.groups] == [
        [m.__dict__ for m in g.members] for g in cold.groups
    ]


def test_moved_renamed_and_copied_files_are_recognised_without_decoding(tmp_path, serial, decodes):
    lib = tmp_path / "lib"
    library(lib)
    db = tmp_path / "cache.sqlite"
    scan([lib], serial, cache=db)
    assert len(decodes.calls) == 9
    decodes.calls.clear()
    (lib / "moved").mkdir()
    os.rename(lib / "a_small.jpg", lib / "moved" / "renamed.jpg")  # same inode: known by identity
    shutil.copyfile(lib / "b_logo.jpg", lib / "b_logo_copy.jpg")  # new inode, same bytes: known by content
    os.remove(lib / "b_logo.jpg")
    result = scan([lib], serial, cache=db)
    assert decodes.calls == []
    assert {"a.jpg", "renamed.jpg", "a_q50.jpg"} in group_names(result)
    assert {"b.png", "b_logo_copy.jpg"} in group_names(result)
    assert result.stats["images_from_cache"] == 9


def test_a_copy_with_other_metadata_takes_the_features_of_its_picture_without_decoding(tmp_path, serial, decodes):
    """A JPEG whose EXIF was edited or stripped (its coded picture the same) is not decoded again: it
    takes the features of its picture and keeps its own date and camera. One whose orientation tag was
    changed displays otherwise: it is decoded."""
    lib = tmp_path / "lib"
    lib.mkdir()
    pic = photo(66, SIZE)
    original = with_metadata(pic, date="2019:07:14 10:11:12", make="Canon", model="Canon EOS 80D")
    (lib / "original.jpg").write_bytes(original)
    (lib / "restamped.jpg").write_bytes(with_metadata(pic, date="2001:01:01 00:00:00", make="Apple", model="iPhone 8"))
    (lib / "stripped.jpg").write_bytes(strip_metadata(original))
    (lib / "turned.jpg").write_bytes(encode(pic, quality=92, exif=exif(orientation=3, date="2019:07:14 10:11:12")))
    (lib / "other.jpg").write_bytes(with_metadata(photo(77, SIZE)))
    db = tmp_path / "cache.sqlite"
    result = scan([lib], serial, cache=db)
    assert len(decodes.calls) == 3 and {"other.jpg", "turned.jpg"} < set(decodes.calls)  # and one of the 3
    assert result.stats["same_picture"] == 2 and result.stats["images_decoded"] == 5
    assert {"original.jpg", "restamped.jpg", "stripped.jpg", "turned.jpg"} in group_names(result)
    info = {os.path.basename(m.file.path): m.info for g in result.groups for m in g.members}
    assert (info["restamped.jpg"].exif_date, info["restamped.jpg"].camera) == ("2001:01:01 00:00:00", "Apple iPhone 8")
    assert (info["stripped.jpg"].exif_date, info["stripped.jpg"].camera) == (None, None)
    assert (info["original.jpg"].exif_date, info["original.jpg"].camera) == ("2019:07:14 10:11:12", "Canon EOS 80D")
    assert info["turned.jpg"].orientation == 3 and info["original.jpg"].orientation == 1

    decodes.calls.clear()
    (lib / "commented.jpg").write_bytes(add_comment(original))  # found in the cache by its picture
    again = scan([lib], serial, cache=db)
    assert decodes.calls == [] and again.stats["same_picture"] == 1
    assert {"original.jpg", "restamped.jpg", "stripped.jpg", "turned.jpg", "commented.jpg"} in group_names(again)


def test_a_content_still_buffered_stands_in_for_another_of_its_picture(tmp_path):
    from dedupe.read import analyse

    cache = Cache(tmp_path / "cache.sqlite")
    pic = photo(8, SIZE)
    (tmp_path / "a.jpg").write_bytes(with_metadata(pic))
    a = analyse(str(tmp_path / "a.jpg"), 10**8)
    cache.put_image("a" * 32, a.info, a.features, True, "picture-1")
    assert cache._pending  # not written yet
    [(twin, info, codes, framed)] = cache.same_picture("picture-1", True)
    assert twin == "a" * 32 and info == a.info and not framed
    assert cache.same_picture("picture-2", True) == []
    mine = dataclasses.replace(a.info, camera="Other", exif_date=None)
    cache.put_same_picture("b" * 32, twin, mine)
    cache.commit()
    info_b, feats_b = cache.load("b" * 32)
    assert info_b == mine and feats_b.phash == a.features.phash
    assert np.array_equal(feats_b.kp_desc, a.features.kp_desc) and np.array_equal(feats_b.thumb, a.features.thumb)
    assert {h for h, *_ in cache.same_picture("picture-1", True)} == {"a" * 32, "b" * 32}  # now from the file
    cache.put_same_picture("c" * 32, "b" * 32, mine)  # copied in the file
    cache.commit()
    assert cache.load("c" * 32)[1].phash == a.features.phash
    cache.close()


def test_new_verification_rules_judge_again_what_they_stored_without_decoding(tmp_path, serial, decodes, monkeypatch):
    """Verdicts are stored under the rules that gave them (match.RULES): under new rules every pair is
    judged again, from the stored features: no file is decoded."""
    import dedupe.match

    expected = library(tmp_path / "lib")
    db = tmp_path / "cache.sqlite"
    scan([tmp_path / "lib"], serial, cache=db)
    decodes.calls.clear()
    judged, real = [], dedupe.match.confirm
    monkeypatch.setattr(dedupe.match, "confirm", lambda *args: judged.append(args) or real(*args))
    assert sorted_groups(scan([tmp_path / "lib"], serial, cache=db)) == sorted(expected, key=sorted)
    assert judged == []
    monkeypatch.setattr(dedupe.match, "RULES", dedupe.match.RULES + 1)
    assert sorted_groups(scan([tmp_path / "lib"], serial, cache=db)) == sorted(expected, key=sorted)
    assert judged and decodes.calls == []


def test_details_come_in_the_order_asked():
    from dedupe.model import Features, ImageInfo

    cache = Cache(None)
    for h, value in (("a", 0.75), ("b", 3.5)):
        cache.put_image(h, ImageInfo(8, 8, "PNG", True, 64), Features(0, 0, np.zeros((8, 8), np.uint8), value), False)
    assert cache.details(["b", "missing", "a", "b"]).tolist() == [3.5, float("inf"), 0.75, 3.5]
    cache.close()


def test_a_changed_file_is_decoded_again_and_judged_by_its_new_content(tmp_path, serial, decodes):
    lib = tmp_path / "lib"
    library(lib)
    db = tmp_path / "cache.sqlite"
    scan([lib], serial, cache=db)
    decodes.calls.clear()
    (lib / "a_q50.jpg").write_bytes(encode(photo(99, SIZE)))  # now another picture under the old name
    result = scan([lib], serial, cache=db)
    assert decodes.calls == ["a_q50.jpg"]
    assert {"a.jpg", "a_small.jpg"} in group_names(result)
    assert all("a_q50.jpg" not in g for g in group_names(result))


def test_without_keypoints_cached_a_crop_scan_decodes_again(tmp_path, decodes):
    lib = tmp_path / "lib"
    library(lib)
    db = tmp_path / "cache.sqlite"
    scan([lib], Settings(workers=1, crops=False), cache=db)
    decodes.calls.clear()
    second = scan([lib], Settings(workers=1), cache=db)
    assert len(decodes.calls) == 9  # the keypoints were not computed the first time
    assert {"c.jpg", "c_crop.jpg"} in group_names(second)


def test_a_lower_pixel_limit_applies_to_cached_images(tmp_path, serial):
    lib = tmp_path / "lib"
    library(lib)
    db = tmp_path / "cache.sqlite"
    scan([lib], serial, cache=db)
    result = scan([lib], Settings(workers=1, max_pixels=100_000), cache=db)
    big = {os.path.basename(p.path) for p in result.problems if "too many pixels" in p.reason}
    assert big == {"a.jpg", "a_q50.jpg", "b.png", "b_logo.jpg", "c.jpg", "c_crop.jpg", "alone_1.jpg", "alone_2.jpg"}


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other_version"])
def test_a_bad_cache_is_set_aside_and_rebuilt_with_a_warning(tmp_path, serial, damage, monkeypatch):
    lib = tmp_path / "lib"
    expected = library(lib)
    db = tmp_path / "cache.sqlite"
    if damage == "garbage":
        db.write_bytes(cache_mod.SQLITE_HEADER + os.urandom(5000))
    elif damage == "truncated":
        scan([lib], serial, cache=db)
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 3])
        for wal in (Path(f"{db}-wal"), Path(f"{db}-shm")):
            wal.unlink(missing_ok=True)
    else:
        scan([lib], serial, cache=db)
        monkeypatch.setattr(cache_mod, "VERSION", cache_mod.VERSION + 1)
    result = scan([lib], serial, cache=db)
    assert sorted_groups(result) == sorted(expected, key=sorted)
    warnings = [p for p in result.problems if p.stage == "cache"]
    if damage == "truncated" and not warnings:
        pytest.skip("SQLite read this truncation without noticing")  # pragma: no cover
    assert len(warnings) == 1 and "set aside and is rebuilt" in warnings[0].reason
    assert warnings[0].kind == "warning"
    assert Path(f"{db}.old").exists()
    again = scan([lib], serial, cache=db)
    assert not [p for p in again.problems if p.stage == "cache"]
    assert again.stats["images_from_cache"] == 9


def test_a_full_disk_leaves_the_cache_as_it_is_and_its_decisions_hold(tmp_path, serial, monkeypatch):
    """Opening the cache on a full disk failed with "database or disk is full", taken for damage: the
    healthy cache was set aside, and with it the decisions a person had made."""
    lib = tmp_path / "lib"
    library(lib)
    db = tmp_path / "cache.sqlite"
    first = scan([lib], serial, cache=db)
    store = Cache(db)
    for g in first.groups:
        store.put_decision([m.content_hash for m in g.members], "keep_all")
    store.close()
    before = db.read_bytes()

    class Full(sqlite3.Connection):
        def executescript(self, script):
            raise sqlite3.OperationalError("database or disk is full")

    real_connect = sqlite3.connect
    monkeypatch.setattr(
        cache_mod.sqlite3,
        "connect",
        lambda path, *a, **k: real_connect(path, *a, **k, **({"factory": Full} if str(path) == str(db) else {})),
    )
    result = scan([lib], serial, cache=db)
    warnings = [p.reason for p in result.problems if p.stage == "cache"]
    assert len(warnings) == 1 and "nothing is kept this time" in warnings[0]
    assert result.groups == [] and result.stats["suppressed_groups"] == len(first.groups)
    assert db.read_bytes() == before and not list(tmp_path.glob("cache.sqlite.old*"))


def test_a_database_another_program_holds_locked_is_not_cleared(tmp_path, monkeypatch):
    """A browser keeps its databases locked while it runs: unreadable, one was taken for a damaged cache
    and deleted by `cache clear`."""
    db = tmp_path / "places.sqlite"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE moz_places(url)")
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(CacheError, match="locked by another program"):
            clear(db)
        assert _main(monkeypatch, "cache", "clear", "--cache", str(db)) == 2
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert db.exists()


def test_a_folder_named_like_the_snapshots_keeps_what_dedupe_did_not_write(tmp_path, serial):
    """<cache>.snapshots holding a person's files: pruning deleted them, `cache clear` the whole folder."""
    lib = tmp_path / "lib"
    library(lib)
    db = tmp_path / "lib2"
    folder = tmp_path / "lib2.snapshots"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"a photo")
    (folder / "notes.txt").write_text("notes")
    scan([lib], serial, cache=db)
    scan([lib], serial, cache=db)
    assert {p.name for p in folder.iterdir()} >= {"holiday.jpg", "notes.txt"}
    assert any(p.name.endswith(".files.npz") for p in folder.iterdir())  # its own snapshots are there
    assert clear(db) > 0
    assert sorted(p.name for p in folder.iterdir()) == ["holiday.jpg", "notes.txt"] and not db.exists()
    (folder / "holiday.jpg").unlink()
    (folder / "notes.txt").unlink()
    scan([lib], serial, cache=db)
    clear(db)
    assert not folder.exists()  # nothing else in it: the folder goes too


def test_another_programs_database_given_as_the_cache_is_refused_and_left_as_it_is(tmp_path, serial, monkeypatch):
    """It was set aside as a damaged cache (renamed, an empty cache in its place), and `cache clear`
    deleted it."""
    lib = tmp_path / "lib"
    library(lib)
    db = tmp_path / "places.sqlite"
    with sqlite3.connect(db) as other:  # a table called meta too, as a browser's history has
        other.execute("CREATE TABLE meta(key LONGVARCHAR NOT NULL UNIQUE PRIMARY KEY, value LONGVARCHAR)")
        other.execute("INSERT INTO meta VALUES ('version', '46')")
        other.execute("CREATE TABLE bookmarks(url)")
        other.execute("INSERT INTO bookmarks VALUES ('x')")
    other.close()
    before = db.read_bytes()
    for call in (lambda: scan([lib], serial, cache=db), lambda: Cache(db), lambda: clear(db)):
        with pytest.raises(CacheError, match="another program's SQLite database"):
            call()
    for args in (("cache", "info"), ("cache", "clear"), ("scan", str(lib), "-q", "--workers", "1")):
        assert _main(monkeypatch, *args, "--cache", str(db)) == 2, args
    assert db.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["lib", "places.sqlite"]


def _main(monkeypatch, *args: str) -> int:
    """The exit status of the `dedupe` command (cli.main, what `python -m dedupe` runs) with these arguments."""
    from dedupe.cli import main

    monkeypatch.setattr(sys, "argv", ["dedupe", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code


def test_a_photo_given_as_the_cache_is_refused_and_left_as_it_is(tmp_path, serial, monkeypatch, capsys):
    """A file that is not an SQLite database is not a cache: a scan or `cache info` must not set it aside
    as a damaged cache (a photo was renamed to .old, a database put in its place), nor `cache clear`
    delete it. An empty file is a new cache."""
    lib = tmp_path / "lib"
    library(lib)
    jpg = tmp_path / "photo.jpg"
    data = encode(photo(66, SIZE))
    jpg.write_bytes(data)
    with pytest.raises(CacheError, match="not a dedupe cache"):
        Cache(jpg)
    with pytest.raises(CacheError, match="not a dedupe cache"):
        scan([lib], serial, cache=jpg)
    with pytest.raises(CacheError, match="not a dedupe cache"):
        clear(jpg)
    for args in (("cache", "info"), ("cache", "clear"), ("scan", str(lib), "--workers", "1", "-q")):
        assert _main(monkeypatch, *args, "--cache", str(jpg)) == 2, args
        out = capsys.readouterr()
        assert out.err == f"dedupe: {jpg} is not a dedupe cache (not an SQLite database); it was left as it is\n"
        assert "Cleared" not in out.out
    assert jpg.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib", "photo.jpg"]
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    cache = Cache(empty)
    assert cache.warnings == []
    cache.close()


def test_a_cache_set_aside_overwrites_nothing_and_keeps_its_decisions(tmp_path):
    """A cache from another version is set aside under a free name, not over a file already called .old
    (an image, or an earlier cache set aside with its decisions): the decisions come from the file it was
    moved to. `cache clear` deletes the caches set aside, and no other file of those names."""
    db = tmp_path / "c.sqlite"
    image = encode(photo(66, SIZE))
    Path(f"{db}.old").write_bytes(image)
    cache = Cache(db)
    cache.put_decision(("a" * 32, "b" * 32), "not_duplicates")
    cache.close()
    kept = {}
    for n in (1, 2):
        old = sqlite3.connect(db)
        with old:
            old.execute("UPDATE meta SET value='2' WHERE key='version'")
        old.close()
        cache = Cache(db)
        assert Path(f"{db}.old").read_bytes() == image
        kept[n] = Path(f"{db}.old.{n}").read_bytes()
        assert kept[n].startswith(cache_mod.SQLITE_HEADER)
        assert len(cache.warnings) == 1 and f"the old file is {db}.old.{n}" in cache.warnings[0]
        assert cache.decisions() == [(("a" * 32, "b" * 32), "not_duplicates")]
        cache.close()
    assert Path(f"{db}.old.1").read_bytes() == kept[1]  # not overwritten by the second
    assert clear(db) > 0
    assert [p.name for p in tmp_path.iterdir()] == ["c.sqlite.old"]
    assert Path(f"{db}.old").read_bytes() == image


def test_an_unwritable_cache_location_is_a_warning_not_a_failure(tmp_path, serial):
    lib = tmp_path / "lib"
    expected = library(lib)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = scan([lib], serial, cache=blocker / "sub" / "cache.sqlite")
    assert sorted_groups(result) == sorted(expected, key=sorted)
    assert any(p.stage == "cache" and "nothing is kept" in p.reason for p in result.problems)


def test_an_interrupted_scan_keeps_what_it_computed(tmp_path, serial, decodes):
    lib = tmp_path / "lib"
    library(lib)
    db = tmp_path / "cache.sqlite"

    class StopAfter:
        """Counts what the decoding stage has done."""

        def __init__(self):
            self.decoding, self.advanced = False, 0

        def stage(self, title, total):
            self.decoding = "decoding" in title

        def advance(self, n=1):
            self.advanced += n if self.decoding else 0

        def note(self, message):
            pass

        def close(self):
            pass

    progress = StopAfter()
    with pytest.raises(Cancelled):
        scan([lib], serial, progress=progress, cancel=lambda: progress.advanced >= 4, cache=db)
    done = len(decodes.calls)
    assert 4 <= done < 9
    decodes.calls.clear()
    scan([lib], serial, cache=db)
    assert len(decodes.calls) == 9 - done


def test_no_cache_leaves_nothing_behind(tmp_path, serial, monkeypatch):
    import tempfile

    lib = tmp_path / "lib"
    library(lib)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))  # a user's own cache may exist
    result = scan([lib], serial, cache=None)
    assert len(result.groups) == 3
    assert list(scratch.iterdir()) == []
    assert str(default_path()).startswith(str(tmp_path)) and not default_path().exists()


def test_two_scans_at_once_share_one_cache(tmp_path, cli_env):
    lib = tmp_path / "lib"
    expected = library(lib)
    db = tmp_path / "shared.sqlite"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dedupe",
                "scan",
                str(lib),
                "--workers",
                "2",
                "--cache",
                str(db),
                "-q",
                "--json",
                str(tmp_path / f"r{n}.json"),
            ],
            env=cli_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    for p in procs:
        _out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    import json

    for n in range(2):
        report = json.loads((tmp_path / f"r{n}.json").read_text())
        groups = sorted((sorted(os.path.basename(m["path"]) for m in g["members"]) for g in report["groups"]))
        assert groups == sorted(sorted(g) for g in expected)
        assert not [p for p in report["problems"] if p.get("stage") == "cache"]
    cache = Cache(db)
    try:
        assert cache.db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 9
    finally:
        cache.close()


def _open_in_step(paths: list[str], barrier, out) -> None:
    """Open each of `paths` as a cache at the same moment as another process does; put its warnings."""
    for path in paths:
        barrier.wait()
        cache = Cache(path)
        out.put(cache.warnings)
        cache.close()


def test_two_processes_create_one_new_cache_at_once(tmp_path):
    """Neither sets the file the other is creating aside (it had tables but no version yet), nor gives
    up on it as locked (both turning it to WAL): 4 in 10 such openings did one or the other. Two scans
    started together open their cache at nearly the same moment now that start-up is short."""
    paths = [str(tmp_path / f"c{n}.sqlite") for n in range(30)]
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_open_in_step, args=(paths, barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    warnings = [w for _ in range(2 * len(paths)) for w in out.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
    assert warnings == []


def test_cache_info_and_clear_commands(tmp_path, private_cache):
    from typer.testing import CliRunner

    from dedupe.cli import app

    lib = tmp_path / "lib"
    library(lib)
    runner = CliRunner()
    empty = runner.invoke(app, ["cache", "info"])
    assert empty.exit_code == 0 and "no scan has used it yet" in empty.output
    assert runner.invoke(app, ["scan", str(lib), "--workers", "1", "-q"]).exit_code == 0
    assert private_cache.exists()
    shown = runner.invoke(app, ["cache", "info"])
    assert shown.exit_code == 0, shown.output
    assert str(private_cache) in shown.output
    assert "files known: 9; images: 9" in shown.output
    cleared = runner.invoke(app, ["cache", "clear"])
    assert cleared.exit_code == 0 and "freed" in cleared.output
    assert not private_cache.exists()
    both = runner.invoke(app, ["scan", str(lib), "--cache", str(tmp_path / "c"), "--no-cache"])
    assert both.exit_code == 2
    other = tmp_path / "elsewhere.sqlite"
    assert runner.invoke(app, ["scan", str(lib), "--workers", "1", "-q", "--cache", str(other)]).exit_code == 0
    assert other.exists() and not private_cache.exists()
    assert runner.invoke(app, ["scan", str(lib), "--workers", "1", "-q", "--no-cache"]).exit_code == 0
    assert not private_cache.exists()


def test_descriptors_come_stacked_in_the_order_asked():
    from dedupe.model import Features, ImageInfo

    cache = Cache(None)
    rng = np.random.default_rng(3)
    sets = {
        "a": rng.integers(0, 256, (5, 32), dtype=np.uint8),
        "b": np.zeros((0, 32), np.uint8),
        "c": rng.integers(0, 256, (3, 32), dtype=np.uint8),
    }
    for h, desc in sets.items():
        feats = Features(0, 0, np.zeros((8, 8), np.uint8), kp_xy=np.zeros((len(desc), 2), np.float16), kp_desc=desc)
        cache.put_image(h, ImageInfo(8, 8, "PNG", True, 64), feats, keypoints=True)
    data, sizes = cache.descriptors(["c", "a", "missing", "b", "c"])
    assert sizes.tolist() == [3, 5, 0, 0, 3]
    assert np.array_equal(data, np.concatenate([sets["c"], sets["a"], sets["c"]]))
    data, sizes = cache.descriptors(["b", "missing"])  # none at all
    assert data.shape == (0, 32) and sizes.tolist() == [0, 0]
    cache.close()


def test_a_file_recorded_again_is_not_answered_from_an_earlier_look_up(tmp_path):
    from dedupe.model import FileRecord

    cache = Cache(tmp_path / "c.sqlite")
    old = FileRecord("/x/a.jpg", "/x", 10, 1, 7, 42, "JPEG")
    cache.put_file(old, "aa")
    assert cache.known_formats([(7, 42, 10, 1)]) == ["JPEG"]  # read, and kept for known_hashes
    new = FileRecord("/x/a.jpg", "/x", 12, 2, 7, 42, "PNG")  # rewritten in place since
    cache.put_file(new, "bb")
    assert cache.known_hashes([new]) == {0: "bb"}
    assert cache.known_formats([(7, 42, 12, 2)]) == ["PNG"]
    cache.close()


def test_what_a_worker_still_buffers_counts_as_stored_without_a_commit(tmp_path):
    from dedupe.model import Features, ImageInfo

    cache = Cache(tmp_path / "c.sqlite")
    other = sqlite3.connect(tmp_path / "c.sqlite")
    info = ImageInfo(8, 8, "PNG", True, 64)
    plain = Features(0, 0, np.zeros((8, 8), np.uint8))
    cache.put_image("a", info, plain, keypoints=False)
    with_kp = Features(
        0, 0, np.zeros((8, 8), np.uint8), kp_xy=np.zeros((1, 2), np.float16), kp_desc=np.zeros((1, 32), np.uint8)
    )
    cache.put_image("b", info, with_kp, keypoints=True)
    assert cache.have(["a", "b", "c"], keypoints=False) == {"a", "b"}
    assert cache.have(["a", "b", "c"], keypoints=True) == {"b"}
    assert other.execute("SELECT count(*) FROM images").fetchone()[0] == 0  # nothing was committed for it
    cache.commit()
    assert other.execute("SELECT count(*) FROM images").fetchone()[0] == 2
    assert cache.have(["a", "b", "c"], keypoints=True) == {"b"}  # and the same answers from the database
    assert cache.have(["a", "c"], keypoints=False) == {"a"}
    other.close()
    cache.close()


def _rows(path: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("block", [cache_mod.PRUNE_BLOCK, 3])  # rows read in one part, or in several
def test_files_gone_from_the_roots_are_forgotten_with_what_only_they_had(tmp_path, serial, monkeypatch, block):
    monkeypatch.setattr(cache_mod, "PRUNE_BLOCK", block)
    lib, other = tmp_path / "lib", tmp_path / "other"
    library(lib)
    library(other)
    (other / "c_crop.jpg").unlink()  # c_crop's content is then only in lib
    cache = tmp_path / "c.sqlite"
    scan([lib, other], Settings(workers=1), cache=cache)
    hashes = {Path(os.fsdecode(p)).name: h for p, h in _rows(cache, "SELECT path, content_hash FROM files")}
    assert len(_rows(cache, "SELECT 1 FROM files")) == 17 and {"c_crop.jpg", "alone_1.jpg", "a.jpg"} <= set(hashes)
    assert _rows(cache, f"SELECT count(*) FROM verdicts WHERE '{hashes['c_crop.jpg']}' IN (first, second)")[0][0]

    (lib / "new.png").write_bytes(encode(photo(99, SIZE), "PNG"))  # made first: no inode of a file gone
    os.replace(lib / "new.png", lib / "b.png")  # another file in its place
    (lib / "c_crop.jpg").unlink()  # gone, and no other file has its content
    (lib / "alone_1.jpg").unlink()  # gone, but other/alone_1.jpg has the same bytes
    os.rename(lib / "a.jpg", lib / "renamed.jpg")  # moved: the same file
    result = scan([lib], Settings(workers=1, exclude=("a_small.jpg",)), cache=cache)
    assert result.stats["cache_forgotten"] == 3  # c_crop, alone_1 and the first b.png
    stored = {h for (h,) in _rows(cache, "SELECT content_hash FROM images")}
    assert hashes["c_crop.jpg"] in stored  # stored less than ORPHAN_AGE ago: perhaps by a scan running now
    monkeypatch.setattr(cache_mod, "ORPHAN_AGE", 0.0)
    (lib / "alone_2.jpg").unlink()
    result = scan([lib], Settings(workers=1, exclude=("a_small.jpg",)), cache=cache)

    assert result.stats["cache_forgotten"] == 1  # alone_2
    paths = {Path(os.fsdecode(p)).name for (p,) in _rows(cache, "SELECT path FROM files WHERE path IS NOT NULL")}
    assert "c_crop.jpg" not in paths and "renamed.jpg" in paths and "a_small.jpg" in paths  # excluded, still there
    assert len(_rows(cache, "SELECT 1 FROM files")) == 17 - 4 + 1  # and the new b.png
    stored = {h for (h,) in _rows(cache, "SELECT content_hash FROM images")}
    assert hashes["c_crop.jpg"] not in stored  # no file has it any more
    assert {hashes["alone_1.jpg"], hashes["alone_2.jpg"], hashes["b.png"]} <= stored  # other/ has them
    assert not _rows(cache, f"SELECT 1 FROM verdicts WHERE '{hashes['c_crop.jpg']}' IN (first, second)")
    assert scan([lib], Settings(workers=1), cache=cache).stats["cache_forgotten"] == 0


def test_a_cache_from_before_file_paths_gets_them_and_forgets_nothing_it_cannot_place(tmp_path, serial, decodes):
    lib = tmp_path / "lib"
    library(lib)
    cache = tmp_path / "c.sqlite"
    scan([lib], Settings(workers=1), cache=cache)
    db = sqlite3.connect(cache)
    db.executescript(  # the files table as it was before it had paths
        "CREATE TABLE f2(device INTEGER NOT NULL, inode INTEGER NOT NULL, size INTEGER NOT NULL,"
        " mtime_ns INTEGER NOT NULL, content_hash TEXT NOT NULL, format TEXT, PRIMARY KEY(device, inode))"
        " WITHOUT ROWID; INSERT INTO f2 SELECT device, inode, size, mtime_ns, content_hash, format FROM files;"
        " DROP TABLE files; ALTER TABLE f2 RENAME TO files;"
    )
    db.close()
    shutil.rmtree(f"{cache}.snapshots")  # so that every file is looked up in the cache
    (lib / "alone_2.jpg").unlink()
    decodes.calls.clear()
    result = scan([lib], Settings(workers=1), cache=cache)
    assert decodes.calls == [] and result.stats["cache_forgotten"] == 0  # alone_2's row has no path
    named = _rows(cache, "SELECT path FROM files WHERE path IS NOT NULL")
    assert len(named) == 8 and len(_rows(cache, "SELECT 1 FROM files")) == 9


def test_a_cache_from_before_picture_keys_gets_them(tmp_path, serial, decodes):
    """Images stored before the cache kept their coded picture stand in for none (their copies with
    other metadata are decoded); what is decoded from then on does."""
    lib = tmp_path / "lib"
    library(lib)
    cache = tmp_path / "c.sqlite"
    scan([lib], serial, cache=cache)
    db = sqlite3.connect(cache)
    db.executescript("DROP INDEX images_picture; ALTER TABLE images DROP COLUMN picture;")
    db.close()
    (lib / "a_comment.jpg").write_bytes(add_comment((lib / "a.jpg").read_bytes()))
    decodes.calls.clear()
    result = scan([lib], serial, cache=cache)
    assert decodes.calls == ["a_comment.jpg"] and result.stats["same_picture"] == 0
    (lib / "a_tagged.jpg").write_bytes(add_comment((lib / "a.jpg").read_bytes(), b"tagged: beach"))
    decodes.calls.clear()
    result = scan([lib], serial, cache=cache)
    assert decodes.calls == [] and result.stats["same_picture"] == 1
    assert {"a.jpg", "a_small.jpg", "a_q50.jpg", "a_comment.jpg", "a_tagged.jpg"} in group_names(result)


def test_a_store_answers_by_file_index_whatever_order_images_came_in(tmp_path):
    """Store: images added one by one (from the workers) and in bulk (from the cache), at any file
    indices; hashes, codes, sizes and pHashes are answered by file index, codes() in walk order."""
    from dedupe.cache import CODES, Store

    cache = Cache(tmp_path / "c.sqlite")
    store = Store(cache)
    codes = lambda i: np.arange(i * CODES, (i + 1) * CODES, dtype=np.uint64)  # noqa: E731
    store.add(7, "h7", codes(7).tobytes(), True, (70, 71))
    store.add_many(
        [3, 2000, 0],
        ["h3", "h2000", "h0"],
        np.stack([codes(3), codes(2000), codes(0)]),
        np.array([False, False, True]),
        np.array([[30, 31], [2000, 2001], [0, 1]]),
    )
    store.add(5, "h5", codes(5).tobytes(), False, (50, 51))
    store.add_many([], [], np.zeros((0, CODES), np.uint64), np.zeros(0, bool), np.zeros((0, 2), np.int64))
    assert len(store) == len(store.hashes) == 5
    assert list(store) == list(store.hashes) == [7, 3, 2000, 0, 5]  # as added
    assert dict(store.hashes) == {7: "h7", 3: "h3", 2000: "h2000", 0: "h0", 5: "h5"}
    assert store.hashes_of([0, 2000, 7]) == ["h0", "h2000", "h7"]
    for absent in (1, 6, 1999, 2001, 10**6, -1):
        assert absent not in store and absent not in store.hashes
        with pytest.raises(KeyError):
            store.hashes[absent]
    with pytest.raises(KeyError):
        store.hashes_of([0, 1])
    images, got, framed = store.codes()
    assert images == [0, 3, 5, 7, 2000]
    assert np.array_equal(got, np.stack([codes(i) for i in images]))
    assert framed.tolist() == [True, False, False, True, False]
    assert store.sizes([2000, 5, 0]).tolist() == [[2000, 2001], [50, 51], [0, 1]]
    assert [store.phash(i) for i in images] == [i * CODES for i in images]
    cache.close()


def test_commands_that_act_never_miss_decisions_they_cannot_read_or_keep(tmp_path, serial, monkeypatch):
    """On a full or read-only disk apply did not see a "not duplicates" decision and moved the group's
    files, and decide said it remembered what it could not keep."""
    from dedupe.report.jsonreport import write_report

    lib = tmp_path / "lib"
    library(lib)
    db = tmp_path / "cache.sqlite"
    report = tmp_path / "r.json"
    write_report(scan([lib], serial, cache=db), report)
    store = Cache(db)
    store.put_decision(("x",), "keep_all")
    store.close()
    real_connect = sqlite3.connect

    def unreadable(target, *a, **k):
        if str(target).startswith("file:"):
            raise sqlite3.OperationalError("unable to open database file")
        return real_connect(target, *a, **k)

    monkeypatch.setattr(sqlite3, "connect", unreadable)
    before = sorted(p.name for p in lib.rglob("*"))
    assert _main(monkeypatch, "apply", str(report), "--cache", str(db), "--move-to", str(tmp_path / "q")) == 2
    assert sorted(p.name for p in lib.rglob("*")) == before and not (tmp_path / "q").exists()
    monkeypatch.setattr(sqlite3, "connect", real_connect)

    class Full(sqlite3.Connection):
        def executescript(self, script):
            raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(
        cache_mod.sqlite3,
        "connect",
        lambda path, *a, **k: real_connect(path, *a, **k, **({"factory": Full} if str(path) == str(db) else {})),
    )
    plan = make_plan(json.loads(report.read_text()))
    plan["groups"][0]["decision"] = "keep_all"
    for f in plan["groups"][0]["files"]:
        f["action"] = "keep"
    saved = tmp_path / "plan.json"
    saved.write_text(json.dumps(plan))
    assert _main(monkeypatch, "decide", str(saved), "--cache", str(db)) == 2


def test_clear_deletes_only_dedupe_caches_and_refuses_what_is_not_a_file(tmp_path, monkeypatch):
    """Another program's database named <cache>.old was deleted by cache clear; a device or a pipe given
    as --cache was unlinked (or hung)."""
    db = tmp_path / "features.sqlite"
    with sqlite3.connect(tmp_path / "features.sqlite.old") as other:
        other.execute("CREATE TABLE bookmarks(url)")
    other.close()
    clear(db)
    assert (tmp_path / "features.sqlite.old").exists()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args in (("cache", "clear"), ("cache", "info")):
        assert _main(monkeypatch, *args, "--cache", str(fifo)) == 2
    assert fifo.is_fifo()
