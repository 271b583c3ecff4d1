"""Stage 1: which files are read, recognised by their bytes, and what is reported instead."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dedupe.config import Settings
from dedupe.walk import sniff, walk
from images import encode, names, photo, save


def tiny(seed: int = 0):
    return photo(seed, (64, 48))


def problem(result, name: str):
    found = [p for p in result.problems if os.path.basename(p.path) == name]
    assert len(found) == 1, f"expected one problem for {name}, got {result.problems}"
    return found[0]


def test_matching_names_give_no_warning(tmp_path, serial):
    save(tiny(), tmp_path / "a.jpeg", "JPEG")
    save(tiny(), tmp_path / "b.TIF", "TIFF")
    save(tiny(), tmp_path / "c.png", "PNG")
    save(tiny(), tmp_path / "noext", "PNG")  # no extension: nothing to contradict
    out = walk([tmp_path], serial)
    assert len(out.files) == 4
    assert out.problems == []


@pytest.mark.parametrize(
    "fmt,expected",
    [
        ("JPEG", "JPEG"),
        ("PNG", "PNG"),
        ("WEBP", "WEBP"),
        ("TIFF", "TIFF"),
        ("BMP", "BMP"),
        ("GIF", "GIF"),
    ],
)
def test_sniff_recognises_formats_by_their_bytes(fmt, expected):
    assert sniff(encode(tiny(), fmt)[:32]) == expected


def test_sniff_recognises_heic():
    pytest.importorskip("pillow_heif")
    assert sniff(encode(tiny(), "HEIF")[:32]) == "HEIF"


@pytest.mark.parametrize("head", [b"", b"hello world", b'{"a": 1}', b"\x00" * 32, b"BM" + b"\x00" * 30])
def test_sniff_rejects_non_images(head):
    assert sniff(head) is None


def test_content_decides_not_the_name(tmp_path, serial):
    save(tiny(), tmp_path / "really_png.jpg", "PNG")
    save(tiny(1), tmp_path / "really_jpeg.png", "JPEG")
    (tmp_path / "notes.jpg").write_text("this is a text file, not a photo\n")
    (tmp_path / "readme.txt").write_text("hello\n")
    (tmp_path / "data.json").write_text('{"a": 1}')
    out = walk([tmp_path], serial)
    formats = {os.path.basename(f.path): f.format for f in out.files}
    assert formats == {"really_png.jpg": "PNG", "really_jpeg.png": "JPEG"}

    for name, fmt in (("really_png.jpg", "PNG"), ("really_jpeg.png", "JPEG")):
        warn = problem(out, name)  # read, with a warning that the name does not match the content
        assert warn.kind == "warning" and fmt in warn.reason
    bad = problem(out, "notes.jpg")
    assert "not an image" in bad.reason and bad.kind == "error" and bad.stage == "walk"
    txt = problem(out, "readme.txt")
    assert "not an image" in txt.reason and txt.kind == "skipped"
    assert problem(out, "data.json").kind == "skipped"
    assert out.seen == 5


def test_zero_byte_file_is_a_problem(tmp_path, serial):
    (tmp_path / "empty.jpg").write_bytes(b"")
    save(tiny(), tmp_path / "ok.jpg")
    out = walk([tmp_path], serial)
    assert names(f.path for f in out.files) == {"ok.jpg"}
    p = problem(out, "empty.jpg")
    assert "empty" in p.reason and p.kind == "error"


def test_order_is_deterministic_and_recursive(tmp_path, serial):
    for rel in ["b/2.jpg", "a/1.jpg", "c.jpg", "a/z/3.jpg", "a.jpg"]:
        save(tiny(len(rel)), tmp_path / rel)
    first = [f.path for f in walk([tmp_path], serial).files]
    second = [f.path for f in walk([tmp_path], serial).files]
    assert first == second
    assert len(first) == 5
    assert all(Path(p).is_absolute() for p in first)


def test_include_globs(tmp_path):
    save(tiny(), tmp_path / "a.jpg")
    save(tiny(), tmp_path / "sub" / "b.png")
    save(tiny(), tmp_path / "sub" / "c.jpg")
    out = walk([tmp_path], Settings(include=("*.png",)))
    assert names(f.path for f in out.files) == {"b.png"}
    out = walk([tmp_path], Settings(include=("sub/*",)))
    assert names(f.path for f in out.files) == {"b.png", "c.jpg"}


def test_exclude_globs_files_and_folders(tmp_path):
    save(tiny(), tmp_path / "a.jpg")
    save(tiny(), tmp_path / "a.tmp.jpg")
    save(tiny(), tmp_path / "cache" / "b.jpg")
    save(tiny(), tmp_path / "keep" / "c.jpg")
    save(tiny(), tmp_path / "keep" / "cache" / "d.jpg")
    out = walk([tmp_path], Settings(exclude=("*.tmp.jpg", "cache")))
    assert names(f.path for f in out.files) == {"a.jpg", "c.jpg"}
    out = walk([tmp_path], Settings(exclude=("keep/*",)))
    assert names(f.path for f in out.files) == {"a.jpg", "a.tmp.jpg", "b.jpg"}


def test_an_absolute_pattern_matches_the_whole_path(tmp_path):
    """`--exclude ~/Photos/Backup` (the shell expands ~) matched nothing, and the backup was scanned."""
    save(tiny(), tmp_path / "a.jpg")
    save(tiny(), tmp_path / "backup" / "b.jpg")
    save(tiny(), tmp_path / "backup" / "deep" / "c.jpg")
    save(tiny(), tmp_path / "other" / "backup" / "d.jpg")
    for folder in (str(tmp_path / "backup"), str(tmp_path / "backup") + os.sep):
        out = walk([tmp_path], Settings(exclude=(folder,)))
        assert names(f.path for f in out.files) == {"a.jpg", "d.jpg"}
    out = walk([tmp_path], Settings(exclude=(str(tmp_path / "*" / "backup"),)))
    assert names(f.path for f in out.files) == {"a.jpg", "b.jpg", "c.jpg"}
    out = walk([tmp_path], Settings(include=(str(tmp_path / "backup" / "*.jpg"),)))  # * spans folders
    assert names(f.path for f in out.files) == {"b.jpg", "c.jpg"}


def test_an_absolute_pattern_names_the_folder_whichever_way_it_is_reached(tmp_path):
    """Through a link to the library, with '..' or a doubled slash: the same folder."""
    photos = tmp_path / "ex" / "Photos"
    save(tiny(), photos / "a.jpg")
    save(tiny(), photos / "Backup" / "b.jpg")
    (tmp_path / "link").symlink_to(photos)
    backup = str(photos / "Backup")
    for root, pattern in [
        (tmp_path / "link", backup),
        (photos, str(tmp_path / "link" / "Backup")),
        (photos, str(photos) + "/../Photos/Backup"),
        (photos, backup.replace("/ex/", "//ex/")),
        (tmp_path / "link", str(tmp_path / "link" / "Back*")),
    ]:
        out = walk([root], Settings(exclude=(pattern,)))
        assert names(f.path for f in out.files) == {"a.jpg"}, (root, pattern)


def test_a_file_given_as_a_root_is_excluded_as_it_is_included(tmp_path):
    save(tiny(), tmp_path / "a.jpg")
    save(tiny(), tmp_path / "b.jpg")
    roots = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    assert names(f.path for f in walk(roots, Settings(exclude=(str(tmp_path / "b.jpg"),))).files) == {"a.jpg"}
    assert names(f.path for f in walk(roots, Settings(exclude=("b.*",))).files) == {"a.jpg"}
    assert names(f.path for f in walk(roots, Settings(include=("b.*",))).files) == {"b.jpg"}


def test_exclude_nested_folder_pattern(tmp_path):
    save(tiny(), tmp_path / "album" / "@eaDir" / "thumb.jpg")
    save(tiny(), tmp_path / "album" / "photo.jpg")
    out = walk([tmp_path], Settings(exclude=("*/@eaDir",)))
    assert names(f.path for f in out.files) == {"photo.jpg"}


def test_exclude_documented_example_also_at_top_level(tmp_path):
    save(tiny(), tmp_path / "@eaDir" / "thumb.jpg")
    save(tiny(), tmp_path / "photo.jpg")
    out = walk([tmp_path], Settings(exclude=("*/@eaDir",)))
    assert names(f.path for f in out.files) == {"photo.jpg"}


def test_hidden_files_and_folders(tmp_path):
    save(tiny(), tmp_path / "visible.jpg")
    save(tiny(), tmp_path / ".hidden.jpg")
    save(tiny(), tmp_path / ".thumbs" / "t.jpg")
    save(tiny(), tmp_path / "sub" / ".cache" / "c.jpg")
    assert names(f.path for f in walk([tmp_path], Settings()).files) == {"visible.jpg"}
    assert names(f.path for f in walk([tmp_path], Settings(hidden=True)).files) == {
        "visible.jpg",
        ".hidden.jpg",
        "t.jpg",
        "c.jpg",
    }


needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks")


@needs_symlinks
def test_symlinks_not_followed_by_default(tmp_path):
    real = tmp_path / "real"
    save(tiny(), real / "a.jpg")
    lib = tmp_path / "lib"
    lib.mkdir()
    save(tiny(1), lib / "b.jpg")
    os.symlink(real, lib / "linked_folder")
    os.symlink(real / "a.jpg", lib / "linked_file.jpg")
    out = walk([lib], Settings())
    assert names(f.path for f in out.files) == {"b.jpg"}
    for name in ("linked_folder", "linked_file.jpg"):
        p = problem(out, name)
        assert "symbolic link" in p.reason and p.kind == "skipped"


@needs_symlinks
def test_follow_symlinks_is_loop_safe(tmp_path):
    lib = tmp_path / "lib"
    save(tiny(), lib / "a.jpg")
    save(tiny(1), lib / "sub" / "b.jpg")
    os.symlink(lib, lib / "sub" / "up")  # a link to a parent folder: a loop
    os.symlink(lib / "sub", lib / "sub" / "self")  # a link to its own folder
    out = walk([lib], Settings(follow_symlinks=True))
    assert sorted(names(f.path for f in out.files)) == ["a.jpg", "b.jpg"]
    assert len(out.files) == 2


@needs_symlinks
def test_followed_file_link_is_read_once(tmp_path):
    lib = tmp_path / "lib"
    save(tiny(), lib / "a.jpg")
    os.symlink(lib / "a.jpg", lib / "b_link.jpg")
    out = walk([lib], Settings(follow_symlinks=True))
    assert names(f.path for f in out.files) == {"a.jpg"}
    assert [(os.path.basename(k.path), os.path.basename(k.same_as)) for k in out.links] == [("b_link.jpg", "a.jpg")]


@needs_symlinks
def test_dangling_symlink_followed_is_a_problem(tmp_path):
    save(tiny(), tmp_path / "a.jpg")
    os.symlink(tmp_path / "gone.jpg", tmp_path / "dangling.jpg")
    out = walk([tmp_path], Settings(follow_symlinks=True))
    assert names(f.path for f in out.files) == {"a.jpg"}
    assert problem(out, "dangling.jpg").kind == "error"


def test_hard_link_is_read_once(tmp_path, serial):
    save(tiny(), tmp_path / "a.jpg")
    (tmp_path / "sub").mkdir()
    os.link(tmp_path / "a.jpg", tmp_path / "sub" / "z_hard.jpg")
    out = walk([tmp_path], serial)
    assert len(out.files) == 1
    assert len(out.links) == 1
    link = out.links[0]
    assert {os.path.basename(link.path), os.path.basename(link.same_as)} == {"a.jpg", "z_hard.jpg"}
    assert link.same_as == out.files[0].path


def test_several_roots(tmp_path, serial):
    save(tiny(), tmp_path / "one" / "a.jpg")
    save(tiny(1), tmp_path / "two" / "b.jpg")
    save(tiny(2), tmp_path / "three.jpg")  # a file given as a root
    out = walk([tmp_path / "one", tmp_path / "two", tmp_path / "three.jpg"], serial)
    assert names(f.path for f in out.files) == {"a.jpg", "b.jpg", "three.jpg"}
    roots = {os.path.basename(f.path): f.root for f in out.files}
    assert roots["a.jpg"] == str(tmp_path / "one")
    assert roots["b.jpg"] == str(tmp_path / "two")


def test_missing_root_is_a_problem_not_a_crash(tmp_path, serial):
    save(tiny(), tmp_path / "one" / "a.jpg")
    out = walk([tmp_path / "one", tmp_path / "nope"], serial)
    assert names(f.path for f in out.files) == {"a.jpg"}
    assert problem(out, "nope").kind == "error"


@pytest.mark.parametrize("order", ["outer_first", "inner_first", "same_twice"])
def test_overlapping_roots_read_each_file_once(tmp_path, serial, order):
    save(tiny(), tmp_path / "a.jpg")
    save(tiny(1), tmp_path / "sub" / "b.jpg")
    save(tiny(2), tmp_path / "sub" / "deeper" / "c.jpg")
    roots = {
        "outer_first": [tmp_path, tmp_path / "sub"],
        "inner_first": [tmp_path / "sub", tmp_path],
        "same_twice": [tmp_path, tmp_path],
    }[order]
    out = walk(roots, serial)
    paths = [f.path for f in out.files]
    assert len(paths) == len(set(paths)) == 3
    assert names(paths) == {"a.jpg", "b.jpg", "c.jpg"}


def test_a_file_the_cache_knows_unchanged_is_not_opened_again(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"not an image, but the cache says it was a JPEG")
    (tmp_path / "b.jpg").write_bytes(b"changed since: no longer an image")
    asked = []

    def known(identities):
        asked.extend(identities.tolist())
        st = os.stat(tmp_path / "a.jpg")
        a = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]
        return ["JPEG" if i == a else None for i in identities.tolist()]

    result = walk([tmp_path], Settings(), known_formats=known)
    assert len(asked) == 2
    assert [(os.path.basename(f.path), f.format) for f in result.files] == [("a.jpg", "JPEG")]
    assert [(os.path.basename(p.path), p.kind) for p in result.problems] == [("b.jpg", "error")]
    assert result.ids.tolist() == [a for a in asked if a[:2] == list(result.files[0].identity)]
