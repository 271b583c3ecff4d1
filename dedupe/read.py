"""Stage 3: read each file once: its content hash, its decoded picture and features, in worker processes.

The same bytes give the hash and the picture. Workers are spawned processes fed in small chunks,
results come back in order; a file that crashes its worker is reported, not fatal.
"""

from __future__ import annotations

import math
import os
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import numpy as np

from .cache import CODES, Store, pack_codes
from .config import Settings
from .decode import DecodeError, decode, decode_cost, metadata
from .exact import coded_picture, content_hash_bytes, content_hash_file
from .features.hashes import describe
from .model import Analysed, FileRecord, ImageInfo, Problem
from .progress import CancelCheck, check
from .workers import Workers, state

IN_MEMORY_LIMIT = 32 << 20
"""Files up to this size are read into memory once (hash and decode from the same bytes); larger ones
are hashed by streaming and decoded from the file, read again from the page cache: a 100 MP TIFF of
344 MB peaked at 774 MB with its bytes held while decoding."""


def _read(path: str) -> tuple[bytes | str, str]:
    """The file's bytes (or its path, when too big to hold) and its content hash."""
    if os.path.getsize(path) <= IN_MEMORY_LIMIT:
        with open(path, "rb") as fh:
            data = fh.read()
        return data, content_hash_bytes(data)
    return path, content_hash_file(path)


def analyse(path: str, max_pixels: int, with_keypoints: bool = True) -> Analysed | Problem:
    """Read a file once: content hash of its bytes, then decode and features from the same bytes."""
    try:
        data, content_hash = _read(path)
    except OSError as exc:
        return Problem(path, "decode", f"cannot read: {exc.strerror or exc}")
    return _analyse_data(path, data, content_hash, max_pixels, with_keypoints)


def _analyse_data(
    path: str, data: bytes | str, content_hash: str, max_pixels: int, with_keypoints: bool
) -> Analysed | Problem:
    try:
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


@dataclass(frozen=True)
class Stored:
    """What the main process keeps of a file a worker read, once the cache has its content: `source` is
    "decoded", "cache" for a content found in the cache by its hash (a moved, renamed or copied file), or
    "picture" for one that took the features of another content with the same coded picture."""

    content_hash: str
    info: ImageInfo
    codes: bytes
    framed: bool
    source: str


CHUNK = 8
"""Files per job, at most: a worker writes their features to the cache in one transaction."""
TAIL_JOBS = 4
"""Jobs per worker that what is left is cut into, once fewer than CHUNK files each would be left: the
last jobs hold one or two files, so the workers finish together. With whole chunks to the end, the
decode stage of scale5000's 219 files of 8 MP and more took 3.19 s against 3.06 s (means of 5
interleaved runs), a worker decoding the last chunk of large JPEGs while the other waited."""


def _analyse_one(job: tuple[str, int, bool, str | None]) -> Stored | Problem:
    """A file the main process could not answer from the cache by its identity. Its bytes are hashed
    first; a content already in the cache is not decoded; a decoded one is stored by the worker, so
    only its summary travels back to the main process."""
    path, max_pixels, with_keypoints, known = job
    cache = state()[0]
    try:
        data, content_hash = _read(path)
    except OSError as exc:
        return Problem(path, "decode", f"cannot read: {exc.strerror or exc}")
    if known is None and cache.have([content_hash], with_keypoints):
        info, codes, framed = cache.summaries([content_hash])[content_hash]
        return Stored(content_hash, info, codes, framed, "cache")
    picture = coded_picture(data) if isinstance(data, bytes) else None
    if picture is not None and (same := _same_picture(data, content_hash, picture, with_keypoints)) is not None:
        return same
    result = _analyse_data(path, data, content_hash, max_pixels, with_keypoints)
    if isinstance(result, Problem):
        return result
    f = result.features
    cache.put_image(content_hash, result.info, f, with_keypoints, picture)
    return Stored(content_hash, result.info, pack_codes(f), f.box is not None, "decoded")


