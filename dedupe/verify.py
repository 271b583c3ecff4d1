"""Stage 6: is a candidate pair the same picture? SSIM of the aligned grayscale thumbnails decides.

Alignment: the second thumbnail is resized to the first's shape (aspect ratios must agree within
ASPECT_TOL), then refined by ECC (an affine warp that must stay close to identity: small shifts and
scale changes from re-encoding, resizing, trimmed frames or a 2-3% crop). SSIM is the mean of the
Gaussian-window SSIM map (sigma 1.5, the usual constants) over the pixels both images cover.

Score 0-100: round(100 * SSIM) on those aligned thumbnails, floored at 0. Identical pixels give 100; a pair
compared with tones matched scores 89 at most (TONES_MATCHED_SCORE).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from typing import NamedTuple

import cv2
import numpy as np

from .model import Features

ASPECT_TOL = 0.08
"""Largest relative difference of width/height for two images to be aligned by resizing."""
MAX_SHIFT = 0.08
"""Largest translation ECC may find, as a fraction of the thumbnail's side."""
MAX_SCALE = 0.1
"""Largest scale change ECC may find, either way (x1.1 or x1/1.1: a crop keeping 83% of the area), and
the largest shear or rotation term."""
GOOD_ENOUGH = 0.9
"""SSIM at which no alignment or other view is tried: the pair is already clearly the same picture."""
MIN_COVER = 0.75
"""Least fraction of the first thumbnail that the aligned second one must cover (after a 2-pixel
erosion): an 85% crop aligned onto its original covers about 0.78 of it."""
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


DISAGREE_SSIM = 0.5
"""Local SSIM under which a pixel with some detail (in either picture) disagrees."""
TONE_GRID = 8
"""Flat areas are compared by their mean tone on a TONE_GRID x TONE_GRID grid."""
TONE_TOLERANCE = 0.75
"""Difference of a cell's mean tone, in standard deviations of the cells' tones after matching the two
pictures' overall brightness and contrast, over which the cell disagrees: dark water where the other
picture has bright sea."""
MAX_DISAGREEING = 0.15
"""Share of the compared area that may disagree: a watermark or a logo covers a few percent; two
collages sharing one half, or a 'crop' whose other half is another picture, disagree on 40% and more."""
FLAT_MAX_DIFF = 3.0
"""Mean absolute difference (grey levels) that two featureless pictures may have."""


@dataclass(frozen=True)
class Verdict:
    ssim: float
    score: int
    aligned: bool
    """True when ECC moved the second image (a shift or rescale was needed)."""
    cover: float
    warp: np.ndarray | None = None
    """The ECC warp from the first thumbnail's grid into the second's (resized to the first's shape)."""
    consistent: bool = True
    """No more than MAX_DISAGREEING of the area disagrees."""
    mad: float = 0.0
    """Mean absolute difference of the compared pixels, in grey levels."""


