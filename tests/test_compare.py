"""`dedupe compare A B`: the score and its band for each kind of copy, the evidence, the difference picture
with the edit boxed where it is, and exit codes a shell script can use."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dedupe import CompareError, Settings, compare
from dedupe.cli import app
from dedupe.compare import band, diff_png
from images import grayscale, logo, photo, recompress, resize, save, watermark

SIZE = (480, 360)


@pytest.fixture(scope="module")
def pics(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    p = photo(61, SIZE)
    files = {
        "a": save(p, root / "a.jpg", quality=95),
        "q50": save(recompress(p, 50), root / "q50.jpg"),
        "half": save(resize(p, 0.5), root / "half.png"),
        "gray": save(grayscale(p), root / "gray.jpg"),
        "wm": save(watermark(p), root / "wm.jpg", quality=95),
        "logo": save(logo(p), root / "logo.jpg"),
        "rot": save(p.rotate(90, expand=True), root / "rot.jpg", quality=95),
        "crop": save(p.crop((30, 20, 450, 340)), root / "crop.jpg", quality=95),
        "turned_crop": save(p.crop((30, 20, 450, 340)).rotate(-90, expand=True), root / "turned_crop.jpg"),
        "shifted": save(p.crop((216, 0, 480, 360)), root / "shifted.jpg", quality=95),
        "other": save(photo(62, SIZE), root / "other.jpg"),
        "wide": save(photo(63, (600, 200)), root / "wide.jpg"),
        "text": root / "notes.jpg",
    }
    files["text"].write_text("not a picture")
    files["copy"] = root / "copy.jpg"
    files["copy"].write_bytes(files["a"].read_bytes())
    return files, p


def changed(a: Image.Image, b: Image.Image) -> tuple[int, int, int, int]:
    """Bounding box (x1, y1 exclusive) of the pixels an edit changed."""
    diff = np.abs(np.asarray(a.convert("RGB"), int) - np.asarray(b.convert("RGB"), int)).max(axis=2)
    ys, xs = np.nonzero(diff > 8)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def overlap(a, b) -> float:
    """Share of box b covered by box a."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h) / ((b[2] - b[0]) * (b[3] - b[1]))


def test_bands():
    assert [band(s) for s in (100, 90, 89, 70, 69, 50, 49, 0)] == [
        "near identical",
        "near identical",
        "same picture with visible edits",
        "same picture with visible edits",
        "related",
        "related",
        "different",
        "different",
    ]


def test_identical_files_score_100(pics):
    files, _ = pics
    c = compare(files["a"], files["copy"])
    assert (c.score, c.band, c.match, c.byte_identical) == (100, "near identical", True, True)
    assert (c.phash_distance, c.dhash_distance, c.mse, c.nrmse, c.regions) == (0, 0, 0.0, 1.0, [])


@pytest.mark.parametrize("name", ["q50", "half", "gray"])
def test_recompressed_resized_and_gray_copies_are_near_identical(pics, name):
    files, _ = pics
    c = compare(files["a"], files[name])
    assert c.match and c.band == "near identical" and not c.byte_identical, c
    assert c.regions == []  # nothing local differs
    assert c.transform.get("crop") is None and "rotated" not in c.transform


def test_mse_and_nrmse_measure_the_pixels_not_the_structure(pics):
    files, _ = pics
    recompressed, gray = compare(files["a"], files["q50"]), compare(files["a"], files["gray"])
    assert 0 < recompressed.mse < gray.mse
    assert gray.nrmse < recompressed.nrmse < 1


@pytest.mark.parametrize("name,edit", [("wm", watermark), ("logo", logo)])
def test_a_watermark_or_logo_scores_high_and_is_boxed_where_it_is(pics, name, edit):
    files, p = pics
    c = compare(files["a"], files[name])
    assert c.match and c.score >= 85, c
    where = changed(p, edit(p))
    assert len(c.regions) == 1 and overlap(c.regions[0], where) > 0.9, (c.regions, where)
    assert overlap(where, c.regions[0]) > 0.5  # and not much more than the edit


def test_the_diff_picture_boxes_the_watermark_in_red(pics):
    files, p = pics
    c = compare(files["a"], files["wm"])
    png = Image.open(io.BytesIO(diff_png(c))).convert("RGB")
    arr = np.asarray(png).astype(int)
    bar, panel = 18, (arr.shape[1] - 12) // 3
    assert arr.shape[0] - bar == round(panel * SIZE[1] / SIZE[0])  # three panels of the picture's shape
    first = arr[bar:, :panel]
    red = (first[:, :, 0] > 200) & (first[:, :, 1] < 60) & (first[:, :, 2] < 60)
    ys, xs = np.nonzero(red)
    scale = SIZE[0] / panel
    box = (xs.min() * scale, ys.min() * scale, (xs.max() + 1) * scale, (ys.max() + 1) * scale)
    assert overlap(box, changed(p, watermark(p))) > 0.9, box
    second = arr[bar:, panel + 6 : 2 * panel + 6]  # the same box on B
    assert ((second[:, :, 0] > 200) & (second[:, :, 1] < 60) & (second[:, :, 2] < 60)).sum() >= red.sum() // 2


def test_different_pictures_score_under_50(pics):
    files, _ = pics
    for other in ("other", "wide"):  # the same shape, and another aspect ratio (aligned, not refused)
        c = compare(files["a"], files[other])
        assert c.score < 50 and c.band == "different" and not c.match, c
        assert c.transform == {}


