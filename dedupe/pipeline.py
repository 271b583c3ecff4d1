"""Wires the stages: walk -> exact -> read (decode + features) -> candidates -> verify -> crops -> group,
then leaves out the groups that a person's remembered decisions cover (dedupe.decisions)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from .cache import Cache, Store
from .candidates import kept_candidates
from .config import Settings
from .crops import find_crops, similar_shots
from .decisions import Decided, suppress
from .exact import find_exact
from .group import build_groups
from .match import confirm_all
from .model import FileRecord, Group, Link, Problem, ScanResult
from .progress import CancelCheck, NullProgress, Progress, never
from .read import keep_many, read_all
from .snapshot import Snapshots, known_formats
from .walk import WalkResult, walk
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


class Clock:
    """Per-stage timings into `stats["timings"]`: lap(name) records the time since the previous lap."""

    def __init__(self, stats: dict) -> None:
        self.stats = stats
        stats.setdefault("timings", {})
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.stats["timings"][name] = round(now - self._last, 3)
        self._last = now


@dataclass
class Library:
    """The files under some roots once the first three stages have read them: what scan and search share."""

    files: list[FileRecord]
    problems: list[Problem]
    links: list[Link]
    copy_of: dict[int, int]
    """Byte-identical file -> the file that is decoded for it."""
    images: list[int]
    """Decoded files (one per content), in walk order; their features are in the store."""
    codes: np.ndarray
    """Packed codes of `images` (cache.CODES columns), in the same order."""
    framed: np.ndarray
    """Whether each of `images` has a frame."""


def cut_short_problems(groups: list[Group]) -> list[Problem]:
    """A warning for each member of a group that looks cut short (ImageInfo.cut_short): its copy is what
    to keep, and the file itself may be worth a look."""
    return [
        Problem(
            m.file.path,
            "decode",
            f"the last {m.info.cut_short:.0%} of the picture is one flat grey, as a decoder fills a file cut"
            " short: it may be damaged, and is never kept over a whole copy",
            "warning",
        )
        for g in groups
        for m in g.members
        if m.info.cut_short
    ]


def read_library(
    walked: WalkResult,
    settings: Settings,
    progress: Progress,
    cancel: CancelCheck,
    store: Store,
    workers: Workers,
    clock: Clock,
    stages: int,
    snapshots: Snapshots | None = None,
) -> Library:
    """Stages 2 and 3 over walked files: byte-identical copies (hashed only when their size is shared),
    then each distinct content read once, through the cache: an unchanged file is answered from the cache
    without opening it, a moved or copied one is hashed but not decoded. Fills `store`, `clock.stats`.

    With `snapshots`, the files its table knows unchanged are answered from it in bulk (no look-up
    per file), and the table is rewritten when the files read differ from those it holds."""
    cache = store.cache
    stats = clock.stats
    files, problems = walked.files, list(walked.problems)
    stats.update(files_seen=walked.seen, image_files=len(files), links=len(walked.links))
    progress.note(f"{len(files)} image files of {walked.seen} seen")
    clock.lap("walk")

    need_kp = settings.crops or settings.similar
    table = snapshots.table() if snapshots is not None else None
    rows = np.full(len(files), -1, np.int64)
    if table is not None:
        rows = table.rows(walked.ids)
        if need_kp:  # a content stored without keypoints is read again, through the cache
            rows[rows >= 0] = np.where(table.keypoints[table.content[rows[rows >= 0]]], rows[rows >= 0], -1)
    listed = np.flatnonzero(rows >= 0)
    known = dict(zip(listed.tolist(), table.hash_of(rows[listed]))) if len(listed) else {}
    rest = np.flatnonzero(rows < 0).tolist()
    if rest:
        known.update({rest[n]: h for n, h in cache.known_hashes([files[i] for i in rest]).items()})
    hashes, exact_sets, exact_problems = find_exact(
        files, f"2/{stages}: hashing files of equal size", progress, cancel, known
    )
    for i, h in hashes.items():
        if i not in known:
            cache.put_file(files[i], h)
    problems += exact_problems + [Problem(cache.path.name, "cache", w, "warning") for w in cache.warnings]
    unreadable = {p.path for p in exact_problems}
    copy_of: dict[int, int] = {}
    for members in exact_sets:
        for i in members[1:]:
            copy_of[i] = members[0]
    stats["exact_copies"] = len(copy_of)
    clock.lap("exact")

    skip = np.zeros(len(files), bool)
    skip[list(copy_of)] = True
    if unreadable:
        skip[[i for i, f in enumerate(files) if f.path in unreadable]] = True
    to_decode = np.flatnonzero(~skip).tolist()
    progress.stage(f"3/{stages}: decoding images", len(to_decode))
    from_cache = same_picture = 0
    changed: list[int] = []  # files whose content is not the one their identity had
    if table is not None:  # the table's files at once
        todo = np.zeros(len(files), bool)
        todo[to_decode] = True
        hits = np.flatnonzero(todo & (rows >= 0))
        c = table.content[rows[hits]]
        hits = hits.tolist()
        refused = keep_many(
            files, hits, [known[i] for i in hits], table.size[c], table.codes[c], table.framed[c], store, settings
        )
        problems += [p for _, p in refused]
        from_cache += len(hits)
        progress.advance(len(hits))
        to_decode = np.flatnonzero(todo & (rows < 0)).tolist()
    for i, result, source in read_all(files, to_decode, known, store, settings, workers, cancel):
        from_cache += source == "cache"
        same_picture += source == "picture"
        if isinstance(result, Problem):
            problems.append(result)
        elif i in hashes and hashes[i] != result:
            problems.append(Problem(files[i].path, "decode", "file changed during the scan", "error"))
            changed.append(i)
        progress.advance()
    for i, rep in copy_of.items():
        if rep not in store and files[rep].path not in unreadable:
            problems.append(
                Problem(files[i].path, "decode", f"same bytes as {files[rep].path}, which could not be decoded")
            )
    images, codes, framed = store.codes()  # decoded representatives, in walk order
    stats["images_decoded"] = len(images)
    stats["images_from_cache"] = from_cache
    stats["same_picture"] = same_picture
    progress.note(
        f"{len(images)} distinct images ({from_cache} unchanged, from the cache;"
        f" {len(copy_of)} byte-identical copies and {same_picture} of the same picture with other metadata"
        " not decoded again)"
    )
    library = Library(files, problems, walked.links, copy_of, images, codes, framed)
    if snapshots is not None:
        snapshots.update(table, rows, walked.ids, library, store, need_kp, changed)
        stats["snapshot"] = snapshots.state
    clock.lap("decode")
    return library


def _scan(
    roots: list[str | os.PathLike],
    settings: Settings,
    progress: Progress,
    cancel: CancelCheck,
    store: Store,
    workers: Workers,
) -> ScanResult:
    started = datetime.now(timezone.utc)
    stats: dict = {}
    clock = Clock(stats)
    lap = clock.lap

    progress.stage(f"1/{STAGES}: finding files", None)
    snapshots = Snapshots(store.cache, roots)
    walked = walk(roots, settings, progress, cancel, known_formats(snapshots.table(), store.cache))
    library = read_library(walked, settings, progress, cancel, store, workers, clock, STAGES, snapshots)
    files, problems, copy_of = library.files, library.problems, library.copy_of
    images, codes, framed = library.images, library.codes, library.framed

    hashes = store.hashes_of(images)
    title = f"4/{STAGES}: searching candidate pairs"
    pairs = kept_candidates(images, hashes, codes, framed, settings, snapshots, progress, title)
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
            snapshots,
            stats,
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
    problems += cut_short_problems(groups)
    similar = similar_shots(files, groups, similars) if settings.similar else []
    groups, stats["suppressed_groups"] = suppress(groups, Decided(store.cache.decisions()), settings.ignore_decisions)
    stats["groups"] = len(groups)
    stats["similar_pairs"] = len(similar)
    progress.note(
        f"{len(groups)} duplicate groups"
        + (f" ({stats['suppressed_groups']} more hidden by earlier decisions)" if stats["suppressed_groups"] else "")
    )
    lap("group")

    for p in walked.links:
        problems.append(
            Problem(p.path, "walk", f"same file as {p.same_as} (hard link or overlapping roots); read once", "skipped")
        )
    problems.sort(key=lambda p: p.path)
    stats["problems"] = len(problems)
    if store.cache.persistent:  # a complete scan: what was under its roots and is gone is forgotten
        stats["cache_forgotten"] = store.cache.prune(
            [os.path.abspath(os.fspath(r)) for r in roots], walked.ids[:, :2]
        )
    lap("prune")
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