def _moments(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel SSIM, the two local variances, and where either picture is clipped (_clipped)."""
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    aa, bb, ab = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + _C1) * (2 * ab + _C2)
    den = (mu_a**2 + mu_b**2 + _C1) * (aa + bb + _C2)
    return num / den, aa, bb, _clipped(mu_a, aa) | _clipped(mu_b, bb)


CLIP = 6
"""Grey levels from black or white within which a flat neighbourhood is clipped."""


def _at_ends(levels: np.ndarray) -> np.ndarray:
    """Where grey levels are within CLIP of black or white."""
    return (levels <= CLIP) | (levels >= 255 - CLIP)


def _clipped(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Where a picture is flat black or flat white: an edit that raised the contrast or the brightness
    clipped away what detail the other picture has there, which says nothing about whether they are one
    picture. A sunset given more contrast (SSIM 0.87) lost the sky round the sun and the dark ground:
    17% of the picture disagreed, 12% of it where the copy is clipped, and the copy was missed."""
    return _at_ends(mean) & (var <= LOW_DETAIL**2)


def ssim_map(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel SSIM (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5) and per-pixel weights.

    The weight is the local variance of both images (plus 1, so a flat image still averages): where the
    picture has detail is where it counts, and flat sky or wall counts little. Two different pictures
    that are mostly smooth gradients (a misty lake's two halves) then do not look alike: on the dev
    corpus the most similar different pictures fall from 0.73 (plain mean) to 0.48, while edited
    copies stay above 0.8.
    """
    values, aa, bb, _ = _moments(a, b)
    return values, _weights(aa, bb)


def _weights(aa: np.ndarray, bb: np.ndarray) -> np.ndarray:
    """ssim_map's weights from the two local variances."""
    return aa + bb + 1.0


def weighted_mean(values: np.ndarray, weights: np.ndarray, mask: np.ndarray | None = None) -> float:
    if mask is not None:
        values, weights = values[mask], weights[mask]
    return float((values * weights).sum() / weights.sum())


def _tones(img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean grey level of each cell of a TONE_GRID grid over the masked pixels, and which cells are mostly
    masked in."""
    size = (TONE_GRID, TONE_GRID)
    m = mask.astype(np.float32)
    cover = cv2.resize(m, size, interpolation=cv2.INTER_AREA)
    sums = cv2.resize(img.astype(np.float32) * m, size, interpolation=cv2.INTER_AREA)
    return sums / np.maximum(cover, 1e-6), cover >= 0.5


def _tone_mismatch(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Cells whose mean tones disagree once overall brightness and contrast are matched, as a pixel mask."""
    ta, ok = _tones(a, mask)
    tb, _ = _tones(b, mask)
    if ok.sum() < 4:
        return np.zeros(a.shape, bool)
    za = (ta - ta[ok].mean()) / max(float(ta[ok].std()), 8.0)
    zb = (tb - tb[ok].mean()) / max(float(tb[ok].std()), 8.0)
    bad = ((np.abs(za - zb) > TONE_TOLERANCE) & ok).astype(np.uint8)
    return cv2.resize(bad, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


def agreement(
    a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None, overlays: bool = True
) -> tuple[float, bool, float]:
    """(weighted SSIM, whether they agree nearly everywhere, mean absolute difference) of two aligned
    thumbnails, over the `valid` pixels (all by default).

    Disagreeing area: pixels with detail whose local SSIM is low (but where one picture is _clipped),
    and cells whose mean tone differs (flat areas, which SSIM's weighting passes over). At most
    MAX_DISAGREEING of the area may disagree. With `overlays`, detail that one picture adds on top of the
    other (_overlay) counts by its area in the SSIM, not by its detail, and not as disagreement: a line of
    text along the bottom edge disagreed on 9% in SSIM and brightened two rows of tone cells, 15.6% in
    all, and the watermarked copy was missed. Featureless pictures, which must be near-identical, are
    compared without it.
    """
    values, aa, bb, clipped = _moments(a, b)
    weights = _weights(aa, bb)
    mask = np.ones(a.shape, bool) if valid is None else valid
    detailed = weights > 2 * LOW_DETAIL**2 + 1
    disagree = (detailed & (values < DISAGREE_SSIM) & ~clipped) | _tone_mismatch(a, b, mask)
    overlay = _overlay(values < DISAGREE_SSIM, aa, bb, mask) if overlays else None
    if overlay is not None:
        overlay &= mask
        disagree &= ~overlay
    share = float((disagree & mask).sum() / max(1, mask.sum()))
    mad = float(np.abs(a.astype(np.float32) - b.astype(np.float32))[mask].mean())
    value = weighted_mean(values, weights, mask)
    if overlay is not None:  # the rest weighted by detail, the overlay by its area
        covered = float(overlay.sum() / max(1, mask.sum()))
        rest = weighted_mean(values, weights, mask & ~overlay)
        value = max(value, rest * (1 - covered) + float(values[overlay].mean()) * covered)
    return value, share <= MAX_DISAGREEING, mad


OVERLAY_MAX = 0.10
"""Largest share of the picture that detail added to one of the two (a watermark, a logo) may cover to
be left out of the SSIM. Weighted by detail, a white watermark on a dark or misty photo outweighed the
rest of it (SSIM 0.25-0.69 for copies whose hashes differ by 2-10 bits). A long line of text along the
bottom covered 6.2-9.0% on corpora with other edit parameters (0.06 missed all five); at 0.10 no corpus
gained a false pair, and the hard negatives' highest SSIMs did not move."""
ONE_SIDED = 4.0
"""Local variance ratio over which a pixel's detail belongs to one picture only."""
EDGE = 0.2
"""Watermarks and logos sit along the edges: most of an overlay must lie within this share of the width
or height from one."""


def _overlay(low: np.ndarray, aa: np.ndarray, bb: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """The pixels of detail that one picture adds on top of the other, grown by 3 pixels, or None. Only
    one of the two may have such detail: a subject that moved between two frames leaves detail on
    both sides (where it went and where it was), an overlay on one side only."""
    floor = 2 * LOW_DETAIL**2
    only = [low & mask & (x > ONE_SIDED * y + floor) for x, y in ((aa, bb), (bb, aa))]
    shares = [float(o.sum()) / max(1, int(mask.sum())) for o in only]
    added = int(np.argmax(shares))
    if shares[1 - added] > 0.005 or not 0 < shares[added] <= OVERLAY_MAX:
        return None
    h, w = mask.shape
    ys, xs = np.nonzero(only[added])
    near_edge = (np.minimum(xs, w - 1 - xs) < EDGE * w) | (np.minimum(ys, h - 1 - ys) < EDGE * h)
    if near_edge.mean() < 0.8:  # something new in the middle of the frame is a change, not a mark
        return None
    return cv2.dilate(only[added].astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)


def ecc_warp(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Affine warp mapping a's pixel grid into b, or None when ECC fails or wanders off identity.

    Coarse to fine: ECC converges on half-size copies (a quarter of the work), then a few iterations
    at full size refine it; this halves the verify stage's time."""
    fa, fb = a.astype(np.float32), b.astype(np.float32)
    half = (max(8, a.shape[1] // 2), max(8, a.shape[0] // 2))
    warp = np.eye(2, 3, dtype=np.float32)
    try:
        _, warp = cv2.findTransformECC(
            cv2.resize(fa, half, interpolation=cv2.INTER_AREA),
            cv2.resize(fb, half, interpolation=cv2.INTER_AREA),
            warp,
            cv2.MOTION_AFFINE,
            (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 40, 1e-3),
            None,
            3,
        )
        warp[:, 2] *= np.array([a.shape[1] / half[0], a.shape[0] / half[1]], np.float32)
        _, warp = cv2.findTransformECC(
            fa, fb, warp, cv2.MOTION_AFFINE, (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 8, 1e-3), None, 3
        )
    except cv2.error:
        return None
    h, w = a.shape
    scales = np.linalg.svd(warp[:, :2], compute_uv=False)
    if scales.max() > 1 + MAX_SCALE or scales.min() < 1 / (1 + MAX_SCALE):
        return None
    if abs(warp[0, 1]) > MAX_SCALE or abs(warp[1, 0]) > MAX_SCALE:
        return None
    # a crop magnified to the full frame moves the far corner by up to (scale - 1) x side besides the shift
    slack = (scales.max() - 1) if scales.max() > 1 else (1 - scales.min())
    if abs(warp[0, 2]) > (MAX_SHIFT + slack) * w or abs(warp[1, 2]) > (MAX_SHIFT + slack) * h:
        return None
    return warp


def compare(a: np.ndarray, b: np.ndarray, overlays: bool = True) -> Verdict | None:
    """SSIM evidence for two grayscale thumbnails, or None when they cannot be aligned by a small warp;
    `overlays` as in agreement(). ECC's warp is taken only when one thumbnail then lies within the other
    (_nested)."""
    ha, wa = a.shape
    hb, wb = b.shape
    ra, rb = wa / ha, wb / hb
    if abs(ra - rb) / max(ra, rb) > ASPECT_TOL:
        return None
    if (hb, wb) != (ha, wa):
        b = cv2.resize(b, (wa, ha), interpolation=cv2.INTER_AREA if hb * wb > ha * wa else cv2.INTER_LINEAR)
    value, consistent, mad = agreement(a, b, overlays=overlays)
    best = Verdict(value, 0, False, 1.0, None, consistent, mad)
    warp = ecc_warp(a, b) if best.ssim < GOOD_ENOUGH else None
    if warp is not None and np.abs(warp - np.eye(2, 3)).max() > 0.25 / max(ha, wa):
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        moved = cv2.warpAffine(b, warp, (wa, ha), flags=flags, borderMode=cv2.BORDER_REFLECT)
        valid = cv2.warpAffine(np.ones_like(b, dtype=np.uint8), warp, (wa, ha), flags=flags, borderValue=0)
        valid = cv2.erode(valid, np.ones((5, 5), np.uint8)).astype(bool)
        cover = float(valid.mean())
        if cover >= MIN_COVER and _nested(warp, (ha, wa)):
            value, consistent, mad = agreement(a, moved, valid, overlays)
            if value > best.ssim:
                best = Verdict(value, 0, True, cover, warp, consistent, mad)
    score = max(0, min(100, round(100 * best.ssim)))
    return Verdict(best.ssim, score, best.aligned, best.cover, best.warp, best.consistent, best.mad)


def _overlaps(warp: np.ndarray, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """For two thumbnails of `shape` related by an ECC `warp` (a's grid into b's): the share of b that lies
    inside a, the share of a it covers, and the same with a and b swapped."""
    b_in_a, a_kept = _inside(_footprint(cv2.invertAffineTransform(warp), shape), shape)
    a_in_b, b_kept = _inside(_footprint(warp, shape), shape)
    return b_in_a, a_kept, a_in_b, b_kept


def _nested(warp: np.ndarray, shape: tuple[int, int]) -> bool:
    """Whether one thumbnail, brought onto the other by an ECC `warp`, lies INSIDE it: a crop, a rescale
    or a copy off by a pixel does, the next frame of a burst panned by 5-8% does not (it shows what the
    other does not), however well the part they share matches."""
    b_in_a, _, a_in_b, _ = _overlaps(warp, shape)
    return max(b_in_a, a_in_b) >= INSIDE


def _within(a_in_b: float, b_in_a: float) -> list[float]:
    """The transform's "within": [share of the first picture inside the second, share of the second inside
    the first], by which grouping tells the frame a crop was cut from (one it lies wholly inside) from the
    next frame of its burst (one it sticks out of by a few percent)."""
    return [round(float(a_in_b), 3), round(float(b_in_a), 3)]


def _warp_fields(warp: np.ndarray, shape: tuple[int, int]) -> dict:
    """What an ECC warp tells of two thumbnails (both of `shape` here), for the transform: "within"
    (_within), and when one shows only part of the other (a light crop), the same crop fields as keypoint
    geometry gives."""
    b_in_a, a_kept, a_in_b, b_kept = _overlaps(warp, shape)
    within = {"within": _within(a_in_b, b_in_a)}
    if b_in_a >= 0.98 and a_kept <= 0.97:
        return {**_crop_fields("second", _footprint(cv2.invertAffineTransform(warp), shape), shape, a_kept), **within}
    if a_in_b >= 0.98 and b_kept <= 0.97:
        return {**_crop_fields("first", _footprint(warp, shape), shape, b_kept), **within}
    return within


def _crop_fields(cropped: str, box: np.ndarray, frame: tuple[int, int], kept: float) -> dict:
    """A crop's transform fields: which picture is the crop, where it lies (the corners `box`, in pixels of
    the other, of shape `frame`) as fractions of the other, and the share of the other it keeps."""
    fh, fw = frame
    x0, y0 = np.clip(box.min(axis=0) / (fw, fh), 0, 1)
    x1, y1 = np.clip(box.max(axis=0) / (fw, fh), 0, 1)
    box_fields = [round(float(v), 4) for v in (x0, y0, x1, y1)]
    return {"cropped": cropped, "crop_box": box_fields, "kept_area": round(float(kept), 3)}


def _views(f: Features) -> list[tuple[str | None, np.ndarray]]:
    """The thumbnail, and the picture inside its frame when it has one."""
    views = [(None, f.thumb)]
    if f.box is not None:
        h, w = f.thumb.shape
        x0, y0, x1, y1 = f.box
        inner = f.thumb[round(y0 * h) : round(y1 * h), round(x0 * w) : round(x1 * w)]
        if min(inner.shape) >= 8:
            views.append(("frame removed", inner))
    return views


LOW_DETAIL = 1.5
"""Mean local standard deviation (grey levels, 11x11 window on the thumbnail) under which a picture is
featureless: a clear sky, a wall, a lens-cap frame. On the benchmark corpora such pictures measure
0.5-1.3 and the least detailed real photo (a misty lake) 2.1."""
FLAT_MIN_SSIM = 0.95
"""What two featureless pictures need to count as the same, with FLAT_MAX_DIFF: SSIM cannot tell a
brightened copy of a blank sky from another blank sky (a white and a purple gradient score 0.75, two
pale ones 0.98), only near-identical pixels, or a relief of their own (same_relief), are evidence."""


def featureless(fa: Features, fb: Features) -> bool:
    """Whether either picture is under LOW_DETAIL: such a pair must be near-identical (FLAT_MIN_SSIM), or
    share its relief (same_relief)."""
    return min(fa.detail, fb.detail) < LOW_DETAIL


RELIEF_MATCH = 0.98
"""Correlation of their reliefs (same_relief) over which two featureless pictures count as one picture
whatever their grey levels. On eight corpora, brightened, darkened and re-encoded copies of pale or dim
pictures measured 0.98-1.00 (a darkened one: SSIM 0.89, 70 grey levels apart); candidate pairs of
different pictures 0.70 at most."""
MIN_RELIEF = 2.0
"""Grey levels of relief (standard deviation) each picture needs for its relief to be compared."""


@cache
def _detrend() -> np.ndarray:
    """The matrix that takes from a TONE_GRID x TONE_GRID grid of tones (flattened) its best-fitting
    quadratic surface: I - S S+, for S the surface's six terms at the cells."""
    n = TONE_GRID
    y, x = np.mgrid[0:n, 0:n].reshape(2, -1) / (n - 1) - 0.5
    surface = np.c_[x, y, x * x, y * y, x * y, np.ones(n * n)]
    return np.eye(n * n) - surface @ np.linalg.pinv(surface)


def _relief(thumb: np.ndarray) -> np.ndarray:
    """The mean tones of a TONE_GRID x TONE_GRID grid less the quadratic surface that fits them best: the
    shape of a picture's light once gradients and vignetting, which blank skies share, are taken out."""
    tones, _ = _tones(thumb, np.ones(thumb.shape, bool))
    return _detrend() @ tones.ravel().astype(np.float64)


def same_relief(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two featureless thumbnails have the same relief (_relief): a copy brightened, darkened or
    given more contrast keeps it, and it is all there is to tell such a picture by."""
    ra, rb = _relief(a), _relief(b)
    if min(ra.std(), rb.std()) < MIN_RELIEF:
        return False
    return float(np.corrcoef(ra, rb)[0, 1]) >= RELIEF_MATCH


def detail(thumb: np.ndarray) -> float:
    """Mean local standard deviation of a thumbnail: how much a picture has to recognise it by."""
    a = thumb.astype(np.float32)
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)  # noqa: E731
    return float(np.sqrt(np.maximum(blur(a * a) - blur(a) ** 2, 0)).mean())


def verify(fa: Features, fb: Features, threshold: float) -> tuple[Verdict, dict] | None:
    """The best evidence that two images are the same picture, or None when it falls below `threshold`.

    Framed pictures are also compared without their frame, so a copy with a border added still matches.
    Featureless pictures need FLAT_MIN_SSIM whatever the threshold, and near-identical grey levels, unless
    they share their relief (same_relief). A pair that fails is compared again with tones matched when an
    edit moved their tones apart (_tones_matched), unless both pictures are featureless.
    Returns the verdict and the transform that was needed, for the report.
    """
    flat = featureless(fa, fb)
    strict = flat and not same_relief(fa.thumb, fb.thumb)
    if strict:
        threshold = max(threshold, FLAT_MIN_SSIM)
    best: tuple[Verdict, dict] | None = None
    for trim_a, va in _views(fa):
        for trim_b, vb in _views(fb):
            verdict = compare(va, vb, overlays=not flat)
            if verdict is None or (best is not None and verdict.ssim <= best[0].ssim):
                continue
            transform = {"aligned": verdict.aligned}
            if trim_a or trim_b:
                transform["frame removed"] = "both" if trim_a and trim_b else ("first" if trim_a else "second")
            elif verdict.warp is not None:
                transform.update(_warp_fields(verdict.warp, va.shape))
            best = (verdict, transform)
            if verdict.ssim >= GOOD_ENOUGH:
                break
        if best is not None and best[0].ssim >= GOOD_ENOUGH:
            break
    if best is None or not _passes(best[0], threshold, strict):
        if max(fa.detail, fb.detail) < LOW_DETAIL:  # featureless both: no tones to tell them by
            return None
        return _tones_matched(fa, fb, threshold, flat)
    return best


def _passes(verdict: Verdict, threshold: float, flat: bool) -> bool:
    """Same picture: SSIM at the threshold, no large area in disagreement, and for featureless pictures
    nearly the same grey levels."""
    return verdict.ssim >= threshold and verdict.consistent and (not flat or verdict.mad <= FLAT_MAX_DIFF)


TONE_CLIPPED = 0.2
"""Share of one picture, more than of the other, within CLIP grey levels of black or white from which the
pair is compared again with tones matched (_tones_matched), the clipped one's tones given to the other:
brightened by 1.5, a pale photo loses half its area to white; the cells it clipped then disagree in
tone, and a copy was missed at SSIM 0.85."""
TONE_RATIO = 1.25
"""Ratio of the two thumbnails' median grey levels, or of their spreads (interquartile ranges), from which
a pair that failed is compared again with tones matched, the narrower one's tones given to the wider.
Darkened by half, a photo keeps its detail but SSIM's luminance and contrast terms fall to 0.8 each, and
30 of the dev corpus's 31 originals were missed at SSIM 0.55-0.65 (at 0.4, 28). Quartiles, not mean and
deviation: a bright disc added to a dim picture moved its deviation by more than 1.25, and matched tones
then outweighed the disc, which is a change, not an edit of tones."""
MAX_CLIPPED = 0.8
"""Share of the clipped picture that may be clipped: what is left must be enough to recognise it by.
Brightened copies of burst frames, clipped over 99%, scored 0.92 tone-matched to the frame beside."""
TONE_MIN_PIXELS = 256
"""Pixels a thumbnail needs for its histogram to stand for a tone curve. Matched to the histogram of
another, two pixels of one random colour each became the other's: two different 1x2 pictures scored
SSIM 1.000 with tones matched."""
TONES_MATCHED_SSIM = 0.9
"""Least SSIM of a tone-matched pair: histogram matching undoes a brightness, contrast or gamma edit, so
a copy is nearly identical after it (0.90-1.00 on the 21 corpora's colour edits), while over 881 burst
frames, tiles and random pairs the best reached 0.87 (burst frames that match as they are) and 0.83
otherwise."""
TONES_MATCHED_SCORE = 89
"""Highest score of a tone-matched pair, the top of the "visible edits" band: its SSIM is taken after the
tones were matched, but the detail the edit clipped away is lost, and such a copy is not near identical."""


def clipped_share(thumb: np.ndarray) -> float:
    """Share of a thumbnail within CLIP grey levels of black or white."""
    return float(_at_ends(thumb).mean())


def matched(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a with its grey levels mapped so that its histogram is b's (histogram matching): a monotone tone
    curve, which is what a brightness, contrast or gamma edit applies, clipping included."""
    qa, qb = np.sort(a, axis=None), np.sort(b, axis=None)
    levels = np.arange(256)
    rank = (np.searchsorted(qa, levels, "left") + np.searchsorted(qa, levels, "right")) / (2 * len(qa))
    curve = np.interp(rank, (np.arange(len(qb)) + 0.5) / len(qb), qb)
    return np.round(curve).astype(np.uint8)[a]


def _apart(x: float, y: float) -> bool:
    """Whether two tone statistics are TONE_RATIO apart (grey levels under 1 count as 1)."""
    return max(x, y) >= TONE_RATIO * max(min(x, y), 1.0)


def _tones_matched(fa: Features, fb: Features, threshold: float, flat: bool) -> tuple[Verdict, dict] | None:
    """The evidence that two pictures are one picture once one has the other's tones (matched), when an
    edit moved their tones apart: one lost TONE_CLIPPED more of its area to black or white (it gives its
    tones), or their median grey levels or spreads are TONE_RATIO apart (the narrower gives its tones).
    Such an edit breaks the linear relation of grey levels that SSIM and the tone cells allow for;
    histogram matching restores it. None for other pairs, or below TONES_MATCHED_SSIM.

    In a pair made `flat` by the edit (a picture with detail darkened or flattened under LOW_DETAIL, the
    other not), the featureless one takes the other's tones, so that they are compared over the whole
    range of grey levels, and must then pass as featureless pictures do: FLAT_MIN_SSIM and FLAT_MAX_DIFF."""
    a, b = fa.thumb, fb.thumb
    if min(a.size, b.size) < TONE_MIN_PIXELS:
        return None
    sa, sb = clipped_share(a), clipped_share(b)
    if max(sa, sb) > MAX_CLIPPED:
        return None
    clipping = abs(sa - sb) >= TONE_CLIPPED
    if not clipping:
        (a25, a50, a75), (b25, b50, b75) = np.percentile(a, (25, 50, 75)), np.percentile(b, (25, 50, 75))
        if not (_apart(a50, b50) or _apart(a75 - a25, b75 - b25)):
            return None
    if flat:
        a_gives = fa.detail > fb.detail
    else:
        a_gives = sa > sb if clipping else a75 - a25 < b75 - b25
    a, b = (a, matched(b, a)) if a_gives else (matched(a, b), b)
    verdict = compare(a, b, overlays=not flat)
    least = max(threshold, FLAT_MIN_SSIM if flat else TONES_MATCHED_SSIM)
    if verdict is None or not _passes(verdict, least, flat):
        return None
    transform = {"aligned": verdict.aligned, "tones matched": True}
    if verdict.warp is not None:
        transform.update(_warp_fields(verdict.warp, a.shape))
    return replace(verdict, score=min(verdict.score, TONES_MATCHED_SCORE)), transform


MIN_INLIERS = 12
"""Keypoint matches that must agree on one transform for a geometric match."""
INSIDE = 0.95
"""Share of the cropped picture that must lie inside the other: a burst frame shifted by 25-35% has only
65-75% inside, a crop (nearly) all of it."""
MAX_ANGLE = 10.0
"""Degrees a crop's rotation may be off a multiple of 90: ORB descriptors are rotation-invariant, so a
turned crop matches too, and so does a straightened copy (turned by a few degrees, then cropped so that
no corner shows, as photo editors do: 75-83% of the picture kept at 5-8 degrees). At 3 degrees, copies
straightened by 5 were missed; the SSIM of the crop placed at its angle still decides."""
STRAIGHTENED_FROM = 1.0
"""Degrees off a quarter turn from which the evidence says a crop was straightened."""
SNAP_FROM = 0.25
"""Degrees off a multiple of 90 from which a failed transform is tried again without the rotation."""
_MATCHER = cv2.BFMatcher(cv2.NORM_HAMMING)


def _footprint(matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Corners of an image of `shape`, mapped by the 2x3 affine `matrix`."""
    h, w = shape
    corners = np.array([[[0, 0], [w, 0], [w, h], [0, h]]], dtype=np.float32)
    return cv2.transform(corners, matrix)[0]


def _inside(poly: np.ndarray, shape: tuple[int, int]) -> tuple[float, float]:
    """(share of the polygon inside the rectangle of `shape`, share of the rectangle it covers)."""
    h, w = shape
    rect = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    overlap, _ = cv2.intersectConvexConvex(poly.astype(np.float32), rect)
    area = cv2.contourArea(poly.astype(np.float32))
    return (overlap / area if area > 0 else 0.0), overlap / (w * h)


MIN_OVERLAP = 0.3
"""Least share of each picture that two similar shots (not duplicates) must have in common."""


class Fit(NamedTuple):
    """A similarity transform (2x3, a's thumbnail pixels to b's) and the keypoint matches it fits."""

    matrix: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    """The inlier matches' positions in a's thumbnail and in b's."""

    @property
    def inliers(self) -> int:
        return len(self.src)


def fit_similarity(fa: Features, fb: Features) -> Fit | None:
    """The similarity transform that most keypoint matches agree on; None under MIN_INLIERS."""
    if len(fa.kp_desc) < MIN_INLIERS or len(fb.kp_desc) < MIN_INLIERS:
        return None
    pairs = _MATCHER.knnMatch(fa.kp_desc, fb.kp_desc, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.85 * p[1].distance and p[0].distance <= 64]
    if len(good) < MIN_INLIERS:
        return None
    src = fa.kp_xy[[m.queryIdx for m in good]].astype(np.float32)
    dst = fb.kp_xy[[m.trainIdx for m in good]].astype(np.float32)
    matrix, mask = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=2.0, maxIters=2000, confidence=0.995
    )
    if matrix is None or int(mask.sum()) < MIN_INLIERS:
        return None
    kept = mask.ravel().astype(bool)
    return Fit(matrix, src[kept], dst[kept])


REFRAMED_INLIERS = 2 * MIN_INLIERS
"""Keypoint matches that must agree on a transform for it to tell that two pictures are framed otherwise."""


def reframed(fa: Features, fb: Features) -> bool:
    """Whether keypoints place the two pictures as different framings of one scene: a similarity fit of
    REFRAMED_INLIERS matches or more under which neither lies INSIDE the other, as neighbouring burst
    frames or a pan. Whole-frame SSIM does not tell a smooth picture shifted by a tenth of its width from
    a re-encoded copy (0.90 for burst frames 6-10% apart), while a copy, edited, resized or cropped, fits
    inside its original."""
    fit = fit_similarity(fa, fb)
    if fit is None or fit.inliers < REFRAMED_INLIERS:
        return False
    scale, _, off = _pose(fit.matrix)
    if not _plausible(scale, off):  # a fit no geometry would take: a 96-pixel copy's keypoints all sent to one
        return False  # point (scale 0), which put neither picture inside the other
    return inside_share(fit, fa, fb) < INSIDE


def _pose(matrix: np.ndarray) -> tuple[float, int, float]:
    """(scale, quarter turns clockwise, degrees off them) of a similarity transform (y points down)."""
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    angle = float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))
    return scale, round(angle / 90) % 4, abs(angle - 90 * round(angle / 90))


def _plausible(scale: float, off: float) -> bool:
    """Whether a fit's scale and turn are those a copy can have: within MAX_ANGLE of a quarter turn,
    neither picture more than twice the other."""
    return off <= MAX_ANGLE and 0.5 < scale < 2.0


def inside_share(fit: Fit, fa: Features, fb: Features) -> float:
    """The larger of the shares of each picture that the fit places inside the other."""
    a_in_b, _ = _inside(_footprint(fit.matrix, fa.thumb.shape), fb.thumb.shape)
    b_in_a, _ = _inside(_footprint(cv2.invertAffineTransform(fit.matrix), fb.thumb.shape), fa.thumb.shape)
    return max(a_in_b, b_in_a)


def snapped(fit: Fit, turns: int) -> np.ndarray:
    """The transform of `turns` clockwise quarter turns exactly, with the scale and shift that fit the
    inliers best (least squares). Matches bunched in one small textured patch fit a rotation of a degree
    or two that is not there; it tilts the rest of the picture out of place, and a crop then failed
    its inside test or its SSIM (a bridge cropped by 25%: 29 matches within 10 pixels, 1.7 degrees)."""
    c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][turns]
    turn = np.array([[c, -s], [s, c]], np.float64)
    src, dst = fit.src.astype(np.float64) @ turn.T, fit.dst.astype(np.float64)
    src_c, dst_c = src - src.mean(axis=0), dst - dst.mean(axis=0)
    scale = float((src_c * dst_c).sum() / max((src_c**2).sum(), 1e-9))
    shift = dst.mean(axis=0) - scale * src.mean(axis=0)
    return np.hstack([scale * turn, shift[:, None]])


def verify_geometry(
    fa: Features,
    fb: Features,
    threshold: float,
    min_area: float,
    fit: Fit | None = None,
    overlaps: bool = True,
) -> tuple[Verdict, dict] | None:
    """Is one picture a crop (possibly resized and re-encoded) of the other, or a similar shot?

    Keypoint matches (ratio test) fit a similarity transform by RANSAC; it must turn by a multiple of 90
    degrees (give or take MAX_ANGLE), with at least MIN_INLIERS inliers. A crop must lie INSIDE the
    other picture and keep at least `min_area` of it; the other is then warped onto the crop and SSIM on
    it decides. A transform that fails these checks (or finds only a similar shot) is tried again
    `snapped` to its multiple of 90 degrees. The transform says which one is the crop and where, as
    fractions of the uncropped picture, and how many clockwise quarter turns take the first picture to
    the second.

    Neighbouring burst frames and overlapping parts of one picture fail the inside test however well
    their overlap matches: when they still share MIN_OVERLAP of each and the overlap passes SSIM, the
    transform says "similar" with the overlap; they are different photos, never duplicates.
    None when there is no consistent geometry or the content does not agree. `fit` is
    fit_similarity(fa, fb) when the caller already has it. Without `overlaps`, similar shots are not
    checked (None): most keypoint pairs of a library that are not crops are such overlaps, and their
    SSIM was over half the crop stage's geometry time.
    """
    fit = fit or fit_similarity(fa, fb)
    if fit is None:
        return None
    scale, turns, off = _pose(fit.matrix)
    if not _plausible(scale, off):
        return None
    similar = None
    for matrix in [fit.matrix, snapped(fit, turns)] if off > SNAP_FROM else [fit.matrix]:
        found = _placed(fa, fb, matrix, turns, fit.inliers, threshold, min_area, overlaps)
        if found is not None and not found[1].get("similar"):
            return found
        similar = similar or found
    return similar


def _placed(
    fa: Features,
    fb: Features,
    matrix: np.ndarray,
    turns: int,
    inliers: int,
    threshold: float,
    min_area: float,
    overlaps: bool,
) -> tuple[Verdict, dict] | None:
    """verify_geometry's answer for one transform of a's thumbnail onto b's."""
    a_in_b, b_kept = _inside(_footprint(matrix, fa.thumb.shape), fb.thumb.shape)
    inverse = cv2.invertAffineTransform(matrix)
    b_in_a, a_kept = _inside(_footprint(inverse, fb.thumb.shape), fa.thumb.shape)
    if b_in_a >= INSIDE and a_kept >= min_area:  # b is a crop of a: bring a onto b's frame
        crop, whole, to_crop, cropped, kept = fb.thumb, fa.thumb, matrix, "second", a_kept
        box = _footprint(inverse, fb.thumb.shape)
        frame = fa.thumb.shape
    elif a_in_b >= INSIDE and b_kept >= min_area:  # a is a crop of b
        crop, whole, to_crop, cropped, kept = fa.thumb, fb.thumb, inverse, "first", b_kept
        box = _footprint(matrix, fa.thumb.shape)
        frame = fb.thumb.shape
    elif overlaps and min(a_kept, b_kept) >= MIN_OVERLAP:  # similar shots: compare b brought onto a, where they overlap
        crop, whole, to_crop, cropped = fa.thumb, fb.thumb, inverse, None
    else:
        return None
    h, w = crop.shape
    warped = cv2.warpAffine(whole, to_crop, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    valid = cv2.warpAffine(np.ones_like(whole), to_crop, (w, h), flags=cv2.INTER_NEAREST)
    valid = cv2.erode(valid, np.ones((5, 5), np.uint8)).astype(bool)
    if valid.mean() < (0.5 if cropped else MIN_OVERLAP / 2):
        return None
    flat = featureless(fa, fb)
    value, consistent, mad = agreement(crop, warped, valid, overlays=not flat)
    verdict = Verdict(value, max(0, min(100, round(100 * value))), True, float(valid.mean()), None, consistent, mad)
    if not _passes(verdict, threshold, flat):
        return None
    within = _within(a_in_b, b_in_a)
    if cropped is not None and kept > 0.97:  # the same frame, only turned or rescaled: not a crop
        return verdict, {"quarter_turns": turns, "inliers": inliers, "within": within}
    if cropped is None:
        return verdict, {
            "quarter_turns": turns,
            "similar": True,
            "overlap": round(float(min(a_kept, b_kept)), 3),
            "inliers": inliers,
        }
    crop = _crop_fields(cropped, box, frame, kept)
    off = _pose(matrix)[2]
    tilt = {"straightened": round(off, 1)} if off >= STRAIGHTENED_FROM else {}
    return verdict, {"quarter_turns": turns, **crop, **tilt, "inliers": inliers, "within": within}


FLAT_CROP_MAX_DIFF = 1.0
"""Mean difference (grey levels) within which a featureless picture placed inside another by
correlation (flat_crop) is a crop of it. A crop keeps the pixels it was cut from: placed, the featureless
crops of 8 benchmark corpora differed from their originals by 0.17-0.47 levels of re-encoding noise. A
crop of one frame of a featureless burst also fits, zoomed a little, inside the next frame's smooth
gradient (SSIM 0.93), but 2.2 levels apart: keypoints tell such frames apart, these pictures have none."""
MAX_CROP_WIDTH = 0.98
"""Widest crop looked for, as a share of the whole's width: wider ones are the same frame, for verify."""
WIDTH_STEP, FINE_STEP = 0.03, 0.005
"""Crop widths tried (shares of the whole's width) on half-size thumbnails, then at full size around the
best one."""
NEAR = 3
"""Pixels around the half-size match's place (doubled) that the full-size search looks."""


def _best_place(image: np.ndarray, crop: np.ndarray, widths, near: tuple[int, int] | None = None):
    """(correlation, share of image's width, x, y) of the best place of `crop` in `image`, shrunk to each
    of these shares of its width; only within NEAR pixels of `near` when given."""
    h, w = image.shape
    hc, wc = crop.shape
    out = None
    for share in widths:
        size = (round(share * w), round(share * w * hc / wc))
        if not (8 <= size[1] < h and 8 <= size[0] < w):
            continue
        x0 = y0 = 0
        area = image
        if near is not None:
            x0, y0 = max(0, near[0] - NEAR), max(0, near[1] - NEAR)
            area = image[y0 : min(h, near[1] + size[1] + NEAR), x0 : min(w, near[0] + size[0] + NEAR)]
            if area.shape[0] < size[1] or area.shape[1] < size[0]:
                continue
        small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        _, top, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(area, small, cv2.TM_CCOEFF_NORMED))
        if out is None or top > out[0]:
            out = (top, size[0] / w, x0 + x, y0 + y)
    return out


def _halved(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)


def _coarse_place(whole: np.ndarray, crop: np.ndarray, min_area: float) -> tuple[float, float, int, int] | None:
    """_best_place on half-size thumbnails (x, y in half-size pixels), over the widths a crop of at least
    `min_area` can have. None for a thumbnail too small to place one in (under 16 pixels on a side: half
    of it would not hold an 8-pixel crop)."""
    if min(*whole.shape, *crop.shape) < 16:
        return None
    return _best_place(
        _halved(whole).astype(np.float32), _halved(crop), np.arange(np.sqrt(min_area), MAX_CROP_WIDTH, WIDTH_STEP)
    )


def _fine_place(whole: np.ndarray, crop: np.ndarray, coarse: tuple[float, float, int, int]) -> np.ndarray | None:
    """The 2x3 matrix taking `whole` onto `crop` at _best_place's full-size place near the coarse one."""
    widths = np.arange(coarse[1] - WIDTH_STEP / 2, coarse[1] + WIDTH_STEP / 2, FINE_STEP)
    fine = _best_place(whole.astype(np.float32), crop, widths, (2 * coarse[2], 2 * coarse[3]))
    if fine is None:
        return None
    _, share, x, y = fine
    k = share * whole.shape[1] / crop.shape[1]  # whole's pixels per crop pixel
    return np.array([[1 / k, 0, -x / k], [0, 1 / k, -y / k]])


def flat_crop(fa: Features, fb: Features, threshold: float, min_area: float) -> tuple[Verdict, dict] | None:
    """Is one of two featureless pictures a crop of the other? They have too few keypoints for
    verify_geometry: each is looked for inside the other by correlation on half-size thumbnails, the
    better of the two placed again at full size (_fine_place), compared there as a keypoint crop is, and
    must then agree within FLAT_CROP_MAX_DIFF grey levels."""
    places = [(_coarse_place(whole.thumb, crop.thumb, min_area), whole) for whole, crop in ((fa, fb), (fb, fa))]
    places = [p for p in places if p[0] is not None]
    if not places:
        return None
    coarse, whole = max(places, key=lambda p: p[0][0])
    crop = fb if whole is fa else fa
    onto_crop = _fine_place(whole.thumb, crop.thumb, coarse)
    if onto_crop is None:
        return None
    matrix = onto_crop if whole is fa else cv2.invertAffineTransform(onto_crop)
    found = _placed(fa, fb, matrix, 0, 0, threshold, min_area, overlaps=False)
    if found is not None and "cropped" in found[1] and found[0].mad <= FLAT_CROP_MAX_DIFF:
        return found
    return None
