"""Geometry: turned and mirrored copies, crops, burst frames, neighbouring tiles and repeated textures.

Turned copies here are made with Pillow's transpose, not with `orient`, so that a wrong turn direction in
dedupe cannot hide behind the same mistake in the test. Every scan is serial (`Settings(workers=1)`) and
runs once per library and settings (see `scanned`).
"""

from __future__ import annotations

import functools
import math
import os

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from dedupe import Settings, compare, report_dict, scan
from dedupe.decode import decode
from dedupe.features.hashes import (
    ORIENTATIONS,
    describe,
    hamming,
    inverse,
    orient,
    orient_box,
    phash,
    phash_orientations,
)
from voting import keypoint_pairs
from dedupe.verify import (
    INSIDE,
    LOW_DETAIL,
    MAX_ANGLE,
    MIN_INLIERS,
    SNAP_FROM,
    _placed,
    detail,
    fit_similarity,
    flat_crop,
    reframed,
    snapped,
    verify,
    verify_geometry,
)
from images import (
    brighten,
    cloudy,
    contrast,
    encode,
    gray_array,
    grayscale,
    group_names,
    group_of,
    logo,
    photo,
    recompress,
    resize,
    save,
    store_oriented,
    with_metadata,
)

SERIAL = Settings(workers=1)
DEFAULT = SERIAL.ssim_threshold


# --------------------------------------------------------------------------- helpers


def turn(img: Image.Image, k: int, mirrored: bool) -> Image.Image:
    """`img` mirrored left-right (if `mirrored`), then turned k quarter turns CLOCKWISE, with Pillow."""
    if mirrored:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    clockwise = {1: Image.Transpose.ROTATE_270, 2: Image.Transpose.ROTATE_180, 3: Image.Transpose.ROTATE_90}
    return img.transpose(clockwise[k]) if k else img


def oname(k: int, mirrored: bool) -> str:
    return f"turn_{90 * k}{'_m' if mirrored else ''}.jpg"


def features(img: Image.Image, quality: int = 90):
    """Features of `img` as the scan computes them from a JPEG of it."""
    gray, _ = decode(encode(img, "JPEG", quality=quality), 10**9)
    return describe(gray)


def crop_box(size: tuple[int, int], area: float, cx: float, cy: float) -> tuple[int, int, int, int]:
    """A box keeping `area` of a picture of `size`, same aspect ratio, placed at (cx, cy) of the free room
    (0.5, 0.5 is centred, 0, 0 is the upper left corner)."""
    w, h = size
    s = math.sqrt(area)
    cw, ch = round(w * s), round(h * s)
    x0, y0 = round(cx * (w - cw)), round(cy * (h - ch))
    return x0, y0, x0 + cw, y0 + ch


@functools.lru_cache(maxsize=None)
def scanned(root: str, settings: Settings):
    """(ScanResult, report dict) of one library under one settings; each scanned once per session."""
    result = scan([root], settings)
    return result, report_dict(result)


def report_group(report: dict, name: str) -> dict[str, dict]:
    """The report's members (by file name) of the group holding `name`; {} when it is in no group."""
    for g in report["groups"]:
        members = {os.path.basename(m["path"]): m for m in g["members"]}
        if name in members:
            return members
    return {}


def keeper_name(report: dict, name: str) -> str | None:
    for g in report["groups"]:
        if any(os.path.basename(m["path"]) == name for m in g["members"]):
            return os.path.basename(g["keeper"])
    return None


def ratio_matches(fa, fb) -> int:
    """ORB matches that pass the same ratio test as verify_geometry (before any geometry)."""
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(fa.kp_desc, fb.kp_desc, k=2)
    return sum(1 for p in pairs if len(p) == 2 and p[0].distance < 0.85 * p[1].distance and p[0].distance <= 64)


def is_crop(found) -> bool:
    """verify_geometry's answer says one picture is a crop of the other."""
    return found is not None and "crop_box" in found[1]


# --------------------------------------------------------------------------- 1. orientations: hashes, boxes, inverse


def test_orientations_are_the_eight_distinct_turns():
    assert len(ORIENTATIONS) == 8
    assert len(set(ORIENTATIONS)) == 8
    assert ORIENTATIONS[0] == (0, False)
    assert {k for k, _ in ORIENTATIONS} == {0, 1, 2, 3}


@pytest.mark.parametrize("k,mirrored", ORIENTATIONS)
def test_orient_turns_clockwise_like_pillow(k, mirrored):
    """`orient` is "mirror left-right, then k clockwise quarter turns": the meaning of "rotated" in the report."""
    pic = photo(3, (60, 40))
    assert np.array_equal(orient(np.asarray(pic), k, mirrored), np.asarray(turn(pic, k, mirrored)))


PHASH_PICTURES = [(11, (480, 360)), (12, (360, 480)), (13, (500, 500)), (14, (640, 430)), (15, (777, 333))]


@pytest.mark.parametrize("seed,size", PHASH_PICTURES)
def test_phash_orientations_equal_hashes_of_turned_pictures(seed, size):
    gray = gray_array(photo(seed, size))
    codes = phash_orientations(gray)
    assert len(codes) == 8
    assert codes[0] == phash(gray)
    for code, (k, mirrored) in zip(codes, ORIENTATIONS):
        assert hamming(code, phash(orient(gray, k, mirrored))) <= 2, (k, mirrored)
    # the turned codes are really different from the upright one (the check above is not vacuous)
    assert min(hamming(codes[0], c) for c in codes[1:]) > 8


@pytest.mark.parametrize("k,mirrored", ORIENTATIONS)
def test_orient_box_follows_orient(k, mirrored):
    """A marked rectangle lands, after `orient`, exactly where `orient_box` says."""
    h, w = 37, 53
    x0, y0, x1, y1 = 7, 4, 19, 30  # pixel edges: columns x0..x1-1, rows y0..y1-1
    img = np.zeros((h, w), np.uint8)
    img[y0:y1, x0:x1] = 255
    turned = orient(img, k, mirrored)
    th, tw = turned.shape
    ys, xs = np.nonzero(turned)
    found = (xs.min() / tw, ys.min() / th, (xs.max() + 1) / tw, (ys.max() + 1) / th)
    assert orient_box((x0 / w, y0 / h, x1 / w, y1 / h), k, mirrored) == pytest.approx(found, abs=1e-9)


