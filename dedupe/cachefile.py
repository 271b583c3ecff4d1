"""The cache file itself, without the cache: where it is, whether a file is one, the decisions it holds.

What commands that act on files need of the cache (apply, decide, cache clear) without what reads
pictures: dedupe.cache imports numpy, 0.1 s of a command's start, for nothing when there is no cache.
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
from pathlib import Path

FILE_NAME = "features.sqlite"


def default_path() -> Path:
    """The per-user cache: e.g. ~/.cache/dedupe/features.sqlite on Linux."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("dedupe")) / FILE_NAME


class CacheError(ValueError):
    """A file given as the cache that is not one, left as it is; the message is one line for the user.
    The command line's entry point (cli._run) shows it and exits 2, as it does a usage error: this is a
    wrong --cache, found only once the file is read."""

    exit_code = 2

    def show(self) -> None:
        print(f"dedupe: {self}", file=sys.stderr)


SQLITE_HEADER = b"SQLite format 3\x00"
"""The first bytes of every SQLite database file."""


def head(path: str | os.PathLike) -> bytes:
    """The first bytes of a file, as many as SQLITE_HEADER has: b"" for a missing or empty one."""
    try:
        with open(path, "rb") as f:
            return f.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return b""


def refuse_foreign(path: Path) -> None:
    """CacheError when `path` holds something other than a dedupe cache: a photo, another program's
    database, a device or a pipe given as --cache must not be set aside as a damaged cache, nor deleted.
    A missing or empty file is a new cache; an SQLite file that cannot be read (damaged) is left to the
    cache to set aside."""
    if os.path.isdir(path):
        raise CacheError(f"{path} is a folder, not a cache file")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise CacheError(f"{path} is not a regular file (a device, a pipe, a socket or a broken link), not a cache")
    start = head(path)
    if start not in (b"", SQLITE_HEADER):
        raise CacheError(f"{path} is not a dedupe cache (not an SQLite database); it was left as it is")
    tables = _tables(Path(path)) if start else set()
    if "locked" in tables:
        raise CacheError(f"{path} is locked by another program; it was left as it is")
    if tables and None not in tables and not tables >= DEDUPE_TABLES:
        raise CacheError(f"{path} is another program's SQLite database, not a dedupe cache; it was left as it is")


DEDUPE_TABLES = {"meta", "files", "images"}
"""Tables every dedupe cache has had: another program's database may have a table called meta too."""


def is_dedupe_cache(path: Path) -> bool:
    """Whether `path` is an SQLite database with a dedupe cache's tables, read without changing it."""
    return head(path) == SQLITE_HEADER and _tables(path) >= DEDUPE_TABLES


def _tables(path: Path) -> set:
    """The tables of the SQLite database at `path`, read without changing it; {None} when it cannot be
    read (damaged), {"locked"} when another program holds it (a browser keeps its databases locked:
    deleted as a damaged cache, its file was lost), set() when it has none."""
    try:
        # a second at most: a cache is in WAL mode, where a reader never waits
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=1)
        try:
            return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            db.close()
    except sqlite3.OperationalError as exc:
        return {"locked"} if "locked" in str(exc) or "busy" in str(exc) else {None}
    except sqlite3.Error:
        return {None}


def decision_rows(db: sqlite3.Connection) -> list[tuple[tuple[str, ...], str]]:
    """Every decision stored in an open cache: (content hashes, sorted with repeats; kind)."""
    return [(tuple(h.split()), kind) for h, kind in db.execute("SELECT hashes, kind FROM decisions")]


def remembered(path: Path) -> list[tuple[tuple[str, ...], str]]:
    """The decisions held by the cache file at `path`, read without opening it as a cache (which would
    rebuild one of another version): none when there is no file, or it is no dedupe cache. A cache on a
    full or read-only disk is read as it stands (immutable: its WAL cannot be opened there); CacheError
    when it cannot be read at all, for what acts on files must not act on decisions it cannot see."""
    if not path.is_file() or head(path) != SQLITE_HEADER:
        return []
    uri = path.resolve().as_uri()
    failed = None
    for options in ("mode=rw", "mode=ro&immutable=1"):
        try:
            db = sqlite3.connect(f"{uri}?{options}", uri=True, timeout=30)
            try:
                if "decisions" not in {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}:
                    return []  # another program's database, or a cache from before decisions
                return decision_rows(db)
            finally:
                db.close()
        except sqlite3.Error as exc:
            failed = exc
    raise CacheError(f"cannot read the decisions remembered in {path} ({failed}); nothing was done")


SNAPSHOT_FILE = re.compile(
    r"\.?(?:[0-9a-f]{8}\.)?[0-9a-f]{16}\."
    r"(?:files\.npz|nearest\.npz|candidates\.npz|kp-\d{20}-[0-9a-f]{6}\.(?:faiss|npz|ivfdata))(?:\.\d+)?"
)
"""The names of the files a cache's library snapshots are kept in (dedupe.snapshot), temporary ones too."""


def snapshot_files(cache: str | os.PathLike) -> list[Path]:
    """The snapshot files beside a cache file, in its folder <cache>.snapshots: only those, so that a
    folder of that name holding anything else (photos, notes) keeps it."""
    folder = Path(f"{cache}.snapshots")
    try:
        return [p for p in folder.iterdir() if SNAPSHOT_FILE.fullmatch(p.name) and p.is_file() and not p.is_symlink()]
    except OSError:
        return []


def drop_snapshots(cache: str | os.PathLike) -> None:
    """Delete the snapshot files of a cache file, and their folder if nothing else is left in it."""
    for p in snapshot_files(cache):
        p.unlink(missing_ok=True)
    try:
        os.rmdir(f"{cache}.snapshots")
    except OSError:  # not there, or holding something else
        pass