def test_a_turned_copy_is_found_with_its_turn(pics):
    files, _ = pics
    c = compare(files["a"], files["rot"])
    assert c.match and c.score >= 90 and c.transform["rotated"] == 270  # PIL turns counter-clockwise
    assert c.size_b == (SIZE[1], SIZE[0])


@pytest.mark.parametrize("name,turn", [("crop", None), ("turned_crop", 90)])
def test_a_crop_is_found_with_its_rectangle(pics, name, turn):
    files, _ = pics
    c = compare(files["a"], files[name])
    assert c.match and c.score >= 85, c
    assert c.transform["crop"]["of"] == "b" and c.transform.get("rotated") == turn
    assert np.allclose(c.transform["crop"]["box"], [30, 20, 450, 340], atol=4), c.transform
    assert c.inliers >= 12
    swapped = compare(files[name], files["a"])  # read from the crop's side
    assert swapped.match and swapped.transform["crop"]["of"] == "a"


def test_overlapping_views_are_related_not_a_match(pics):
    files, _ = pics
    c = compare(files["a"], files["shifted"])  # keeps 55% of the picture: under min_crop_area
    assert c.band == "related" and 50 <= c.score < 70 and not c.match, c
    assert c.transform["similar"] and c.transform["overlap"] == pytest.approx(0.55, abs=0.03)


def test_threshold_decides_the_match_not_the_score(pics):
    files, _ = pics
    plain = compare(files["a"], files["wm"])
    strict = compare(files["a"], files["wm"], threshold=99)
    assert strict.score == plain.score < 99 and strict.band == plain.band and not strict.match
    lenient = compare(files["a"], files["shifted"], threshold=60)
    assert lenient.score < 60 and not lenient.match  # a rejected pair stays under the threshold


def test_errors_are_compare_errors(pics, tmp_path):
    files, _ = pics
    with pytest.raises(CompareError, match="no such file"):
        compare(files["a"], tmp_path / "missing.jpg")
    with pytest.raises(CompareError, match="unrecognised"):
        compare(files["text"], files["a"])
    with pytest.raises(CompareError, match="not a file"):
        compare(files["a"], tmp_path)
    with pytest.raises(CompareError, match="threshold"):
        compare(files["a"], files["a"], threshold=0)


def test_settings_reach_verification(pics):
    files, _ = pics
    assert not compare(files["a"], files["rot"], Settings(rotations=False)).match


# --------------------------------------------------------------------------- command line


def run(*args):
    return CliRunner().invoke(app, ["compare", *map(str, args)])


def stderr_of(result) -> str:
    try:
        return result.stderr
    except (ValueError, AttributeError):  # older click: stderr mixed into output
        return result.output


def test_cli_text_and_exit_codes(pics):
    files, _ = pics
    same = run(files["a"], files["wm"])
    assert same.exit_code == 0, same.output
    assert "near identical (a match at threshold 70)" in same.stdout
    for field in ("byte-identical:", "pHash", "SSIM:", "MSE, NRMSE:", "transform:", "keypoint inliers:"):
        assert field in same.stdout
    different = run(files["a"], files["other"])
    assert different.exit_code == 1 and "different (not a match" in different.stdout
    crop = run(files["a"], files["crop"])
    assert crop.exit_code == 0 and "B is the part" in crop.stdout
    assert run(files["a"], files["wm"], "--threshold", "99").exit_code == 1


def test_cli_json(pics, tmp_path):
    files, _ = pics
    out = tmp_path / "diff.png"
    result = run(files["a"], files["wm"], "--json", "--diff", out)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["match"] is True and data["band"] == "near identical" and data["diff"] == str(out)
    types = {
        "a": str, "b": str, "score": int, "band": str, "match": bool, "threshold": int, "byte_identical": bool,
        "phash_distance": int, "dhash_distance": int, "ssim": float, "mse": float, "nrmse": float,
        "transform": dict, "inliers": int, "size_a": list, "size_b": list, "regions": list,
    }  # fmt: skip
    for key, kind in types.items():
        assert isinstance(data[key], kind), key
    assert Image.open(out).format == "PNG"


@pytest.mark.parametrize(
    "case,message",
    [("missing", "no such file"), ("text", "unrecognised"), ("folder", "not a file"), ("diff", "does not exist")],
)
def test_cli_errors_exit_2_with_one_line(pics, tmp_path, case, message):
    files, _ = pics
    args = {
        "missing": [files["a"], tmp_path / "missing.jpg"],
        "text": [files["a"], files["text"]],
        "folder": [tmp_path, files["a"]],
        "diff": [files["a"], files["wm"], "--diff", tmp_path / "no" / "d.png"],
    }[case]
    result = run(*args)
    assert result.exit_code == 2
    err = stderr_of(result).strip()
    assert err.startswith("dedupe: ") and message in err and "\n" not in err, err


def test_exit_codes_of_the_installed_command(pics, tmp_path, cli_env):
    """Through main(), as a shell sees them: 1 for different pictures, 2 and one line for a missing file."""
    import subprocess
    import sys

    files, _ = pics

    def dedupe(*args):
        return subprocess.run(
            [sys.executable, "-m", "dedupe", "compare", *map(str, args)], capture_output=True, text=True, env=cli_env
        )

    different = dedupe(files["a"], files["other"])
    assert different.returncode == 1 and different.stdout.startswith("Score ") and not different.stderr
    missing = dedupe(files["a"], tmp_path / "missing.jpg")
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr == f"dedupe: no such file: {tmp_path / 'missing.jpg'}\n"
