"""Stage 3: bytes -> one small upright grayscale work image plus ImageInfo; bad bytes -> DecodeError."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from dedupe.decode import WORK_MAX, WORK_MIN, DecodeError, decode, shrink
from dedupe.features.hashes import hamming, phash
from images import HAVE_HEIF, border, encode, exif, photo, store_oriented, with_metadata
from PIL.PngImagePlugin import PngInfo

BIG = 10**9


def dec(data: bytes, max_pixels: int = BIG):
    return decode(data, max_pixels)


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


@pytest.fixture(scope="module")
def pic():
    return photo(7, (320, 240))  # the work size: decoded as it is


@pytest.fixture(scope="module")
def ref(pic):
    gray, info = dec(encode(pic, "PNG"))
    return gray


def test_work_image_is_gray_uint8_and_info_is_filled(pic):
    gray, info = dec(with_metadata(pic, date="2020:02:03 04:05:06", make="NIKON CORPORATION", model="NIKON D750"))
    assert gray.dtype == np.uint8 and gray.ndim == 2 and gray.shape == (240, 320)
    assert gray.flags["C_CONTIGUOUS"]
    assert (info.width, info.height, info.format, info.lossless) == (320, 240, "JPEG", False)
    assert info.content_pixels == 320 * 240
    assert info.exif_date == "2020:02:03 04:05:06"
    assert info.camera  # make/model read
    assert "D750" in info.camera


@pytest.mark.parametrize("fmt,lossless", [("PNG", True), ("BMP", True), ("GIF", True), ("TIFF", True), ("JPEG", False)])
def test_lossless_flag(pic, fmt, lossless):
    assert dec(encode(pic, fmt))[1].lossless is lossless


def test_lossless_flag_webp(pic):
    assert dec(encode(pic, "WEBP", lossless=True))[1].lossless is True
    assert dec(encode(pic, "WEBP", quality=80))[1].lossless is False


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_applied(pic, ref, fmt, orientation):
    """A copy stored rotated/mirrored with the tag that makes it display upright decodes like the original."""
    gray, info = dec(store_oriented(pic, orientation, fmt))
    assert info.orientation == orientation
    assert (info.width, info.height) == (320, 240)  # as displayed
    assert gray.shape == ref.shape
    assert hamming(phash(gray), phash(ref)) <= 4
    assert mean_abs(gray, ref) < 6


def test_orientation_tag_without_rotated_pixels_is_a_different_view(pic, ref):
    """The tag is really applied: the same pixels with tag 3 decode upside down."""
    gray, _ = dec(encode(pic, "JPEG", exif=exif(orientation=3)))
    assert hamming(phash(gray), phash(ref)) > 16
    assert hamming(phash(gray[::-1, ::-1]), phash(ref)) <= 4


@pytest.mark.parametrize("orientation", [3, 6])
def test_exif_orientation_applied_tiff(pic, ref, orientation):
    gray, info = dec(store_oriented(pic, orientation, "TIFF"))
    assert (info.width, info.height) == (320, 240)
    assert gray.shape == ref.shape
    assert hamming(phash(gray), phash(ref)) <= 4


def test_bad_orientation_value_is_ignored(pic, ref):
    gray, info = dec(encode(pic, "PNG", exif=exif(orientation=99)))
    assert info.orientation == 1
    assert mean_abs(gray, ref) == 0


@pytest.fixture(scope="module")
def big_pic():
    return photo(9, (800, 600)).resize((4000, 3000), Image.Resampling.BICUBIC)


def test_large_jpeg_is_drafted_small_with_full_size_info(big_pic):
    gray, info = dec(encode(big_pic, quality=85))
    assert max(gray.shape) == WORK_MAX  # 1/8 in the DCT domain (500 px), the cheapest decode, then reduced
    assert (info.width, info.height) == (4000, 3000)
    assert info.content_pixels == 12_000_000
    assert gray.shape[1] / gray.shape[0] == pytest.approx(4 / 3, rel=0.02)
    small = np.asarray(big_pic.convert("L").resize((400, 300), Image.Resampling.BOX))
    assert hamming(phash(gray), phash(small)) <= 4


@pytest.mark.parametrize("side, work", [(1024, 256), (1400, 350), (1600, 200), (2048, 256)])
def test_a_small_jpeg_keeps_enough_pixels_for_its_keypoints(side, work):
    """Drafted to the smallest DCT scale that keeps WORK_MIN: 1/4 under 1,536 pixels, 1/8 from there on
    (then reduced to WORK_MAX when more)."""
    gray, info = dec(encode(photo(12, (side // 4, side // 4 * 3 // 4)).resize((side, side * 3 // 4)), quality=85))
    assert info.width == side and WORK_MIN <= max(gray.shape) <= WORK_MAX
    assert max(gray.shape) == min(work, WORK_MAX)


def test_large_jpeg_with_orientation_reports_displayed_size(big_pic):
    gray, info = dec(store_oriented(big_pic, 6, quality=85))
    assert (info.width, info.height) == (4000, 3000)
    assert gray.shape[1] > gray.shape[0] and max(gray.shape) <= WORK_MAX


def test_large_cmyk_jpeg_is_drafted(big_pic):
    gray, info = dec(encode(big_pic.convert("CMYK"), quality=85))
    assert max(gray.shape) <= WORK_MAX and (info.width, info.height) == (4000, 3000)
    plain, _ = dec(encode(big_pic, quality=85))
    assert hamming(phash(gray), phash(plain)) <= 4


def test_large_png_is_shrunk_to_work_size():
    big = photo(4, (300, 200)).resize((1800, 1200))
    gray, info = dec(encode(big, "PNG", compress_level=1))
    assert max(gray.shape) == WORK_MAX
    assert (info.width, info.height) == (1800, 1200)


@pytest.mark.parametrize("scale", [1, 5])  # 5: a large picture, reduced before it is composited
def test_alpha_composited_on_white(pic, scale):
    w, h = pic.size[0] * scale, pic.size[1] * scale
    rgba = pic.resize((w, h)).convert("RGBA")
    alpha = Image.new("L", (w, h), 255)
    alpha.paste(0, (0, 0, w // 2, h // 2))  # a fully transparent quarter
    alpha.paste(128, (w // 2, h // 2, w, h))  # a half transparent quarter
    rgba.putalpha(alpha)
    flat = Image.new("RGB", (w, h), (255, 255, 255))
    flat.paste(rgba, mask=rgba.getchannel("A"))
    g_alpha, _ = dec(encode(rgba, "PNG"))
    g_flat, _ = dec(encode(flat, "PNG"))
    assert g_alpha.shape == g_flat.shape == (240, 320)
    assert mean_abs(g_alpha, g_flat) < 1.0
    assert g_alpha[:110, :150].min() == 255  # transparent -> white, not black


@pytest.mark.parametrize("scale", [1, 5])  # 5: converted before it is reduced (indices cannot be averaged)
def test_palette_transparency_composited_on_white(pic, scale):
    big = pic.resize((pic.size[0] * scale, pic.size[1] * scale))
    pal = big.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    idx = np.asarray(pal).copy()
    idx[: 50 * scale, : 50 * scale] = 0
    pal = Image.fromarray(idx, "P")
    pal.putpalette(big.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).getpalette())
    gray, _ = dec(encode(pal, "PNG", transparency=0))
    assert gray[:49, :49].min() == 255
    flat = Image.new("RGBA", big.size, (255, 255, 255, 255))
    flat.alpha_composite(Image.open(io.BytesIO(encode(pal, "PNG", transparency=0))).convert("RGBA"))
    assert mean_abs(gray, dec(encode(flat.convert("RGB"), "PNG"))[0]) < 1.0


@pytest.mark.parametrize(
    "make",
    [
        "L",
        "LA",
        "P",
        "CMYK_JPEG",
        "I16_PNG",
        "I16_TIFF",
        "RGB_TIFF_LZW",
        "1",
    ],
)
@pytest.mark.parametrize("scale", [1, 4])  # 4: a large picture, reduced before any conversion
def test_modes_give_a_sane_gray_image(pic, make, scale):
    pic = pic.resize((pic.size[0] * scale, pic.size[1] * scale))
    ref, _ = dec(encode(pic, "PNG"))
    g8 = np.asarray(pic.convert("L"))
    data = {
        "L": lambda: encode(pic.convert("L"), "PNG"),
        "LA": lambda: encode(pic.convert("LA"), "PNG"),
        "P": lambda: encode(pic.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "CMYK_JPEG": lambda: encode(pic.convert("CMYK"), "JPEG", quality=95),
        "I16_PNG": lambda: encode(Image.fromarray(g8.astype(np.uint16) * 257), "PNG"),
        "I16_TIFF": lambda: encode(Image.fromarray(g8.astype(np.uint16) * 257), "TIFF"),
        "RGB_TIFF_LZW": lambda: encode(pic, "TIFF", compression="tiff_lzw"),
        "1": lambda: encode(pic.convert("1"), "PNG"),
    }[make]()
    gray, info = dec(data)
    if make == "CMYK_JPEG" and scale > 1:  # drafted smaller, as any large JPEG
        ref = shrink(ref, max(gray.shape))
    assert gray.dtype == np.uint8 and gray.shape == ref.shape
    if make == "I16_PNG":
        assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    if make == "1":  # dithered: only the broad picture survives
        assert hamming(phash(gray), phash(ref)) <= 12
    else:
        assert mean_abs(gray, ref) < 3
        assert hamming(phash(gray), phash(ref)) <= 4


def test_gif_first_frame(pic):
    second = photo(8, (400, 300))
    frames = [f.convert("P", palette=Image.Palette.ADAPTIVE) for f in (pic, second)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    gray, info = dec(buf.getvalue())
    assert info.format == "GIF"
    first, _ = dec(encode(pic, "PNG"))
    other, _ = dec(encode(second, "PNG"))
    assert hamming(phash(gray), phash(first)) <= 4
    assert hamming(phash(gray), phash(other)) > 16


@pytest.mark.skipif(not HAVE_HEIF, reason="pillow_heif not installed")
def test_heic_decodes(pic, ref):
    gray, info = dec(encode(pic, "HEIF", quality=85))
    assert info.format in ("HEIF", "HEIC")
    assert gray.shape == ref.shape
    assert hamming(phash(gray), phash(ref)) <= 4


@pytest.mark.parametrize("cut", [0.2, 0.5, 0.9])
def test_truncated_jpeg(pic, cut):
    data = encode(pic)
    with pytest.raises(DecodeError, match="truncated"):
        dec(data[: int(len(data) * cut)])


@pytest.mark.parametrize("size", [(640, 480), (1600, 1200)])
@pytest.mark.parametrize("cut", [0.4, 0.6, 0.8])
def test_a_jpeg_cut_short_and_closed_says_how_much_its_decoder_filled(size, cut):
    """Cut, then closed with an end marker: it decodes without an error, the rest one flat grey. (A cut
    at the start of a row of blocks, or in mid-grey picture, goes unseen.)"""
    data = encode(photo(3, size), quality=92)
    _, info = decode(data[: int(len(data) * cut)] + b"\xff\xd9", 10**9)
    assert 0.5 * (1 - cut) < info.cut_short < min(1.0, 1.5 * (1 - cut) + 0.05)
    assert decode(data, 10**9)[1].cut_short == 0


def grey_bands(pic: Image.Image, top: int, bottom: int) -> Image.Image:
    a = np.asarray(pic.convert("RGB")).copy()
    a[:top], a[len(a) - bottom :] = 128, 128
    return Image.fromarray(a)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: grey_bands(p, 0, 80),  # a grey band at the bottom, the decoder's own fill tone
        lambda p: grey_bands(p, 50, 50),  # a grey letterbox
        lambda p: border(p, 0.05, (128, 128, 128)),  # a grey frame
        lambda p: border(p, 0.12, (128, 128, 128)),
    ],
)
def test_a_whole_jpeg_with_grey_bands_or_a_grey_frame_is_not_cut_short(make):
    assert decode(encode(make(photo(3, (640, 480))), quality=92), 10**9)[1].cut_short == 0


@pytest.mark.parametrize("cut", [100, 300])
def test_jpeg_truncated_in_its_header(pic, cut):
    with pytest.raises(DecodeError) as err:
        dec(encode(pic)[:cut])
    assert str(err.value).startswith("truncated file")


def test_truncated_png(pic):
    data = encode(pic, "PNG")
    with pytest.raises(DecodeError, match="truncated"):
        dec(data[: len(data) // 2])


def test_png_with_a_broken_pixel_stream(pic):
    """Every chunk whole, the compressed pixels damaged: an error, not a black picture."""
    data = encode(pic, "PNG")
    start = data.index(b"IDAT") + 4
    data = data[:start] + b"\x00\x00" + data[start + 2 :]  # the zlib header
    with pytest.raises(DecodeError, match="corrupt"):
        dec(data)


@pytest.fixture(scope="module")
def big_webp(pic):
    return pic.resize((1600, 1200))


def test_large_webp_decodes_as_pillow_does(big_webp, monkeypatch):
    import dedupe.decode

    calls, imdecode = [], cv2.imdecode
    monkeypatch.setattr(dedupe.decode.cv2, "imdecode", lambda *a: calls.append(1) or imdecode(*a))
    gray, info = dec(encode(big_webp, "WEBP", quality=90))
    assert calls  # by OpenCV, straight to gray
    assert (info.width, info.height, info.format) == (1600, 1200, "WEBP")
    assert gray.shape == (240, 320)
    plain = Image.open(io.BytesIO(encode(big_webp, "WEBP", quality=90))).convert("L").reduce(5)
    assert mean_abs(gray, np.asarray(plain)) < 1.0


def test_large_webp_with_orientation_and_alpha(big_webp):
    gray, info = dec(store_oriented(big_webp, 6, "WEBP", quality=90))
    assert (info.width, info.height) == (1600, 1200)  # as displayed
    upright, _ = dec(encode(big_webp, "WEBP", quality=90))
    assert mean_abs(gray, upright) < 2.0
    rgba = big_webp.convert("RGBA")
    rgba.putalpha(0)
    clear, _ = dec(encode(rgba, "WEBP", lossless=True))  # fully transparent: composited on white
    assert clear.min() == 255


def test_truncated_large_webp(big_webp):
    data = encode(big_webp, "WEBP", quality=90)
    with pytest.raises(DecodeError):
        dec(data[: len(data) // 2])


@pytest.fixture(scope="module")
def big_png_pic():
    return photo(11, (320, 240)).resize((960, 720), Image.Resampling.BICUBIC)  # reduced by 3


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        out.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def png_join(chunks: list[tuple[bytes, bytes]]) -> bytes:
    crc = [struct.pack(">I", zlib.crc32(kind + body)) for kind, body in chunks]
    return b"\x89PNG\r\n\x1a\n" + b"".join(struct.pack(">I", len(b)) + k + b + c for (k, b), c in zip(chunks, crc))


def png_with(data: bytes, kind: bytes, body: bytes, after_pixels: bool = False) -> bytes:
    """`data` with a chunk added right after IHDR, or just before IEND."""
    chunks = png_chunks(data)
    chunks.insert(len(chunks) - 1 if after_pixels else 1, (kind, body))
    return png_join(chunks)


@pytest.fixture
def png_paths(monkeypatch):
    """Which way each large PNG went: "opencv" when OpenCV decoded the whole file, else "pillow"; and a
    function that decodes a file the way it was decoded before OpenCV took over (Pillow in full)."""
    import dedupe.decode

    paths, imdecode = [], cv2.imdecode

    def spy(buf, flags):
        paths.append(len(buf))
        return imdecode(buf, flags)

    def by_pillow(data):
        with monkeypatch.context() as m:
            m.setattr(dedupe.decode, "_png_gray", lambda im, data: None)
            return dec(data)

    def decode_png(data):
        paths.clear()
        result = dec(data)
        return result, "opencv" if len(data) in paths else "pillow"

    monkeypatch.setattr(dedupe.decode.cv2, "imdecode", spy)
    return decode_png, by_pillow


def assert_same_as_pillow(got, want):
    (gray, info), (ref, ref_info) = got, want
    assert info == ref_info
    assert gray.shape == ref.shape
    diff = gray.astype(int) - ref
    # Rounding only: libpng rounds each pixel's gray down, Pillow rounds the box-averaged colour to nearest.
    assert np.abs(diff).max() <= 2 and abs(diff.mean()) < 1


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("orientation", [1, 6, 3])
def test_large_png_by_opencv_matches_pillow(big_png_pic, png_paths, orientation, where):
    """A large RGB PNG is decoded by OpenCV to gray, with its EXIF read from its eXIf chunk wherever it is
    (Pillow only finds one after the pixels by decoding them): the same upright image and info as Pillow's."""
    decode_png, by_pillow = png_paths
    data = store_oriented(big_png_pic, orientation, "PNG", compress_level=1)
    ex = exif(orientation, date="2021:05:06 07:08:09", make="Canon", model="Canon EOS R5")
    chunks = [c for c in png_chunks(data) if c[0] != b"eXIf"]
    chunks.insert(len(chunks) - 1 if where == "after" else 1, (b"eXIf", ex.tobytes()[6:]))  # no "Exif\0\0"
    data = png_join(chunks)
    (gray, info), path = decode_png(data)
    assert path == "opencv"
    assert (info.width, info.height, info.orientation) == (960, 720, orientation)
    assert (info.exif_date, info.camera) == ("2021:05:06 07:08:09", "Canon EOS R5")
    assert_same_as_pillow((gray, info), by_pillow(data))
    upright, _ = dec(encode(big_png_pic, "PNG", compress_level=1))
    assert mean_abs(gray, upright) < 1.0


