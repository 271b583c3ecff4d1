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


_METADATA = {*range(0xE0, 0xF0)} - {0xEE} | {0xFE}
"""JPEG segments that decoding does not read: APP0-APP15 (JFIF, EXIF, XMP, ICC, maker notes...) but
Adobe's APP14, whose transform flag says how the colours were coded, and comments."""
_FRAMES = {*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}
_SOS = 0xDA


def coded_picture(data: bytes) -> str | None:
    """A hash of what a JPEG decoder reads from these bytes: its frame, tables and scans, without the
    metadata segments. A copy whose EXIF was edited or stripped has other bytes but the same coded
    picture, and decodes to the same pixels (before its EXIF orientation is applied). Everything from
    the first scan to the end of the file counts (finding where the picture ends cost as much as
    decoding a tenth of it). A JFIF segment tells the decoder that colours are YCbCr, which it also
    assumes from the usual component ids 1, 2, 3: with other ids, whether one is there counts. None for
    anything but a well-formed JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    view, h, at, jfif, ids = memoryview(data), xxhash.xxh3_128(), 2, False, b""
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == _SOS:
            if jfif and len(ids) == 3 and ids != b"\x01\x02\x03":
                h.update(b"JFIF")
            h.update(view[at:])
            return h.hexdigest()
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            at += 2
            continue
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        end = at + 2 + length
        if length < 2 or end > len(data) or (marker in _FRAMES and length < 8):
            return None  # cut short, or not a JPEG's segment
        if marker not in _METADATA:
            h.update(view[at:end])
        jfif = jfif or (marker == 0xE0 and data[at + 4 : at + 9] == b"JFIF\x00")
        if marker in _FRAMES:
            ids = data[at + 10 : end : 3][: data[at + 9]]
        at = end
    return None


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
