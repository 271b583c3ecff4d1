"""The records that flow between stages. Plain dataclasses (and one named tuple): no behaviour beyond small
derived values."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import numpy as np


class FileRecord(NamedTuple):
    """A regular file found by the walk, with the identity an action re-checks before touching it.

    A named tuple, not a dataclass: the walk makes one per file, and a frozen dataclass took twice as long
    to make (a tenth of a repeated search of 100,000 pictures)."""

    path: str
    """Absolute path, as reached (symlinked folders are not resolved)."""
    root: str
    """The scan root it was found under."""
    size: int
    mtime_ns: int
    device: int
    inode: int
    format: str
    """Image format recognised from the first bytes (JPEG, PNG, ...)."""

    @property
    def identity(self) -> tuple[int, int]:
        return (self.device, self.inode)


@dataclass(frozen=True)
class Problem:
    """A file that could not be used, or was used with a caveat, and why.

    `kind`: "error" (broken or unreadable), "skipped" (passed over by design: not an image, a link) or
    "warning" (read and used, but something is off, such as a PNG named .jpg).
    """

    path: str
    stage: str
    reason: str
    kind: str = "error"


@dataclass(frozen=True)
class Link:
    """A path that reaches a file already seen (hard link, overlapping roots): read once, never a duplicate."""

    path: str
    same_as: str


@dataclass(frozen=True)
class ImageInfo:
    """What decoding tells about a picture, as it displays (after EXIF orientation)."""

    width: int
    height: int
    format: str
    lossless: bool
    content_pixels: int
    """Pixels of picture content: width x height less any uniform border around it."""
    exif_date: str | None = None
    camera: str | None = None
    orientation: int = 1
    cut_short: float = 0.0
    """Share of the picture a JPEG decoder filled with one flat tone after the file's data ended early
    (decode.cut_short): a damaged file, never kept over a whole copy."""


def _no_rows(columns: int, dtype: str) -> np.ndarray:
    """An empty array, for no keypoints. numpy is imported here: plan, apply and undo use these records
    but not numpy, which takes 0.1 s to import."""
    import numpy as np

    return np.zeros((0, columns), dtype)


@dataclass
class Features:
    """Per-image features: packed 64-bit pHashes and a small grayscale thumbnail for verification."""

    phash: int
    dhash: int
    thumb: np.ndarray = field(repr=False)
    detail: float = 0.0
    """Mean local standard deviation of the thumbnail (verify.detail): low for featureless pictures."""
    box: tuple[float, float, float, float] | None = None
    """Picture inside a uniform frame, as fractions (x0, y0, x1, y1) of the image; None without a frame."""
    phash_trim: int | None = None
    """pHash of the picture inside the frame, when there is one."""
    turned: tuple[int, ...] = ()
    """pHashes of the picture turned and mirrored: ORIENTATIONS[1:] of features.hashes."""
    kp_xy: np.ndarray = field(default_factory=lambda: _no_rows(2, "float16"), repr=False)
    """ORB keypoint positions, in thumbnail pixels."""
    kp_desc: np.ndarray = field(default_factory=lambda: _no_rows(32, "uint8"), repr=False)
    """Their 256-bit binary descriptors."""


@dataclass
class Analysed:
    """What reading one file gives: its content hash, what the decoder says about it, its features."""

    content_hash: str
    info: ImageInfo
    features: Features


@dataclass
class Member:
    file: FileRecord
    info: ImageInfo
    content_hash: str
    phash: int
    score: int
    """Similarity to the keeper, 0-100 (100 for the keeper and its byte-identical copies)."""
    relation: str
    """"keeper", "exact" (byte-identical to the keeper) or "near"."""
    evidence: dict = field(default_factory=dict)


@dataclass
class Group:
    kind: str
    """"exact" when every member is byte-identical, else "near"."""
    keeper: int
    """Index into members."""
    keeper_reason: str
    members: list[Member]
    decision: str | None = None
    """A remembered decision that covers the group ("not_duplicates" or "keep_all"; see dedupe.decisions):
    such a group is reported only when the settings ignore decisions, and then proposes to keep every file."""

    @property
    def bytes_freed(self) -> int:
        return sum(m.file.size for i, m in enumerate(self.members) if i != self.keeper)


@dataclass(frozen=True)
class Similar:
    """Two different photos of one scene (burst frames, overlapping parts of one picture): never duplicates."""

    a: str
    b: str
    score: int
    overlap: float
    """Share of each picture that the other covers (the smaller of the two)."""
    inliers: int


@dataclass
class ScanResult:
    roots: list[str]
    settings: dict
    groups: list[Group]
    problems: list[Problem]
    links: list[Link]
    stats: dict
    """Per-stage counts and timings, plus totals."""
    started: str
    finished: str
    similar: list[Similar] = field(default_factory=list)
    """Similar shots, when the settings ask for them."""
    report_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """Unique per scan: what the HTML review files a person's choices under."""

    @property
    def files_to_remove(self) -> int:
        return sum(len(g.members) - 1 for g in self.groups if g.decision is None)

    @property
    def bytes_freed(self) -> int:
        return sum(g.bytes_freed for g in self.groups if g.decision is None)
