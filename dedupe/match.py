"""Stage 5: confirm a pair of images, with the evidence a person reads: turned to the same orientation,
compared on whole-frame thumbnails, and when that fails, by keypoint geometry (crops)."""

from __future__ import annotations

import json
from typing import Iterable

from .cache import Cache, Store, settings_key
from .candidates import allowed_turns
from .config import Settings
from .features.hashes import ORIENTATIONS, hamming, orient, orient_box
from .model import Analysed, Features
from .progress import CancelCheck, Progress
from .verify import (
    GOOD_ENOUGH,
    featureless,
    fit_similarity,
    flat_crop,
    inside_share,
    reframed,
    verify,
    verify_geometry,
)
from .workers import Workers, chunks, state

TURNED_MIN_SSIM = 0.9
"""A turned or mirrored match on thumbnails alone needs at least this SSIM. Turning adds freedom: the
two halves of a misty lake, one mirrored, reach 0.86 on 128-pixel thumbnails, while real turned copies
(lossless turns, re-encoded) score 0.95 and more. Below it, a turned (not mirrored) copy can still be
confirmed by keypoint geometry, which ORB's rotation-invariant descriptors allow."""


TURNED_FLAT_MAX_DIFF = 1.5
"""Mean difference (grey levels) within which a featureless picture turned or mirrored matches, besides
verify's rule for featureless pictures: turned and mirrored copies of gradient wallpapers measured 0-1.2
(a saturation edit), different featureless pictures turned 10.9 and more on 21 corpora. Half what an
unturned pair may differ by (verify.FLAT_MAX_DIFF): one blank sky's two halves can mirror each other."""


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
    that keeps its SSIM under TURNED_MIN_SSIM is still confirmed by its geometry). A featureless pair
    turned must also be within TURNED_FLAT_MAX_DIFF grey levels."""
    best = None
    flat = featureless(x.features, y.features)
    for t in sorted(turns):
        fx = _turn(x.features, t)
        found = verify(
            fx, y.features, settings.ssim_threshold if t == 0 else max(settings.ssim_threshold, TURNED_MIN_SSIM)
        )
        if found is None or (best is not None and found[0].ssim <= best[0].ssim):
            continue
        if t and flat and found[0].mad > TURNED_FLAT_MAX_DIFF:  # a featureless gradient turned looks like another
            continue
        best = (found[0], found[1], t, fx)
        if found[0].ssim >= GOOD_ENOUGH:
            break
    if best is None:
        return confirm_crop(x, y, settings) if settings.crops else None
    verdict, transform, t, fx = best
    if t == 0 and reframed(x.features, y.features):
        return None
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


RETRY_INSIDE = 0.85
"""Share of one picture a fit must place inside the other for the pair to be fitted again the other way
round: a refit moves the frame by a degree or a few pixels, not by the 25-35% that neighbouring burst
frames are apart, whose refits were 44% of the crop stage's geometry checks on scale5000."""


def geometry(x: Analysed, y: Analysed, settings: Settings) -> dict | None:
    """Keypoint-geometry evidence for a pair: a crop, a similar shot (transform["similar"], only when
    `settings.similar`), or None.

    RANSAC's model depends on which side its matches start from (a degree off one way can cost the
    crop its SSIM), so a pair whose geometry fits one way but fails a check is tried the other way
    round, unless the fit left neither picture even RETRY_INSIDE inside the other (and similar shots
    are not asked for); one whose keypoints fit no transform at all is not. A featureless pair, which
    has too few keypoints, is also looked at as a crop placed by correlation (verify.flat_crop)."""
    threshold, area, overlaps = settings.ssim_threshold, settings.min_crop_area, settings.similar
    found, swapped = None, False
    fit = fit_similarity(x.features, y.features)
    if fit is not None:
        found = verify_geometry(x.features, y.features, threshold, area, fit, overlaps)
        swapped = found is None and (overlaps or inside_share(fit, x.features, y.features) >= RETRY_INSIDE)
        if swapped:
            found = verify_geometry(y.features, x.features, threshold, area, overlaps=overlaps)
    if (found is None or found[1].get("similar")) and featureless(x.features, y.features):
        placed = flat_crop(x.features, y.features, threshold, area)
        if placed is not None:
            found, swapped = placed, False
    if found is None:
        return None
    verdict, transform = found
    turns = transform.pop("quarter_turns")
    if swapped:  # read it back from x's side
        turns = (-turns) % 4
        if "cropped" in transform:
            transform["cropped"] = "first" if transform["cropped"] == "second" else "second"
        if "within" in transform:
            transform["within"] = transform["within"][::-1]
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


