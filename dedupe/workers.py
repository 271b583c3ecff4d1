"""The scan's worker processes: started once, on first need, and fed in chunks by the decode, verify and
keypoint stages. A scan with nothing to compute (every answer in the cache) starts none.

Each worker holds a read-only connection to the scan's cache, so jobs carry content hashes, not pixels.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import InvalidStateError, ProcessPoolExecutor
from concurrent.futures.process import _ExecutorManagerThread
from typing import Callable, Iterable, Iterator

import cv2  # noqa: F401 - imported before the thread count below is taken: its BLAS library starts threads

from .cache import Cache
from .config import Settings
from .malloc import WORKER_MAPPED_FROM, map_large_blocks
from .progress import CancelCheck, check

SERIAL_BELOW = 24
"""Fewer jobs than this run in the main process: a pool's start-up would cost more than it saves."""

_STATE: dict = {}


def _threads() -> int | None:
    """The process's threads, as the kernel counts them (None where /proc cannot tell)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


_IMPORTED_THREADS = _threads()
"""Threads once numpy and OpenCV are imported: their BLAS libraries' pools, which are safe to fork."""


def _init(cache_path: str, settings: Settings) -> None:
    """A worker leaves Ctrl-C and a closed terminal to the main process, ends at once on SIGTERM (how a
    pool stops its workers; the main process's handler is inherited through fork) and uses one thread
    (the pool is the parallelism)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):  # not on Windows
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    map_large_blocks(WORKER_MAPPED_FROM)
    cv2.setNumThreads(1)
    _STATE["cache"] = Cache(cache_path, worker=True)
    _STATE["settings"] = settings


def state() -> tuple[Cache, Settings]:
    """The cache connection and settings of the process a job runs in (in the main process, its own)."""
    return _STATE["cache"], _STATE["settings"]


def _spawn_works() -> bool:
    """Spawned workers re-import the main module by path: impossible for code read from standard input."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    return path is None or os.path.exists(path)


def _context() -> multiprocessing.context.BaseContext:
    """How worker processes start. Forked on Linux while the process has no threads but those it had
    once its libraries were imported (BLAS pools, which stop and restart around a fork): a forked
    worker is ready at once, where a spawned one spends 0.6 s importing numpy, OpenCV and FAISS again.
    Spawned otherwise: once this process has run OpenCV's or FAISS's own thread pools (or a caller has
    started threads), a forked child can deadlock on a lock held by a thread it does not have."""
    now = _threads()
    if sys.platform == "linux" and now is not None and _IMPORTED_THREADS is not None and now <= _IMPORTED_THREADS:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


class Workers:
    """A lazily started process pool, or the main process itself for one worker or a handful of jobs."""

    def __init__(self, settings: Settings, cache: Cache) -> None:
        self.settings = settings
        self.cache = cache
        self.count = settings.effective_workers if _spawn_works() else 1
        self._pool: ProcessPoolExecutor | None = None

    def pool(self, size: int | None = None) -> ProcessPoolExecutor:
        """The shared pool, or (with `size`) a separate one the caller shuts down."""
        self.cache.commit()  # workers read what the main process has written
        args = (str(self.cache.path), self.settings)
        context = _context()
        if context.get_start_method() == "fork":
            # OpenCV's thread pool, once it has run here, hangs a forked child's first OpenCV call (a
            # second scan in one process did); stopped, it is not inherited. The workers use one thread.
            cv2.setNumThreads(1)
        if size is not None:
            return ProcessPoolExecutor(size, mp_context=context, initializer=_init, initargs=args)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.count, mp_context=context, initializer=_init, initargs=args)
        return self._pool

    def local(self) -> None:
        """Make the main process able to run jobs itself, on its own cache connection."""
        _STATE.update(cache=self.cache, settings=self.settings)

    def parallel(self, jobs: int) -> bool:
        return self.count > 1 and jobs >= SERIAL_BELOW

    def map(self, fn: Callable, jobs: list, cancel: CancelCheck, chunksize: int = 1, pool: bool = False) -> Iterator:
        """fn(job) for every job, in order, on the pool when it pays (always, with `pool`)."""
        if not (pool or self.parallel(len(jobs))):
            self.local()
            for job in jobs:
                check(cancel)
                yield fn(job)
            return
        pool = self.pool()
        try:
            for result in pool.map(fn, jobs, chunksize=chunksize):
                check(cancel)
                yield result
        except GeneratorExit:  # the caller stopped reading (zip() does after the last result): the pool is fine
            raise
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Drop the pool (broken, or interrupted): the next job starts a new one."""
        if self._pool is not None:
            if sys.version_info < (3, 12) and threading.excepthook is not _quiet_cancelled:
                threading.excepthook = _quiet_cancelled
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if _STATE.get("cache") is self.cache:
            _STATE.clear()


_excepthook = threading.excepthook


def _quiet_cancelled(args) -> None:
    """Python 3.10-3.11: when workers die just after their pool was dropped (`timeout` and a closed
    terminal signal the workers with the main process), the pool's thread fails on the futures the drop
    cancelled and prints a traceback; 3.12 ignores them. Nothing is lost, so neither is it printed."""
    if not (issubclass(args.exc_type, InvalidStateError) and isinstance(args.thread, _ExecutorManagerThread)):
        _excepthook(args)


def chunks(items: Iterable, size: int) -> list[list]:
    items = list(items)
    return [items[k : k + size] for k in range(0, len(items), size)]
