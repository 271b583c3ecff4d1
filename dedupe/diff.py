"""Where two near-duplicate pictures differ (a watermark, a logo, a removed object), shown to a person.

The member is brought onto the keeper's frame with the transform the report already holds (turn, mirror,
crop, frame), refined by the small ECC warp verification uses, at the smaller picture's resolution
(enlarging a small copy would make every edge differ). Both are the same picture, so edits that touch
every pixel (brightness, contrast, saturation, a tone curve, grayscale) are undone first by fitting a
global colour model from each picture to the other. Two measures then find what is left:

- structure: 1 - local SSIM of the luminances, where detail appears or goes (text, outlines, patches);
- tone: the difference of the Gaussian-blurred colours, where colour changed but luminance structure did
  not (an object recoloured at the same brightness, a soft-edged retouch), which SSIM does not see.

A region is a connected area over the weak threshold of either measure that holds some pixels over the
strong one (hysteresis: a faint watermark's letters join its clear ones, noise specks start nothing),
after a morphological open (specks) and close (the letters of one word). Both thresholds rise with the
pair's own noise floor, so a heavily re-encoded copy needs a clearer edit. Small regions are dropped and
nearby boxes merged.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from .features.hashes import ORIENTATIONS, content_box, inverse, orient
from .verify import ecc_warp, ssim_map, weighted_mean

DIFF_SIDE = 640
"""Longest side the views are compared at: plenty for a watermark of a few percent of the picture."""
STRUCTURE = (0.2, 0.45)
"""(weak, strong) thresholds of 1 - local SSIM. Copies re-encoded at JPEG q40 or resized by half stay
under 0.37 on 99.9% of their pixels (q20: 0.49, scattered); text, outlines and pasted patches reach
0.6-1, a faint watermark on a pale background 0.3-0.4."""
STRUCTURE_OVER_NOISE = (0.12, 0.25)
"""How far above the pair's structural noise floor the (weak, strong) thresholds stay at least."""
TONE = (12.0, 36.0)
"""(weak, strong) thresholds of the tone difference, in grey levels. JPEG q40's colour bleeding at sharp
colour edges stays under 22 once blurred (q20: 32); a logo differs by 80 and more."""
TONE_OVER_NOISE = (3.0, 6.0)
"""How many times the pair's tone noise floor the (weak, strong) thresholds are at least."""
NOISE_FLOOR = 90
"""Percentile of each measure taken as the pair's noise floor: edits cover a few percent of a picture."""
TONE_SIGMA = 2.0
"""Gaussian blur (pixels) before the tone difference: grain and edge ringing average out."""
MIN_SEED = 9
"""Strong pixels (left after removing specks) a region needs."""
MIN_REGION = 0.002
"""Least share of the compared area a region must cover to be boxed."""
RIM = 0.01
"""Share of the short side left out of the comparison along the edges (at least 3 pixels): where a crop
box or a removed frame, rounded to whole pixels, leaves a sliver of border, and where SSIM's window
reaches past the picture."""
GRAY_CHROMA = 4.0
"""Mean max-min channel spread under which a picture counts as grayscale: only luminance is compared."""


@dataclass(frozen=True)
class Diff:
    """The aligned pair and where it differs, in the keeper view's pixels."""

    keeper: np.ndarray
    """Keeper view, RGB uint8: the keeper (inside its frame, or the region a cropped member shows)."""
    member: np.ndarray
    """Member brought onto the keeper view, RGB uint8, same shape."""
    valid: np.ndarray
    """Pixels the aligned member covers (bool)."""
    ssim_diff: np.ndarray
    """1 - local SSIM of the tone-matched luminances, 0..1 (float32)."""
    tone_diff: np.ndarray
    """Difference of the blurred, tone-matched colours, 0..1 (float32): 0.5 at the strong TONE threshold."""
    boxes: list[tuple[int, int, int, int]]
    """(x0, y0, x1, y1), x1 and y1 exclusive, around each region that differs."""
    region: tuple[int, int, int, int]
    """Where the keeper view lies in the keeper picture passed in, in its pixels (x0, y0, x1, y1)."""

    def keeper_boxes(self) -> list[tuple[int, int, int, int]]:
        """The boxes in the pixels of the keeper picture passed in (the view may be a reduced region)."""
        x0, y0, x1, y1 = self.region
        h, w = self.keeper.shape[:2]
        sx, sy = (x1 - x0) / w, (y1 - y0) / h
        return [
            (x0 + round(a * sx), y0 + round(b * sy), x0 + round(c * sx), y0 + round(d * sy))
            for a, b, c, d in self.boxes
        ]


