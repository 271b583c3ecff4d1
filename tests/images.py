"""Seeded, generated test pictures and the edits a photo library does to them.

Nothing binary is committed: every test makes its pictures here, small (a few hundred pixels) and from a
seed, so a failure is reproducible. `photo()` is "photo-like": smooth low-frequency shading, shapes and
lines of several sizes and colours (structure at several scales) and a mild grain.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

try:
    import pillow_heif

    pillow_heif.register_heif_opener()
    HAVE_HEIF = True
except ImportError:  # pragma: no cover
    HAVE_HEIF = False

ORIENTATION = 0x0112
DATETIME = 0x0132
MAKE = 0x010F
MODEL = 0x0110
EXIF_IFD = 0x8769
DATETIME_ORIGINAL = 0x9003


# --------------------------------------------------------------------------- generators


def _smooth(rng: np.random.Generator, w: int, h: int, cells: tuple[int, int], channels: int = 3) -> np.ndarray:
    """Smooth noise: a coarse random grid upsampled bicubically, values roughly in 0..1."""
    cw, ch = cells
    grid = rng.random((ch, cw, channels)).astype(np.float32)
    planes = [
        np.asarray(Image.fromarray(grid[:, :, c], mode="F").resize((w, h), Image.Resampling.BICUBIC))
        for c in range(channels)
    ]
    return np.stack(planes, axis=2)


def cloudy(seed: int) -> Image.Image:
    """A featureless picture whose crops do not pass for its whole frame, as a gradient's do: soft
    blobs (a 5 x 4 random grid, upsampled), 50 grey levels from dark to light."""
    field = _smooth(np.random.default_rng(seed), 800, 600, (5, 4), channels=1)[:, :, 0]
    return Image.fromarray(np.clip(128 + 50 * (field - 0.5), 0, 255).astype(np.uint8))


def photo(seed: int, size: tuple[int, int] = (480, 360), palette_seed: int | None = None) -> Image.Image:
    """A seeded photo-like RGB picture.

    `palette_seed` (default: `seed`) fixes the colours only, so two pictures with the same palette seed and
    different seeds share size and palette but not content.
    """
    w, h = size
    rng = np.random.default_rng(seed)
    prng = np.random.default_rng(10_000 + (seed if palette_seed is None else palette_seed))
    palette = prng.integers(0, 256, size=(12, 3))
    base = prng.integers(40, 200, size=3).astype(np.float32)

    # low-frequency shading plus some mid-frequency variation
    low = _smooth(rng, w, h, (3, 3)) - 0.5
    mid = _smooth(rng, w, h, (12, 9)) - 0.5
    arr = base + 150 * low + 60 * mid
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")

    draw = ImageDraw.Draw(img)
    scale = min(w, h)
    for _ in range(int(rng.integers(14, 22))):
        kind = rng.integers(0, 3)
        colour = tuple(int(c) for c in palette[rng.integers(0, len(palette))])
        r = int(scale * rng.uniform(0.04, 0.35))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        box = [cx - r, cy - int(r * rng.uniform(0.4, 1.2)), cx + r, cy + int(r * rng.uniform(0.4, 1.2))]
        box = [min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])]
        if kind == 0:
            draw.ellipse(box, fill=colour)
        elif kind == 1:
            draw.rectangle(box, fill=colour)
        else:
            pts = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(3)]
            draw.line(pts, fill=colour, width=int(rng.integers(2, max(3, scale // 40))))
    # small details
    for _ in range(int(rng.integers(20, 40))):
        colour = tuple(int(c) for c in palette[rng.integers(0, len(palette))])
        cx, cy, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(scale * rng.uniform(0.005, 0.03)) + 1
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)

    img = img.filter(ImageFilter.GaussianBlur(0.8))
    grain = rng.normal(0, 4, size=(h, w, 1)).astype(np.float32)
    arr = np.asarray(img, dtype=np.float32) + grain
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


# --------------------------------------------------------------------------- encoding


def encode(img: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    """The bytes of `img` in `fmt` (JPEG quality 92 unless given)."""
    fmt = fmt.upper()
    if fmt in ("JPG", "JPEG"):
        fmt = "JPEG"
        kw.setdefault("quality", 92)
        if img.mode not in ("RGB", "L", "CMYK"):
            img = img.convert("RGB")
    if fmt == "GIF" and img.mode not in ("P", "L"):
        img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    if fmt == "HEIC":
        fmt = "HEIF"
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def save(img: Image.Image, path: str | os.PathLike, fmt: str | None = None, **kw) -> Path:
    """Write `img` to `path` (format from the suffix unless `fmt`), creating folders; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt is None:
        fmt = {
            ".jpg": "JPEG",
            ".jpeg": "JPEG",
            ".png": "PNG",
            ".webp": "WEBP",
            ".tif": "TIFF",
            ".tiff": "TIFF",
            ".bmp": "BMP",
            ".gif": "GIF",
            ".heic": "HEIF",
        }[path.suffix.lower()]
    path.write_bytes(encode(img, fmt, **kw))
    return path


def decoded(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


# --------------------------------------------------------------------------- edits


def recompress(img: Image.Image, quality: int) -> Image.Image:
    """The picture after one JPEG round trip at `quality`."""
    return decoded(encode(img, "JPEG", quality=quality)).convert("RGB")


def resize(img: Image.Image, factor: float) -> Image.Image:
    w, h = img.size
    return img.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.LANCZOS)


def convert_format(img: Image.Image, fmt: str) -> bytes:
    """Bytes of `img` re-saved in another format (PNG, WEBP, TIFF, BMP, GIF, HEIC)."""
    fmt = fmt.upper()
    if fmt == "WEBP":
        return encode(img, "WEBP", quality=85)
    if fmt == "HEIC":
        return encode(img, "HEIF", quality=80)
    return encode(img, fmt)


