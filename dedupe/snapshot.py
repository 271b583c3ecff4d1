"""Library snapshots: what the cache knows about every file of a library, kept as arrays beside the
cache, and an index of the library's keypoints, so that a repeated search costs a walk and a few array
operations. Without them a repeated search of 100,000 pictures took 10 s: 100,000 look-ups in SQLite
for the files and their codes, and every one of the query's keypoints compared with all 9.6 million of
the library's, read from SQLite first.

A snapshot never decides on its own. Its file table answers only by identity (device, inode, size,
mtime_ns), exactly as the cache's files table does, and only about contents the cache holds (it is
tied to the cache's generation, which a cleared or rebuilt cache changes): a file it does not know is
read through the cache as before, so a stale snapshot can only make a search slower, never wrong. The
table is rewritten whenever the files read differ from those it holds.

The keypoint index (FAISS, read with mmap: exhaustive up to index.DESC_FLAT_LIMIT descriptors,
inverted lists beyond) covers the pictures of the library when it was built, its ids naming picture and
keypoint; the pictures added since are searched in a small exhaustive index beside it, and those gone
are dropped from its answers; once these are a tenth of it, it is rebuilt from itself (kept lists, new
pictures added). The linear lists of a large library are kept in a file of their own, never whole in
memory. The scan's crop stage builds it (and searches every keypoint in it), so the first
search after a scan finds it ready. The crop stage also keeps what it found for each keypoint (Nearest),
and the scan its candidate pairs, so that a rescan searches only the keypoints and pairs of new
pictures. Pictures are named by content hash, so these outlive a rewritten file table.

Files, in <cache>.snapshots/: <key>.files.npz, <key>.nearest.npz, <key>.candidates.npz, and
<key>.kp-<stamp>.faiss with its labels in <key>.kp-<stamp>.npz (and its lists on disk in
<key>.kp-<stamp>.ivfdata, written first). Each is written under a temporary name
and renamed into place, the labels last, so a reader sees whole files or none; two processes can write
at once (the later rename wins). Only the latest of each kind is kept per key (a replaced keypoint index
for KEEP_REPLACED more, for the workers of a scan that saved it) and the KEEP most recently used keys.
A snapshot that cannot be read is ignored and rewritten; one that cannot be written is simply not kept.
A private cache (--no-cache) keeps no snapshot, but its crop stage writes the keypoint index in the
cache's temporary folder, for the workers to read.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from .cache import CODES, VERSION, Cache, hash_key
from .cachefile import snapshot_files
from .index import (
    DESC_FLAT_LIMIT,
    LINEAR_FROM,
    NPROBE,
    _linear,
    _threads,
    exhaustive_index,
    inverted_lists,
    layout_fits,
    lists_for,
    probes,
    training_size,
)

SEARCH_NPROBE = 32
"""Inverted lists a search probes per query descriptor (the crop stage, which searches every descriptor,
probes index.NPROBE). On the scale-5000 corpus (466,000 descriptors in 683 lists), for 20,000 sampled
descriptors, the nearest picture outside the query's own is the one an exhaustive search finds for
99.6% of them (98.7% at 16 lists, 99.9% at 48), as it was with 16 of 227 lists, in two thirds of the time.
With 16 of 227 lists, searching the corpus's 191 originals (80 with a crop) found exactly the same files
as exhaustively."""
NEARBY = 16
"""Extra neighbours asked of the saved index when some of its pictures are gone, to still have k of
those that remain."""
REBUILD_SHARE = 0.1
"""The saved keypoint index is rebuilt once the descriptors added or gone since are this share of it,
or, for the crop stage (whose queries include all of them), more than index.DESC_FLAT_LIMIT were added."""
KEEP = 4
"""Snapshots (libraries: sets of roots) kept per cache, the most recently used."""
KEEP_REPLACED = 600.0
"""Seconds a keypoint index replaced by a newer one is kept after it was made: another scan of the
library that saved it moments before may be handing it to its workers, which map it by its name."""
LABEL_BITS = 16
"""A descriptor's id in the saved index is its picture's label << LABEL_BITS | its rank in the picture."""
FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "HEIF", "AVIF")


def folder(cache: Cache) -> Path:
    """Where the snapshots of a cache file live."""
    return Path(f"{cache.path}.snapshots")


def _key(roots: list, cache_generation: str) -> str:
    roots = sorted(os.path.abspath(os.fspath(r)) for r in roots)
    text = json.dumps({"version": VERSION, "generation": cache_generation, "roots": roots})
    return hashlib.sha1(text.encode()).hexdigest()[:16]


@dataclass
class FileTable:
    """Every file of a library read at the last scan or search: identity and format, and its content's
    hash, packed codes, frame flag, size, detail and whether the cache holds its keypoints."""

    ids: np.ndarray  # (n, 4) int64: device, inode, size, mtime_ns
    fmt: np.ndarray  # (n,) uint8 index into FORMATS
    content: np.ndarray  # (n,) int64 row of the contents below
    hashes: np.ndarray  # (m,) S32
    codes: np.ndarray  # (m, CODES) uint64
    framed: np.ndarray  # (m,) bool
    size: np.ndarray  # (m, 2) int64: width, height
    keypoints: np.ndarray  # (m,) bool
    detail: np.ndarray  # (m,) float32 verify.detail of the content's thumbnail

    def __post_init__(self) -> None:
        self._keys = hash_key(self.ids)
        self._order = np.argsort(self._keys, kind="stable")
        self._sorted = self._keys[self._order]

    def whole(self) -> bool:
        """Whether the arrays agree with each other (what a damaged file that still loads would not)."""
        n, m = len(self.ids), len(self.hashes)
        return (
            self.ids.shape == (n, 4)
            and self.fmt.shape == self.content.shape == (n,)
            and self.codes.shape == (m, CODES)
            and self.framed.shape == self.keypoints.shape == self.detail.shape == (m,)
            and self.size.shape == (m, 2)
            and (n == 0 or (0 <= int(self.content.min()) and int(self.content.max()) < m))
            and (n == 0 or int(self.fmt.max()) < len(FORMATS))
        )

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The row of each identity (device, inode, size, mtime_ns), or -1 for one the table lacks."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1, 4)
        if len(ids) == len(self.ids) and np.array_equal(ids, self.ids):  # an unchanged library
            return np.arange(len(ids))
        if not len(self.ids) or not len(ids):
            return np.full(len(ids), -1, np.int64)
        pos = np.minimum(np.searchsorted(self._sorted, hash_key(ids)), len(self._sorted) - 1)
        rows = self._order[pos]
        return np.where((self.ids[rows] == ids).all(axis=1), rows, -1)

    def hash_of(self, rows: np.ndarray) -> list[str]:
        """The content hash of each file row, as text (made for the rows asked, kept by none: the text of
        every hash kept with the table was 81 bytes a file for the whole scan)."""
        return self.hashes[self.content[rows]].astype("U32").tolist()

    def formats(self, ids: np.ndarray) -> list[str | None]:
        rows = self.rows(ids)
        names = np.array((None,) + FORMATS, dtype=object)
        return names[np.where(rows >= 0, self.fmt[rows] + 1, 0)].tolist()


def known_formats(table: FileTable | None, cache: Cache):
    """walk.KnownFormats: from the table, and for the files it lacks from the cache."""

    def known(ids: np.ndarray) -> list[str | None]:
        if table is None:
            return cache.known_formats(ids)
        out = table.formats(ids)
        rest = [n for n, f in enumerate(out) if f is None] if None in out else []
        for n, f in zip(rest, cache.known_formats(ids[rest]) if rest else []):
            out[n] = f
        return out

    return known


@dataclass
class Nearest:
    """What the crop stage found for every keypoint of a library's pictures: the picture holding its
    nearest keypoint outside the picture's set of copies (index.nearest_other), and how far. The votes
    are counted from it, so that a rescan searches only the keypoints of pictures that are new or whose
    set of copies changed."""

    hashes: np.ndarray  # (m,) S32 the pictures
    counts: np.ndarray  # (m,) int64 keypoints of each, in the cache's order
    sets: np.ndarray  # (m,) int64 the set of copies each was in (a label: equal for pictures of one set)
    target: np.ndarray | None  # (sum of counts,) int32 row of the picture each keypoint votes for, -1 for none
    dist: np.ndarray | None  # (sum of counts,) uint8 distance to its keypoint; both None when not read
    pairs: np.ndarray  # (p, 2) int64 rows of a picture of each of two sets the votes paired

    def whole(self) -> bool:
        m = len(self.hashes)
        votes = self.target is None or (
            self.target.shape == self.dist.shape == (int(self.counts.sum()),)
            and (not len(self.target) or (-1 <= int(self.target.min()) and int(self.target.max()) < m))
        )
        return (
            self.counts.shape == self.sets.shape == (m,)
            and votes
            and self.pairs.ndim == 2
            and self.pairs.shape[1] == 2
            and (not len(self.pairs) or (0 <= int(self.pairs.min()) and int(self.pairs.max()) < m))
        )


@dataclass
class Pairs:
    """The candidate pairs of a library's pictures, found under the settings `key`."""

    key: np.ndarray  # 0-d str
    hashes: np.ndarray  # (m,) S32 the pictures
    rows: np.ndarray  # (p, 3) picture, picture (rows of hashes), orientation

    def whole(self) -> bool:
        rows = self.rows
        if rows.ndim != 2 or rows.shape[1] != 3:
            return False
        return not len(rows) or (int(rows.min()) >= 0 and int(rows[:, :2].max()) < len(self.hashes))