def _same_picture(data: bytes, content_hash: str, picture: str, with_keypoints: bool) -> Stored | None:
    """A JPEG whose coded picture the cache holds under another content, with the same EXIF orientation
    (its EXIF edited or stripped, or written by a photo manager), is not decoded: it takes that
    content's features, and its own format, date and camera."""
    cache = state()[0]
    stored = cache.same_picture(picture, with_keypoints)
    meta = metadata(data) if stored else None
    if meta is None:
        return None
    fmt, orientation, date, camera = meta
    for twin, info, codes, framed in stored:
        if info.orientation == orientation:
            info = replace(info, format=fmt, exif_date=date, camera=camera)
            cache.put_same_picture(content_hash, twin, info)
            return Stored(content_hash, info, codes, framed, "picture")
    return None


def _analyse_job(jobs: list[tuple[str, int, bool, str | None]]) -> list[Stored | Problem]:
    out = [_guarded(job) for job in jobs]
    state()[0].commit()  # before the main process hears of them
    return out


def _guarded(job: tuple[str, int, bool, str | None]) -> Stored | Problem:
    """_analyse_one, with any error it did not foresee (a library's, or ours) reported against the file:
    one file never stops a scan of a whole library."""
    try:
        return _analyse_one(job)
    except Exception as exc:
        return Problem(job[0], "decode", f"unexpected error while reading it ({type(exc).__name__}: {exc})")


def read_all(
    files: list[FileRecord],
    todo: list[int],
    known: dict[int, str],
    store: Store,
    settings: Settings,
    workers: Workers,
    cancel: CancelCheck,
) -> Iterator[tuple[int, str | Problem, str]]:
    """(index, content hash, where its features came from: Stored.source) for every file of `todo` once
    `store` has its image, or (index, Problem, "decoded").

    Files whose identity the cache knows, with their content stored, are answered without reading them;
    the rest go to the workers, which store what they compute in the cache.
    """
    cache = store.cache
    need_kp = settings.crops or settings.similar
    stored = cache.stored(sorted({known[i] for i in todo if i in known}), need_kp)
    hits = [i for i in todo if known.get(i) in stored]
    if hits:
        found = [stored[known[i]] for i in hits]
        size = np.array([f[0] for f in found], dtype=np.int64).reshape(-1, 2)
        codes = np.frombuffer(b"".join(f[1] for f in found), dtype=np.uint64).reshape(-1, CODES)
        framed = np.array([f[2] for f in found], dtype=bool)
        refused = dict(keep_many(files, hits, [known[i] for i in hits], size, codes, framed, store, settings))
        for i in hits:
            yield i, refused.get(i, known[i]), "cache"
    hit_set = set(hits)
    rest = decode_order(files, [i for i in todo if i not in hit_set])
    pending = [(i, (files[i].path, settings.max_pixels, need_kp, known.get(i))) for i in rest]
    for i, result in _run(pending, workers, cancel, lambda a, b: read_key(files[a[0]]) == read_key(files[b[0]])):
        if isinstance(result, Problem):
            yield i, result, "decoded"
        else:
            cache.put_file(files[i], result.content_hash)
            size = (result.info.width, result.info.height)
            kept = _keep(i, files[i], result.content_hash, size, result.codes, result.framed, store, settings)
            yield i, kept, result.source
    cache.commit()


COST_STEP = 1.05
"""Ratio of decode costs that decode_order takes as one: within it, files go by name."""


def decode_order(files: list[FileRecord], todo: list[int]) -> list[int]:
    """The order files are read in: costliest first, so that the last jobs are cheap ones and the workers
    finish together instead of one decoding a chunk of large PNGs while the other waits (scale5000's 219
    files of 8 MP and more: decode stage 2.83 s against 2.97 s ordered by size, where a 0.6 MB WebP, as
    costly as 10 JPEGs of its size, came last). Among files of nearly the same cost (COST_STEP), those of
    one name (IMG_1234.jpg, and IMG_1234.JPG in a backup) are read one after the other, most often by one
    worker: a copy whose metadata alone differs is then found in the cache by its picture (_same_picture)
    instead of being decoded by the other worker at the same time (27 of scale5000's 100 such copies were)."""
    return sorted(todo, key=lambda i: read_key(files[i]))


