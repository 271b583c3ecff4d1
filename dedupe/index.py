"""Stage 5: candidate pairs, i.e. all pairs of 64-bit codes within a Hamming radius, never all pairs.

FAISS's exact binary index does the radius search in SIMD code; past FLAT_LIMIT codes a multi-hash index
(pigeonhole on 8 substrings of 8 bits: a pair within radius r < 16 agrees on some substring up to one
flip) proposes pairs that are then checked exactly. `brute_force_pairs` is the reference for tests.
"""

from __future__ import annotations

import faiss
import numpy as np

FLAT_LIMIT = 200_000
QUERY_BLOCK = 16_384
"""Queries per range search call, to bound the memory of the result lists."""


def _as_bytes(codes: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(codes, dtype=np.uint64).reshape(-1, 1).view(np.uint8))


def popcount64(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.uint64)
    return np.unpackbits(x.reshape(-1, 1).view(np.uint8), axis=1).sum(axis=1).astype(np.int64)


def _normalise(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    keep = i != j
    pairs = np.stack([np.minimum(i, j)[keep], np.maximum(i, j)[keep]], axis=1).astype(np.int64)
    if not len(pairs):
        return pairs.reshape(0, 2)
    return np.unique(pairs, axis=0)


def _range_pairs(index, data: np.ndarray, radius: int) -> np.ndarray:
    found_i, found_j = [], []
    for start in range(0, len(data), QUERY_BLOCK):
        lims, _dist, ids = index.range_search(data[start : start + QUERY_BLOCK], radius + 1)  # strictly below
        counts = np.diff(lims).astype(np.int64)
        found_i.append(np.repeat(np.arange(start, start + len(counts)), counts))
        found_j.append(ids.astype(np.int64))
    if not found_i:
        return np.zeros((0, 2), np.int64)
    return _normalise(np.concatenate(found_i), np.concatenate(found_j))


def pairs_within(codes: np.ndarray, radius: int, flat_limit: int = FLAT_LIMIT) -> np.ndarray:
    """Sorted unique (i, j), i < j, of codes whose Hamming distance is at most `radius`."""
    data = _as_bytes(codes)
    if len(data) < 2:
        return np.zeros((0, 2), np.int64)
    if len(data) <= flat_limit or radius >= 16:
        index = faiss.IndexBinaryFlat(64)
        index.add(data)
        return _range_pairs(index, data, radius)
    index = faiss.IndexBinaryMultiHash(64, 8, 8)
    index.nflip = 1
    index.add(data)
    pairs = _range_pairs(index, data, radius)
    codes = np.asarray(codes, dtype=np.uint64)
    exact = popcount64(codes[pairs[:, 0]] ^ codes[pairs[:, 1]]) <= radius
    return pairs[exact]


def brute_force_pairs(codes: np.ndarray, radius: int) -> np.ndarray:
    """Every pair compared: the reference the index is tested against."""
    codes = np.asarray(codes, dtype=np.uint64)
    out = []
    for i in range(len(codes) - 1):
        d = popcount64(codes[i] ^ codes[i + 1 :])
        for k in np.flatnonzero(d <= radius):
            out.append((i, i + 1 + int(k)))
    return np.array(out, dtype=np.int64).reshape(-1, 2)
