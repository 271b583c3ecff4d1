"""Find the copies of some pictures in a library: `dedupe search IMAGE... --in DIR`.

A search is a scan narrowed to the pairs that involve a query, through the same stages and the same
cache: the library is walked and read by pipeline.read_library (so an unchanged library already read
by a scan or a search is not decoded again, only looked up by file identity); the queries are looked
up in the library's hash index (candidates.find_candidates with `queries`: pHash, pHash inside a
frame, dHash and the turned pHashes, within the scan's radii); the candidates are verified by
match.confirm_all (verdicts kept in the cache); crops, which whole-frame hashes miss, are found by
keypoint votes (index.keypoint_votes, the crop stage's vote), crops of featureless pictures by their
layout (crops.layout_pairs), and confirmed by match.geometry.
Every match is confirmed against the query itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .cache import Cache, Store, hash_key
from .candidates import find_candidates
from .compare import CompareError, band, default_threshold, related_score, relate, verifying
from .config import Settings
from .crops import GEOMETRY_CHUNK, layout_pairs
from .group import describe_transform
from .index import keypoint_votes, voted_pairs
from .match import _load, _plain, confirm_all, geometry, verdict_key
from .model import Problem
from .pipeline import Clock, Library, read_library
from .progress import CancelCheck, NullProgress, Progress, never
from .snapshot import Snapshots, known_formats
from .walk import WalkResult, walk
from .workers import Workers, state

STAGES = 6
QUERY_VOTES = 6
"""Keypoint votes a library picture needs from a query to be checked by geometry. The scan counts votes
both ways between two pictures and needs 12; a search counts only the query's side (searching every
library keypoint for its nearest neighbour would cost what the scan's crop stage costs). On the
scale-5000 corpus, searching the 80 originals that have a crop found every crop that geometry confirms
at 4 to 8 votes, with 0.7 geometry checks per query at 6; at 12, three of them were missed."""


class SearchError(CompareError):
    """A query or folder that cannot be searched (missing, not an image); str() is one line."""


@dataclass(frozen=True)
class Found:
    """One file of the library that is the query's picture (or, with `similar`, related to it)."""

    path: str
    score: int
    band: str
    match: bool
    """False for a related picture (a similar shot), listed only with `similar`."""
    byte_identical: bool
    ssim: float
    hash_distance: int
    transform: dict
    """How the file relates to the query, read from the query (compare.relate: "query" and "match")."""
    width: int
    height: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class QueryResult:
    query: str
    found: list[Found]
    """Best first: matches by score, then (with `similar`) related pictures."""

    @property
    def matches(self) -> list[Found]:
        return [f for f in self.found if f.match]


@dataclass
class SearchResult:
    roots: list[str]
    threshold: int
    queries: list[QueryResult]
    problems: list[Problem]
    """Library files that could not be read (the queries themselves always could)."""
    stats: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "roots": self.roots,
            "threshold": self.threshold,
            "queries": [{"query": q.query, "found": [f.as_dict() for f in q.found]} for q in self.queries],
            "problems": [p.__dict__ for p in self.problems],
            "stats": self.stats,
        }


def search(
    queries: list[str | os.PathLike],
    roots: list[str | os.PathLike],
    settings: Settings | None = None,
    progress: Progress | None = None,
    cancel: CancelCheck = never,
    cache: str | os.PathLike | None = None,
    similar: bool = False,
    top: int | None = None,
    threshold: int | None = None,
) -> SearchResult:
    """The files under `roots` that are the same picture as each query, best first (at most `top` per
    query). `threshold` is the least score of a match (default: the scan's SSIM threshold as a score);
    `similar` also lists related pictures (similar shots). `cache` as for pipeline.scan. Raises
    SearchError for a query that cannot be read or a root that does not exist; bad files in the library
    are problems in the result."""
    settings = settings or Settings()
    progress = progress or NullProgress()
    threshold = default_threshold(settings) if threshold is None else threshold
    checked = verifying(settings, threshold).replace(similar=settings.similar or similar)
    for q in queries:
        if not os.path.isfile(q):
            raise SearchError(f"{'not a file' if os.path.exists(q) else 'no such file'}: {q}")
    for r in roots:
        if not os.path.exists(r):
            raise SearchError(f"no such file or folder: {r}")
    store = Store(Cache(cache))
    workers = Workers(checked, store.cache)
    try:
        return _search(queries, roots, checked, progress, cancel, store, workers, similar, top, threshold)
    finally:
        workers.close()
        store.cache.close()


