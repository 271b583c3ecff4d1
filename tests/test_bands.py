"""Large TIFFs and PNGs decoded a band of rows at a time: the same work image as Pillow's whole decode, never more
than a band decoded at once, and Pillow's whole decode for anything the bands do not read."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

import dedupe.bands as bands_module
import dedupe.decode as decode_module
from dedupe.decode import _TRANSPOSE, DecodeError, decode, decode_color
from images import _STORE, encode, photo, store_oriented

BIG = 10**9
SIZE = (1001, 763)  # not a multiple of the reduction factor (3) either way


@pytest.fixture(scope="module")
def big():
    return photo(21, (500, 380)).resize(SIZE, Image.Resampling.BICUBIC)


@pytest.fixture
def bands(monkeypatch):
    """Bands of 16,384 pixels, from 32,768 pixels on, so a test-sized picture takes many: the size of every band
    decoded."""
    monkeypatch.setattr(bands_module, "BAND_PIXELS", 1 << 14)
    monkeypatch.setattr(bands_module, "FROM_PIXELS", {"TIFF": 1 << 15, "PNG": 1 << 15})
    seen: list[tuple[int, int]] = []
    prepare = decode_module._reducible

    def spy(band):
        if band.size not in (SIZE, SIZE[::-1]):  # a band, not a whole picture on its way to _reduce
            seen.append(band.size)
        return prepare(band)

    spy.unwatched = prepare
    monkeypatch.setattr(decode_module, "_reducible", spy)
    return seen


def whole(data: bytes, monkeypatch) -> tuple[np.ndarray, object]:
    """The work image as Pillow's whole decode gives it."""
    with monkeypatch.context() as m:
        m.setattr(bands_module, "reduced", lambda *a: None)
        m.setattr(decode_module, "_png_gray", lambda *a: None)  # Pillow's, not OpenCV's, for PNGs
        m.setattr(decode_module, "_reducible", getattr(decode_module._reducible, "unwatched", decode_module._reducible))
        return decode(data, BIG)


def transparent(p: Image.Image) -> Image.Image:
    rgba = np.asarray(p.convert("RGBA")).copy()
    rgba[..., 3] = np.linspace(0, 255, p.width).astype(np.uint8)[None, :]
    return Image.fromarray(rgba)


CASES = {
    "TIFF RGB": lambda p: encode(p, "TIFF"),
    "TIFF RGB LZW": lambda p: encode(p, "TIFF", compression="tiff_lzw"),
    "TIFF RGB deflate": lambda p: encode(p, "TIFF", compression="tiff_adobe_deflate"),
    "TIFF RGB packbits": lambda p: encode(p, "TIFF", compression="packbits"),
    "TIFF RGB JPEG": lambda p: encode(p, "TIFF", compression="jpeg"),
    "TIFF RGB LZW, 7 rows a strip": lambda p: encode(p, "TIFF", compression="tiff_lzw", strip_size=SIZE[0] * 3 * 7),
    "TIFF RGB LZW, tiles": lambda p: encode(p, "TIFF", compression="tiff_lzw", tile=(128, 96)),
    "TIFF RGBA LZW": lambda p: encode(transparent(p), "TIFF", compression="tiff_lzw"),
    "TIFF gray LZW": lambda p: encode(p.convert("L"), "TIFF", compression="tiff_lzw"),
    "TIFF palette LZW": lambda p: encode(p.convert("P"), "TIFF", compression="tiff_lzw"),
    "TIFF bilevel G4": lambda p: encode(p.convert("1"), "TIFF", compression="group4"),
    "TIFF CMYK LZW": lambda p: encode(p.convert("CMYK"), "TIFF", compression="tiff_lzw"),
    "PNG RGB": lambda p: encode(p, "PNG"),
    "PNG RGB, colour key": lambda p: encode(p, "PNG", transparency=(10, 20, 30)),
    "PNG RGBA": lambda p: encode(transparent(p), "PNG"),
    "PNG gray": lambda p: encode(p.convert("L"), "PNG"),
    "PNG gray and alpha": lambda p: encode(transparent(p).convert("LA"), "PNG"),
    "PNG palette": lambda p: encode(p.convert("P"), "PNG"),
    "PNG palette, transparent index": lambda p: encode(p.convert("P"), "PNG", transparency=3),
}


@pytest.mark.parametrize("case", CASES)
def test_bands_give_the_whole_decodes_work_image(big, bands, monkeypatch, case):
    data = CASES[case](big)
    want, want_info = whole(data, monkeypatch)
    got, info = decode(data, BIG)
    assert len(bands) >= 2  # libtiff writes its G4 pictures in strips of 520 rows
    assert sum(h for _, h in bands) == SIZE[1]
    assert np.array_equal(got, want)
    assert info == want_info


def test_tiff_bands_are_whole_strips_of_about_band_pixels(big, bands):
    decode(CASES["TIFF RGB LZW, 7 rows a strip"](big), BIG)
    assert len(bands) > 20
    assert all(w * h <= 1 << 14 and h % 7 == 0 for w, h in bands[:-1])


