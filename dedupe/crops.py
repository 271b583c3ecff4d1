"""Stage 6: crops. Keypoints vote between the sets of copies found so far; geometry confirms."""

from __future__ import annotations

import numpy as np

from .config import Settings
from .group import Candidate, choose_keeper, components
from .index import keypoint_pairs
from .match import geometry
from .model import FileRecord, Group, Similar
from .progress import CancelCheck, Progress, check
from .read import Analysed

CROP_TRIES = 3
"""Members of a picture's set of copies that a crop is checked against, best keeper first."""


def find_crops(
    files: list[FileRecord],
    images: list[int],
    analysed: dict[int, Analysed],
    evidence: dict[tuple[int, int], dict],
    similars: list[tuple[tuple[int, int], dict]],
    settings: Settings,
    progress: Progress,
    cancel: CancelCheck,
    title: str,
) -> int:
    """Confirm crops. Every image's keypoints vote for the set of copies found so far (connected
    confirmed pairs, or the image alone) that holds its nearest neighbours; for each voted pair of sets,
    up to CROP_TRIES members of each, best keeper first, are verified by geometry until one pair holds.
    A mirrored copy cannot match a crop by keypoints; its unmirrored sibling can. Adds to `evidence`
    (and to `similars` the pairs of sets that are only similar shots); returns how many pairs it added."""
    index_of = {img: n for n, img in enumerate(images)}
    sets = components(len(images), [(index_of[a], index_of[b]) for a, b in evidence])
    labels = np.arange(len(images))
    for comp in sets:
        labels[comp] = comp[0]
    _, labels = np.unique(labels, return_inverse=True)
    members: dict[int, list[int]] = {}
    for n, label in enumerate(labels):
        members.setdefault(int(label), []).append(images[n])
    progress.stage(title, len(members))
    pairs = keypoint_pairs([analysed[i].features.kp_desc for i in images], labels)
    progress.advance(len(members) // 2)

    def best_first(label: int) -> list[int]:
        imgs = members[label]
        ranked = []
        while imgs and len(ranked) < CROP_TRIES:
            k, _ = choose_keeper([Candidate(files[i], analysed[i].info) for i in imgs], settings.keeper_rules)
            ranked.append(imgs[k])
            imgs = imgs[:k] + imgs[k + 1 :]
        return ranked

    added = 0
    for p, q in pairs:
        check(cancel)
        similar = None
        for a, b in ((a, b) for a in best_first(p) for b in best_first(q)):
            key = (min(a, b), max(a, b))
            ev = geometry(analysed[key[0]], analysed[key[1]], settings)
            if ev is None:
                continue
            if ev["transform"].get("similar"):
                similar = similar or (key, ev)
                continue
            if not settings.crops:
                continue
            evidence[key] = ev
            added += 1
            similar = None
            break
        if similar is not None:
            similars.append(similar)
    progress.advance(len(members) - len(members) // 2)
    return added


def similar_shots(
    files: list[FileRecord], groups: list[Group], similars: list[tuple[tuple[int, int], dict]]
) -> list[Similar]:
    """Similar shots between pictures that did not end up in one group, named by each one's keeper."""
    keeper_of = {}
    for g in groups:
        for m in g.members:
            keeper_of[m.file.path] = g.members[g.keeper].file.path
    out = {}
    for (a, b), ev in similars:
        pa = keeper_of.get(files[a].path, files[a].path)
        pb = keeper_of.get(files[b].path, files[b].path)
        if pa != pb:
            pa, pb = sorted((pa, pb))
            out.setdefault(
                (pa, pb), Similar(pa, pb, ev["score"], ev["transform"]["overlap"], ev["transform"]["inliers"])
            )
    return sorted(out.values(), key=lambda s: (s.a, s.b))
