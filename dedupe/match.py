"""Stage 5: confirm a pair of images, with the evidence a person reads: turned to the same orientation,
compared on whole-frame thumbnails, and when that fails, by keypoint geometry (crops)."""

from __future__ import annotations

from typing import Iterable

from .candidates import allowed_turns
from .config import Settings
from .features.hashes import ORIENTATIONS, hamming, orient, orient_box
from .model import Features
from .read import Analysed
from .verify import GOOD_ENOUGH, LOW_DETAIL, fit_similarity, verify, verify_geometry

TURNED_MIN_SSIM = 0.9
"""A turned or mirrored match on thumbnails alone needs at least this SSIM. Turning adds freedom: the
two halves of a misty lake, one mirrored, reach 0.86 on 128-pixel thumbnails, while real turned copies
(lossless turns, re-encoded) score 0.95 and more. Below it, a turned (not mirrored) copy can still be
confirmed by keypoint geometry, which ORB's rotation-invariant descriptors allow."""


def _turn(f: Features, t: int) -> Features:
    """The features of the picture turned by ORIENTATIONS[t]."""
    if t == 0:
        return f
    k, mirrored = ORIENTATIONS[t]
    box = orient_box(f.box, k, mirrored) if f.box is not None else None
    return Features(f.turned[t - 1], f.dhash, orient(f.thumb, k, mirrored), f.detail, box)


def confirm(x: Analysed, y: Analysed, turns: Iterable[int], settings: Settings) -> dict | None:
    """Evidence that x, turned by one of `turns`, is the same picture as y; the best one, or None.

    Whole-frame thumbnails are tried first; when they do not match, keypoint geometry checks whether
    one is a crop of the other, or the same frame turned by quarter turns (a turned copy with an edit
    that keeps its SSIM under TURNED_MIN_SSIM is still confirmed by its geometry)."""
    best = None
    if min(x.features.detail, y.features.detail) < LOW_DETAIL:
        turns = [t for t in turns if t == 0]  # a featureless gradient turned looks like another one
    for t in sorted(turns):
        fx = _turn(x.features, t)
        found = verify(
            fx, y.features, settings.ssim_threshold if t == 0 else max(settings.ssim_threshold, TURNED_MIN_SSIM)
        )
        if found is None or (best is not None and found[0].ssim <= best[0].ssim):
            continue
        best = (found[0], found[1], t, fx)
        if found[0].ssim >= GOOD_ENOUGH:
            break
    if best is None:
        return confirm_crop(x, y, settings) if settings.crops else None
    verdict, transform, t, fx = best
    if t:  # a light crop's box would be in turned coordinates: say only that it was aligned
        transform = {k: v for k, v in transform.items() if k not in ("cropped", "crop_box", "kept_area")}
    elif "cropped" in transform and settings.crops:  # a light crop found by alignment: add keypoint inliers
        geometric = geometry(x, y, settings)
        if geometric is not None and "inliers" in geometric["transform"]:
            transform = {**transform, "inliers": geometric["transform"]["inliers"]}
    dist = min(
        hamming(p, q)
        for p in (fx.phash, fx.phash_trim)
        if p is not None
        for q in (y.features.phash, y.features.phash_trim)
        if q is not None
    )
    return {
        "score": verdict.score,
        "ssim": round(verdict.ssim, 4),
        "hash_distance": dist,
        "orientation": t,
        "transform": transform,
    }


def confirm_crop(x: Analysed, y: Analysed, settings: Settings) -> dict | None:
    """Evidence that one of x and y is a crop of the other, from keypoint geometry alone: a pair that
    only keypoints brought together has no whole-frame evidence worth weighing."""
    ev = geometry(x, y, settings)
    return None if ev is None or ev["transform"].get("similar") else ev


def geometry(x: Analysed, y: Analysed, settings: Settings) -> dict | None:
    """Keypoint-geometry evidence for a pair: a crop, a similar shot (transform["similar"]), or None.

    RANSAC's model depends on which side its matches start from (a degree off one way can cost the
    crop its SSIM), so a pair whose geometry fits one way but fails a check is tried the other way
    round; one whose keypoints fit no transform at all is not."""
    fit = fit_similarity(x.features, y.features)
    if fit is None:
        return None
    found = verify_geometry(x.features, y.features, settings.ssim_threshold, settings.min_crop_area, fit)
    swapped = found is None
    if swapped:
        found = verify_geometry(y.features, x.features, settings.ssim_threshold, settings.min_crop_area)
    if found is None:
        return None
    verdict, transform = found
    turns = transform.pop("quarter_turns")
    if swapped:  # read it back from x's side
        turns = (-turns) % 4
        if "cropped" in transform:
            transform["cropped"] = "first" if transform["cropped"] == "second" else "second"
    if turns and not settings.rotations:
        return None
    return {
        "score": verdict.score,
        "ssim": round(verdict.ssim, 4),
        "hash_distance": hamming(x.features.turned[turns - 1] if turns else x.features.phash, y.features.phash),
        "orientation": ORIENTATIONS.index((turns, False)),
        "transform": transform,
    }


def likely_turns(x: Analysed, y: Analysed, settings: Settings) -> set[int]:
    """For a pair that was not a candidate: as is, and the orientation whose pHash is closest to y's
    (whole or inside its frame)."""
    allowed = allowed_turns(settings)
    if not allowed:
        return {0}
    ys = [c for c in (y.features.phash, y.features.phash_trim) if c is not None]
    closest = min(allowed, key=lambda t: min(hamming(x.features.turned[t - 1], c) for c in ys))
    return {0, closest}
