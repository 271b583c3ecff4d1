"""Stage 4: candidate pairs from the hashes, through the binary index: no pair is compared otherwise."""

from __future__ import annotations

import numpy as np

from .config import Settings
from .features.hashes import ORIENTATIONS, inverse
from .index import neighbours, pairs_within
from .progress import Progress
from .read import Analysed


def find_candidates(
    images: list[int], analysed: dict[int, Analysed], settings: Settings, progress: Progress, title: str
) -> dict[tuple[int, int], set[int]]:
    """Image pairs (a, b), a < b, to verify, each with the orientations t for which turning a by
    ORIENTATIONS[t] may give b: pHashes (whole picture or inside a frame) or dHashes within their radius
    give t = 0; the turned pHashes of every image, queried against the others' pHashes, give the rest."""
    progress.stage(title, len(images))
    out: dict[tuple[int, int], set[int]] = {}

    def add(a: int, b: int, t: int) -> None:
        if a == b:
            return
        if a > b:
            a, b, t = b, a, ORIENTATIONS.index(inverse(*ORIENTATIONS[t]))
        out.setdefault((a, b), set()).add(t)

    owner, codes = [], []
    for i in images:
        f = analysed[i].features
        for code in (f.phash, f.phash_trim):
            if code is not None:
                owner.append(i)
                codes.append(code)
    owner_arr = np.array(owner, dtype=np.int64)
    for a, b in owner_arr[pairs_within(np.array(codes, dtype=np.uint64), settings.hash_radius)]:
        add(int(a), int(b), 0)
    images_arr = np.array(images, dtype=np.int64)
    dcodes = np.array([analysed[i].features.dhash for i in images], dtype=np.uint64)
    for a, b in images_arr[pairs_within(dcodes, settings.dhash_radius)]:
        add(int(a), int(b), 0)

    turns = allowed_turns(settings)
    if turns:
        base = np.array([analysed[i].features.phash for i in images], dtype=np.uint64)
        queries = np.array([analysed[i].features.turned[t - 1] for i in images for t in turns], dtype=np.uint64)
        for q, b in neighbours(base, queries, settings.hash_radius):
            add(images[q // len(turns)], images[b], turns[q % len(turns)])
    progress.advance(len(images))
    return out


def allowed_turns(settings: Settings) -> list[int]:
    """Orientation indices other than "as is" that the settings let a copy have."""
    return [
        t
        for t, (k, mirrored) in enumerate(ORIENTATIONS)
        if t and (settings.mirror or not mirrored) and (settings.rotations or not k)
    ]
