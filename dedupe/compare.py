"""Two pictures side by side: are they the same picture, how alike, and where do they differ.

Nothing here decides anything a scan does not: both files are read as the scan reads them
(read.analyse), the pair is verified by the scan's own check (match.confirm: whole-frame thumbnails in
the likely orientations, then keypoint geometry for crops) and the difference is dedupe.diff's, the
one the HTML report shows. What is added is a score for pairs the scan would simply drop: the SSIM of
the best alignment tried, so that "different" comes with a number too.

The score is the scan's (round(100 x SSIM) of the aligned thumbnails) and reads in bands: 90-100 near
identical, 70-89 same picture with visible edits, 50-69 related, under 50 different. A pair is a match
when verification confirms it and its score reaches the threshold (by default 100 x ssim_threshold,
i.e. 70). A pair verification rejects never scores at or above the verification threshold, so at the
default threshold a score of 70 or more means the same picture, and less means not.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field

import cv2
import numpy as np

from .config import Settings
from .decode import DecodeError, decode_color
from .diff import DIFF_SIDE, Diff, difference, render_diff
from .features.hashes import ORIENTATIONS, dhash, hamming, orient
from .group import describe_transform
from .match import confirm, geometry, likely_turns
from .model import Analysed, ImageInfo, Problem
from .read import analyse
from .verify import agreement, compare as compare_thumbs, fit_similarity

BANDS = ((90, "near identical"), (70, "same picture with visible edits"), (50, "related"), (0, "different"))


class CompareError(Exception):
    """A file that cannot be compared (missing, not an image, broken); str() is one line for the user."""


def band(score: int) -> str:
    """The plain words for a score."""
    return next(words for least, words in BANDS if score >= least)


def default_threshold(settings: Settings) -> int:
    """The least score of a match when none is given: the scan's SSIM threshold, as a score."""
    return round(100 * settings.ssim_threshold)


def verifying(settings: Settings, threshold: int) -> Settings:
    """The settings verification runs with for a threshold: the scan's, or lower when the threshold is
    lower. A threshold above the scan's only filters the scores of confirmed pairs; verifying at it
    would make a watermarked copy at 85 "not the same picture" when it is one, only not close enough."""
    if not 1 <= threshold <= 100:
        raise CompareError(f"threshold must be a score from 1 to 100, not {threshold}")
    return settings.replace(ssim_threshold=min(settings.ssim_threshold, threshold / 100))


def unconfirmed_score(ssim: float, verified_at: Settings) -> int:
    """The score of a pair verification rejected: its best SSIM, kept under the verification threshold so
    that its band never claims a match."""
    return max(0, min(round(100 * ssim), default_threshold(verified_at) - 1))


def related_score(evidence: dict, verified_at: Settings) -> int:
    """The score of two different photos of one scene (keypoint geometry's similar shots): the SSIM of
    their overlap times the share of the pictures it covers, in the "related" band."""
    t = evidence["transform"]
    return min(default_threshold(verified_at) - 1, max(50, round(100 * evidence["ssim"] * t["overlap"])))


def relate(transform: dict, names: tuple[str, str]) -> dict:
    """A transform read from the first picture (group.describe_transform's "keeper" and "member"), with
    the two pictures called by `names`."""
    rename = {"keeper": names[0], "member": names[1], "both": "both"}
    out = dict(transform)
    if "frame removed" in out:
        out["frame removed"] = rename[out["frame removed"]]
    if "crop" in out:
        out["crop"] = {**out["crop"], "of": rename[out["crop"]["of"]]}
    return out


