"""Worker processes: forked while that is safe, spawned otherwise."""

from __future__ import annotations

import subprocess
import sys

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