@pytest.mark.parametrize("k,mirrored", ORIENTATIONS)
def test_inverse_undoes_each_orientation(k, mirrored):
    x = np.arange(5 * 7).reshape(5, 7)  # not square, no symmetry: every orientation differs
    back = inverse(k, mirrored)
    assert back in ORIENTATIONS
    assert np.array_equal(orient(orient(x, k, mirrored), *back), x)
    assert np.array_equal(orient(orient(x, *back), k, mirrored), x)
    assert inverse(*back) == (k, mirrored)


# --------------------------------------------------------------------------- 2. turned copies end to end

TURN_SIZE = (560, 420)
EXIF_TAGS = (2, 3, 4, 5, 6, 7, 8)
TURNED = [oname(k, m) for k, m in ORIENTATIONS[1:]]
EXIF_COPIES = [f"exif_{o}.jpg" for o in EXIF_TAGS]


@pytest.fixture(scope="module", params=["a_original.jpg", "z_original.jpg"], ids=["original-first", "original-last"])
def turned_library(request, tmp_path_factory):
    """An original (the keeper: the only file with camera EXIF) walked before or after its copies, its 7
    pixel-turned copies (no EXIF), copies that only an EXIF Orientation tag turns, and another picture."""
    root = tmp_path_factory.mktemp("turned")
    pic = photo(41, TURN_SIZE)
    original = request.param
    (root / original).write_bytes(with_metadata(pic, quality=92))
    for k, m in ORIENTATIONS[1:]:
        save(turn(pic, k, m), root / oname(k, m), quality=90)
    for o in EXIF_TAGS:
        (root / f"exif_{o}.jpg").write_bytes(store_oriented(pic, o, quality=90))
    save(photo(42, TURN_SIZE), root / "other.jpg", quality=90)
    return str(root), original


def test_turned_copies_grouped_with_original(turned_library):
    root, original = turned_library
    result, report = scanned(root, SERIAL)
    assert group_names(result) == [{original, *TURNED, *EXIF_COPIES}]
    assert keeper_name(report, original) == original


@pytest.mark.parametrize("k,mirrored", ORIENTATIONS[1:], ids=[oname(k, m)[5:-4] for k, m in ORIENTATIONS[1:]])
def test_report_says_how_the_keeper_is_turned(turned_library, k, mirrored):
    """ "rotated" (clockwise degrees) and "mirrored" turn the keeper into the member, whichever of the two
    comes first in the walk (the stored evidence is the other way round for one of the orders)."""
    root, original = turned_library
    _, report = scanned(root, SERIAL)
    member = report_group(report, original)[oname(k, mirrored)]
    transform = member["transform"]
    expected = {}
    if k:
        expected["rotated"] = 90 * k
    if mirrored:
        expected["mirrored"] = True
    assert {key: transform[key] for key in ("rotated", "mirrored") if key in transform} == expected
    assert member["relation"] == "near"


def test_exif_oriented_copies_need_no_turn(turned_library):
    root, original = turned_library
    _, report = scanned(root, SERIAL)
    members = report_group(report, original)
    for name in EXIF_COPIES:
        assert not {"rotated", "mirrored"} & set(members[name]["transform"]), name


def test_mirror_off_keeps_mirrored_copies_apart(turned_library):
    root, original = turned_library
    result, _ = scanned(root, Settings(workers=1, mirror=False))
    unmirrored = {oname(k, False) for k in (1, 2, 3)}
    mirrored = {oname(k, True) for k in range(4)}
    assert group_of(result, original) == {original, *unmirrored, *EXIF_COPIES}
    # the mirrored copies are turns of one another: still grouped, among themselves
    assert group_of(result, oname(0, True)) == mirrored


def test_rotations_off_keeps_turned_copies_apart(turned_library):
    """Only EXIF-tagged copies (upright once decoded) and the plain left-right mirror (the one mirrored
    copy that needs no turn) stay with the original."""
    root, original = turned_library
    result, _ = scanned(root, Settings(workers=1, rotations=False))
    assert group_of(result, original) == {original, *EXIF_COPIES, oname(0, True)}
    for g in group_names(result):  # no two pictures a quarter or half turn apart are grouped
        turns = {n for n in g if n.startswith("turn_")}
        assert len(turns) <= 2, g


def test_rotations_and_mirror_off(turned_library):
    root, original = turned_library
    result, _ = scanned(root, Settings(workers=1, rotations=False, mirror=False))
    assert group_names(result) == [{original, *EXIF_COPIES}]


@pytest.fixture(scope="module")
def edited_turned_library(tmp_path_factory):
    root = tmp_path_factory.mktemp("turned_edited")
    pic = photo(43, TURN_SIZE)
    (root / "original.jpg").write_bytes(with_metadata(pic, quality=92))
    for k, m in ORIENTATIONS[1:]:
        save(resize(turn(pic, k, m), 0.75), root / oname(k, m), quality=75)
    return str(root)


def test_turned_copies_that_were_also_resized_and_recompressed(edited_turned_library):
    result, report = scanned(edited_turned_library, SERIAL)
    assert group_names(result) == [{"original.jpg", *TURNED}]
    members = report_group(report, "original.jpg")
    assert keeper_name(report, "original.jpg") == "original.jpg"
    for k, m in ORIENTATIONS[1:]:
        t = members[oname(k, m)]["transform"]
        assert (t.get("rotated", 0), t.get("mirrored", False)) == (90 * k, m), oname(k, m)


# --------------------------------------------------------------------------- 3. crops

CROP_SIZE = (640, 480)
CROPS = {  # name -> (share of the area kept, (cx, cy) placement)
    "c95_centre.jpg": (0.95, (0.5, 0.5)),
    "c95_off.jpg": (0.95, (0.15, 0.8)),
    "c85_centre.jpg": (0.85, (0.5, 0.5)),
    "c85_off.jpg": (0.85, (0.9, 0.15)),
    "c75_centre.jpg": (0.75, (0.5, 0.5)),
    "c75_off.jpg": (0.75, (0.1, 0.85)),
    "c80_small_q70.jpg": (0.80, (0.3, 0.6)),  # and resized to 60%, JPEG quality 70
}
HALF = "c50_centre.jpg"