@dataclass(frozen=True)
class Comparison:
    """What `dedupe compare` reports about pictures a and b. Sizes and boxes are in pixels of the pictures
    as they display (EXIF orientation applied)."""

    a: str
    b: str
    score: int
    """0-100; see the module's docstring."""
    band: str
    match: bool
    """Verification confirms the pair and its score reaches `threshold`."""
    threshold: int
    byte_identical: bool
    phash_distance: int
    """Of 64 bits, with a turned in the orientation the pair was matched (or best aligned) in."""
    dhash_distance: int
    ssim: float
    """Variance-weighted SSIM of the aligned grayscale thumbnails: what verification judges."""
    mse: float
    """Mean squared difference of the aligned colour pictures (0-255 levels, all channels)."""
    nrmse: float
    """1 - RMSE / (max - min of a), per channel; the lowest channel. 1 for identical pixels."""
    transform: dict
    """How b relates to a: rotated (clockwise degrees turning a into b), mirrored, crop {"of": "a" or
    "b", "box": [x0, y0, x1, y1] in pixels of the uncropped one}, frame removed, aligned, kept_area;
    similar and overlap for two different photos of one scene."""
    inliers: int
    """Keypoint matches agreeing on one transform (ORB does not match mirrored pictures: 0 for those)."""
    size_a: tuple[int, int]
    size_b: tuple[int, int]
    regions: list[tuple[int, int, int, int]]
    """Boxes (x0, y0, x1, y1) around what differs, in a's pixels."""
    diff: Diff = field(repr=False, compare=False)
    """The aligned pair and its difference maps, for diff.render_diff."""

    def as_dict(self) -> dict:
        """The JSON object `dedupe compare --json` prints."""
        return {
            "a": self.a,
            "b": self.b,
            "score": self.score,
            "band": self.band,
            "match": self.match,
            "threshold": self.threshold,
            "byte_identical": self.byte_identical,
            "phash_distance": self.phash_distance,
            "dhash_distance": self.dhash_distance,
            "ssim": self.ssim,
            "mse": self.mse,
            "nrmse": self.nrmse,
            "transform": self.transform,
            "inliers": self.inliers,
            "size_a": list(self.size_a),
            "size_b": list(self.size_b),
            "regions": [list(r) for r in self.regions],
        }


def _read(path: str, settings: Settings) -> Analysed:
    if not os.path.exists(path):
        raise CompareError(f"no such file: {path}")
    if not os.path.isfile(path):
        raise CompareError(f"not a file: {path}")
    found = analyse(path, settings.max_pixels, with_keypoints=True)
    if isinstance(found, Problem):
        raise CompareError(f"{path}: {found.reason}")
    return found


def _colour(path: str):
    """The picture in colour, for the difference and the pixel errors (the features are grayscale)."""
    try:
        return decode_color(path, DIFF_SIDE)
    except DecodeError as exc:
        raise CompareError(f"{path}: {exc}") from None


def _best_attempt(x: Analysed, y: Analysed, turns: set[int]) -> tuple[float, int]:
    """(SSIM, orientation) of the best whole-frame alignment of a pair verification rejected: the
    thumbnails aligned as verification aligns them, or simply resized onto each other when their shapes
    differ too much for that."""
    best = (0.0, 0)
    for t in sorted(turns):
        a, b = orient(x.features.thumb, *ORIENTATIONS[t]), y.features.thumb
        verdict = compare_thumbs(a, b)
        if verdict is not None:
            best = max(best, (verdict.ssim, t))
        else:
            stretched = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
            best = max(best, (agreement(a, stretched)[0], t))
    return best


def _hash_distances(x: Analysed, y: Analysed, t: int) -> tuple[int, int]:
    """pHash and dHash distances with x turned by ORIENTATIONS[t] (its dHash taken again from the turned
    thumbnail, as describe() takes it from the upright one)."""
    if not t:
        return hamming(x.features.phash, y.features.phash), hamming(x.features.dhash, y.features.dhash)
    turned = dhash(orient(x.features.thumb, *ORIENTATIONS[t]))
    return hamming(x.features.turned[t - 1], y.features.phash), hamming(turned, y.features.dhash)


def _errors(diff: Diff) -> tuple[float, float]:
    """(MSE over all channels, lowest per-channel 1 - RMSE / (max - min)) of the aligned pair."""
    a = diff.keeper[diff.valid].reshape(-1, diff.keeper.shape[-1]).astype(np.float64)
    b = diff.member[diff.valid].reshape(-1, diff.member.shape[-1]).astype(np.float64)
    if not len(a):
        return 0.0, 1.0
    per_channel = ((a - b) ** 2).mean(axis=0)
    spread = np.maximum(a.max(axis=0) - a.min(axis=0), 1.0)
    return round(float(per_channel.mean()), 2), round(float((1 - np.sqrt(per_channel) / spread).min()), 4)


