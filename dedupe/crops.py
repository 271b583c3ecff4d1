"""Stage 6: crops. Keypoints vote between the sets of copies found so far; geometry confirms."""

from __future__ import annotations

import os
import tempfile

import numpy as np

from .cache import Store, settings_key
from .config import Settings
from .group import Candidate, choose_keeper, components
from .index import (
    DESC_FLAT_LIMIT,
    MIN_VOTES,
    NPROBE,
    descriptor_index,
    descriptor_owners,
    keypoint_votes,
    load_index,
    save_index,
    voted_pairs,
)
from .match import _load, _plain, geometry, verdict_key
from .model import FileRecord, Group, Similar
from .progress import CancelCheck, Progress
from .workers import Workers, state

CROP_TRIES = 3
"""Members of a picture's set of copies that a crop is checked against, best keeper first."""


def find_crops(
    files: list[FileRecord],
    images: list[int],
    analysed: Store,
    evidence: dict[tuple[int, int], dict],
    similars: list[tuple[tuple[int, int], dict]],
    settings: Settings,
    workers: Workers,
    progress: Progress,
    cancel: CancelCheck,
    title: str,
) -> int:
    """Confirm crops. Every image's keypoints vote for the set of copies found so far (connected
    confirmed pairs, or the image alone) that holds its nearest neighbours; for each voted pair of sets,
    up to CROP_TRIES members of each, best keeper first, are verified by geometry until one pair holds.
    A mirrored copy cannot match a crop by keypoints; its unmirrored sibling can. Adds to `evidence`
    (and to `similars` the pairs of sets that are only similar shots); returns how many pairs it added.

    The votes of an unchanged set of images and every geometry verdict come from the cache when a scan
    made them before."""
    cache = analysed.cache
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
    hashes = [analysed.hashes[i] for i in images]
    memo_key = settings_key(kind="votes", images=hashes, labels=labels.tolist(), min_votes=MIN_VOTES, nprobe=NPROBE)
    pairs = cache.memo(memo_key)
    if pairs is None:
        pairs = [list(p) for p in _keypoint_pairs(hashes, labels, workers, cancel)]
        cache.put_memo(memo_key, pairs)
    progress.advance(len(members) // 2)

    analysed.prefetch(i for pair in pairs for label in pair for i in members[label])

    def best_first(label: int) -> list[int]:
        imgs = members[label]
        ranked = []
        while imgs and len(ranked) < CROP_TRIES:
            k, _ = choose_keeper([Candidate(files[i], analysed.info(i)) for i in imgs], settings.keeper_rules)
            ranked.append(imgs[k])
            imgs = imgs[:k] + imgs[k + 1 :]
        return ranked

    vkey = verdict_key("geometry", (), settings)

    def stored_as(key: tuple[int, int]) -> tuple[str, str, str]:
        return analysed.hashes[key[0]], analysed.hashes[key[1]], vkey

    tries = [[(min(a, b), max(a, b)) for a in best_first(p) for b in best_first(q)] for p, q in pairs]
    stored = cache.verdicts([stored_as(key) for t in tries for key in t])
    known = {key: stored[stored_as(key)] for t in tries for key in t if stored_as(key) in stored}
    waiting = [n for n, t in enumerate(tries) if _settle(t, known, settings) is None]
    jobs = [[stored_as(key)[:2] for key in tries[n]] for n in waiting]
    for n, results in zip(waiting, workers.map(_geometry_job, jobs, cancel)):
        for key, ev in zip(tries[n], results):
            known[key] = ev
            cache.put_verdict(stored_as(key), ev)
    added = 0
    for t in tries:
        confirmed, similar = _settle(t, known, settings)
        if confirmed is not None:
            evidence[confirmed[0]] = confirmed[1]
            added += 1
        elif similar is not None:
            similars.append(similar)
    progress.advance(len(members) - len(members) // 2)
    return added


def _keypoint_pairs(
    hashes: list[str], labels: np.ndarray, workers: Workers, cancel: CancelCheck
) -> list[tuple[int, int]]:
    """index.keypoint_pairs for the images with these content hashes, the search split between the
    workers when the index is large: it is the costliest part of this stage (12 s for the 470,000
    descriptors of 5,000 photos on one core). Each worker reads the index and the labels of its
    entries from files, and from the cache only the descriptors of its own share of the images, so the
    main process sends none of them and no process holds every descriptor twice."""
    data, sizes = workers.cache.descriptors(hashes)
    owner = descriptor_owners(labels, sizes)
    if owner is None:
        return []
    index = descriptor_index(data)
    if workers.count == 1 or len(data) <= DESC_FLAT_LIMIT:
        return voted_pairs(*keypoint_votes(index, data, owner, owner))
    with tempfile.TemporaryDirectory(prefix="dedupe-votes-") as tmp:
        path, owner_path = os.path.join(tmp, "descriptors.faiss"), os.path.join(tmp, "owner.npy")
        save_index(index, path)
        np.save(owner_path, owner)
        del index, data, owner
        ends = np.cumsum(sizes)  # shares cut between images, about equal in descriptors
        cuts = np.searchsorted(ends, np.linspace(0, ends[-1], workers.count + 1)[1:-1])
        bounds = [0, *[int(c) + 1 for c in cuts], len(hashes)]
        jobs = [
            (path, owner_path, hashes[lo:hi], labels[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:]) if lo < hi
        ]
        parts = list(workers.map(_votes_job, jobs, cancel, pool=True))
    return voted_pairs(np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts]))


def _votes_job(job) -> tuple[np.ndarray, np.ndarray]:
    path, owner_path, hashes, labels = job
    queries, sizes = state()[0].descriptors(hashes)
    query_owner = np.repeat(np.asarray(labels, np.int64), sizes)
    return keypoint_votes(load_index(path), queries, query_owner, np.load(owner_path, mmap_mode="r"))


def _settle(tries: list[tuple[int, int]], verdicts: dict, settings: Settings):
    """(confirmed (pair, evidence) or None, similar (pair, evidence) or None) for one voted pair of sets:
    the first pair whose geometry holds as a crop wins; a similar shot is kept only if none does. None
    when a verdict it needs is missing."""
    similar = None
    for key in tries:
        if key not in verdicts:
            return None
        ev = verdicts[key]
        if ev is None:
            continue
        if ev["transform"].get("similar"):
            similar = similar or (key, ev)
            continue
        if settings.crops:
            return (key, ev), None
    return None, similar


def _geometry_job(tries: list[tuple[str, str]]) -> list[dict | None]:
    """In a worker: geometry verdicts for a voted pair of sets, in order, up to the first crop that holds
    (what _settle needs)."""
    cache, settings = state()
    out = []
    for x, y in tries:
        ev = _plain(geometry(_load(cache, x), _load(cache, y), settings))
        out.append(ev)
        if ev is not None and not ev["transform"].get("similar") and settings.crops:
            break
    return out


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