def read_key(f: FileRecord) -> tuple[int, str]:
    """decode_order's key: the file's cost step, the costliest first, and its name without extension."""
    step = math.floor(math.log(max(decode_cost(f.format, f.size), 1.0), COST_STEP))
    return -step, os.path.splitext(os.path.basename(f.path))[0].lower()


def keep_many(
    files: list[FileRecord],
    indices: list[int],
    hashes: list[str],
    size: np.ndarray,
    codes: np.ndarray,
    framed: np.ndarray,
    store: Store,
    settings: Settings,
) -> list[tuple[int, Problem]]:
    """Contents already stored (in the cache, or a library snapshot) join the store at once, but those
    whose size the settings now refuse: (index, Problem) for each of them."""
    size = np.asarray(size, dtype=np.int64).reshape(-1, 2)
    refused = np.flatnonzero(size[:, 0] * size[:, 1] > settings.max_pixels)
    ok = np.ones(len(indices), bool)
    ok[refused] = False
    taken = np.flatnonzero(ok).tolist()
    store.add_many([indices[n] for n in taken], [hashes[n] for n in taken], codes[ok], framed[ok], size[ok])
    return [(indices[n], _too_big(files[indices[n]], *size[n].tolist(), settings)) for n in refused.tolist()]


def _too_big(f: FileRecord, width: int, height: int, settings: Settings) -> Problem:
    return Problem(f.path, "decode", f"too many pixels ({width}x{height}; the limit is {settings.max_pixels:,})")


def _keep(
    i: int,
    f: FileRecord,
    content_hash: str,
    size: tuple[int, int],
    codes: bytes,
    framed: bool,
    store: Store,
    settings: Settings,
) -> str | Problem:
    """A content known to the cache joins the store, unless the settings now refuse its size."""
    width, height = size
    if width * height > settings.max_pixels:
        return _too_big(f, width, height, settings)
    store.add(i, content_hash, codes, framed, size)
    return content_hash


def guided(items: list, workers: int, together: Callable[[object, object], bool] | None = None) -> list[list]:
    """`items` cut into jobs of CHUNK, then smaller: each job is at most 1/(TAIL_JOBS * workers) of
    what is left from it on (and at least one item), but never between two neighbours that belong
    `together` (the files of one name that decode_order puts side by side: one worker then reads them
    in turn, and a copy whose metadata alone differs finds its picture stored by the other)."""
    out, k = [], 0
    while k < len(items):
        size = max(1, min(CHUNK, (len(items) - k) // (TAIL_JOBS * workers)))
        while together is not None and k + size < len(items) and together(items[k + size - 1], items[k + size]):
            size += 1
        out.append(items[k : k + size])
        k += size
    return out


def _run(
    pending: list, workers: Workers, cancel: CancelCheck, together: Callable[[object, object], bool] | None = None
) -> Iterator[tuple[int, Stored | Problem]]:
    """(index, result) for every file, in order, on the workers when it pays, in `guided` jobs.

    A decoder that crashes its process (a hostile file can do that to a C library) breaks the pool:
    the first file without a result is then decoded alone in a fresh process; if that one crashes too,
    it is reported as a problem, and the rest goes on in a new pool.
    """
    if not workers.parallel(len(pending)):
        workers.local()
        for i, job in pending:
            check(cancel)
            yield i, _analyse_job([job])[0]
        return
    while pending:
        done = 0
        try:
            jobs = [[job for _, job in share] for share in guided(pending, workers.count, together)]
            for results in workers.map(_analyse_job, jobs, cancel, pool=True):
                for result in results:
                    yield pending[done][0], result
                    done += 1
            return
        except BrokenProcessPool:
            pending = pending[done:]
        i, job = pending.pop(0)
        alone = workers.pool(size=1)
        try:
            result = alone.submit(_analyse_job, [job]).result()[0]
        except BrokenProcessPool:
            result = Problem(job[0], "decode", "the image decoder crashed on this file")
        finally:
            alone.shutdown(wait=False, cancel_futures=True)
        yield i, result
