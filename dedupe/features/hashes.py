"""Perceptual hashes (pHash, dHash) as packed 64-bit integers, and the thumbnail kept for verification.

pHash is computed with numpy (a 32x32 DCT as two matrix products) so that later stages can derive the
hashes of rotated and mirrored copies from the same transform; it equals imagehash.phash bit for bit.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from ..model import Features
from ..verify import detail
from .keypoints import keypoints

HASH_SIZE = 8
DCT_SIZE = 32
THUMB = 128
"""Long side of the grayscale thumbnail that verification compares."""
_N = np.arange(DCT_SIZE)
_DCT = 2.0 * np.cos(np.pi * np.outer(_N, 2 * _N + 1) / (2 * DCT_SIZE))  # scipy's unnormalised DCT-II
_WEIGHTS = np.uint64(1) << np.arange(HASH_SIZE * HASH_SIZE - 1, -1, -1, dtype=np.uint64)


def pack_bits(bits: np.ndarray) -> int:
    """Row-major bits, first bit most significant: the integer of imagehash's hex string."""
    return int((bits.ravel().astype(np.uint64) * _WEIGHTS).sum())


ORIENTATIONS = [(k, m) for m in (False, True) for k in range(4)]
"""The 8 ways a picture can be turned: (quarter turns clockwise, mirrored first). Index 0 is as is."""
_SIGNS = (-1.0) ** np.arange(HASH_SIZE)


def orient(image: np.ndarray, k: int, mirrored: bool) -> np.ndarray:
    """The image mirrored left-right (if `mirrored`), then turned k quarter turns clockwise."""
    if mirrored:
        image = image[:, ::-1]
    return np.ascontiguousarray(np.rot90(image, -k))


def orient_box(box: tuple[float, float, float, float], k: int, mirrored: bool) -> tuple[float, float, float, float]:
    """A box given as fractions (x0, y0, x1, y1) of an image, in the same image turned as `orient` does."""
    x0, y0, x1, y1 = box
    if mirrored:
        x0, x1 = 1 - x1, 1 - x0
    for _ in range(k):  # a clockwise quarter turn sends (x, y) to (1 - y, x)
        x0, y0, x1, y1 = 1 - y1, x0, 1 - y0, x1
    return x0, y0, x1, y1


def inverse(k: int, mirrored: bool) -> tuple[int, bool]:
    """The orientation that undoes (k, mirrored): mirrored ones are their own inverse."""
    return (k, True) if mirrored else ((-k) % 4, False)


def _low_dct(gray: np.ndarray) -> np.ndarray:
    small = np.asarray(Image.fromarray(gray).resize((DCT_SIZE, DCT_SIZE), Image.Resampling.LANCZOS), dtype=np.float64)
    return (_DCT @ small @ _DCT.T)[:HASH_SIZE, :HASH_SIZE]


def _bits(low: np.ndarray) -> int:
    """Bits above the median. Rounding first turns the matrix products' 1e-13 noise on flat or purely
    gradient images into the exact zeros that imagehash's FFT-based DCT gives."""
    low = np.round(low, 6)
    return pack_bits(low > np.median(low))


def _oriented_low(low: np.ndarray, k: int, mirrored: bool) -> np.ndarray:
    """DCT coefficients of the turned image, from the original's: a mirror flips the sign of odd
    horizontal frequencies, a clockwise quarter turn is a transpose followed by that mirror."""
    if mirrored:
        low = low * _SIGNS[None, :]
    for _ in range(k):
        low = low.T * _SIGNS[None, :]
    return low


def phash(gray: np.ndarray) -> int:
    """64-bit DCT hash of a grayscale image, as imagehash.phash computes it."""
    return _bits(_low_dct(gray))


_PLACES = np.stack([_oriented_low(np.arange(1.0, 65.0).reshape(8, 8), k, m).ravel() for k, m in ORIENTATIONS])
_TAKE, _SIGN = (np.abs(_PLACES) - 1).astype(np.intp), np.sign(_PLACES)
"""Where each of the 64 coefficients of a turned picture is among the original's, and its sign: the eight
sets by one gather (building them by _oriented_low for every picture was a fifth of its pHashes' time)."""