def _full_size(boxes: list[tuple[int, int, int, int]], shape: tuple[int, ...], info: ImageInfo) -> list:
    """Boxes in a decoded array's pixels, in the picture's full-size pixels."""
    sx, sy = info.width / shape[1], info.height / shape[0]
    return [
        (round(x0 * sx), round(y0 * sy), min(info.width, round(x1 * sx)), min(info.height, round(y1 * sy)))
        for x0, y0, x1, y1 in boxes
    ]


def compare(
    a: str | os.PathLike, b: str | os.PathLike, settings: Settings | None = None, threshold: int | None = None
) -> Comparison:
    """Compare two image files. `threshold` is the least score of a match (default: the scan's SSIM
    threshold as a score, 70). Raises CompareError for a file that is missing or cannot be read as a
    picture."""
    settings = settings or Settings()
    threshold = default_threshold(settings) if threshold is None else threshold
    checked = verifying(settings, threshold)
    a, b = os.path.abspath(os.fspath(a)), os.path.abspath(os.fspath(b))
    x, y = _read(a, settings), _read(b, settings)

    turns = likely_turns(x, y, checked)
    evidence = confirm(x, y, turns, checked)
    if evidence is not None:
        score, ssim, t = evidence["score"], evidence["ssim"], evidence["orientation"]
        transform = describe_transform(evidence, False, x.info, y.info)
    else:
        shots = geometry(x, y, checked.replace(similar=True))
        if shots is not None and shots["transform"].get("similar"):
            score, ssim, t = related_score(shots, checked), shots["ssim"], shots["orientation"]
            transform = describe_transform(shots, False, x.info, y.info)
        else:
            ssim, t = _best_attempt(x, y, turns)
            if ssim < 0.5:  # different pictures: as they are, not turned to look a little less different
                ssim, t = _best_attempt(x, y, {0})
            score, ssim = unconfirmed_score(ssim, checked), round(ssim, 4)
            transform = describe_transform({"orientation": t, "transform": {}}, False, x.info, y.info)
    fit = fit_similarity(x.features, y.features)
    inliers = transform.get("inliers") or (fit.inliers if fit is not None else 0)

    pictures = [_colour(path) for path in (a, b)]
    diff = difference(*pictures, transform, (x.info.width, x.info.height), (y.info.width, y.info.height))
    mse, nrmse = _errors(diff)
    phash_distance, dhash_distance = _hash_distances(x, y, t)
    return Comparison(
        a=a,
        b=b,
        score=score,
        band=band(score),
        match=evidence is not None and score >= threshold,
        threshold=threshold,
        byte_identical=x.content_hash == y.content_hash,
        phash_distance=phash_distance,
        dhash_distance=dhash_distance,
        ssim=ssim,
        mse=mse,
        nrmse=nrmse,
        transform=relate(transform, ("a", "b")),
        inliers=int(inliers),
        size_a=(x.info.width, x.info.height),
        size_b=(y.info.width, y.info.height),
        regions=_full_size(diff.keeper_boxes(), pictures[0].shape, x.info),
        diff=diff,
    )


DIFF_MARK = b"Software\x00dedupe compare --diff"
"""A PNG text chunk (tEXt) in every difference picture, right after the header: what lets `--diff` write
over its own earlier output but never over a photo."""


def diff_png(comparison: Comparison) -> bytes:
    """The difference picture: a and b aligned side by side, red boxes around what differs, and the
    difference map, at the resolution the difference was measured at (at most diff.DIFF_SIDE); marked
    with DIFF_MARK."""
    h, w = comparison.diff.keeper.shape[:2]
    names = [
        f"{side}: {os.path.basename(path)}".encode("ascii", "replace").decode()  # OpenCV's font is ASCII
        for side, path in (("A", comparison.a), ("B", comparison.b))
    ]
    png = render_diff(comparison.diff, 3 * w + 12, h + 18, tuple(names))
    chunk = b"tEXt" + DIFF_MARK
    end_of_header = 8 + 25  # the signature, then IHDR: length, type, 13 bytes, CRC
    mark = len(DIFF_MARK).to_bytes(4, "big") + chunk + zlib.crc32(chunk).to_bytes(4, "big")
    return png[:end_of_header] + mark + png[end_of_header:]


def is_diff_png(head: bytes) -> bool:
    """Whether a file's first 100 bytes are those of a difference picture diff_png wrote."""
    return head.startswith(b"\x89PNG") and b"tEXt" + DIFF_MARK in head
