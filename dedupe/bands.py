"""Large TIFFs and PNGs decoded a band of rows at a time, so that a 100 MP picture is never held whole.

Pillow hands a compressed TIFF to libtiff, which decodes all of it in one buffer: a 100 MP RGB LZW TIFF cost
579 MB more than the process had, against 14 MB for the same picture as a JPEG. A TIFF's strips (and its rows of
tiles) are compressed independently of each other, so a band of them, copied with the tags that describe the
pixels into a small TIFF of its own, is what Pillow decodes. A PNG's pixels are one zlib stream of rows, each
filtered against the row above: its rows are inflated a band at a time, and each band, behind the row above it
unfiltered, goes into a small PNG of its own with the original's other chunks (a 100 MP RGB PNG cost 195 MB, or
400 MB with alpha). Each band is box-reduced (PIL's reduce, on whole blocks) before the next is read: the same
pixels as the whole decode. Anything unusual (BigTIFF, separate colour planes, interlacing, animation, 16-bit
gray, a layout that does not add up) is left to Pillow's whole decode.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
from PIL import Image

BAND_PIXELS = 1 << 20
"""Pixels decoded at a time: 4 MB as Pillow holds RGB. A 100 MP LZW TIFF peaked 18 MB over what the process
had (58 MB with bands of 4 MP), in the time of the whole decode."""
FROM_PIXELS = {"TIFF": 2 * BAND_PIXELS, "PNG": 16 << 20}
"""Pictures larger than this are read in bands. A PNG up to 16 MP keeps its faster whole decode (by OpenCV,
straight to gray, for RGB): 2 bytes a pixel."""
MODES = ("L", "LA", "RGB", "RGBA", "CMYK", "1", "P")
"""Modes read in bands: no scale that depends on the whole picture (16-bit gray is scaled by its maximum;
Pillow reads 16-bit RGB as 8-bit RGB, which TIFF bands read too)."""
_PIXEL_TAGS = {256, 258, 259, 262, 266, 277, 278, 284, 317, 320, 322, 323, 338, 339, 347, 530, 531, 532}
"""Tags that say how the pixels are stored: width, bits, compression, photometric, fill order, samples, rows per
strip, planar configuration, predictor, colour map, tile size, extra samples, sample format, JPEG tables and the
YCbCr fields. Orientation is left out: the caller turns the picture."""
_STRIPS, _TILES = (273, 279), (324, 325)
_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
_MAX_VALUE = 64 << 20
"""Largest tag value read: the offsets of a 100 MP picture stored a row a strip take 40 KB."""
_PNG = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
"""Samples a pixel of each PNG colour type: gray, RGB, palette, gray and alpha, RGBA."""

Read = Callable[[int, int], bytes]


class _Layout(Exception):
    """The file is not laid out as this module reads it: Pillow decodes it whole."""


@dataclass
class Banded:
    image: Image.Image
    """The picture box-reduced by a whole factor to no less than the long side asked, not turned."""
    size: tuple[int, int]
    """Its stored width and height."""
    meta: Image.Image
    """Where its metadata are read, as Pillow reads them from the whole file."""


def reduced(
    im: Image.Image, data: bytes | str, long_side: int, prepare: Callable[[Image.Image], Image.Image]
) -> Banded | None:
    """The TIFF or PNG `im` (opened from `data`, the file's bytes or its path) decoded in bands, each one
    `prepare`d (converted as a whole picture is before it is reduced) and reduced; None for Pillow to decode it
    whole: a smaller picture, one stored in a single band, or one this module does not read."""
    if (
        im.format not in FROM_PIXELS
        or im.mode not in MODES
        or getattr(im, "n_frames", 1) > 1
        or im.width * im.height <= FROM_PIXELS[im.format]
        or max(im.size) // long_side < 2
    ):
        return None
    if isinstance(data, bytes):
        return _reduced(lambda at, size: data[at : at + size], im, long_side, prepare)
    with open(data, "rb") as fh:

        def read(at: int, size: int) -> bytes:
            fh.seek(at)
            return fh.read(size)

        return _reduced(read, im, long_side, prepare)


def _reduced(read: Read, im: Image.Image, long_side: int, prepare) -> Banded | None:
    reader = _tiff_bands if im.format == "TIFF" else _png_bands
    meta = [im] if im.format == "TIFF" else []
    try:
        width, height, bands = reader(read, im.mode, long_side, meta)
        factor = max(width, height) // long_side
        out, done, pending = None, 0, None  # source rows reduced so far; rows decoded but not yet reduced
        for band in bands:
            band = prepare(band)
            if pending is not None:
                joined = Image.new(band.mode, (width, pending.height + band.height))
                joined.paste(pending, (0, 0))
                joined.paste(band, (0, pending.height))
                band = joined
            # reduce averages whole blocks of `factor` rows: a band's last rows wait for the next band
            whole = band.height if done + band.height == height else band.height // factor * factor
            pending = band.crop((0, whole, width, band.height)) if whole < band.height else None
            if whole:
                part = band.crop((0, 0, width, whole)).reduce(factor)
                if out is None:
                    out = Image.new(part.mode, (-(-width // factor), -(-height // factor)))
                out.paste(part, (0, done // factor))
                done += whole
    except (_Layout, KeyError, IndexError, struct.error):
        return None
    return Banded(out, (width, height), meta[0]) if out is not None and done == height else None


def _tiff_bands(read: Read, mode: str, long_side: int, meta: list) -> tuple[int, int, Iterator[Image.Image]]:
    """(width, height, the decoded bands) of a TIFF's first image."""
    order, tags = _first_ifd(read)
    width, height = _value(order, tags[256])[0], _value(order, tags[257])[0]
    layout = list(_bands(order, tags, width, height, max(width, height) // long_side))

    def bands() -> Iterator[Image.Image]:
        for rows, units, unit_rows in layout:
            band = Image.open(io.BytesIO(_mini(order, tags, width, rows, units, unit_rows, read)))
            if band.size != (width, rows) or band.mode != mode:
                raise _Layout
            band.load()
            yield band

    return width, height, bands()


def _png_bands(read: Read, mode: str, long_side: int, meta: list) -> tuple[int, int, Iterator[Image.Image]]:
    """(width, height, the decoded bands) of an 8-bit, non-interlaced PNG; `meta` gets the first band's picture,
    which carries all the file's chunks but its pixels."""
    chunks, pos = [], 8  # (type, position, length) of every chunk
    while True:
        head = read(pos, 8)
        if len(head) < 8:
            raise _Layout
        length, kind = struct.unpack(">I4s", head)
        chunks.append((kind, pos, length))
        pos += 12 + length
        if kind == b"IEND":
            break
    kinds = [kind for kind, _, _ in chunks]
    if read(0, 8) != _PNG or kinds[0] != b"IHDR" or b"acTL" in kinds or b"IDAT" not in kinds:
        raise _Layout
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", read(chunks[0][1] + 8, 13))
    first, last = kinds.index(b"IDAT"), len(kinds) - 1 - kinds[::-1].index(b"IDAT")
    if depth != 8 or interlace or colour not in _CHANNELS or set(kinds[first : last + 1]) != {b"IDAT"}:
        raise _Layout
    stride = 1 + width * _CHANNELS[colour]
    before = b"".join(read(at, 12 + n) for _, at, n in chunks[1:first])
    after = b"".join(read(at, 12 + n) for _, at, n in chunks[last + 1 :])
    rows_per_band = max(1, BAND_PIXELS // width)
    if rows_per_band >= height:
        raise _Layout
    factor = max(width, height) // long_side
    rows_per_band = max(factor, rows_per_band // factor * factor)

    def bands() -> Iterator[Image.Image]:
        stream = (read(at + 8, n) for _, at, n in chunks[first : last + 1])
        inflate = zlib.decompressobj()
        above = None  # the row above the band, unfiltered
        for top in range(0, height, rows_per_band):
            rows = min(rows_per_band, height - top)
            raw = bytearray()
            while len(raw) < rows * stride:
                more = inflate.unconsumed_tail or next(stream, None)
                got = inflate.decompress(more, rows * stride - len(raw)) if more is not None else inflate.flush()
                if not got:
                    raise _Layout  # truncated: Pillow's whole decode says so
                raw += got
            body = raw if above is None else b"\0" + above + raw
            n = rows + (above is not None)
            ihdr = struct.pack(">IIBBBBB", width, n, 8, colour, 0, 0, 0)
            pixels = zlib.compress(bytes(body), 0)  # stored: Pillow inflates it at the speed of a copy
            band = Image.open(io.BytesIO(_PNG + png_chunk(b"IHDR", ihdr) + before + png_chunk(b"IDAT", pixels) + after))
            if band.size != (width, n) or band.mode != mode:
                raise _Layout
            band.load()
            if not meta:
                meta.append(band)
            above = np.asarray(band)[-1].tobytes()
            yield band if top == 0 else band.crop((0, 1, width, n))

    return width, height, bands()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _first_ifd(read: Callable[[int, int], bytes]) -> tuple[str, dict[int, tuple[int, int, bytes]]]:
    """(byte order, {tag: (type, count, value bytes)}) of the first image's directory, the pixel tags only."""
    head = read(0, 8)
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or struct.unpack(order + "H", head[2:4])[0] != 42:  # 43: BigTIFF
        raise _Layout
    (at,) = struct.unpack(order + "I", head[4:8])
    (count,) = struct.unpack(order + "H", read(at, 2))
    entries = read(at + 2, 12 * count)
    tags = {}
    for n in range(count):
        tag, kind, many, inline = struct.unpack_from(order + "HHI4s", entries, 12 * n)
        if tag not in _PIXEL_TAGS and tag not in (257, *_STRIPS, *_TILES):
            continue
        size = _SIZES.get(kind, 0) * many
        if not size or size > _MAX_VALUE:
            raise _Layout
        value = inline[:size] if size <= 4 else read(struct.unpack(order + "I", inline)[0], size)
        if len(value) != size:
            raise _Layout
        tags[tag] = (kind, many, value)
    return order, tags


def _value(order: str, entry: tuple[int, int, bytes]) -> list[int]:
    kind, many, value = entry
    code = {1: "B", 3: "H", 4: "I"}.get(kind)
    if code is None:
        raise _Layout
    return list(struct.unpack(f"{order}{many}{code}", value))


def _bands(order: str, tags: dict, width: int, height: int, factor: int):
    """(rows, [(offset, size) of each strip or tile], rows of each) for bands of whole strips or rows of tiles,
    about BAND_PIXELS each, and whole blocks of `factor` rows where the strips allow (no rows wait for the next
    band)."""
    if _value(order, tags.get(284, (3, 1, struct.pack(order + "H", 1))))[0] != 1:
        raise _Layout  # each colour in its own plane
    if 324 in tags:
        across = -(-width // _value(order, tags[322])[0])
        unit_rows = _value(order, tags[323])[0]
        offsets, sizes = _value(order, tags[324]), _value(order, tags[325])
    else:
        across = 1
        unit_rows = _value(order, tags.get(278, (4, 1, struct.pack(order + "I", height))))[0]
        offsets, sizes = _value(order, tags[273]), _value(order, tags[279])
    unit_rows = min(unit_rows, height)
    down = -(-height // unit_rows)
    if unit_rows < 1 or len(offsets) != across * down or len(sizes) != len(offsets):
        raise _Layout
    if across == 1 and unit_rows > 1 and _value(order, tags[259])[0] == 1:  # uncompressed: any row is a strip
        stride = -(-width * sum(_value(order, tags[258])) // 8)
        if any(size < stride * min(unit_rows, height - n * unit_rows) for n, size in enumerate(sizes)):
            raise _Layout
        offsets = [
            offset + r * stride
            for n, offset in enumerate(offsets)
            for r in range(min(unit_rows, height - n * unit_rows))
        ]
        sizes, unit_rows, down = [stride] * len(offsets), 1, height
    per_band = max(1, BAND_PIXELS // (width * unit_rows))
    if per_band >= down:
        raise _Layout  # one band: nothing to gain
    step = math.lcm(unit_rows, max(factor, 1)) // unit_rows
    if step <= per_band:
        per_band = per_band // step * step
    for first in range(0, down, per_band):
        last = min(down, first + per_band)
        rows = min(height, last * unit_rows) - first * unit_rows
        units = list(zip(offsets[first * across : last * across], sizes[first * across : last * across]))
        yield rows, units, unit_rows


def _mini(
    order: str, tags: dict, width: int, rows: int, units: list[tuple[int, int]], unit_rows: int, read
) -> memoryview:
    """A TIFF of `rows` rows made of these strips (of `unit_rows` rows) or tiles, with the original's pixel
    tags."""
    tiled = 324 in tags
    offsets_tag, sizes_tag = _TILES if tiled else _STRIPS
    entries = {tag: entry for tag, entry in tags.items() if tag in _PIXEL_TAGS}
    entries[257] = (4, 1, struct.pack(order + "I", rows))
    if not tiled:
        entries[278] = (4, 1, struct.pack(order + "I", unit_rows))
    entries[sizes_tag] = (4, len(units), struct.pack(f"{order}{len(units)}I", *(size for _, size in units)))
    entries[offsets_tag] = (4, len(units), b"\0" * 4 * len(units))  # filled in below
    tags_at = 8
    values_at = tags_at + 2 + 12 * len(entries) + 4
    extra = sum(len(v) + len(v) % 2 for _, _, v in entries.values() if len(v) > 4)
    pixels_at = values_at + extra
    starts, at = [], pixels_at
    for _, size in units:
        starts.append(at)
        at += size
    entries[offsets_tag] = (4, len(units), struct.pack(f"{order}{len(units)}I", *starts))
    head = (b"II" if order == "<" else b"MM") + struct.pack(order + "HI", 42, tags_at)
    table, values = [struct.pack(order + "H", len(entries))], []
    at = values_at
    for tag in sorted(entries):
        kind, many, value = entries[tag]
        if len(value) <= 4:
            table.append(struct.pack(order + "HHI", tag, kind, many) + value.ljust(4, b"\0"))
        else:
            table.append(struct.pack(order + "HHII", tag, kind, many, at))
            values.append(value + b"\0" * (len(value) % 2))
            at += len(value) + len(value) % 2
    table.append(b"\0\0\0\0")
    out = io.BytesIO()
    for part in (head, *table, *values):
        out.write(part)
    for offset, size in units:
        if out.write(read(offset, size)) != size:
            raise _Layout
    return out.getbuffer()
