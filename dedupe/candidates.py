"""Stage 4: candidate pairs from the hashes, through the binary index: no pair is compared otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .cache import CODES, settings_key
from .config import Settings
from .features.hashes import ORIENTATIONS, inverse
from .index import neighbours, pairs_within, popcount64
from .progress import Progress

if TYPE_CHECKING:
    from .snapshot import Snapshots

TURNED_RADIUS = 8
"""Hash radius for turned and mirrored copies. Confirming one on thumbnails takes an SSIM of
match.TURNED_MIN_SSIM (0.9), which a copy more than 8 bits of pHash away does not reach; turned copies
with heavier edits are found by keypoints instead. At 14 bits, each image's seven turned hashes made
three quarters of all candidate pairs on a 5,000-photo library, nearly all of them wrong."""
ALONE_RADIUS = 10
"""pHash distance up to which a pHash match alone makes two whole pictures a candidate pair. Beyond it,
up to the hash radius, is where different pictures meet by chance: their number grows with the square
of the library (on the scale-5000 corpus, 545 of the 551 pairs at 12-14 bits are different pictures;
in 100,000 generated pictures, 151,751 pairs, every one different, against 981 up to 10 bits), and each
costs a verification (3.5 ms). There the pair must also have its dHashes within CONSENSUS_DHASH: a
second hash whose errors are independent of the first's."""
CONSENSUS_DHASH = 18
"""dHash distance that a pair 11-14 pHash bits apart needs. Copies edited that far (crops, brightness,
heavy re-encoding, frames) measured 3-16 dHash bits on the dev and scale-5000 corpora; chance pairs
measure 24 (median), and 8% of them pass: verification at 100,000 pictures falls from 152,732 pairs to
13,766. Crops that no hash finds are the crop stage's, by keypoints."""


