"""Stage 1: the files to look at. Image files are recognised by their first bytes, never by their name."""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass, field
from typing import Callable

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


def _matches(patterns: tuple[str, ...], rel: str, name: str) -> bool:
    """A pattern matches the path relative to the root or the bare name; a leading "*/" may also match
    nothing, so "*/@eaDir" finds an @eaDir folder right under the root too."""
    return any(
        fnmatch.fnmatchcase(rel, p)
        or fnmatch.fnmatchcase(name, p)
        or (p.startswith("*/") and fnmatch.fnmatchcase(rel, p[2:]))
        for p in patterns
    )


KnownFormats = Callable[[list[tuple[int, int, int, int]]], dict[int, str]]
"""Given files' identities (device, inode, size, mtime_ns), the format of those a cache recorded."""


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
    opening every file to read its first bytes was half of the walk.
    """
    out = WalkResult()
    seen_files: dict[tuple[int, int], str] = {}
    seen_dirs: set[tuple[int, int]] = set()
    found: list = []  # (path, root, size, mtime_ns, device, inode) of each file, its format not known yet

    def visit_file(path: str, root: str, rel: str, name: str, st: os.stat_result) -> None:
        out.seen += 1
        progress.advance()
        if settings.include and not _matches(settings.include, rel, name):
            return
        key = (st.st_dev, st.st_ino)
        if key in seen_files:
            out.links.append(Link(path=path, same_as=seen_files[key]))
            return
        seen_files[key] = path
        if st.st_size == 0:
            out.problems.append(Problem(path, "walk", "empty file (0 bytes)"))
            return
        found.append((path, root, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino))

    for root_in in roots:
        root = os.path.abspath(os.fspath(root_in))
        try:
            st = os.stat(root)
        except OSError as exc:
            out.problems.append(Problem(root, "walk", f"cannot open: {exc.strerror or exc}"))
            continue
        if stat.S_ISREG(st.st_mode):  # a single file given as a root
            visit_file(root, os.path.dirname(root), os.path.basename(root), os.path.basename(root), st)
            continue
        prefix = root if root.endswith(os.sep) else root + os.sep  # rel by slicing: relpath costs a third of the walk
        stack = [root]
        while stack:
            check(cancel)
            folder = stack.pop()
            try:
                fst = os.stat(folder)
                if (fst.st_dev, fst.st_ino) in seen_dirs:
                    continue
                seen_dirs.add((fst.st_dev, fst.st_ino))
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                out.problems.append(Problem(folder, "walk", f"cannot list folder: {exc.strerror or exc}"))
                continue
            if any(e.name == REPORT_MARKER for e in entries):
                out.problems.append(Problem(folder, "walk", "images of a dedupe HTML report, not photos", "skipped"))
                continue
            subfolders = []
            for entry in entries:
                name = entry.name
                rel = entry.path[len(prefix) :]
                if not settings.hidden and name.startswith("."):
                    continue
                if settings.exclude and _matches(settings.exclude, rel, name):
                    continue
                try:
                    is_link = entry.is_symlink()
                    if is_link and not settings.follow_symlinks:
                        out.seen += 1
                        out.problems.append(Problem(entry.path, "walk", "symbolic link, not followed", "skipped"))
                        continue
                    st = entry.stat(follow_symlinks=True)
                except OSError as exc:
                    out.seen += 1
                    out.problems.append(Problem(entry.path, "walk", f"cannot stat: {exc.strerror or exc}"))
                    continue
                if stat.S_ISDIR(st.st_mode):
                    subfolders.append(entry.path)
                elif stat.S_ISREG(st.st_mode):
                    visit_file(entry.path, root, rel, name, st)
            stack.extend(reversed(subfolders))
    identities = [(dev, ino, size, mtime) for _, _, size, mtime, dev, ino in found]
    formats = known_formats(identities) if known_formats and found else {}
    del identities
    for n, (path, root, size, mtime_ns, device, inode) in enumerate(found):
        found[n] = None  # each entry freed as its record is made: a million files are not held twice
        if n % 1024 == 0:
            check(cancel)
        if n in formats:
            fmt = formats[n]
        else:
            try:
                with open(path, "rb") as fh:
                    head = fh.read(32)
            except OSError as exc:
                out.problems.append(Problem(path, "walk", f"cannot read: {exc.strerror or exc}"))
                continue
            fmt = sniff(head)
        suffix = os.path.splitext(path)[1]
        named = IMAGE_EXTENSIONS.get(suffix.lower())
        if fmt is None:
            out.problems.append(Problem(path, "walk", _describe(head), kind="error" if named else "skipped"))
            continue
        if named and named != fmt:
            out.problems.append(
                Problem(path, "walk", f"named {suffix} but the content is {fmt}; read as {fmt}", kind="warning")
            )
        out.files.append(FileRecord(path, root, size, mtime_ns, device, inode, fmt))
    return out