@pytest.fixture(scope="module", params=["a_orig.jpg", "z_orig.jpg"], ids=["original-first", "original-last"])
def crop_library(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("crops")
    pic = photo(51, CROP_SIZE)
    original = request.param
    (root / original).write_bytes(with_metadata(pic, quality=92))
    for name, (area, (cx, cy)) in CROPS.items():
        piece = pic.crop(crop_box(CROP_SIZE, area, cx, cy))
        if "small" in name:
            save(resize(piece, 0.6), root / name, quality=70)
        else:
            save(piece, root / name, quality=90)
    save(pic.crop(crop_box(CROP_SIZE, 0.5, 0.5, 0.5)), root / HALF, quality=90)
    save(photo(52, CROP_SIZE), root / "other.jpg", quality=90)
    return str(root), original


def _crop_first(original: str) -> bool:
    return original.startswith("z_")  # the crops ("c...") are walked, and so stored, first


@pytest.mark.parametrize("name", CROPS)
def test_crop_grouped_with_original(crop_library, name):
    root, original = crop_library
    result, report = scanned(root, SERIAL)
    assert name in group_of(result, original)
    assert keeper_name(report, original) == original


@pytest.mark.parametrize("name", CROPS)
def test_crop_evidence_box_in_original_pixels(crop_library, name):
    root, original = crop_library
    area, (cx, cy) = CROPS[name]
    _, report = scanned(root, SERIAL)
    transform = report_group(report, original)[name]["transform"]
    assert "crop" in transform, transform
    assert transform["crop"]["of"] == "member"
    w, h = CROP_SIZE
    true_box = crop_box(CROP_SIZE, area, cx, cy)
    assert len(transform["crop"]["box"]) == 4
    for got, want, side in zip(transform["crop"]["box"], true_box, (w, h, w, h)):
        assert abs(got - want) <= 0.03 * side, (transform["crop"]["box"], true_box)
    assert transform["kept_area"] == pytest.approx(area, abs=0.03)
    assert "rotated" not in transform and "mirrored" not in transform


@pytest.mark.parametrize("name", CROPS)
def test_crop_evidence_has_keypoint_inliers(crop_library, name):
    root, original = crop_library
    _, report = scanned(root, SERIAL)
    transform = report_group(report, original)[name]["transform"]
    assert transform["inliers"] >= MIN_INLIERS


def test_half_crop_not_grouped(crop_library):
    root, original = crop_library
    result, _ = scanned(root, SERIAL)
    assert HALF not in group_of(result, original)
    assert group_of(result, HALF) is None


def test_half_crop_grouped_when_min_crop_area_allows(crop_library):
    """The 50% crop is found and refused for its area alone: below min_crop_area it joins."""
    root, original = crop_library
    result, report = scanned(root, Settings(workers=1, min_crop_area=0.45))
    assert HALF in group_of(result, original)
    assert report_group(report, original)[HALF]["transform"]["kept_area"] == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("name", [n for n in CROPS if CROPS[n][0] < 0.85])
def test_crops_off_leaves_crops_apart(crop_library, name):
    """Spec: crops=False turns off the keypoint search; crops keeping under about 83% stay apart."""
    root, original = crop_library
    result, _ = scanned(root, Settings(workers=1, crops=False))
    assert name not in group_of(result, original)


def test_crops_off_still_groups_the_lightly_trimmed(crop_library):
    """Crops keeping 85% and more are within the warp (x1.1 either way) that the whole-frame comparison
    aligns, keypoints or not, whichever file comes first."""
    root, original = crop_library
    result, _ = scanned(root, Settings(workers=1, crops=False))
    assert {"c95_centre.jpg", "c95_off.jpg", "c85_centre.jpg", "c85_off.jpg"} <= group_of(result, original)


@pytest.mark.parametrize("area", [0.95, 0.85, 0.75])
def test_whole_frame_verify_is_symmetric_for_a_crop(area):
    pic = photo(53, CROP_SIZE)
    whole = features(pic, 92)
    for cx, cy in ((0.5, 0.5), (0.1, 0.9)):
        part = features(pic.crop(crop_box(CROP_SIZE, area, cx, cy)))
        assert (verify(whole, part, DEFAULT) is None) == (verify(part, whole, DEFAULT) is None), (cx, cy)


@pytest.mark.parametrize("original", ["a_orig.jpg", "z_orig.jpg"])
def test_crop_found_whatever_the_file_names(tmp_path, original):
    """A 75% crop (upper right corner of photo(0)) that keypoint geometry confirms from one side only: from
    the crop's side RANSAC's model is about a degree off and SSIM on the warp falls to 0.696. The scan
    must find it whichever file comes first."""
    pic = photo(0, CROP_SIZE)
    box = crop_box(CROP_SIZE, 0.75, 0.9, 0.1)
    save(pic, tmp_path / original, quality=92)
    save(pic.crop(box), tmp_path / "crop.jpg", quality=90)
    _, report = scanned(str(tmp_path), SERIAL)
    members = report_group(report, original)
    assert set(members) == {original, "crop.jpg"}
    transform = members["crop.jpg"]["transform"]
    assert transform["crop"]["of"] == "member"
    w, h = CROP_SIZE
    for got, want, side in zip(transform["crop"]["box"], box, (w, h, w, h)):
        assert abs(got - want) <= 0.03 * side, (transform["crop"]["box"], box)


@pytest.mark.parametrize("seed", [0, 53])
def test_a_fit_tilted_by_a_stray_rotation_is_snapped_to_its_quarter_turn(seed):
    """Matches bunched in one small patch fit a rotation of a degree or two that is not there. The
    corner crop's own fit, tilted by 2 degrees about its matches, fails as it is; verify_geometry then
    takes the rotation out (least squares on the same matches) and finds the crop where it is."""
    pic = photo(seed, CROP_SIZE)
    box = crop_box(CROP_SIZE, 0.75, 0.9, 0.1)
    whole, part = features(pic, 92), features(pic.crop(box), 90)
    fit = fit_similarity(whole, part)
    cx, cy = fit.src.mean(axis=0).tolist()
    tilted = fit._replace(matrix=fit.matrix @ np.vstack([cv2.getRotationMatrix2D((cx, cy), 2.0, 1.0), [0, 0, 1]]))
    angle = math.degrees(math.atan2(tilted.matrix[1, 0], tilted.matrix[0, 0]))
    assert SNAP_FROM < abs(angle) <= MAX_ANGLE
    assert _placed(whole, part, tilted.matrix, 0, fit.inliers, DEFAULT, SERIAL.min_crop_area, False) is None
    found = verify_geometry(whole, part, DEFAULT, SERIAL.min_crop_area, tilted)
    assert is_crop(found) and found[1]["cropped"] == "second"
    w, h = CROP_SIZE
    for got, want, side in zip(found[1]["crop_box"], box, (w, h, w, h)):
        assert abs(got * side - want) <= 0.03 * side, (found[1]["crop_box"], box)
    m = snapped(tilted, 0)
    assert m[0, 1] == m[1, 0] == 0 and m[0, 0] == m[1, 1]
    turned = snapped(tilted._replace(src=tilted.src[:, ::-1] * [1, -1]), 1)  # the same matches a quarter turn away
    np.testing.assert_allclose(turned[:, 2], m[:, 2], atol=1e-3)


@pytest.fixture(scope="module", params=["a_orig.jpg", "z_orig.jpg"], ids=["original-first", "original-last"])
def turned_crops(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("turned_crops")
    pic = photo(54, CROP_SIZE)
    original = request.param
    (root / original).write_bytes(with_metadata(pic, quality=92))
    box = crop_box(CROP_SIZE, 0.75, 0.2, 0.7)
    for k in (1, 2, 3):
        save(turn(pic.crop(box), k, False), root / f"crop_turned_{90 * k}.jpg", quality=90)
    return str(root), original, box


@pytest.mark.parametrize("k", [1, 2, 3])
def test_turned_crop_grouped_with_turn_and_box(turned_crops, k):
    root, original, box = turned_crops
    _, report = scanned(root, SERIAL)
    transform = report_group(report, original)[f"crop_turned_{90 * k}.jpg"]["transform"]
    assert transform.get("rotated") == 90 * k and "mirrored" not in transform
    assert transform["crop"]["of"] == "member"
    w, h = CROP_SIZE
    for got, want, side in zip(transform["crop"]["box"], box, (w, h, w, h)):
        assert abs(got - want) <= 0.03 * side, (transform["crop"]["box"], box)


def test_turned_crops_apart_without_rotations(turned_crops):
    root, _, _ = turned_crops
    result, _ = scanned(root, Settings(workers=1, rotations=False))
    assert group_names(result) == []


@pytest.fixture(scope="module", params=["a_orig.jpg", "z_orig.jpg"], ids=["original-first", "original-last"])
def heavily_edited_turned(request, tmp_path_factory):
    """Turned copies edited so much (a big logo, contrast, grayscale) that their thumbnails stay under
    TURNED_MIN_SSIM: only keypoint geometry confirms them. None of them is cropped."""
    root = tmp_path_factory.mktemp("turned_heavy")
    pic = photo(44, TURN_SIZE)
    original = request.param
    (root / original).write_bytes(with_metadata(pic, quality=92))
    save(turn(logo(pic, 0.45), 1, False), root / "t90_logo.jpg", quality=80)
    save(turn(grayscale(contrast(logo(pic, 0.35), 1.8)), 3, False), root / "t270_gray.jpg", quality=50)
    return str(root), original


def test_heavily_edited_turned_copies_confirmed_by_geometry(heavily_edited_turned):
    root, original = heavily_edited_turned
    result, report = scanned(root, SERIAL)
    assert group_names(result) == [{original, "t90_logo.jpg", "t270_gray.jpg"}]
    members = report_group(report, original)
    assert members["t90_logo.jpg"]["transform"].get("rotated") == 90
    assert members["t270_gray.jpg"]["transform"].get("rotated") == 270
    assert max(members["t90_logo.jpg"]["score"], members["t270_gray.jpg"]["score"]) < 90  # not the thumbnail path


def test_uncropped_turned_copy_is_not_reported_as_a_crop(heavily_edited_turned):
    root, original = heavily_edited_turned
    _, report = scanned(root, SERIAL)
    for name in ("t90_logo.jpg", "t270_gray.jpg"):
        assert "crop" not in report_group(report, original)[name]["transform"], name


def test_crop_as_keeper_box_in_the_members_pixels(tmp_path):
    """When the crop is the keeper (here: the camera file, format ranked first), "crop" says "of": "keeper"
    and the box is in the pixels of the uncropped member."""
    pic = photo(55, CROP_SIZE)
    box = crop_box(CROP_SIZE, 0.75, 0.2, 0.3)
    save(pic, tmp_path / "export.jpg", quality=92)
    (tmp_path / "camera_crop.jpg").write_bytes(with_metadata(pic.crop(box), quality=92))
    _, report = scanned(str(tmp_path), Settings(workers=1, keeper_rules=("format", "pixels", "size", "date", "path")))
    assert keeper_name(report, "export.jpg") == "camera_crop.jpg"
    transform = report_group(report, "export.jpg")["export.jpg"]["transform"]
    assert transform["crop"]["of"] == "keeper"
    w, h = CROP_SIZE
    for got, want, side in zip(transform["crop"]["box"], box, (w, h, w, h)):
        assert abs(got - want) <= 0.03 * side, (transform["crop"]["box"], box)


# --------------------------------------------------------------------------- 4. bursts and neighbours

FRAME = (560, 420)
BURSTS = [  # (seed, offset as a share of the frame's width, or of its height for "v")
    (61, 0.25, "h"),
    (62, 0.30, "h"),
    (63, 0.35, "h"),
    (64, 0.30, "v"),
]


def burst_frames(seed: int, offset: float, axis: str) -> tuple[Image.Image, Image.Image]:
    """Two frames cut from one larger picture, the second window moved by `offset` of the frame."""
    fw, fh = FRAME
    if axis == "h":
        d = round(offset * fw)
        big = photo(seed, (fw + d, fh))
        return big.crop((0, 0, fw, fh)), big.crop((d, 0, d + fw, fh))
    d = round(offset * fh)
    big = photo(seed, (fw, fh + d))
    return big.crop((0, 0, fw, fh)), big.crop((0, d, fw, d + fh))


@pytest.mark.parametrize("seed,offset,axis", BURSTS)
def test_burst_frames_are_two_groups(tmp_path, seed, offset, axis):
    one, two = burst_frames(seed, offset, axis)
    save(one, tmp_path / "frame1.jpg", quality=92)
    save(recompress(one, 70), tmp_path / "frame1_copy.jpg", quality=85)
    save(two, tmp_path / "frame2.jpg", quality=92)
    save(resize(two, 0.8), tmp_path / "frame2_copy.jpg", quality=85)
    expected = [{"frame1.jpg", "frame1_copy.jpg"}, {"frame2.jpg", "frame2_copy.jpg"}]
    assert sorted(group_names(scan([tmp_path], SERIAL)), key=sorted) == expected
    # asking for similar shots lists them apart, it never joins the groups
    with_similar = scan([tmp_path], Settings(workers=1, similar=True))
    assert sorted(group_names(with_similar), key=sorted) == expected
    assert len(with_similar.similar) == 1
    pair = with_similar.similar[0]
    assert {os.path.basename(pair.a), os.path.basename(pair.b)} == {"frame1.jpg", "frame2.jpg"}  # the keepers


@pytest.mark.parametrize("seed,offset,axis", BURSTS)
def test_geometry_refuses_burst_frames_that_keypoints_match(seed, offset, axis):
    """The frames share most keypoints (they are proposed and pass the ratio test in numbers); it is the
    geometry (the moved frame is not INSIDE the other) that says they are not one picture cropped."""
    one, two = burst_frames(seed, offset, axis)
    fa, fb = features(one), features(two)
    assert keypoint_pairs([fa.kp_desc, fb.kp_desc]) == [(0, 1)]
    assert ratio_matches(fa, fb) >= 2 * MIN_INLIERS
    for x, y in ((fa, fb), (fb, fa)):
        assert not is_crop(verify_geometry(x, y, DEFAULT, SERIAL.min_crop_area))
        assert not is_crop(verify_geometry(x, y, DEFAULT, 0.3))  # not the kept area: the inside test refuses
    assert 1 - offset < INSIDE
    # and the same geometry does accept a real crop of the first frame
    real_crop = features(one.crop(crop_box(FRAME, 0.75, 0.5, 0.5)))
    assert is_crop(verify_geometry(fa, real_crop, DEFAULT, SERIAL.min_crop_area))


@pytest.mark.parametrize("seed,offset,axis", [(65, 0.06, "h"), (66, 0.1, "h"), (67, 0.08, "v")])
def test_keypoints_tell_frames_panned_a_little_apart(seed, offset, axis):
    """Frames of a burst 6-10% apart: keypoints place each partly outside the other (reframed), while a
    copy re-encoded, resized, cropped or moved by 2% lies inside its original."""
    one, two = burst_frames(seed, offset, axis)
    fa = features(one)
    assert reframed(fa, features(two)) and reframed(features(two), fa)
    w, h = FRAME
    d = round(0.02 * (w if axis == "h" else h))
    scene = photo(seed, (w + round(offset * w), h) if axis == "h" else (w, h + round(offset * h)))
    nudged = scene.crop((d, 0, d + w, h) if axis == "h" else (0, d, w, d + h))  # 98% of it inside
    for copy in (recompress(one, 60), resize(one, 0.6), one.crop(crop_box(FRAME, 0.8, 0.2, 0.7)), nudged):
        assert fit_similarity(fa, features(copy)) is not None
        assert not reframed(fa, features(copy)) and not reframed(features(copy), fa)


def test_a_fit_no_geometry_would_take_does_not_tell_frames_apart(monkeypatch):
    """RANSAC on a 96-pixel copy's keypoints once sent them all to one point (scale 0, 26 inliers),
    which leaves neither picture inside the other: such a fit is no evidence of another framing."""
    import dedupe.verify as verify_module
    from dedupe.verify import Fit

    fa = features(photo(83, FRAME))
    points = np.zeros((26, 2), np.float32)
    degenerate = Fit(np.array([[0, 0, 18], [0, 0, 62]], np.float64), points, points)
    monkeypatch.setattr(verify_module, "fit_similarity", lambda a, b: degenerate)
    assert not reframed(fa, fa)
    turned = Fit(np.array([[0.7, -0.7, 0], [0.7, 0.7, 0]], np.float64), points, points)  # 45 degrees
    monkeypatch.setattr(verify_module, "fit_similarity", lambda a, b: turned)
    assert not reframed(fa, fa)
    moved = Fit(np.array([[1, 0, 40], [0, 1, 0]], np.float64), points, points)  # a third of the width
    monkeypatch.setattr(verify_module, "fit_similarity", lambda a, b: moved)
    assert reframed(fa, fa)


def test_a_picture_whole_frame_ssim_takes_for_its_panned_neighbour_is_not_confirmed(monkeypatch):
    """A smooth picture (a misty lake) moved by a tenth of its width keeps a whole-frame SSIM of 0.90,
    over the threshold: the keypoints' placement refuses it, and still confirms a re-encoded copy."""
    import dedupe.match as match
    from dedupe.model import Analysed, ImageInfo
    from dedupe.verify import Verdict

    monkeypatch.setattr(match, "verify", lambda *a: (Verdict(0.9, 90, False, 1.0, None, True, 3.0), {"aligned": False}))
    one, two = burst_frames(68, 0.1, "h")
    info = ImageInfo(*FRAME, "JPEG", False, FRAME[0] * FRAME[1])
    first = Analysed("a", info, features(one))
    assert match.confirm(first, Analysed("b", info, features(two)), [0], SERIAL) is None
    found = match.confirm(first, Analysed("c", info, features(recompress(one, 60))), [0], SERIAL)
    assert found is not None and found["ssim"] == 0.9


@pytest.mark.parametrize("seed,offset,axis", BURSTS[:2])
def test_burst_frames_are_fitted_once_a_crop_that_fails_one_way_twice(seed, offset, axis, monkeypatch):
    """match.geometry fits a pair again the other way round only when the first fit placed one picture
    nearly inside the other (RETRY_INSIDE): burst frames 25-35% apart are not fitted twice."""
    import dedupe.match as match
    from dedupe.model import Analysed, ImageInfo

    calls = []
    real = match.verify_geometry

    def checked(*args, **kw):  # the first check of a pair fails, as a crop's SSIM can from one side
        calls.append(1)
        return None if len(calls) == 1 else real(*args, **kw)

    monkeypatch.setattr(match, "verify_geometry", checked)
    info = ImageInfo(*FRAME, "JPEG", False, FRAME[0] * FRAME[1])
    first, second = burst_frames(seed, offset, axis)
    one, two = Analysed("a", info, features(first)), Analysed("b", info, features(second))
    assert match.geometry(one, two, SERIAL) is None and len(calls) == 1
    calls.clear()
    cropped = Analysed("c", info, features(first.crop(crop_box(FRAME, 0.8, 0.3, 0.6))))
    found = match.geometry(one, cropped, SERIAL)
    assert len(calls) == 2 and found is not None and found["transform"]["cropped"] == "second"


def straightened(img: Image.Image, degrees: float) -> Image.Image:
    """`img` turned by `degrees` (counter-clockwise) and cropped to the largest box of its aspect with no
    corner showing, as a photo editor straightens a picture."""
    w, h = img.size
    t = math.radians(abs(degrees))
    s = 1 / (math.cos(t) + max(w, h) / min(w, h) * math.sin(t))
    turned = img.rotate(degrees, resample=Image.Resampling.BICUBIC)
    return turned.crop((round(w * (1 - s) / 2), round(h * (1 - s) / 2), round(w * (1 + s) / 2), round(h * (1 + s) / 2)))


@pytest.mark.parametrize("degrees", [5, -7])
def test_a_straightened_copy_is_grouped_as_a_crop_and_says_so(tmp_path, degrees):
    pic = photo(81, (560, 420))
    save(pic, tmp_path / "original.jpg", quality=92)
    save(straightened(pic, degrees), tmp_path / "straightened.jpg", quality=90)
    save(photo(82, (560, 420)), tmp_path / "other.jpg", quality=92)
    result = scan([tmp_path], SERIAL)
    assert group_names(result) == [{"original.jpg", "straightened.jpg"}]
    [copy] = [m for m in result.groups[0].members if m.relation != "keeper"]
    t = copy.evidence["transform"]
    assert "crop" in t and abs(t["straightened"] - abs(degrees)) < 1.0
    compared = compare(str(tmp_path / "original.jpg"), str(tmp_path / "straightened.jpg")).as_dict()["transform"]
    assert abs(compared["straightened"] - abs(degrees)) < 1.0


def test_non_overlapping_halves_and_quarters_not_grouped(tmp_path):
    wide = photo(65, (800, 400))
    save(wide.crop((0, 0, 400, 400)), tmp_path / "half_left.jpg", quality=90)
    save(wide.crop((400, 0, 800, 400)), tmp_path / "half_right.jpg", quality=90)
    big = photo(66, (800, 600))
    for r in range(2):
        for c in range(2):
            quarter = big.crop((400 * c, 300 * r, 400 * (c + 1), 300 * (r + 1)))
            save(quarter, tmp_path / f"quarter_{r}{c}.jpg", quality=90)
    save(big, tmp_path / "quarters_whole.png")  # the quarters are also 25% crops of this one: too little kept
    assert group_names(scan([tmp_path], SERIAL)) == []


# --------------------------------------------------------------------------- 5. repeated texture


def bricks(
    seed: int, size: tuple[int, int] = (560, 420), brick: tuple[int, int] = (56, 24), mortar: int = 4
) -> Image.Image:
    """A brick wall: one brick size for every seed; colours, bond offset, per-brick shade, stains and
    grain from the seed. Walls of different seeds share their structure, not their content."""
    rng = np.random.default_rng(seed)
    w, h = size
    bw, bh = brick
    base = rng.integers(90, 200, 3).astype(np.float64)
    img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(170, 235, 3)))
    draw = ImageDraw.Draw(img)
    ox, oy = int(rng.integers(0, bw)), int(rng.integers(0, bh))
    for row, y in enumerate(range(-oy, h, bh)):
        for x in range(-ox - (bw // 2) * (row % 2), w, bw):
            colour = np.clip(base * (1 + rng.normal(0, 0.08)) + rng.normal(0, 6, 3), 0, 255)
            draw.rectangle(
                [x + mortar // 2, y + mortar // 2, x + bw - mortar // 2 - 1, y + bh - mortar // 2 - 1],
                fill=tuple(int(v) for v in colour),
            )
    coarse = Image.fromarray(rng.random((5, 6)).astype(np.float32), "F")
    stains = np.asarray(coarse.resize(size, Image.Resampling.BICUBIC))
    arr = np.asarray(img, dtype=np.float32) * (0.8 + 0.4 * stains[:, :, None]) + rng.normal(0, 5, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))


WALLS = 5


@pytest.fixture(scope="module")
def walls(tmp_path_factory):
    root = tmp_path_factory.mktemp("walls")
    pics = [bricks(70 + n) for n in range(WALLS)]
    for n, pic in enumerate(pics):
        save(pic, root / f"wall{n}.jpg", quality=90)
    save(pics[0].crop(crop_box(pics[0].size, 0.85, 0.3, 0.6)), root / "wall0_crop.jpg", quality=90)
    return str(root), pics


def test_different_walls_apart_crop_of_one_grouped(walls):
    root, _ = walls
    result, report = scanned(root, SERIAL)
    assert group_names(result) == [{"wall0.jpg", "wall0_crop.jpg"}]
    assert report_group(report, "wall0.jpg")["wall0_crop.jpg"]["transform"]["crop"]["of"] == "member"


def test_walls_look_alike_to_keypoints(walls):
    """The hard case is reached: keypoints of different walls vote for each other (repeated corners),
    and no pair of them passes the geometry."""
    _, pics = walls
    feats = [features(p) for p in pics]
    proposed = keypoint_pairs([f.kp_desc for f in feats])
    assert len(proposed) >= 2
    for i, j in proposed:
        assert not is_crop(verify_geometry(feats[i], feats[j], DEFAULT, SERIAL.min_crop_area)), (i, j)


# --------------------------------------------------------------------------- 6. keypoint_pairs


def descriptors(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random 256-bit descriptors: two of them differ in about 128 bits, far beyond max_distance (64)."""
    return rng.integers(0, 256, (n, 32), dtype=np.uint8)


def flip(rng: np.random.Generator, desc: np.ndarray, bits: int) -> np.ndarray:
    """Each descriptor with `bits` random bits flipped (a re-encoded copy's keypoints)."""
    out = desc.copy()
    for row in out:
        for b in rng.choice(256, bits, replace=False):
            row[b // 8] ^= np.uint8(1 << (b % 8))
    return out


EMPTY = np.zeros((0, 32), np.uint8)


def test_keypoint_labels_aggregate_votes_of_copies():
    """Two copies of a picture share label 0; a crop shares 6 keypoints with them. Per image, the crop's 6
    votes split between the identical copies and the copies vote for each other: no pair with the crop.
    Per label, the copies vote for the crop too: one pair of labels."""
    rng = np.random.default_rng(1)
    pic = descriptors(rng, 60)
    crop = np.concatenate([flip(rng, pic[:6], 3), descriptors(rng, 30)])
    other = descriptors(rng, 60)
    sets = [pic, pic.copy(), crop, other]
    assert keypoint_pairs(sets) == [(0, 1)]
    assert keypoint_pairs(sets, labels=np.array([0, 0, 1, 2])) == [(0, 1)]
    assert keypoint_pairs(sets, labels=np.array([5, 5, 9, 2])) == [(5, 9)]  # labels need not be 0..n-1


@pytest.mark.parametrize("shared", [4, 10])
def test_keypoint_min_votes_respected(shared):
    """Each shared keypoint votes both ways: `shared` keypoints give exactly 2 * shared votes."""
    rng = np.random.default_rng(2)
    a = descriptors(rng, 50)
    b = np.concatenate([flip(rng, a[:shared], 5), descriptors(rng, 40)])
    assert keypoint_pairs([a, b], min_votes=2 * shared) == [(0, 1)]
    assert keypoint_pairs([a, b], min_votes=2 * shared + 1) == []


def test_keypoint_max_distance_respected():
    rng = np.random.default_rng(3)
    a = descriptors(rng, 30)
    b = flip(rng, a, 40)
    assert keypoint_pairs([a, b], max_distance=40) == [(0, 1)]
    assert keypoint_pairs([a, b], max_distance=39) == []


def test_keypoint_empty_and_small_sets():
    rng = np.random.default_rng(4)
    a = descriptors(rng, 20)
    assert keypoint_pairs([]) == []
    assert keypoint_pairs([a]) == []
    assert keypoint_pairs([EMPTY, EMPTY]) == []
    assert keypoint_pairs([a, EMPTY]) == []
    assert keypoint_pairs([a, a.copy()], labels=np.array([3, 3])) == []  # one label: nothing to pair
    # an empty set in the middle does not shift the owners of the sets after it
    assert keypoint_pairs([a, EMPTY, flip(rng, a, 3)]) == [(0, 2)]
    assert keypoint_pairs([EMPTY, a, EMPTY, a.copy(), EMPTY]) == [(1, 3)]
    # sets too small to reach min_votes
    tiny = a[:3]
    assert keypoint_pairs([tiny, tiny.copy()]) == []
    assert keypoint_pairs([tiny, tiny.copy()], min_votes=6) == [(0, 1)]


def test_keypoint_top_partners():
    """A pair is kept while either of its labels has fewer than `top` partners, strongest pairs first."""
    rng = np.random.default_rng(5)
    s01, s02, s12 = descriptors(rng, 15), descriptors(rng, 10), descriptors(rng, 5)
    sets = [np.concatenate([s01, s02]), np.concatenate([s01, s12]), np.concatenate([s02, s12])]
    assert keypoint_pairs(sets, min_votes=2) == [(0, 1), (0, 2), (1, 2)]
    assert keypoint_pairs(sets, min_votes=2, top=1) == [(0, 1), (0, 2)]  # (1, 2) is neither one's best


def test_keypoint_pairs_past_the_flat_limit():
    """Beyond DESC_FLAT_LIMIT descriptors an inverted-file index is searched: a copy is still found among
    many unrelated pictures, and nothing else is paired."""
    from dedupe.index import DESC_FLAT_LIMIT

    rng = np.random.default_rng(6)
    n_sets = DESC_FLAT_LIMIT // 96 + 10
    sets = [descriptors(rng, 96) for _ in range(n_sets)]
    sets.append(flip(rng, sets[7], 4))
    assert sum(len(s) for s in sets) > DESC_FLAT_LIMIT
    assert keypoint_pairs(sets) == [(7, n_sets)]


def test_a_low_contrast_picture_finds_enough_keypoints_for_its_crop(tmp_path):
    """Too few corners stand out by FAST_THRESHOLD in a dim, soft picture (a storm sky): the keypoints
    are searched again at SOFT_THRESHOLD, and its crop is found."""
    from PIL import ImageEnhance

    from dedupe.features import keypoints as kp
    from images import encode, group_names

    def soft(seed):
        return ImageEnhance.Contrast(photo(seed, (960, 720))).enhance(0.12)

    pic = soft(91)
    gray, _ = decode(encode(pic), 10**9)
    assert len(kp._orb(kp.FAST_THRESHOLD).detect(gray, None)) < kp.KEYPOINTS // 2
    xy, desc = kp.keypoints(gray, 1.0)
    assert len(desc) == kp.KEYPOINTS and len(xy) == kp.KEYPOINTS
    (tmp_path / "orig.jpg").write_bytes(encode(pic))
    (tmp_path / "crop.jpg").write_bytes(encode(pic.crop((100, 75, 960, 720))))  # 80%, off centre
    (tmp_path / "other.jpg").write_bytes(encode(soft(92)))
    assert group_names(scan([tmp_path], Settings(workers=1))) == [{"orig.jpg", "crop.jpg"}]


def wallpaper(seed: int, size: tuple[int, int] = (480, 640)) -> Image.Image:
    """A featureless picture like a phone wallpaper: colour gradients one way and across, and a soft arc."""
    w, h = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32) / max(w, h)
    top, bottom, right = (rng.uniform(40, 220, 3) for _ in range(3))
    img = top * (1 - y)[..., None] + bottom * y[..., None] + (right - 128) * 0.5 * x[..., None]
    cx, cy, r = rng.uniform(0.7, 1.1), rng.uniform(-0.1, 0.2), rng.uniform(0.45, 0.6)
    arc = 1 / (1 + np.exp(-(r - np.hypot(x - cx, y - cy)) / 0.04))
    img += arc[..., None] * rng.uniform(-40, 40, 3)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("seed", [1, 2, 4])
def test_a_featureless_wallpaper_turned_or_mirrored_is_the_same_picture(tmp_path, monkeypatch, seed):
    """Turned 180 degrees or mirrored and re-encoded, a gradient wallpaper is its own pixels again (mean
    difference under a grey level): the same picture. Another wallpaper turned is not, nor, with the
    turned allowance at nothing, the copies (they do not match unturned)."""
    import dedupe.match

    original = wallpaper(seed)
    assert detail(gray_array(original)) < LOW_DETAIL
    original.save(tmp_path / "original.jpg", quality=95)
    original.rotate(180).save(tmp_path / "turned.jpg", quality=88)
    original.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "mirrored.jpg", quality=88)
    wallpaper(seed + 10).rotate(180).save(tmp_path / "other.jpg", quality=90)
    settings = Settings(workers=1)
    assert group_names(scan([tmp_path], settings)) == [{"original.jpg", "turned.jpg", "mirrored.jpg"}]
    monkeypatch.setattr(dedupe.match, "TURNED_FLAT_MAX_DIFF", -1.0)
    assert group_names(scan([tmp_path], settings)) == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_crop_of_a_featureless_picture_is_found_by_its_layout(tmp_path, monkeypatch, seed):
    """A featureless picture has no keypoints to find its crops by, and its crops do not match its whole
    frame. Their layouts match windows of it, and placed there by correlation they are its pixels: found,
    with the box they were cut from. Another such picture is not; nor are the crops when nothing may
    differ (FLAT_CROP_MAX_DIFF)."""
    import dedupe.verify

    original = cloudy(seed)
    original.save(tmp_path / "original.jpg", quality=95)
    boxes = {"offset.jpg": crop_box(original.size, 0.8, 0.9, 0.3), "centre.jpg": crop_box(original.size, 0.7, 0.5, 0.5)}
    for name, box in boxes.items():
        crop = original.crop(box)
        assert features(crop).detail < LOW_DETAIL and len(features(crop).kp_desc) < MIN_INLIERS
        assert verify(features(original), features(crop), DEFAULT) is None
        crop.save(tmp_path / name, quality=88)
    cloudy(seed + 10).save(tmp_path / "other.jpg", quality=90)
    result, report = scanned(str(tmp_path), SERIAL)
    assert group_names(result) == [{"original.jpg", *boxes}]
    members = report_group(report, "original.jpg")
    for name, box in boxes.items():
        transform = members[name]["transform"]
        assert transform["crop"]["of"] == "member"
        for got, want in zip(transform["crop"]["box"], box):
            assert abs(got - want) <= 0.02 * 800, (transform["crop"]["box"], box)
    monkeypatch.setattr(dedupe.verify, "FLAT_CROP_MAX_DIFF", -1.0)
    assert group_of(scan([tmp_path], SERIAL), "original.jpg") is None


@pytest.mark.parametrize("seed", [2, 3])
def test_a_featureless_crop_between_the_windows_is_still_proposed(tmp_path, seed):
    """A crop 81% wide placed between the layout windows' widths and places correlates with the nearest
    window at 0.95-0.98 on a cloudy field: still a candidate (LAYOUT_MATCH), and found."""
    from dedupe.crops import LAYOUT_MATCH, _layouts, _windows

    original = cloudy(seed)
    crop = original.crop((107, 75, 757, 562))
    thumb, whole = features(crop, 88).thumb, features(original, 95).thumb
    nearest = float((_layouts(whole, _windows(whole)) @ _layouts(thumb, [(0, 0, *thumb.shape[::-1])])[0]).max())
    assert LAYOUT_MATCH <= nearest < 0.98
    original.save(tmp_path / "original.jpg", quality=95)
    crop.save(tmp_path / "crop.jpg", quality=88)
    assert group_names(scan([tmp_path], SERIAL)) == [{"original.jpg", "crop.jpg"}]


@pytest.mark.parametrize("seed", [1, 2, 4])
def test_a_featureless_crop_is_not_a_crop_of_the_next_burst_frame(seed):
    """Two frames of a featureless burst: windows 10% apart of one scene, the second 3% brighter. A crop
    of the first lies inside the second as well, but its grey levels there are not the second's: it is a
    crop of its own frame only. Were the frames the same pixels, it would be a crop of both."""
    scene = cloudy(seed).resize((1000, 750))
    first, second = scene.crop((0, 0, 800, 600)), scene.crop((80, 0, 880, 600))
    crop = first.crop((100, 75, 740, 555))
    f_first, f_crop = features(first), features(crop, 88)
    found = flat_crop(f_first, f_crop, DEFAULT, 0.6)
    assert found is not None and found[1]["cropped"] == "second"
    assert flat_crop(features(brighten(second, 1.03)), f_crop, DEFAULT, 0.6) is None
    assert flat_crop(features(second), f_crop, DEFAULT, 0.6) is not None
