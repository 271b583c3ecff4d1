"""`dedupe demo`: a small photo library with planted copies, so the tool can be tried without real photos.

The pictures are generated from a seed (numpy + Pillow, nothing downloaded), so a seed always gives the same
library and the right answer is known. Each picture has structure at several scales, like a photo: smooth
colour fields, shapes, lines and fine grain. Copies of it then survive resizing and recompression, and two
different pictures do not look alike.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import cycle, islice
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

CAMERAS = (
    ("Canon", "Canon EOS 80D", "IMG_{n:04d}.JPG"),
    ("NIKON CORPORATION", "NIKON D5300", "DSC_{n:04d}.JPG"),
    ("Apple", "iPhone 8", "IMG_{n:04d}.JPG"),
    ("samsung", "SM-G960F", "{when:%Y%m%d_%H%M%S}.jpg"),
)
"""(Make, Model, file-name pattern): each camera names its files its own way."""
EVENTS = (
    ("Beach", 7),
    ("Birthday", 3),
    ("Hiking", 9),
    ("Christmas", 12),
    ("City trip", 5),
    ("Garden", 6),
    ("Lake weekend", 8),
)
"""(Name, month) of the events the pictures are filed under."""
SIZES = ((800, 600), (1024, 768), (1200, 900), (1200, 800), (1600, 1200))
SIZE_WEIGHTS = (0.4, 0.3, 0.15, 0.1, 0.05)
"""Mostly small pictures, so the whole library stays under about 3 MB."""
GROUPS = 8
"""Pictures that get copies."""
SINGLES = 12
"""Pictures without copies: a correct scan leaves them alone."""
COPY_KINDS = ("exact", "jpeg_q60", "resize_50", "orient6", "watermark", "bright")
"""Dealt to the groups in turn, 2-3 each; one group also gets a PNG copy (only one: PNGs are large)."""
ORIGINAL_QUALITY = 88


@dataclass(frozen=True)
class Shot:
    """One picture as a camera wrote it: where it lives in the library and the EXIF it carries."""

    folder: str
    name: str
    when: datetime
    camera: int
    index: int
    """Position in the library's shot list; gives copies unique names (e.g. WhatsApp's WA0003)."""

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]


def _field(rng: np.random.Generator, width: int, height: int, cells: int) -> np.ndarray:
    """Smooth random colour in [-0.5, 0.5]: a coarse random grid, `cells` wide, enlarged bicubically."""
    rows = max(2, round(cells * height / width))
    grid = Image.fromarray((rng.random((rows, cells, 3)) * 255).astype(np.uint8))
    return np.asarray(grid.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32) / 255 - 0.5


def picture(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A photo-like RGB picture: gradient and colour fields, shapes and lines, softened, with grain."""
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    top, bottom = rng.random(3) * 255, rng.random(3) * 255
    base = top + (bottom - top) * t
    for cells, amplitude in ((3, 90), (8, 50), (24, 25)):
        base = base + amplitude * _field(rng, width, height, cells)
    im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(rng.integers(6, 14)):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        s = int(rng.integers(width // 20, width // 4))
        shape = rng.integers(3)
        if shape == 0:
            draw.ellipse([x, y, x + s, y + int(s * rng.uniform(0.5, 1.5))], fill=colour)
        elif shape == 1:
            draw.rectangle([x, y, x + s, y + int(s * rng.uniform(0.3, 1.2))], fill=colour)
        else:
            corners = [(x + int(rng.integers(-s, s)), y + int(rng.integers(-s, s))) for _ in range(rng.integers(3, 6))]
            draw.polygon(corners, fill=colour)
    for _ in range(rng.integers(3, 8)):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        ends = [(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(2)]
        draw.line(ends, fill=colour, width=int(rng.integers(2, max(3, width // 150))))
    soft = np.asarray(im.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float32)
    texture = 8 * _field(rng, width, height, width // 8)[..., :1]  # fine grain in brightness, ~8 px across
    return Image.fromarray(np.clip(soft + texture, 0, 255).astype(np.uint8))


def _exif(shot: Shot, orientation: int = 1) -> Image.Exif:
    """Camera EXIF: Make, Model, dates and Orientation."""
    make, model, _ = CAMERAS[shot.camera]
    stamp = shot.when.strftime("%Y:%m:%d %H:%M:%S")
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0132], exif[0x0112] = make, model, stamp, orientation
    exif.get_ifd(0x8769)[0x9003] = stamp  # DateTimeOriginal
    return exif


def _encode(im: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def _watermark(im: Image.Image, text: str) -> Image.Image:
    """`text` in white at the bottom right, 4.5% of the height, as a photo-sharing site stamps it."""
    out = im.copy()
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(10, round(0.045 * im.height)))
    _, _, right, bottom = draw.textbbox((0, 0), text, font=font)
    margin = round(0.02 * im.width)
    draw.text((im.width - margin - right, im.height - margin - bottom), text, fill=(255, 255, 255), font=font)
    return out


def _copy(kind: str, shot: Shot, im: Image.Image, original: bytes) -> tuple[str, bytes]:
    """(relative path, bytes) of one planted copy of `shot`, where such a copy turns up in a real library."""
    if kind == "exact":
        return f"Backup/{shot.folder}/{shot.name}", original
    if kind == "jpeg_q60":  # sent through a messenger: recompressed, EXIF dropped
        return f"WhatsApp Images/IMG-{shot.when:%Y%m%d}-WA{shot.index:04d}.jpg", _encode(im, quality=60)
    if kind == "resize_50":
        return f"Downloads/{shot.stem}_small.jpg", _encode(im.reduce(2), quality=85)
    if kind == "png":
        return f"Edited/{shot.stem}.png", _encode(im, "PNG")
    if kind == "orient6":  # a phone upload stored sideways; the tag turns it back upright for display
        stored = im.transpose(Image.Transpose.ROTATE_90)
        return f"Camera Uploads/{shot.when:%Y-%m-%d %H.%M.%S}.jpg", _encode(stored, quality=85, exif=_exif(shot, 6))
    if kind == "watermark":
        marked = _watermark(im, f"\u00a9 {shot.when.year} Anna Berg")
        return f"Edited/{shot.stem}_watermark.jpg", _encode(marked, quality=85)
    # "bright": brightness x1.25 in a photo editor
    return f"Edited/{shot.stem}-edited.jpg", _encode(ImageEnhance.Brightness(im).enhance(1.25), quality=85)


def _shots(rng: np.random.Generator, count: int) -> list[Shot]:
    """`count` shots spread over a few dated events, each event taken with one camera."""
    events = [EVENTS[e] for e in rng.choice(len(EVENTS), 4, replace=False)]
    years = sorted(rng.choice(np.arange(2018, 2025), 4, replace=False))  # distinct years: no name clashes
    starts = [
        datetime(int(y), month, int(rng.integers(1, 29)), int(rng.integers(8, 16)))
        for y, (_, month) in zip(years, events)
    ]
    folders = [f"{d.year}/{d:%Y-%m} {name}" for d, (name, _) in zip(starts, events)]
    cameras = rng.permutation(len(CAMERAS))
    number = int(rng.integers(100, 3000))  # one counter for all cameras, so no two stems are the same
    shots = []
    for i, event in enumerate(sorted(rng.integers(0, 4, count))):
        starts[event] += timedelta(minutes=int(rng.integers(1, 45)), seconds=int(rng.integers(0, 60)))
        number += int(rng.integers(1, 30))
        cam = int(cameras[event])
        name = CAMERAS[cam][2].format(n=number, when=starts[event])
        shots.append(Shot(folders[event], name, starts[event], cam, i))
    return shots


def make_library(folder: Path, seed: int = 7) -> dict:
    """Write the sample library into `folder` and return what was planted, to check a scan against.

    Returns {"files": files written, "groups": [[original, copy, ...], ...] (relative paths),
    "singles": pictures without copies, "junk": broken or non-image files}.
    """
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    written: list[str] = []

    def write(rel: str, data: bytes, when: datetime) -> None:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        stamp = when.replace(tzinfo=timezone.utc).timestamp()  # mtime as the camera left it, in any time zone
        os.utime(path, (stamp, stamp))
        written.append(rel)

    kinds = cycle(rng.permutation(COPY_KINDS))
    plans = [list(islice(kinds, int(rng.integers(2, 4)))) for _ in range(GROUPS)] + [[] for _ in range(SINGLES)]
    plans[0].append("png")
    plans = [plans[i] for i in rng.permutation(len(plans))]  # groups and singles mixed through the events
    shots = _shots(rng, len(plans))
    groups, originals = [], {}
    for shot, plan in zip(shots, plans):
        width, height = (800, 600) if "png" in plan else SIZES[rng.choice(len(SIZES), p=SIZE_WEIGHTS)]
        if rng.random() < 0.2:
            width, height = height, width
        im = picture(rng, width, height)
        original = _encode(im, quality=ORIGINAL_QUALITY, exif=_exif(shot))
        write(f"{shot.folder}/{shot.name}", original, shot.when)
        originals[shot] = original
        members = [f"{shot.folder}/{shot.name}"]
        for kind in plan:
            rel, data = _copy(kind, shot, im, original)
            write(rel, data, shot.when + timedelta(days=int(rng.integers(1, 60))))
            members.append(rel)
        if plan:
            groups.append(members)

    single = next(s for s, plan in zip(shots, plans) if not plan)
    last = shots[-1]
    junk = {  # an interrupted backup copy, an empty file, a failed download saved as .jpg, and notes
        f"Backup/{single.folder}/{single.name}": originals[single][: len(originals[single]) * 2 // 5],
        "Downloads/photo (2).jpg": b"",
        "Downloads/photo.jpg": b"<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head>"
        b"<body><h1>Forbidden</h1></body></html>\n",
        f"{last.folder}/notes.txt": b"Who took which pictures, and who wants copies.\n",
    }
    for rel, data in junk.items():
        write(rel, data, last.when)
    return {"files": len(written), "groups": groups, "singles": SINGLES, "junk": list(junk)}