def phash_orientations(gray: np.ndarray) -> list[int]:
    """pHashes of the image in each of ORIENTATIONS, from one transform instead of eight (and one
    median over the eight, not eight numpy calls)."""
    lows = np.round(_low_dct(gray).ravel()[_TAKE] * _SIGN, 6)
    bits = lows > np.median(lows, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().tolist()


def dhash(gray: np.ndarray) -> int:
    """64-bit gradient hash (imagehash.dhash): its errors are independent of pHash's, so a copy with a
    logo in one corner, which moves pHash by up to 18 bits, is still a candidate through dHash."""
    small = np.asarray(
        Image.fromarray(gray).resize((HASH_SIZE + 1, HASH_SIZE), Image.Resampling.LANCZOS), dtype=np.int16
    )
    return pack_bits(small[:, 1:] > small[:, :-1])


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


FRAME_TOL = 8
"""Grey levels from the frame colour within which a frame's pixels lie. A frame added by an editor is flat,
in the work image of a JPEG even at quality 25 (its 8x8 blocks are averaged by the DCT-domain reduction):
every framed copy of 13 benchmark corpora (89) is found at 8 as at 20. At 20 the pale, out-of-focus top and
bottom of three photos (boards, a garden, a hike; 4-8 grey levels of texture) passed for a
letterbox, and a copy with a grey frame added then looked bigger than the original and became the keeper;
and a white frame ran on into a white sky, 36 pixels instead of 13."""


def content_box(
    gray: np.ndarray, tol: int = FRAME_TOL, min_frac: float = 0.01, max_frac: float = 0.3
) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the picture inside a uniform frame or letterbox, or the whole image.

    A side counts as frame when its outer rows (or columns) are within `tol` of the frame colour (the
    median of the outermost pixels) on 98% of their pixels, over at least `min_frac` of that dimension,
    and so does the opposite side: a frame, a letterbox or pillarbox surrounds the picture, while a
    uniform band on one side only (a dark sky, a studio wall) is part of it. Taken for a frame, such a
    band made an original look smaller than a copy with a black frame added, which then became the
    keeper. Copies with a frame added hash and compare like the unframed picture.
    """
    h, w = gray.shape
    if h < 16 or w < 16:
        return 0, 0, w, h
    edge = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]]).astype(np.int16)
    colour = int(np.median(edge))
    if (np.add.reduceat(np.abs(edge - colour) <= tol, [0, w, 2 * w, 2 * w + h]) < 0.98 * np.array([w, w, h, h])).all():
        return 0, 0, w, h  # no outer line is frame: most photos, told apart without the whole image
    near = np.abs(gray.astype(np.int16) - colour) <= tol
    rows = near.mean(axis=1) >= 0.98
    cols = near.mean(axis=0) >= 0.98

    def run(flags: np.ndarray) -> int:
        bad = np.flatnonzero(~flags)
        return int(bad[0]) if bad.size else flags.size

    top, bottom, left, right = run(rows), run(rows[::-1]), run(cols), run(cols[::-1])
    cut = []
    for n, size in ((top, h), (bottom, h), (left, w), (right, w)):
        cut.append(n if max(2, min_frac * size) <= n <= max_frac * size else 0)
    top, bottom, left, right = cut
    if not (top and bottom):
        top = bottom = 0
    if not (left and right):
        left = right = 0
    return left, top, w - right, h - bottom


def thumbnail(gray: np.ndarray) -> np.ndarray:
    """Area-averaged grayscale copy with long side THUMB (or smaller, never enlarged)."""
    h, w = gray.shape
    s = min(1.0, THUMB / max(h, w))
    if s == 1.0:
        return gray.copy()
    return cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def describe(gray: np.ndarray, with_keypoints: bool = True) -> Features:
    """The features of one decoded work image: pHashes (all orientations), dHash, thumbnail, keypoints
    and, for a framed picture, the pHash of its inside.

    The hashes are taken from the 128-pixel thumbnail, area-averaged from the work image: their
    32x32 and 9x8 Lanczos reductions then filter 16 times fewer pixels, which was a tenth of the
    decode stage; an area-averaged image hashes like the full-size one."""
    h, w = gray.shape
    thumb = thumbnail(gray)
    codes = phash_orientations(thumb)
    x0, y0, x1, y1 = content_box(gray)
    feats = Features(codes[0], dhash(thumb), thumb, detail(thumb), turned=tuple(codes[1:]))
    if with_keypoints:
        feats.kp_xy, feats.kp_desc = keypoints(gray, thumb.shape[1] / w)
    if (x0, y0, x1, y1) != (0, 0, w, h):
        feats.box = (x0 / w, y0 / h, x1 / w, y1 / h)
        th, tw = thumb.shape
        inner = thumb[round(y0 * th / h) : round(y1 * th / h), round(x0 * tw / w) : round(x1 * tw / w)]
        feats.phash_trim = phash(inner if min(inner.shape) >= 8 else gray[y0:y1, x0:x1])
    return feats
