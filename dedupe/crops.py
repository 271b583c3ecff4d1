"""Stage 6: crops. Keypoints vote between the sets of copies found so far, featureless pictures are
paired by their layout; geometry confirms."""

from __future__ import annotations

from typing import Callable, Iterator

import cv2
import numpy as np

from .cache import Cache, Store
from .config import Settings
from .features.keypoints import KEYPOINTS
from .group import Candidate, choose_keeper, components
from .index import DESC_FLAT_LIMIT, K, MAX_DISTANCE, PASS_VOTES, QUERY_BLOCK, nearest_other, voted_pairs
from .match import _load, _plain, geometry, verdict_key
from .model import FileRecord, Group, Similar
from .progress import CancelCheck, Progress
from .snapshot import Nearest, Snapshots, in_parts, lookup, slots
from .verify import LOW_DETAIL
from .workers import Workers, state

CROP_TRIES = 3
"""Members of a picture's set of copies that a crop is checked against, best keeper first."""
GEOMETRY_CHUNK = 8
"""Geometry jobs sent to a worker at once: one at a time, their pickling and hand-over were a sixth of
the 1.24 s the crop stage's 2,759 checks of scale5000 took (1.03 s in chunks of 8)."""


def find_crops(
    files: list[FileRecord],
    images: list[int],
    analysed: Store,
    evidence: dict[tuple[int, int], dict],
    similars: list[tuple[tuple[int, int], dict]],
    settings: Settings,
    workers: Workers,
    snapshots: Snapshots,
    stats: dict,
    progress: Progress,
    cancel: CancelCheck,
    title: str,
) -> int:
    """Confirm crops. Every image's keypoints vote for the set of copies found so far (connected
    confirmed pairs, or the image alone) that holds its nearest neighbours; for each voted pair of sets,
    up to CROP_TRIES members of each, best keeper first, are verified by geometry until one pair holds.
    A mirrored copy cannot match a crop by keypoints; its unmirrored sibling can. Adds to `evidence`
    (and to `similars` the pairs of sets that are only similar shots); returns how many pairs it added.

    What each keypoint votes for is kept in the snapshot (snapshot.Nearest), and every geometry verdict
    in the cache: a rescan searches only the keypoints of new pictures (stats["keypoints_searched"]), and
    the keypoints whose vote went to a picture gone (stats["votes_searched_again"])."""
    cache = analysed.cache
    labels, members = _sets(images, evidence)
    n_sets = int(labels.max(initial=-1)) + 1
    progress.stage(title, n_sets)
    hashes = analysed.hashes_of(images)
    pairs, searched = _keypoint_pairs(hashes, labels, snapshots, workers, cancel)
    stats["keypoints_searched"], stats["votes_searched_again"] = searched
    progress.advance(n_sets // 2)

    analysed.prefetch(i for pair in pairs for label in pair for i in members(label))

    def best_first(label: int) -> list[int]:
        imgs = members(label)
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
    for n, results in zip(waiting, workers.map(_geometry_job, jobs, cancel, chunksize=GEOMETRY_CHUNK)):
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
    progress.advance(n_sets - n_sets // 2)
    return added


def _sets(images: list[int], evidence: dict[tuple[int, int], dict]) -> tuple[np.ndarray, Callable[[int], list[int]]]:
    """(the set of copies (a label, 0 up, in order of their first image) of each of `images`, connected by
    the pairs of `evidence`; the images of a label). Arrays, not a list for every set: a dict of them, and
    of every image's position, were 200 bytes an image."""
    ids = np.asarray(images, np.int64)
    order = np.argsort(ids, kind="stable")
    labels = np.arange(len(ids))
    for comp in components(list(evidence)):
        at = order[np.searchsorted(ids, comp, sorter=order)]
        labels[at] = at.min()
    _, labels = np.unique(labels, return_inverse=True)
    by_set = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels, np.arange(int(labels.max(initial=-1)) + 2), sorter=by_set)

    def members(label: int) -> list[int]:
        return ids[by_set[bounds[label] : bounds[label + 1]]].tolist()

    return labels, members


def _keypoint_pairs(
    hashes: list[str], labels: np.ndarray, snapshots: Snapshots, workers: Workers, cancel: CancelCheck
) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """(the pairs of sets (labels) the keypoints of these images (content `hashes`) vote for, with those
    their layouts pair (layout_pairs), (how many images had their keypoints searched, how many saved
    keypoints were searched again)). A library whose
    pictures and sets of copies are as the saved table had them gets the pairs saved with it: counting
    9.4 million votes again took 1.7 s, and the layouts 0.05-0.1 s of a 0.5 s rescan of 5,000 photos."""
    saved = snapshots.nearest(votes=False)
    wanted = np.array(hashes, dtype="S32")
    if saved is not None and np.array_equal(saved.hashes, wanted) and not _regrouped(saved.sets, labels).any():
        return sorted(map(tuple, np.sort(labels[saved.pairs], axis=1).tolist())), (0, 0)
    saved = snapshots.nearest() if saved is not None else None  # now with the votes
    table, searched = _nearest(hashes, wanted, labels, saved, snapshots, workers, cancel)
    layouts = layout_pairs(hashes, labels, snapshots.cache, detail=snapshots.details(hashes))
    if table is None:
        return sorted(layouts), searched
    passes = 1 + int(np.count_nonzero(table.target >= 0)) // PASS_VOTES  # votes at most
    pairs = sorted(set(voted_pairs(lambda: _set_votes(table, labels), passes=passes)) | set(layouts))
    first = np.zeros(int(labels.max(initial=-1)) + 1, np.int64)
    first[labels[::-1]] = np.arange(len(labels))[::-1]  # a picture of each set
    table.pairs = first[np.array(pairs, dtype=np.int64).reshape(-1, 2)]
    snapshots.save_nearest(table)
    return pairs, searched


VOTE_BLOCK = 1 << 20
"""Keypoints whose votes are moved (saved ones, to their pictures' new places) or turned into votes
between sets at a time."""


def _set_votes(table: Nearest, labels: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(voter's set, voted set) of the keypoints of `table` that vote for another set of copies, in
    parts of whole pictures: the votes of 100,000 photos (9.6 million keypoints) and their sets at once
    were several hundred MB."""
    sets = labels.astype(np.int32)
    start = np.cumsum(table.counts) - table.counts
    for lo, hi in in_parts(table.counts, VOTE_BLOCK):
        target = table.target[start[lo] : start[hi - 1] + table.counts[hi - 1]]
        a = np.repeat(sets[lo:hi], table.counts[lo:hi])
        has = target >= 0
        a, b = a[has], sets[target[has]]
        other = a != b
        yield a[other], b[other]


def _nearest(
    hashes: list[str],
    wanted: np.ndarray,
    labels: np.ndarray,
    saved: Nearest | None,
    snapshots: Snapshots,
    workers: Workers,
    cancel: CancelCheck,
) -> tuple[Nearest | None, tuple[int, int]]:
    """(the Nearest table of these images (content `hashes`, and as an array `wanted`; sets of copies
    `labels`) or None when fewer than two have keypoints, (how many images had their keypoints searched,
    how many saved keypoints were searched again)).

    The `saved` table answers for the pictures it holds, unless their set of copies joined or split
    another (among the pictures it holds): those, and the new pictures, are searched in the snapshot's
    keypoint index of the whole library, and so are the saved keypoints whose vote went to a picture
    gone, alone (not their pictures' other keypoints: a library rescanned after 1% of its 100,000
    pictures were removed searched 18% of them again, 72 s of crop stage). A saved keypoint that
    a new picture's keypoint comes nearer than the one it voted for (as the new keypoint's search
    finds it) votes for the new picture instead. The search of many pictures is split between the
    workers, which read the index from its file and their pictures' descriptors from the cache: it is
    the costliest part of this stage (12 s for the 470,000 descriptors of 5,000 photos on one core)."""
    n = len(wanted)
    counts = np.zeros(n, np.int64)
    settled = np.zeros(n, bool)
    rows, lost = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if saved is not None:
        row_pos, _ = lookup(wanted, np.arange(n), saved.hashes)
        ok = row_pos >= 0
        reorganised = _regrouped(saved.sets[ok], labels[row_pos[ok]])
        ok[np.flatnonzero(ok)[reorganised]] = False
        rows = np.flatnonzero(ok)
        settled[row_pos[rows]] = True
        counts[row_pos[rows]] = saved.counts[rows]
        saved_start = np.cumsum(saved.counts) - saved.counts
        if (row_pos < 0).any():  # the saved keypoints of pictures kept whose vote went to a picture gone
            t = saved.target
            lost = np.flatnonzero((t >= 0) & (row_pos[np.maximum(t, 0)] < 0))
            lost_row = np.searchsorted(saved_start, lost, side="right") - 1
            lost, lost_row = lost[ok[lost_row]], lost_row[ok[lost_row]]
    fresh = np.flatnonzero(~settled)
    shares, found, again, redone = [], [], [], []
    if len(fresh) or len(lost):
        # built on the workers' share of the cores: they wait for it
        index = snapshots.keypoints(list(range(n)), hashes, every=True, threads=workers.count)
        if index is None:
            return None, (len(fresh), 0)
        new = ~settled
        if saved is not None:
            new[row_pos[row_pos >= 0]] = False  # the pictures saved but searched again are not new
        # the workers read the index from its file
        many = len(fresh) * KEYPOINTS + len(lost) > DESC_FLAT_LIMIT and workers.count > 1 and index.path is not None
        parts = workers.count if many else 1
        shares = [share for share in np.array_split(fresh, parts) if len(share)]
        jobs = [(index, [hashes[p] for p in share], share, labels, settled, new, None) for share in shares]
        if len(lost):  # their pictures' descriptors read, only those keypoints searched
            pictures, which = np.unique(row_pos[lost_row], return_inverse=True)
            first = np.cumsum(counts[pictures]) - counts[pictures]
            only = np.zeros(int(counts[pictures].sum()), bool)
            only[first[which] + lost - saved_start[lost_row]] = True
            for cut in np.array_split(np.arange(len(pictures)), parts):
                if len(cut):
                    share = pictures[cut[0] : cut[-1] + 1]
                    pick = only[first[cut[0]] : first[cut[0]] + int(counts[share].sum())]
                    again.append((share, pick))
                    jobs.append((index, [hashes[p] for p in share], share, labels, settled, new, pick))
        if many:  # nor is it searched here: 40 bytes a descriptor, 400 MB at 100,000 photos, let go
            index.base = None
        found = list(workers.map(_search_job, jobs, cancel, pool=many))
        found, redone = found[: len(shares)], found[len(shares) :]
    for share, (sizes, *_) in zip(shares, found):
        counts[share] = sizes
    start = np.cumsum(counts) - counts
    target, dist = np.full(int(counts.sum()), -1, np.int32), np.zeros(int(counts.sum()), np.uint8)
    if len(rows):  # the saved keypoints of the pictures kept, moved to where their pictures are now, a
        # part at a time: all their positions at once took 340 MB more at 100,000 photos
        for lo, hi in in_parts(saved.counts[rows], VOTE_BLOCK):
            part = rows[lo:hi]
            src, dst = slots(saved_start[part], saved.counts[part]), slots(start[row_pos[part]], saved.counts[part])
            t = saved.target[src]
            target[dst], dist[dst] = np.where(t >= 0, row_pos[np.maximum(t, 0)], -1), saved.dist[src]
    back = []
    for n, share in enumerate(shares):  # a part at a time, each share let go once in place: a share's 4.8
        # million keypoints' slots at once, with the shares kept meanwhile, were 260 MB at 100,000 photos
        sizes, t, d, rev = found[n]
        found[n] = None
        done = 0
        for lo, hi in in_parts(sizes, VOTE_BLOCK):
            at = slots(start[share[lo:hi]], sizes[lo:hi])
            target[at], dist[at] = t[done : done + len(at)], d[done : done + len(at)]
            done += len(at)
        back.append(rev)
        del t, d
    for (share, pick), (sizes, t, d, _) in zip(again, redone):
        at = slots(start[share], sizes)[pick]
        target[at], dist[at] = t, d
    _vote_back(target, dist, start, *(np.concatenate(a) for a in zip(*back)))
    table = Nearest(wanted, counts, labels, target, dist, np.zeros((0, 2), np.int64))
    return table, (len(fresh), len(lost))


LAYOUT = 8
"""Side of the grid of mean grey levels a featureless picture's layout is compared on."""
LAYOUT_WIDTHS = (0.72, 0.78, 0.84, 0.90, 0.96)
"""Widths (shares of a picture's width) of the windows whose layouts a featureless crop's is compared
with, each at 3 x 3 places: a crop between two of them still correlates at 0.997 or more."""
LAYOUT_MATCH = 0.9
"""Correlation of layouts from which a featureless picture and a window of another are checked as a crop
(verify.flat_crop, which decides). A crop between two windows correlates less the more its picture
varies: the featureless crops of 8 benchmark corpora measured 0.997-1.000, but 200 random crops of soft
cloudy fields 0.93-1.00 (a fifth under 0.98, which missed one in ten of them). Other featureless pairs of
the corpora: 104 of 400 over 0.9, so each picture is checked against LAYOUT_TRIES at most."""
WHOLE_DETAIL = 2 * LOW_DETAIL
"""Detail under which a picture may hold a featureless crop: cropping enlarges what is left, so the crop
is smoother than its original (an original of 2.2 held a crop of 1.4)."""
LAYOUT_TRIES = 4
"""Pictures (of other sets) checked for each featureless picture, best layout first."""


def _layouts(thumb: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
    """The layouts of these boxes (x, y, width, height) of a thumbnail: LAYOUT x LAYOUT mean grey levels
    (from its integral image), less their mean, of unit length, so that correlation is a dot product."""
    total = cv2.integral(thumb).astype(np.float64)
    steps = np.arange(LAYOUT + 1) / LAYOUT
    box = np.array(boxes, dtype=np.float64)
    xs = np.round(box[:, :1] + box[:, 2:3] * steps).astype(np.int64)[:, None, :]  # (boxes, 1, LAYOUT + 1)
    ys = np.round(box[:, 1:2] + box[:, 3:4] * steps).astype(np.int64)[:, :, None]  # (boxes, LAYOUT + 1, 1)
    x0, x1, y0, y1 = xs[:, :, :-1], xs[:, :, 1:], ys[:, :-1], ys[:, 1:]
    cells = (total[y1, x1] - total[y0, x1] - total[y1, x0] + total[y0, x0]) / np.maximum((x1 - x0) * (y1 - y0), 1)
    grids = cells.reshape(len(box), -1)
    grids -= grids.mean(axis=1, keepdims=True)
    return (grids / np.maximum(np.linalg.norm(grids, axis=1, keepdims=True), 1e-6)).astype(np.float32)


def _windows(thumb: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Where in a thumbnail a crop of it can have come from: LAYOUT_WIDTHS at 3 x 3 places (corners,
    edges' middles, centre), as boxes for _layouts."""
    h, w = thumb.shape
    return [
        (x * (w - share * w), y * (h - share * h), share * w, share * h)
        for share in LAYOUT_WIDTHS
        for y in (0, 0.5, 1)
        for x in (0, 0.5, 1)
    ]


def layout_pairs(
    hashes: list[str],
    labels: np.ndarray,
    cache: Cache,
    wanted: np.ndarray | None = None,
    detail: np.ndarray | None = None,
) -> list[tuple[int, int]]:
    """Pairs of sets (labels) of these images (content `hashes`) in which a featureless picture's layout
    matches a window of a picture of another set: a crop that keypoints cannot find (too few of them).
    With `wanted` (a mask of the images), only the pairs that hold a wanted image, and nothing at all
    when none of them is under WHOLE_DETAIL (a search for a detailed photo). `detail`: each image's
    detail, when the caller has them (Snapshots.details); else they are read from the cache."""
    import faiss

    if wanted is not None and detail is None:  # the queries' first: 1 s of a 3.3 s search of 100,000 reads all
        if not (cache.details([h for h, w in zip(hashes, wanted) if w]) < WHOLE_DETAIL).any():
            return []
    detail = cache.details(hashes) if detail is None else detail
    crops, wholes = np.flatnonzero(detail < LOW_DETAIL), np.flatnonzero(detail < WHOLE_DETAIL)
    if not len(crops) or len(wholes) < 2:
        return []
    windows, frames = [], {}
    for i in wholes.tolist():  # one thumbnail at a time: a million photos have some 12,000 such pictures
        thumb = cache.load(hashes[i])[1].thumb
        windows.append(_layouts(thumb, _windows(thumb)))
        if detail[i] < LOW_DETAIL:
            frames[i] = _layouts(thumb, [(0, 0, thumb.shape[1], thumb.shape[0])])
    owner = np.repeat(wholes, [len(w) for w in windows])
    index = faiss.IndexFlatIP(LAYOUT * LAYOUT)
    index.add(np.concatenate(windows))
    k = min(index.ntotal, len(windows[0]) * (LAYOUT_TRIES + 1))
    sims, ids = index.search(np.concatenate([frames[i] for i in crops.tolist()]), k)
    out = set()
    for crop, row_sims, row_ids in zip(crops, sims, ids):
        found = []
        for sim, at in zip(row_sims, row_ids):
            if sim < LAYOUT_MATCH or len(found) == LAYOUT_TRIES:
                break
            other = labels[owner[at]] if at >= 0 else labels[crop]
            if other != labels[crop] and other not in found:
                found.append(other)
        out.update((min(labels[crop], b), max(labels[crop], b)) for b in found)
    if wanted is not None:
        asked = set(labels[wanted].tolist())
        out = {pair for pair in out if pair[0] in asked or pair[1] in asked}
    return [(int(a), int(b)) for a, b in out]


def _regrouped(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Which pictures are in a set of copies (labels `after`) that is not what it was (`before`):
    joined with another, or split."""
    pairs = np.unique(np.stack([before, after], axis=1), axis=0)
    split = pairs[1:, 0][pairs[1:, 0] == pairs[:-1, 0]]
    by_after = pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))]
    joined = by_after[1:, 1][by_after[1:, 1] == by_after[:-1, 1]]
    return np.isin(before, split) | np.isin(after, joined)


def _vote_back(target, dist, start, image=(), rank=(), d=(), voter=()) -> None:
    """Saved keypoints (`image`, `rank`) whose nearest outside their set is a new picture's keypoint
    (`voter`, at distance `d`) closer than the one they had, now vote for that picture."""
    if not len(image):
        return
    slot = start[image] + rank
    order = np.lexsort((d, slot))
    slot, d, voter = slot[order], d[order], voter[order]
    first = np.r_[True, slot[1:] != slot[:-1]]  # the closest for each slot
    slot, d, voter = slot[first], d[first], voter[first]
    better = (target[slot] < 0) | (d < dist[slot])
    target[slot[better]], dist[slot[better]] = voter[better], d[better]


def _search_job(job) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    """In a worker (or the main process): the keypoints of some pictures (content `hashes`, at
    `positions`; those `only` marks, if given) searched in the library's index: how many each picture
    has, what each keypoint searched votes for (index.nearest_other) and how far, and (image, rank,
    distance, voter) of the saved keypoints of other sets they come near, for the `new` pictures
    (_vote_back)."""
    index, hashes, positions, labels, settled, new, only = job
    cache = state()[0]
    sizes = cache.descriptor_counts(hashes)
    ends = np.cumsum(sizes)
    targets, dists, back = [np.zeros(0, np.int32)], [np.zeros(0, np.uint8)], []
    for lo, hi in in_parts(sizes, QUERY_BLOCK):  # read a part at a time: 150 MB at 100,000 photos
        if not sizes[lo:hi].any():
            continue
        queries, _ = cache.descriptors(hashes[lo:hi], sizes[lo:hi])
        voter = np.repeat(np.asarray(positions[lo:hi], np.int64), sizes[lo:hi])
        if only is not None:  # these keypoints only
            pick = only[ends[lo] - sizes[lo] : ends[hi - 1]]
            queries, voter = queries[pick], voter[pick]
        dist, image, rank = index.neighbours(queries, K)
        t, d = nearest_other(dist, image, labels[voter], labels)
        targets.append(t.astype(np.int32))
        dists.append(d)
        near = (image >= 0) & (dist <= MAX_DISTANCE) & new[voter][:, None]
        near &= settled[np.maximum(image, 0)] & (labels[np.maximum(image, 0)] != labels[voter][:, None])
        q = np.broadcast_to(voter[:, None], image.shape)
        back.append((image[near], rank[near], dist[near].astype(np.uint8), q[near]))
    back = tuple(np.concatenate(a) for a in zip(*back)) if back else ((np.zeros(0, np.int64),) * 4)
    return sizes, np.concatenate(targets), np.concatenate(dists), back


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