VERIFY_CHUNK = 16
"""Pairs per job sent to a worker: enough to amortise the round trip, few enough to share the work."""


RULES = 5
"""Bumped whenever verification decides differently: verdicts stored under other rules are not used,
while the features stored with each content (cache.VERSION) stay valid and are not computed again."""


def verdict_key(kind: str, turns: Iterable[int], settings: Settings) -> str:
    """What a stored verdict depends on besides the two contents: the check, its rules and the settings
    it used."""
    return settings_key(
        kind=kind,
        rules=RULES,
        turns=sorted(turns),
        ssim=settings.ssim_threshold,
        rotations=settings.rotations,
        mirror=settings.mirror,
        crops=settings.crops,
        min_crop_area=settings.min_crop_area,
        **({"similar": settings.similar} if kind == "geometry" else {}),
    )


def _plain(evidence: dict | None) -> dict | None:
    """Evidence as the cache gives it back (JSON types), so a cold and a warm scan report the same."""
    return None if evidence is None else json.loads(json.dumps(evidence))


def _load(cache: Cache, content_hash: str) -> Analysed:
    return Analysed(content_hash, *cache.load(content_hash))


def _confirm_job(jobs: list[tuple[str, str, tuple[int, ...]]]) -> list[dict | None]:
    cache, settings = state()
    return [_plain(confirm(_load(cache, x), _load(cache, y), turns, settings)) for x, y, turns in jobs]


def confirm_all(
    pairs: dict[tuple[int, int], set[int]],
    store: Store,
    settings: Settings,
    workers: Workers,
    progress: Progress,
    cancel: CancelCheck,
) -> dict[tuple[int, int], dict]:
    """Evidence for every candidate pair that is the same picture: from the cache when it was verified
    before under these settings, else verified by the workers (and stored)."""
    cache = store.cache
    order = sorted(pairs)
    keys = {p: (store.hashes[p[0]], store.hashes[p[1]], verdict_key("confirm", pairs[p], settings)) for p in order}
    known = cache.verdicts(list(keys.values()))
    evidence: dict[tuple[int, int], dict] = {}
    todo = []
    for p in order:
        if keys[p] in known:
            if known[keys[p]] is not None:
                evidence[p] = known[keys[p]]
            progress.advance()
        else:
            todo.append(p)
    batches = chunks(todo, max(1, min(VERIFY_CHUNK, len(todo) // (8 * workers.count))))
    jobs = [[(keys[p][0], keys[p][1], tuple(sorted(pairs[p]))) for p in batch] for batch in batches]
    for batch, results in zip(batches, workers.map(_confirm_job, jobs, cancel)):
        for p, ev in zip(batch, results):
            cache.put_verdict(keys[p], ev)
            if ev is not None:
                evidence[p] = ev
        progress.advance(len(batch))
    return evidence


def confirm_one(a: int, b: int, store: Store, settings: Settings) -> dict | None:
    """confirm() for one pair that was not a candidate (grouping asks), through the cache."""
    x, y = store[a], store[b]
    turns = likely_turns(x, y, settings)
    key = (x.content_hash, y.content_hash, verdict_key("confirm", turns, settings))
    known = store.cache.verdicts([key])
    if key in known:
        return known[key]
    ev = _plain(confirm(x, y, turns, settings))
    store.cache.put_verdict(key, ev)
    return ev
