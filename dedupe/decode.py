"""Stage 3: a file's bytes -> one small, upright grayscale image and what it says about itself.

Decoded once and small: a JPEG is decoded in the DCT domain at 1/2, 1/4 or 1/8 scale (Pillow's draft), so
a 12 MP photo is never fully decoded just to be hashed. A bad file raises DecodeError with a reason that
goes into the report; nothing else escapes.
"""

from __future__ import annotations

import io
import mmap
import struct
import warnings
import zlib

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from . import bands
from .bands import png_chunk
from .model import ImageInfo

try:  # HEIC/HEIF from phones; optional at run time so a broken wheel only disables that format
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover
    pillow_heif = None

WORK_MIN = 192
"""Long side a JPEG is drafted to at least; the work image the features are computed from. At 128 a
JPEG of 1,024-1,535 pixels came out at 128-191: ORB found 7-40 keypoints there, and crops of such
pictures were missed (2 of 3 crop misses on a harder corpus). Those files are now drafted at 1/4
(1.4 ms more each); from 1,536 pixels on, 1/8 gives 192 or more as before (76 of scale5000's 4,878
JPEGs are affected)."""
WORK_MAX = 320
"""Long side the work image is reduced to when the decoder gives more: the keypoints are found at this size
(features.keypoints.LONG_SIDE), the hashes and the thumbnail at 128, so more pixels only cost time."""
BYTE_COST = {"JPEG": 1.0, "PNG": 1.5, "GIF": 1.5, "TIFF": 0.5, "BMP": 0.2, "WEBP": 12.0, "HEIF": 15.0, "AVIF": 15.0}
"""Time to decode a byte of each format, relative to a JPEG's (about 20 ms a MB at 1/8 scale): medians
measured on the benchmark corpora (TIFF 0.45, BMP 0.2, PNG 1.5, lossy WebP 12, HEIF 15 times a JPEG's).
GIF is taken as PNG (both deflate-like), AVIF as HEIF (both decoded in full)."""


def decode_cost(fmt: str, size: int) -> float:
    """A file's decode time, in JPEG bytes: what the decode queue is ordered by."""
    return size * BYTE_COST.get(fmt, 1.0)


BACKGROUND = 255
"""Transparent pixels are composited on white, so a PNG with alpha matches its flattened copy."""

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_LOSSLESS = {"PNG", "BMP", "GIF", "PPM", "TGA"}
_TIFF_LOSSLESS = {"raw", "tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "packbits", "tiff_raw_16", None}


class DecodeError(Exception):
    """The file cannot be used as a picture; str(error) is the reason shown to the user."""


def _clean(value) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value or None


def _exif_fields(im: Image.Image) -> tuple[int, str | None, str | None]:
    """(orientation, date, camera) from EXIF; a damaged EXIF block yields defaults, not an error."""
    try:
        exif = im.getexif()
        orientation = exif.get(0x0112, 1)
        sub = exif.get_ifd(0x8769)
        date = _clean(sub.get(0x9003)) or _clean(exif.get(0x0132))
        make, model = _clean(exif.get(0x010F)), _clean(exif.get(0x0110))
    except Exception:  # EXIF parsing in the wild raises anything; it is metadata, not the picture
        return 1, None, None
    if model and make and model.lower().startswith(make.lower().split()[0]):
        camera = model
    else:
        camera = " ".join(x for x in (make, model) if x) or None
    if not isinstance(orientation, int) or orientation not in range(1, 9):
        orientation = 1
    return orientation, date, camera


def metadata(data: bytes) -> tuple[str, int, str | None, str | None] | None:
    """(format, orientation, date, camera) of a picture, from its header, without decoding it; None when
    the header cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
            return (im.format or "?", *_exif_fields(im))
    except Exception:  # the decoder will say what is wrong with the file
        return None


def _lossless(im: Image.Image, head: bytes) -> bool:
    fmt = im.format or ""
    if fmt in _LOSSLESS:
        return True
    if fmt == "TIFF":
        return im.info.get("compression") in _TIFF_LOSSLESS
    if fmt == "WEBP":
        return head[12:16] == b"VP8L"
    return False


def _to_gray(im: Image.Image) -> np.ndarray:
    """Any mode -> 8-bit grayscale; alpha composited on BACKGROUND, 16-bit and float scaled down."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = arr.max() if arr.size else 0
        scale = 255.0 if (mode == "F" and top <= 1.0) else (1 / 257 if top > 255 else 1.0)
        return np.clip(arr * scale, 0, 255).astype(np.uint8)
    flat = _flatten(im)
    if flat is not None:
        return np.asarray(flat.convert("L"))
    if mode == "CMYK":
        im = im.convert("RGB")
    return np.asarray(im if im.mode == "L" else im.convert("L"))


def _flatten(im: Image.Image) -> Image.Image | None:
    """A picture with transparency composited on BACKGROUND (RGBA), or None when it has none."""
    if im.mode not in ("RGBA", "LA", "PA", "RGBa", "La") and "transparency" not in im.info:
        return None
    rgba = im.convert("RGBA")
    flat = Image.new("RGBA", rgba.size, (BACKGROUND, BACKGROUND, BACKGROUND, 255))
    flat.alpha_composite(rgba)
    return flat


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Any mode -> RGB uint8, alpha composited on BACKGROUND as the grayscale work image is."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F", "L"):
        return np.repeat(_to_gray(im)[:, :, None], 3, axis=2)
    flat = _flatten(im)
    return np.asarray((flat if flat is not None else im).convert("RGB"))


