"""Worker processes: forked while that is safe, spawned otherwise; freed memory handed back to the system."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECK = """
import threading
import dedupe.workers as w
before = w._context().get_start_method()
stop = threading.Event()
thread = threading.Thread(target=stop.wait)
thread.start()
during = w._context().get_start_method()
stop.set()
thread.join()
print(before, during)
"""


def test_workers_are_forked_only_while_no_thread_has_started():
    """A fresh process forks its workers (on Linux); once any thread runs besides the libraries' own,
    a forked child could inherit a held lock without its owner, so workers are spawned."""
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["fork" if sys.platform == "linux" else "spawn", "spawn"]


def _double(x: int) -> int:
    return 2 * x


def test_a_pool_outlives_a_caller_that_stops_reading(tmp_path):
    """zip() stops reading the results after the last one it needs: the pool is kept for the next stage,
    not restarted (a second start costs every worker's start-up again)."""
    from dedupe import Settings
    from dedupe.cache import Cache
    from dedupe.progress import never
    from dedupe.workers import SERIAL_BELOW, Workers

    cache = Cache(tmp_path / "cache.sqlite")
    workers = Workers(Settings(workers=2), cache)
    try:
        jobs = list(range(SERIAL_BELOW))
        assert [r for _, r in zip(jobs, workers.map(_double, jobs, never))] == [2 * j for j in jobs]
        first = workers._pool
        assert first is not None
        assert list(workers.map(_double, jobs, never)) == [2 * j for j in jobs]
        assert workers._pool is first
    finally:
        workers.close()
        cache.close()


TWO_SCANS = """
import sys
from dedupe import Settings, scan
if __name__ == "__main__":
    runs = [scan([sys.argv[1]], Settings(workers=2), cache=sys.argv[2 + n]) for n in range(2)]
    print(*[len(r.groups) for r in runs], *[r.stats["images_decoded"] for r in runs])
"""


def test_a_second_scan_in_one_process_starts_its_workers(tmp_path):
    """Two cold scans in one process, each with its own pool: the second one's forked workers used to
    hang on OpenCV's thread pool, which the first scan's main process had run."""
    from images import photo, recompress, save

    for seed in range(150):
        save(photo(seed, (160, 120)), tmp_path / "lib" / f"{seed}.jpg")
    save(recompress(photo(3, (160, 120)), 40), tmp_path / "lib" / "copy.jpg")
    script = tmp_path / "two_scans.py"
    script.write_text(TWO_SCANS)
    args = [sys.executable, str(script), str(tmp_path / "lib"), str(tmp_path / "a.sqlite"), str(tmp_path / "b.sqlite")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}  # this checkout's package, as pytest's
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True, env=env).stdout.split()
    assert out == ["1", "1", "151", "151"]


def test_only_the_cancelled_futures_fault_of_a_dropped_pool_is_silenced(monkeypatch):
    """Python 3.10-3.11's pool thread fails on futures a drop cancelled when workers die just after (a
    signal to the whole process group); that traceback is not printed, any other thread error is."""
    import threading
    from concurrent.futures import InvalidStateError
    from concurrent.futures.process import _ExecutorManagerThread

    import dedupe.workers as w

    printed = []
    monkeypatch.setattr(w, "_excepthook", printed.append)
    manager, other = object.__new__(_ExecutorManagerThread), threading.Thread(target=print)
    for exc, thread in [(InvalidStateError, manager), (InvalidStateError, other), (OSError, manager)]:
        w._quiet_cancelled(threading.ExceptHookArgs([exc, exc("x"), None, thread]))
    assert [(args.exc_type, args.thread) for args in printed] == [(InvalidStateError, other), (OSError, manager)]


@pytest.mark.skipif(sys.platform != "linux" or not Path("/proc/self/status").exists(), reason="glibc and /proc")
@pytest.mark.parametrize("fixed", [False, True])
def test_with_the_threshold_fixed_a_freed_block_of_some_mb_goes_back_to_the_system(fixed):
    """glibc, left alone, raises its mapping threshold once a 16 MB block is freed: an 8 MB block then
    comes from the heap and stays when freed (below a block allocated after it). With map_large_blocks,
    it is mapped and given back."""
    code = f"""
import numpy as np
from dedupe.malloc import MAPPED_FROM, map_large_blocks
def anon():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssAnon"))
if {fixed}:
    map_large_blocks(MAPPED_FROM)
big = np.ones(16 << 20, np.uint8)
del big
block = np.ones(8 << 20, np.uint8)
after = np.ones(64 << 10, np.uint8)
held = anon()
del block
print(held - anon())
"""
    freed_kb = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert (freed_kb > 7 * 1024) == fixed
