"""Wires the stages: walk -> exact -> decode + features -> candidates -> verify -> group."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Iterable
from datetime import datetime, timezone

import numpy as np

from .config import Settings
from .decode import DecodeError, decode
from .exact import content_hash_bytes, content_hash_file, find_exact
from .features.hashes import ORIENTATIONS, describe, hamming, inverse, orient, orient_box
from .group import Candidate, choose_keeper, cluster, components
from .index import keypoint_pairs, neighbours, pairs_within
from .model import Features, FileRecord, Group, ImageInfo, Member, Problem, ScanResult, Similar
from .progress import CancelCheck, NullProgress, Progress, check, never
from .verify import LOW_DETAIL, verify, verify_geometry
from .walk import walk

STAGES = 7
IN_MEMORY_LIMIT = 256 << 20
"""Files up to this size are read into memory once (hash and decode from the same bytes); larger ones
are hashed by streaming and decoded from the file."""
SERIAL_BELOW = 24
TURNED_MIN_SSIM = 0.9
"""A turned or mirrored match on thumbnails alone needs at least this SSIM. Turning adds freedom: the
two halves of a misty lake, one mirrored, reach 0.86 on 128-pixel thumbnails, while real turned copies
(lossless turns, re-encoded) score 0.95 and more. Below it, a turned (not mirrored) copy can still be
confirmed by keypoint geometry, which ORB's rotation-invariant descriptors allow."""
"""Fewer files than this are decoded in-process: a pool's start-up would cost more than it saves."""


@dataclass
class Analysed:
    """What the decode + features stage returns for one file."""

    content_hash: str
    info: ImageInfo
    features: Features


def analyse(path: str, max_pixels: int, with_keypoints: bool = True) -> Analysed | Problem:
    """Read a file once: content hash of its bytes, then decode and features from the same bytes."""
    try:
        if os.path.getsize(path) <= IN_MEMORY_LIMIT:
            with open(path, "rb") as fh:
                data: bytes | str = fh.read()
            content_hash = content_hash_bytes(data)
        else:
            data, content_hash = path, content_hash_file(path)
        gray, info = decode(data, max_pixels)
    except OSError as exc:
        return Problem(path, "decode", f"cannot read: {exc.strerror or exc}")
    except DecodeError as exc:
        return Problem(path, "decode", str(exc))
    feats = describe(gray, with_keypoints)
    if feats.box is not None:
        x0, y0, x1, y1 = feats.box
        info = ImageInfo(**{**info.__dict__, "content_pixels": round(info.width * info.height * (x1 - x0) * (y1 - y0))})
    return Analysed(content_hash, info, feats)


def _analyse_job(job: tuple[str, int, bool]) -> Analysed | Problem:
    return analyse(*job)


def _worker_init() -> None:
    """Workers leave Ctrl-C to the main process and use one thread each (the pool is the parallelism)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import cv2

    cv2.setNumThreads(1)


def _spawn_works() -> bool:
    """Spawned workers re-import the main module by path: impossible for code read from standard input."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    return path is None or os.path.exists(path)


def _analyse_all(files: list[FileRecord], todo: list[int], settings: Settings, cancel: CancelCheck):
    """(index, result) for every file in `todo`, in order; a pool of workers when it pays.

    A decoder that crashes its process (a hostile file can do that to a C library) breaks the pool:
    the first file without a result is then decoded alone in a fresh process; if that one crashes too,
    it is reported as a problem, and the rest goes on in a new pool.
    """
    pending = [(i, (files[i].path, settings.max_pixels, settings.crops or settings.similar)) for i in todo]
    workers = min(settings.effective_workers, max(1, len(pending)))
    if workers == 1 or len(pending) < SERIAL_BELOW or not _spawn_works():
        for i, job in pending:
            check(cancel)
            yield i, _analyse_job(job)
        return
    context = multiprocessing.get_context("spawn")  # forking a process running OpenCV/FAISS threads can deadlock
    while pending:
        done = 0
        try:
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
                try:
                    for (i, _job), result in zip(pending, pool.map(_analyse_job, [j for _, j in pending], chunksize=4)):
                        check(cancel)
                        done += 1
                        yield i, result
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
            return
        except BrokenProcessPool:
            pending = pending[done:]
        i, job = pending.pop(0)
        try:
            with ProcessPoolExecutor(1, mp_context=context, initializer=_worker_init) as alone:
                result = alone.submit(_analyse_job, job).result()
        except BrokenProcessPool:
            result = Problem(job[0], "decode", "the image decoder crashed on this file")
        yield i, result