def decode(data: bytes | str, max_pixels: int) -> tuple[np.ndarray, ImageInfo]:
    """The upright grayscale work image (long side <= WORK_MAX) and the picture's info.

    `data` is the file's bytes, or its path for a file too big to hold in memory at once.
    Raises DecodeError for anything that is not a readable, reasonably sized picture.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
            width, height = im.size
            if width * height > max_pixels:
                raise DecodeError(f"too many pixels ({width}x{height}; the limit is {max_pixels:,})")
            if width < 1 or height < 1:
                raise DecodeError(f"invalid dimensions {width}x{height}")
            fmt = im.format or "?"
            banded = bands.reduced(im, data, WORK_MAX, _reducible)
            png = None if banded else _png_gray(im, data)
            if fmt == "PNG" and png is None and banded is None:  # Pillow loads a PNG to look for EXIF after the
                im.load()  # pixels: a broken pixel stream must raise here, not in _exif_fields (broken EXIF)
            orientation, date, camera = png[1] if png else _exif_fields(banded.meta if banded else im)
            lossless = _lossless(im, data[:16] if isinstance(data, bytes) else _head(data))
            if fmt == "JPEG" and max(width, height) > 2 * WORK_MAX:  # smaller ones are cheap in full
                scale = WORK_MIN / max(width, height)
                if scale < 0.5:
                    im.draft(
                        "L" if im.mode in ("L", "RGB", "YCbCr") else None,
                        (max(1, int(width * scale)), max(1, int(height * scale))),
                    )
            gray = png[0] if png else _webp_gray(im, data)
            if banded is not None:  # not turned: the stored size, the tag ours to apply
                gray, (width, height) = _to_gray(banded.image), banded.size
            elif gray is None:
                im.load()
            if png or banded or orientation == 1:
                to_apply = orientation
            else:  # Some loaders (TIFF in recent Pillow) turn the picture themselves while loading, report
                # the turned size up front and drop the tag: only a tag still there after loading is ours.
                to_apply = _exif_fields(im)[0]
            if gray is None:
                gray = _to_gray(_reduce(im, WORK_MAX))
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"too many pixels ({exc})") from None
    except UnidentifiedImageError:
        raise DecodeError("unrecognised or unsupported image data") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError) as exc:
        text = str(exc) or type(exc).__name__
        if "truncated" in text.lower() or isinstance(exc, EOFError):
            raise DecodeError(f"truncated file ({text})") from None
        raise DecodeError(f"corrupt or unsupported image ({text})") from None
    except MemoryError:
        raise DecodeError("not enough memory to decode") from None

    damaged = cut_short(gray) if fmt == "JPEG" else 0.0  # as stored: the decoder fills the last rows
    if to_apply in _TRANSPOSE:
        gray = np.asarray(Image.fromarray(gray).transpose(_TRANSPOSE[to_apply]))
        if to_apply >= 5:
            width, height = height, width
    gray = shrink(gray, WORK_MAX)
    info = ImageInfo(
        width=width,
        height=height,
        format=fmt,
        lossless=lossless,
        content_pixels=width * height,
        exif_date=date,
        camera=camera,
        orientation=orientation,
        cut_short=damaged,
    )
    return np.ascontiguousarray(gray), info


CUT_FILL, CUT_TOLERANCE = 128, 2
"""The grey a JPEG decoder gives the blocks it has no data for (every coefficient zero), and how far the
work image's reduction moves it where the fill meets the last blocks decoded."""
CUT_CONTENT = 16
"""Grey levels from the fill that the row where a cut-short file's fill begins reaches before it, in
what was decoded: the edge of a flat grey band of the picture itself rings within a few levels of it."""
CUT_ROWS = 0.1
"""Share of the height that the fill may reach up the columns where it begins: the rest of its row of
blocks, 2 to 8 rows of the work image; a grey frame's side runs up the whole picture."""