def exif(
    orientation: int | None = None, date: str | None = None, make: str | None = None, model: str | None = None
) -> Image.Exif:
    ex = Image.Exif()
    if orientation is not None:
        ex[ORIENTATION] = orientation
    if make:
        ex[MAKE] = make
    if model:
        ex[MODEL] = model
    if date:
        ex[DATETIME] = date
        ex.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] = date
    return ex


# stored pixels for a tag: applying the tag's display transform to them gives back the original
_STORE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def store_oriented(img: Image.Image, orientation: int = 6, fmt: str = "JPEG", **kw) -> bytes:
    """Pixels transformed and an EXIF Orientation tag added, so that the file DISPLAYS like `img`."""
    stored = img.transpose(_STORE[orientation]) if orientation in _STORE else img
    return encode(stored, fmt, exif=exif(orientation), **kw)


def brighten(img: Image.Image, factor: float = 1.25) -> Image.Image:
    return ImageEnhance.Brightness(img).enhance(factor)


def contrast(img: Image.Image, factor: float = 1.35) -> Image.Image:
    return ImageEnhance.Contrast(img).enhance(factor)


def grayscale(img: Image.Image) -> Image.Image:
    return img.convert("L")


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def watermark(img: Image.Image, text: str = "(c) Example Photo 2024", lines: int = 18) -> Image.Image:
    """Semi-transparent text in the lower right corner, its height 1/`lines` of the picture's."""
    out = img.convert("RGBA")
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    w, h = out.size
    font = _font(max(10, h // lines))
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    pos = (w - (x1 - x0) - w // 30, h - (y1 - y0) - h // 20)
    draw.text(pos, text, font=font, fill=(255, 255, 255, 170))
    return Image.alpha_composite(out, layer).convert("RGB")


def logo(img: Image.Image, frac: float = 0.12) -> Image.Image:
    """A solid logo box in the upper left corner, `frac` of the short side."""
    out = img.copy()
    w, h = out.size
    s = int(min(w, h) * frac)
    draw = ImageDraw.Draw(out)
    m = s // 4
    draw.rectangle([m, m, m + s, m + s], fill=(220, 30, 30), outline=(255, 255, 255), width=2)
    draw.ellipse([m + s // 4, m + s // 4, m + 3 * s // 4, m + 3 * s // 4], fill=(255, 255, 255))
    return out


def border(img: Image.Image, frac: float = 0.02, colour=(255, 255, 255)) -> Image.Image:
    """A uniform frame: the canvas grows by 2*frac per dimension (~4% for the default)."""
    w, h = img.size
    bx, by = max(2, round(w * frac)), max(2, round(h * frac))
    out = Image.new(img.mode, (w + 2 * bx, h + 2 * by), colour if img.mode == "RGB" else 255)
    out.paste(img, (bx, by))
    return out


def blur(img: Image.Image, radius: float = 1.0) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(radius))


def noise(img: Image.Image, sigma: float = 6.0, seed: int = 0) -> Image.Image:
    arr = np.asarray(img, dtype=np.float32)
    arr = arr + np.random.default_rng(seed).normal(0, sigma, size=arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), img.mode)


def crop(img: Image.Image, frac: float = 0.025) -> Image.Image:
    """Trim `frac` of each dimension, split over both sides."""
    w, h = img.size
    dx, dy = round(w * frac / 2), round(h * frac / 2)
    return img.crop((dx, dy, w - dx, h - dy))


def with_metadata(
    img: Image.Image,
    date: str = "2019:07:14 10:11:12",
    make: str = "Canon",
    model: str = "Canon EOS 80D",
    quality: int = 92,
) -> bytes:
    """JPEG bytes of `img` with camera EXIF (a changed-metadata copy when the pixels are the same)."""
    return encode(img, "JPEG", quality=quality, exif=exif(date=date, make=make, model=model))


def restamp_metadata(
    data: bytes, date: str = "2001:01:01 00:00:00", make: str = "Other", model: str = "Other 1"
) -> bytes:
    """A JPEG's bytes with its EXIF replaced (Pillow re-encodes the pixels at a high quality)."""
    im = decoded(data)
    return encode(im, "JPEG", quality=95, exif=exif(date=date, make=make, model=model))


def strip_metadata(data: bytes) -> bytes:
    """The JPEG's APP segments (EXIF, XMP, comments) removed; the entropy-coded image data is unchanged."""
    assert data[:2] == b"\xff\xd8"
    out, i = [b"\xff\xd8"], 2
    while i < len(data):
        assert data[i] == 0xFF
        marker = data[i + 1]
        if marker == 0xDA:  # start of scan: the rest is image data
            out.append(data[i:])
            break
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        seg = data[i : i + 2 + length]
        if not (0xE1 <= marker <= 0xEF or marker == 0xFE):  # keep APP0 (JFIF) and tables
            out.append(seg)
        i += 2 + length
    return b"".join(out)


def add_comment(data: bytes, text: bytes = b"edited by a photo manager") -> bytes:
    """A JPEG with a COM segment inserted after SOI: different bytes, same pixels."""
    assert data[:2] == b"\xff\xd8"
    seg = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
    return data[:2] + seg + data[2:]


def gray_array(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"))


# --------------------------------------------------------------------------- reading scan results


def names(paths) -> set[str]:
    return {os.path.basename(p) for p in paths}


def group_names(result) -> list[set[str]]:
    """Each group of a ScanResult as a set of file names (relative to nothing: names must be unique)."""
    return [{os.path.basename(m.file.path) for m in g.members} for g in result.groups]


def group_of(result, name: str) -> set[str] | None:
    for g in group_names(result):
        if name in g:
            return g
    return None