def test_png_metadata_after_its_pixels_are_read(big, bands, monkeypatch):
    """Pillow finds an eXIf chunk after the pixels only by loading them: the bands carry every chunk."""
    stored = big.transpose(_STORE[6])
    data = encode(stored, "PNG")
    exif = Image.Exif()
    exif[274], exif[306] = 6, "2021:03:04 05:06:07"
    chunk = bands_module.png_chunk(b"eXIf", exif.tobytes())
    data = data[:-12] + chunk + data[-12:]  # before IEND
    got, info = decode(data, BIG)
    want, want_info = whole(data, monkeypatch)
    assert bands
    assert (info.orientation, info.exif_date) == (6, "2021:03:04 05:06:07")
    assert (info.width, info.height) == SIZE == (want_info.width, want_info.height)
    assert got.shape == want.shape


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
    data = CASES["TIFF RGB LZW"](big)
    path = tmp_path / "scan.tif"
    path.write_bytes(data)
    assert np.array_equal(decode(str(path), BIG)[0], decode(data, BIG)[0])
    assert len(bands) > 20
    png = tmp_path / "scan.png"
    png.write_bytes(CASES["PNG RGBA"](big))
    assert np.array_equal(decode(str(png), BIG)[0], decode(png.read_bytes(), BIG)[0])


@pytest.mark.parametrize(
    "make",
    [
        lambda p: encode(Image.fromarray(np.asarray(p.convert("L")).astype(np.uint16) * 257), "TIFF"),  # 16-bit
        lambda p: encode(p, "TIFF", compression="tiff_lzw", save_all=True, append_images=[p.rotate(90)]),  # pages
        lambda p: encode(p, "TIFF", big_tiff=True),  # uncompressed: libtiff would write a classic TIFF
        lambda p: encode(p, "PNG", save_all=True, append_images=[p.rotate(90)]),  # animated
        lambda p: encode(Image.fromarray(np.asarray(p.convert("L")).astype(np.uint16) * 257), "PNG"),  # 16-bit
    ],
    ids=["TIFF 16-bit", "TIFF two pages", "BigTIFF", "APNG", "PNG 16-bit"],
)
def test_what_bands_do_not_read_is_decoded_whole(big, bands, monkeypatch, make):
    data = make(big)
    got, _ = decode(data, BIG)
    assert bands == []
    assert np.array_equal(got, whole(data, monkeypatch)[0])


def test_an_interlaced_png_is_left_to_pillow(big):
    """Pillow writes no interlaced PNG: the header of one that says so (Adam7 passes are not rows)."""
    data = encode(big, "PNG")
    assert data[12:16] == b"IHDR"
    header = data[16:28] + b"\x01"
    data = data[:8] + bands_module.png_chunk(b"IHDR", header) + data[33:]
    with pytest.MonkeyPatch.context() as m:
        m.setattr(bands_module, "FROM_PIXELS", {"TIFF": 1 << 15, "PNG": 1 << 15})
        m.setattr(bands_module, "BAND_PIXELS", 1 << 14)
        assert bands_module.reduced(Image.open(io.BytesIO(data)), data, 320, decode_module._reducible) is None
        plain = encode(big, "PNG")
        assert bands_module.reduced(Image.open(io.BytesIO(plain)), plain, 320, decode_module._reducible) is not None


def test_a_small_tiff_is_decoded_whole(bands):
    decode(encode(photo(3, (320, 240)), "TIFF", compression="tiff_lzw"), BIG)
    assert bands == []


def test_strips_that_do_not_add_up_are_left_to_pillow(big, bands, monkeypatch):
    """A strip count that does not cover the picture is not a layout the bands read; Pillow's decode says
    what it makes of the file."""
    data = bytearray(CASES["TIFF RGB LZW, 7 rows a strip"](big))
    order, tags = bands_module._first_ifd(lambda at, size: bytes(data[at : at + size]))
    assert order == "<"
    # the directory's rows-per-strip entry, 7 -> 8: fewer strips than the offsets list
    at = struct.unpack("<I", data[4:8])[0]
    for n in range(struct.unpack("<H", data[at : at + 2])[0]):
        entry = at + 2 + 12 * n
        if struct.unpack("<H", data[entry : entry + 2])[0] == 278:
            data[entry + 8 : entry + 12] = struct.pack("<I", 8)
    assert bands_module.reduced(Image.open(io.BytesIO(bytes(data))), bytes(data), 320, decode_module._reducible) is None


@pytest.mark.parametrize("case", ["TIFF RGB LZW, 7 rows a strip", "PNG RGB"])
def test_a_truncated_banded_picture_is_a_decode_error(big, bands, case):
    """Its bands stop short: Pillow's whole decode says what is wrong (a TIFF's directory is at its end)."""
    data = CASES[case](big)
    with pytest.raises(DecodeError, match="truncated|unrecognised"):
        decode(data[: len(data) // 2], BIG)


@pytest.mark.parametrize("orientation", [1, 6])
def test_colour_view_of_a_banded_tiff(big, bands, tmp_path, monkeypatch, orientation):
    """The report's colour view reads a large TIFF in bands too, turned as the work image is."""
    path = tmp_path / "scan.tif"
    path.write_bytes(store_oriented(big, orientation, "TIFF", compression="tiff_lzw"))
    got = decode_color(str(path), 300)
    assert bands
    with monkeypatch.context() as m:
        m.setattr(bands_module, "reduced", lambda *a: None)
        want = decode_color(str(path), 300)
    assert got.shape == want.shape and got.shape[2] == 3
    if orientation == 1:
        assert np.array_equal(got, want)
    else:  # reduced from the other corner: the same picture, not the same blocks
        assert np.abs(got.astype(int) - want).mean() < 3
