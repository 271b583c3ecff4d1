"""Stage 6: SSIM of aligned thumbnails confirms a candidate pair, or rejects it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from dedupe.config import Settings
from dedupe.decode import decode
from dedupe.features.hashes import describe
from dedupe import verify as verify_module
from dedupe.verify import agreement, compare, featureless, same_relief, ssim_map, verify
from images import blur, border, brighten, crop, encode, gray_array, photo, recompress, resize

DEFAULT = Settings().ssim_threshold


def features(im: Image.Image, fmt: str = "PNG", **kw):
    gray, _ = decode(encode(im, fmt, **kw), 10**9)
    return describe(gray)


def shifted(im: Image.Image, dx: float, dy: float) -> Image.Image:
    return im.transform(im.size, Image.Transform.AFFINE, (1, 0, dx, 0, 1, dy), resample=Image.Resampling.BILINEAR)


@pytest.fixture(scope="module")
def pic():
    return photo(11, (480, 360))


@pytest.fixture(scope="module")
def fpic(pic):
    return features(pic)


def test_identical_thumbnails(fpic):
    verdict, transform = verify(fpic, fpic, DEFAULT)
    assert verdict.ssim == pytest.approx(1.0, abs=1e-6)
    assert verdict.score == 100
    assert transform == {"aligned": False}


def test_ssim_map_of_identical_images_is_one():
    a = np.asarray(photo(2, (64, 48)).convert("L"))
    values, weights = ssim_map(a, a)
    assert np.allclose(values, 1.0, atol=1e-4)
    assert (weights > 0).all()


@pytest.mark.parametrize(
    "edit", ["q40", "resize50", "resize25", "shift3px", "crop3pct", "blur", "brighten", "jpeg_q70"]
)
def test_same_picture_scores_high(pic, fpic, edit):
    other = {
        "q40": lambda: recompress(pic, 40),
        "resize50": lambda: resize(pic, 0.5),
        "resize25": lambda: resize(pic, 0.25),
        "shift3px": lambda: shifted(pic, 3, 2),
        "crop3pct": lambda: crop(pic, 0.03),
        "blur": lambda: blur(pic, 1.0),
        "brighten": lambda: brighten(pic, 1.2),
        "jpeg_q70": lambda: pic,
    }[edit]()
    fmt = "JPEG" if edit == "jpeg_q70" else "PNG"
    found = verify(fpic, features(other, fmt, **({"quality": 70} if fmt == "JPEG" else {})), DEFAULT)
    assert found is not None
    verdict, transform = found
    assert verdict.ssim >= 0.9
    assert verdict.score >= 90
    assert verdict.score == round(100 * verdict.ssim) or verdict.score == 100
    assert isinstance(transform["aligned"], bool)


def test_shift_needs_alignment(pic, fpic):
    verdict, transform = verify(fpic, features(shifted(pic, 4, 3)), DEFAULT)
    assert transform["aligned"] is True and verdict.aligned
    assert verdict.cover >= 0.85
    unaligned = compare(fpic.thumb, features(shifted(pic, 4, 3)).thumb)
    assert unaligned.ssim >= verdict.ssim - 1e-9


def test_small_frame_matches_by_alignment_or_frame_view(pic, fpic):
    framed = features(border(pic, 0.03))
    assert framed.box is not None
    verdict, transform = verify(fpic, framed, DEFAULT)
    assert verdict.score >= 90
    assert transform.get("aligned") or transform.get("frame removed") == "second"


@pytest.mark.parametrize("frac", [0.06, 0.10])
def test_wide_frame_needs_the_frame_removed_view(pic, fpic, frac):
    """A frame wider than alignment can absorb (8%): only the view inside the frame matches."""
    framed = features(border(pic, frac))
    assert compare(fpic.thumb, framed.thumb).ssim < 0.5
    verdict, transform = verify(fpic, framed, DEFAULT)
    assert verdict.score >= 90
    assert transform["frame removed"] == "second"
    verdict, transform = verify(framed, fpic, DEFAULT)
    assert transform["frame removed"] == "first"


@pytest.mark.parametrize("seed", [12, 13, 14, 15, 16])
def test_different_pictures_rejected(fpic, seed):
    other = features(photo(seed, (480, 360), palette_seed=11))  # same size and palette, other content
    assert verify(fpic, other, DEFAULT) is None
    low = verify(fpic, other, 0.01)
    assert low is None or low[0].ssim < 0.4


def test_mirror_image_is_not_the_same_picture(pic, fpic):
    assert verify(fpic, features(pic.transpose(Image.Transpose.FLIP_LEFT_RIGHT)), DEFAULT) is None


@pytest.mark.parametrize("dx", [28, 36])
def test_a_frame_panned_beside_is_not_the_same_picture(dx):
    """ECC slides the next frame of a burst panned by 6-7.5% into place (SSIM 0.99 where they overlap),
    which leaves part of each outside the other: views beside each other, not one picture. Panned by 2%,
    or cropped, a copy lies within the other and still matches."""
    wide = photo(11, (560, 360))
    first = features(wide.crop((0, 0, 480, 360)), "JPEG", quality=90)
    assert verify(first, features(wide.crop((dx, 0, dx + 480, 360)), "JPEG", quality=90), DEFAULT) is None
    for window in ((10, 0, 490, 360), (24, 12, 480, 360)):
        found = verify(first, features(wide.crop(window), "JPEG", quality=90), DEFAULT)
        assert found is not None and found[0].score >= 90 and found[1]["aligned"]


def pale(seed: int, relief: float = 12.0, size: tuple[int, int] = (480, 360)) -> Image.Image:
    """A featureless picture: a gradient, vignetting and, unless `relief` is 0, four soft patches of light."""
    w, h = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    tone = 150 + 0.04 * x - 0.03 * y - 25 * (((x - w / 2) / w) ** 2 + ((y - h / 2) / h) ** 2)
    for _ in range(4):
        cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
        tone += rng.choice([-1, 1]) * relief * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * (0.12 * w) ** 2))
    return Image.fromarray(np.clip(tone, 0, 255).astype(np.uint8)).convert("RGB")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_featureless_picture_brightened_keeps_its_relief(seed):
    """A pale picture and its copy brightened 1.4x differ by 30-60 grey levels, which featureless pictures
    may not, but keep the shape of their light (same_relief): the same picture. Another with its patches
    elsewhere is not, and neither is a blank sky, whose only shape is gradient and vignetting."""
    picture = features(pale(seed), "JPEG", quality=90)
    brighter = features(brighten(pale(seed), 1.4), "JPEG", quality=90)
    assert featureless(picture, brighter)
    assert verify(picture, brighter, DEFAULT) is not None
    assert verify(picture, features(brighten(pale(seed + 10), 1.4), "JPEG", quality=90), DEFAULT) is None
    blank = features(pale(seed, relief=0), "JPEG", quality=90)
    assert not same_relief(blank.thumb, features(brighten(pale(seed, relief=0), 1.4), "JPEG", quality=90).thumb)
    assert verify(blank, features(brighten(pale(seed, relief=0), 1.4), "JPEG", quality=90), DEFAULT) is None


def test_different_aspect_ratio_cannot_be_compared(fpic):
    assert compare(fpic.thumb, features(photo(11, (360, 480))).thumb) is None
    assert verify(fpic, features(photo(11, (360, 480))), 0.01) is None


def test_large_crop_is_not_aligned(pic, fpic):
    """Beyond the small-warp limits (8%) ECC may not wander: a 30% crop is not confirmed as the same view."""
    found = verify(fpic, features(crop(pic, 0.30)), DEFAULT)
    assert found is None


def test_threshold_is_respected(pic, fpic):
    edited = features(recompress(resize(pic, 0.3), 30))
    verdict, _ = verify(fpic, edited, 0.01)
    assert verify(fpic, edited, min(1.0, verdict.ssim + 1e-3)) is None
    assert verify(fpic, edited, verdict.ssim) is not None


# --------------------------------------------------------------------------- overlays on dim pictures


@pytest.fixture(scope="module")
def dim():
    """A dim, soft picture: a mark added to it outweighs the rest in detail-weighted SSIM."""
    from PIL import ImageEnhance

    return ImageEnhance.Brightness(ImageEnhance.Contrast(photo(5, (640, 480))).enhance(0.7)).enhance(0.35)


def _disc(im: Image.Image, x: int, y: int) -> Image.Image:
    from PIL import ImageDraw

    out = im.copy()
    ImageDraw.Draw(out).ellipse((x, y, x + 60, y + 60), fill=(230, 220, 200))
    return out


def test_a_logo_on_a_dim_picture_is_the_same_picture(dim):
    from images import logo, watermark

    plain = features(dim, "JPEG", quality=90)
    assert plain.detail >= 1.5  # not featureless: the overlay rule applies
    for marked in (logo(dim), watermark(dim)):
        found = verify(plain, features(marked, "JPEG", quality=90), DEFAULT)
        assert found is not None and found[0].ssim >= 0.9, found
        assert found[0].score < 100  # the mark still counts, by its area


def test_a_long_watermark_on_a_dim_picture_is_the_same_picture(dim, monkeypatch):
    """Text across most of the bottom, 8.5% of the picture: other corpora's watermarks covered 6.2-9.0%, and
    at most 6% used to count by area."""
    import dedupe.verify as verify_module
    from images import watermark

    plain = features(dim, "JPEG", quality=90)
    marked = features(watermark(dim, "(c) 2021 Jane Doe Photography", lines=14), "JPEG", quality=90)
    found = verify(plain, marked, DEFAULT)
    assert found is not None and found[0].ssim >= 0.8, found
    monkeypatch.setattr(verify_module, "OVERLAY_MAX", 0.06)
    assert verify(plain, marked, DEFAULT) is None


def test_something_new_in_the_middle_or_moved_is_not_an_overlay(dim):
    """A change in the middle of the frame, or detail that left one place for another (a subject that
    moved between two frames), is a change, not a mark added along an edge."""
    plain = features(dim, "JPEG", quality=90)
    assert verify(plain, features(_disc(dim, 290, 210), "JPEG", quality=90), DEFAULT) is None
    moved = features(_disc(dim, 100, 100), "JPEG", quality=90), features(_disc(dim, 420, 260), "JPEG", quality=90)
    assert verify(*moved, DEFAULT) is None


def test_overlay_is_one_sided_small_and_along_an_edge():
    from dedupe.verify import _overlay

    h, w = 96, 128
    mask = np.ones((h, w), bool)
    low = np.zeros((h, w), bool)
    aa, bb = np.full((h, w), 1.0, np.float32), np.full((h, w), 1.0, np.float32)
    low[85:92, 70:120] = True  # a mark in the bottom right corner, detail in b only
    bb[85:92, 70:120] = 400.0
    region = _overlay(low, aa, bb, mask)
    assert region is not None and region[88, 90] and not region[40, 60]
    aa2 = aa.copy()
    low2 = low.copy()
    low2[10:17, 10:60] = True
    aa2[10:17, 10:60] = 400.0  # detail that b lacks elsewhere: two-sided, a change
    assert _overlay(low2, aa2, bb, mask) is None
    low3, bb3 = np.zeros((h, w), bool), np.full((h, w), 1.0, np.float32)
    low3[40:50, 50:80], bb3[40:50, 50:80] = True, 400.0  # in the middle
    assert _overlay(low3, aa, bb3, mask) is None
    low4, bb4 = np.zeros((h, w), bool), np.full((h, w), 1.0, np.float32)
    low4[:, :20], bb4[:, :20] = True, 400.0  # along an edge but a fifth of the picture: too big
    assert _overlay(low4, aa, bb4, mask) is None


def _banded(seed: int) -> np.ndarray:
    """A 128x96 thumbnail with a bright textured sky along the top and dark textured ground along the
    bottom: a third of it clips under more contrast."""
    a = cv2.resize(gray_array(photo(seed, (480, 360))), (128, 96), interpolation=cv2.INTER_AREA).astype(np.float32)
    texture = cv2.GaussianBlur(np.random.default_rng(seed).normal(0, 45, a.shape).astype(np.float32), (0, 0), 1.0)
    a[:20] = 238 + texture[:20]
    a[-12:] = 18 + texture[-12:]
    return np.clip(a, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("seed", [2, 5, 7])
def test_detail_clipped_away_by_more_contrast_is_not_disagreement(seed, monkeypatch):
    """More contrast turns the textured sky flat white and the ground flat black: the detail lost there
    is the edit's doing, and the copy agrees everywhere else. Another picture painted over with black
    still disagrees (and scores low): clipping excuses pixels, not the SSIM they cost."""
    a = _banded(seed)
    more = np.clip((a.astype(np.float32) - 128) * 1.6 + 128, 0, 255).astype(np.uint8)
    value, consistent, _ = agreement(a, more)
    assert consistent and value >= 0.85
    painted = a.copy()
    painted[:, 75:] = 0
    value, consistent, _ = agreement(a, painted)
    assert not consistent and value < 0.7
    monkeypatch.setattr(verify_module, "_clipped", lambda mean, var: np.zeros(mean.shape, bool))
    assert not agreement(a, more)[1]  # without the rule, the clipped bands disagree


def _pale_photo(seed: int) -> Image.Image:
    """A grey photo-like picture in light tones (110-240): brightened 1.5x, much of it clips to white."""
    a = gray_array(photo(seed, (480, 360))).astype(np.float32)
    return Image.fromarray(np.clip(a * 0.5 + 110, 0, 255).astype(np.uint8)).convert("RGB")


@pytest.mark.parametrize("seed", [2, 3])
def test_a_copy_brightened_until_it_clips_matches_with_tones_matched(seed, monkeypatch):
    """Brightened 1.5x, two thirds of a pale photo turn flat white: the tone cells there disagree and the
    copy fails as it is, but matches once the original has the copy's tones. Another pale photo
    brightened alike does not match, tones matched or not."""
    picture = features(_pale_photo(seed), "JPEG", quality=90)
    brighter = features(brighten(_pale_photo(seed), 1.5), "JPEG", quality=90)
    assert 0.5 < verify_module.clipped_share(brighter.thumb) < verify_module.MAX_CLIPPED
    found = verify(picture, brighter, DEFAULT)
    assert found is not None and found[1]["tones matched"] and found[0].ssim >= verify_module.TONES_MATCHED_SSIM
    assert found[0].ssim > 0.95 and found[0].score == verify_module.TONES_MATCHED_SCORE  # visible edits, not more
    assert verify(brighter, picture, DEFAULT)[1]["tones matched"]  # either way round
    other = features(brighten(_pale_photo(seed + 20), 1.5), "JPEG", quality=90)
    assert verify(picture, other, DEFAULT) is None
    monkeypatch.setattr(verify_module, "TONE_CLIPPED", 2.0)  # never tried: the copy is missed
    monkeypatch.setattr(verify_module, "TONE_RATIO", 1e9)
    assert verify(picture, brighter, DEFAULT) is None


def test_a_copy_clipped_almost_all_over_is_not_tone_matched():
    """Past MAX_CLIPPED too little is left to tell one picture from another (brightened burst frames
    tone-matched at 0.92): the copy is not matched, although matching would score it 0.99."""
    picture = features(_pale_photo(4), "JPEG", quality=90)
    brighter = features(brighten(_pale_photo(4), 1.5), "JPEG", quality=90)
    assert verify_module.clipped_share(brighter.thumb) > verify_module.MAX_CLIPPED
    assert compare(verify_module.matched(picture.thumb, brighter.thumb), brighter.thumb).ssim > 0.95
    assert verify(picture, brighter, DEFAULT) is None


@pytest.mark.parametrize(
    "shape, first, second",
    [
        ((2, 1), (193, 91), (171, 149)),
        ((2, 1), (200, 60), (150, 120)),
        ((3, 2), (10, 200, 90, 30, 250, 120), (60, 130, 100, 80, 150, 110)),
    ],
)
def test_pictures_of_a_few_pixels_are_not_tone_matched(shape, first, second, monkeypatch):
    """Matched to another's histogram, a handful of pixels takes any tones: two different pictures of 2 or
    6 pixels, their grey levels in the same order, scored SSIM 1.000. Under TONE_MIN_PIXELS they are not
    matched that way (with no floor, they are); a copy still matches."""
    a, b = (Image.fromarray(np.array(v, np.uint8).reshape(shape)) for v in (first, second))
    fa, fb = features(a), features(b)
    assert verify(fa, fb, DEFAULT) is None
    assert verify(fa, features(a), DEFAULT) is not None
    monkeypatch.setattr(verify_module, "TONE_MIN_PIXELS", 0)
    assert verify(fa, fb, DEFAULT) is not None


@pytest.mark.parametrize("seed", [2, 3, 5])
def test_a_soft_photo_darkened_until_featureless_matches_with_tones_matched(seed):
    """A soft photo (detail 2-3) darkened to 0.45 falls under LOW_DETAIL, and the pair was compared only as
    it is, as featureless pairs are (SSIM 0.65 for dark55's dark plasma). The copy takes the photo's tones
    and then passes as featureless pictures must (FLAT_MIN_SSIM, FLAT_MAX_DIFF). Another soft photo
    darkened alike does not match; nor does a pair featureless both, which has no tones to tell it by."""
    from PIL import ImageEnhance

    def soft(s: int, contrast: float = 0.25) -> Image.Image:
        return ImageEnhance.Contrast(photo(s, (480, 360))).enhance(contrast)

    def darker(im: Image.Image):
        return features(ImageEnhance.Brightness(im).enhance(0.45), "JPEG", quality=90)

    picture, copy = features(soft(seed), "JPEG", quality=90), darker(soft(seed))
    assert picture.detail >= verify_module.LOW_DETAIL > copy.detail
    found = verify(picture, copy, DEFAULT)
    assert found is not None and found[1].get("tones matched")
    assert found[0].ssim >= verify_module.FLAT_MIN_SSIM and found[0].mad <= verify_module.FLAT_MAX_DIFF
    assert verify(picture, darker(soft(seed + 30)), DEFAULT) is None
    faint = features(soft(seed, 0.1), "JPEG", quality=90)
    assert faint.detail < verify_module.LOW_DETAIL and verify(faint, darker(soft(seed, 0.1)), DEFAULT) is None


def test_histogram_matching_undoes_a_tone_curve():
    a = gray_array(photo(5, (128, 96)))
    curved = np.clip(255 * (a / 255.0) ** 0.6 * 1.2, 0, 255).astype(np.uint8)  # gamma, then clipped
    back = verify_module.matched(a, curved)
    unclipped = curved < 250
    assert np.abs(back.astype(int) - curved)[unclipped].mean() < 1.5
    assert (np.diff(verify_module.matched(np.arange(256, dtype=np.uint8), curved)) >= 0).all()  # monotone


def _banner(img: Image.Image, text: str = "(c) 2021 Jane Doe Photography - all rights reserved") -> Image.Image:
    """Semi-transparent white text across the bottom, 5.5% of the height, where two rows of tone cells meet."""
    from images import _font

    out = img.convert("RGBA")
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    w, h = out.size
    font = _font(int(h * 0.055))
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    draw.text(((w - (x1 - x0)) // 2, int(h * 0.88) - (y1 - y0) // 2), text, font=font, fill=(255, 255, 255, 190))
    return Image.alpha_composite(out, layer).convert("RGB")


@pytest.mark.parametrize("seed", [5, 7, 9])
def test_a_line_of_text_across_the_bottom_is_an_overlay_not_disagreement(seed):
    """The text's low SSIM and the two rows of tone cells it brightens disagree on more than
    MAX_DISAGREEING of a dim picture, but it is a mark added on top: it counts by its area in the SSIM,
    not as disagreement, and the copy matches. The same text on another picture does not."""
    from PIL import ImageEnhance

    dim = ImageEnhance.Brightness(ImageEnhance.Contrast(photo(seed, (640, 480))).enhance(0.7)).enhance(0.35)
    plain, marked = features(dim, "JPEG", quality=90), features(_banner(dim), "JPEG", quality=90)
    a, b = plain.thumb, marked.thumb
    values, aa, bb, clipped = verify_module._moments(a, b)
    detailed = verify_module._weights(aa, bb) > 2 * verify_module.LOW_DETAIL**2 + 1
    low = detailed & (values < verify_module.DISAGREE_SSIM) & ~clipped
    counted = low | verify_module._tone_mismatch(a, b, np.ones(a.shape, bool))
    assert counted.mean() > verify_module.MAX_DISAGREEING  # as disagreement, the text was too much
    found = verify(plain, marked, DEFAULT)
    assert found is not None and found[0].ssim >= 0.85
    other = ImageEnhance.Brightness(ImageEnhance.Contrast(photo(seed + 1, (640, 480))).enhance(0.7)).enhance(0.35)
    assert verify(plain, features(_banner(other), "JPEG", quality=90), DEFAULT) is None


@pytest.mark.parametrize("seed", [2, 6, 11])
@pytest.mark.parametrize("factor", [0.5, 0.4])
def test_a_copy_darkened_by_half_matches_with_tones_matched(seed, factor, monkeypatch):
    """Darkened by half, a photo keeps its detail, but SSIM's luminance and contrast terms fall to 0.8 each
    and the copy fails as it is (the dev corpus's originals: 30 of 31). Its median and spread are half the
    original's: with the original given its tones, it matches. Another photo darkened alike does not,
    nor the copy with the retry off."""
    from PIL import ImageEnhance

    def darker(im: Image.Image) -> Image.Image:
        return ImageEnhance.Brightness(im).enhance(factor)

    picture = features(photo(seed, (480, 360)), "JPEG", quality=90)
    copy = features(darker(photo(seed, (480, 360))), "JPEG", quality=90)
    found = verify(picture, copy, DEFAULT)
    assert found is not None and found[1].get("tones matched") and found[0].ssim >= verify_module.TONES_MATCHED_SSIM
    assert verify(picture, features(darker(photo(seed + 30, (480, 360))), "JPEG", quality=90), DEFAULT) is None
    monkeypatch.setattr(verify_module, "TONE_RATIO", 1e9)
    assert verify(picture, copy, DEFAULT) is None