def _search(queries, roots, settings, progress, cancel, store, workers, similar, top, threshold) -> SearchResult:
    clock = Clock({})
    stats = clock.stats
    progress.stage(f"1/{STAGES}: finding files", None)
    asked = walk(queries, settings.replace(include=()), progress, cancel)  # a query is never filtered out
    if asked.problems:
        raise SearchError(f"{asked.problems[0].path}: {asked.problems[0].reason}")
    snapshots = Snapshots(store.cache, roots)
    found = walk(roots, settings, progress, cancel, known_formats(snapshots.table(), store.cache))
    snapshots.library = found.ids
    walked, inside = _with_queries(asked, found)
    library = read_library(walked, settings, progress, cancel, store, workers, clock, STAGES, snapshots)
    own = _query_files(queries, asked, library, store)
    stats["query_files"] = len(asked.files)
    reps = {q: library.copy_of.get(i, i) for q, i in own.items()}

    pairs = find_candidates(
        library.images, library.codes, library.framed, settings, progress, f"4/{STAGES}: looking up the queries",
        queries=sorted(set(reps.values())),
    )
    stats["candidate_pairs"] = len(pairs)
    clock.lap("candidates")
    progress.stage(f"5/{STAGES}: verifying candidates", len(pairs))
    evidence = confirm_all(pairs, store, settings, workers, progress, cancel)
    stats["confirmed_pairs"] = len(evidence)
    clock.lap("verify")

    progress.stage(f"6/{STAGES}: matching keypoints for crops", len(set(reps.values())))
    similars: dict[tuple[int, int], dict] = {}
    if settings.crops or settings.similar:
        stats["keypoint_pairs"] = _keypoint_matches(
            sorted(set(reps.values())), library, snapshots, store, evidence, similars, settings, workers, progress,
            cancel, stats,
        )
    clock.lap("keypoints")

    shown = set(reps.values()) | {img for pair in [*evidence, *similars] for img in pair}
    files_of: dict[int, list[tuple[str, int]]] = {}  # image -> (path, file) of each library file with its content
    for f in sorted({img for img in shown if img >= len(asked.files)} | set(library.copy_of)):
        if f >= len(asked.files) and library.copy_of.get(f, f) in shown:
            files_of.setdefault(library.copy_of.get(f, f), []).append((library.files[f].path, f))
    for path, f in inside:
        files_of.setdefault(library.copy_of.get(f, f), []).append((path, f))
    shown = similars if similar else {}
    results = [
        QueryResult(
            os.path.abspath(os.fspath(q)),
            _found(reps[q], library.files[own[q]].path, files_of, store, evidence, shown, settings, threshold)[:top],
        )
        for q in queries
    ]
    stats["timings"]["total"] = round(sum(stats["timings"].values()), 3)
    progress.close()
    problems = [p for p in library.problems if p.kind != "skipped"]
    return SearchResult([os.path.abspath(os.fspath(r)) for r in roots], threshold, results, problems, stats)


def _with_queries(asked: WalkResult, walked: WalkResult) -> tuple[WalkResult, list[tuple[str, int]]]:
    """The queries' files first, then the library's, and (path, query file) for each library path to a
    query's very file (the query itself, a hard link): read once, as the query; a match for the other
    queries, and for that one under another path (a hard link), never under its own."""
    mine = {f.identity: n for n, f in enumerate(asked.files)}
    maybe = np.flatnonzero(np.isin(hash_key(walked.ids), hash_key(asked.ids))).tolist()
    theirs = [j for j in maybe if walked.files[j].identity in mine]
    keep = np.ones(len(walked.files), bool)
    keep[theirs] = False
    files = asked.files + walked.files
    for j in reversed(theirs):
        del files[len(asked.files) + j]
    merged = WalkResult(
        files=files,
        problems=walked.problems,
        links=asked.links + walked.links,
        seen=asked.seen + walked.seen,
        ids=np.concatenate([asked.ids, walked.ids[keep]]),
    )
    return merged, [(walked.files[j].path, mine[walked.files[j].identity]) for j in theirs]


def _query_files(queries, asked: WalkResult, library: Library, store: Store) -> dict:
    """Each query (as given) -> its file's index; SearchError when it could not be read."""
    index = {f.path: i for i, f in enumerate(library.files[: len(asked.files)])}
    index.update({link.path: index[link.same_as] for link in asked.links})
    failed = {p.path: p.reason for p in library.problems}
    out = {}
    for q in queries:
        i = index[os.path.abspath(os.fspath(q))]
        path = library.files[i].path
        if path in failed or library.copy_of.get(i, i) not in store:
            raise SearchError(f"{path}: {failed.get(path, 'could not be read')}")
        out[q] = i
    return out