# --------------------------------------------------------------------------- loading


# --------------------------------------------------------------------------- alignment


def _luma(img: np.ndarray) -> np.ndarray:
    """Luminance (Rec. 601, as Pillow's "L") of an RGB or one-channel image."""
    if img.ndim == 2:
        return img
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.shape[2] == 3 else img[:, :, 0]


def _box_px(box, size: tuple[int, int] | None, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """A report box (pixels of the full-size picture, `size` = (width, height)) in an array of `shape`."""
    h, w = shape[:2]
    fw, fh = size or (w, h)
    x0, y0, x1, y1 = box
    x0, x1 = (int(np.clip(round(v * w / fw), 0, w)) for v in (x0, x1))
    y0, y1 = (int(np.clip(round(v * h / fh), 0, h)) for v in (y0, y1))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (width, height): area-averaged when reducing, bilinear when enlarging."""
    h, w = img.shape[:2]
    if (w, h) == size:
        return img
    shrinking = size[0] * size[1] < w * h
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def _align(
    keeper: np.ndarray,
    member: np.ndarray,
    transform: dict,
    keeper_size: tuple[int, int] | None,
    member_size: tuple[int, int] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """align(), plus where the keeper view lies in `keeper`."""
    k = (transform.get("rotated", 0) // 90) % 4
    mirrored = bool(transform.get("mirrored", False))
    undo = inverse(k, mirrored)  # member = orient(keeper, k, mirrored)
    kh, kw = keeper.shape[:2]
    region = (0, 0, kw, kh)
    crop = transform.get("crop")
    if crop and crop.get("of") == "member":  # the member shows the keeper's box: compare over it
        region = _box_px(crop["box"], keeper_size, keeper.shape)
    elif crop and crop.get("of") == "keeper":  # the keeper shows a box of the member, in the member's frame
        x0, y0, x1, y1 = _box_px(crop["box"], member_size, member.shape)
        member = member[y0:y1, x0:x1]
    member = orient(member, *undo) if undo != ORIENTATIONS[0] else member
    if "frame removed" in transform:  # which one had the frame: whichever has one now
        bx0, by0, bx1, by1 = content_box(_luma(keeper[region[1] : region[3], region[0] : region[2]]))
        region = (region[0] + bx0, region[1] + by0, region[0] + bx1, region[1] + by1)
        mx0, my0, mx1, my1 = content_box(_luma(member))
        member = member[my0:my1, mx0:mx1]
    view = keeper[region[1] : region[3], region[0] : region[2]]

    # compare at the smaller resolution of the two, and at most DIFF_SIDE
    vh, vw = view.shape[:2]
    mh, mw = member.shape[:2]
    s = min(1.0, np.sqrt((mw * mh) / (vw * vh)), DIFF_SIDE / max(vw, vh))
    size = (max(1, round(vw * s)), max(1, round(vh * s)))
    view, member = _resize(view, size), _resize(member, size)
    valid = np.ones(view.shape[:2], bool)
    if min(size) < 32:
        return view, member, valid, region

    # a crop box or frame rounded to the full-size pixels leaves a sliver of the other's edge: skip a rim
    rim = max(3, round(RIM * min(size)))
    valid[:rim], valid[-rim:], valid[:, :rim], valid[:, -rim:] = False, False, False, False
    a, b = _luma(view), _luma(member)
    warp = ecc_warp(a, b)
    if warp is not None and np.abs(warp - np.eye(2, 3)).max() > 0.25 / max(size):
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        moved = cv2.warpAffine(member, warp, size, flags=flags, borderMode=cv2.BORDER_REFLECT)
        covered = cv2.warpAffine(np.ones(size[::-1], np.uint8), warp, size, flags=flags, borderValue=0)
        covered = cv2.erode(covered, np.ones((5, 5), np.uint8)).astype(bool)
        if weighted_mean(*ssim_map(a, _luma(moved)), covered) > weighted_mean(*ssim_map(a, b)):
            member, valid = moved, valid & covered
    return view, np.ascontiguousarray(member), valid, region


def align(
    keeper: np.ndarray,
    member: np.ndarray,
    transform: dict,
    keeper_size: tuple[int, int] | None = None,
    member_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keeper view, member aligned onto it, valid mask), all of one shape.

    `transform` is a member's report transform, read from the keeper (group.describe_transform): the
    turn and mirror are undone; for a crop "of" "member" the keeper view is the box the member shows,
    for "of" "keeper" the member's box is taken; a removed frame is cut off; ECC then absorbs what is
    left (rounding, a trimmed edge). A crop box is in pixels of the uncropped picture at full size:
    pass that picture's (width, height) as `keeper_size` or `member_size` (ImageInfo) when the arrays
    were decoded smaller; without it the box is taken in the array's own pixels.
    """
    return _align(keeper, member, transform, keeper_size, member_size)[:3]


# --------------------------------------------------------------------------- difference


def _match_tones(src: np.ndarray, dst: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`src` in `dst`'s tones, as float32: each output channel is clip(offset + a linear mix of the
    channels + a square of its own), fitted robustly to the aligned pixels.

    The mix covers brightness, contrast, saturation, white balance and grayscale; the square, gamma-like
    curves; the clip, blown highlights. A free per-level curve would not do: an edit in colours the rest
    of the picture lacks (a black logo) would get levels of its own, mapped onto what it hides."""
    n, m = src.shape[2], dst.shape[2]
    sample = np.flatnonzero(mask)
    sample = sample[:: max(1, sample.size // 20_000)]  # plenty for a few parameters
    x = src.reshape(-1, n)[sample].astype(np.float32) / 255
    y = dst.reshape(-1, m)[sample].astype(np.float32)
    mix, square = np.zeros((n + 1, m), np.float32), np.zeros(m, np.float32)
    for c in range(m):
        own = x[:, min(c, n - 1)]
        basis = np.column_stack([np.ones_like(own), x, own * own])
        keep = (y[:, c] > 0) & (y[:, c] < 255)  # a clipped level says only that the true one is beyond
        coef = np.zeros(n + 2, np.float32)
        coef[1 + min(c, n - 1)] = 255
        for _ in range(3):  # refit without the outliers: the edits and misaligned edges
            if keep.sum() < 16:
                break
            coef = np.linalg.lstsq(basis[keep], y[keep, c], rcond=None)[0]
            residual = np.abs(basis @ coef - y[:, c])
            keep &= residual <= max(3 * 1.4826 * float(np.median(residual[keep])), 4.0)
        mix[:, c], square[c] = coef[: n + 1], coef[n + 1]
    v = src.astype(np.float32) / 255
    out = cv2.transform(v, np.vstack([mix[1:], mix[:1]]).T).reshape(src.shape[:2] + (m,))
    out += square * (v * v if n == m else v[:, :, :1] ** 2)
    return np.clip(out, 0, 255, out=out)


def _measures(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(1 - local SSIM of the luminances, max over channels of the blurred colour difference)."""
    structure = 1 - ssim_map(_luma(a), _luma(b))[0]
    tone = np.abs(_blur(a) - _blur(b))
    return structure, (_channels(np.maximum, tone) if tone.ndim == 3 else tone)


def _blur(img: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), TONE_SIGMA, borderType=cv2.BORDER_REFLECT)


