"""Stage 4: the numpy pHash (must equal imagehash's), content_box and describe()."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
from PIL import Image

from dedupe.features.hashes import (
    ORIENTATIONS,
    THUMB,
    content_box,
    describe,
    hamming,
    orient,
    pack_bits,
    phash,
    phash_orientations,
    thumbnail,
)
from images import border, gray_array, photo


def imagehash_int(gray: np.ndarray) -> int:
    return int(str(imagehash.phash(Image.fromarray(gray))), 16)


def random_images(n: int):
    rng = np.random.default_rng(1234)
    for k in range(n):
        w, h = (int(v) for v in rng.integers(17, 640, 2))
        kind = k % 3
        if kind == 0:
            yield gray_array(photo(k, (w, h)))
        elif kind == 1:
            yield rng.integers(0, 256, (h, w), dtype=np.uint8)
        else:  # smooth random blobs
            small = rng.integers(0, 256, (4, 5), dtype=np.uint8)
            yield np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))


def test_phash_equals_imagehash_on_many_images():
    checked = 0
    for gray in random_images(60):
        assert phash(gray) == imagehash_int(gray), gray.shape
        checked += 1
    assert checked == 60


def test_phash_is_64_bits_and_stable():
    g = gray_array(photo(5, (300, 200)))
    h = phash(g)
    assert 0 <= h < 2**64
    assert phash(g.copy()) == h


@pytest.mark.parametrize("kind", ["flat", "horizontal_gradient"])
def test_phash_equals_imagehash_on_degenerate_images(kind):
    gray = {
        "flat": np.full((100, 100), 128, np.uint8),
        "horizontal_gradient": np.tile(np.arange(256, dtype=np.uint8), (100, 1)),
    }[kind]
    assert phash(gray) == imagehash_int(gray)


def test_pack_bits_matches_imagehash_hex_order():
    bits = np.zeros((8, 8), bool)
    bits[0, 0] = True
    assert pack_bits(bits) == 1 << 63
    bits = np.zeros((8, 8), bool)
    bits[7, 7] = True
    assert pack_bits(bits) == 1
    rng = np.random.default_rng(0)
    for _ in range(20):
        bits = rng.random((8, 8)) > 0.5
        assert pack_bits(bits) == int(str(imagehash.ImageHash(bits)), 16)


def test_hamming():
    assert hamming(0, 0) == 0
    assert hamming(0, 2**64 - 1) == 64
    assert hamming(0b1011, 0b0001) == 2


def test_content_box_finds_white_frame():
    pic = photo(3, (400, 300))
    framed = gray_array(border(pic, 0.05))  # 20 px left/right, 15 px top/bottom
    h, w = framed.shape
    x0, y0, x1, y1 = content_box(framed)
    assert abs(x0 - 20) <= 2 and abs(y0 - 15) <= 2
    assert abs((w - x1) - 20) <= 2 and abs((h - y1) - 15) <= 2


def test_content_box_black_letterbox():
    pic = gray_array(photo(4, (400, 240)))
    boxed = np.zeros((300, 400), np.uint8)
    boxed[30:270] = pic
    x0, y0, x1, y1 = content_box(boxed)
    assert (x0, x1) == (0, 400)
    assert abs(y0 - 30) <= 2 and abs(y1 - 270) <= 2


def test_content_box_whole_image_without_frame():
    g = gray_array(photo(6, (400, 300)))
    assert content_box(g) == (0, 0, 400, 300)
    assert content_box(np.zeros((10, 10), np.uint8)) == (0, 0, 10, 10)  # too small to judge


def test_content_box_ignores_a_frame_too_wide_to_be_one():
    """More than max_frac of a side is not a frame: the image is left whole."""
    g = np.full((300, 400), 255, np.uint8)
    g[130:170, 180:220] = gray_array(photo(1, (40, 40)))
    assert content_box(g) == (0, 0, 400, 300)


def test_describe_framed_and_unframed():
    pic = photo(3, (400, 300))
    plain = describe(gray_array(pic))
    assert plain.box is None and plain.phash_trim is None
    assert plain.phash == phash(thumbnail(gray_array(pic)))  # hashed on the thumbnail
    assert max(plain.thumb.shape) == THUMB

    framed = describe(gray_array(border(pic, 0.04)))
    assert framed.box is not None and framed.phash_trim is not None
    x0, y0, x1, y1 = framed.box
    assert 0 < x0 < 0.1 and 0 < y0 < 0.1 and 0.9 < x1 < 1 and 0.9 < y1 < 1
    assert hamming(framed.phash_trim, plain.phash) <= 4


def test_thumbnail_never_enlarges():
    g = gray_array(photo(1, (100, 60)))
    t = thumbnail(g)
    assert t.shape == g.shape and t is not g
    big = gray_array(photo(1, (512, 300)))
    assert thumbnail(big).shape == (75, 128)


def test_dhash_equals_imagehash_on_many_images():
    from dedupe.features.hashes import dhash

    checked = 0
    for gray in random_images(45):
        assert dhash(gray) == int(str(imagehash.dhash(Image.fromarray(gray))), 16), gray.shape
        checked += 1
    assert checked == 45


def test_describe_has_dhash_of_the_thumbnail():
    from dedupe.features.hashes import dhash

    g = gray_array(photo(8, (320, 240)))
    assert describe(g).dhash == dhash(thumbnail(g))


def test_content_box_leaves_a_band_on_one_side_in_the_picture():
    """A uniform band along one edge (a dark sky) is picture: only a frame on opposite sides is cut."""
    g = gray_array(photo(5, (400, 300))).copy()
    g[:30] = 12  # dark top band, 10% of the height
    assert content_box(g) == (0, 0, 400, 300)
    g[:, :25] = 12  # and the left edge too: still no opposite pair
    assert content_box(g) == (0, 0, 400, 300)
    g[-30:] = 12  # top and bottom now: a letterbox
    x0, y0, x1, y1 = content_box(g)
    assert (x0, x1) == (0, 400) and abs(y0 - 30) <= 1 and abs(y1 - 270) <= 1


@pytest.mark.parametrize("grain", [4.0, 7.0])
def test_content_box_leaves_pale_textured_bands_in_the_picture(grain):
    """A bright, out-of-focus top and bottom (within the colour tolerance, but with texture) are picture,
    not a letterbox; the same bands made flat, as an editor's letterbox is, are cut."""
    rng = np.random.default_rng(7)
    g = gray_array(photo(5, (400, 300))).copy()
    for rows in (slice(0, 40), slice(260, 300)):
        g[rows] = np.clip(235 + rng.normal(0, grain, g[rows].shape), 226, 244).astype(np.uint8)
    assert content_box(g) == (0, 0, 400, 300)
    g[:40] = g[260:] = 235
    x0, y0, x1, y1 = content_box(g)
    assert (x0, x1) == (0, 400) and abs(y0 - 40) <= 1 and abs(y1 - 260) <= 1