def test_large_png_orientation_in_xmp_after_pixels(big_png_pic, png_paths):
    """Pillow also takes the orientation from XMP; the metadata are read as Pillow reads them."""
    decode_png, by_pillow = png_paths
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp.decode())
    itxt = png_chunks(encode(big_png_pic.resize((8, 8)), "PNG", pnginfo=info))[1]
    data = png_with(encode(big_png_pic.transpose(Image.Transpose.ROTATE_90), "PNG"), *itxt, after_pixels=True)
    (gray, info), path = decode_png(data)
    assert path == "opencv" and info.orientation == 6 and (info.width, info.height) == (960, 720)
    assert_same_as_pillow((gray, info), by_pillow(data))


def test_large_16_bit_rgb_png_by_opencv_matches_pillow(big_png_pic, png_paths):
    decode_png, by_pillow = png_paths
    rgb16 = np.asarray(big_png_pic)[:, :, ::-1].astype(np.uint16) * 257 + 100  # low bytes differ too
    data = cv2.imencode(".png", rgb16)[1].tobytes()
    (gray, info), path = decode_png(data)
    assert path == "opencv"
    assert_same_as_pillow((gray, info), by_pillow(data))


@pytest.mark.parametrize(
    "make",
    [
        lambda pic: encode(pic.convert("RGBA"), "PNG"),
        lambda pic: encode(pic, "PNG", transparency=(1, 2, 3)),  # a colour key: tRNS
        lambda pic: encode(pic.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        lambda pic: encode(pic.convert("LA"), "PNG"),
        lambda pic: encode(pic.convert("L"), "PNG"),  # as small in Pillow as in OpenCV
        lambda pic: encode(Image.fromarray(np.asarray(pic.convert("L")).astype(np.uint16) * 257), "PNG"),
        lambda pic: png_with(encode(pic, "PNG"), b"sRGB", b"\x00"),  # libpng would make its gray in linear light
        lambda pic: png_with(encode(pic, "PNG"), b"gAMA", struct.pack(">I", 45455)),
    ],
    ids=["RGBA", "tRNS", "palette", "LA", "L", "16-bit gray", "sRGB", "gAMA"],
)
def test_other_large_pngs_are_decoded_by_pillow(big_png_pic, png_paths, make):
    decode_png, by_pillow = png_paths
    data = make(big_png_pic)
    (gray, info), path = decode_png(data)
    assert path == "pillow"
    ref, ref_info = by_pillow(data)
    assert info == ref_info and np.array_equal(gray, ref)


@pytest.mark.parametrize("damage", ["truncated", "broken pixel stream"])
def test_damaged_large_png_is_an_error(big_png_pic, png_paths, damage):
    """OpenCV is not asked (the chunk list is cut short) or refuses it: Pillow says what is wrong."""
    decode_png, _ = png_paths
    data = encode(big_png_pic, "PNG", compress_level=1)
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:  # every chunk whole and its checksum right, the zlib stream inside broken
        chunks = png_chunks(data)
        chunks[1] = (b"IDAT", b"\x00\x00" + chunks[1][1][2:])
        data = png_join(chunks)
    with pytest.raises(DecodeError, match="truncated" if damage == "truncated" else "corrupt"):
        decode_png(data)


@pytest.mark.parametrize("damage", ["no IEND", "bad pixel checksum"])
def test_slightly_damaged_large_png_decodes_as_before(big_png_pic, png_paths, damage):
    """What Pillow reads anyway (it checks no pixel checksum) still decodes, as Pillow decodes it."""
    decode_png, by_pillow = png_paths
    data = encode(big_png_pic, "PNG", compress_level=1)
    if damage == "no IEND":
        data = data[:-12]
    else:
        start = data.index(b"IDAT") - 4
        pos = start + 8 + struct.unpack_from(">I", data, start)[0]  # the first IDAT's CRC
        data = data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1 :]
    assert_same_as_pillow(decode_png(data)[0], by_pillow(data))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, this is not a picture",
        b"\xff\xd8\xff" + bytes(range(256)) * 4,
        b"\x89PNG\r\n\x1a\n" + b"junk" * 50,
        b"GIF89a" + b"\x00" * 10,
        bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8)),
    ],
)
def test_garbage_bytes(data):
    with pytest.raises(DecodeError) as err:
        dec(data)
    assert str(err.value)


