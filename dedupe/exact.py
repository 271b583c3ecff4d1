"""Stage 2: byte-identical files, by size and then content hash, without decoding anything.

Only files that share their size with another are hashed here; the decode stage hashes the rest from the
bytes it reads anyway, so every file is read once (twice for a size collision).
"""

from __future__ import annotations

from collections import defaultdict

import xxhash

from .model import FileRecord, Problem
from .progress import CancelCheck, NullProgress, Progress, check, never

CHUNK = 1 << 20


def content_hash_bytes(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def content_hash_file(path: str) -> str:
    h = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def find_exact(
    files: list[FileRecord],
    title: str,
    progress: Progress = NullProgress(),
    cancel: CancelCheck = never,
    known: dict[int, str] | None = None,
) -> tuple[dict[int, str], list[list[int]], list[Problem]]:
    """Content hashes of the files whose size is shared, the byte-identical sets (indices, walk order) and
    the files that could not be read. `known` hashes (from the cache, for unchanged files) are not
    computed again. `title` names the progress stage. Sizes and hashes are grouped with numpy: a
    library of 100,000 unchanged files costs no loop over pairs of them."""
    import numpy as np  # imported here: apply and undo hash files with this module but need no numpy

    known = known or {}
    sizes = np.fromiter((f.size for f in files), dtype=np.int64, count=len(files))
    _, inverse, counts = np.unique(sizes, return_inverse=True, return_counts=True)
    shared = np.flatnonzero(counts[inverse] > 1).tolist()
    hashes: dict[int, str] = {i: known[i] for i in shared if i in known}
    todo = [i for i in shared if i not in hashes]
    progress.stage(title, len(todo))
    problems: list[Problem] = []
    for i in todo:
        check(cancel)
        try:
            hashes[i] = content_hash_file(files[i].path)
        except OSError as exc:
            problems.append(Problem(files[i].path, "exact", f"cannot read: {exc.strerror or exc}"))
        progress.advance()
    shared_hash: set[str] = set()
    if len(set(hashes.values())) < len(hashes):  # some are shared: which (a set is made in C, this loop is not)
        first: dict[str, int] = {}
        shared_hash = {h for i, h in hashes.items() if first.setdefault(h, i) != i}
    by_hash: dict[tuple[int, str], list[int]] = defaultdict(list)
    if shared_hash:
        for i in sorted(i for i, h in hashes.items() if h in shared_hash):
            by_hash[(files[i].size, hashes[i])].append(i)
    sets = sorted(v for v in by_hash.values() if len(v) > 1)
    return hashes, sets, problems