def test_a_white_frame_ends_where_a_white_sky_begins():
    """A frame runs to the picture's edge, not on into a pale sky of a similar white."""
    g = gray_array(photo(5, (400, 300))).copy()
    g[:60] = np.linspace(238, 246, 60, dtype=np.float32)[:, None].astype(np.uint8)  # a pale sky at the top
    framed = np.full((340, 440), 255, np.uint8)
    framed[20:320, 20:420] = g
    x0, y0, x1, y1 = content_box(framed)
    assert (x0, y0, x1, y1) == (20, 20, 420, 320)


def test_phash_orientations_are_the_hashes_of_the_turned_pictures():
    """All eight from one transform: the first is phash itself, each other within 2 bits of the pHash of
    the picture turned (Lanczos rounds the turned pixels a little differently), most of them equal."""
    exact = 0
    for k in range(12):
        gray = gray_array(photo(k, (128, 96 - 3 * k)))
        codes = phash_orientations(gray)
        assert len(codes) == len(ORIENTATIONS) and codes[0] == phash(gray)
        for code, (quarter, mirrored) in zip(codes, ORIENTATIONS):
            assert hamming(code, phash(orient(gray, quarter, mirrored))) <= 2
            exact += code == phash(orient(gray, quarter, mirrored))
    assert exact >= 0.9 * 12 * len(ORIENTATIONS)
