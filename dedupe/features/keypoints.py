"""ORB keypoints of the small work image: what finds crops, which hashes of the whole frame miss.

Computed once per image in the decode stage (about 1.7 ms on a 250-320 px image: a fifth of the time a
3 MP JPEG takes to decode at 1/8, the largest cost after decoding) and kept compact: at most KEYPOINTS
32-byte binary descriptors plus their positions in thumbnail pixels as float16, about 3.5 KB per image.
"""

from __future__ import annotations

import cv2
import numpy as np

KEYPOINTS = 96
LONG_SIDE = 320
"""Keypoints are found on an image of at most this long side (decode's work image is this size): a
500-pixel image would cost 2.5 times as much for corners that the pyramid's coarser levels find anyway."""
SCALE_FACTOR, LEVELS = 1.3, 5
"""The pyramid: 5 levels 1.3 apart span a scale change of 2.9 (6 levels 1.2 apart spanned 2.5) and cost
1.7 ms instead of 2.4 ms per image, with the same crops found on the dev and scale-5000 corpora;
4 levels 1.4 apart (1.3 ms) lost 2 of the scale corpus's 80 crops, and a FAST score with a higher
corner threshold (1.4 ms) lost 1."""
EDGE = 15
"""Pixels along every border where ORB looks for no corner (its edge threshold and patch size). An image
at most twice as narrow has none to find, and one a pixel wide crashed ORB's pyramid (OpenCV asserts),
which stopped the whole scan: such images are not searched."""
FAST_THRESHOLD, SOFT_THRESHOLD = 10, 3
"""Grey levels a FAST corner must stand out by; a picture where fewer than KEYPOINTS // 2 corners do so
(a storm sky, a motion-blurred road, a dark stage) is searched again at SOFT_THRESHOLD. The dev corpus's
stormy road had 17 keypoints and its crop's 12, too few to match; 2.6% of scale5000's pictures take
the second search (1 ms each)."""
_ORB: dict[int, cv2.ORB] = {}


def _orb(threshold: int):
    """One detector per threshold and process: creating it costs more than running it on a small image."""
    if threshold not in _ORB:
        _ORB[threshold] = cv2.ORB_create(
            nfeatures=KEYPOINTS,
            scaleFactor=SCALE_FACTOR,
            nlevels=LEVELS,
            edgeThreshold=EDGE,
            patchSize=EDGE,
            fastThreshold=threshold,
        )
    return _ORB[threshold]


def keypoints(gray: np.ndarray, thumb_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(positions (N, 2) float16 in thumbnail pixels, descriptors (N, 32) uint8) of the strongest corners."""
    h, w = gray.shape
    if max(h, w) > LONG_SIDE:
        s = LONG_SIDE / max(h, w)
        gray = cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        thumb_scale *= w / gray.shape[1]
    if min(gray.shape) <= 2 * EDGE:
        return np.zeros((0, 2), np.float16), np.zeros((0, 32), np.uint8)
    kps, desc = _orb(FAST_THRESHOLD).detectAndCompute(gray, None)
    if len(kps) < KEYPOINTS // 2:
        kps, desc = _orb(SOFT_THRESHOLD).detectAndCompute(gray, None)
    if desc is None or not kps:
        return np.zeros((0, 2), np.float16), np.zeros((0, 32), np.uint8)
    xy = np.array([k.pt for k in kps], dtype=np.float32) * thumb_scale
    return xy.astype(np.float16), desc