def cut_short(gray: np.ndarray) -> float:
    """Share of a decoded JPEG (in stored order) that looks filled by its decoder: a file cut short and
    closed with an end marker decodes without an error, the blocks it lacks a flat mid grey (CUT_FILL)
    to the last pixel. Counted only for a fill of at least a whole row that begins inside a row after
    picture content (CUT_CONTENT), and only a row of blocks high where it begins (CUT_ROWS): a grey band
    of the picture itself begins at a row's start or after its own ringing edge, and a grey frame's
    side runs up the picture."""
    h, w = gray.shape
    if (np.abs(gray[-1].astype(np.int16) - CUT_FILL) > CUT_TOLERANCE).any():
        return 0.0  # the last row alone tells almost every picture: the whole is measured only for a fill
    off = np.abs(gray.astype(np.int16) - CUT_FILL) > CUT_TOLERANCE
    differs = np.flatnonzero(off.ravel())
    start = int(differs[-1]) + 1 if len(differs) else 0
    row, col = divmod(start, w)
    if gray.size - start < w or col == 0:
        return 0.0
    if np.abs(gray[row, :col].astype(np.int16) - CUT_FILL).max() < CUT_CONTENT:
        return 0.0
    above = np.flatnonzero(off[:row, col:].any(axis=1))  # rows with picture right of where the fill begins
    if row - (int(above[-1]) + 1 if len(above) else 0) > CUT_ROWS * h:
        return 0.0
    return round((gray.size - start) / gray.size, 4)