def scan(
    roots: list[str | os.PathLike],
    settings: Settings | None = None,
    progress: Progress | None = None,
    cancel: CancelCheck = never,
) -> ScanResult:
    """Find the duplicate groups under `roots`. Read-only: nothing on disk is changed.

    `progress` receives stage titles and counts; `cancel` is polled and, when it returns True, the scan
    stops with progress.Cancelled. Bad files become Problems in the result; they never stop the scan.
    """
    settings = settings or Settings()
    progress = progress or NullProgress()
    started = datetime.now(timezone.utc)
    stats: dict = {"timings": {}}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stats["timings"][name] = round(now - clock, 3)
        clock = now

    progress.stage(f"1/{STAGES}: finding files", None)
    walked = walk(roots, settings, progress, cancel)
    files, problems = walked.files, list(walked.problems)
    stats.update(files_seen=walked.seen, image_files=len(files), links=len(walked.links))
    progress.note(f"{len(files)} image files of {walked.seen} seen")
    lap("walk")

    hashes, exact_sets, exact_problems = find_exact(files, f"2/{STAGES}: hashing files of equal size", progress, cancel)
    problems += exact_problems
    unreadable = {p.path for p in exact_problems}
    copy_of: dict[int, int] = {}  # byte-identical file -> the one that is decoded for it
    for members in exact_sets:
        for i in members[1:]:
            copy_of[i] = members[0]
    stats["exact_copies"] = len(copy_of)
    lap("exact")

    to_decode = [i for i, f in enumerate(files) if i not in copy_of and f.path not in unreadable]
    progress.stage(f"3/{STAGES}: decoding images", len(to_decode))
    analysed: dict[int, Analysed] = {}
    for i, result in _analyse_all(files, to_decode, settings, cancel):
        if isinstance(result, Problem):
            problems.append(result)
        else:
            analysed[i] = result
            if i in hashes and hashes[i] != result.content_hash:
                problems.append(Problem(files[i].path, "decode", "file changed during the scan", "error"))
        progress.advance()
    for i, rep in copy_of.items():
        if rep not in analysed and files[rep].path not in unreadable:
            problems.append(Problem(files[i].path, "decode", f"same bytes as {files[rep].path}, which could not be decoded"))
    images = sorted(analysed)  # decoded representatives, in walk order
    stats["images_decoded"] = len(images)
    progress.note(f"{len(images)} distinct images decoded ({len(copy_of)} byte-identical copies not decoded again)")
    lap("decode")

    pairs = _candidates(images, analysed, settings, progress)
    stats["candidate_pairs"] = len(pairs)
    progress.note(f"{len(pairs)} candidate pairs")
    lap("candidates")

    progress.stage(f"5/{STAGES}: verifying candidate pairs", len(pairs))
    evidence: dict[tuple[int, int], dict] = {}
    for (a, b), turns in sorted(pairs.items()):
        check(cancel)
        ev = _confirm(analysed[a], analysed[b], turns, settings)
        if ev is not None:
            evidence[(a, b)] = ev
        progress.advance()
    stats["confirmed_pairs"] = len(evidence)
    progress.note(f"{len(evidence)} pairs confirmed")
    lap("verify")

    similars: list[tuple[tuple[int, int], dict]] = []
    if settings.crops or settings.similar:
        found = _crop_pairs(files, images, analysed, evidence, similars, settings, progress, cancel)
        stats["keypoint_pairs"] = found
        progress.note(f"{found} more pairs confirmed by keypoints (crops)")
    lap("keypoints")

    groups = _group(files, images, analysed, copy_of, evidence, settings, progress, stats)
    stats["groups"] = len(groups)
    similar = _similar_shots(files, groups, similars) if settings.similar else []
    stats["similar_pairs"] = len(similar)
    progress.note(f"{len(groups)} duplicate groups")
    lap("group")

    for p in walked.links:
        problems.append(Problem(p.path, "walk", f"same file as {p.same_as} (hard link or overlapping roots); read once", "skipped"))
    problems.sort(key=lambda p: p.path)
    stats["problems"] = len(problems)
    stats["timings"]["total"] = round(sum(stats["timings"].values()), 3)
    progress.close()
    return ScanResult(
        roots=[os.path.abspath(os.fspath(r)) for r in roots],
        settings=settings.as_dict(),
        groups=groups,
        problems=problems,
        links=walked.links,
        stats=stats,
        started=started.isoformat(timespec="seconds"),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        similar=similar,
    )


