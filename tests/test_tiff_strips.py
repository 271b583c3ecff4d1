"""Large TIFFs decoded a band of strips (or rows of tiles) at a time: the same work image as Pillow's whole decode,
never more than a band decoded at once, and Pillow's whole decode for anything the bands do not read."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

import dedupe.tiff_strips as strips
from dedupe.decode import _TRANSPOSE, DecodeError, decode, decode_color
from images import _STORE, encode, photo, store_oriented

BIG = 10**9
SIZE = (1001, 763)  # not a multiple of the reduction factor (3) either way


@pytest.fixture(scope="module")
def big():
    return photo(21, (500, 380)).resize(SIZE, Image.Resampling.BICUBIC)


@pytest.fixture
def bands(monkeypatch):
    """Bands of 16,384 pixels, so a test-sized picture takes many: (pixels, strips or rows of tiles) of every
    band decoded."""
    monkeypatch.setattr(strips, "BAND_PIXELS", 1 << 14)
    seen: list[tuple[int, int]] = []
    mini = strips._mini

    def spy(order, tags, width, rows, units, read):
        across = -(-width // strips._value(order, tags[322])[0]) if 322 in tags else 1
        seen.append((width * rows, len(units) // across))
        return mini(order, tags, width, rows, units, read)

    monkeypatch.setattr(strips, "_mini", spy)
    return seen


def whole(data: bytes, monkeypatch) -> tuple[np.ndarray, object]:
    """The work image as Pillow's whole decode gives it."""
    with monkeypatch.context() as m:
        m.setattr(strips, "reduced", lambda *a: None)
        return decode(data, BIG)


CASES = {
    "RGB": lambda p: encode(p, "TIFF"),
    "RGB LZW": lambda p: encode(p, "TIFF", compression="tiff_lzw"),
    "RGB deflate": lambda p: encode(p, "TIFF", compression="tiff_adobe_deflate"),
    "RGB packbits": lambda p: encode(p, "TIFF", compression="packbits"),
    "RGB JPEG": lambda p: encode(p, "TIFF", compression="jpeg"),
    "RGB LZW, 7 rows a strip": lambda p: encode(p, "TIFF", compression="tiff_lzw", strip_size=SIZE[0] * 3 * 7),
    "RGB LZW, tiles": lambda p: encode(p, "TIFF", compression="tiff_lzw", tile=(128, 96)),
    "gray LZW": lambda p: encode(p.convert("L"), "TIFF", compression="tiff_lzw"),
    "palette LZW": lambda p: encode(p.convert("P"), "TIFF", compression="tiff_lzw"),
    "bilevel G4": lambda p: encode(p.convert("1"), "TIFF", compression="group4"),
    "CMYK LZW": lambda p: encode(p.convert("CMYK"), "TIFF", compression="tiff_lzw"),
}


@pytest.mark.parametrize("case", CASES)
def test_bands_give_the_whole_decodes_work_image(big, bands, monkeypatch, case):
    data = CASES[case](big)
    want, want_info = whole(data, monkeypatch)
    got, info = decode(data, BIG)
    assert len(bands) >= 2  # libtiff writes its G4 pictures in strips of 520 rows
    assert all(pixels <= 1 << 14 or units == 1 for pixels, units in bands)  # one strip may be more
    assert got.shape == want.shape
    # CMYK is reduced after its conversion to RGB, the whole decode before it: a grey level apart at most
    assert np.abs(got.astype(int) - want).max() <= (1 if case == "CMYK LZW" else 0)
    assert info == want_info


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_banded_tiff_is_turned_by_its_orientation(big, bands, orientation):
    """The stored pixels reduced, then turned (the whole decode turns, then reduces: blocks from another corner)."""
    stored = big.transpose(_STORE[orientation])
    got, info = decode(store_oriented(big, orientation, "TIFF", compression="tiff_lzw"), BIG)
    plain, _ = decode(encode(stored, "TIFF", compression="tiff_lzw"), BIG)
    assert bands
    assert (info.width, info.height) == SIZE
    assert info.orientation == orientation
    assert np.array_equal(got, np.asarray(Image.fromarray(plain).transpose(_TRANSPOSE[orientation])))


def test_from_a_path_as_from_bytes(big, bands, tmp_path, monkeypatch):
    data = CASES["RGB LZW"](big)
    path = tmp_path / "scan.tif"
    path.write_bytes(data)
    assert np.array_equal(decode(str(path), BIG)[0], decode(data, BIG)[0])
    assert len(bands) > 20


@pytest.mark.parametrize(
    "make",
    [
        lambda p: encode(p.convert("RGBA"), "TIFF", compression="tiff_lzw"),  # alpha: composited on white
        lambda p: encode(Image.fromarray(np.asarray(p.convert("L")).astype(np.uint16) * 257), "TIFF"),  # 16-bit
        lambda p: encode(p, "TIFF", compression="tiff_lzw", save_all=True, append_images=[p.rotate(90)]),  # pages
        lambda p: encode(p, "TIFF", big_tiff=True),  # uncompressed: libtiff would write a classic TIFF
    ],
    ids=["alpha", "16-bit", "two pages", "BigTIFF"],
)
def test_what_bands_do_not_read_is_decoded_whole(big, bands, monkeypatch, make):
    data = make(big)
    got, _ = decode(data, BIG)
    assert bands == []
    assert np.array_equal(got, whole(data, monkeypatch)[0])


def test_a_small_tiff_is_decoded_whole(bands):
    decode(encode(photo(3, (320, 240)), "TIFF", compression="tiff_lzw"), BIG)
    assert bands == []


def test_strips_that_do_not_add_up_are_left_to_pillow(big, bands, monkeypatch):
    """A strip count that does not cover the picture is not a layout the bands read; Pillow's decode says
    what it makes of the file."""
    data = bytearray(CASES["RGB LZW, 7 rows a strip"](big))
    order, tags = strips._first_ifd(lambda at, size: bytes(data[at : at + size]))
    assert order == "<"
    # the directory's rows-per-strip entry, 7 -> 8: fewer strips than the offsets list
    at = struct.unpack("<I", data[4:8])[0]
    for n in range(struct.unpack("<H", data[at : at + 2])[0]):
        entry = at + 2 + 12 * n
        if struct.unpack("<H", data[entry : entry + 2])[0] == 278:
            data[entry + 8 : entry + 12] = struct.pack("<I", 8)
    assert strips.reduced(Image.open(io.BytesIO(bytes(data))), bytes(data), 320) is None


def test_a_truncated_banded_tiff_is_a_decode_error(big, bands):
    data = CASES["RGB LZW"](big)
    with pytest.raises(DecodeError):
        decode(data[: len(data) // 2], BIG)


@pytest.mark.parametrize("orientation", [1, 6])
def test_colour_view_of_a_banded_tiff(big, bands, tmp_path, monkeypatch, orientation):
    """The report's colour view reads a large TIFF in bands too, turned as the work image is."""
    path = tmp_path / "scan.tif"
    path.write_bytes(store_oriented(big, orientation, "TIFF", compression="tiff_lzw"))
    got = decode_color(str(path), 300)
    assert bands
    with monkeypatch.context() as m:
        m.setattr(strips, "reduced", lambda *a: None)
        want = decode_color(str(path), 300)
    assert got.shape == want.shape and got.shape[2] == 3
    if orientation == 1:
        assert np.array_equal(got, want)
    else:  # reduced from the other corner: the same picture, not the same blocks
        assert np.abs(got.astype(int) - want).mean() < 3
