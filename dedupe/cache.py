"""The feature cache: an SQLite database of what reading a file found, so an unchanged file is never
decoded again, and the store the scan's workers read thumbnails from.

`files` maps a file's identity (device, inode, size, mtime_ns) to its content hash, so an unchanged file
is not even read. `images` maps a content hash to its info and features, so a renamed, moved or copied
file is recognised from its bytes (hashed, not decoded), and a JPEG whose metadata alone changed from
its coded picture (exact.coded_picture; `same_picture`). `verdicts` keeps what verification said about
a pair of contents under given settings.
`decisions` holds what a person decided about groups (dedupe.decisions): not derived data, so it is
carried over when the cache is rebuilt. Everything is keyed by content, never by path. WAL mode:
readers (the workers) never wait for the writer (the main process), and two scans can share one
cache. A damaged cache, or one written by another version, is set aside under a free name and rebuilt,
with a warning. A file that is not an SQLite database is never opened, set aside or deleted as a cache
(CacheError): it is most likely a photo given as the cache by mistake.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import sqlite3
import tempfile
import time
import uuid
from array import array
from collections import OrderedDict
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np

from .cachefile import SQLITE_HEADER, CacheError, default_path  # noqa: F401 - the cache's API, kept here
from .cachefile import (
    FILE_NAME,
    decision_rows,
    drop_snapshots,
    is_dedupe_cache,
    refuse_foreign,
    remembered,
    snapshot_files,
)
from .model import Analysed, Features, FileRecord, ImageInfo

VERSION = 18
"""Bumped whenever decoding or features change what they compute: a cache written by another version is
rebuilt. A change of verification only needs its stored verdicts set aside (match.RULES)."""
BATCH = 500
"""Rows per lookup query (SQLite's limit on variables is 32766) and per write transaction."""
COMMIT_EVERY = 2.0
"""Seconds between commits while writing: an interrupted scan keeps what it computed until then."""
LOADED = 512
"""Images kept decoded from the cache in a process (thumbnail + keypoints: about 16 KB each)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files(
    device INTEGER NOT NULL, inode INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    content_hash TEXT NOT NULL, format TEXT, path BLOB, PRIMARY KEY(device, inode)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS images(
    content_hash TEXT PRIMARY KEY, info TEXT NOT NULL, codes BLOB NOT NULL, box TEXT, detail REAL NOT NULL,
    thumb BLOB NOT NULL, thumb_w INTEGER NOT NULL, kp_xy BLOB, kp_desc BLOB, written REAL, picture TEXT);
CREATE TABLE IF NOT EXISTS verdicts(
    first TEXT NOT NULL, second TEXT NOT NULL, key TEXT NOT NULL, evidence TEXT,
    PRIMARY KEY(first, second, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS decisions(hashes TEXT PRIMARY KEY, kind TEXT NOT NULL, decided TEXT NOT NULL);
"""
# `decisions` came after VERSION 3 was set: CREATE TABLE IF NOT EXISTS adds it to a cache on open; so
# did files.path, images.written and images.picture (with its index), added by _connect (a file row without
# a path is never pruned, an image without a picture key never stands in for another). Paths
# are stored as the file system's bytes: a name that is not valid UTF-8 cannot be SQLite text.
CODES = 10
"""Codes stored per image: pHash, dHash, pHash inside the frame (0 without one), 7 turned pHashes."""


def settings_key(**values) -> str:
    """A short digest of the settings a stored verdict depends on, with the cache version."""
    text = json.dumps({"version": VERSION, **values}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def pack_codes(f: Features) -> bytes:
    turned = list(f.turned) + [0] * (CODES - 3 - len(f.turned))
    return np.array([f.phash, f.dhash, f.phash_trim or 0, *turned], dtype=np.uint64).tobytes()


_PUT_IMAGE = "INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_COPY_IMAGE = (
    "INSERT OR REPLACE INTO images SELECT ?, ?, codes, box, detail, thumb, thumb_w, kp_xy, kp_desc, ?, picture"
    " FROM images WHERE content_hash=?"
)
ORPHAN_AGE = 3600.0
"""Seconds a stored content that no file refers to is kept: another scan running at the same time may
have stored it and not yet recorded its file."""


class Cache:
    """One process's connection to a cache file.

    `Cache(path)` opens (creating or rebuilding) the file for the main process; `Cache(path,
    worker=True)` is a worker's connection to a file the main process opened. `Cache(None)` is a private
    cache in a temporary folder, removed by close(): what `--no-cache` uses, so the pipeline has a
    single path. Writes are buffered and written in short transactions, so that no connection keeps
    the others waiting for the write lock.
    """

    def __init__(self, path: str | os.PathLike | None, worker: bool = False) -> None:
        self.warnings: list[str] = []
        self._tmpdir = None
        if path is None:
            self._tmpdir = tempfile.mkdtemp(prefix="dedupe-cache-")
            path = Path(self._tmpdir) / FILE_NAME
        self.path = Path(path)
        self.worker = worker
        self.persistent = self._tmpdir is None
        self._rows: dict[str, list[tuple]] = {}
        self._pending = 0
        self._last_commit = time.monotonic()
        self._loaded: OrderedDict[str, tuple] = OrderedDict()
        self._recorded = False  # file rows written: a content may have lost its last file (prune)
        if worker:
            self.db = sqlite3.connect(self.path, timeout=60)
        else:
            self.db = self._open_writable()

    def _open_writable(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            refuse_foreign(self.path)
            return self._connect()
        except _Unusable as exc:
            drop_snapshots(self.path)  # derived from the old file
            old = _set_aside(self.path)
            self.warnings.append(
                f"feature cache {self.path} {exc}; it was set aside and is rebuilt (the old file is {old})"
            )
            db = self._connect()
            _take_decisions(db, old)
            return db
        except (OSError, sqlite3.Error) as exc:  # a read-only or full disk: scan without keeping anything
            self.warnings.append(f"cannot use the feature cache {self.path} ({exc}); nothing is kept this time")
            given = self.path
            self._tmpdir = tempfile.mkdtemp(prefix="dedupe-cache-")
            self.path, self.persistent = Path(self._tmpdir) / FILE_NAME, False
            db = self._connect()
            if not _take_decisions(db, given):  # what a person decided still holds, read from the file left alone
                self.warnings.append(f"the decisions {given} holds could not be read either")
            return db

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60)
        try:
            _wal(db)
            db.execute(f"PRAGMA synchronous={'NORMAL' if self._tmpdir is None else 'OFF'}")
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "meta" in tables:
                row = db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
                if row is None or row[0] != str(VERSION):
                    raise _Unusable(f"was written by another version ({row[0] if row else 'unknown'})")
            elif tables:
                raise _Unusable("is not a dedupe cache")
            with db:  # one transaction: a scan opening the new file at the same moment sees all of it or none
                db.executescript("BEGIN IMMEDIATE;" + _SCHEMA)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('version', ?)", (str(VERSION),))
                db.execute("INSERT OR IGNORE INTO meta VALUES ('generation', ?)", (uuid.uuid4().hex,))
                added = (("files", "path", "BLOB"), ("images", "written", "REAL"), ("images", "picture", "TEXT"))
                for table, column, kind in added:
                    if column not in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                db.execute("CREATE INDEX IF NOT EXISTS images_picture ON images(picture) WHERE picture IS NOT NULL")
        except sqlite3.DatabaseError as exc:
            db.close()
            if not any(word in str(exc) for word in DAMAGE):  # locked, full, read-only, an I/O error: not damage
                raise
            raise _Unusable(f"is damaged ({exc})") from None
        except _Unusable:
            db.close()
            raise
        return db

    def generation(self) -> str:
        """A token made when this cache file was created: what was derived from another file (a cleared
        or rebuilt cache), such as a library snapshot, does not apply to this one."""
        row = self.db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return row[0] if row else ""

    # --- reads (each first writes what is buffered, so a connection sees its own writes) ---

    def _files(
        self, identities: list[tuple[int, int]]
    ) -> dict[tuple[int, int], tuple[int, int, str, str | None, str | None]]:
        """(size, mtime_ns, content hash, format, path) recorded for these (device, inode)."""
        self.commit()
        out = {}
        by_device: dict[int, list[int]] = {}
        for device, inode in identities:
            by_device.setdefault(device, []).append(inode)
        for device, inodes in by_device.items():
            for start in range(0, len(inodes), BATCH):
                chunk = inodes[start : start + BATCH]
                for row in self.db.execute(
                    "SELECT inode, size, mtime_ns, content_hash, format, path FROM files WHERE device=? AND inode IN"
                    f" ({','.join('?' * len(chunk))})",
                    [device, *chunk],
                ):
                    out[(device, row[0])] = row[1:]
        return out

    def known_formats(self, identities) -> list[str | None]:
        """The recorded format of each (device, inode, size, mtime_ns) that is unchanged, None for the
        others (walk.KnownFormats)."""
        identities = np.asarray(identities, dtype=np.int64).reshape(-1, 4).tolist()
        rows = self._files([(d, i) for d, i, _, _ in identities])
        out: list[str | None] = [None] * len(identities)
        for n, (d, i, size, mtime) in enumerate(identities):
            hit = rows.get((d, i))
            if hit is not None and hit[:2] == (size, mtime) and hit[3]:
                out[n] = hit[3]
        return out

    def known_hashes(self, files: list[FileRecord]) -> dict[int, str]:
        """Content hashes of the files whose identity (device, inode, size, mtime_ns) is unchanged. A file
        found under another path than its row says (moved, or recorded before rows had one) gets its path
        recorded, for prune()."""
        rows = self._files([f.identity for f in files])
        out: dict[int, str] = {}
        for n, f in enumerate(files):
            hit = rows.get(f.identity)
            if hit is not None and hit[:2] == (f.size, f.mtime_ns):
                out[n] = hit[2]
                if hit[4] != (path := os.fsencode(f.path)):
                    self._put("UPDATE files SET path=? WHERE device=? AND inode=?", (path, *f.identity))
        return out

    def _each(self, hashes: Iterable[str], columns: str, cond: str = "", flush: bool = True) -> Iterator[tuple]:
        """(content hash, *columns) of the stored contents among these, a batch at a time; without `flush`,
        what is still buffered is not seen."""
        if flush:
            self.commit()
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), BATCH):
            chunk = unique[start : start + BATCH]
            marks = ",".join("?" * len(chunk))
            yield from self.db.execute(
                f"SELECT content_hash, {columns} FROM images WHERE content_hash IN ({marks}){cond}", chunk
            )

    @staticmethod
    def _with_keypoints(keypoints: bool) -> str:
        return " AND kp_desc IS NOT NULL" if keypoints else ""

    def have(self, hashes: Iterable[str], keypoints: bool) -> set[str]:
        """Which of these contents are stored (with keypoints, when they are needed). A worker asks this of
        every file it reads: the rows it still buffers are looked up here rather than committed first,
        which cost a transaction per file (4% of a cold scan's work)."""
        wanted = set(hashes)
        rows = self._rows.get(_PUT_IMAGE, ())
        buffered = {r[0] for r in rows if r[0] in wanted and (r[8] is not None or not keypoints)}  # r[8]: kp_desc
        rest = wanted - buffered
        return buffered | {h for h, _ in self._each(rest, "1", self._with_keypoints(keypoints), flush=False)}

    def same_picture(self, picture: str, keypoints: bool) -> list[tuple[str, ImageInfo, bytes, bool]]:
        """(content hash, info, packed codes, has a frame) of the stored contents whose coded picture
        (exact.coded_picture) is `picture` (with keypoints, when they are needed), those still buffered
        first."""
        rows = self._rows.get(_PUT_IMAGE, ())
        found = [(r[0], r[1], r[2], r[3]) for r in rows if r[10] == picture and (r[8] is not None or not keypoints)]
        found += self.db.execute(
            f"SELECT content_hash, info, codes, box FROM images WHERE picture=?{self._with_keypoints(keypoints)}",
            (picture,),
        ).fetchall()
        return [(h, ImageInfo(**json.loads(info)), codes, box is not None) for h, info, codes, box in found]

    def stored(self, hashes: list[str], keypoints: bool) -> dict[str, tuple[tuple[int, int], bytes, bool]]:
        """((width, height), packed codes, has a frame) of the stored contents among these (with keypoints,
        when they are needed): what a scan needs of an unchanged file, in one look-up per content and
        without parsing its info."""
        columns = "json_extract(info, '$.width'), json_extract(info, '$.height'), codes, box"
        return {
            h: ((w, ht), codes, box is not None)
            for h, w, ht, codes, box in self._each(hashes, columns, self._with_keypoints(keypoints))
        }

    def summaries(self, hashes: list[str]) -> dict[str, tuple[ImageInfo, bytes, bool]]:
        """(info, packed codes, has a frame) of stored contents: what the main process keeps per image."""
        return {
            h: (ImageInfo(**json.loads(info)), codes, box is not None)
            for h, info, codes, box in self._each(hashes, "info, codes, box")
        }

    def load(self, content_hash: str) -> tuple[ImageInfo, Features]:
        """Everything stored for a content (kept for the LOADED most recently used)."""
        hit = self._loaded.get(content_hash)
        if hit is not None:
            self._loaded.move_to_end(content_hash)
            return hit
        self.commit()
        row = self.db.execute(
            "SELECT info, codes, box, detail, thumb, thumb_w, kp_xy, kp_desc FROM images WHERE content_hash=?",
            (content_hash,),
        ).fetchone()
        if row is None:
            raise KeyError(content_hash)
        info, codes, box, detail, thumb, thumb_w, kp_xy, kp_desc = row
        c = [int(v) for v in np.frombuffer(codes, dtype=np.uint64)]
        feats = Features(
            c[0],
            c[1],
            np.frombuffer(thumb, dtype=np.uint8).reshape(-1, thumb_w),
            detail,
            tuple(json.loads(box)) if box else None,
            c[2] if box else None,
            tuple(c[3:]),
        )
        if kp_desc is not None:
            feats.kp_xy = np.frombuffer(kp_xy, dtype=np.float16).reshape(-1, 2)
            feats.kp_desc = np.frombuffer(kp_desc, dtype=np.uint8).reshape(-1, 32)
        hit = (ImageInfo(**json.loads(info)), feats)
        self._loaded[content_hash] = hit
        if len(self._loaded) > LOADED:
            self._loaded.popitem(last=False)
        return hit

    @staticmethod
    def _positions(hashes: list[str]) -> dict[str, list[int]]:
        """Where each content is in `hashes` (a content can be there more than once)."""
        where: dict[str, list[int]] = {}
        for n, h in enumerate(hashes):
            where.setdefault(h, []).append(n)
        return where

    def descriptor_counts(self, hashes: list[str]) -> np.ndarray:
        """How many keypoint descriptors each of these contents has, in order (none read)."""
        sizes = np.zeros(len(hashes), dtype=np.int64)
        where = self._positions(hashes)
        for h, length in self._each(hashes, "length(kp_desc)"):
            for n in where[h]:
                sizes[n] = (length or 0) // 32
        return sizes

    def descriptors(self, hashes: list[str], sizes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The keypoint descriptors of these contents stacked in one (n, 32) array, in order, and how
        many each has (`sizes`, when the caller has them from descriptor_counts). Read in two passes
        (sizes, then the bytes straight into the array), so a million descriptors are never held twice
        on their way into one array."""
        sizes = self.descriptor_counts(hashes) if sizes is None else sizes
        where = self._positions(hashes)
        ends = np.cumsum(sizes)
        data = np.empty((int(ends[-1]) if len(ends) else 0, 32), dtype=np.uint8)
        if not len(data):
            return data, sizes
        flat = memoryview(data).cast("B")  # slices of a memoryview take bytes by memcpy, no numpy per row
        bounds = list(zip(((ends - sizes) * 32).tolist(), (ends * 32).tolist()))
        for h, desc in self._each(hashes, "kp_desc"):
            for n in where[h]:
                start, stop = bounds[n]
                if stop > start:
                    flat[start:stop] = desc
        return data, sizes

    def details(self, hashes: list[str]) -> np.ndarray:
        """Each content's detail (verify.detail), in order; infinite for one not stored."""
        found = dict(self._each(hashes, "detail"))
        return np.array([found.get(h, np.inf) for h in hashes], dtype=np.float64)

    def verdicts(self, keys: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], dict | None]:
        """Stored verdicts for (first, second, settings key): evidence, or None for "not the same"."""
        self.commit()
        out = {}
        for start in range(0, len(keys), BATCH // 3):
            chunk = keys[start : start + BATCH // 3]
            rows = self.db.execute(
                "SELECT first, second, key, evidence FROM verdicts WHERE "
                + " OR ".join(["(first=? AND second=? AND key=?)"] * len(chunk)),
                [v for k in chunk for v in k],
            )
            for a, b, k, ev in rows:
                out[(a, b, k)] = json.loads(ev) if ev is not None else None
        return out

    def decisions(self) -> list[tuple[tuple[str, ...], str]]:
        """Every stored decision: (content hashes, sorted with repeats; kind)."""
        self.commit()
        return decision_rows(self.db)

    def put_file(self, f: FileRecord, content_hash: str) -> None:
        self._put(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
            (f.device, f.inode, f.size, f.mtime_ns, content_hash, f.format, os.fsencode(f.path)),
        )
        self._recorded = True

    def put_image(
        self, content_hash: str, info: ImageInfo, f: Features, keypoints: bool, picture: str | None = None
    ) -> None:
        self._put(
            _PUT_IMAGE,
            (
                content_hash,
                json.dumps(asdict(info)),
                pack_codes(f),
                json.dumps(list(f.box)) if f.box is not None else None,
                float(f.detail),
                np.ascontiguousarray(f.thumb, dtype=np.uint8).tobytes(),
                f.thumb.shape[1],
                np.ascontiguousarray(f.kp_xy, dtype=np.float16).tobytes() if keypoints else None,
                np.ascontiguousarray(f.kp_desc, dtype=np.uint8).tobytes() if keypoints else None,
                time.time(),
                picture,
            ),
        )

    def put_same_picture(self, content_hash: str, twin: str, info: ImageInfo) -> None:
        """Store a content with the features of `twin`, a stored content of the same coded picture, and
        its own `info`."""
        text = json.dumps(asdict(info))
        for r in self._rows.get(_PUT_IMAGE, ()):
            if r[0] == twin:
                self._put(_PUT_IMAGE, (content_hash, text, *r[2:9], time.time(), r[10]))
                return
        self._put(_COPY_IMAGE, (content_hash, text, time.time(), twin))

    def put_verdict(self, key: tuple[str, str, str], evidence: dict | None) -> None:
        self._put(
            "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?)",
            (*key, json.dumps(evidence) if evidence is not None else None),
        )

    def put_decision(self, hashes: tuple[str, ...], kind: str) -> None:
        """Store a decision at once (a person's work is never left in a buffer); the same set of
        contents decided again takes the new kind."""
        self.commit()
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO decisions VALUES (?, ?, ?)",
                (" ".join(sorted(hashes)), kind, datetime.now(timezone.utc).isoformat(timespec="seconds")),
            )

    def forget_decisions(self, hashes: tuple[str, ...]) -> int:
        """Drop every decision that covers a group with these contents; how many there were."""
        from .decisions import covers

        gone = [" ".join(d) for d, _ in self.decisions() if covers(d, hashes)]
        with self.db:
            self.db.executemany("DELETE FROM decisions WHERE hashes=?", [(h,) for h in gone])
        return len(gone)

    def _put(self, sql: str, row: tuple) -> None:
        self._rows.setdefault(sql, []).append(row)
        self._pending += 1
        if self._pending >= BATCH or time.monotonic() - self._last_commit > COMMIT_EVERY:
            self.commit()

    def prune(self, roots: list[str], walked: np.ndarray) -> int:
        """Forget the files once recorded under these roots (absolute paths) that are no longer there: a
        row whose identity (device, inode; `walked` holds those the scan walked, (n, 2)) the scan did not
        walk, and whose path is gone or now holds another file. Files left out by filters, unreadable
        folders and other roots keep their rows. When files were forgotten or recorded, the stored
        contents that no file refers to (stored more than ORPHAN_AGE ago) go too, with their verdicts.
        How many files were forgotten.

        The rows are read PRUNE_BLOCK at a time and checked against the walked identities as numbers:
        all rows at once, and a set of every identity walked, were the peak of a rescan of 100,000
        unchanged files (40 MB more)."""
        self.commit()
        seen = np.sort(hash_key(walked))
        gone = []
        sep = os.fsencode(os.sep)
        for root in map(os.fsencode, roots):
            below = root.rstrip(sep) + sep
            found = self.db.execute(
                "SELECT device, inode, path FROM files WHERE path=? OR (path>=? AND path<?)",
                (root, below, below[:-1] + bytes([sep[0] + 1])),
            )
            while rows := found.fetchmany(PRUNE_BLOCK):
                keys = hash_key(np.array([r[:2] for r in rows], dtype=np.int64))
                at = np.minimum(np.searchsorted(seen, keys), max(len(seen) - 1, 0))
                known = (seen[at] == keys).tolist() if len(seen) else [False] * len(rows)  # a collision: kept
                gone += [(d, i) for (d, i, path), k in zip(rows, known) if not k and _identity(path) != (d, i)]
        if not gone and not self._recorded:
            return 0
        with self.db:
            # the write lock first, waited for: a read that turned into a write after another scan's
            # commit would fail at once ("database is locked")
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("DELETE FROM files WHERE device=? AND inode=?", gone)
            # contents no file refers to any more (gone, or rewritten in place, or its inode reused): found
            # by their hashes alone (an index scan), then `written` read for those only, behind the blobs
            orphans = [
                h
                for (h,) in self.db.execute(
                    "SELECT content_hash FROM images WHERE content_hash NOT IN (SELECT content_hash FROM files)"
                )
            ]
            self.db.execute("CREATE TEMP TABLE IF NOT EXISTS gone(content_hash TEXT PRIMARY KEY)")
            self.db.execute("DELETE FROM gone")
            for start in range(0, len(orphans), BATCH):
                chunk = orphans[start : start + BATCH]
                marks = ",".join("?" * len(chunk))
                self.db.execute(
                    f"INSERT INTO gone SELECT content_hash FROM images WHERE content_hash IN ({marks})"
                    " AND (written IS NULL OR written < ?)",
                    [*chunk, time.time() - ORPHAN_AGE],
                )
            self.db.execute("DELETE FROM images WHERE content_hash IN gone")
            self.db.execute("DELETE FROM verdicts WHERE first IN gone OR second IN gone")
        self._recorded = False
        self._loaded.clear()
        return len(gone)

    def commit(self) -> None:
        """Write what is buffered, in one short transaction."""
        if self._pending:
            with self.db:
                for sql, rows in self._rows.items():
                    self.db.executemany(sql, rows)
        self._rows.clear()
        self._pending = 0
        self._last_commit = time.monotonic()

    def close(self) -> None:
        try:
            self.commit()
            self.db.close()
        finally:
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)