def find_candidates(
    images: list[int],
    codes: np.ndarray,
    framed: np.ndarray,
    settings: Settings,
    progress: Progress,
    title: str,
    queries: list[int] | None = None,
) -> dict[tuple[int, int], set[int]]:
    """Image pairs (a, b), a < b, to verify, each with the orientations t for which turning a by
    ORIENTATIONS[t] may give b: pHashes (whole picture or inside a frame) or dHashes within their radius
    give t = 0; the turned pHashes of every image, queried against the others' pHashes within
    TURNED_RADIUS, give the rest.

    `codes` holds each image's packed codes (cache.CODES columns: pHash, dHash, framed pHash, turned)
    and `framed` whether it has a frame, in the order of `images`. With `queries` (some of `images`),
    only the pairs of a query and any other image are searched, by the same hashes and radii: the
    queries are looked up in an index of all the images (and, for turned copies, all the images in an
    index of the queries too, as a scan turns both images of a pair)."""
    progress.stage(title, len(images))
    out: dict[tuple[int, int], set[int]] = {}

    def add(a: int, b: int, t: int) -> None:
        if a == b:
            return
        if a > b:
            a, b, t = b, a, ORIENTATIONS.index(inverse(*ORIENTATIONS[t]))
        out.setdefault((a, b), set()).add(t)

    images_arr = np.array(images, dtype=np.int64)
    codes = np.asarray(codes, dtype=np.uint64).reshape(-1, CODES)
    asked = np.isin(images_arr, queries) if queries is not None else None

    def within(values: np.ndarray, owner: np.ndarray, is_query: np.ndarray | None, radius: int) -> np.ndarray:
        """(owner, owner) pairs of values within `radius`: all pairs, or each query with every image."""
        if is_query is None:
            return owner[pairs_within(values, radius)]
        found = neighbours(values, values[is_query], radius)
        return np.stack([owner[is_query][found[:, 0]], owner[found[:, 1]]], axis=1)

    owner = np.concatenate([images_arr, images_arr[framed]])
    phashes = np.concatenate([codes[:, 0], codes[framed, 2]])  # entries: whole pictures, then insides of frames
    owner_asked = None if asked is None else np.concatenate([asked, asked[framed]])
    entries = within(phashes, np.arange(len(phashes)), owner_asked, settings.hash_radius)
    for a, b in owner[entries[_agreeing(entries, phashes, codes[:, 1])]]:
        add(int(a), int(b), 0)
    for a, b in within(codes[:, 1], images_arr, asked, settings.dhash_radius):
        add(int(a), int(b), 0)

    turns = allowed_turns(settings)
    if turns:
        everyone = np.ones(len(images), bool)
        directions = [(everyone, everyone)] if asked is None else [(asked, everyone), (everyone, asked)]
        for turned, plain in directions:
            src, dst = images_arr[turned], images_arr[plain]
            rotated = codes[turned][:, [2 + t for t in turns]].reshape(-1)
            for q, b in neighbours(codes[plain, 0], rotated, min(settings.hash_radius, TURNED_RADIUS)):
                add(int(src[q // len(turns)]), int(dst[b]), turns[q % len(turns)])
    progress.advance(len(images))
    return out


def kept_candidates(
    images: list[int],
    hashes: list[str],
    codes: np.ndarray,
    framed: np.ndarray,
    settings: Settings,
    snapshots: Snapshots,
    progress: Progress,
    title: str,
) -> dict[tuple[int, int], set[int]]:
    """find_candidates for a scan, with the pairs among the pictures the library snapshot held taken from
    it: only the new pictures' pairs are searched (find_candidates' `queries`). The same pairs as a
    search of all, since a pair is a candidate by its two pictures' codes alone, which their content
    hashes fix; a rescan of 100,000 pictures spent 4.4-4.9 s here. `hashes` are the images' content
    hashes; the pairs are saved for the next scan whenever they changed."""
    from .snapshot import lookup  # not at the top: `dedupe compare` uses this module, and needs no FAISS

    key = settings_key(
        kind="candidates",
        radius=(settings.hash_radius, settings.dhash_radius, TURNED_RADIUS, ALONE_RADIUS, CONSENSUS_DHASH),
        turns=allowed_turns(settings),
    )
    wanted = np.array(hashes, dtype="S32")
    saved = snapshots.candidates(key)
    if saved is None:
        out = find_candidates(images, codes, framed, settings, progress, title)
    else:
        old_hashes, rows = saved
        pos, known = lookup(wanted, np.arange(len(images)), old_hashes)
        new = [images[p] for p in np.flatnonzero(~known)]
        if new:
            out = find_candidates(images, codes, framed, settings, progress, title, new)
        else:
            out = {}
            progress.stage(title, len(images))
            progress.advance(len(images))
        kept = rows[(pos[rows[:, 0]] >= 0) & (pos[rows[:, 1]] >= 0)]
        image_of = np.asarray(images, dtype=np.int64)[pos[kept[:, :2]]]
        for (a, b), t in zip(image_of.tolist(), kept[:, 2].tolist()):
            if a > b:
                a, b, t = b, a, ORIENTATIONS.index(inverse(*ORIENTATIONS[t]))
            out.setdefault((a, b), set()).add(t)
        if not new and len(kept) == len(rows) and len(old_hashes) == len(wanted):
            return out
    row_of = {img: n for n, img in enumerate(images)}
    flat = [(row_of[a], row_of[b], t) for (a, b), ts in out.items() for t in ts]
    snapshots.save_candidates(key, wanted, np.array(flat, dtype=np.int64).reshape(-1, 3))
    return out


def _agreeing(entries: np.ndarray, phashes: np.ndarray, dhashes: np.ndarray) -> np.ndarray:
    """Which pHash pairs of entries are candidates: within ALONE_RADIUS, or with their dHashes within
    CONSENSUS_DHASH. A pair involving the inside of a frame needs no dHash: the whole picture's dHash
    sees the frame."""
    a, b = entries[:, 0], entries[:, 1]
    whole = (a < len(dhashes)) & (b < len(dhashes))
    near = popcount64(phashes[a] ^ phashes[b]) <= ALONE_RADIUS
    agree = np.ones(len(entries), bool)
    agree[whole] = popcount64(dhashes[a[whole]] ^ dhashes[b[whole]]) <= CONSENSUS_DHASH
    return near | ~whole | agree


def allowed_turns(settings: Settings) -> list[int]:
    """Orientation indices other than "as is" that the settings let a copy have."""
    return [
        t
        for t, (k, mirrored) in enumerate(ORIENTATIONS)
        if t and (settings.mirror or not mirrored) and (settings.rotations or not k)
    ]