def _keypoint_matches(
    asked: list[int],
    library: Library,
    snapshots: Snapshots,
    store: Store,
    evidence: dict[tuple[int, int], dict],
    similars: dict[tuple[int, int], dict],
    settings: Settings,
    workers: Workers,
    progress: Progress,
    cancel: CancelCheck,
    stats: dict,
) -> int:
    """Crops of each query (and similar shots), found as the scan's crop stage finds them: each of the
    query's keypoints votes (index.keypoint_votes) for the image holding its nearest neighbour outside
    the query's set of copies found so far; each image with QUERY_VOTES votes is checked by geometry
    (verdicts kept in the cache under the scan's key). The library's keypoints are searched in the
    snapshot's index (snapshot.KeypointIndex). Featureless pictures pair with the query by their layout
    (crops.layout_pairs), as in a scan. Adds to `evidence` and `similars`; returns how many
    matches it added."""
    images = library.images
    hashes = store.hashes_of(images)
    index = snapshots.keypoints(images, hashes)
    progress.advance(len(asked))
    pairs = set()
    if index is not None:
        stats["keypoint_index"] = index.how
        as_image = np.zeros(max(images) + 1, np.int64)
        for q in asked:
            # The query's copies found so far count as the query: a picture with many copies (identical
            # keypoints) fills the nearest neighbours, so a keypoint looks past as many of them.
            copies = [q] + [b if a == q else a for a, b in evidence if q in (a, b)]
            as_image[:] = np.arange(len(as_image))
            as_image[copies] = q
            desc = store[q].features.kp_desc
            votes = keypoint_votes(index, desc, np.full(len(desc), q), as_image, k=8 + 2 * len(copies))
            voted = voted_pairs(lambda: [votes], min_votes=QUERY_VOTES, top=len(images))
            pairs.update((min(q, b), max(q, b)) for pair in voted for b in pair if b != q)
    if settings.crops:  # a featureless query, or the original of a featureless crop: by layout
        wanted = np.isin(images, asked)
        found = layout_pairs(hashes, np.arange(len(images)), store.cache, wanted)
        pairs.update((min(images[a], images[b]), max(images[a], images[b])) for a, b in found)

    key = verdict_key("geometry", (), settings)
    jobs = sorted(pairs - set(evidence))
    stats["keypoint_checks"] = len(jobs)
    stored_as = {pair: (store.hashes[pair[0]], store.hashes[pair[1]], key) for pair in jobs}
    known = store.cache.verdicts(list(stored_as.values()))
    todo = [pair for pair in jobs if stored_as[pair] not in known]
    checks = workers.map(_geometry_job, [stored_as[p][:2] for p in todo], cancel, chunksize=GEOMETRY_CHUNK)
    for pair, ev in zip(todo, checks):
        store.cache.put_verdict(stored_as[pair], ev)
        known[stored_as[pair]] = ev
    added = 0
    for pair in jobs:
        ev = known[stored_as[pair]]
        if ev is None:
            continue
        if ev["transform"].get("similar"):
            similars[pair] = ev
        elif settings.crops:
            evidence[pair] = ev
            added += 1
    return added


def _geometry_job(pair: tuple[str, str]) -> dict | None:
    """In a worker (or the main process): match.geometry for two contents, as the crop stage runs it."""
    cache, settings = state()
    return _plain(geometry(_load(cache, pair[0]), _load(cache, pair[1]), settings))


def _found(
    q: int,
    own: str,
    files_of: dict[int, list[tuple[str, int]]],
    store: Store,
    evidence: dict[tuple[int, int], dict],
    similars: dict[tuple[int, int], dict],
    settings: Settings,
    threshold: int,
) -> list[Found]:
    """The library files holding the query image q's picture, best first: its byte-identical copies, the
    images confirmed against it at the threshold, then the related ones in `similars`; never the query's
    own path `own` (a hard link to it elsewhere is listed: the folder holds the picture)."""
    out = []
    info = store.info(q)
    for path, _ in files_of.get(q, []):
        if path != own:
            out.append(Found(path, 100, band(100), True, True, 1.0, 0, {}, info.width, info.height))
    for related, pairs in ((False, evidence), (True, similars)):
        for (a, b), ev in pairs.items():
            if q not in (a, b) or (not related and ev["score"] < threshold):
                continue
            other = b if a == q else a
            seen = store.info(other)
            transform = relate(describe_transform(ev, other < q, info, seen), ("query", "match"))
            score = related_score(ev, settings) if related else ev["score"]
            for path, _ in files_of.get(other, []):
                out.append(
                    Found(
                        path, score, band(score), not related, False, ev["ssim"], ev["hash_distance"], transform,
                        seen.width, seen.height,
                    )
                )
    return sorted(out, key=lambda f: (not f.match, -f.score, f.path))
