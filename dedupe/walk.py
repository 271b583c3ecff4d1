"""Stage 1: the files to look at. Image files are recognised by their first bytes, never by their name."""

from __future__ import annotations

import fnmatch
import operator
import os
from stat import S_ISDIR, S_ISREG
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .config import Settings
from .model import FileRecord, Link, Problem
from .progress import CancelCheck, NullProgress, Progress, check, never

IMAGE_EXTENSIONS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".jfif": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".dib": "BMP",
    ".gif": "GIF",
    ".heic": "HEIF",
    ".heif": "HEIF",
    ".hif": "HEIF",
    ".avif": "AVIF",
}
REPORT_MARKER = ".dedupe-report-files"
"""A file that marks a folder of an HTML report's thumbnails: a later scan of the same tree skips it."""
QUARANTINE_MARKER = ".dedupe-quarantine"
"""A file apply --move-to puts in its quarantine folder: a later scan of a tree holding it skips it (given
as a root, it is scanned). A quarantined copy with a shorter path was kept, and the library's original
proposed for removal, leaving the only copy in a folder a person empties."""
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}


def sniff(head: bytes) -> str | None:
    """The image format named by a file's first bytes, or None when it is not an image we read."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if (
        head[:2] == b"BM"
        and len(head) >= 18
        and int.from_bytes(head[14:18], "little") in (12, 40, 52, 56, 64, 108, 124)
    ):
        return "BMP"
    if head[4:8] == b"ftyp":
        brands = {head[8:12]} | {head[i : i + 4] for i in range(16, min(len(head), 32), 4)}
        if brands & {b"avif", b"avis"}:
            return "AVIF"
        if brands & _HEIF_BRANDS:
            return "HEIF"
    return None


def _describe(head: bytes) -> str:
    """A short human reason for a file that is not an image."""
    if head[4:8] == b"ftyp":
        return "not an image (video or other ISO media file)"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "not an image (OLE compound file, e.g. Thumbs.db)"
    stripped = head.lstrip()
    if stripped[:1] in (b"{", b"["):
        return "not an image (JSON text)"
    if stripped[:1] == b"<":
        return "not an image (XML/HTML text)"
    try:
        head.decode("utf-8")
        return "not an image (text)"
    except UnicodeDecodeError:
        return "not an image (unknown content)"


@dataclass
class WalkResult:
    files: list[FileRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    seen: int = 0
    """Every directory entry that was a file or a link to one, before any filtering."""
    ids: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    """Each file's identity (device, inode, size, mtime_ns), in the order of `files`: what the cache and
    the library snapshot recognise an unchanged file by, compared in bulk."""

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.files):  # built by hand (tests, a merge): from the records
            self.ids = identities(self.files)


def identities(files: list[FileRecord]) -> np.ndarray:
    """(device, inode, size, mtime_ns) of each file, as an (n, 4) int64 array."""
    rows = [(f.device, f.inode, f.size, f.mtime_ns) for f in files]
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def _matches(patterns: tuple[str, ...], rel: str, name: str, path: str) -> bool:
    """A pattern matches the path relative to the root or the bare name; a leading "*/" may also match
    nothing, so "*/@eaDir" finds an @eaDir folder right under the root too; an absolute pattern
    (_real_pattern) matches the file's real path (`--exclude ~/Photos/Backup` matched nothing, and left
    the folder in)."""
    return any(
        fnmatch.fnmatchcase(path, p)
        if os.path.isabs(p)
        else fnmatch.fnmatchcase(rel, p)
        or fnmatch.fnmatchcase(name, p)
        or (p.startswith("*/") and fnmatch.fnmatchcase(rel, p[2:]))
        for p in patterns
    )


def _real_pattern(pattern: str) -> str:
    """An absolute pattern as a real path: its part before the first wildcard resolved (a link, '..',
    a doubled slash), so that it names the files whichever way the scan reached them."""
    if not os.path.isabs(pattern):
        return pattern
    parts = os.path.normpath(pattern).split(os.sep)
    plain = next((n for n, part in enumerate(parts) if any(c in part for c in "*?[")), len(parts))
    return os.path.join(os.path.realpath(os.sep.join(parts[:plain]) or os.sep), *parts[plain:])


KnownFormats = Callable[[np.ndarray], list]
"""Given files' identities ((n, 4) array: device, inode, size, mtime_ns), the format a cache recorded
for each one it knows unchanged, None for the others."""
PROGRESS_EVERY = 1024
"""Files counted between two progress updates (one call per file cost a tenth of the walk)."""


def walk(
    roots: list[str | os.PathLike],
    settings: Settings,
    progress: Progress = NullProgress(),
    cancel: CancelCheck = never,
    known_formats: KnownFormats | None = None,
) -> WalkResult:
    """Every readable image file under `roots`, in a deterministic order, plus what was skipped and why.

    A file reached twice (hard link, overlapping roots, followed link) is read once; the other paths are Links.
    Folder loops through followed links are cut by remembering (device, inode) of every folder entered.
    A file whose unchanged identity `known_formats` recognises is not opened: on an unchanged library,
    opening every file to read its first bytes was half of the walk. The walk does only a stat per file
    otherwise; its identities are gathered in one array (WalkResult.ids), which is how they are looked up.
    """
    out = WalkResult()
    seen_files: dict[tuple[int, int], str] = {}
    seen_dirs: set[tuple[int, int]] = set()
    found: list = []  # (path, root, name) of each file, its format not known yet
    found_ids: list[tuple[int, int, int, int]] = []  # and its identity
    patterns = bool(settings.include or settings.exclude)
    include, exclude = (tuple(map(_real_pattern, p)) for p in (settings.include, settings.exclude))
    hidden, follow = settings.hidden, settings.follow_symlinks
    add_found, add_id = found.append, found_ids.append
    counted = inline = 0  # files counted for progress; files taken inline (out.seen counts the others)

    def visit_file(path: str, root: str, rel: str, name: str, st: os.stat_result, real: str) -> None:
        out.seen += 1
        if include and not _matches(include, rel, name, real):
            return
        key = (st.st_dev, st.st_ino)
        if key in seen_files:
            out.links.append(Link(path=path, same_as=seen_files[key]))
            return
        seen_files[key] = path
        if st.st_size == 0:
            out.problems.append(Problem(path, "walk", "empty file (0 bytes)"))
            return
        found.append((path, root, name))
        found_ids.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))

    for root_in in roots:
        root = os.path.abspath(os.fspath(root_in))
        try:
            st = os.stat(root)
        except OSError as exc:
            out.problems.append(Problem(root, "walk", f"cannot open: {exc.strerror or exc}"))
            continue
        if S_ISREG(st.st_mode):  # a single file given as a root: --exclude applies to it as --include does
            name, real = os.path.basename(root), os.path.realpath(root)
            if not (exclude and _matches(exclude, name, name, real)):
                visit_file(root, os.path.dirname(root), name, name, st, real)
            continue
        prefix = len(root if root.endswith(os.sep) else root + os.sep)  # rel by slicing: relpath cost a third
        real_root = os.path.join(os.path.realpath(root), "")  # what absolute patterns see
        stack = [root]
        while stack:
            check(cancel)
            if out.seen + inline - counted >= PROGRESS_EVERY:
                progress.advance(out.seen + inline - counted)
                counted = out.seen + inline
            folder = stack.pop()
            try:
                fst = os.stat(folder)
                if (fst.st_dev, fst.st_ino) in seen_dirs:
                    continue
                with os.scandir(folder) as it:
                    entries = sorted(it, key=_name)
            except OSError as exc:
                out.problems.append(Problem(folder, "walk", f"cannot list folder: {exc.strerror or exc}"))
                continue
            if any(e.name == REPORT_MARKER for e in entries):
                out.problems.append(Problem(folder, "walk", "images of a dedupe HTML report, not photos", "skipped"))
                continue
            if folder != root and any(e.name == QUARANTINE_MARKER for e in entries):
                out.problems.append(Problem(folder, "walk", "a dedupe quarantine (apply --move-to)", "skipped"))
                continue  # not seen: a root of its own later, it is scanned
            seen_dirs.add((fst.st_dev, fst.st_ino))
            subfolders = []
            for entry in entries:
                name = entry.name
                if not hidden and name[0] == ".":
                    continue
                rel = entry.path[prefix:] if patterns else ""
                if exclude and _matches(exclude, rel, name, real_root + rel):
                    continue
                try:
                    if not follow and entry.is_symlink():
                        out.seen += 1
                        out.problems.append(Problem(entry.path, "walk", "symbolic link, not followed", "skipped"))
                        continue
                    st = entry.stat()
                except OSError as exc:
                    out.seen += 1
                    out.problems.append(Problem(entry.path, "walk", f"cannot stat: {exc.strerror or exc}"))
                    continue
                mode = st.st_mode
                if not S_ISREG(mode):
                    if S_ISDIR(mode):
                        subfolders.append(entry.path)
                elif patterns or st.st_size == 0 or (key := (st.st_dev, st.st_ino)) in seen_files:
                    visit_file(entry.path, root, rel, name, st, real_root + rel)
                else:  # visit_file's common case, inline: a tenth of the walk
                    inline += 1
                    path = entry.path
                    seen_files[key] = path
                    add_found((path, root, name))
                    add_id((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
            stack.extend(reversed(subfolders))
    out.seen += inline
    progress.advance(out.seen - counted)
    ids = np.array(found_ids, dtype=np.int64).reshape(-1, 4)
    formats = known_formats(ids) if known_formats and found else [None] * len(found)
    dropped = []
    add_file, named_as = out.files.append, IMAGE_EXTENSIONS.get
    devices: dict[int, int] = {}  # one int object per file system, not one per file (32 bytes each)
    for n, (path, root, name) in enumerate(found):
        device, inode, size, mtime_ns = found_ids[n]
        device = devices.setdefault(device, device)
        found[n] = found_ids[n] = None  # each entry freed as its record is made: a million files are not held twice
        if n % 1024 == 0:
            check(cancel)
        fmt = formats[n]
        if fmt is None:
            try:
                with open(path, "rb") as fh:
                    head = fh.read(32)
            except OSError as exc:
                out.problems.append(Problem(path, "walk", f"cannot read: {exc.strerror or exc}"))
                dropped.append(n)
                continue
            fmt = sniff(head)
        suffix = _suffix(name)
        named = named_as(suffix.lower()) if suffix else None
        if fmt is None:
            out.problems.append(Problem(path, "walk", _describe(head), kind="error" if named else "skipped"))
            dropped.append(n)
            continue
        if named and named != fmt:
            out.problems.append(
                Problem(path, "walk", f"named {suffix} but the content is {fmt}; read as {fmt}", kind="warning")
            )
        add_file(FileRecord(path, root, size, mtime_ns, device, inode, fmt))
    out.ids = np.delete(ids, dropped, axis=0) if dropped else ids
    return out


_name = operator.attrgetter("name")


def _suffix(name: str) -> str:
    """os.path.splitext(name)[1] for a bare file name, without its generality."""
    dot = name.rfind(".")
    if dot <= 0 or not name[:dot].strip("."):
        return ""
    return name[dot:]
