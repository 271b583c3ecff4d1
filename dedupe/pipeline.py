"""Wires the stages: walk -> exact -> read (decode + features) -> candidates -> verify -> crops -> group."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

from .cache import Cache, Store
from .candidates import find_candidates
from .config import Settings
from .crops import find_crops, similar_shots
from .exact import find_exact
from .group import build_groups
from .match import confirm_all
from .model import Problem, ScanResult
from .progress import CancelCheck, NullProgress, Progress, never
from .read import read_all
from .walk import walk
from .workers import Workers

STAGES = 7


def scan(
    roots: list[str | os.PathLike],
    settings: Settings | None = None,
    progress: Progress | None = None,
    cancel: CancelCheck = never,
    cache: str | os.PathLike | None = None,
) -> ScanResult:
    """Find the duplicate groups under `roots`. Read-only: nothing under the roots is changed.

    `progress` receives stage titles and counts; `cancel` is polled and, when it returns True, the scan
    stops with progress.Cancelled. Bad files become Problems in the result; they never stop the scan.
    `cache` is the feature cache file to use and fill (see dedupe.cache.default_path()); None keeps
    everything in a temporary one that is removed at the end.
    """
    settings = settings or Settings()
    progress = progress or NullProgress()
    store = Store(Cache(cache))
    workers = Workers(settings, store.cache)
    try:
        return _scan(roots, settings, progress, cancel, store, workers)
    finally:
        workers.close()
        store.cache.close()


def _scan(
    roots: list[str | os.PathLike],
    settings: Settings,
    progress: Progress,
    cancel: CancelCheck,
    store: Store,
    workers: Workers,
) -> ScanResult:
    cache = store.cache
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

    known = cache.known_hashes(files)
    hashes, exact_sets, exact_problems = find_exact(
        files, f"2/{STAGES}: hashing files of equal size", progress, cancel, known
    )
    for i, h in hashes.items():
        if i not in known:
            cache.put_file(files[i], h)
    problems += exact_problems + [Problem(cache.path.name, "cache", w, "warning") for w in cache.warnings]
    unreadable = {p.path for p in exact_problems}
    copy_of: dict[int, int] = {}  # byte-identical file -> the one that is decoded for it
    for members in exact_sets:
        for i in members[1:]:
            copy_of[i] = members[0]
    stats["exact_copies"] = len(copy_of)
    lap("exact")

    to_decode = [i for i, f in enumerate(files) if i not in copy_of and f.path not in unreadable]
    progress.stage(f"3/{STAGES}: decoding images", len(to_decode))
    from_cache = 0
    for i, result, cached in read_all(files, to_decode, known, store, settings, workers, cancel):
        from_cache += cached
        if isinstance(result, Problem):
            problems.append(result)
        elif i in hashes and hashes[i] != result:
            problems.append(Problem(files[i].path, "decode", "file changed during the scan", "error"))
        progress.advance()
    for i, rep in copy_of.items():
        if rep not in store and files[rep].path not in unreadable:
            problems.append(
                Problem(files[i].path, "decode", f"same bytes as {files[rep].path}, which could not be decoded")
            )
    images, codes, framed = store.codes()  # decoded representatives, in walk order
    stats["images_decoded"] = len(images)
    stats["images_from_cache"] = from_cache
    progress.note(
        f"{len(images)} distinct images ({from_cache} unchanged, from the cache;"
        f" {len(copy_of)} byte-identical copies not decoded again)"
    )
    lap("decode")

    pairs = find_candidates(images, codes, framed, settings, progress, f"4/{STAGES}: searching candidate pairs")
    del codes
    stats["candidate_pairs"] = len(pairs)
    progress.note(f"{len(pairs)} candidate pairs")
    lap("candidates")

    progress.stage(f"5/{STAGES}: verifying candidate pairs", len(pairs))
    evidence = confirm_all(pairs, store, settings, workers, progress, cancel)
    stats["confirmed_pairs"] = len(evidence)
    progress.note(f"{len(evidence)} pairs confirmed")
    lap("verify")

    similars: list[tuple[tuple[int, int], dict]] = []
    if settings.crops or settings.similar:
        found = find_crops(
            files,
            images,
            store,
            evidence,
            similars,
            settings,
            workers,
            progress,
            cancel,
            f"6/{STAGES}: matching keypoints for crops",
        )
        stats["keypoint_pairs"] = found
        progress.note(f"{found} more pairs confirmed by keypoints (crops)")
    lap("keypoints")

    groups = build_groups(
        files, images, store, copy_of, evidence, settings, progress, f"7/{STAGES}: grouping and choosing keepers"
    )
    stats["groups"] = len(groups)
    similar = similar_shots(files, groups, similars) if settings.similar else []
    stats["similar_pairs"] = len(similar)
    progress.note(f"{len(groups)} duplicate groups")
    lap("group")

    for p in walked.links:
        problems.append(
            Problem(p.path, "walk", f"same file as {p.same_as} (hard link or overlapping roots); read once", "skipped")
        )
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