PRUNE_BLOCK = 16_384
"""Rows of files a prune reads at a time."""


def hash_key(ids: np.ndarray) -> np.ndarray:
    """One uint64 per (device, inode) (the first two columns of `ids`), for sorting and looking up;
    collisions only cost a miss."""
    ids = np.ascontiguousarray(ids[:, :2]).view(np.uint64)
    return ids[:, 1] ^ (ids[:, 0] * np.uint64(0x9E3779B97F4A7C15))


def _identity(path: bytes) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _wal(db: sqlite3.Connection) -> None:
    """Put the file in WAL mode. Two processes that turn a new file to WAL at the same moment would each
    wait for the other, so SQLite refuses one at once ("locked") instead of waiting: it tries again, for
    as long as the connection waits for a lock (60 s)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


DAMAGE = ("malformed", "not a database", "file is encrypted")
"""Words of SQLite's errors for a file that is not a usable database; any other error (a full or read-only
disk, a lock, an I/O error) leaves the file as it is: set aside on a full disk, a healthy cache lost the
decisions it held."""


class _Unusable(Exception):
    """The file is not a cache this version can use."""


WAL_FILES = ("", "-wal", "-shm")
"""Suffixes of an SQLite file and of the files SQLite keeps beside it in WAL mode."""


def _set_aside(path: Path) -> str:
    """Move a cache file, with its WAL files, to the first free name of path.old, path.old.1, ...: never
    over another file, which may be an earlier cache set aside (with decisions) or anything else. The
    name it took."""
    names = (f"{path}.old{f'.{n}' if n else ''}" for n in itertools.count())
    old = next(name for name in names if not any(os.path.lexists(f"{name}{suffix}") for suffix in WAL_FILES))
    for suffix in WAL_FILES:
        try:
            os.replace(f"{path}{suffix}", f"{old}{suffix}")
        except FileNotFoundError:
            pass
    return old


def _set_aside_files(path: Path) -> list[Path]:
    """The caches set aside from `path` (_set_aside): of the files so named, those with a dedupe cache's
    tables only (another program's database so named, or one it holds locked, stays; so does a cache set
    aside because it could not be read)."""
    pattern = re.compile(re.escape(path.name) + r"\.old(\.[0-9]+)?")
    try:
        names = sorted(os.listdir(path.parent))
    except OSError:
        return []
    found = [path.parent / n for n in names if pattern.fullmatch(n)]
    return [p for p in found if p.is_file() and not p.is_symlink() and is_dedupe_cache(p)]


def _take_decisions(db: sqlite3.Connection, old: str | os.PathLike) -> bool:
    """Copy the decisions of another cache file (one set aside, or one the disk lets only be read) into
    this one; False when that file could not be read (cachefile.remembered)."""
    try:
        held = remembered(Path(old))
    except CacheError:
        return False
    taken = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with db:
        db.executemany("INSERT OR IGNORE INTO decisions VALUES (?, ?, ?)", [(" ".join(h), k, taken) for h, k in held])
    return True


def info(path: str | os.PathLike) -> dict:
    """Location, size on disk and entry counts of a cache file, for `dedupe cache info`."""
    path = Path(path)
    out = {"path": str(path), "exists": path.exists(), "bytes": 0, "snapshot_bytes": 0}
    out.update(dict.fromkeys(("files", "images", "verdicts", "decisions"), 0))
    if not path.exists():
        return out
    out["bytes"] = sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if p.exists())
    out["snapshot_bytes"] = snapshot_bytes(path)
    cache = Cache(path)
    try:
        for table in ("files", "images", "verdicts", "decisions"):
            out[table] = cache.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        out["warnings"] = cache.warnings
    finally:
        cache.close()
    return out


def clear(path: str | os.PathLike) -> int:
    """Delete a cache file (and its WAL files, the caches set aside from it and its library snapshots);
    the bytes freed. A file that is not a cache deletes nothing: CacheError."""
    path = Path(path)
    refuse_foreign(path)
    caches = [path, *_set_aside_files(path)]
    freed = snapshot_bytes(path)
    drop_snapshots(path)
    for cache in caches:
        for suffix in WAL_FILES:
            p = Path(f"{cache}{suffix}")
            if p.exists():
                freed += p.stat().st_size
                p.unlink()
    return freed


def snapshot_bytes(path: str | os.PathLike) -> int:
    """Size of the library snapshots kept beside a cache file (dedupe.snapshot)."""
    try:
        return sum(p.stat().st_size for p in snapshot_files(path))
    except OSError:
        return 0


class Store(Mapping[int, Analysed]):
    """The decoded images of one scan, by file index: their codes, sizes and rows in arrays (about 120
    bytes an image in memory) and their content hashes, the rest (info, thumbnail, keypoints) in the
    cache, loaded on demand by whichever stage needs it. `hashes` maps a file index to its content hash."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self._order = array("q")  # the file index of each row, in the order added
        self._rows = np.full(0, -1, np.int64)  # the row of each file index, -1 for none
        self._hashes: list[str] = []  # of each row
        self.hashes = _Hashes(self)
        self._codes = bytearray()
        self._framed = bytearray()
        self._size = bytearray()
        self._info: dict[int, ImageInfo] = {}

    def _room(self, top: int) -> None:
        """Rows for file indices below `top` (an array: a dict of them was 85 bytes an image)."""
        if top > len(self._rows):
            grown = np.full(max(top, 2 * len(self._rows)), -1, np.int64)
            grown[: len(self._rows)] = self._rows
            self._rows = grown

    def hashes_of(self, images: list[int]) -> list[str]:
        """The content hashes of these stored file indices (hashes[i] of each, at once)."""
        rows = self._rows[np.asarray(images, dtype=np.int64)] if images else np.zeros(0, np.int64)
        if (rows < 0).any():
            raise KeyError(images[int(np.argmax(rows < 0))])
        hashes = self._hashes
        return [hashes[r] for r in rows.tolist()]

    def row(self, i: int) -> int:
        """The row of file index i; KeyError for a file not stored."""
        if 0 <= i < len(self._rows) and (r := int(self._rows[i])) >= 0:
            return r
        raise KeyError(i)

    def add(self, i: int, content_hash: str, codes: bytes, framed: bool, size: tuple[int, int] = (0, 0)) -> None:
        self._room(i + 1)
        self._rows[i] = len(self._order)
        self._order.append(i)
        self._hashes.append(content_hash)
        self._codes += codes
        self._framed.append(framed)
        self._size += np.array(size, dtype=np.int64).tobytes()

    def add_many(self, images: list[int], hashes: list[str], codes: np.ndarray, framed: np.ndarray, size: np.ndarray):
        """add() for many images at once: packed codes (n, CODES), frame flags and (width, height) in arrays."""
        if not images:
            return
        self._room(max(images) + 1)
        self._rows[images] = np.arange(len(self._order), len(self._order) + len(images))
        self._order.extend(images)
        self._hashes += hashes
        self._codes += np.ascontiguousarray(codes, dtype=np.uint64).tobytes()
        self._framed += np.asarray(framed, dtype=np.uint8).tobytes()
        self._size += np.ascontiguousarray(size, dtype=np.int64).tobytes()

    def codes(self) -> tuple[list[int], np.ndarray, np.ndarray]:
        """(image indices in walk order, their codes (n, CODES) as uint64, whether each has a frame)."""
        order = np.frombuffer(self._order, dtype=np.int64)
        rank = np.argsort(order, kind="stable")
        codes = np.frombuffer(self._codes, dtype=np.uint64).reshape(-1, CODES)[rank]
        framed = np.frombuffer(self._framed, dtype=np.uint8).astype(bool)[rank]
        return order[rank].tolist(), codes, framed

    def sizes(self, images: list[int]) -> np.ndarray:
        """(width, height) of these images, as the stage that added them knew them: (n, 2) int64."""
        rows = np.fromiter((self.row(i) for i in images), dtype=np.int64, count=len(images))
        return np.frombuffer(self._size, dtype=np.int64).reshape(-1, 2)[rows]

    def phash(self, i: int) -> int:
        return int(np.frombuffer(self._codes, dtype=np.uint64, count=1, offset=self.row(i) * CODES * 8)[0])

    def info(self, i: int) -> ImageInfo:
        """What decoding said about an image; kept once asked for (only grouped images are)."""
        if i not in self._info:
            self.prefetch([i])
        return self._info[i]

    def prefetch(self, images: Iterable[int]) -> None:
        """Load the info of many images in a few queries."""
        todo = [i for i in images if i not in self._info]
        found = self.cache.summaries(sorted({self.hashes[i] for i in todo}))
        for i in todo:
            self._info[i] = found[self.hashes[i]][0]

    def __getitem__(self, i: int) -> Analysed:
        h = self.hashes[i]
        info, feats = self.cache.load(h)
        return Analysed(h, info, feats)

    def __contains__(self, i) -> bool:
        return i in self.hashes

    def __iter__(self) -> Iterator[int]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)


class _Hashes(Mapping[int, str]):
    """A Store's content hash of each stored file index, in the order stored."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getitem__(self, i: int) -> str:
        return self._store._hashes[self._store.row(i)]

    def __contains__(self, i) -> bool:
        try:
            self._store.row(i)
        except (KeyError, TypeError):
            return False
        return True

    def __iter__(self) -> Iterator[int]:
        return iter(self._store._order)

    def __len__(self) -> int:
        return len(self._store._order)
