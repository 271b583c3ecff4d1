"""ORB keypoints of the small work image: what finds crops, which hashes of the whole frame miss.

Computed once per image in the decode stage (about 3 ms on a 250-320 px image: a quarter of the time a
3 MP JPEG takes to decode at 1/8, the largest cost after decoding) and kept compact: at most KEYPOINTS
32-byte binary descriptors plus their positions in thumbnail pixels as float16, about 3.5 KB per image.
"""

from __future__ import annotations

import cv2
import numpy as np

KEYPOINTS = 96
LONG_SIDE = 320
"""Keypoints are found on the work image reduced to this long side: a 12 MP photo's 500-pixel work
image would cost 2.5 times as much for corners that the pyramid's coarser levels find anyway."""
_ORB = None


def _orb():
    global _ORB  # one detector per process: creating it costs more than running it on a small image
    if _ORB is None:
        _ORB = cv2.ORB_create(
            nfeatures=KEYPOINTS, scaleFactor=1.2, nlevels=6, edgeThreshold=15, patchSize=15, fastThreshold=10
        )
    return _ORB


def keypoints(gray: np.ndarray, thumb_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(positions (N, 2) float16 in thumbnail pixels, descriptors (N, 32) uint8) of the strongest corners."""
    h, w = gray.shape
    if max(h, w) > LONG_SIDE:
        s = LONG_SIDE / max(h, w)
        gray = cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        thumb_scale *= w / gray.shape[1]
    kps, desc = _orb().detectAndCompute(gray, None)
    if desc is None or not kps:
        return np.zeros((0, 2), np.float16), np.zeros((0, 32), np.uint8)
    xy = np.array([k.pt for k in kps], dtype=np.float32) * thumb_scale
    return xy.astype(np.float16), desc
