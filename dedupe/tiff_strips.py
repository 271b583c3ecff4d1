"""A large TIFF decoded a band of rows at a time, so that a 100 MP scan is never held whole.

Pillow hands a compressed TIFF to libtiff, which decodes all of it in one buffer: a 100 MP RGB LZW TIFF cost
579 MB more than the process had, against 14 MB for the same picture as a JPEG. A TIFF's strips (and its rows of
tiles) are compressed independently of each other, so a band of them, copied with the tags that describe the
pixels into a small TIFF of its own, is what Pillow decodes, one band after another; each band is box-reduced
(PIL's reduce, on whole blocks) before the next is read. Anything unusual (BigTIFF, separate colour planes,
transparency, more than 8 bits a sample, a layout that does not add up) is left to Pillow's whole decode.
"""

from __future__ import annotations

import io
import math
import struct
from typing import Callable

from PIL import Image

BAND_PIXELS = 1 << 20
"""Pixels decoded at a time: 4 MB as Pillow holds RGB. A 100 MP LZW TIFF peaked 18 MB over what the process
had (58 MB with bands of 4 MP), in the time of the whole decode."""
MODES = ("L", "RGB", "CMYK", "1", "P")
"""Modes whose reduction is the same band by band: no alpha, no scale that depends on the whole picture (16-bit
gray is scaled by its maximum; Pillow reads 16-bit RGB as 8-bit RGB, which bands read too)."""
_PIXEL_TAGS = {256, 258, 259, 262, 266, 277, 278, 284, 317, 320, 322, 323, 338, 339, 347, 530, 531, 532}
"""Tags that say how the pixels are stored: width, bits, compression, photometric, fill order, samples, rows per
strip, planar configuration, predictor, colour map, tile size, extra samples, sample format, JPEG tables and the
YCbCr fields. Orientation is left out: the caller turns the picture."""
_STRIPS, _TILES = (273, 279), (324, 325)
_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
_MAX_VALUE = 64 << 20
"""Largest tag value read: the offsets of a 100 MP picture stored a row a strip take 40 KB."""


class _Layout(Exception):
    """The file is not laid out as this module reads it: Pillow decodes it whole."""


def reduced(im: Image.Image, data: bytes | str, long_side: int) -> tuple[Image.Image, tuple[int, int]] | None:
    """(the picture box-reduced by a whole factor to no less than `long_side`, as _reduce_bands gives it, but not
    turned by its orientation; its stored width and height), or None for Pillow to decode it whole: a picture of
    two bands' pixels or fewer, one stored in a single band, or one this module does not read. `data` is the file's bytes or its path."""
    if (
        im.format != "TIFF"
        or im.mode not in MODES
        or "transparency" in im.info
        or getattr(im, "n_frames", 1) > 1
        or im.width * im.height <= 2 * BAND_PIXELS
    ):
        return None
    if isinstance(data, bytes):
        return _reduced(lambda at, size: data[at : at + size], im.mode, long_side)
    with open(data, "rb") as fh:

        def read(at: int, size: int) -> bytes:
            fh.seek(at)
            return fh.read(size)

        return _reduced(read, im.mode, long_side)


def _reduced(read: Callable[[int, int], bytes], mode: str, long_side: int):
    try:
        order, tags = _first_ifd(read)
        width, height = _value(order, tags[256])[0], _value(order, tags[257])[0]
        factor = max(width, height) // long_side
        bands = list(_bands(order, tags, width, height, factor))
    except (_Layout, KeyError, IndexError, struct.error):
        return None
    if factor < 2:
        return None
    out, done, pending = None, 0, None  # source rows reduced so far; rows decoded but not yet reduced
    for rows, units in bands:
        try:
            band = Image.open(io.BytesIO(_mini(order, tags, width, rows, units, read)))
        except _Layout:
            return None
        if band.size != (width, rows) or band.mode != mode:
            return None
        band.load()
        if mode not in ("L", "RGB"):
            band = band.convert("L" if mode == "1" else "RGB")
        if pending is not None:
            joined = Image.new(band.mode, (width, pending.height + rows))
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
    return (out, (width, height)) if out is not None and done == height else None


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
    """(rows, [(offset, size) of each strip or tile]) for bands of whole strips or rows of tiles, about
    BAND_PIXELS each, and whole blocks of `factor` rows where the strips allow (no rows wait for the next band)."""
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
        tags[278] = (4, 1, struct.pack(order + "I", 1))
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
        yield rows, units


def _mini(order: str, tags: dict, width: int, rows: int, units: list[tuple[int, int]], read) -> memoryview:
    """A TIFF of `rows` rows made of these strips or tiles, with the original's pixel tags."""
    tiled = 324 in tags
    offsets_tag, sizes_tag = _TILES if tiled else _STRIPS
    entries = {tag: entry for tag, entry in tags.items() if tag in _PIXEL_TAGS}
    entries[257] = (4, 1, struct.pack(order + "I", rows))
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
