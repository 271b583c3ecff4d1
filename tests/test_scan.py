"""The whole pipeline on a generated library: what is grouped, what is not, what is reported."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dedupe import Cancelled, Settings, scan
from images import (
    HAVE_HEIF,
    add_comment,
    blur,
    border,
    brighten,
    contrast,
    convert_format,
    crop,
    encode,
    grayscale,
    group_names,
    group_of,
    logo,
    noise,
    photo,
    recompress,
    resize,
    restamp_metadata,
    store_oriented,
    strip_metadata,
    watermark,
    with_metadata,
)

SIZE = (560, 420)


def build_library(root: Path) -> dict:
    """Write the library; return the expected groups (sets of names) and the names that must stay apart."""
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}

    # A: byte copies, metadata-only changes, recompression, resizing
    a = photo(101, SIZE)
    a_orig = with_metadata(a, date="2018:05:01 12:00:00", make="Canon", model="Canon EOS 80D")
    files["a_orig.jpg"] = a_orig
    files["copies/a_orig.jpg"] = a_orig
    files["a_exact_copy.jpg"] = a_orig
    files["a_comment.jpg"] = add_comment(a_orig)
    files["a_stripped.jpg"] = strip_metadata(a_orig)
    files["a_restamped.jpg"] = restamp_metadata(a_orig)
    files["a_q40.jpg"] = encode(a, quality=40)
    files["a_q55.jpg"] = encode(recompress(a, 80), quality=55)
    files["a_q70.jpg"] = encode(a, quality=70)
    files["a_half.jpg"] = encode(resize(a, 0.5), quality=85)
    files["a_quarter.jpg"] = encode(resize(a, 0.25), quality=85)

    # B: format changes and EXIF orientation
    b = photo(202, SIZE)
    files["b_orig.jpg"] = encode(b, quality=92)
    files["b.png"] = convert_format(b, "PNG")
    files["b.webp"] = convert_format(b, "WEBP")
    files["b.tif"] = convert_format(b, "TIFF")
    files["b.bmp"] = convert_format(b, "BMP")
    files["b.gif"] = convert_format(b, "GIF")
    if HAVE_HEIF:
        files["b.heic"] = convert_format(b, "HEIC")
    files["b_png_named.jpg"] = convert_format(resize(b, 0.8), "PNG")  # wrong extension, still read
    files["b_rot6.jpg"] = store_oriented(b, 6)
    files["b_rot3.jpg"] = store_oriented(b, 3)
    files["b_rot8.jpg"] = store_oriented(resize(b, 0.7), 8, quality=80)

    # C: pixel edits
    c = photo(303, SIZE)
    files["c_orig.jpg"] = encode(c, quality=95)
    files["c_bright.jpg"] = encode(brighten(c, 1.25))
    files["c_contrast.jpg"] = encode(contrast(c, 1.35))
    files["c_gray.jpg"] = encode(grayscale(c))
    files["c_watermark.jpg"] = encode(watermark(c))
    files["c_logo.jpg"] = encode(logo(c))
    files["c_border.jpg"] = encode(border(c, 0.02))
    files["c_blur.jpg"] = encode(blur(c, 1.0))
    files["c_noise.jpg"] = encode(noise(c, 6))
    files["c_crop.jpg"] = encode(crop(c, 0.025))

    # D: only byte-identical copies
    d = encode(photo(404, (400, 300)))
    files["d.jpg"] = d
    files["sub/dir/d_copy.jpg"] = d

    # different pictures that must stay apart
    for n, seed in enumerate((505, 506, 507)):  # same size and palette, other content
        files[f"x_samepal_{n}.jpg"] = encode(photo(seed, SIZE, palette_seed=505))
    big = photo(606, (1120, 420))  # the two halves of one picture
    files["y_left_half.jpg"] = encode(big.crop((0, 0, 560, 420)))
    files["y_right_half.jpg"] = encode(big.crop((560, 0, 1120, 420)))
    grid = photo(607, (840, 630))  # neighbouring non-overlapping crops
    files["y_tile_00.jpg"] = encode(grid.crop((0, 0, 420, 315)))
    files["y_tile_01.jpg"] = encode(grid.crop((420, 0, 840, 315)))
    files["y_tile_10.jpg"] = encode(grid.crop((0, 315, 420, 630)))
    wide = photo(608, (760, 420))  # a burst: the camera moved by 30% of the width
    files["z_burst_1.jpg"] = encode(wide.crop((0, 0, 560, 420)))
    files["z_burst_2.jpg"] = encode(wide.crop((168, 0, 728, 420)))
    for n in range(4):
        files[f"w_single_{n}.jpg"] = encode(photo(700 + n, (480, 360)))

    # bad files
    good = encode(photo(800, (300, 200)))
    files["bad/corrupt.jpg"] = good[:200] + bytes(range(256)) * 8
    files["bad/truncated.jpg"] = good[: len(good) // 2]
    files["bad/empty.jpg"] = b""
    files["bad/text.jpg"] = b"This is not a photo.\n"
    files["bad/movie.png"] = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64
    files["bad/notes.txt"] = b"shopping list\n"

    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)

    groups = [
        {
            "a_orig.jpg",
            "a_exact_copy.jpg",
            "a_comment.jpg",
            "a_stripped.jpg",
            "a_restamped.jpg",
            "a_q40.jpg",
            "a_q55.jpg",
            "a_q70.jpg",
            "a_half.jpg",
            "a_quarter.jpg",
        },  # copies/a_orig.jpg has the same name
        {n for n in files if n.startswith(("b_", "b."))},
        {n for n in files if n.startswith("c_")},
        {"d.jpg", "d_copy.jpg"},
    ]
    apart = [n for n in files if n[0] in "xyzw"]
    bad = {
        "corrupt.jpg": "error",
        "truncated.jpg": "error",
        "empty.jpg": "error",
        "text.jpg": "error",
        "movie.png": "error",
        "notes.txt": "skipped",
    }
    warn = {"b_png_named.jpg": "warning"}  # read and grouped, but its name does not match its content
    return {"files": files, "groups": groups, "apart": apart, "bad": bad, "warn": warn}


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("library")
    expected = build_library(root)
    result = scan([root], Settings(workers=1))
    return root, expected, result


def signature(result):
    """Everything about the groups that must not change between runs: members, keepers, relations."""
    return [
        (g.kind, g.keeper, g.keeper_reason, [(m.file.path, m.relation, m.score, m.phash) for m in g.members])
        for g in result.groups
    ]


def by_path(result, root):
    return {frozenset(os.path.relpath(m.file.path, root) for m in g.members) for g in result.groups}


# --------------------------------------------------------------------------- what is grouped


@pytest.mark.parametrize("letter", ["a", "b", "c", "d"])
def test_copies_grouped_with_their_original(library, letter):
    root, expected, result = library
    want = next(g for g in expected["groups"] if any(n.startswith(letter) for n in g))
    orig = f"{letter}_orig.jpg" if letter != "d" else "d.jpg"
    got = group_of(result, orig)
    assert got is not None, f"{orig} not in any group"
    missing, extra = want - got, got - want
    assert not missing and not extra, f"missing {sorted(missing)}, extra {sorted(extra)}"


def test_exactly_the_expected_groups(library):
    root, expected, result = library
    assert sorted(map(sorted, group_names(result))) == sorted(map(sorted, expected["groups"]))
    # the byte copy in another folder is in A's group too
    a_paths = next(p for p in by_path(result, root) if "a_orig.jpg" in p)
    assert os.path.join("copies", "a_orig.jpg") in a_paths


def test_different_pictures_not_grouped(library):
    root, expected, result = library
    grouped = {n for g in group_names(result) for n in g}
    for name in expected["apart"]:
        assert name not in grouped, f"{name} was grouped: {group_of(result, name)}"


def test_group_members_and_keeper(library):
    root, expected, result = library
    for g in result.groups:
        assert g.keeper == 0 and g.members[0].relation == "keeper"
        assert sum(m.relation == "keeper" for m in g.members) == 1
        keeper = g.members[0]
        for m in g.members[1:]:
            if m.relation == "exact":
                assert m.content_hash == keeper.content_hash
            else:
                assert m.relation == "near" and m.content_hash != keeper.content_hash
                assert m.score >= 70
                assert {"ssim", "hash_distance", "transform"} <= set(m.evidence)
        assert g.bytes_freed == sum(m.file.size for m in g.members[1:])
        assert g.kind == ("exact" if all(m.relation != "near" for m in g.members) else "near")
    kinds = {min(group_names(result)[i]): g.kind for i, g in enumerate(result.groups)}
    assert kinds["d.jpg"] == "exact"
    assert kinds["a_comment.jpg"] == "near"


def test_keeper_of_format_group_is_lossless(library):
    """B: same picture everywhere; a full-size lossless file wins, and of those the largest."""
    root, expected, result = library
    g = next(g for g in result.groups if "b_orig.jpg" in {os.path.basename(m.file.path) for m in g.members})
    keeper = g.members[g.keeper]
    full_lossless = [m for m in g.members if m.info.lossless and (m.info.width, m.info.height) == SIZE]
    assert keeper.info.lossless
    assert keeper.file.size == max(m.file.size for m in full_lossless)
    assert os.path.basename(keeper.file.path) in ("b.bmp", "b.tif")
    assert g.keeper_reason


def test_oriented_copies_report_displayed_size(library):
    root, expected, result = library
    members = {os.path.basename(m.file.path): m for g in result.groups for m in g.members}
    assert (members["b_rot6.jpg"].info.width, members["b_rot6.jpg"].info.height) == SIZE
    assert members["b_rot6.jpg"].info.orientation == 6
    assert (members["b_rot8.jpg"].info.width, members["b_rot8.jpg"].info.height) == (392, 294)
    for name in ("b_rot3.jpg", "b_rot6.jpg", "b_rot8.jpg"):  # upright once decoded: no turn needed to match
        transform = members[name].evidence.get("transform", {})
        assert not {"rotated", "mirrored"} & set(transform), (name, transform)


def test_groups_sorted_by_bytes_freed(library):
    _, _, result = library
    freed = [g.bytes_freed for g in result.groups]
    assert freed == sorted(freed, reverse=True)
    assert result.bytes_freed == sum(freed)
    assert result.files_to_remove == sum(len(g.members) - 1 for g in result.groups)


# --------------------------------------------------------------------------- problems


def test_bad_files_reported_and_scan_continues(library):
    root, expected, result = library
    reported = {os.path.basename(p.path): p for p in result.problems}
    for name, kind in expected["bad"].items():
        assert name in reported, f"{name} not reported; problems: {sorted(reported)}"
        p = reported[name]
        assert p.reason and p.kind == kind, p
        assert p.stage in ("walk", "exact", "decode")
    assert "truncated" in reported["truncated.jpg"].reason
    assert "empty" in reported["empty.jpg"].reason
    assert "not an image" in reported["text.jpg"].reason
    assert "not an image" in reported["movie.png"].reason
    assert len(result.groups) == 4
    misnamed = reported["b_png_named.jpg"]
    assert misnamed.kind == "warning" and "PNG" in misnamed.reason
    # nothing else is a problem
    assert set(reported) == set(expected["bad"]) | set(expected["warn"])
    assert [p.path for p in result.problems] == sorted(p.path for p in result.problems)


def test_pictures_a_pixel_wide_are_read_and_the_scan_goes_on(tmp_path, serial):
    """A 1x1 picture (a web page's tracking pixel) and a line or a column a pixel wide crashed ORB's
    pyramid, which stopped the whole scan. They are pictures without keypoints: read, grouped with
    nothing, and the copy of a photo beside them is still found."""
    from dedupe.features.keypoints import keypoints

    Image.new("RGB", (1, 1), (200, 10, 10)).save(tmp_path / "pixel.png")
    Image.new("L", (300, 1), 90).save(tmp_path / "line.png")
    Image.new("L", (1, 300), 160).save(tmp_path / "column.png")
    a = photo(5, (400, 300))
    (tmp_path / "a.jpg").write_bytes(encode(a, quality=95))
    (tmp_path / "a_small.jpg").write_bytes(encode(resize(a, 0.5)))
    result = scan([tmp_path], serial)
    assert group_names(result) == [{"a.jpg", "a_small.jpg"}]
    assert result.problems == [] and result.stats["images_decoded"] == 5
    for shape in ((1, 1), (1, 300), (300, 1), (30, 300)):
        xy, desc = keypoints(np.full(shape, 100, np.uint8), 1.0)
        assert xy.shape == (0, 2) and desc.shape == (0, 32)


def test_stats(library):
    root, expected, result = library
    s = result.stats
    n_files = len(expected["files"])
    assert s["files_seen"] == n_files
    assert s["image_files"] == n_files - 4  # empty, text, movie, txt are not image files
    assert s["exact_copies"] == 3  # two copies of a_orig, one of d
    assert s["images_decoded"] == s["image_files"] - s["exact_copies"] - 2  # corrupt, truncated fail
    assert s["confirmed_pairs"] <= s["candidate_pairs"]
    assert s["groups"] == len(result.groups)
    assert s["problems"] == len(result.problems)
    assert set(s["timings"]) >= {"walk", "exact", "decode", "candidates", "verify", "group", "total"}
    assert all(v >= 0 for v in s["timings"].values())
    assert result.roots == [str(root)]
    assert result.settings["workers"] == 1


def test_scan_is_read_only(tmp_path, serial):
    for n in range(3):
        (tmp_path / f"{n}.jpg").write_bytes(encode(photo(n, (200, 150))))
    (tmp_path / "copy.jpg").write_bytes((tmp_path / "0.jpg").read_bytes())
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.iterdir()}
    result = scan([tmp_path], serial)
    assert len(result.groups) == 1
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.iterdir()}
    assert before == after


# --------------------------------------------------------------------------- determinism and workers


def test_scan_twice_gives_identical_groups_and_keepers(library):
    root, _, first = library
    second = scan([root], Settings(workers=1))
    assert signature(second) == signature(first)
    assert [(p.path, p.reason, p.kind) for p in second.problems] == [(p.path, p.reason, p.kind) for p in first.problems]


def test_two_workers_find_the_same_groups(library):
    """The one test with a process pool: >= 30 files, same groups, keepers and problems as workers=1."""
    root, expected, first = library
    assert first.stats["images_decoded"] >= 30
    pooled = scan([root], Settings(workers=2))
    assert signature(pooled) == signature(first)
    assert [(p.path, p.reason) for p in pooled.problems] == [(p.path, p.reason) for p in first.problems]
    assert pooled.settings["workers"] == 2


def test_cancel_stops_the_scan(tmp_path, serial):
    for n in range(3):
        (tmp_path / f"{n}.jpg").write_bytes(encode(photo(n, (120, 90))))
    with pytest.raises(Cancelled):
        scan([tmp_path], serial, cancel=lambda: True)


class RecordingProgress:
    def __init__(self):
        self.stages, self.notes, self.advanced, self.closed = [], [], 0, False

    def stage(self, title, total):
        self.stages.append(title)

    def advance(self, n=1):
        self.advanced += n

    def note(self, message):
        self.notes.append(message)

    def close(self):
        self.closed = True


def test_progress_receives_every_stage(tmp_path, serial):
    for n in range(3):
        (tmp_path / f"{n}.jpg").write_bytes(encode(photo(n, (120, 90))))
    progress = RecordingProgress()
    scan([tmp_path], serial, progress=progress)
    numbers = [t.split(":")[0] for t in progress.stages]  # "k/N: what the stage does"
    n = len(numbers)
    assert n >= 6
    assert numbers == [f"{k}/{n}" for k in range(1, n + 1)]
    assert progress.closed and progress.advanced > 0 and progress.notes


def test_empty_folder(tmp_path, serial):
    result = scan([tmp_path], serial)
    assert result.groups == [] and result.problems == []
    assert result.stats["files_seen"] == 0


# --------------------------------------------------------------------------- smaller scenarios


def test_hard_link_is_not_a_duplicate(tmp_path, serial):
    (tmp_path / "a.jpg").write_bytes(encode(photo(1, (200, 150))))
    os.link(tmp_path / "a.jpg", tmp_path / "b.jpg")
    result = scan([tmp_path], serial)
    assert result.groups == []
    assert len(result.links) == 1
    (link_problem,) = result.problems
    assert link_problem.kind == "skipped" and "read once" in link_problem.reason


def test_overlapping_roots_do_not_make_duplicates(tmp_path, serial):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.jpg").write_bytes(encode(photo(1, (200, 150))))
    (tmp_path / "b.jpg").write_bytes(encode(photo(2, (200, 150))))
    result = scan([tmp_path, tmp_path / "sub"], serial)
    assert result.groups == []
    assert result.stats["image_files"] == 2


def test_copies_of_an_undecodable_file_are_reported(tmp_path, serial):
    bad = encode(photo(1, (200, 150)))[:300]
    (tmp_path / "a.jpg").write_bytes(bad)
    (tmp_path / "b.jpg").write_bytes(bad)
    result = scan([tmp_path], serial)
    assert result.groups == []
    reported = {os.path.basename(p.path): p.reason for p in result.problems}
    assert set(reported) == {"a.jpg", "b.jpg"}
    assert "same bytes as" in reported["b.jpg"]


def test_too_many_pixels_is_a_problem(tmp_path):
    (tmp_path / "big.jpg").write_bytes(encode(photo(1, (400, 300))))
    (tmp_path / "ok.jpg").write_bytes(encode(photo(2, (100, 75))))
    result = scan([tmp_path], Settings(workers=1, max_pixels=100 * 100))
    (p,) = result.problems
    assert os.path.basename(p.path) == "big.jpg" and "too many pixels" in p.reason


def test_keeper_prefers_larger_original_over_smaller_copy(tmp_path, serial):
    pic = photo(11, (600, 450))
    (tmp_path / "aaa_small.png").write_bytes(encode(resize(pic, 0.5), "PNG"))
    (tmp_path / "zzz_long_name_original.jpg").write_bytes(encode(pic, quality=80))
    (g,) = scan([tmp_path], serial).groups
    assert os.path.basename(g.members[g.keeper].file.path) == "zzz_long_name_original.jpg"
    assert g.keeper_reason.startswith("most pixels")


def test_custom_keeper_rules_in_scan(tmp_path):
    pic = photo(11, (600, 450))
    (tmp_path / "a.png").write_bytes(encode(resize(pic, 0.5), "PNG"))
    (tmp_path / "original_big.jpg").write_bytes(encode(pic, quality=80))
    (g,) = scan([tmp_path], Settings(workers=1, keeper_rules=("format", "pixels"))).groups
    assert os.path.basename(g.members[g.keeper].file.path) == "a.png"
    assert g.keeper_reason.startswith("better format")


@pytest.mark.parametrize("frame", [0.02, 0.04])
def test_framed_copy_does_not_beat_its_original(tmp_path, serial, frame):
    """The frame is measured on the small work image; a framed copy must still not win on pixels."""
    pic = photo(200, SIZE)
    (tmp_path / "original.jpg").write_bytes(with_metadata(pic))  # camera original
    (tmp_path / "framed.jpg").write_bytes(encode(border(pic, frame)))
    (g,) = scan([tmp_path], serial).groups
    assert os.path.basename(g.members[g.keeper].file.path) == "original.jpg", g.keeper_reason


@pytest.mark.parametrize("turn", ["FLIP_LEFT_RIGHT", "ROTATE_90"])
def test_mirrored_or_turned_copy_is_not_the_keeper(tmp_path, serial, turn):
    """A turned copy with the same EXIF, saved at a higher quality, won on file size: the keeper now
    comes from the orientation most of the set's files have."""
    from PIL import Image

    pic = photo(202, SIZE)
    original = with_metadata(pic, quality=85)
    (tmp_path / "original.jpg").write_bytes(original)
    (tmp_path / "backup.jpg").write_bytes(original)
    (tmp_path / "small.jpg").write_bytes(encode(resize(pic, 0.5), quality=70))
    (tmp_path / "turned.jpg").write_bytes(with_metadata(pic.transpose(getattr(Image.Transpose, turn)), quality=97))
    assert (tmp_path / "turned.jpg").stat().st_size > len(original)
    (g,) = scan([tmp_path], serial).groups
    assert len(g.members) == 4
    assert os.path.basename(g.members[g.keeper].file.path) in {"original.jpg", "backup.jpg"}, g.keeper_reason
    turned = next(m for m in g.members if m.file.path.endswith("turned.jpg"))
    assert {"rotated", "mirrored"} & set(turned.evidence["transform"])


def test_oriented_tiff_copy_grouped(tmp_path, serial):
    pic = photo(21, (480, 360))
    (tmp_path / "original.jpg").write_bytes(encode(pic))
    (tmp_path / "rotated.tif").write_bytes(store_oriented(pic, 6, "TIFF"))
    result = scan([tmp_path], serial)
    assert group_names(result) == [{"original.jpg", "rotated.tif"}]
    tif = next(m for m in result.groups[0].members if m.file.path.endswith("rotated.tif"))
    assert (tif.info.width, tif.info.height) == (480, 360)
    assert "rotated" not in tif.evidence["transform"]  # upright once decoded: no turn needed


@pytest.fixture(scope="module")
def turned(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("turned")
    pic = photo(61, (480, 360))
    (root / "orig.jpg").write_bytes(encode(pic))
    (root / "rot90.jpg").write_bytes(encode(pic.transpose(Image.Transpose.ROTATE_90)))  # pixels turned, no tag
    (root / "rot180.jpg").write_bytes(encode(pic.transpose(Image.Transpose.ROTATE_180)))
    (root / "mirror.jpg").write_bytes(encode(pic.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    (root / "other.jpg").write_bytes(encode(photo(62, (480, 360))))
    return root


def test_turned_and_mirrored_copies_grouped(turned):
    result = scan([turned], Settings(workers=1))
    assert group_names(result) == [{"orig.jpg", "rot90.jpg", "rot180.jpg", "mirror.jpg"}]
    # the four files are in four different orientations: every one is turned relative to the keeper
    for m in result.groups[0].members[1:]:
        assert {"rotated", "mirrored"} & set(m.evidence["transform"]), m


def test_mirror_setting_off(turned):
    result = scan([turned], Settings(workers=1, mirror=False))
    assert group_names(result) == [{"orig.jpg", "rot90.jpg", "rot180.jpg"}]


def test_crops_keeping_most_of_the_picture_grouped_half_not(tmp_path, serial):
    pic = photo(71, (640, 480))
    (tmp_path / "orig.jpg").write_bytes(encode(pic))
    (tmp_path / "crop_centre.jpg").write_bytes(encode(pic.crop((32, 24, 608, 456))))  # 81% of the area
    (tmp_path / "crop_corner.jpg").write_bytes(encode(pic.crop((0, 0, 560, 420))))  # 77%
    (tmp_path / "crop_bottom.jpg").write_bytes(encode(pic.crop((110, 80, 626, 468))))  # 65%, off centre
    (tmp_path / "crop_half.jpg").write_bytes(encode(pic.crop((0, 0, 320, 480))))  # 50%: below min_crop_area
    (tmp_path / "other.jpg").write_bytes(encode(photo(72, (640, 480))))
    result = scan([tmp_path], serial)
    assert group_names(result) == [{"orig.jpg", "crop_centre.jpg", "crop_corner.jpg", "crop_bottom.jpg"}]
    g = result.groups[0]
    assert os.path.basename(g.members[g.keeper].file.path) == "orig.jpg"


def test_the_costliest_files_are_decoded_first(tmp_path, monkeypatch):
    """Largest first within a format; a WebP, which costs 12 times as much a byte as a JPEG to decode,
    before a JPEG a few times its size."""
    import dedupe.read as read
    from images import encode, photo

    for n, side in enumerate((120, 400, 60, 250)):
        (tmp_path / f"p{n}.png").write_bytes(encode(photo(n, (side, side)), "PNG"))
    (tmp_path / "a.webp").write_bytes(encode(photo(8, (300, 300)), "WEBP", quality=80))
    (tmp_path / "b.jpg").write_bytes(encode(photo(9, (300, 300)), "JPEG", quality=95))
    assert (tmp_path / "b.jpg").stat().st_size > 2 * (tmp_path / "a.webp").stat().st_size
    sent = []
    run = read._run

    def recording(pending, workers, cancel, *args):
        sent.extend(job[0] for _, job in pending)
        return run(pending, workers, cancel, *args)

    monkeypatch.setattr(read, "_run", recording)
    result = scan([tmp_path], Settings(workers=1))
    names = [Path(p).name for p in sent]
    assert [n for n in names if n.endswith(".png")] == ["p1.png", "p3.png", "p0.png", "p2.png"]
    assert names.index("a.webp") < names.index("b.jpg")
    assert result.stats["images_decoded"] == 6


def test_an_original_with_pale_top_and_bottom_stays_the_keeper_over_its_framed_copy(tmp_path, serial):
    """The bright, textured top and bottom of a photo are not a letterbox: taken for one, the original's
    picture measured smaller than a copy with a grey frame added, which became the keeper."""
    rng = np.random.default_rng(7)
    pic = np.asarray(photo(5, (600, 450))).copy()
    coarse = Image.fromarray(rng.normal(128, 40, (45, 60)).clip(0, 255).astype(np.uint8))
    texture = 235 + (np.asarray(coarse.resize((600, 450), Image.Resampling.BICUBIC), np.float32) - 128) * 0.15
    for rows in (slice(0, 70), slice(390, 450)):
        pic[rows] = np.clip(texture[rows], 222, 248).astype(np.uint8)[..., None]
    original = Image.fromarray(pic)
    (tmp_path / "original.jpg").write_bytes(with_metadata(original))
    (tmp_path / "framed.jpg").write_bytes(encode(border(original, 0.12, (128, 128, 128)), "JPEG", quality=90))
    (group,) = scan([tmp_path], serial).groups
    assert group.members[group.keeper].file.path.endswith("original.jpg")
    assert group.keeper_reason.startswith("better format")


def test_a_copy_cut_short_is_never_the_keeper_and_is_reported(tmp_path, serial):
    """A better copy cut short and closed with an end marker decodes without an error, larger and of
    the same size: by the rules it would be kept, and the only whole copy proposed for removal."""
    from dedupe.actions.plan import make_plan
    from dedupe.report.jsonreport import report_dict

    pic = photo(9, (800, 600))
    (tmp_path / "photo.jpg").write_bytes(encode(pic, quality=80))
    whole = encode(pic, quality=100)
    (tmp_path / "photo_hq.jpg").write_bytes(whole[: int(len(whole) * 0.85)] + b"\xff\xd9")
    result = scan([tmp_path], serial)
    (group,) = result.groups
    keeper = group.members[group.keeper]
    assert keeper.file.path.endswith("photo.jpg") and group.keeper_reason == "the only copy not cut short"
    (damaged,) = [m for m in group.members if m is not keeper]
    assert 0.1 < damaged.info.cut_short < 0.25
    (warning,) = [p for p in result.problems if p.path == damaged.file.path]
    assert warning.kind == "warning" and "cut short" in warning.reason
    report = report_dict(result)
    members = {m["path"]: m for m in report["groups"][0]["members"]}
    assert members[damaged.file.path]["cut_short"] == damaged.info.cut_short
    assert "cut_short" not in members[keeper.file.path]
    (planned,) = make_plan(report, keeper_rules=("size",))["groups"]  # by size alone the damaged one
    assert {f["path"]: f["action"] for f in planned["files"]} == {keeper.file.path: "keep", damaged.file.path: "remove"}
    reference = tmp_path / "ref"  # the damaged copy in a reference folder: the whole one stays as well
    reference.mkdir()
    os.rename(damaged.file.path, reference / "photo_hq.jpg")
    report = report_dict(scan([tmp_path], serial))
    (planned,) = make_plan(report, keep_in=[str(reference)])["groups"]
    assert [f["action"] for f in planned["files"]] == ["keep", "keep"]