def _channels(op, img: np.ndarray) -> np.ndarray:
    """op folded over the channels (numpy's reduce along the last axis is ten times slower)."""
    out = img[:, :, 0]
    for c in range(1, img.shape[2]):
        out = op(out, img[:, :, c])
    return out


def _chroma(img: np.ndarray, mask: np.ndarray) -> float:
    """Mean spread between the largest and smallest channel: near 0 for a grayscale picture."""
    return float((_channels(np.maximum, img).astype(np.int16) - _channels(np.minimum, img))[mask].mean())


def _merge(boxes: list[list[int]], gap: int) -> list[list[int]]:
    """Union boxes that overlap or lie within `gap` pixels of each other, until none do."""
    boxes = [list(b) for b in boxes]
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] <= b[2] + gap and b[0] <= a[2] + gap and a[1] <= b[3] + gap and b[1] <= a[3] + gap:
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes


def _boxes(weak: np.ndarray, strong: np.ndarray, valid: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Boxes around the regions of `weak` that hold some `strong` pixels: open (specks), close (the letters
    of one word), drop regions under MIN_REGION of the valid area, merge boxes that overlap or touch."""
    h, w = weak.shape
    side = max(3, round(0.015 * min(h, w)) | 1)
    speck = np.ones((3, 3), np.uint8)
    mask = cv2.morphologyEx(weak.astype(np.uint8), cv2.MORPH_OPEN, speck)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side)))
    mask &= valid.astype(np.uint8)
    seeds = cv2.morphologyEx(strong.astype(np.uint8), cv2.MORPH_OPEN, speck).astype(bool)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    seeded = np.bincount(labels[seeds], minlength=count) >= MIN_SEED
    least = MIN_REGION * max(1, int(valid.sum()))
    boxes = [
        [x, y, x + bw, y + bh]
        for i, (x, y, bw, bh, area) in enumerate(stats.tolist())
        if i and seeded[i] and area >= least
    ]
    return [tuple(b) for b in sorted(_merge(boxes, 2 * side))]


def difference(
    keeper_rgb: np.ndarray,
    member_rgb: np.ndarray,
    transform: dict,
    keeper_size: tuple[int, int] | None = None,
    member_size: tuple[int, int] | None = None,
) -> Diff:
    """Where the member differs from the keeper, as a Diff (see align() for the arguments).

    Tones are matched both ways (keeper into member's tones and member into keeper's) and each pixel
    keeps the smaller difference: a brightened copy's clipped highlights are flat in it and textured in
    the other, which only the way into the clipped picture's tones reproduces.
    """
    view, member, valid, region = _align(keeper_rgb, member_rgb, transform, keeper_size, member_size)
    a, b = view, member
    if min(_chroma(a, valid), _chroma(b, valid)) < GRAY_CHROMA:  # a grayscale copy: colour says nothing
        a, b = _luma(a)[:, :, None], _luma(b)[:, :, None]
    s1, t1 = _measures(_match_tones(a, b, valid), b.astype(np.float32))
    s2, t2 = _measures(a.astype(np.float32), _match_tones(b, a, valid))
    structure = np.clip(np.minimum(s1, s2), 0, 1)
    tone = np.minimum(t1, t2)
    boxes = []
    if min(valid.shape) >= 16 and valid.any():
        s_floor, t_floor = (float(np.percentile(x[valid], NOISE_FLOOR)) for x in (structure, tone))
        weak, strong = (
            (structure > max(STRUCTURE[i], s_floor + STRUCTURE_OVER_NOISE[i]))
            | (tone > max(TONE[i], t_floor * TONE_OVER_NOISE[i]))
            for i in (0, 1)
        )
        boxes = _boxes(weak, strong, valid)
    tone = np.clip(tone / (2 * TONE[1]), 0, 1)
    return Diff(view, member, valid, structure.astype(np.float32), tone.astype(np.float32), boxes, region)


# --------------------------------------------------------------------------- rendering


def render_diff(
    diff: Diff, width: int = 720, height: int = 480, labels: tuple[str, str] = ("keeper", "member")
) -> bytes:
    """PNG bytes of at most `width` x `height`: keeper, member and the difference heat map side by side
    under their labels, red boxes around what differs, in 256 colours. The heat map (the larger of the
    two measures, over the keeper in grey) shows a person why a box was drawn; what the member does not
    cover is washed out. `labels` name the two pictures (`dedupe compare` calls them by their files)."""
    gap, bar = 6, 18
    h, w = diff.keeper.shape[:2]
    pw = max(1, min(w, (width - 2 * gap) // 3, (height - bar) * w // h))
    ph = max(1, min(height - bar, round(h * pw / w)))
    s = pw / w

    def panel(rgb: np.ndarray) -> np.ndarray:
        return cv2.resize(rgb, (pw, ph), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)

    heat = np.maximum(diff.ssim_diff, diff.tone_diff)
    heat = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    dim = np.repeat(_luma(diff.keeper)[:, :, None], 3, axis=2)
    blended = cv2.addWeighted(dim, 0.35, heat, 0.65, 0)
    member = diff.member.copy()
    member[~diff.valid] = (member[~diff.valid] // 3 + 128).astype(np.uint8)
    panels = [panel(x) for x in (diff.keeper, member, blended)]

    canvas = np.full((ph + bar, 3 * pw + 2 * gap, 3), 255, np.uint8)
    thick = max(1, round(pw / 240))
    for i, (img, label) in enumerate(zip(panels, (*labels, "difference"))):
        img = np.ascontiguousarray(img)
        for x0, y0, x1, y1 in diff.boxes:
            p0 = (int(x0 * s), int(y0 * s))
            p1 = (min(pw - 1, int(np.ceil(x1 * s))), min(ph - 1, int(np.ceil(y1 * s))))
            cv2.rectangle(img, p0, p1, (255, 0, 0) if i < 2 else (255, 255, 255), thick)
        x = i * (pw + gap)
        canvas[bar:, x : x + pw] = img
        cv2.putText(canvas, label, (x + 2, bar - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    out = io.BytesIO()  # 256 colours: a quarter of the bytes (about 55 KB), the difference still plain
    Image.fromarray(canvas).quantize(256, method=Image.Quantize.FASTOCTREE).save(out, "PNG")
    return out.getvalue()