def decode_color(path: str, long_side: int) -> np.ndarray:
    """The picture upright (EXIF orientation applied), RGB uint8, long side at most `long_side`.

    Decoded small as decode() does (a JPEG drafted in the DCT domain), but in colour, for what a person
    sees: the report's thumbnails and difference views. A file that no longer decodes raises DecodeError.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                w, h = im.size
                s = long_side / max(w, h)
                if im.format == "JPEG" and s < 1:
                    im.draft("RGB" if im.mode in ("RGB", "YCbCr") else None, (max(1, int(w * s)), max(1, int(h * s))))
                banded = bands.reduced(im, path, long_side, _reducible)
                if banded is None:
                    im.load()
                orientation = _exif_fields(banded.meta if banded else im)[0]  # after loading, as decode() does
                rgb = _to_rgb(banded.image if banded else _reduce(im, long_side))
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, MemoryError) as exc:
        raise DecodeError(f"cannot decode: {exc or type(exc).__name__}") from None
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"too many pixels ({exc})") from None
    if orientation in _TRANSPOSE:
        rgb = np.asarray(Image.fromarray(rgb).transpose(_TRANSPOSE[orientation]))
    return np.ascontiguousarray(shrink(rgb, long_side))


def _webp_gray(im: Image.Image, data: bytes | str) -> np.ndarray | None:
    """A large WebP with nothing to composite, decoded by OpenCV straight to gray; None for Pillow to
    decode. Pillow's WebP decoder holds a 12 MP picture three times over in RGBA: 190 MB and 0.35 s,
    against 48 MB and 0.18 s this way, the same pixels. Anything OpenCV cannot read is left to Pillow,
    which says why."""
    if (
        im.format != "WEBP"
        or im.mode not in ("RGB", "L")
        or "transparency" in im.info
        or getattr(im, "n_frames", 1) > 1
        or max(im.size) <= 2 * WORK_MAX
    ):
        return None
    gray = _cv_gray(data)
    return gray if gray is not None and gray.shape == (im.height, im.width) else None


def _cv_gray(data: bytes | str) -> np.ndarray | None:
    """OpenCV's grayscale decode of the file's bytes, or of the file at that path; None when it fails."""
    flags = cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION
    if isinstance(data, bytes):
        return cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    try:
        return cv2.imread(data, flags)
    except cv2.error:  # a path OpenCV cannot take
        return None


def _png_gray(im: Image.Image, data: bytes | str) -> tuple[np.ndarray, tuple[int, str | None, str | None]] | None:
    """A large RGB PNG with nothing to composite, decoded by OpenCV straight to gray and box-reduced as
    _reduce reduces any picture, with its EXIF fields; None for Pillow to decode. Pillow holds RGB at 4 bytes
    a pixel (a 48 MP PNG: 183 MB of peak memory); OpenCV's gray and the copy the cv2 binding returns of it
    take 2 (93 MB). The work image differs from Pillow's by rounding: libpng rounds its gray down. An 8-bit
    PNG over bands.FROM_PIXELS is read in bands instead, in less memory still; a 16-bit one comes here.

    Pillow finds an eXIf chunk after the pixels, or an orientation in XMP, only by loading the picture: the
    metadata are read from a miniature of the file instead, its chunks around a 3x1 picture. libpng's gray
    of that picture is checked against Pillow's: a file that gives its gamma (gAMA, sRGB) is converted in
    linear light by libpng, a different picture. Anything unusual is left to Pillow, which says why."""
    if im.format != "PNG" or im.mode != "RGB" or "transparency" in im.info or max(im.size) <= 2 * WORK_MAX:
        return None
    if (mini := _png_miniature(data if isinstance(data, bytes) else _mapped(data))) is None:
        return None
    try:
        probe = Image.open(io.BytesIO(mini))
        probe.load()
        fields = _exif_fields(probe)
        expected = np.asarray(probe.convert("L"), dtype=np.int16)
    except Exception:  # whatever it is, the full decode meets it too and reports it
        return None
    gray = cv2.imdecode(np.frombuffer(mini, np.uint8), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    if gray is None or gray.shape != expected.shape or np.abs(gray - expected).max() > 1:
        return None
    gray = _cv_gray(data)
    if gray is None or gray.shape != (im.height, im.width):
        return None
    return np.asarray(_reduce(Image.fromarray(gray), WORK_MAX)), fields


def _mapped(path: str) -> mmap.mmap | bytes:
    """A file too big to hold, mapped for its chunks to be read (its pixels are not touched)."""
    with open(path, "rb") as fh:
        try:
            return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # empty, or not mappable
            return b""


_PNG_PRIMARIES = (255, 0, 0, 0, 255, 0, 0, 0, 255)


def _png_miniature(data: bytes | mmap.mmap) -> bytes | None:
    """The PNG's chunks with its pixels replaced by one row of pure red, green and blue, for Pillow and
    libpng to read its metadata and colour chunks as they would in the file itself, without its pixels.
    None unless it is a complete, single-image, 8- or 16-bit RGB PNG without transparency."""
    if data[8:16] != b"\x00\x00\x00\x0dIHDR" or len(data) < 33:
        return None
    depth, colour, interlace = data[24], data[25], data[28]
    if depth not in (8, 16) or colour != 2 or interlace > 1:
        return None
    row = struct.pack(">9H", *(v * 257 for v in _PNG_PRIMARIES)) if depth == 16 else bytes(_PNG_PRIMARIES)
    chunks = [data[:8], png_chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 1, depth, 2, 0, 0, 0))]
    pos, pixels = 33, False
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind, end = data[pos + 4 : pos + 8], pos + 12 + length
        if end > len(data) or kind in (b"IHDR", b"tRNS", b"acTL"):
            return None
        if kind != b"IDAT":
            chunks.append(data[pos:end])
        elif not pixels:
            chunks.append(png_chunk(b"IDAT", zlib.compress(b"\x00" + row)))
            pixels = True
        if kind == b"IEND":
            return b"".join(chunks) if pixels else None
        pos = end
    return None


def _reduce(im: Image.Image, long_side: int) -> Image.Image:
    """A picture the decoder gave much larger than `long_side` (anything but a drafted JPEG), box-averaged
    by a whole factor to no less than `long_side`, before any mode conversion: converting and compositing
    a 12 MP PNG in full cost 4 passes over 48 MB."""
    factor = max(im.size) // long_side
    if factor < 2:
        return im
    return _reduce_bands(_reducible(im), factor)


def _reducible(im: Image.Image) -> Image.Image:
    """The picture in a mode that box-averaging is right for. Palette indices and colour keys cannot be
    averaged: those are converted (or composited) first; alpha is averaged premultiplied (Image.reduce does
    that)."""
    if im.mode in ("P", "PA", "1") or "transparency" in im.info:
        flat = _flatten(im)
        return flat if flat is not None else im.convert("L" if im.mode == "1" else "RGB")
    if im.mode.startswith("I;16"):
        return im.convert("I")
    return im


BAND_PIXELS = 4 << 20
"""Pixels of the decoded picture reduced at a time: Image.reduce of an RGBA picture premultiplies a copy
of all of it first, 400 MB more for 100 MP, where a band of rows costs 16 MB."""


def _reduce_bands(im: Image.Image, factor: int) -> Image.Image:
    """im.reduce(factor), a band of rows at a time: the same pixels (the bands are whole multiples of
    `factor` rows, and reduce averages whole blocks), without a full-size intermediate copy (reduce with
    a box would still premultiply all of an RGBA picture)."""
    width, height = im.size
    rows = max(factor, (BAND_PIXELS // max(width, 1)) // factor * factor)
    if rows >= height:
        return im.reduce(factor)
    bands = [im.crop((0, y, width, min(y + rows, height))).reduce(factor) for y in range(0, height, rows)]
    out = Image.new(bands[0].mode, (bands[0].width, sum(b.height for b in bands)))
    y = 0
    for band in bands:
        out.paste(band, (0, y))
        y += band.height
    return out


def _head(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(16)


def shrink(image: np.ndarray, long_side: int) -> np.ndarray:
    """Area-averaged reduction so the long side is at most `long_side` (never enlarges); gray or colour."""
    h, w = image.shape[:2]
    if max(h, w) <= long_side:
        return image
    s = long_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