class Snapshots:
    """The snapshot of one library (a set of roots) in a cache. A private cache keeps none: only the
    crop stage's keypoint index is written, in the cache's temporary folder."""

    def __init__(self, cache: Cache, roots: list) -> None:
        self.cache = cache
        self.dir = folder(cache)
        self.kept = cache.persistent
        self.key = _key(roots, cache.generation())
        self.state = "missing" if self.kept else "none"
        """What became of the file table: "none" (no cache is kept), "missing" or "unreadable" (then
        "written"), "loaded" (then "used" when it held exactly the files read, else "updated")."""
        self.library: np.ndarray | None = None
        """Identities of the library's own files, when others are read with it (a search's queries)."""
        self._current: FileTable | None = None
        """The table of the files read now, once update() knows it."""

    def _path(self, name: str) -> Path:
        return self.dir / f"{self.key}.{name}"

    def _load(self, name: str, kind, skip: tuple[str, ...] = ()):
        """The dataclass of arrays `kind` saved as `name` (_save), its fields `skip` not read (None);
        raises when missing or damaged."""
        with np.load(self._path(name)) as z:
            return kind(**{field: None if field in skip else z[field] for field in kind.__dataclass_fields__})

    def _save(self, name: str, table, **arrays) -> None:
        """A dataclass of arrays written as `name`, with `arrays` in place of some of its fields."""
        arrays = {field: getattr(table, field) for field in table.__dataclass_fields__} | arrays
        _write(self._path(name), lambda tmp: np.savez(tmp, **arrays))

    # --- the file table ---

    def table(self) -> FileTable | None:
        """The library's saved file table, or None (no snapshot, unreadable, or another layout); read once."""
        if not hasattr(self, "_table"):
            self._table = self._read_table()
        return self._table

    def _read_table(self) -> FileTable | None:
        if not self.kept:
            return None
        try:
            table = self._load("files.npz", FileTable)
            if not table.whole():
                raise ValueError("inconsistent arrays")
            self.state = "loaded"
        except FileNotFoundError:
            return None
        except Exception:  # damaged, or written by another layout: rewritten after this read
            self.state = "unreadable"
            return None
        try:
            os.utime(self._path("files.npz"))  # recently used, for pruning
        except OSError:
            pass
        return table

    def update(self, table, rows, ids, library, store, need_kp: bool, changed: list[int]) -> None:
        """After a library was read (pipeline.read_library; `rows` its files' rows in `table`): write
        the table anew unless it held exactly the files read."""
        if not self.kept:
            return
        files, images = library.files, np.asarray(library.images, dtype=np.int64)
        rep = np.arange(len(files))
        if library.copy_of:
            rep[list(library.copy_of)] = list(library.copy_of.values())
        image_row = np.full(len(files), -1, np.int64)
        image_row[images] = np.arange(len(images))
        ok = image_row[rep] >= 0
        ok[changed] = False
        if self.library is not None:  # a query outside the library is not recorded as one of its files
            ok &= np.isin(hash_key(ids), hash_key(self.library))
        if table is not None and len(table.ids) == int(ok.sum()) and bool((rows[ok] >= 0).all()):
            self.state, self._current = "used", table
            return
        code = {name: n for n, name in enumerate(FORMATS)}
        fmt = np.array([code.get(f.format, 255) for f in files], dtype=np.uint8)
        ok &= fmt != 255
        keypoints = np.full(len(images), need_kp)
        if table is not None:  # what the old table knew of a content's keypoints still holds
            old = np.flatnonzero(ok & (rows >= 0))
            keypoints[image_row[rep[old]]] |= table.keypoints[table.content[rows[old]]]
        hashes = np.array(store.hashes_of(library.images), dtype="S32")
        self._current = FileTable(
            ids=ids[ok],
            fmt=fmt[ok],
            content=image_row[rep[ok]],
            hashes=hashes,
            codes=np.asarray(library.codes, dtype=np.uint64).reshape(-1, CODES),
            framed=np.asarray(library.framed, dtype=bool),
            size=store.sizes(library.images),
            keypoints=keypoints,
            detail=_details(table, hashes, store.cache).astype(np.float32),  # the old table's, if it held them
        )
        self.save_table(self._current)
        self.state = "written" if self.state in ("missing", "unreadable") else "updated"

    def details(self, hashes: list[str]) -> np.ndarray:
        """Each content's detail (verify.detail), from the file table update() left where it holds the
        content, else from the cache: reading 100,000 from the cache took 1.3 s of a rescan, 11.6 s with a
        cold page cache (their rows hold thumbnails and descriptors)."""
        return _details(self._current, np.array(hashes, dtype="S32"), self.cache)

    def save_table(self, table: FileTable) -> None:
        if not self.kept:
            return
        self._save("files.npz", table)
        self._prune()

    def _prune(self) -> None:
        """Keep the KEEP most recently used libraries, and no temporary file left by a crash."""
        try:
            ours = snapshot_files(self.cache.path)  # only those: the folder may hold a person's files
            names = [p for p in ours if not p.name.startswith(".")]
            tables = sorted((p for p in names if p.name.endswith(".files.npz")), key=_mtime, reverse=True)
            keep = {p.name.split(".")[0] for p in tables[:KEEP]}
            for p in names:
                if p.name.split(".")[0] not in keep:
                    p.unlink(missing_ok=True)
            for p in ours:
                if p.name.startswith(".") and time.time() - _mtime(p) > 3600:
                    p.unlink(missing_ok=True)
        except OSError:
            pass

    # --- the keypoint index ---

    def keypoints(
        self, images: list[int], hashes: list[str], every: bool = False, threads: int = 1
    ) -> "KeypointIndex | None":
        """An index of the keypoints of these images (content `hashes`), answering with image indices;
        None when fewer than two have any. Built from the saved one when there is one, on `threads`
        threads. `every`: the caller searches every keypoint (the crop stage), so inverted lists pay
        even when not kept."""
        saved = self._load_keypoints() if self.kept else None
        keep = _writable(self.dir)
        lists = (self.kept and keep) or every  # inverted lists pay for a few queries only when kept
        stamp = f"kp-{time.time_ns():020d}-{uuid.uuid4().hex[:6]}"
        lists_at = self._path(f"{stamp}.ivfdata").absolute() if keep else None
        try:
            index = KeypointIndex.of(saved, images, hashes, self.cache, keep, lists, every, threads, lists_at)
        except (OSError, RuntimeError):  # the saved index went away (pruned by another search) or broke, or
            if saved is None and lists_at is None:  # its lists could not be written (a full disk): in memory
                raise
            index = KeypointIndex.of(None, images, hashes, self.cache, keep, lists, every, threads)
        if index is not None and index.rebuilt is not None and keep:
            index.path = self._save_keypoints(*index.rebuilt, stamp)
            index.rebuilt = None
        return index

    def _load_keypoints(self):
        try:
            labels = sorted(self.dir.glob(f"{self.key}.kp-*.npz"))
            if not labels:
                return None
            with np.load(labels[-1]) as z:
                hashes, counts = z["hashes"], z["counts"]
            path = labels[-1].with_suffix(".faiss")
            return _mapped(path), hashes, counts, path
        except Exception:  # gone meanwhile (pruned by another process), damaged: rebuilt
            return None

    def _save_keypoints(self, index, hashes: np.ndarray, counts: np.ndarray, stamp: str) -> Path | None:
        """The index written beside its labels (and its lists, when on disk); its path, None when it
        could not be written."""
        path = self._path(f"{stamp}.faiss")
        if not _write(path, lambda tmp: faiss.write_index_binary(index, str(tmp))):
            return None
        if not _write(self._path(f"{stamp}.npz"), lambda tmp: np.savez(tmp, hashes=hashes, counts=counts)):
            return None
        try:
            for old in self.dir.glob(f"{self.key}.kp-*"):
                older = old.name.split(".")[1]
                if older < stamp and time.time() - int(older.split("-")[1]) / 1e9 > KEEP_REPLACED:
                    old.unlink(missing_ok=True)
        except (OSError, ValueError, IndexError):  # ValueError, IndexError: a name not of ours
            pass
        return path

    # --- the candidate pairs ---

    def candidates(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(the pictures' content hashes, (pair, 3) rows: picture, picture, orientation) of the candidate
        pairs saved under these settings (`key`), or None."""
        if not self.kept:
            return None
        try:
            table = self._load("candidates.npz", Pairs)
        except Exception:  # missing, damaged: every pair is searched
            return None
        return (table.hashes, table.rows.astype(np.int64)) if str(table.key) == key and table.whole() else None

    def save_candidates(self, key: str, hashes: np.ndarray, rows: np.ndarray) -> None:
        if self.kept:
            self._save("candidates.npz", Pairs(np.array(key), hashes, rows), rows=rows.astype(np.int32))

    # --- what the crop stage found ---

    def nearest(self, votes: bool = True) -> Nearest | None:
        """The crop stage's saved Nearest table, or None (none kept, unreadable or inconsistent). Without
        `votes`, its target and dist are not read (None): they are 5 bytes a keypoint, 48 MB at 100,000
        photos, which a rescan of an unchanged library read and checked for nothing (0.12 s)."""
        if not self.kept:
            return None
        try:
            table = self._load("nearest.npz", Nearest, () if votes else ("target", "dist"))
            return table if table.whole() else None
        except Exception:  # missing, damaged, another layout: the crop stage searches every keypoint
            return None

    def save_nearest(self, table: Nearest) -> None:
        if self.kept:  # the targets are int32 rows: 5 bytes a keypoint with the distance
            self._save("nearest.npz", table)


def _details(table: FileTable | None, wanted: np.ndarray, cache: Cache) -> np.ndarray:
    """Each content's detail (`wanted`: S32 hashes): the table's where it holds the content, else the
    cache's."""
    detail = np.full(len(wanted), np.inf)
    known = np.zeros(len(wanted), bool)
    if table is not None:
        at, known = lookup(wanted, np.arange(len(wanted)), table.hashes)
        detail[at[at >= 0]] = table.detail[at >= 0]
    rest = np.flatnonzero(~known)
    if len(rest):
        detail[rest] = cache.details(wanted[rest].astype("U32").tolist())
    return detail


def _writable(folder: Path) -> bool:
    """Whether files can be written in `folder` (or made, with it)."""
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return os.access(folder, os.W_OK)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _write(path: Path, write) -> bool:
    """write(a temporary path) beside `path`, then rename it into place; False when that failed."""
    tmp = path.with_name(f".{uuid.uuid4().hex[:8]}.{path.name}")  # same suffix: np.savez adds none
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
        return True
    except (OSError, RuntimeError):  # a full or read-only disk (FAISS raises RuntimeError)
        tmp.unlink(missing_ok=True)
        return False


class KeypointIndex:
    """Nearest keypoint descriptors among a library's pictures, by image index: a saved index (its
    pictures that are gone left out of its answers) and an exhaustive one of the pictures it lacks.
    Pickled for a worker process, it names its saved file, which the worker maps: the workers and the
    page cache then share one copy (a whole copy in each worker was 384 MB at 100,000 photos), and
    the lists, searched in the order of the queries' nearest list, are read as fast (60,000 keypoints
    in 0.77-0.86 s mapped, 0.87-1.05 s read whole, on scale5000's index; 2.1-2.3 s either way at
    100,000 photos)."""

    def __init__(self, base, label_image: np.ndarray, gone: bool, delta, delta_image: np.ndarray, delta_rank) -> None:
        self.base, self.label_image, self.gone = base, label_image, gone
        self.delta, self.delta_image, self.delta_rank = delta, delta_image, delta_rank
        self.path: Path | None = None
        """The file `base` was read from or saved to; None for one only in memory."""
        self.rebuilt = None
        """(index, hashes, counts) to save, when this one was (re)built."""
        self.how = "saved" if base is not None else "exhaustive"
        """"saved" (read from the snapshot, with `delta` beside it for pictures added), "built" (now, and
        saved), "rebuilt" (from the saved one, past REBUILD_SHARE) or "exhaustive" (nothing kept)."""

    def __getstate__(self) -> dict:
        if self.base is not None and self.path is None:
            raise ValueError("an index only in memory is not sent to another process")
        state = dict(self.__dict__, base=None, rebuilt=None)
        if self.delta is not None:
            state["delta"] = faiss.serialize_index_binary(self.delta)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.path is not None:
            self.base = _mapped(self.path)
        if self.delta is not None:
            self.delta = _fast(faiss.deserialize_index_binary(self.delta))

    @classmethod
    def of(
        cls,
        saved,
        images: list[int],
        hashes: list[str],
        cache: Cache,
        keep: bool,
        lists: bool,
        every: bool,
        threads: int = 1,
        lists_at: Path | None = None,
    ) -> "KeypointIndex | None":
        """The index for these images (content `hashes`): the saved one (base, labels, counts, path)
        with an exhaustive one of the pictures it lacks, or, past REBUILD_SHARE (or, for `every`
        keypoint searched, past index.DESC_FLAT_LIMIT added) or without one, a new one to save
        (`rebuilt`, built on `threads` threads) when it can be kept (`keep`). Without `lists`, one
        exhaustive index, not saved. Linear lists are kept on disk, in the file `lists_at` (_on_disk),
        when it is given."""
        wanted = np.array(hashes, dtype="S32")
        image_of = np.asarray(images, dtype=np.int64)
        if saved is None:
            sizes = cache.descriptor_counts(hashes)
            if len(np.unique(image_of[sizes > 0])) < 2:
                return None
            if not lists:  # a few queries and nothing kept: one exhaustive index, as cheap to build as to search
                data = cache.descriptors(hashes, sizes)[0]
                return cls(None, np.zeros(0, np.int64), False, *_flat(data, image_of, sizes))
            index = _build(cache, hashes, sizes, threads, lists_at)
            out = cls(index, image_of, False, None, np.zeros(0, np.int64), None)
            out.rebuilt, out.how = (index, wanted, sizes), "built"
            return out
        base, labels, counts, path = saved
        label_image, matched = lookup(wanted, image_of, labels)
        new = ~matched
        added = [h for h, n in zip(hashes, new) if n]
        new_sizes = cache.descriptor_counts(added)  # read only if they are to be added: not for a build anew
        n_new = int(new_sizes.sum())
        gone = (label_image < 0) & (counts > 0)
        alive = np.concatenate([label_image[counts > 0], image_of[new][new_sizes > 0]])
        alive = alive[alive >= 0]
        if not len(alive) or alive.min() == alive.max():  # fewer than two pictures with keypoints
            return None
        small = int(counts[gone].sum()) + n_new <= REBUILD_SHARE * max(int(counts.sum()), 1)
        if not keep or (small and not (every and n_new > DESC_FLAT_LIMIT)):
            new_data = cache.descriptors(added, new_sizes)[0]
            out = cls(base, label_image, bool(gone.any()), *_flat(new_data, image_of[new], new_sizes))
            out.path = path
            return out
        total = int(counts[~gone & (label_image >= 0)].sum()) + n_new
        on_disk = isinstance(base, faiss.IndexBinaryIVF) and _linear(base)  # read whole before, on disk from now
        dead = int(counts[gone].sum()) > REBUILD_SHARE * int(counts.sum())
        if not layout_fits(base, total) or (on_disk and dead):
            # built anew: with lists for the library it has become, or without the dead of its lists on disk
            return cls.of(None, images, hashes, cache, keep, lists, every, threads, lists_at)
        # Rebuilt from the saved index: its lists kept, the new pictures added, the pictures gone removed
        # (from lists on disk, which are only read, they are left: gone pictures' keypoints, not counted
        # as alive, until they are REBUILD_SHARE of them).
        new_data = cache.descriptors(added, new_sizes)[0]
        first = len(labels)
        new_ids = _ids(np.arange(first, first + len(new_sizes)), new_sizes)
        if on_disk:
            empty = _mapped(path)
            _own(empty, faiss.ArrayInvertedLists(empty.nlist, empty.code_size), 0)
            index = _on_disk(empty, [(new_data, new_ids)], lists_at, threads, base)
        else:
            index = faiss.read_index_binary(str(path))
            if gone.any():
                dead_ids = _ids(np.flatnonzero(gone), counts[gone])
                with _threads(threads):
                    index.remove_ids(faiss.IDSelectorBatch(len(dead_ids), faiss.swig_ptr(dead_ids)))
            if len(new_data):
                with _threads(threads):
                    index.add_with_ids(new_data, new_ids)
        labels = np.concatenate([np.where(gone | (label_image < 0), b"", labels), wanted[new]]).astype("S32")
        counts = np.concatenate([counts if on_disk else np.where(label_image < 0, 0, counts), new_sizes])
        label_image = np.concatenate([label_image, image_of[new]])
        out = cls(index, label_image, on_disk and bool(gone.any()), None, np.zeros(0, np.int64), None)
        out.rebuilt, out.how = (index, labels, counts), "rebuilt"
        return out

    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances, image index) of the k nearest descriptors of each of x; -1 where there are fewer."""
        dist, image, _ = self.neighbours(x, k, SEARCH_NPROBE)
        return dist, image

    def neighbours(self, x: np.ndarray, k: int, nprobe: int = NPROBE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(distances, image index, rank of the descriptor in its image) of the k nearest descriptors of
        each of x, `nprobe` inverted lists probed; image -1 where there are fewer."""
        parts = []
        with _threads():
            if self.base is not None:
                if isinstance(self.base, faiss.IndexBinaryIVF):
                    dist, ids = _search_lists(self.base, x, k + NEARBY if self.gone else k, nprobe)
                else:
                    dist, ids = self.base.search(x, k + NEARBY if self.gone else k)
                image = np.where(ids >= 0, self.label_image[np.maximum(ids, 0) >> LABEL_BITS], -1)
                rank = ids & ((1 << LABEL_BITS) - 1)
                if self.gone:  # the first k of the pictures still there
                    keep = np.argsort(image < 0, axis=1, kind="stable")[:, :k]
                    dist, image, rank = (np.take_along_axis(a, keep, 1) for a in (dist, image, rank))
                parts.append((dist, image, rank))
            if self.delta is not None:
                dist, ids = self.delta.search(x, k)
                at = np.maximum(ids, 0)
                parts.append((dist, np.where(ids >= 0, self.delta_image[at], -1), self.delta_rank[at]))
        dist, image, rank = (np.concatenate(p, axis=1) for p in zip(*parts))
        dist = np.where(image >= 0, dist, np.iinfo(np.int32).max)
        if len(parts) > 1:
            order = np.argsort(dist, axis=1, kind="stable")[:, :k]
            dist, image, rank = (np.take_along_axis(a, order, 1) for a in (dist, image, rank))
        return dist, image, rank


def _search_lists(index, x: np.ndarray, k: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    """index.search(x, k) of an inverted-lists index, the same answers, with the queries taken in the
    order of their nearest list, so that a list is read for many queries in a row: on scale5000's
    465,000 descriptors, blocks of 16,384 queries took 15% less time (none less at 100,000 pictures,
    whose longer lists are read as fast either way)."""
    index.nprobe = nprobe = min(probes(index, nprobe), index.nlist)  # FAISS reads the lists' rows as this wide
    coarse_dist, coarse = index.quantizer.search(x, nprobe)
    order = np.argsort(coarse[:, 0], kind="stable")
    dist, ids = index.search_preassigned(x[order], k, coarse[order], coarse_dist[order])
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return dist[back], ids[back]


def _mapped(path: Path):
    """The index saved at `path`, its lists mapped, not read: from the file beside it when they were
    kept on disk (FAISS crashes searching such an index read with IO_FLAG_MMAP), else from its own."""
    if path.with_suffix(".ivfdata").exists():
        return _fast(faiss.read_index_binary(str(path), faiss.IO_FLAG_READ_ONLY))
    return _fast(faiss.read_index_binary(str(path), faiss.IO_FLAG_MMAP))


def _fast(index):
    """An index as read from a file, set to search as it was built (a search setting is not saved)."""
    if isinstance(index, faiss.IndexBinaryIDMap):
        faiss.downcast_IndexBinary(index.index).use_heap = False  # several times faster for small k
    return index


def _flat(data: np.ndarray, images: np.ndarray, sizes: np.ndarray):
    """An exhaustive index of these descriptors, `sizes` of them for each of `images` (None for none),
    and the image and the rank in it of each descriptor."""
    owner = np.repeat(images, sizes)
    if not len(data):
        return None, owner, ranks(sizes)
    index = exhaustive_index()
    with _threads():
        index.add(np.ascontiguousarray(data))
    return index, owner, ranks(sizes)


def lookup(wanted: np.ndarray, image_of: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the image whose hash is each label, -1 for none; whether each wanted hash is a label's)."""
    label_image = np.full(len(labels), -1, np.int64)
    matched = np.zeros(len(wanted), bool)
    if not len(wanted) or not len(labels):
        return label_image, matched
    keys = _key64(wanted)
    order = np.argsort(keys, kind="stable")
    pos = order[np.minimum(np.searchsorted(keys[order], _key64(labels)), len(order) - 1)]
    hit = wanted[pos] == labels
    label_image[hit] = image_of[pos[hit]]
    matched[pos[hit]] = True
    return label_image, matched


def _key64(hashes: np.ndarray) -> np.ndarray:
    """One uint64 per 32-character content hash, for sorting and looking up (sorting the text is slower)."""
    words = np.ascontiguousarray(hashes, dtype="S32").view(np.uint64).reshape(-1, 4)
    mixed = words[:, 0] ^ (words[:, 1] * np.uint64(0x9E3779B97F4A7C15)) ^ (words[:, 2] * np.uint64(0xC2B2AE3D27D4EB4F))
    return mixed ^ (words[:, 3] * np.uint64(0x165667B19E3779F9))


def _ids(labels: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The ids of the descriptors of these labels, `sizes` of them each: label << LABEL_BITS | rank."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if len(sizes) and int(sizes.max()) >= 1 << LABEL_BITS:
        raise ValueError("too many keypoints in one picture for the keypoint index")
    return (np.repeat(np.asarray(labels, dtype=np.int64), sizes) << LABEL_BITS) | ranks(sizes)


def ranks(sizes: np.ndarray) -> np.ndarray:
    """Each descriptor's rank in its picture, for pictures of `sizes` descriptors stacked in order."""
    sizes = np.asarray(sizes, dtype=np.int64)
    return np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)


def slots(first: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Where each descriptor of pictures of `sizes` descriptors is, their first at `first`."""
    return np.repeat(first, sizes) + ranks(sizes)


def in_parts(sizes: np.ndarray, block: int) -> list[tuple[int, int]]:
    """(lo, hi) slices of pictures having `sizes` descriptors each, whole pictures, about `block`
    descriptors a slice: what is read from the cache at a time."""
    ends = np.cumsum(sizes)
    cuts = np.searchsorted(ends, np.arange(block, int(ends[-1]) if len(ends) else 0, block), side="right").tolist()
    return [(lo, hi) for lo, hi in zip([0, *cuts], [*cuts, len(sizes)]) if hi > lo]


ADD_BLOCK = 1 << 20
"""Descriptors added to an index (and read from the cache, for linear lists) at a time: 32 MB."""
ROOM = 64 << 20
"""Bytes left free on the disk beyond a keypoint index's lists, or they are not written there."""


def _build(cache: Cache, hashes: list[str], sizes: np.ndarray, threads: int = 1, lists_at: Path | None = None):
    """The index saved for a library of these contents (`sizes` descriptors each): ids label <<
    LABEL_BITS | rank, labels the rows of its hashes; trained and filled on `threads` threads. Linear
    lists are trained on whole pictures drawn at random and filled ADD_BLOCK descriptors at a time:
    all 9.6 million of 100,000 photos held at once beside the index made the main process peak at
    1.16 GB. They are kept on disk, in the file `lists_at`, when it is given (_on_disk)."""
    ids = _ids(np.arange(len(sizes)), sizes)
    n = int(sizes.sum())
    if n < LINEAR_FROM:
        data = cache.descriptors(hashes, sizes)[0]
        # the Python wrapper of IndexBinaryIDMap keeps the inner index alive
        index = inverted_lists(data, n, threads) if n > DESC_FLAT_LIMIT else faiss.IndexBinaryIDMap(exhaustive_index())
        parts = [(data, ids)]
    else:
        drawn = np.random.default_rng(0).permutation(len(sizes))
        some = np.sort(drawn[: int(np.searchsorted(np.cumsum(sizes[drawn]), training_size(lists_for(n)))) + 1])
        index = inverted_lists(cache.descriptors([hashes[i] for i in some], sizes[some])[0], n, threads)
        ends = np.cumsum(sizes)
        parts = (
            (cache.descriptors(hashes[lo:hi], sizes[lo:hi])[0], ids[ends[lo] - sizes[lo] : ends[hi - 1]])
            for lo, hi in in_parts(sizes, ADD_BLOCK)
        )
        if lists_at is not None:
            return _on_disk(index, parts, lists_at, threads)
    with _threads(threads):
        for data, part_ids in parts:
            for start in range(0, len(data), ADD_BLOCK):
                index.add_with_ids(data[start : start + ADD_BLOCK], part_ids[start : start + ADD_BLOCK])
    return index


def _on_disk(empty, parts, lists_at: Path, threads: int = 1, kept=None):
    """The trained index `empty` holding the lists of the index `kept` (only read) and `parts`
    ((descriptors, ids) pairs), its lists kept in the file `lists_at` (FAISS OnDiskInvertedLists) and
    mapped. Each part is added to an empty copy, written beside it; all are then merged into the file
    at once, so no more than a part is ever in memory: the lists of 100,000 photos' 9.6 million
    descriptors held in memory were 384 MB of the main process (40 bytes each), 3.8 GB at a million.
    FAISS writes the file through a map of it, where a full disk would kill the process (SIGBUS), not
    raise: OSError when the disk has no room for it, and the caller builds the index in memory."""
    blank = faiss.serialize_index_binary(empty)
    lists_at.parent.mkdir(parents=True, exist_ok=True)
    shards, mapped = [], []
    try:
        for data, ids in parts:
            shard = faiss.deserialize_index_binary(blank)
            with _threads(threads):
                for start in range(0, len(data), ADD_BLOCK):
                    shard.add_with_ids(data[start : start + ADD_BLOCK], ids[start : start + ADD_BLOCK])
            shards.append(lists_at.with_name(f".{lists_at.name}.{len(shards)}"))  # a crash's are pruned
            faiss.write_index_binary(shard, str(shards[-1]))
            del shard
        mapped = [faiss.read_index_binary(str(p), faiss.IO_FLAG_MMAP) for p in shards]
        entries = sum(m.ntotal for m in mapped) + (kept.ntotal if kept is not None else 0)
        if shutil.disk_usage(lists_at.parent).free < entries * (empty.code_size + 8) + ROOM:
            raise OSError(errno.ENOSPC, "no room on the disk for the keypoint index", str(lists_at))
        sources = faiss.InvertedListsPtrVector()
        for lists in ([kept.invlists] if kept is not None else []) + [m.invlists for m in mapped]:
            sources.push_back(lists)
        merged = faiss.OnDiskInvertedLists(empty.nlist, empty.code_size, str(lists_at))
        with _quiet():  # FAISS prints the file's new size
            total = merged.merge_from_multiple(sources.data(), sources.size(), False, False)
    except BaseException:
        lists_at.unlink(missing_ok=True)
        raise
    finally:
        del mapped
        for p in shards:
            p.unlink(missing_ok=True)
    index = faiss.deserialize_index_binary(blank)
    _own(index, merged, total)
    return index


def _own(index, lists, total: int) -> None:
    """`index` given the inverted lists `lists` (which it deletes with itself) holding `total` entries."""
    index.replace_invlists(lists, True)
    lists.this.disown()
    index.ntotal = total


@contextmanager
def _quiet():
    """What C code prints on stdout meanwhile is dropped (the process's stdout is redirected, and C's
    buffer flushed before it is put back)."""
    if sys.stdout is not None:  # None without a console (pythonw)
        sys.stdout.flush()
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        yield
    finally:
        try:
            ctypes.CDLL(None).fflush(None)
        except (OSError, TypeError):  # no C library to name this way (Windows): its buffer is flushed later
            pass
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)
