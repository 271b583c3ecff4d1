"""Stage 3: read each file once: its content hash, its decoded picture and features, in worker processes.

The same bytes give the hash and the picture. Workers are spawned processes fed in small chunks,
results come back in order; a file that crashes its worker is reported, not fatal.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from .config import Settings
from .decode import DecodeError, decode
from .exact import content_hash_bytes, content_hash_file
from .features.hashes import describe
from .model import Features, FileRecord, ImageInfo, Problem
from .progress import CancelCheck, check

IN_MEMORY_LIMIT = 256 << 20
"""Files up to this size are read into memory once (hash and decode from the same bytes); larger ones
are hashed by streaming and decoded from the file."""
SERIAL_BELOW = 24
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


def analyse_all(files: list[FileRecord], todo: list[int], settings: Settings, cancel: CancelCheck):
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