def test_too_many_pixels(pic):
    data = encode(pic)
    with pytest.raises(DecodeError, match="too many pixels"):
        dec(data, max_pixels=320 * 240 - 1)
    dec(data, max_pixels=320 * 240)  # exactly at the limit is fine


def test_decompression_bomb_header_is_refused_without_decoding():
    """A PNG header claiming a huge picture is refused from the header alone."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b"")
    )
    with pytest.raises(DecodeError, match="too many pixels"):
        dec(data, max_pixels=150_000_000)


@pytest.mark.parametrize("fmt,kw", [("JPEG", {}), ("WEBP", {"lossless": True}), ("PNG", {})])
def test_decode_from_path_equals_decode_from_bytes(tmp_path, pic, fmt, kw):
    data = encode(pic, fmt, **kw)
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(data)
    g_bytes, info_bytes = dec(data)
    g_path, info_path = decode(str(path), BIG)
    assert info_path == info_bytes
    assert np.array_equal(g_path, g_bytes)


def test_decode_from_path_errors_are_decode_errors(tmp_path, pic):
    path = tmp_path / "t.jpg"
    data = encode(pic)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match="truncated"):
        decode(str(path), BIG)
    path.write_bytes(b"\xff\xd8\xff" + b"\x00" * 100)
    with pytest.raises(DecodeError):
        decode(str(path), BIG)


@pytest.mark.parametrize("mode", ["RGBA", "RGB", "L", "I"])
def test_a_large_picture_is_reduced_a_band_at_a_time_to_the_same_pixels(mode, monkeypatch):
    import dedupe.decode as decode_module

    rng = np.random.default_rng(8)
    h, w = 1003, 757
    if mode == "I":
        im = Image.fromarray(rng.integers(0, 65535, (h, w)).astype(np.int32), "I")
    else:
        shape = (h, w) if mode == "L" else (h, w, len(mode))
        im = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
    monkeypatch.setattr(decode_module, "BAND_PIXELS", 30_000)  # bands of 36 rows, the last one shorter
    banded = decode_module._reduce_bands(im, 3)
    assert banded.mode == im.mode
    assert np.array_equal(np.asarray(banded), np.asarray(im.reduce(3)))


def test_a_large_transparent_png_decodes_alike_in_bands(monkeypatch):
    import dedupe.decode as decode_module

    rng = np.random.default_rng(9)
    rgba = np.asarray(Image.fromarray(rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)).resize((1200, 900)))
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    whole, _ = decode(buf.getvalue(), 10**9)
    monkeypatch.setattr(decode_module, "BAND_PIXELS", 50_000)
    banded, _ = decode(buf.getvalue(), 10**9)
    assert np.array_equal(whole, banded)