def _candidates(
    images: list[int], analysed: dict[int, Analysed], settings: Settings, progress: Progress
) -> dict[tuple[int, int], set[int]]:
    """Image pairs (a, b), a < b, to verify, each with the orientations t for which turning a by
    ORIENTATIONS[t] may give b: pHashes (whole picture or inside a frame) or dHashes within their radius
    give t = 0; the turned pHashes of every image, queried against the others' pHashes, give the rest."""
    progress.stage(f"4/{STAGES}: searching candidate pairs", len(images))
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

    turns = _allowed_turns(settings)
    if turns:
        base = np.array([analysed[i].features.phash for i in images], dtype=np.uint64)
        queries = np.array([analysed[i].features.turned[t - 1] for i in images for t in turns], dtype=np.uint64)
        for q, b in neighbours(base, queries, settings.hash_radius):
            add(images[q // len(turns)], images[b], turns[q % len(turns)])
    progress.advance(len(images))
    return out


CROP_TRIES = 3
"""Members of a picture's set of copies that a crop is checked against, best keeper first."""


def _crop_pairs(
    files: list[FileRecord],
    images: list[int],
    analysed: dict[int, Analysed],
    evidence: dict[tuple[int, int], dict],
    similars: list[tuple[tuple[int, int], dict]],
    settings: Settings,
    progress: Progress,
    cancel: CancelCheck,
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
    progress.stage(f"6/{STAGES}: matching keypoints for crops", len(members))
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
            ev = _geometry(analysed[key[0]], analysed[key[1]], settings)
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


def _similar_shots(files: list[FileRecord], groups: list[Group], similars: list[tuple[tuple[int, int], dict]]) -> list[Similar]:
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
            out.setdefault((pa, pb), Similar(pa, pb, ev["score"], ev["transform"]["overlap"], ev["transform"]["inliers"]))
    return sorted(out.values(), key=lambda s: (s.a, s.b))


def _allowed_turns(settings: Settings) -> list[int]:
    """Orientation indices other than "as is" that the settings let a copy have."""
    return [
        t for t, (k, mirrored) in enumerate(ORIENTATIONS)
        if t and (settings.mirror or not mirrored) and (settings.rotations or not k)
    ]


def _turn(f: Features, t: int) -> Features:
    """The features of the picture turned by ORIENTATIONS[t]."""
    if t == 0:
        return f
    k, mirrored = ORIENTATIONS[t]
    box = orient_box(f.box, k, mirrored) if f.box is not None else None
    return Features(f.turned[t - 1], f.dhash, orient(f.thumb, k, mirrored), f.detail, box)


def _confirm(x: Analysed, y: Analysed, turns: Iterable[int], settings: Settings) -> dict | None:
    """Evidence that x, turned by one of `turns`, is the same picture as y; the best one, or None.

    Whole-frame thumbnails are tried first; when they do not match, keypoint geometry checks whether
    one is a crop of the other, or the same frame turned by quarter turns (a turned copy with an edit
    that keeps its SSIM under TURNED_MIN_SSIM is still confirmed by its geometry)."""
    best = None
    if min(x.features.detail, y.features.detail) < LOW_DETAIL:
        turns = [t for t in turns if t == 0]  # a featureless gradient turned looks like another one
    for t in sorted(turns):
        fx = _turn(x.features, t)
        found = verify(fx, y.features, settings.ssim_threshold if t == 0 else max(settings.ssim_threshold, TURNED_MIN_SSIM))
        if found is None or (best is not None and found[0].ssim <= best[0].ssim):
            continue
        best = (found[0], found[1], t, fx)
    if best is None:
        return _confirm_crop(x, y, settings) if settings.crops else None
    verdict, transform, t, fx = best
    if t:  # a light crop's box would be in turned coordinates: say only that it was aligned
        transform = {k: v for k, v in transform.items() if k not in ("cropped", "crop_box", "kept_area")}
    elif "cropped" in transform and settings.crops:  # a light crop found by alignment: add keypoint inliers
        geometric = _geometry(x, y, settings)
        if geometric is not None and "inliers" in geometric["transform"]:
            transform = {**transform, "inliers": geometric["transform"]["inliers"]}
    dist = min(
        hamming(p, q)
        for p in (fx.phash, fx.phash_trim) if p is not None
        for q in (y.features.phash, y.features.phash_trim) if q is not None
    )
    return {"score": verdict.score, "ssim": round(verdict.ssim, 4), "hash_distance": dist,
            "orientation": t, "transform": transform}


def _confirm_crop(x: Analysed, y: Analysed, settings: Settings) -> dict | None:
    """Evidence that one of x and y is a crop of the other, from keypoint geometry alone: a pair that
    only keypoints brought together has no whole-frame evidence worth weighing."""
    ev = _geometry(x, y, settings)
    return None if ev is None or ev["transform"].get("similar") else ev


def _geometry(x: Analysed, y: Analysed, settings: Settings) -> dict | None:
    """Keypoint-geometry evidence for a pair: a crop, a similar shot (transform["similar"]), or None.

    RANSAC's model depends on which side its matches start from (a degree off one way can cost the
    crop its SSIM), so a pair that fails one way is tried the other way round."""
    found = verify_geometry(x.features, y.features, settings.ssim_threshold, settings.min_crop_area)
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
    return {"score": verdict.score, "ssim": round(verdict.ssim, 4),
            "hash_distance": hamming(x.features.turned[turns - 1] if turns else x.features.phash, y.features.phash),
            "orientation": ORIENTATIONS.index((turns, False)), "transform": transform}


def _likely_turns(x: Analysed, y: Analysed, settings: Settings) -> set[int]:
    """For a pair that was not a candidate: as is, and the orientation whose pHash is closest to y's
    (whole or inside its frame)."""
    allowed = _allowed_turns(settings)
    if not allowed:
        return {0}
    ys = [c for c in (y.features.phash, y.features.phash_trim) if c is not None]
    closest = min(allowed, key=lambda t: min(hamming(x.features.turned[t - 1], c) for c in ys))
    return {0, closest}


def _describe_transform(ev: dict, member_is_first: bool, keeper: ImageInfo, member: ImageInfo) -> dict:
    """How the member relates to the keeper, in words and numbers a person reads.

    Evidence is stored for a pair in index order (first, second); here it is turned around so that it
    reads from the keeper: "rotated" (clockwise degrees) and "mirrored" turn the keeper into the member;
    "crop" says which of the two is the crop and where it lies, in pixels of the uncropped one.
    """
    t = ev.get("orientation", 0)
    # turning the first image by t gives the second: when the member is the first, the keeper -> member
    # turn is the inverse of t
    k, mirrored = inverse(*ORIENTATIONS[t]) if member_is_first else ORIENTATIONS[t]
    out = {key: v for key, v in ev["transform"].items() if key not in ("cropped", "crop_box")}
    if k:
        out["rotated"] = 90 * k
    if mirrored:
        out["mirrored"] = True
    if "cropped" in ev["transform"]:
        member_is_crop = (ev["transform"]["cropped"] == "first") == member_is_first
        whole = keeper if member_is_crop else member
        x0, y0, x1, y1 = ev["transform"]["crop_box"]
        out["crop"] = {
            "of": "member" if member_is_crop else "keeper",
            "box": [round(x0 * whole.width), round(y0 * whole.height), round(x1 * whole.width), round(y1 * whole.height)],
        }
    return out


def _group(
    files: list[FileRecord],
    images: list[int],
    analysed: dict[int, Analysed],
    copy_of: dict[int, int],
    evidence: dict[tuple[int, int], dict],
    settings: Settings,
    progress: Progress,
    stats: dict,
) -> list[Group]:
    """Byte-identical sets and confirmed pairs -> groups with a keeper, confirmed against the keeper."""
    progress.stage(f"7/{STAGES}: grouping and choosing keepers", len(images))
    copies: dict[int, list[int]] = {i: [i] for i in images}
    for c, rep in copy_of.items():
        if rep in copies:
            copies[rep].append(c)

    def cand(i: int, rep: int) -> Candidate:
        return Candidate(files[i], analysed[rep].info)

    def best_file(img_ids: list[int]) -> tuple[int, int, str]:
        """(image, file, reason) of the keeper among all files of these images."""
        pool = [(rep, f) for rep in img_ids for f in copies[rep]]
        k, reason = choose_keeper([cand(f, rep) for rep, f in pool], settings.keeper_rules)
        return pool[k][0], pool[k][1], reason

    edges: dict[int, set[int]] = {}
    for a, b in evidence:
        edges.setdefault(a, set()).add(b)
        edges.setdefault(b, set()).add(a)

    def matched(k: int, x: int) -> bool:
        key = (min(k, x), max(k, x))
        if key not in evidence:
            a, b = key
            ev = _confirm(analysed[a], analysed[b], _likely_turns(analysed[a], analysed[b], settings), settings)
            if ev is None:
                return False
            evidence[key] = ev
        return True

    clusters: list[tuple[int, list[int]]] = []
    index_of = {img: n for n, img in enumerate(images)}
    for comp in components(len(images), [(index_of[a], index_of[b]) for a, b in evidence]):
        clusters += cluster([images[n] for n in comp], matched, edges, lambda ids: best_file(ids)[0])
    # byte-identical sets with no near match are groups of their own
    clustered = {x for _, members in clusters for x in members}
    clusters += [(rep, [rep]) for rep in images if len(copies[rep]) > 1 and rep not in clustered]

    groups = []
    for _keeper_img, member_imgs in clusters:
        keeper_img, keeper_file, reason = best_file(member_imgs)
        keeper_hash = analysed[keeper_img].content_hash
        members = []
        for img in member_imgs:
            a = analysed[img]
            if img == keeper_img:
                ev = {"score": 100, "ssim": 1.0, "hash_distance": 0, "transform": {}}
            else:
                ev = evidence[(min(img, keeper_img), max(img, keeper_img))]
                ev = {**ev, "transform": _describe_transform(ev, img < keeper_img, analysed[keeper_img].info, a.info)}
                ev.pop("orientation")
            for f in copies[img]:
                if f == keeper_file:
                    relation = "keeper"
                elif a.content_hash == keeper_hash:
                    relation = "exact"
                else:
                    relation = "near"
                members.append(Member(files[f], a.info, a.content_hash, a.features.phash, ev["score"], relation,
                                      {k: v for k, v in ev.items() if k != "score"}))
        members.sort(key=lambda m: (m.relation != "keeper", m.file.path))
        kind = "exact" if all(m.relation != "near" for m in members) else "near"
        groups.append(Group(kind, 0, reason, members))
    groups.sort(key=lambda g: (-g.bytes_freed, g.members[0].file.path))
    progress.advance(len(images))
    return groups
